// bench/peers/limit.h: the practical ceiling for independent hand-off. One
// moodycamel::ConcurrentQueue of 8-byte items, filled through one ProducerToken per
// producer thread, and N consumer threads that spin on try_dequeue_bulk with a
// ConsumerToken (pausing, then yielding, when the queue is empty). No states, no
// ordering, no handles, no closures: W1 (one or several producers) and W1-fan only.
// W1-fan: a root item (token field kFanRoot) makes its consumer enqueue the root's
// children through the consumer's own ProducerToken, all with one enqueue_bulk (in
// W1-fan and W1-fan-batch alike). W1-batch: enqueue_bulk of plan.batch items.
#ifndef ORDO_BENCH_PEERS_LIMIT_H_
#define ORDO_BENCH_PEERS_LIMIT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "concurrentqueue/concurrentqueue.h"
#include "peers/common.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ORDO_COMPARE_PAUSE() _mm_pause()
#else
#define ORDO_COMPARE_PAUSE() ((void)0)
#endif

namespace ordo_compare {

class LimitPeer {
 public:
  static constexpr const char* kName = "limit";
  static Support Supports(Feature f, bool tokens) {
    if (tokens) return {false, "raw queue hand-off has no per-token order (W1 only)"};
    switch (f) {
      case Feature::kThroughput:
      case Feature::kProducers:
      case Feature::kFanOut:
      case Feature::kBatch:
        return {};
      case Feature::kPostpone:
        return {false, "raw queue hand-off has no timers"};
      default:
        return {false,
                "a hand-off ceiling with spinning consumers, not an engine "
                "(throughput workloads only)"};
    }
  }

  explicit LimitPeer(int workers) {
    ptoks_.push_back(std::make_unique<moodycamel::ProducerToken>(queue_));
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { Consume(); });
  }
  ~LimitPeer() {
    stop_.store(true, std::memory_order_relaxed);
    for (std::thread& t : threads_) t.join();
  }
  LimitPeer(const LimitPeer&) = delete;
  LimitPeer& operator=(const LimitPeer&) = delete;

  // Untimed: one producer token per producer thread.
  void Prepare(const Plan& plan) {
    while (static_cast<int>(ptoks_.size()) < plan.producers) {
      ptoks_.push_back(std::make_unique<moodycamel::ProducerToken>(queue_));
    }
  }
  void Settle() {}

  std::string Produce(const Plan& plan, int p, Oracle& oracle) {
    oracle_.store(&oracle, std::memory_order_release);
    moodycamel::ProducerToken& ptok = *ptoks_[p];
    const long end = plan.end(p);
    if (plan.batch > 0) {  // enqueue_bulk, a group at a time
      std::vector<Item> group;
      group.reserve(plan.batch);
      for (long i = plan.begin(p); i < end;) {
        group.clear();
        for (; i < end && static_cast<int>(group.size()) < plan.batch; ++i) {
          group.push_back(Item{static_cast<std::uint32_t>(i), plan.token[i]});
        }
        if (!queue_.enqueue_bulk(ptok, group.data(), group.size())) {
          return "enqueue failed at " + std::to_string(i);
        }
      }
      return {};
    }
    for (long i = plan.begin(p); i < end; ++i) {
      if (!queue_.enqueue(ptok, Item{static_cast<std::uint32_t>(i), plan.token[i]})) {
        return "enqueue failed at " + std::to_string(i);
      }
    }
    return {};
  }

  std::string Fan(const Plan& plan, Oracle& oracle) {
    fan_.store(plan.fan, std::memory_order_relaxed);  // published by the release below
    oracle_.store(&oracle, std::memory_order_release);
    for (long r = 0; r < plan.ops(); r += plan.fan) {
      if (!queue_.enqueue(*ptoks_[0], Item{static_cast<std::uint32_t>(r), kFanRoot})) {
        return "enqueue failed at " + std::to_string(r);
      }
    }
    return {};
  }

  std::string Finish(const Plan& plan, Oracle& oracle) {
    if (std::string s = FinishesByOracle().Finish(plan, oracle); !s.empty()) return s;
    if (long f = failed_.exchange(0); f != 0)
      return "enqueue from a consumer failed " + std::to_string(f) + " times";
    return {};
  }

 private:
  static constexpr std::int32_t kFanRoot = -2;
  struct Item {
    std::uint32_t id;
    std::int32_t token;
  };

  void Consume() {
    moodycamel::ConsumerToken ctok(queue_);
    moodycamel::ProducerToken mine(queue_);  // W1-fan: this consumer's own submissions
    std::vector<Item> children;
    Item batch[32];
    int idle = 0;
    while (!stop_.load(std::memory_order_relaxed)) {
      const std::size_t n = queue_.try_dequeue_bulk(ctok, batch, 32);
      if (n == 0) {
        if (++idle < 256) {
          ORDO_COMPARE_PAUSE();
        } else {
          std::this_thread::yield();
        }
        continue;
      }
      idle = 0;
      // Set before the first enqueue of the run, so visible once an item is.
      Oracle* o = oracle_.load(std::memory_order_acquire);
      for (std::size_t k = 0; k < n; ++k) {
        if (batch[k].token != kFanRoot) {
          o->Ran(batch[k].id, batch[k].token);
          continue;
        }
        o->Ran(batch[k].id, -1);
        const int fan = fan_.load(std::memory_order_relaxed);
        children.clear();
        for (int c = 1; c < fan; ++c) children.push_back(Item{batch[k].id + c, -1});
        if (!queue_.enqueue_bulk(mine, children.data(), children.size())) {
          failed_.fetch_add(1, std::memory_order_relaxed);
        }
      }
    }
  }

  moodycamel::ConcurrentQueue<Item> queue_;
  std::vector<std::unique_ptr<moodycamel::ProducerToken>> ptoks_;
  std::atomic<Oracle*> oracle_{nullptr};
  std::atomic<int> fan_{0};
  std::atomic<long> failed_{0};
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

}  // namespace ordo_compare

#endif  // ORDO_BENCH_PEERS_LIMIT_H_
