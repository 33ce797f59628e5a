// ordo/stats.h: a snapshot of an engine's counters, gauges and latency histograms.
//
// Engine::stats() sums per-thread counter stripes; no lock is taken and no counter
// is shared by every operation. The snapshot is not atomic across fields: under
// load, pending may lag submitted by the operations in flight during the read.
#ifndef ORDO_STATS_H_
#define ORDO_STATS_H_

#include <array>
#include <bit>
#include <chrono>
#include <cstdint>
#include <string>

namespace ordo {

// A distribution of durations in log-linear buckets: the values below 8 ns have a
// bucket each, and every power of two above is split into 8 equal buckets, so a
// bucket is at most 12.5 % wide and a quantile read from it is at most that far
// above the true one. Durations from 15/8 * 2^39 ns (17 minutes) up share the
// last bucket; max_ns keeps the largest exactly.
struct LatencyHistogram {
  static constexpr int kSubBits = 3;  // 8 buckets per power of two
  static constexpr int kMaxExponent = 40;
  static constexpr int kBuckets = (kMaxExponent - kSubBits + 1) << kSubBits;  // 304

  std::array<std::uint64_t, kBuckets> counts{};  // samples per bucket
  std::uint64_t count = 0;                       // samples in all
  std::uint64_t sum_ns = 0;                      // their sum (wraps after 584 years)
  std::uint64_t max_ns = 0;                      // the largest sample

  // The bucket of a duration of `ns` nanoseconds.
  static constexpr int BucketOf(std::uint64_t ns) {
    if (ns < (std::uint64_t{1} << kSubBits)) return static_cast<int>(ns);
    const int e = std::bit_width(ns) - 1;  // 2^e <= ns < 2^(e+1), e >= kSubBits
    if (e >= kMaxExponent) return kBuckets - 1;
    const int sub = static_cast<int>(ns >> (e - kSubBits)) & ((1 << kSubBits) - 1);
    return ((e - kSubBits + 1) << kSubBits) + sub;
  }
  // The smallest duration in bucket i; bucket i holds [LowerNs(i), LowerNs(i + 1)).
  static constexpr std::uint64_t LowerNs(int i) {
    if (i < (1 << kSubBits)) return static_cast<std::uint64_t>(i);
    const int e = (i >> kSubBits) + kSubBits - 1;
    const std::uint64_t sub = static_cast<std::uint64_t>(i & ((1 << kSubBits) - 1));
    return ((std::uint64_t{1} << kSubBits) + sub) << (e - kSubBits);
  }

  // An upper bound of the q-quantile (q in [0, 1]): the end of the bucket that
  // holds the ceil(q * count)-th smallest sample, or max_ns if that is smaller.
  // Zero when there are no samples.
  std::chrono::nanoseconds Quantile(double q) const;
  // The mean, zero when there are no samples.
  std::chrono::nanoseconds Mean() const;
  // Adds another histogram's samples to this one.
  void Merge(const LatencyHistogram& other);
};

struct Stats {
  std::uint64_t submitted = 0;  // accepted by Submit (recurrences' occurrences included)
  std::uint64_t rejected = 0;   // refused by Submit with an error
  std::uint64_t started = 0;    // attempts started (a retried operation counts each attempt)
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;
  std::uint64_t canceled = 0;
  std::uint64_t retried = 0;    // attempts that asked for a retry and got one
  std::uint64_t pending = 0;    // accepted and not yet terminal
  std::uint64_t postponed = 0;  // timers pending in the wheel
  std::uint64_t active_chains = 0;  // chains in memory: tokens with operations, and idle
                                    // ones not yet swept (an idle engine holds none)
  std::uint64_t steals = 0;     // operations taken from another worker's deque
  std::uint64_t parks = 0;      // times a worker went to sleep
  int workers = 0;

  // Latencies of a sample of the operations: one in Options::latency_sample_every
  // of those submitted from each thread (all of them at 1, none at 0). A sampled
  // operation reads the clock once at submit and twice when it runs.
  // queue_wait: from when the operation could first run (its submission, or its
  //   due time if postponed; time spent suspended counts, and so does a
  //   postponement that Postpone or Resume cleared) to the start of its first
  //   attempt. Behind a busy token, the wait for the token's earlier operations
  //   counts too: it is the delay a caller sees.
  LatencyHistogram queue_wait;
  // run_time: from the start to the end of each attempt (a retried operation
  //   gives one sample per attempt).
  LatencyHistogram run_time;
  // lateness: from the due time to the start, for each attempt that waited for
  //   one (a postponement, a retry's delay). Never negative: Ordo never starts
  //   an operation before its time.
  LatencyHistogram lateness;

  // The counters, gauges and histograms (in seconds, buckets at powers of two
  // of a nanosecond) in Prometheus' text exposition format, names prefixed "ordo_".
  std::string ToPrometheus() const;
};

}  // namespace ordo

#endif  // ORDO_STATS_H_
