// bench/peers/common.h: what ordo_compare's engines share: the oracle every body
// records into, the plan of tokens, the busy body, and what a peer can run.
//
// Producers submit operations 0..ops-1; producer p submits ids [begin(p), end(p))
// in increasing order, and operation i carries token plan.token[i] (-1:
// independent). With several producers each token belongs to one producer only
// (MakePlan in compare.cc gives producer p the tokens t with t % producers == p),
// so a token's ids are still its creation order. Each body calls
// Oracle::Ran(i, plan.token[i]) and nothing else. The oracle logs each id it is
// given into a chunk that the calling thread owns, checks that each token's
// operations run in increasing id order (per-token order) and spins for the body
// time (--body_ns). Check() then counts the log: every operation ran exactly
// once. A waiter polls the chunks' fills. Until the tenth session the body did
// two atomic increments on lines every thread shared (a per-operation byte and
// one completion counter), which cost the peers and Ordo alike as much as the
// hand-off itself on W1-fan (bench/RESULTS.md, "The oracle").
#ifndef ORDO_BENCH_PEERS_COMMON_H_
#define ORDO_BENCH_PEERS_COMMON_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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
    chunks_ = (ops + kChunkIds - 1) / kChunkIds + kSpareChunks;
    log_ = std::make_unique<std::uint32_t[]>(static_cast<std::size_t>(chunks_) * kChunkIds);
    std::fill_n(log_.get(), static_cast<std::size_t>(chunks_) * kChunkIds, 0u);  // faults it in
    fill_ = std::make_unique<Fill[]>(static_cast<std::size_t>(chunks_));
    last_ = std::make_unique<std::atomic<std::int64_t>[]>(ntokens > 0 ? ntokens : 1);
    for (int t = 0; t < ntokens; ++t) last_[t].store(-1, std::memory_order_relaxed);
    ops_ = ops;
    body_ns_ = body_ns;
    reorders_.store(0, std::memory_order_relaxed);
    next_chunk_.store(0, std::memory_order_relaxed);
    overflow_.clear();
    overflow_n_.store(0, std::memory_order_relaxed);
    // A new epoch makes every thread's cursor stale, whatever oracle it was for.
    // Relaxed: the peer's hand-off of each body orders this before its Ran.
    epoch_ = NextEpoch().fetch_add(1, std::memory_order_relaxed) + 1;
  }

  // The body of every operation, in every engine. It writes only lines its own
  // thread owns (its cursor, its chunk of the log), so the oracle itself adds
  // no contention between the engine's threads; only the per-token check below
  // shares a line, between the operations of one token, which the engine under
  // test runs one at a time anyway.
  void Ran(std::uint32_t id, int t) {
    Cursor& c = cursor_;
    if (c.epoch != epoch_ || c.n == kChunkIds) [[unlikely]] {
      if (!TakeChunk(c)) {
        Overflow(id);
        return After(t, id);
      }
    }
    log_[static_cast<std::size_t>(c.chunk) * kChunkIds + c.n] = id;
    ++c.n;
    // Release: publishes the id written above to done() and Check() (acquire).
    fill_[c.chunk].n.store(c.n, std::memory_order_release);
    After(t, id);
  }

  // Blocks until every operation completed once; false on timeout (lost work).
  // Polls: the last body cannot know it is the last without a shared counter.
  bool WaitDone(std::chrono::steady_clock::duration timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (done() < ops_) {
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    return true;
  }
  // The usual bound: a minute plus 20 us per operation.
  bool WaitDone() {
    return WaitDone(std::chrono::seconds(60) + std::chrono::microseconds(20) * ops_);
  }

  // Bodies completed so far.
  long done() const {
    // Relaxed: bounds the scan; a chunk taken later has fill 0 here anyway.
    const long taken = std::min(next_chunk_.load(std::memory_order_relaxed), chunks_);
    long n = overflow_n_.load(std::memory_order_acquire);
    for (long k = 0; k < taken; ++k) n += fill_[k].n.load(std::memory_order_acquire);
    return n;
  }
  long ops() const { return ops_; }

  // Empty when the run was correct, else what went wrong. Reads every logged id,
  // so it counts exactly: each operation ran once, none twice, none unknown.
  std::string Check() const {
    std::vector<std::uint8_t> runs(static_cast<std::size_t>(ops_), 0);
    long unknown = 0;
    auto count = [&](std::uint32_t id) {
      if (static_cast<long>(id) >= ops_) {
        ++unknown;
      } else if (runs[id] < 255) {
        ++runs[id];
      }
    };
    const long taken = std::min(next_chunk_.load(std::memory_order_relaxed), chunks_);
    for (long k = 0; k < taken; ++k) {
      const std::uint32_t n = fill_[k].n.load(std::memory_order_acquire);
      for (std::uint32_t i = 0; i < n; ++i) count(log_[static_cast<std::size_t>(k) * kChunkIds + i]);
    }
    {
      std::lock_guard<std::mutex> l(overflow_m_);
      for (std::uint32_t id : overflow_) count(id);
    }
    long lost = 0, dup = 0;
    for (std::uint8_t v : runs) {
      lost += v == 0;
      dup += v > 1;
    }
    const long re = reorders_.load(std::memory_order_relaxed);
    const long completed = done();
    if (lost == 0 && dup == 0 && unknown == 0 && re == 0 && completed == ops_) return {};
    return "lost=" + std::to_string(lost) + " duplicated=" + std::to_string(dup) +
           " unknown=" + std::to_string(unknown) + " reordered=" + std::to_string(re) +
           " completed=" + std::to_string(completed) + "/" + std::to_string(ops_);
  }

 private:
  // The log is cut into chunks of kChunkIds ids; a thread takes one at a time and
  // fills it alone. A run needs at most ops / kChunkIds chunks plus one partly
  // filled per thread; kSpareChunks covers that many threads, and a thread past
  // them logs under a mutex instead (correct, only slower).
  static constexpr std::uint32_t kChunkIds = 1024;
  static constexpr long kSpareChunks = 256;
  struct Cursor {
    std::uint64_t epoch;
    long chunk;
    std::uint32_t n;
  };
  struct alignas(64) Fill {
    std::atomic<std::uint32_t> n{0};
  };
  static std::atomic<std::uint64_t>& NextEpoch() {
    static std::atomic<std::uint64_t> e{0};
    return e;
  }

  bool TakeChunk(Cursor& c) {
    // Relaxed: hands out distinct indices; the chunk's contents are published
    // through its own fill.
    const long k = next_chunk_.fetch_add(1, std::memory_order_relaxed);
    if (k >= chunks_) return false;
    c.epoch = epoch_;
    c.chunk = k;
    c.n = 0;
    return true;
  }
  void Overflow(std::uint32_t id) {
    std::lock_guard<std::mutex> l(overflow_m_);
    overflow_.push_back(id);
    // Release: done() counts it only with the id in place.
    overflow_n_.fetch_add(1, std::memory_order_release);
  }
  void After(int t, std::uint32_t id) {
    if (t >= 0) {
      // Relaxed is enough: the engine under test must order a token's bodies.
      const std::int64_t seen = last_[t].load(std::memory_order_relaxed);
      if (seen >= static_cast<std::int64_t>(id)) reorders_.fetch_add(1, std::memory_order_relaxed);
      last_[t].store(id, std::memory_order_relaxed);
    }
    BusyFor(body_ns_);
  }

  static inline thread_local Cursor cursor_{0, 0, 0};  // epoch 0: stale
  std::unique_ptr<std::uint32_t[]> log_;
  std::unique_ptr<Fill[]> fill_;
  long chunks_ = 0;
  std::unique_ptr<std::atomic<std::int64_t>[]> last_;
  long ops_ = 0;
  int body_ns_ = 0;
  std::uint64_t epoch_ = 0;
  std::atomic<long> reorders_{0};
  alignas(64) std::atomic<long> next_chunk_{0};
  alignas(64) std::atomic<long> overflow_n_{0};
  mutable std::mutex overflow_m_;
  std::vector<std::uint32_t> overflow_;
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
// Ordo, which has WaitIdle): waits for the last body; "timed out" means lost work.
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
