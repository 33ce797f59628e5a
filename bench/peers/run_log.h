// bench/peers/run_log.h: which operations ran, and how often, recorded without
// contention, for ordo_compare's oracle (common.h).
//
// Each thread appends the ids it runs to a chunk of the log that it alone fills
// (a cursor in a thread_local, chunks handed out by one fetch_add per 1,024
// ids), and publishes the chunk's fill with a release store to a line of its
// own. Tally() reads every chunk and counts: each id once, none twice, none out
// of range. A body so writes only lines its own thread owns. Until the tenth
// session the oracle did an atomic increment per operation on a byte array
// (neighbouring ids, run by different workers, share a line) and one more on a
// single completion counter: on W1-fan that cost the peers and Ordo alike as
// much as the hand-off itself (bench/HISTORY.md, tenth session). ordo_driver
// keeps its byte array: there the log measured no better on two cores (W1
// 85-87 against 91-92 ns, W3 206-217 against 180-204, alternated 3 times).
#ifndef ORDO_BENCH_PEERS_RUN_LOG_H_
#define ORDO_BENCH_PEERS_RUN_LOG_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace ordo_bench {

// One log is live at a time in a run (each cursor remembers the epoch of the
// last Reset it saw); a thread recording into two alternately stays correct,
// but takes a chunk at every switch and soon overflows into the mutex.
class RunLog {
 public:
  // Untimed: sizes and touches the log, so no body allocates or faults a page.
  // Not concurrent with Record.
  void Reset(long ops) {
    chunks_ = (ops + kChunkIds - 1) / kChunkIds + kSpareChunks;
    const std::size_t ids = static_cast<std::size_t>(chunks_) * kChunkIds;
    log_ = std::make_unique<std::uint32_t[]>(ids);
    std::fill_n(log_.get(), ids, 0u);  // faults it in
    fill_ = std::make_unique<Fill[]>(static_cast<std::size_t>(chunks_));
    ops_ = ops;
    next_chunk_.store(0, std::memory_order_relaxed);
    overflow_.clear();
    overflow_n_.store(0, std::memory_order_relaxed);
    // A new epoch makes every thread's cursor stale, whatever log it was for.
    // Relaxed: the hand-off of each body to its thread orders this before it.
    epoch_ = NextEpoch().fetch_add(1, std::memory_order_relaxed) + 1;
  }

  // The hot path: one store of the id and one of the chunk's fill.
  void Record(std::uint32_t id) {
    Cursor& c = cursor_;
    if (c.epoch != epoch_ || c.n == kChunkIds) [[unlikely]] {
      if (!TakeChunk(c)) return Overflow(id);
    }
    log_[static_cast<std::size_t>(c.chunk) * kChunkIds + c.n] = id;
    ++c.n;
    // Release: publishes the id written above to done() and Tally() (acquire).
    fill_[c.chunk].n.store(c.n, std::memory_order_release);
  }

  // Records so far.
  long done() const {
    long n = overflow_n_.load(std::memory_order_acquire);
    for (long k = 0, taken = taken_chunks(); k < taken; ++k) {
      n += fill_[k].n.load(std::memory_order_acquire);
    }
    return n;
  }

  struct Tally {
    long lost = 0;        // ids in [0, ops) never recorded
    long duplicated = 0;  // ids recorded more than once
    long unknown = 0;     // records of ids outside [0, ops)
    long recorded = 0;    // records in all
    bool exact() const { return lost == 0 && duplicated == 0 && unknown == 0; }
  };
  // Counts every record. Call once the bodies are done (or to see how far they are).
  Tally Count() const {
    Tally t;
    std::vector<std::uint8_t> runs(static_cast<std::size_t>(ops_), 0);
    auto count = [&](std::uint32_t id) {
      ++t.recorded;
      if (static_cast<long>(id) >= ops_) {
        ++t.unknown;
      } else if (runs[id] < 255) {
        ++runs[id];
      }
    };
    for (long k = 0, taken = taken_chunks(); k < taken; ++k) {
      const std::uint32_t n = fill_[k].n.load(std::memory_order_acquire);
      const std::uint32_t* ids = &log_[static_cast<std::size_t>(k) * kChunkIds];
      for (std::uint32_t i = 0; i < n; ++i) count(ids[i]);
    }
    {
      std::lock_guard<std::mutex> l(overflow_m_);
      for (std::uint32_t id : overflow_) count(id);
    }
    for (std::uint8_t v : runs) {
      t.lost += v == 0;
      t.duplicated += v > 1;
    }
    return t;
  }

 private:
  // A run needs at most ops / kChunkIds chunks plus one partly filled per
  // thread; kSpareChunks covers that many threads, and records past them go to
  // a vector under a mutex (correct, only slower).
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

  long taken_chunks() const {
    // Relaxed: bounds the scan; a chunk taken after it has fill 0 here anyway.
    return std::min(next_chunk_.load(std::memory_order_relaxed), chunks_);
  }
  bool TakeChunk(Cursor& c) {
    // Relaxed: hands out distinct indices; a chunk's contents are published
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

  // Epoch 0 matches no log: a Reset log's epoch is 1 or more, an unreset one's
  // kNever, so a fresh cursor takes a chunk (or, unreset, overflows safely).
  static constexpr std::uint64_t kNever = ~std::uint64_t{0};
  static constinit inline thread_local Cursor cursor_{0, 0, 0};
  std::unique_ptr<std::uint32_t[]> log_;
  std::unique_ptr<Fill[]> fill_;
  long chunks_ = 0;
  long ops_ = 0;
  std::uint64_t epoch_ = kNever;
  alignas(64) std::atomic<long> next_chunk_{0};
  alignas(64) std::atomic<long> overflow_n_{0};
  mutable std::mutex overflow_m_;
  std::vector<std::uint32_t> overflow_;
};

}  // namespace ordo_bench

#endif  // ORDO_BENCH_PEERS_RUN_LOG_H_
