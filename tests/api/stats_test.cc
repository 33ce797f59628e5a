// stats_test.cc: Stats' latency histograms (DESIGN.md section 3): the buckets,
// the quantiles, the sampling, and the queue wait, run time and lateness an
// engine records, measured on a manual clock so every duration is exact.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <limits>
#include <string>
#include <thread>

#include "ordo/engine.h"
#include "support/journal.h"

namespace ordo {
namespace {

using ::ordo::testing::Gate;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr std::uint64_t Ns(std::chrono::nanoseconds d) { return static_cast<std::uint64_t>(d.count()); }

// Every duration lands in the bucket whose bounds hold it, buckets are in order,
// and above 8 ns each is at most an eighth of its lower bound wide.
TEST(LatencyHistogramTest, EveryDurationFallsInABucketAtMostAnEighthWide) {
  using H = LatencyHistogram;
  int last = -1;
  for (std::uint64_t v = 0; v < 5000; ++v) {
    const int b = H::BucketOf(v);
    ASSERT_GE(b, last) << v;  // monotonic
    last = b;
    ASSERT_LE(H::LowerNs(b), v) << v;
    ASSERT_LT(v, H::LowerNs(b + 1)) << v;
  }
  for (int e = 12; e < H::kMaxExponent; ++e) {
    for (std::uint64_t v : {std::uint64_t{1} << e, (std::uint64_t{1} << e) + 12345,
                            (std::uint64_t{2} << e) - 1}) {
      const int b = H::BucketOf(v);
      ASSERT_LT(b, H::kBuckets) << v;
      ASSERT_LE(H::LowerNs(b), v) << v;
      ASSERT_LT(v, H::LowerNs(b + 1)) << v;
      ASSERT_LE((H::LowerNs(b + 1) - H::LowerNs(b)) * 8, H::LowerNs(b)) << v;
    }
  }
  for (int b = 1; b < H::kBuckets; ++b) ASSERT_LT(H::LowerNs(b - 1), H::LowerNs(b)) << b;
  // Beyond the last bound, all in the last bucket.
  EXPECT_EQ(H::BucketOf(std::uint64_t{1} << H::kMaxExponent), H::kBuckets - 1);
  EXPECT_EQ(H::BucketOf(~std::uint64_t{0}), H::kBuckets - 1);
  EXPECT_EQ(H::LowerNs(H::kBuckets), std::uint64_t{1} << H::kMaxExponent);
}

// A quantile is the end of its sample's bucket: never below the true value, at
// most an eighth above it, never above the largest sample.
TEST(LatencyHistogramTest, AQuantileIsTheEndOfItsSamplesBucketAndNeverAboveTheMax) {
  LatencyHistogram h;
  EXPECT_EQ(h.Quantile(0.5), 0ns);
  EXPECT_EQ(h.Mean(), 0ns);
  for (std::uint64_t us = 1; us <= 1000; ++us) {
    const std::uint64_t v = us * 1000;
    ++h.counts[LatencyHistogram::BucketOf(v)];
    ++h.count;
    h.sum_ns += v;
    h.max_ns = std::max(h.max_ns, v);
  }
  for (double q : {0.01, 0.5, 0.9, 0.99, 0.999}) {
    const std::uint64_t truth = static_cast<std::uint64_t>(q * 1000 + 0.5) * 1000;
    const std::uint64_t got = Ns(h.Quantile(q));
    EXPECT_GE(got, truth) << q;
    EXPECT_LE(got, truth + truth / 8) << q;
  }
  EXPECT_EQ(h.Quantile(1.0), 1ms);  // the max itself, not its bucket's end
  EXPECT_EQ(h.Quantile(0.0), h.Quantile(0.001));  // the first sample
  EXPECT_EQ(h.Mean(), 500500ns);
  LatencyHistogram twice = h;
  twice.Merge(h);
  EXPECT_EQ(twice.count, 2000u);
  EXPECT_EQ(twice.sum_ns, 2 * h.sum_ns);
  EXPECT_EQ(twice.Quantile(0.5), h.Quantile(0.5));
}

// A sample can reach 2^64 - 2 ns (a duration from a clock far before 1970 to a
// time far after it is exact in uint64): read back, it saturates at the largest
// nanoseconds instead of wrapping to a negative duration.
TEST(LatencyHistogramTest, ASampleBeyondTheRangeOfNanosecondsReadsAsItsMaximum) {
  LatencyHistogram h;
  const std::uint64_t v = ~std::uint64_t{0} - 1;
  ++h.counts[LatencyHistogram::BucketOf(v)];
  h.count = 1;
  h.sum_ns = v;
  h.max_ns = v;
  EXPECT_EQ(h.Quantile(1.0), std::chrono::nanoseconds::max());
  EXPECT_EQ(h.Quantile(0.5), std::chrono::nanoseconds::max());
  EXPECT_EQ(h.Mean(), std::chrono::nanoseconds::max());
}

// With every operation sampled: the head of a token runs 5 ms on the manual
// clock while the next waits behind it, so the head's wait is 0 and its run
// 5 ms, the next's wait 5 ms and its run 0. Nothing was postponed: no lateness.
TEST(StatsTest, QueueWaitAndRunTimeAreMeasuredOnTheEnginesClock) {
  ManualClock clock;
  Engine engine({.workers = 2, .clock = &clock, .latency_sample_every = 1});
  Gate gate;
  std::latch started(1);
  auto head = engine.Submit([&started, wait = gate.Waiter()] {
    started.count_down();
    wait();
  }, {.token = "t"});
  ASSERT_TRUE(head.ok());
  ASSERT_TRUE(engine.Post([] {}, {.token = "t"}).ok());  // a sampled Post: a full node
  started.wait();
  clock.Advance(5ms);
  gate.Open();
  ASSERT_TRUE(engine.WaitIdle().ok());
  const Stats s = engine.stats();
  EXPECT_EQ(s.queue_wait.count, 2u);
  EXPECT_EQ(s.queue_wait.sum_ns, Ns(5ms));
  EXPECT_EQ(s.queue_wait.max_ns, Ns(5ms));
  EXPECT_EQ(s.queue_wait.Quantile(0.5), 0ns);
  EXPECT_EQ(s.queue_wait.Quantile(1.0), 5ms);
  EXPECT_EQ(s.run_time.count, 2u);
  EXPECT_EQ(s.run_time.sum_ns, Ns(5ms));
  EXPECT_EQ(s.run_time.max_ns, Ns(5ms));
  EXPECT_EQ(s.lateness.count, 0u);
}

// A postponed operation released 2 ms after its time: lateness 2 ms, and its
// queue wait counts from the due time, not from the submission 12 ms earlier.
// Its retry, due 3 ms after the attempt, starts 1 ms late: a second lateness
// sample and a second run, but no second queue wait.
TEST(StatsTest, LatenessIsMeasuredFromTheDueTimeOfEachPostponedAttempt) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock, .latency_sample_every = 1});
  std::atomic<int> attempts{0};
  ASSERT_TRUE(engine
                  .Post(
                      [&attempts](Context& ctx) {
                        if (attempts.fetch_add(1) == 0) ctx.RetryAfter(3ms);
                      },
                      {.postpone_until = clock.now() + 10ms})
                  .ok());
  ASSERT_TRUE(engine.WaitIdle().ok());  // nothing runnable before its time
  EXPECT_EQ(attempts.load(), 0);
  clock.Advance(12ms);
  ASSERT_TRUE(engine.WaitIdle().ok());  // the first attempt; the retry is postponed
  ASSERT_EQ(attempts.load(), 1);
  clock.Advance(4ms);
  ASSERT_TRUE(engine.WaitIdle().ok());
  ASSERT_EQ(attempts.load(), 2);
  const Stats s = engine.stats();
  EXPECT_EQ(s.lateness.count, 2u);
  EXPECT_EQ(s.lateness.sum_ns, Ns(3ms));  // 2 ms, then 1 ms
  EXPECT_EQ(s.lateness.max_ns, Ns(2ms));
  EXPECT_EQ(s.queue_wait.count, 1u);
  EXPECT_EQ(s.queue_wait.sum_ns, Ns(2ms));
  EXPECT_EQ(s.run_time.count, 2u);
  EXPECT_EQ(s.run_time.sum_ns, 0u);  // the clock stood still while they ran
  EXPECT_EQ(s.retried, 1u);
}

// A clock stepped back across most of int64 while operations wait and run:
// every duration measured across the step is 0, not a wrapped int64 (from
// 2189 back to 1751 the difference overflowed, and the histograms recorded
// 146 years; UBSan's build stopped there).
TEST(StatsTest, DurationsAcrossAClockSteppedBackFarAreZero) {
  constexpr auto kFar = std::chrono::nanoseconds(std::numeric_limits<std::int64_t>::max() / 4 * 3);
  ManualClock clock{Clock::time_point(kFar)};
  Engine engine({.workers = 1, .clock = &clock, .latency_sample_every = 1});
  Gate gate;
  std::latch started(1);
  ASSERT_TRUE(engine.Post([&started, wait = gate.Waiter()] {
    started.count_down();
    wait();
  }).ok());  // holds the one worker
  started.wait();  // running: the released one cannot start before the step below
  ASSERT_TRUE(engine.Post([] {}, {.postpone_until = clock.now() + 1s}).ok());
  clock.Advance(2s);  // the postponed one is released, behind the first
  clock.Set(Clock::time_point(-kFar));
  gate.Open();
  ASSERT_TRUE(engine.WaitIdle().ok());
  const Stats s = engine.stats();
  EXPECT_EQ(s.succeeded, 2u);
  EXPECT_EQ(s.lateness.count, 1u);
  EXPECT_EQ(s.lateness.max_ns, 0u);
  EXPECT_EQ(s.queue_wait.count, 2u);
  // The first waited from its submission to its start, both before the step
  // (at most the 2 s the clock moved meanwhile); the second from its due time
  // to a start before it.
  EXPECT_LE(s.queue_wait.max_ns, Ns(2s));
  EXPECT_EQ(s.run_time.count, 2u);
  EXPECT_EQ(s.run_time.max_ns, 0u);
}

// One in N of each thread's submissions is sampled, whichever way it was made;
// at 0 none is.
TEST(StatsTest, OneInEveryNSubmissionsOfAThreadIsSampled) {
  for (std::uint32_t every : {0u, 1u, 4u, 64u}) {
    Engine engine({.workers = 2, .latency_sample_every = every});
    constexpr int kEach = 256;  // a multiple of every N: exactly kEach / N per way
    std::thread submitter([&] {
      for (int i = 0; i < kEach; ++i) ASSERT_TRUE(engine.Post([] {}).ok());
      for (int i = 0; i < kEach; ++i) {
        ASSERT_TRUE(engine.Post([] {}, {.token = "t" + std::to_string(i % 7)}).ok());
      }
      for (int i = 0; i < kEach; ++i) ASSERT_TRUE(engine.Submit([] {}).ok());
      Batch batch(engine);
      for (int i = 0; i < kEach; ++i) {
        ASSERT_TRUE((i % 2 == 0 ? batch.Add([] {}) : batch.Add([] {}, Token(i % 5))).ok());
      }
      ASSERT_TRUE(engine.PostBatch(batch).ok());
    });
    submitter.join();
    ASSERT_TRUE(engine.WaitIdle().ok());
    const Stats s = engine.stats();
    const std::uint64_t want = every == 0 ? 0 : 4 * kEach / every;
    EXPECT_EQ(s.succeeded, 4u * kEach);
    EXPECT_EQ(s.queue_wait.count, want) << every;
    EXPECT_EQ(s.run_time.count, want) << every;
    EXPECT_EQ(s.lateness.count, 0u) << every;
  }
}

// Stats::rejected counts refused submissions: a refused Postpone changes
// nothing, the count included (a time before the epoch once went through
// Submit's validation, which counted it).
TEST(StatsTest, ARefusedPostponeIsNotCountedAsARejectedSubmission) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  auto h = engine.Submit([] {}, {.postpone_until = clock.now() + 1h});
  ASSERT_TRUE(h.ok());
  const absl::Status before_epoch = engine.Postpone(*h, Clock::time_point(-1s));
  EXPECT_EQ(before_epoch.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(before_epoch.message()), HasSubstr("Postpone: the time is before 1970"));
  EXPECT_EQ(engine.Postpone(*h, clock.now() + std::chrono::hours(24 * 366 * 11)).code(),
            absl::StatusCode::kInvalidArgument);  // beyond the horizon
  EXPECT_EQ(engine.stats().rejected, 0u);
  EXPECT_EQ(h->state(), State::kPostponed);
  ASSERT_TRUE(engine.Cancel(*h).ok());
}

// The Prometheus text carries each histogram: cumulative buckets at powers of
// two of a nanosecond, in seconds, then +Inf, the sum and the count.
TEST(StatsTest, PrometheusTextHasEachHistogramWithCumulativeBuckets) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock, .latency_sample_every = 1});
  Gate gate;
  std::latch started(1);
  ASSERT_TRUE(engine.Post([&started, wait = gate.Waiter()] {
    started.count_down();
    wait();
  }).ok());
  started.wait();
  clock.Advance(3us);  // the run: 3,000 ns, between 2^11 and 2^12
  gate.Open();
  ASSERT_TRUE(engine.WaitIdle().ok());
  const std::string text = engine.stats().ToPrometheus();
  EXPECT_THAT(text, HasSubstr("# TYPE ordo_run_time_seconds histogram\n"));
  EXPECT_THAT(text, HasSubstr("ordo_run_time_seconds_bucket{le=\"2.048e-06\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("ordo_run_time_seconds_bucket{le=\"4.096e-06\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("ordo_run_time_seconds_bucket{le=\"+Inf\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("ordo_run_time_seconds_sum 0.000003000\n"));
  EXPECT_THAT(text, HasSubstr("ordo_run_time_seconds_count 1\n"));
  EXPECT_THAT(text, HasSubstr("ordo_queue_wait_seconds_bucket{le=\"1.28e-07\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE ordo_lateness_seconds histogram\n"));
  EXPECT_THAT(text, HasSubstr("ordo_lateness_seconds_count 0\n"));
}

}  // namespace
}  // namespace ordo
