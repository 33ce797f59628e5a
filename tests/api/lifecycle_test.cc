// lifecycle_test.cc: the time and control half of DESIGN.md section 1, through the
// public API, with time driven by ManualClock (no sleeps): postponement, suspend and
// resume, retries and backoff, failure policies, token controls, Explain,
// recurrence, and shutdown of postponed work.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <functional>
#include <future>
#include <latch>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ordo/engine.h"
#include "support/journal.h"

namespace ordo {
namespace {

using ::ordo::testing::AwaitState;
using ::ordo::testing::Gate;
using ::ordo::testing::Journal;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

// --- Postponement --------------------------------------------------------------

TEST(PostponeTest, APostponedOperationNeverStartsBeforeItsTime) {
  ManualClock clock;
  Engine engine({.workers = 2, .clock = &clock});
  const auto due = clock.now() + 10ms;
  auto h = engine.Submit([] {}, {.postpone_until = due});
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->state(), State::kPostponed);
  clock.Advance(9ms);
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(h->state(), State::kPostponed);  // Advance released nothing: not due
  clock.Advance(1ms);
  ASSERT_TRUE(AwaitState(*h, State::kSucceeded));
  ASSERT_TRUE(h->started_at().has_value());
  EXPECT_GE(*h->started_at(), due);
}

// A clock stepped back (ManualClock::Set; NTP on the system clock): an operation
// postponed after the step to a time the wheel has passed but the clock has not
// once ran at the next release, before its time (the wheel kept its time then;
// now its next Advance takes it back with the clock, timing_wheel.h "A clock
// stepped back", and either way nothing may start before the clock reads its time).
TEST(PostponeTest, AfterTheClockStepsBackNothingStartsBeforeTheClockReadsItsTime) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  const Clock::time_point t0 = clock.now();
  clock.Advance(1h);  // the wheel's time: t0 + 1 h
  clock.Set(t0);      // the clock steps back an hour
  std::atomic<bool> ran{false};
  auto h = engine.Submit([&] { ran = true; }, {.postpone_until = t0 + 10min});
  ASSERT_TRUE(h.ok());
  clock.Advance(1s);  // a release, 9 min 59 s before its time
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(h->state(), State::kPostponed);
  clock.Advance(10min);  // now past it
  ASSERT_TRUE(AwaitState(*h, State::kSucceeded));
  EXPECT_GE(*h->started_at(), t0 + 10min);
}

// ManualClock::Advance saturates at the end of the range: "to the end of time"
// releases everything postponed (the add once wrapped to before 1970, and the
// clock then released nothing).
TEST(PostponeTest, AdvancingAManualClockToTheEndOfTimeReleasesEverything) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  auto h = engine.Submit([] {}, {.postpone_until = clock.now() + 24h});
  ASSERT_TRUE(h.ok());
  clock.Advance(std::chrono::nanoseconds::max());
  EXPECT_EQ(clock.now(), Clock::time_point::max());
  ASSERT_TRUE(AwaitState(*h, State::kSucceeded));
  clock.Advance(1h);  // stays at the end
  EXPECT_EQ(clock.now(), Clock::time_point::max());
}

// The horizon holds for a clock that reads before 1970 too: the distance to a far
// due time is measured without overflow (an int64 difference wrapped, and
// time_point::max() was accepted).
TEST(PostponeTest, TheHorizonHoldsForAClockBeforeNineteenSeventy) {
  ManualClock clock(Clock::time_point(-std::chrono::hours(1)));
  Engine engine({.workers = 1, .clock = &clock});
  auto far = engine.Submit([] {}, {.postpone_until = Clock::time_point::max()});
  ASSERT_FALSE(far.ok());
  EXPECT_EQ(far.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(far.status().message(), HasSubstr("beyond the engine's horizon"));
  auto near = engine.Submit([] {}, {.postpone_until = Clock::time_point(std::chrono::hours(1))});
  ASSERT_TRUE(near.ok()) << near.status();  // two hours ahead: within it
  EXPECT_EQ(near->state(), State::kPostponed);
}

// A series' next occurrence is not held to the horizon: from a clock in 1751,
// a yearly series with INTERVAL=400 is next due in 2151, more than an int64 of
// nanoseconds ahead (the distances the timekeeper and the horizon take are
// NsAhead's, tested in timing_wheel_test). It waits, and runs when the clock
// gets there.
TEST(PostponeTest, AnOccurrenceDueMoreThanAnInt64AheadOfTheClockWaitsForIt) {
  constexpr auto kFar = std::chrono::nanoseconds(std::numeric_limits<std::int64_t>::max() / 4 * 3);
  ManualClock clock(Clock::time_point(-kFar));
  Engine engine({.workers = 1, .clock = &clock});
  std::atomic<int> runs{0};
  auto first = engine.Submit([&] { runs.fetch_add(1); },
                             {.recurrence = "FREQ=YEARLY;INTERVAL=400;COUNT=2"});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(AwaitState(*first, State::kSucceeded));
  Handle second = first->next_occurrence();
  ASSERT_TRUE(second.valid());
  ASSERT_TRUE(AwaitState(second, State::kPostponed));
  clock.Set(Clock::time_point(kFar / 2));  // 2057: still short of it
  EXPECT_EQ(second.state(), State::kPostponed);
  clock.Set(Clock::time_point(kFar));  // 2189
  ASSERT_TRUE(second.WaitFor(std::chrono::seconds(30)));
  EXPECT_EQ(second.state(), State::kSucceeded);
  EXPECT_EQ(runs.load(), 2);
}

// A clock the engine must watch (not a ManualClock: nothing tells the engine
// when it moves), set by the test.
class SettableClock final : public Clock {
 public:
  explicit SettableClock(time_point t) : ns_(t.time_since_epoch().count()) {}
  time_point Now() const override { return time_point(duration(ns_.load())); }
  void Set(time_point t) { ns_.store(t.time_since_epoch().count()); }

 private:
  std::atomic<std::int64_t> ns_;
};

// A retry due at the very end of time (RetryAfter(nanoseconds::max()),
// saturated) on a clock the engine watches: the timekeeper sleeps towards it,
// at most a second at a time, and releases it once the clock reads it. (The
// end of time was also the timekeeper's "nothing due", so nobody woke it, and
// it slept on with no deadline: the retry never ran.)
TEST(PostponeTest, ARetryDueAtTheEndOfTimeRunsWhenAWatchedClockGetsThere) {
  SettableClock clock(Clock::time_point(std::chrono::hours(24 * 365 * 56)));
  Engine engine({.workers = 1, .clock = &clock});
  std::atomic<int> attempts{0};
  auto h = engine.Submit([&](Context& ctx) {
    if (attempts.fetch_add(1) == 0) ctx.RetryAfter(std::chrono::nanoseconds::max(), "never");
  });
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(AwaitState(*h, State::kPostponed));
  ASSERT_TRUE(engine.WaitIdle().ok());
  clock.Set(Clock::time_point::max());
  // Bounded: the timekeeper looks at such a clock at least once a second.
  ASSERT_TRUE(h->WaitFor(std::chrono::seconds(20)));
  EXPECT_EQ(h->state(), State::kSucceeded);
  EXPECT_EQ(attempts.load(), 2);
}

TEST(PostponeTest, APostponedOperationBlocksTheRestOfItsChain) {
  ManualClock clock;
  Engine engine({.workers = 2, .clock = &clock});
  Journal journal;
  auto a = engine.Submit(journal.Step("A"), {.token = "t"});
  auto b = engine.Submit(journal.Step("B"), {.token = "t", .postpone_until = clock.now() + 10ms});
  auto c = engine.Submit(journal.Step("C"), {.token = "t"});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_TRUE(AwaitState(*a, State::kSucceeded));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(c->state(), State::kWaiting);  // behind postponed B: must not run
  EXPECT_EQ(b->state(), State::kPostponed);
  clock.Advance(10ms);
  ASSERT_TRUE(AwaitState(*c, State::kSucceeded));
  EXPECT_THAT(journal.Entries(), ElementsAre("A", "B", "C"));
}

TEST(PostponeTest, AnOperationReachingTheHeadAfterItsTimeRunsAtOnce) {
  ManualClock clock;
  Engine engine({.workers = 2, .clock = &clock});
  Gate gate;
  auto a = engine.Submit(gate.Waiter(), {.token = "t"});
  auto b = engine.Submit([] {}, {.token = "t", .postpone_until = clock.now() + 5ms});
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(AwaitState(*a, State::kInProgress));
  EXPECT_EQ(b->state(), State::kPostponed);
  clock.Advance(10ms);
  // Its time has come but it is not the head: it shows Waiting, not Postponed.
  EXPECT_EQ(b->state(), State::kWaiting);
  gate.Open();
  ASSERT_TRUE(AwaitState(*b, State::kSucceeded));
}

TEST(PostponeTest, APastPostponeUntilRunsAtOnce) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  auto h = engine.Submit([] {}, {.postpone_until = clock.now() - 1s});
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(AwaitState(*h, State::kSucceeded));
}

TEST(PostponeTest, OperationsDueAtTheSameTimeAreReleasedInCreationOrder) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  std::vector<int> seen;
  const auto due = clock.now() + 3ms;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(engine.Submit([&seen, i] { seen.push_back(i); }, {.postpone_until = due}).ok());
  }
  clock.Advance(3ms);
  ASSERT_TRUE(engine.WaitIdle().ok());
  ASSERT_EQ(seen.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(seen[i], i);
}

// Postponed over five rotations of the wheel's first level (64 ms each at the
// default tick), stepped 1 ms at a time: each level-1 slot is cascaded ahead
// (timing_wheel.h) before the clock enters it. Every operation runs once, never
// before its time, and in the step that reaches it.
TEST(PostponeTest, OperationsPostponedAcrossLevelOneSlotsRunInTheStepThatReachesThem) {
  ManualClock clock;
  Engine engine({.workers = 2, .clock = &clock});
  constexpr int kOps = 3000;
  constexpr int kSteps = 320;
  const auto start = clock.now();
  std::vector<std::atomic<std::int64_t>> ran_at(kOps);  // ns after start; 0: not yet
  std::vector<std::atomic<int>> runs(kOps);
  std::vector<std::int64_t> due_ns(kOps);
  std::uint64_t x = 88172645463325252ULL;  // xorshift: fixed, no library RNG
  for (int i = 0; i < kOps; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    due_ns[i] = 1'000'000 + static_cast<std::int64_t>(x % (300ULL * 1'000'000));
    ASSERT_TRUE(engine
                    .Post(
                        [&, i] {
                          ran_at[i].store((clock.now() - start).count(), std::memory_order_relaxed);
                          runs[i].fetch_add(1, std::memory_order_relaxed);
                        },
                        {.postpone_until = start + std::chrono::nanoseconds(due_ns[i])})
                    .ok());
  }
  for (int step = 1; step <= kSteps; ++step) {
    clock.Advance(1ms);
    ASSERT_TRUE(engine.WaitIdle().ok());
    const std::int64_t now = (clock.now() - start).count();
    for (int i = 0; i < kOps; ++i) {
      const bool due = due_ns[i] <= now;
      ASSERT_EQ(runs[i].load(std::memory_order_relaxed), due ? 1 : 0)
          << "operation " << i << " due at " << due_ns[i] << " ns, step " << step;
    }
  }
  for (int i = 0; i < kOps; ++i) {
    const std::int64_t at = ran_at[i].load(std::memory_order_relaxed);
    EXPECT_GE(at, due_ns[i]) << i;                  // never early
    EXPECT_LT(at, due_ns[i] + 1'000'000) << i;      // in the step that reached it
  }
  EXPECT_EQ(engine.stats().postponed, 0u);
}

TEST(PostponeTest, PostponeChangesTheTimeAndKeepsThePlaceInTheChain) {
  ManualClock clock;
  Engine engine({.workers = 2, .clock = &clock});
  Journal journal;
  Gate gate;
  auto a = engine.Submit(gate.Waiter(), {.token = "t"});
  auto b = engine.Submit(journal.Step("B"), {.token = "t"});
  auto c = engine.Submit(journal.Step("C"), {.token = "t"});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_TRUE(engine.Postpone(*b, clock.now() + 20ms).ok());
  EXPECT_EQ(b->state(), State::kPostponed);
  gate.Open();
  ASSERT_TRUE(AwaitState(*a, State::kSucceeded));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(c->state(), State::kWaiting);
  // Move it earlier, then clear it: it runs at once, still ahead of C.
  ASSERT_TRUE(engine.Postpone(*b, clock.now() + 5ms).ok());
  ASSERT_TRUE(engine.Postpone(*b, std::nullopt).ok());
  ASSERT_TRUE(AwaitState(*c, State::kSucceeded));
  EXPECT_THAT(journal.Entries(), ElementsAre("B", "C"));
}

TEST(PostponeTest, PostponeOfAStartedOrFinishedOperationIsAnError) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  Gate gate;
  auto a = engine.Submit(gate.Waiter());
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(AwaitState(*a, State::kInProgress));
  absl::Status s = engine.Postpone(*a, clock.now() + 1s);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("InProgress"));
  gate.Open();
  ASSERT_TRUE(AwaitState(*a, State::kSucceeded));
  EXPECT_EQ(engine.Postpone(*a, clock.now() + 1s).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(a->state(), State::kSucceeded);
}

TEST(PostponeTest, TimesOutOfRangeAreRejected) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock, .horizon = std::chrono::hours(24)});
  auto far = engine.Submit([] {}, {.postpone_until = clock.now() + std::chrono::hours(25)});
  EXPECT_EQ(far.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(far.status().message()), HasSubstr("horizon"));
  auto ancient = engine.Submit([] {}, {.postpone_until = Clock::time_point(-1s)});
  EXPECT_EQ(ancient.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.stats().submitted, 0u);
  EXPECT_EQ(engine.stats().rejected, 2u);
  // Postpone checks the same horizon against the clock's reading, and changes
  // nothing when it refuses.
  auto held = engine.Submit([] {}, {.postpone_until = clock.now() + 1s});
  ASSERT_TRUE(held.ok());
  absl::Status moved = engine.Postpone(*held, clock.now() + std::chrono::hours(25));
  EXPECT_EQ(moved.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(moved.message()), HasSubstr("Postpone"));
  EXPECT_THAT(std::string(moved.message()), HasSubstr("horizon"));
  clock.Advance(1s);  // still due at its first time
  ASSERT_TRUE(AwaitState(*held, State::kSucceeded));
}

TEST(PostponeTest, AFullTimingWheelIsResourceExhausted) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock, .max_timers = 2});
  ASSERT_TRUE(engine.Submit([] {}, {.postpone_until = clock.now() + 1s}).ok());
  ASSERT_TRUE(engine.Submit([] {}, {.postpone_until = clock.now() + 1s}).ok());
  auto third = engine.Submit([] {}, {.postpone_until = clock.now() + 1s});
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(third.status().message()), HasSubstr("max_timers"));
  EXPECT_EQ(engine.stats().submitted, 2u);
}

// Submits reserve their timer's place without the timer lock (timers.cc, the
// inbox): a canceled or fired timer gives its place back, and stats().postponed
// counts what waits in the inbox as well as in the wheel.
TEST(PostponeTest, ATimerThatFiresOrIsCanceledGivesItsPlaceBack) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock, .max_timers = 2});
  auto a = engine.Submit([] {}, {.postpone_until = clock.now() + 1s});
  auto b = engine.Submit([] {}, {.postpone_until = clock.now() + 5s});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(engine.stats().postponed, 2u);
  EXPECT_EQ(engine.Submit([] {}, {.postpone_until = clock.now() + 1s}).status().code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(engine.Cancel(*b).ok());
  EXPECT_EQ(engine.stats().postponed, 1u);
  auto c = engine.Submit([] {}, {.postpone_until = clock.now() + 5s});
  ASSERT_TRUE(c.ok());
  clock.Advance(1s);  // a fires
  ASSERT_TRUE(AwaitState(*a, State::kSucceeded));
  EXPECT_EQ(engine.stats().postponed, 1u);
  auto d = engine.Submit([] {}, {.postpone_until = clock.now() + 5s});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(engine.stats().postponed, 2u);
  clock.Advance(5s);
  ASSERT_TRUE(AwaitState(*c, State::kSucceeded));
  ASSERT_TRUE(AwaitState(*d, State::kSucceeded));
  EXPECT_EQ(engine.stats().postponed, 0u);
}

TEST(PostponeTest, PostponeIntoAFullWheelIsRefusedAndChangesNothing) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock, .max_timers = 1});
  auto p = engine.Submit([] {}, {.postpone_until = clock.now() + 1s});
  auto s = engine.Submit([] {}, {.token = "t", .suspended = true});
  auto behind = engine.Submit([] {}, {.token = "t"});
  ASSERT_TRUE(p.ok() && s.ok() && behind.ok());
  // A time for a suspended operation takes a place (kept for its Resume).
  absl::Status postponed = engine.Postpone(*s, clock.now() + 2s);
  EXPECT_EQ(postponed.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(postponed.message()), HasSubstr("max_timers"));
  // So does a suspended Submit with a time.
  EXPECT_EQ(engine.Submit([] {}, {.token = "u", .postpone_until = clock.now() + 2s,
                                  .suspended = true})
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
  // Its time was not changed: resumed, it runs with the clock standing still.
  ASSERT_TRUE(engine.Resume(*s).ok());
  ASSERT_TRUE(AwaitState(*behind, State::kSucceeded));
  EXPECT_EQ(s->state(), State::kSucceeded);
  // Re-arming the one timer in the wheel is fine: it frees its own place.
  EXPECT_TRUE(engine.Postpone(*p, clock.now() + 3s).ok());
  clock.Advance(1s);
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(p->state(), State::kPostponed);
  clock.Advance(2s);
  ASSERT_TRUE(AwaitState(*p, State::kSucceeded));
}

// A suspended operation with a time keeps its place in the wheel (timers.cc
// I3), so its Resume never finds the wheel full, and the place counts against
// Options::max_timers (but not in stats().postponed) until Resume, a cancel or
// a Postpone that clears its time gives it back. (Suspend gave it back once,
// and a Resume that found the wheel full was refused.)
TEST(PostponeTest, ASuspendedOperationKeepsItsPlaceInTheWheelForItsResume) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock, .max_timers = 1});
  auto p = engine.Submit([] {}, {.token = "t", .postpone_until = clock.now() + 2s});
  auto behind = engine.Submit([] {}, {.token = "t"});
  ASSERT_TRUE(p.ok() && behind.ok());
  ASSERT_TRUE(engine.Suspend(*p).ok());
  EXPECT_EQ(engine.stats().postponed, 0u);
  EXPECT_EQ(engine.Submit([] {}, {.postpone_until = clock.now() + 1s}).status().code(),
            absl::StatusCode::kResourceExhausted)
      << "the suspended operation's place was given to another";
  ASSERT_TRUE(engine.Resume(*p).ok());
  EXPECT_EQ(p->state(), State::kPostponed);
  EXPECT_EQ(engine.stats().postponed, 1u);
  // Suspended again, and its time cleared: the place goes back.
  ASSERT_TRUE(engine.Suspend(*p).ok());
  ASSERT_TRUE(engine.Postpone(*p, std::nullopt).ok());
  auto other = engine.Submit([] {}, {.postpone_until = clock.now() + 1s});
  ASSERT_TRUE(other.ok()) << other.status();
  // Suspended with a time when the wheel is full: refused, nothing changed.
  EXPECT_EQ(engine.Postpone(*p, clock.now() + 2s).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(p->state(), State::kSuspended);
  clock.Advance(1s);
  ASSERT_TRUE(AwaitState(*other, State::kSucceeded));
  // The place is free again: a suspended Submit with a time takes it, and its
  // cancel gives it back.
  auto held = engine.Submit([] {}, {.token = "u", .postpone_until = clock.now() + 1s,
                                    .suspended = true});
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(engine.Post([] {}, {.postpone_until = clock.now() + 1s}).code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(engine.Cancel(*held).ok());
  ASSERT_TRUE(engine.Post([] {}, {.postpone_until = clock.now() + 1s}).ok());
  ASSERT_TRUE(engine.Resume(*p).ok());  // no time: runnable at once
  ASSERT_TRUE(AwaitState(*behind, State::kSucceeded));
  EXPECT_EQ(p->state(), State::kSucceeded);
  clock.Advance(1s);
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(engine.stats().postponed, 0u);
  // Shutdown cancels a suspended operation and gives its place back.
  auto last = engine.Submit([] {}, {.token = "v", .postpone_until = clock.now() + 1s,
                                    .suspended = true});
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_TRUE(engine.Shutdown(ShutdownMode::kDrainAll).ok());
  EXPECT_EQ(last->state(), State::kCanceled);
}

// An operation suspended while Waiting had its time already: Resume lets it run
// even when a clock gone back puts that time ahead again, and needs no place.
// (It reserved one then, and a full wheel refused the Resume.)
TEST(PostponeTest, AnOperationSuspendedAfterItsTimeCameResumesWithoutAPlace) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock, .max_timers = 1});
  Gate gate;
  const auto start = clock.now();
  auto blocker = engine.Submit(gate.Waiter(), {.token = "t"});
  auto p = engine.Submit([] {}, {.token = "t", .postpone_until = start + 1s});
  ASSERT_TRUE(blocker.ok() && p.ok());
  ASSERT_TRUE(AwaitState(*blocker, State::kInProgress));
  clock.Advance(1s);
  ASSERT_TRUE(AwaitState(*p, State::kWaiting));  // released, behind the blocker
  ASSERT_TRUE(engine.Suspend(*p).ok());
  auto filler = engine.Submit([] {}, {.postpone_until = clock.now() + 1h});
  ASSERT_TRUE(filler.ok()) << filler.status() << " (a Waiting operation kept a place)";
  clock.Set(start);  // p's time is ahead again
  absl::Status resumed = engine.Resume(*p);
  ASSERT_TRUE(resumed.ok()) << resumed;
  EXPECT_EQ(p->state(), State::kWaiting);
  gate.Open();
  ASSERT_TRUE(AwaitState(*p, State::kSucceeded));
  ASSERT_TRUE(engine.Cancel(*filler).ok());
}

TEST(PostponeTest, WithTheSystemClockLatenessIsNeverNegative) {
  Engine engine({.workers = 2});
  std::vector<Handle> hs;
  std::vector<Clock::time_point> dues;
  for (int i = 0; i < 50; ++i) {
    dues.push_back(Clock::now() + std::chrono::milliseconds(1 + i % 10));
    auto h = engine.Submit([] {}, {.postpone_until = dues.back()});
    ASSERT_TRUE(h.ok());
    hs.push_back(*h);
  }
  for (std::size_t i = 0; i < hs.size(); ++i) {
    ASSERT_EQ(hs[i].Wait(), State::kSucceeded);
    EXPECT_GE(*hs[i].started_at(), dues[i]) << "started early";
  }
}

// Post (no Handle) reads only a lower bound of the system clock (the kernel's
// coarse clock, up to a tick behind). Due times around the moment of posting,
// some between that bound and the true time, all run, and none before its time.
TEST(PostponeTest, WithTheSystemClockPostsDueAroundNowAllRunAndNeverEarly) {
  constexpr int kOps = 400;
  std::vector<Clock::time_point> dues(kOps);
  std::vector<std::atomic<std::int64_t>> started(kOps);
  std::atomic<int> left{kOps};
  std::promise<void> all_ran;
  Engine engine({.workers = 2});  // last: destroyed first, while the above live
  for (int i = 0; i < kOps; ++i) {
    // -4 ms .. +4 ms around now, in steps of 20 us.
    dues[i] = Clock::now() + std::chrono::microseconds(20 * i - 4000);
    ASSERT_TRUE(engine
                    .Post(
                        [&, i] {
                          started[i].store(Clock::now().time_since_epoch().count());
                          if (left.fetch_sub(1) == 1) all_ran.set_value();
                        },
                        {.postpone_until = dues[i]})
                    .ok());
  }
  ASSERT_EQ(all_ran.get_future().wait_for(30s), std::future_status::ready)
      << left.load() << " of " << kOps << " never ran";
  for (int i = 0; i < kOps; ++i) {
    EXPECT_GE(started[i].load(), dues[i].time_since_epoch().count()) << "op " << i << " early";
  }
}

// A Post due at the moment of posting (its due time read before it) is due by
// the true time, whatever the lower bound the Post read. WaitIdle waits for it,
// Shutdown(kDrainReady) runs it, and a full wheel does not refuse it.
TEST(PostponeTest, WithTheSystemClockAPostDueNowIsRunnableForWaitIdleShutdownAndAFullWheel) {
  for (int i = 0; i < 50; ++i) {
    std::atomic<int> ran{0};
    Engine engine({.workers = 2});
    ASSERT_TRUE(engine.Post([&] { ran.fetch_add(1); }, {.postpone_until = Clock::now()}).ok());
    ASSERT_TRUE(engine.WaitIdle().ok());
    ASSERT_EQ(ran.load(), 1) << "WaitIdle returned before a due operation ran, round " << i;
  }
  for (int i = 0; i < 50; ++i) {
    std::atomic<int> ran{0};
    Engine engine({.workers = 2});
    ASSERT_TRUE(engine.Post([&] { ran.fetch_add(1); }, {.postpone_until = Clock::now()}).ok());
    ASSERT_TRUE(engine.Shutdown(ShutdownMode::kDrainReady).ok());
    ASSERT_EQ(ran.load(), 1) << "kDrainReady canceled a due operation, round " << i;
  }
  std::atomic<int> ran{0};
  Engine engine({.workers = 2, .max_timers = 1});
  ASSERT_TRUE(engine.Post([] {}, {.postpone_until = Clock::now() + 1h}).ok());  // the wheel is full
  for (int i = 0; i < 20; ++i) {
    absl::Status s = engine.Post([&] { ran.fetch_add(1); }, {.postpone_until = Clock::now()});
    ASSERT_TRUE(s.ok()) << s;
  }
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(ran.load(), 20);
  absl::Status later = engine.Post([] {}, {.postpone_until = Clock::now() + 1h});
  EXPECT_EQ(later.code(), absl::StatusCode::kResourceExhausted) << later;
  EXPECT_TRUE(engine.Shutdown(ShutdownMode::kCancelPending).ok());
}

// The horizon is exact for Post too: a time exactly the horizon after a reading
// taken before the Post is within it (the engine's own reading is no earlier),
// however far behind the coarse clock the Post first looks is; one an hour
// beyond is refused.
TEST(PostponeTest, WithTheSystemClockThePostHorizonIsCheckedAgainstTheTrueTime) {
  Engine engine({.workers = 1, .horizon = std::chrono::hours(1)});
  for (int i = 0; i < 20; ++i) {
    absl::Status edge = engine.Post([] {}, {.postpone_until = Clock::now() + 1h});
    EXPECT_TRUE(edge.ok()) << edge;
  }
  absl::Status beyond = engine.Post([] {}, {.postpone_until = Clock::now() + 2h});
  EXPECT_EQ(beyond.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(beyond.message()), HasSubstr("horizon"));
  EXPECT_EQ(engine.Shutdown(ShutdownMode::kCancelPending), absl::OkStatus());
}

TEST(PostponeTest, WaitIdleDoesNotWaitForPostponedOrSuspendedWork) {
  ManualClock clock;
  Engine engine({.workers = 2, .clock = &clock});
  auto p = engine.Submit([] {}, {.token = "t", .postpone_until = clock.now() + 1h});
  auto behind = engine.Submit([] {}, {.token = "t"});
  auto s = engine.Submit([] {}, {.suspended = true});
  ASSERT_TRUE(p.ok() && behind.ok() && s.ok());
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(p->state(), State::kPostponed);
  EXPECT_EQ(behind->state(), State::kWaiting);
  EXPECT_EQ(s->state(), State::kSuspended);
  EXPECT_EQ(engine.stats().postponed, 1u);
}

// --- Suspend / resume ----------------------------------------------------------

TEST(SuspendTest, ASuspendedHeadBlocksItsChainUntilResumed) {
  ManualClock clock;
  Engine engine({.workers = 2, .clock = &clock});
  Journal journal;
  auto a = engine.Submit(journal.Step("A"), {.token = "t", .suspended = true});
  auto b = engine.Submit(journal.Step("B"), {.token = "t"});
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(a->state(), State::kSuspended);
  EXPECT_EQ(b->state(), State::kWaiting);
  ASSERT_TRUE(engine.Resume(*a).ok());
  ASSERT_TRUE(AwaitState(*b, State::kSucceeded));
  EXPECT_THAT(journal.Entries(), ElementsAre("A", "B"));
}

TEST(SuspendTest, SuspendThenResumeOfAPostponedOperationKeepsItsTime) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  auto a = engine.Submit([] {}, {.postpone_until = clock.now() + 10ms});
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(engine.Suspend(*a).ok());
  EXPECT_EQ(a->state(), State::kSuspended);
  clock.Advance(5ms);
  ASSERT_TRUE(engine.Resume(*a).ok());
  EXPECT_EQ(a->state(), State::kPostponed);  // its time has not come yet
  clock.Advance(5ms);
  ASSERT_TRUE(AwaitState(*a, State::kSucceeded));
}

TEST(SuspendTest, CancelingASuspendedOrPostponedHeadReleasesTheChainAtOnce) {
  ManualClock clock;
  Engine engine({.workers = 2, .clock = &clock});
  Journal journal;
  auto a = engine.Submit(journal.Step("A"), {.token = "t", .suspended = true});
  auto b = engine.Submit(journal.Step("B"), {.token = "t", .postpone_until = clock.now() + 1h});
  auto c = engine.Submit(journal.Step("C"), {.token = "t"});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_TRUE(engine.Cancel(*a).ok());
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(c->state(), State::kWaiting);  // now behind postponed B
  ASSERT_TRUE(engine.Cancel(*b).ok());
  ASSERT_TRUE(AwaitState(*c, State::kSucceeded));
  EXPECT_THAT(journal.Entries(), ElementsAre("C"));
  EXPECT_EQ(engine.stats().postponed, 0u);  // the canceled timer left the wheel at once
}

TEST(SuspendTest, SuspendOfARunningOperationIsAnError) {
  Engine engine({.workers = 1});
  Gate gate;
  auto a = engine.Submit(gate.Waiter());
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(AwaitState(*a, State::kInProgress));
  EXPECT_EQ(engine.Suspend(*a).code(), absl::StatusCode::kFailedPrecondition);
  gate.Open();
  ASSERT_TRUE(AwaitState(*a, State::kSucceeded));
  EXPECT_EQ(engine.Resume(*a).code(), absl::StatusCode::kFailedPrecondition);
}

// --- Retries ---------------------------------------------------------------------

// Retry delays saturate: a retry "after nanoseconds::max()", and an uncapped
// exponential backoff doubling past int64, once wrapped into the past and ran
// at once (max_retries times in a row). Saturated, they are due at the end of
// the clock's range, and Shutdown still cancels them (its sweep of the wheel
// once stopped one nanosecond short of that).
TEST(RetryTest, DelaysPastTheClocksRangeSaturateAndNeverRunAtOnce) {
  constexpr auto kYear = std::chrono::hours(24 * 365);
  ManualClock clock(Clock::time_point(std::chrono::seconds(1)));  // room to double in
  std::atomic<int> far_attempts{0};
  std::atomic<int> doubled_attempts{0};
  Handle far;
  Handle doubled;
  {
    Engine engine({.workers = 1, .clock = &clock});
    auto f = engine.Submit(
        [&](Context& ctx) {
          far_attempts++;
          ctx.RetryAfter(std::chrono::nanoseconds::max(), "not in this clock's range");
        },
        {.max_retries = 5});
    auto d = engine.Submit(
        [&](Context& ctx) {
          doubled_attempts++;
          ctx.RetryAfter(40 * kYear, "40 years, doubled per retry");
        },
        {.max_retries = 10,
         .backoff = {.kind = Backoff::Kind::kExponential,
                     .max_delay = std::chrono::nanoseconds::max()}});
    ASSERT_TRUE(f.ok() && d.ok());
    far = *f;
    doubled = *d;
    ASSERT_TRUE(AwaitState(far, State::kPostponed));
    ASSERT_TRUE(AwaitState(doubled, State::kPostponed));
    ASSERT_TRUE(engine.WaitIdle().ok());
    // The doubled retries come due 40, 80 and 160 years after each attempt;
    // the fourth attempt's delay doubles 160 years past int64's 292.
    for (const auto step : {40 * kYear, 80 * kYear, 160 * kYear}) {
      clock.Advance(step);
      ASSERT_TRUE(engine.WaitIdle().ok());
    }
    EXPECT_EQ(doubled_attempts.load(), 4) << "no retry wrapped into the past";
    EXPECT_EQ(far_attempts.load(), 1) << "due at the end of the clock's range";
    EXPECT_EQ(far.state(), State::kPostponed);
    EXPECT_EQ(doubled.state(), State::kPostponed);
  }  // the destructor's Shutdown (kDrainReady) cancels both
  EXPECT_EQ(far.state(), State::kCanceled);
  EXPECT_EQ(doubled.state(), State::kCanceled);
}

// An operation waiting for a retry has not started its next attempt: Postpone
// moves (or clears) the retry's time, Suspend holds it, and Resume gives it back
// its time, as for any postponed operation (engine.h).
TEST(RetryTest, ARetryWaitingOperationCanBePostponedSuspendedAndResumed) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  std::atomic<int> attempts{0};
  auto h = engine.Submit([&](Context& ctx) {
    if (attempts.fetch_add(1) < 2) ctx.RetryAfter(1h, "later");
  });
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(AwaitState(*h, State::kPostponed));
  ASSERT_TRUE(engine.WaitIdle().ok());
  ASSERT_TRUE(engine.Postpone(*h, std::nullopt).ok());  // the retry runs now
  ASSERT_TRUE(AwaitState(*h, State::kPostponed));     // and asks for another
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(attempts.load(), 2);
  EXPECT_EQ(h->retry_count(), 2);
  ASSERT_TRUE(engine.Suspend(*h).ok());
  EXPECT_EQ(h->state(), State::kSuspended);
  clock.Advance(2h);  // its time passes while it is held
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(attempts.load(), 2);
  ASSERT_TRUE(engine.Resume(*h).ok());  // due already: runs
  ASSERT_TRUE(AwaitState(*h, State::kSucceeded));
  EXPECT_EQ(attempts.load(), 3);
}

// A cancel request during an attempt stops the retry that attempt asks for,
// as a Cancel of an operation waiting for its retry does: it ends Canceled,
// its chain moves on, and no further attempt runs.
TEST(RetryTest, ACancelRequestDuringAnAttemptStopsTheRetryItAsksFor) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  Gate gate;
  std::atomic<int> attempts{0};
  auto a = engine.Submit(
      [&](Context& ctx) {
        attempts++;
        gate.Waiter()();
        ctx.RetryAfter(1ms, "backend down");
      },
      {.token = "t"});
  ASSERT_TRUE(a.ok());
  std::atomic<bool> b_ran{false};
  auto b = engine.Submit([&] { b_ran = true; }, {.token = "t"});
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(AwaitState(*a, State::kInProgress));
  auto outcome = engine.Cancel(*a);
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome, CancelOutcome::kCancelRequested);
  gate.Open();
  ASSERT_TRUE(AwaitState(*a, State::kCanceled));
  EXPECT_THAT(a->error(), HasSubstr("Cancel was requested during the attempt (backend down)"));
  ASSERT_TRUE(AwaitState(*b, State::kSucceeded));  // its chain moved on
  clock.Advance(1s);
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(attempts.load(), 1);
  EXPECT_EQ(a->retry_count(), 0);
  EXPECT_EQ(engine.stats().canceled, 1u);
  EXPECT_EQ(engine.stats().retried, 0u);
}

TEST(RetryTest, ARetryKeepsTheOperationAtTheHeadAndItsSuccessorsWait) {
  ManualClock clock;
  Engine engine({.workers = 2, .clock = &clock});
  Journal journal;
  std::atomic<int> attempts{0};
  auto a = engine.Submit(
      [&](Context& ctx) {
        journal.Append("A" + std::to_string(ctx.retry_count()));
        if (attempts.fetch_add(1) < 2) ctx.RetryAfter(5ms, "not yet");
      },
      {.token = "t"});
  auto b = engine.Submit(journal.Step("B"), {.token = "t"});
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(AwaitState(*a, State::kPostponed));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(b->state(), State::kWaiting);
  EXPECT_EQ(a->retry_count(), 1);
  clock.Advance(4ms);
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(attempts.load(), 1);  // the delay counts from the end of the attempt
  clock.Advance(1ms);
  ASSERT_TRUE(AwaitState(*a, State::kPostponed));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(attempts.load(), 2);
  clock.Advance(5ms);
  ASSERT_TRUE(AwaitState(*b, State::kSucceeded));
  EXPECT_EQ(a->state(), State::kSucceeded);
  EXPECT_EQ(a->retry_count(), 2);
  EXPECT_THAT(journal.Entries(), ElementsAre("A0", "A1", "A2", "B"));
  EXPECT_EQ(engine.stats().retried, 2u);
}

TEST(RetryTest, ReturningARetryStatusAsksForARetry) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  std::atomic<int> attempts{0};
  auto a = engine.Submit([&]() -> absl::Status {
    if (attempts.fetch_add(1) == 0) return RetryStatus(1s, "busy");
    return absl::OkStatus();
  });
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(AwaitState(*a, State::kPostponed));
  clock.Advance(1s);
  ASSERT_TRUE(AwaitState(*a, State::kSucceeded));
  EXPECT_EQ(attempts.load(), 2);
}

TEST(RetryTest, PastTheMaximumItFailsWithTheLastMessage) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  auto a = engine.Submit([](Context& ctx) { ctx.RetryAfter(1ms, "backend down"); },
                         {.max_retries = 2});
  ASSERT_TRUE(a.ok());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(AwaitState(*a, State::kPostponed));
    ASSERT_TRUE(engine.WaitIdle().ok());
    clock.Advance(1ms);
  }
  ASSERT_TRUE(AwaitState(*a, State::kFailed));
  EXPECT_THAT(a->error(), HasSubstr("backend down"));
  EXPECT_THAT(a->error(), HasSubstr("gave up after 2 retries"));
  EXPECT_EQ(a->retry_count(), 2);
}

// A retry that finds the wheel full fails the operation at once, saying so, and
// counts as no retry: neither the Handle's count nor Stats::retried moves.
TEST(RetryTest, ARetryThatFindsTheWheelFullFailsAndCountsNoRetry) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock, .max_timers = 1});
  ASSERT_TRUE(engine.Post([] {}, {.postpone_until = clock.now() + 1h}).ok());  // the wheel is full
  auto a = engine.Submit([](Context& ctx) { ctx.RetryAfter(1ms, "backend down"); });
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(AwaitState(*a, State::kFailed));
  EXPECT_THAT(a->error(), HasSubstr("timing wheel is full"));
  EXPECT_EQ(a->retry_count(), 0);
  EXPECT_EQ(engine.stats().retried, 0u);
  ASSERT_TRUE(engine.Shutdown(ShutdownMode::kCancelPending).ok());
}

// A negative backoff cap is refused, naming it, with nothing accepted: capped
// below zero, every exponential retry ran at once, whatever RetryAfter asked.
TEST(RetryTest, ANegativeBackoffCapIsRefused) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  const Backoff negative{.kind = Backoff::Kind::kExponential, .max_delay = -1ms};
  auto h = engine.Submit([](Context& ctx) { ctx.RetryAfter(1h); }, {.backoff = negative});
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(h.status().message(), HasSubstr("backoff.max_delay is negative"));
  EXPECT_EQ(engine.Post([] {}, {.token = "t", .backoff = negative}).code(),
            absl::StatusCode::kInvalidArgument);
  const Stats s = engine.stats();
  EXPECT_EQ(s.submitted, 0u);
  EXPECT_EQ(s.rejected, 2u);
  // A cap of zero is a cap: every retry at once, by request.
  auto zero = engine.Submit([](Context& ctx) { ctx.RetryAfter(1h); },
                            {.max_retries = 1,
                             .backoff = {.kind = Backoff::Kind::kExponential, .max_delay = 0ns}});
  ASSERT_TRUE(zero.ok()) << zero.status();
  ASSERT_TRUE(AwaitState(*zero, State::kFailed));
  EXPECT_EQ(zero->retry_count(), 1);
}

TEST(RetryTest, TheEngineDefaultMaximumIsTen) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  auto a = engine.Submit([](Context& ctx) { ctx.RetryAfter(1ms); });
  ASSERT_TRUE(a.ok());
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(AwaitState(*a, State::kPostponed)) << i;
    ASSERT_TRUE(engine.WaitIdle().ok());
    clock.Advance(1ms);
  }
  ASSERT_TRUE(AwaitState(*a, State::kFailed));
  EXPECT_EQ(a->retry_count(), 10);
}

// A posted operation with no options lives in a compact node (no room for a
// timer or a retry count); its first retry moves it into a full one. It keeps its
// id, and with it its creation place among operations due at the same instant.
TEST(RetryTest, APostedOperationRetriesKeepingItsIdAndItsPlaceAmongEqualDueTimes) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  Journal journal;
  std::vector<std::uint64_t> ids;  // appended by the one worker, read after WaitIdle
  std::atomic<int> attempts{0};
  ASSERT_TRUE(engine
                  .Post([&](Context& ctx) {
                    journal.Append("A" + std::to_string(ctx.retry_count()));
                    ids.push_back(ctx.id());
                    if (attempts.fetch_add(1) == 0) ctx.RetryAfter(5ms, "later");
                  })
                  .ok());
  ASSERT_TRUE(engine.WaitIdle().ok());  // the first attempt ran; A is postponed
  ASSERT_EQ(attempts.load(), 1);
  // Created after A, due at the instant A's retry is.
  auto b = engine.Submit(journal.Step("B"), {.postpone_until = clock.now() + 5ms});
  ASSERT_TRUE(b.ok());
  clock.Advance(5ms);
  ASSERT_TRUE(AwaitState(*b, State::kSucceeded));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_THAT(journal.Entries(), ElementsAre("A0", "A1", "B"));
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0], ids[1]);
  EXPECT_LT(ids[0], b->id());
  const Stats s = engine.stats();
  EXPECT_EQ(s.retried, 1u);
  EXPECT_EQ(s.succeeded, 2u);
  EXPECT_EQ(s.failed, 0u);
}

TEST(RetryTest, APostedOperationGivesUpAtTheEnginesMaximum) {
  for (int max : {0, 2}) {
    SCOPED_TRACE(max);
    ManualClock clock;
    Engine engine({.workers = 1, .clock = &clock, .max_retries = max});
    std::atomic<int> attempts{0};
    ASSERT_TRUE(engine
                    .Post([&](Context& ctx) {
                      attempts.fetch_add(1);
                      ctx.RetryAfter(1ms, "backend down");
                    })
                    .ok());
    for (int i = 0; i < max; ++i) {
      ASSERT_TRUE(engine.WaitIdle().ok());
      clock.Advance(1ms);
    }
    ASSERT_TRUE(engine.WaitIdle().ok());
    EXPECT_EQ(attempts.load(), max + 1);
    const Stats s = engine.stats();
    EXPECT_EQ(s.retried, static_cast<std::uint64_t>(max));
    EXPECT_EQ(s.failed, 1u);
    EXPECT_EQ(s.succeeded, 0u);
  }
}

TEST(RetryTest, ExponentialBackoffDoublesTheDelayUpToItsCap) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  std::atomic<int> attempts{0};
  auto a = engine.Submit(
      [&](Context& ctx) {
        if (attempts.fetch_add(1) < 3) ctx.RetryAfter(10ms);
      },
      {.backoff = {.kind = Backoff::Kind::kExponential, .max_delay = 30ms}});
  ASSERT_TRUE(a.ok());
  // Delays: 10 ms, 20 ms, then 40 ms capped at 30 ms.
  for (auto [delay, expected_attempts] :
       {std::pair{10ms, 2}, std::pair{20ms, 3}, std::pair{30ms, 4}}) {
    ASSERT_TRUE(AwaitState(*a, State::kPostponed));
    ASSERT_TRUE(engine.WaitIdle().ok());
    clock.Advance(delay - 1ms);
    ASSERT_TRUE(engine.WaitIdle().ok());
    EXPECT_EQ(attempts.load(), expected_attempts - 1) << "ran early";
    clock.Advance(1ms);
    ASSERT_TRUE(engine.WaitIdle().ok());
    EXPECT_EQ(attempts.load(), expected_attempts);
  }
  ASSERT_TRUE(AwaitState(*a, State::kSucceeded));
}

// --- Failure policy ----------------------------------------------------------------

TEST(FailurePolicyTest, HaltHoldsTheChainAfterAFailureUntilResumeToken) {
  Engine engine({.workers = 2});
  Journal journal;
  auto a = engine.Submit([] { throw std::runtime_error("bad"); },
                         {.token = "t", .failure_policy = FailurePolicy::kHalt});
  auto b = engine.Submit(journal.Step("B"), {.token = "t"});
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(AwaitState(*a, State::kFailed));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(b->state(), State::kWaiting);
  EXPECT_THAT(b->Explain(), HasSubstr("halted"));
  auto resumed = engine.ResumeToken("t");
  ASSERT_TRUE(resumed.ok());
  ASSERT_TRUE(AwaitState(*b, State::kSucceeded));
  EXPECT_THAT(journal.Entries(), ElementsAre("B"));
}

// A token's policy set to kHalt, then back (kDefault) or to kContinue: its next
// failure no longer holds the chain.
TEST(FailurePolicyTest, APolicySetBackToTheDefaultOrToContinueNoLongerHalts) {
  for (FailurePolicy back : {FailurePolicy::kDefault, FailurePolicy::kContinue}) {
    SCOPED_TRACE(back == FailurePolicy::kDefault ? "kDefault" : "kContinue");
    Engine engine({.workers = 1});
    ASSERT_TRUE(engine.SetFailurePolicy("t", FailurePolicy::kHalt).ok());
    ASSERT_TRUE(engine.SetFailurePolicy("t", back).ok());
    auto a = engine.Submit([] { throw std::runtime_error("bad"); }, {.token = "t"});
    auto b = engine.Submit([] {}, {.token = "t"});
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_TRUE(AwaitState(*a, State::kFailed));
    ASSERT_TRUE(engine.WaitIdle().ok());  // returns at once were the chain held
    EXPECT_EQ(b->state(), State::kSucceeded);
  }
}

TEST(FailurePolicyTest, CancelRestCancelsEverythingQueuedBehindTheFailure) {
  Engine engine({.workers = 2});
  ASSERT_TRUE(engine.SetFailurePolicy("t", FailurePolicy::kCancelRest).ok());
  Gate gate;
  std::atomic<int> ran{0};
  auto a = engine.Submit(
      [&] {
        gate.Waiter()();
        throw std::runtime_error("bad");
      },
      {.token = "t"});
  auto b = engine.Submit([&] { ran++; }, {.token = "t"});
  auto c = engine.Submit([&] { ran++; }, {.token = "t"});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  gate.Open();
  ASSERT_TRUE(AwaitState(*c, State::kCanceled));
  EXPECT_EQ(b->state(), State::kCanceled);
  EXPECT_THAT(b->error(), HasSubstr("kCancelRest"));
  auto d = engine.Submit([&] { ran++; }, {.token = "t"});  // later work runs
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(AwaitState(*d, State::kSucceeded));
  EXPECT_EQ(ran.load(), 1);
}

// A Submit refused for a full wheel changes nothing: not even the failure policy it
// named for its token.
TEST(FailurePolicyTest, ARefusedSubmitLeavesTheTokensPolicyAlone) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock, .max_timers = 1});
  auto timer = engine.Submit([] {}, {.postpone_until = clock.now() + 1s});
  ASSERT_TRUE(timer.ok());
  auto refused = engine.Submit([] {}, {.token = "t",
                                       .postpone_until = clock.now() + 1s,
                                       .failure_policy = FailurePolicy::kCancelRest});
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  // Under kCancelRest, b would be canceled by a's failure; under the default it runs.
  auto a = engine.Submit([] { throw std::runtime_error("bad"); }, {.token = "t"});
  auto b = engine.Submit([] {}, {.token = "t"});
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(AwaitState(*b, State::kSucceeded));
  EXPECT_EQ(a->state(), State::kFailed);
}

TEST(FailurePolicyTest, ContinueIsTheDefault) {
  Engine engine({.workers = 1});
  auto a = engine.Submit([] { throw std::runtime_error("bad"); }, {.token = "t"});
  auto b = engine.Submit([] {}, {.token = "t"});
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(AwaitState(*a, State::kFailed));
  // Were the chain held (kHalt), WaitIdle would return with b not run, so a
  // wrong default fails here at once, not after a wait's time limit.
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(b->state(), State::kSucceeded);
}

// --- Token controls and introspection ------------------------------------------------

TEST(TokenControlTest, CancelTokenCancelsEveryNotStartedOperationOfTheToken) {
  Engine engine({.workers = 2});
  Gate gate;
  auto running = engine.Submit(gate.Waiter(), {.token = "t"});
  ASSERT_TRUE(running.ok());
  ASSERT_TRUE(AwaitState(*running, State::kInProgress));
  std::vector<Handle> queued;
  for (int i = 0; i < 10; ++i) queued.push_back(*engine.Submit([] {}, {.token = "t"}));
  auto other = engine.Submit([] {}, {.token = "u"});
  auto n = engine.CancelToken("t");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 10u);
  for (auto& h : queued) EXPECT_EQ(h.state(), State::kCanceled);
  EXPECT_THAT(queued[0].error(), HasSubstr("CancelToken"));
  gate.Open();
  EXPECT_EQ(running->Wait(), State::kSucceeded);
  EXPECT_EQ(other->Wait(), State::kSucceeded);
  auto later = engine.Submit([] {}, {.token = "t"});  // not affected: submitted after
  EXPECT_EQ(later->Wait(), State::kSucceeded);
}

TEST(TokenControlTest, SuspendTokenAndResumeTokenHoldAndReleaseTheChain) {
  Engine engine({.workers = 2});
  Gate gate;
  Journal journal;
  auto a = engine.Submit(gate.Waiter(), {.token = "t"});
  auto b = engine.Submit(journal.Step("B"), {.token = "t"});
  auto c = engine.Submit(journal.Step("C"), {.token = "t"});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_TRUE(AwaitState(*a, State::kInProgress));
  auto suspended = engine.SuspendToken("t");
  ASSERT_TRUE(suspended.ok());
  EXPECT_EQ(*suspended, 2u);
  gate.Open();
  ASSERT_TRUE(AwaitState(*a, State::kSucceeded));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(b->state(), State::kSuspended);
  auto info = engine.TokenInfo("t");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->pending, 2u);
  EXPECT_EQ(info->head_state, State::kSuspended);
  EXPECT_EQ(info->head_id, b->id());
  auto resumed = engine.ResumeToken("t");
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(*resumed, 2u);
  ASSERT_TRUE(AwaitState(*c, State::kSucceeded));
  EXPECT_THAT(journal.Entries(), ElementsAre("B", "C"));
  ASSERT_TRUE(engine.WaitIdle().ok());
  auto idle = engine.TokenInfo("t");
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(idle->pending, 0u);
  EXPECT_FALSE(idle->head_state.has_value());
}

// Two SuspendTokens (then two ResumeTokens) racing on one token together count
// each operation once: each counts what its own change made. (An operation the
// other had just suspended answered OK, and both counted it.)
TEST(TokenControlTest, RacingTokenControlsCountEachChangeOnce) {
  constexpr int kBehind = 200;
  Engine engine({.workers = 1});
  for (int round = 0; round < 10; ++round) {
    Gate gate;
    auto head = engine.Submit(gate.Waiter(), {.token = "t"});
    ASSERT_TRUE(head.ok());
    for (int i = 0; i < kBehind; ++i) ASSERT_TRUE(engine.Post([] {}, {.token = "t"}).ok());
    ASSERT_TRUE(AwaitState(*head, State::kInProgress));
    auto race = [&](auto control) {
      std::latch start(2);
      std::size_t counts[2] = {0, 0};
      std::thread other([&] {
        start.arrive_and_wait();
        counts[1] = *control();
      });
      start.arrive_and_wait();
      counts[0] = *control();
      other.join();
      return counts[0] + counts[1];
    };
    EXPECT_EQ(race([&] { return engine.SuspendToken("t"); }), std::size_t{kBehind}) << round;
    EXPECT_EQ(engine.TokenInfo("t")->pending, std::size_t{kBehind} + 1);
    EXPECT_EQ(race([&] { return engine.ResumeToken("t"); }), std::size_t{kBehind}) << round;
    gate.Open();
    ASSERT_TRUE(engine.WaitIdle().ok());
  }
  EXPECT_EQ(engine.stats().succeeded, 10u * (kBehind + 1));
}

TEST(TokenControlTest, ExplainSaysWhyAnOperationIsNotRunning) {
  ManualClock clock;  // 2026-01-01T00:00:00Z
  Engine engine({.workers = 1, .clock = &clock});
  auto a = engine.Submit([] {}, {.token = "t", .postpone_until = clock.now() + 5s});
  auto b = engine.Submit([] {}, {.token = "t"});
  auto s = engine.Submit([] {}, {.suspended = true});
  ASSERT_TRUE(a.ok() && b.ok() && s.ok());
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(b->Explain(), "op " + std::to_string(b->id()) + " is waiting behind op " +
                              std::to_string(a->id()) +
                              ", which is Postponed until 2026-01-01T00:00:05.000Z");
  EXPECT_THAT(a->Explain(), HasSubstr("Postponed until 2026-01-01T00:00:05.000Z"));
  EXPECT_THAT(s->Explain(), HasSubstr("Suspended"));
  clock.Advance(5s);
  ASSERT_TRUE(AwaitState(*b, State::kSucceeded));
  EXPECT_THAT(b->Explain(), HasSubstr("Succeeded"));
}

// Behind a head that will end, a held operation keeps the next one waiting:
// Explain names it too (it named the head alone).
TEST(TokenControlTest, ExplainNamesAHeldOperationBetweenTheHeadAndThisOne) {
  ManualClock clock;  // 2026-01-01T00:00:00Z
  Engine engine({.workers = 1, .clock = &clock});
  auto a = engine.Submit([] {}, {.token = "t", .postpone_until = clock.now() + 5s});
  auto b = engine.Submit([] {}, {.token = "t"});
  auto s = engine.Submit([] {}, {.token = "t", .suspended = true});
  auto c = engine.Submit([] {}, {.token = "t"});
  ASSERT_TRUE(a.ok() && b.ok() && s.ok() && c.ok());
  ASSERT_TRUE(engine.WaitIdle().ok());
  const std::string waiting_behind_a = "waiting behind op " + std::to_string(a->id()) +
                                       ", which is Postponed until 2026-01-01T00:00:05.000Z";
  EXPECT_EQ(b->Explain(), "op " + std::to_string(b->id()) + " is " + waiting_behind_a);
  EXPECT_EQ(c->Explain(), "op " + std::to_string(c->id()) + " is " + waiting_behind_a +
                              ", and then behind op " + std::to_string(s->id()) +
                              ", which is Suspended");
  clock.Advance(5s);  // a and b run; s, now the head, holds c
  ASSERT_TRUE(AwaitState(*b, State::kSucceeded));
  // b is seen Succeeded before its runner makes s the head: waited for (bounded).
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  for (;;) {
    absl::StatusOr<TokenReport> r = engine.TokenInfo("t");
    ASSERT_TRUE(r.ok()) << r.status();
    if (r->head_id == s->id() || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::yield();
  }
  EXPECT_EQ(c->Explain(), "op " + std::to_string(c->id()) + " is waiting behind op " +
                              std::to_string(s->id()) + ", which is Suspended");
  ASSERT_TRUE(engine.Resume(*s).ok());
  EXPECT_TRUE(AwaitState(*c, State::kSucceeded));
}

TEST(TokenControlTest, TokenControlsRejectWhatSubmitRejects) {
  Engine engine({.workers = 1, .max_token_bytes = 8});
  for (const Token& bad : {Token(), Token(""), Token("nine-byte")}) {
    SCOPED_TRACE(bad.empty() ? std::string("no token") : "\"" + std::string(bad.text()) + "\"");
    EXPECT_EQ(engine.CancelToken(bad).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(engine.SuspendToken(bad).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(engine.ResumeToken(bad).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(engine.TokenInfo(bad).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(engine.SetFailurePolicy(bad, FailurePolicy::kHalt).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(engine.Submit([] {}, {.token = bad}).status().code(),
              bad.empty() ? absl::StatusCode::kOk : absl::StatusCode::kInvalidArgument);
  }
  EXPECT_THAT(std::string(engine.CancelToken(Token("nine-byte")).status().message()),
              HasSubstr("max_token_bytes"));
  EXPECT_TRUE(engine.CancelToken(Token("eight-bt")).ok());  // at the limit: fine
  ASSERT_TRUE(engine.WaitIdle().ok());
}

// --- Recurrence --------------------------------------------------------------------

TEST(RecurrenceEngineTest, OccurrencesFollowTheRuleOnAFixedGridAndCountEnds) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  std::vector<Clock::time_point> starts;
  const auto t0 = clock.now() + 1min;
  auto first = engine.Submit([&] { starts.push_back(clock.now()); },
                             {.token = "report", .postpone_until = t0,
                              .recurrence = "FREQ=MINUTELY;INTERVAL=2;COUNT=3"});
  ASSERT_TRUE(first.ok());
  clock.Advance(1min);
  ASSERT_TRUE(AwaitState(*first, State::kSucceeded));
  Handle second = first->next_occurrence();
  ASSERT_TRUE(second.valid());
  EXPECT_EQ(second.state(), State::kPostponed);
  clock.Advance(2min + 30s);  // late by 30 s: still on the grid afterwards
  ASSERT_TRUE(AwaitState(second, State::kSucceeded));
  Handle third = second.next_occurrence();
  ASSERT_TRUE(third.valid());
  clock.Advance(90s);
  ASSERT_TRUE(AwaitState(third, State::kSucceeded));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_FALSE(third.next_occurrence().valid());  // COUNT=3 reached
  EXPECT_THAT(starts, ElementsAre(t0, t0 + 2min + 30s, t0 + 4min));
}

// Every occurrence carries the series' name and max_retries (an occurrence
// shares its series' rule and name, and copies its retry settings from the one
// before it): each reports the name and retries up to the series' max_retries.
TEST(RecurrenceEngineTest, EveryOccurrenceHasTheSeriesNameAndMaxRetries) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  const std::string name = "nightly report, a name past std::string's inline bytes";
  std::atomic<int> attempts{0};
  auto first = engine.Submit(
      [&](Context& ctx) {
        attempts.fetch_add(1);
        if (ctx.retry_count() < 5) ctx.RetryAfter(1s);  // the series allows 2
      },
      {.token = "report", .recurrence = "FREQ=MINUTELY;COUNT=3", .name = name,
       .max_retries = 2});
  ASSERT_TRUE(first.ok());
  std::vector<Handle> occurrences = {*first};
  for (int i = 0; i < 3; ++i) {
    Handle& h = occurrences.back();
    for (int retry = 0; retry < 2; ++retry) {
      ASSERT_TRUE(AwaitState(h, State::kPostponed)) << "occurrence " << i;
      clock.Advance(1s);
    }
    ASSERT_TRUE(AwaitState(h, State::kFailed)) << "occurrence " << i;
    EXPECT_EQ(h.retry_count(), 2) << "occurrence " << i;
    EXPECT_EQ(h.name(), name) << "occurrence " << i;
    if (i < 2) {
      Handle next = h.next_occurrence();
      ASSERT_TRUE(next.valid()) << "occurrence " << i;
      occurrences.push_back(next);
      clock.Advance(1min);
    }
  }
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_FALSE(occurrences.back().next_occurrence().valid());  // COUNT=3 reached
  EXPECT_EQ(attempts.load(), 9);
  // The name is the series', held by reference: with every Handle but the last
  // occurrence's dropped, the first two occurrences are freed (each held the
  // next), and their references with them; the last still reads it.
  Handle last = occurrences.back();
  occurrences.clear();
  *first = Handle();
  EXPECT_EQ(last.name(), name);
}

TEST(RecurrenceEngineTest, AFailedOccurrenceDoesNotStopTheSeriesButCancelingOneEndsIt) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  std::atomic<int> runs{0};
  auto first = engine.Submit(
      [&] {
        if (runs.fetch_add(1) == 0) throw std::runtime_error("first fails");
      },
      {.recurrence = "FREQ=DAILY;INTERVAL=3;"});  // Dynamics' own pattern
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(AwaitState(*first, State::kFailed));
  Handle second = first->next_occurrence();
  ASSERT_TRUE(second.valid());
  clock.Advance(std::chrono::hours(72));
  ASSERT_TRUE(AwaitState(second, State::kSucceeded));
  Handle third = second.next_occurrence();
  ASSERT_TRUE(third.valid());
  ASSERT_TRUE(engine.Cancel(third).ok());
  clock.Advance(std::chrono::hours(72));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_FALSE(third.next_occurrence().valid());
  EXPECT_EQ(runs.load(), 2);
}

// The first occurrence is the start. Run before it (postponed to now, or, the
// same, a clock stepped back), it must not find the start itself as its next
// occurrence: that ran the start twice, and COUNT=N ran N + 1 times.
TEST(RecurrenceEngineTest, AFirstOccurrenceRunBeforeItsStartIsNotRunAgainAtIt) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  const Clock::time_point start = clock.now() + 1h;
  std::mutex mu;
  std::vector<Clock::time_point> ran;
  auto first = engine.Submit(
      [&] {
        std::lock_guard<std::mutex> l(mu);
        ran.push_back(clock.now());
      },
      {.token = "series", .postpone_until = start, .recurrence = "FREQ=DAILY;COUNT=2"});
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(engine.Postpone(*first, std::nullopt).ok());  // run it now, before its start
  ASSERT_TRUE(AwaitState(*first, State::kSucceeded));
  Handle second = first->next_occurrence();
  ASSERT_TRUE(second.valid());
  clock.Advance(1h);  // the start: it ran already
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(second.state(), State::kPostponed) << second.Explain();
  clock.Advance(24h);  // the grid's next point after the start
  ASSERT_TRUE(AwaitState(second, State::kSucceeded));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_FALSE(second.next_occurrence().valid()) << "COUNT=2 reached";
  std::lock_guard<std::mutex> l(mu);
  ASSERT_EQ(ran.size(), 2u);
  EXPECT_EQ(ran[0], start - 1h);
  EXPECT_EQ(ran[1], start + 24h);
}

// Canceling an occurrence ends the series, a running one too: its user has no
// other handle to stop it with until it ends.
TEST(RecurrenceEngineTest, ACancelRequestOfARunningOccurrenceEndsTheSeries) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  Gate gate;
  std::atomic<bool> saw_request{false};
  auto first = engine.Submit(
      [&](Context& ctx) {
        gate.Waiter()();
        saw_request = ctx.cancel_requested();
      },
      {.recurrence = "FREQ=HOURLY"});
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(AwaitState(*first, State::kInProgress));
  auto outcome = engine.Cancel(*first);
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome, CancelOutcome::kCancelRequested);
  gate.Open();
  ASSERT_TRUE(AwaitState(*first, State::kSucceeded));  // what its callable reached
  EXPECT_TRUE(saw_request.load());
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_FALSE(first->next_occurrence().valid());
  EXPECT_EQ(engine.stats().submitted, 1u);
}

// kCancelRest cancels what waits behind a failure, but a failed occurrence's
// next is its series going on, which a failure never stops.
TEST(RecurrenceEngineTest, CancelRestSparesTheFailedOccurrencesNextButCancelsTheRest) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  ASSERT_TRUE(engine.SetFailurePolicy("t", FailurePolicy::kCancelRest).ok());
  Gate gate;
  std::atomic<int> occurrences{0};
  std::atomic<int> others{0};
  auto first = engine.Submit(
      [&] {
        gate.Waiter()();
        if (occurrences.fetch_add(1) == 0) throw std::runtime_error("first fails");
      },
      {.token = "t", .recurrence = "FREQ=HOURLY"});
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(AwaitState(*first, State::kInProgress));
  auto behind = engine.Submit([&] { others++; }, {.token = "t"});
  ASSERT_TRUE(behind.ok());
  gate.Open();
  ASSERT_TRUE(AwaitState(*first, State::kFailed));
  ASSERT_TRUE(AwaitState(*behind, State::kCanceled));
  Handle second = first->next_occurrence();
  ASSERT_TRUE(second.valid());
  EXPECT_EQ(second.state(), State::kPostponed) << second.Explain();
  clock.Advance(1h);
  ASSERT_TRUE(AwaitState(second, State::kSucceeded));
  EXPECT_EQ(occurrences.load(), 2);
  EXPECT_EQ(others.load(), 0);
  Handle third = second.next_occurrence();
  ASSERT_TRUE(third.valid());
  ASSERT_TRUE(engine.Cancel(third).ok());
  ASSERT_TRUE(engine.WaitIdle().ok());
}

// Runs fn on a thread with a small stack (256 KB): a recursion one level per
// item of a long list would overflow it.
void RunOnSmallStack(const std::function<void()>& fn) {
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, 256 * 1024), 0);
  pthread_t thread;
  auto trampoline = [](void* arg) -> void* {
    (*static_cast<const std::function<void()>*>(arg))();
    return nullptr;
  };
  ASSERT_EQ(pthread_create(&thread, &attr, trampoline,
                           const_cast<void*>(static_cast<const void*>(&fn))),
            0);
  ASSERT_EQ(pthread_join(thread, nullptr), 0);
  pthread_attr_destroy(&attr);
}

// Each occurrence holds its next (Handle::next_occurrence), so a Handle kept on
// the first holds the whole series; dropping it frees them all, one after
// another, not by a recursion as deep as the series (which took a long series
// past the stack).
TEST(RecurrenceEngineTest, DroppingTheFirstHandleOfALongSeriesFreesItWithoutRecursion) {
  constexpr int kOccurrences = 10000;
  ManualClock clock;
  Handle first;
  {
    Engine engine({.workers = 1, .clock = &clock});
    auto h = engine.Submit([] {}, {.recurrence = "FREQ=MINUTELY;COUNT=10000"});
    ASSERT_TRUE(h.ok());
    first = *h;
    Handle cur = *h;
    for (int i = 1; i < kOccurrences; ++i) {
      ASSERT_TRUE(AwaitState(cur, State::kSucceeded)) << i;  // its next is made by then
      cur = cur.next_occurrence();
      ASSERT_TRUE(cur.valid()) << i;
      clock.Advance(1min);
    }
    ASSERT_TRUE(AwaitState(cur, State::kSucceeded));
    EXPECT_FALSE(cur.next_occurrence().valid()) << "COUNT=10000 reached";
  }
  Handle walk = first.next_occurrence();  // the series is still reachable from the first
  ASSERT_TRUE(walk.valid());
  EXPECT_EQ(walk.state(), State::kSucceeded);
  walk = Handle();
  RunOnSmallStack([&first] { first = Handle(); });
  EXPECT_FALSE(first.valid());
}

// The next occurrence takes over the admission credit of the one that ends: made
// while the engine is full, it is not refused (the series goes on), and it does
// not take the engine past max_pending either.
TEST(RecurrenceEngineTest, AnOccurrenceTakesOverItsPredecessorsPlaceUnderMaxPending) {
  ManualClock clock;
  Engine engine({.workers = 1, .max_pending = 2, .clock = &clock});
  Gate first_gate;
  auto first = engine.Submit(first_gate.Waiter(), {.recurrence = "FREQ=HOURLY;COUNT=2"});
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(AwaitState(*first, State::kInProgress));
  Gate later_gate;
  auto later = engine.Submit(later_gate.Waiter());  // the engine is full now
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(engine.Post([] {}).code(), absl::StatusCode::kResourceExhausted);
  first_gate.Open();  // the first occurrence ends, the second is made
  ASSERT_TRUE(AwaitState(*first, State::kSucceeded));
  Handle second = first->next_occurrence();
  ASSERT_TRUE(second.valid());
  EXPECT_EQ(second.state(), State::kPostponed);
  ASSERT_TRUE(AwaitState(*later, State::kInProgress));
  // Pending: `later` and the second occurrence, so still full.
  EXPECT_EQ(engine.Post([] {}).code(), absl::StatusCode::kResourceExhausted);
  later_gate.Open();
  clock.Advance(1h);
  ASSERT_TRUE(AwaitState(second, State::kSucceeded));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_FALSE(second.next_occurrence().valid());  // COUNT=2 reached
  // Both places are free again, and no more than both.
  Gate end_gate;
  EXPECT_TRUE(engine.Post(end_gate.Waiter()).ok());
  EXPECT_TRUE(engine.Post([] {}).ok());
  EXPECT_EQ(engine.Post([] {}).code(), absl::StatusCode::kResourceExhausted);
  end_gate.Open();
  ASSERT_TRUE(engine.WaitIdle().ok());
}

// A next occurrence that finds the wheel full still waits for its time: it
// takes a place past max_timers (it replaces the occurrence that ended), and
// other postponements are refused meanwhile. (It ran at once instead, and its
// own next, from its place on the grid, was in the future too: with the wheel
// full, a daily series ran every occurrence to the end of the clock's range
// back to back, 86,298 of them, and ended.)
// A daily series of `count` on `token` whose first occurrence runs while
// `filler` takes the wheel's one place (max_timers 1): returns its second
// occurrence, which took a place past max_timers, once the engine is idle.
void SecondOccurrencePastAFullWheel(Engine& engine, ManualClock& clock, const Token& token,
                                    int count, std::atomic<int>& runs, Handle* filler,
                                    Handle* second) {
  Gate gate;
  auto first = engine.Submit(
      [&runs, wait = gate.Waiter()] {
        if (runs.fetch_add(1) == 0) wait();
      },
      {.token = token, .recurrence = absl::StrCat("FREQ=DAILY;COUNT=", count)});
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(AwaitState(*first, State::kInProgress));
  // The wheel's one place, taken while the first occurrence runs.
  auto f = engine.Submit([] {}, {.postpone_until = clock.now() + 1h});
  ASSERT_TRUE(f.ok());
  *filler = *f;
  gate.Open();
  ASSERT_TRUE(AwaitState(*first, State::kSucceeded));
  *second = first->next_occurrence();
  ASSERT_TRUE(second->valid());
  ASSERT_TRUE(engine.WaitIdle().ok());
}

TEST(RecurrenceEngineTest, AnOccurrenceThatFindsTheWheelFullStillWaitsForItsTime) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock, .max_timers = 1});
  std::atomic<int> runs{0};
  Handle filler, second;
  ASSERT_NO_FATAL_FAILURE(
      SecondOccurrencePastAFullWheel(engine, clock, Token(), 3, runs, &filler, &second));
  EXPECT_EQ(second.state(), State::kPostponed);
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(engine.stats().postponed, 2u);  // one past max_timers
  // The wheel is still full for everything else.
  EXPECT_EQ(engine.Post([] {}, {.postpone_until = clock.now() + 1min}).code(),
            absl::StatusCode::kResourceExhausted);
  clock.Advance(std::chrono::hours(24));
  ASSERT_TRUE(AwaitState(second, State::kSucceeded));
  EXPECT_EQ(runs.load(), 2);
  ASSERT_TRUE(AwaitState(filler, State::kSucceeded));
  Handle third = second.next_occurrence();
  ASSERT_TRUE(third.valid());
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(third.state(), State::kPostponed);
  clock.Advance(std::chrono::hours(24));
  ASSERT_TRUE(AwaitState(third, State::kSucceeded));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_FALSE(third.next_occurrence().valid()) << "COUNT=3 reached, yet the series went on";
  EXPECT_EQ(runs.load(), 3);
  EXPECT_EQ(engine.stats().postponed, 0u);
}

// Its place past max_timers stays with the occurrence while it is suspended, so
// ResumeToken resumes it with the wheel still full. (Suspend gave the place
// back: the Resume was refused, and ResumeToken left it Suspended, counting 0.)
TEST(RecurrenceEngineTest, ASuspendedOccurrenceKeepsItsPlacePastAFullWheel) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock, .max_timers = 1});
  std::atomic<int> runs{0};
  Handle filler, second;
  ASSERT_NO_FATAL_FAILURE(
      SecondOccurrencePastAFullWheel(engine, clock, "daily", 2, runs, &filler, &second));
  ASSERT_EQ(second.state(), State::kPostponed);
  auto suspended = engine.SuspendToken("daily");
  ASSERT_TRUE(suspended.ok());
  EXPECT_EQ(*suspended, 1u);
  EXPECT_EQ(second.state(), State::kSuspended);
  auto resumed = engine.ResumeToken("daily");
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(*resumed, 1u) << "the occurrence could not be resumed into the full wheel";
  EXPECT_EQ(second.state(), State::kPostponed);
  EXPECT_EQ(engine.stats().postponed, 2u);  // one past max_timers, as before
  clock.Advance(std::chrono::hours(24));
  ASSERT_TRUE(AwaitState(second, State::kSucceeded));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(runs.load(), 2);
  EXPECT_EQ(engine.stats().postponed, 0u);
}

// CancelToken ends a series whose occurrence is running: a series Post made
// has no Handle, so its token is the only way to stop it. The running
// occurrence is asked to stop (it sees cancel_requested, as a Cancel of it
// would make it see) and no next occurrence follows. (CancelToken found nothing
// not started to cancel, answered 0, and the series went on.)
TEST(RecurrenceEngineTest, CancelTokenWhileAnOccurrenceRunsEndsItsSeries) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  Gate gate;
  std::latch running(1);
  std::atomic<int> runs{0};
  std::atomic<bool> asked{false};
  ASSERT_TRUE(engine
                  .Post(
                      [&, wait = gate.Waiter()](Context& ctx) {
                        if (runs.fetch_add(1) != 0) return;
                        running.count_down();
                        wait();
                        asked = ctx.cancel_requested();
                      },
                      {.token = "series", .recurrence = "FREQ=MINUTELY"})
                  .ok());
  running.wait();
  auto canceled = engine.CancelToken("series");
  ASSERT_TRUE(canceled.ok());
  EXPECT_EQ(*canceled, 0u);  // asked to stop, not canceled: nothing changed state
  gate.Open();
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_TRUE(asked.load());
  clock.Advance(std::chrono::hours(1));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(runs.load(), 1);
  const Stats s = engine.stats();
  EXPECT_EQ(s.submitted, 1u);  // no next occurrence was made
  EXPECT_EQ(s.pending, 0u);
}

// What a CancelToken's request ends says it was CancelToken's: a running
// occurrence's retry that is not made (the first request's maker is kept).
// (It said "Cancel" whoever asked.)
TEST(RecurrenceEngineTest, WhatACancelTokenRequestEndsNamesCancelToken) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  Gate gate;
  std::latch running(1);
  auto h = engine.Submit(
      [&running, wait = gate.Waiter()](Context& ctx) {
        running.count_down();
        wait();
        ctx.RetryAfter(1ms, "backend down");
      },
      {.token = "series", .recurrence = "FREQ=MINUTELY"});
  ASSERT_TRUE(h.ok());
  running.wait();
  ASSERT_TRUE(engine.CancelToken("series").ok());
  // A later Cancel's request does not replace the first one's maker.
  auto later = engine.Cancel(*h);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(*later, CancelOutcome::kCancelRequested);
  gate.Open();
  ASSERT_TRUE(AwaitState(*h, State::kCanceled));
  EXPECT_THAT(h->error(),
              HasSubstr("retry canceled: CancelToken was requested during the attempt "
                        "(backend down)"));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_FALSE(h->next_occurrence().valid());
  EXPECT_EQ(engine.stats().pending, 0u);
}

TEST(RecurrenceEngineTest, AnInvalidRuleIsRejectedNamingTheBadPart) {
  Engine engine({.workers = 1});
  auto h = engine.Submit([] {}, {.recurrence = "FREQ=DAILY;INTERVAL=0"});
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(h.status().message()), HasSubstr("INTERVAL"));
  EXPECT_EQ(engine.stats().submitted, 0u);
}

// --- Shutdown with time ---------------------------------------------------------------

TEST(ShutdownWithTimeTest, DrainReadyCancelsPostponedAndSuspendedWork) {
  ManualClock clock;
  std::atomic<int> ran{0};
  Handle p, s, r;
  {
    Engine engine({.workers = 1, .clock = &clock});
    p = *engine.Submit([&] { ran++; }, {.postpone_until = clock.now() + 1h});
    s = *engine.Submit([&] { ran++; }, {.suspended = true});
    r = *engine.Submit([&] { ran++; });
    ASSERT_TRUE(engine.Shutdown(ShutdownMode::kDrainReady).ok());
    EXPECT_EQ(engine.Postpone(p, std::nullopt).code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_EQ(p.state(), State::kCanceled);
  EXPECT_EQ(s.state(), State::kCanceled);
  EXPECT_EQ(r.state(), State::kSucceeded);
  EXPECT_EQ(ran.load(), 1);
}

TEST(ShutdownWithTimeTest, DrainAllWaitsForPostponedWorkToComeDue) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  const Clock::time_point due = clock.now() + 1h;
  auto p = engine.Submit([] {}, {.postpone_until = due});
  ASSERT_TRUE(p.ok());
  State before_advance = State::kSucceeded;
  std::thread advancer([&] {
    // Advance once shutdown has closed the engine (Submit is refused then).
    while (engine.Submit([] {}).ok()) std::this_thread::yield();
    before_advance = p->state();
    clock.Advance(1h);
  });
  ASSERT_TRUE(engine.Shutdown(ShutdownMode::kDrainAll).ok());
  advancer.join();
  EXPECT_EQ(before_advance, State::kPostponed);  // Shutdown had not run it early
  EXPECT_EQ(p->state(), State::kSucceeded);
  ASSERT_TRUE(p->started_at().has_value());
  EXPECT_GE(*p->started_at(), due);
}

TEST(ShutdownWithTimeTest, RetriesDuringShutdownAreCanceled) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  Gate gate;
  auto a = engine.Submit([&](Context& ctx) {
    gate.Waiter()();
    ctx.RetryAfter(1ms, "again");
  });
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(AwaitState(*a, State::kInProgress));
  std::thread opener([&] {
    while (engine.Submit([] {}).ok()) std::this_thread::yield();
    gate.Open();
  });
  ASSERT_TRUE(engine.Shutdown(ShutdownMode::kDrainAll).ok());
  opener.join();
  EXPECT_EQ(a->state(), State::kCanceled);
  EXPECT_THAT(a->error(), HasSubstr("shutting down"));
}

}  // namespace
}  // namespace ordo
