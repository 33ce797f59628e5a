// bench/peers/limit.h: the practical ceiling for independent hand-off. One
// moodycamel::ConcurrentQueue of 8-byte items, filled through a ProducerToken, and N
// consumer threads that spin on try_dequeue_bulk with a ConsumerToken (pausing, then
// yielding, when the queue is empty). No states, no ordering, no handles: W1 only.
#ifndef ORDO_BENCH_PEERS_LIMIT_H_
#define ORDO_BENCH_PEERS_LIMIT_H_

#include <atomic>
#include <cstdint>
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
  static Support Supports(bool tokens) {
    if (tokens) return {false, "raw queue hand-off has no per-token order (W1 only)"};
    return {};
  }

  explicit LimitPeer(int workers) : ptok_(queue_) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { Consume(); });
  }
  ~LimitPeer() {
    stop_.store(true, std::memory_order_relaxed);
    for (std::thread& t : threads_) t.join();
  }
  LimitPeer(const LimitPeer&) = delete;
  LimitPeer& operator=(const LimitPeer&) = delete;

  void Prepare(const Plan&) {}
  void Settle() {}

  std::string Run(const Plan& plan, Oracle& oracle) {
    oracle_.store(&oracle, std::memory_order_release);
    const long ops = plan.ops();
    for (long i = 0; i < ops; ++i) {
      if (!queue_.enqueue(ptok_, Item{static_cast<std::uint32_t>(i), plan.token[i]})) {
        return "enqueue failed at " + std::to_string(i);
      }
    }
    if (!oracle.WaitDone(std::chrono::seconds(60) + std::chrono::microseconds(20) * ops)) {
      return "timed out";
    }
    return {};
  }

 private:
  struct Item {
    std::uint32_t id;
    std::int32_t token;
  };

  void Consume() {
    moodycamel::ConsumerToken ctok(queue_);
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
      for (std::size_t k = 0; k < n; ++k) o->Ran(batch[k].id, batch[k].token);
    }
  }

  moodycamel::ConcurrentQueue<Item> queue_;
  moodycamel::ProducerToken ptok_;
  std::atomic<Oracle*> oracle_{nullptr};
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

}  // namespace ordo_compare

#endif  // ORDO_BENCH_PEERS_LIMIT_H_
