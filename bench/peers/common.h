// bench/peers/common.h: what ordo_compare's engines share: the oracle every body
// records into, the plan of tokens, and the completion wait used by every peer.
//
// One producer submits operations 0..ops-1 in order; operation i carries token
// plan[i] (-1: independent). Each body calls Oracle::Ran(i, plan[i]) and nothing
// else. The oracle counts runs per operation (exactly-once), checks that each
// token's operations run in increasing id order (per-token order: ids are creation
// order with one producer), and counts completions; the last completion wakes the
// waiter through a mutex and a condition variable.
#ifndef ORDO_BENCH_PEERS_COMMON_H_
#define ORDO_BENCH_PEERS_COMMON_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ordo_compare {

struct Plan {
  std::vector<int> token;          // per operation: token index, -1 for independent
  std::vector<std::string> names;  // token index -> token string ("token-<i>")
  long ops() const { return static_cast<long>(token.size()); }
};

class Oracle {
 public:
  void Reset(long ops, int ntokens) {
    runs_ = std::make_unique<std::atomic<std::uint8_t>[]>(ops);
    last_ = std::make_unique<std::atomic<std::int64_t>[]>(ntokens > 0 ? ntokens : 1);
    for (int t = 0; t < ntokens; ++t) last_[t].store(-1, std::memory_order_relaxed);
    ops_ = ops;
    reorders_.store(0, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
  }

  // The body of every operation, in every engine.
  void Ran(std::uint32_t id, int t) {
    runs_[id].fetch_add(1, std::memory_order_relaxed);
    if (t >= 0) {
      // Relaxed is enough: the engine under test must order a token's bodies.
      const std::int64_t seen = last_[t].load(std::memory_order_relaxed);
      if (seen >= static_cast<std::int64_t>(id)) reorders_.fetch_add(1, std::memory_order_relaxed);
      last_[t].store(id, std::memory_order_relaxed);
    }
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == ops_) {
      std::lock_guard<std::mutex> l(m_);
      cv_.notify_all();
    }
  }

  // Blocks until every operation completed once; false on timeout (lost work).
  bool WaitDone(std::chrono::steady_clock::duration timeout) {
    std::unique_lock<std::mutex> l(m_);
    return cv_.wait_for(l, timeout,
                        [&] { return done_.load(std::memory_order_acquire) >= ops_; });
  }

  long done() const { return done_.load(std::memory_order_acquire); }

  // Empty when the run was correct, else what went wrong.
  std::string Check() const {
    long lost = 0, dup = 0;
    for (long i = 0; i < ops_; ++i) {
      const int v = runs_[i].load(std::memory_order_relaxed);
      lost += v == 0;
      dup += v > 1;
    }
    const long re = reorders_.load(std::memory_order_relaxed);
    if (lost == 0 && dup == 0 && re == 0 && done() == ops_) return {};
    return "lost=" + std::to_string(lost) + " duplicated=" + std::to_string(dup) +
           " reordered=" + std::to_string(re) + " completed=" + std::to_string(done()) + "/" +
           std::to_string(ops_);
  }

 private:
  std::unique_ptr<std::atomic<std::uint8_t>[]> runs_;
  std::unique_ptr<std::atomic<std::int64_t>[]> last_;
  long ops_ = 0;
  std::atomic<long> reorders_{0};
  alignas(64) std::atomic<long> done_{0};
  alignas(64) std::mutex m_;
  std::condition_variable cv_;
};

// Why a peer cannot run a workload, or empty if it can.
struct Support {
  bool ok = true;
  std::string why;
};

}  // namespace ordo_compare

#endif  // ORDO_BENCH_PEERS_COMMON_H_
