// bench/peers/common.h: what ordo_compare's engines share: the oracle every body
// records into, the plan of tokens, the busy body, and what a peer can run.
//
// Producers submit operations 0..ops-1; producer p submits ids [begin(p), end(p))
// in increasing order, and operation i carries token plan.token[i] (-1:
// independent). With several producers each token belongs to one producer only
// (MakePlan in compare.cc gives producer p the tokens t with t % producers == p),
// so a token's ids are still its creation order. Each body calls
// Oracle::Ran(i, plan.token[i]) and nothing else. The oracle records each id in
// a log that takes no contended line (run_log.h), checks that each token's
// operations run one at a time (no body of a token starts while another runs) and
// in increasing id order (per-token order), and spins for the body time
// (--body_ns). Check() then counts the log: every operation ran exactly once. A
// waiter polls the log's fill; every engine's end is seen that way, Ordo's too.
#ifndef ORDO_BENCH_PEERS_COMMON_H_
#define ORDO_BENCH_PEERS_COMMON_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "peers/run_log.h"

namespace ordo_compare {

// Busy work of `ns` nanoseconds, spinning on the steady clock; 0 reads no clock.
// Every peer's body runs it through Oracle::Ran, so the work is identical.
inline void BusyFor(int ns) {
  if (ns <= 0) return;
  const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(ns);
  while (std::chrono::steady_clock::now() < until) {
  }
}

struct Plan {
  std::vector<int> token;          // per operation: token index, -1 for independent
  std::vector<std::string> names;  // token index -> token string ("token-<i>")
  int producers = 1;               // producer p submits ids [begin(p), end(p))
  // W1-fan: > 0 means every id that is a multiple of `fan` is a root, submitted by
  // the producer; the root's body submits ids root+1 .. root+fan-1 (independent).
  int fan = 0;
  // W1-batch, W1-fan-batch: > 0 means independent operations are submitted in
  // groups of up to `batch` through the peer's batch submit (Feature::kBatch),
  // and a root submits its children that way.
  int batch = 0;
  long ops() const { return static_cast<long>(token.size()); }
  long begin(int p) const { return ops() * p / producers; }
  long end(int p) const { return ops() * (p + 1) / producers; }
};

class Oracle {
 public:
  // Untimed: sizes and touches the log, so no body allocates or faults a page.
  void Reset(long ops, int ntokens, int body_ns = 0) {
    log_.Reset(ops);
    last_ = std::make_unique<std::atomic<std::int64_t>[]>(ntokens > 0 ? ntokens : 1);
    for (int t = 0; t < ntokens; ++t) last_[t].store(-1, std::memory_order_relaxed);
    ops_ = ops;
    body_ns_ = body_ns;
    reorders_.store(0, std::memory_order_relaxed);
    overlaps_.store(0, std::memory_order_relaxed);
  }

  // The body of every operation, in every engine. The log writes only lines of
  // the calling thread (run_log.h); the per-token check shares a line between
  // the operations of one token, which the engine under test runs one at a time
  // anyway. A token's word holds the last id that ran, or kRunning while a body
  // runs: a body that finds kRunning overlaps another of its token (an engine
  // that ran one token on two threads at once), one that finds an id not below
  // its own ran out of order. One exchange on entry and one store on exit, the
  // same for every engine.
  void Ran(std::uint32_t id, int t) {
    if (t >= 0) {
      Enter(id, t);
      BusyFor(body_ns_);
      Leave(id, t);
    } else {
      BusyFor(body_ns_);
    }
    // Last, with release (run_log.h): a waiter that counts this body done sees
    // everything it did, and no body is still inside the oracle when Reset runs.
    log_.Record(id);
  }

  // Ran's per-token check, in two halves (public for its test). Relaxed is
  // enough for the counts: the engine under test must order a token's bodies
  // (happens-before from one to the next); an engine that does not is caught
  // whichever value the exchange reads.
  void Enter(std::uint32_t id, int t) {
    const std::int64_t seen = last_[t].exchange(kRunning, std::memory_order_relaxed);
    if (seen == kRunning) {
      overlaps_.fetch_add(1, std::memory_order_relaxed);
    } else if (seen >= static_cast<std::int64_t>(id)) {
      reorders_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  void Leave(std::uint32_t id, int t) { last_[t].store(id, std::memory_order_relaxed); }

  // Blocks until every operation completed once; false on timeout (lost work).
  // Polls: the last body cannot know it is the last without a shared counter.
  // The sleep is 5 ns per operation still to come, between 20 us and 1 ms: few
  // scans (each reads every chunk's fill line) while much is left, and an end
  // seen at most one 20 us sleep late (the floor).
  bool WaitDone(std::chrono::steady_clock::duration timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (long left; (left = ops_ - done()) > 0;) {
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::sleep_for(std::clamp(std::chrono::nanoseconds(5 * left),
                                             std::chrono::nanoseconds(20'000),
                                             std::chrono::nanoseconds(1'000'000)));
    }
    return true;
  }
  // The usual bound: a minute plus 20 us per operation.
  bool WaitDone() {
    return WaitDone(std::chrono::seconds(60) + std::chrono::microseconds(20) * ops_);
  }

  long done() const { return log_.done(); }
  long ops() const { return ops_; }

  // Empty when the run was correct, else what went wrong: counts the whole log.
  std::string Check() const {
    const ordo_bench::RunLog::Tally t = log_.Count();
    const long re = reorders_.load(std::memory_order_relaxed);
    const long ov = overlaps_.load(std::memory_order_relaxed);
    if (t.exact() && re == 0 && ov == 0 && t.recorded == ops_) return {};
    return "lost=" + std::to_string(t.lost) + " duplicated=" + std::to_string(t.duplicated) +
           " unknown=" + std::to_string(t.unknown) + " reordered=" + std::to_string(re) +
           " overlapped=" + std::to_string(ov) + " completed=" + std::to_string(t.recorded) +
           "/" + std::to_string(ops_);
  }

 private:
  static constexpr std::int64_t kRunning = -2;  // below every id and Reset's -1
  ordo_bench::RunLog log_;
  std::unique_ptr<std::atomic<std::int64_t>[]> last_;
  long ops_ = 0;
  int body_ns_ = 0;
  std::atomic<long> reorders_{0};
  std::atomic<long> overlaps_{0};
};

// What a workload asks of a peer (with or without tokens).
enum class Feature {
  kThroughput,  // W1, W2, W3, W2z and their -1us variants: one producer
  kProducers,   // the same from several producer threads at once
  kFanOut,      // W1-fan: operations submitted from inside operations
  kBatch,       // W1-batch, W1-fan-batch: a group of operations submitted at once
  kPostpone,    // W4 and the postponed memory probe: start at a due time
  kPaced,       // W5: paced submissions, latency and CPU
  kIdle,        // idle CPU of a built, idle engine
  kMemory,      // bytes per pending operation, bytes per idle token
};

// Finish for the peers that learn of completion only through the oracle (all but
// Ordo, whose Finish polls the oracle the same way and then calls WaitIdle):
// waits for the last body; "timed out" means lost work.
struct FinishesByOracle {
  std::string Finish(const Plan& /*plan*/, Oracle& oracle) {
    return oracle.WaitDone() ? std::string() : "timed out";
  }
};

// Why a peer cannot run a workload, or empty if it can.
struct Support {
  bool ok = true;
  std::string why;
};

}  // namespace ordo_compare

#endif  // ORDO_BENCH_PEERS_COMMON_H_
