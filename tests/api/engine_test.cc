// engine_test.cc: the core rules of DESIGN.md section 1 through the public API:
// chains, independent operations, cancel, failure, handles, WaitIdle, shutdown,
// bad input, stats. Time-related rules are in lifecycle_test.cc.
#include "ordo/engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <latch>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "support/journal.h"

namespace ordo {
namespace {

using ::ordo::testing::AwaitState;
using ::ordo::testing::Gate;
using ::ordo::testing::Journal;
using ::ordo::testing::OverlapGuard;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

TEST(ChainTest, OperationsOfOneTokenRunInCreationOrder) {
  Engine engine({.workers = 4});
  std::vector<int> seen;  // unsynchronized on purpose: the chain orders the writes
  std::vector<Handle> handles;
  for (int i = 0; i < 2000; ++i) {
    auto h = engine.Submit([&seen, i] { seen.push_back(i); }, {.token = "account-42"});
    ASSERT_TRUE(h.ok());
    handles.push_back(*h);
  }
  ASSERT_TRUE(engine.WaitIdle().ok());
  ASSERT_EQ(seen.size(), 2000u);
  for (int i = 0; i < 2000; ++i) ASSERT_EQ(seen[i], i);
  for (auto& h : handles) EXPECT_EQ(h.state(), State::kSucceeded);
}

TEST(ChainTest, AtMostOneOperationOfATokenIsInProgress) {
  Engine engine({.workers = 4});
  constexpr int kTokens = 8;
  OverlapGuard guards[kTokens];
  std::atomic<int> overlaps{0};
  std::atomic<int> ran{0};
  for (int i = 0; i < 4000; ++i) {
    const int t = i % kTokens;
    auto h = engine.Submit(
        [&, t] {
          if (!guards[t].Enter()) overlaps.fetch_add(1);
          for (int k = 0; k < 50; ++k) std::atomic_signal_fence(std::memory_order_seq_cst);
          guards[t].Exit();
          ran.fetch_add(1);
        },
        {.token = Token(t)});
    ASSERT_TRUE(h.ok());
  }
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(ran.load(), 4000);
}

// A held head keeps A and B queued together, so their order is the chain's, not
// A having finished before B was submitted.
TEST(ChainTest, CreationOrderFollowsHappensBeforeAcrossThreads) {
  Engine engine({.workers = 2});
  for (int round = 0; round < 20; ++round) {
    Gate gate;
    auto head = engine.Submit(gate.Waiter(), {.token = "t"});
    ASSERT_TRUE(head.ok());
    ASSERT_TRUE(AwaitState(*head, State::kInProgress));
    std::vector<int> seen;
    auto a = engine.Submit([&] { seen.push_back(1); }, {.token = "t"});
    ASSERT_TRUE(a.ok());
    // Submit(B) on another thread, after Submit(A) returned (joined => ordered);
    // the two threads' submits reach the chain from different stripes.
    std::thread other([&] {
      auto b = engine.Submit([&] { seen.push_back(2); }, {.token = "t"});
      ASSERT_TRUE(b.ok());
    });
    other.join();
    EXPECT_EQ(a->state(), State::kWaiting);  // behind the held head
    gate.Open();
    ASSERT_TRUE(engine.WaitIdle().ok());
    EXPECT_THAT(seen, ElementsAre(1, 2)) << "round " << round;
  }
}

TEST(ChainTest, AnOperationSubmittingToItsOwnTokenDoesNotRunItInline) {
  Engine engine({.workers = 2});
  std::vector<std::string> seen;
  std::atomic<bool> inner_started_during_outer{false};
  Handle inner;
  auto outer = engine.Submit(
      [&] {
        seen.push_back("outer-begin");
        auto h = engine.Submit([&] { seen.push_back("inner"); }, {.token = "self"});
        ASSERT_TRUE(h.ok());
        inner = *h;
        if (inner.state() != State::kWaiting) inner_started_during_outer = true;
        seen.push_back("outer-end");
      },
      {.token = "self"});
  ASSERT_TRUE(outer.ok());
  ASSERT_TRUE(AwaitState(*outer, State::kSucceeded));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_FALSE(inner_started_during_outer.load());
  EXPECT_THAT(seen, ElementsAre("outer-begin", "outer-end", "inner"));
}

// What an operation's captures do as they are destroyed is part of what it
// wrote: it happens-before the next operation of its token starts, also when
// the chain had emptied. (The captures were destroyed after the chain emptied,
// so an operation submitted then started on the other worker meanwhile.)
TEST(ChainTest, AnOperationsCapturesAreDestroyedBeforeTheNextOfItsTokenStarts) {
  Engine engine({.workers = 2});
  std::atomic<bool> next_started{false};
  std::atomic<bool> next_submitted{false};
  std::atomic<bool> next_seen_early{false};
  std::atomic<bool> destroyed{false};
  std::promise<void> destroying;
  struct Probe {
    std::atomic<bool>* next_started;
    std::atomic<bool>* next_submitted;
    std::atomic<bool>* next_seen_early;
    std::atomic<bool>* destroyed;
    std::promise<void>* destroying;
    bool armed = true;
    Probe(std::atomic<bool>* n, std::atomic<bool>* s, std::atomic<bool>* e, std::atomic<bool>* d,
          std::promise<void>* p)
        : next_started(n), next_submitted(s), next_seen_early(e), destroyed(d), destroying(p) {}
    Probe(const Probe&) = delete;
    Probe(Probe&& o) noexcept
        : next_started(o.next_started),
          next_submitted(o.next_submitted),
          next_seen_early(o.next_seen_early),
          destroyed(o.destroyed),
          destroying(o.destroying) {
      o.armed = false;  // only the engine's copy reports
    }
    ~Probe() {
      if (!armed) return;
      destroying->set_value();
      // The next operation is submitted once we are here (a bounded wait for
      // it); then it gets a window to start early, which a correct engine
      // never lets it take: a bounded look, not a synchronisation.
      for (int i = 0; i < 10000 && !next_submitted->load(); ++i) {
        std::this_thread::sleep_for(1ms);
      }
      for (int i = 0; i < 50 && !next_started->load(); ++i) {
        std::this_thread::sleep_for(1ms);
      }
      if (next_started->load()) next_seen_early->store(true);
      destroyed->store(true);
    }
  };
  auto first = engine.Submit(
      [p = Probe(&next_started, &next_submitted, &next_seen_early, &destroyed, &destroying)] {},
      {.token = "t"});
  ASSERT_TRUE(first.ok());
  destroying.get_future().wait();  // the first has run, and its captures are going
  std::atomic<bool> destroyed_before_next{false};
  auto second = engine.Submit(
      [&] {
        destroyed_before_next = destroyed.load();
        next_started = true;
      },
      {.token = "t"});
  next_submitted = true;
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(AwaitState(*second, State::kSucceeded));
  EXPECT_FALSE(next_seen_early.load()) << "the next operation started during the destructor";
  EXPECT_TRUE(destroyed_before_next.load())
      << "the next operation started before the destructor ended";
}

// Two callables that each wait for the other, up to a bound: both meet only if
// they run at the same time. Run one after the other, the first gives up after
// the bound and the second finds it gone: the test fails, it does not hang.
class Rendezvous {
 public:
  auto Member() {
    return [this] {
      arrived_.fetch_add(1, std::memory_order_acq_rel);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (arrived_.load(std::memory_order_acquire) < 2 &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
      }
      // Both arrived and neither has left: they ran at the same time.
      if (arrived_.load(std::memory_order_acquire) >= 2 &&
          left_.load(std::memory_order_acquire) == 0) {
        met_.fetch_add(1, std::memory_order_acq_rel);
      }
      left_.fetch_add(1, std::memory_order_acq_rel);
    };
  }
  int met() const { return met_.load(std::memory_order_acquire); }

 private:
  std::atomic<int> arrived_{0}, left_{0}, met_{0};
};

TEST(ChainTest, DifferentTokensRunConcurrently) {
  Engine engine({.workers = 2});
  Rendezvous both;
  auto a = engine.Submit(both.Member(), {.token = "a"});
  auto b = engine.Submit(both.Member(), {.token = "b"});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(AwaitState(*a, State::kSucceeded));
  EXPECT_TRUE(AwaitState(*b, State::kSucceeded));
  EXPECT_GE(both.met(), 1) << "the two tokens' operations ran one after the other";
}

TEST(ChainTest, IntegerAndStringTokensNeverMatch) {
  Engine engine({.workers = 2});
  Gate gate;
  auto a = engine.Submit(gate.Waiter(), {.token = 7});
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(AwaitState(*a, State::kInProgress));
  auto b = engine.Submit([] {}, {.token = "7"});
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(AwaitState(*b, State::kSucceeded));  // not queued behind a
  EXPECT_EQ(a->state(), State::kInProgress);
  gate.Open();
  EXPECT_TRUE(AwaitState(*a, State::kSucceeded));
}

TEST(IndependentTest, IndependentOperationsRunConcurrently) {
  Engine engine({.workers = 2});
  Rendezvous both;
  auto a = engine.Submit(both.Member());
  auto b = engine.Submit(both.Member());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(AwaitState(*a, State::kSucceeded));
  EXPECT_TRUE(AwaitState(*b, State::kSucceeded));
  EXPECT_GE(both.met(), 1) << "the two operations ran one after the other";
}

TEST(IndependentTest, OneWorkerStartsOneProducersOperationsInCreationOrder) {
  Engine engine({.workers = 1});
  Gate gate;
  ASSERT_TRUE(engine.Submit(gate.Waiter()).ok());  // hold the worker while we submit
  std::vector<int> seen;
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(engine.Submit([&seen, i] { seen.push_back(i); }).ok());
  gate.Open();
  ASSERT_TRUE(engine.WaitIdle().ok());
  ASSERT_EQ(seen.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(seen[i], i);
}

// 2 workers, and 4: from 3 workers on, they take from the injector one at a time
// and the others steal (the pop lease), which must keep the order as close.
class StartOrderTest : public ::testing::TestWithParam<int> {};

TEST_P(StartOrderTest, StartOrderFromOneProducerIsCloseToCreationOrder) {
  Engine engine({.workers = GetParam()});
  constexpr int kOps = 20000;
  std::atomic<int> next_start{0};
  std::vector<int> start_rank(kOps, -1);
  for (int i = 0; i < kOps; ++i) {
    ASSERT_TRUE(engine.Submit([&, i] { start_rank[i] = next_start.fetch_add(1); }).ok());
  }
  ASSERT_TRUE(engine.WaitIdle().ok());
  std::vector<int> disp(kOps);
  double total = 0;
  for (int i = 0; i < kOps; ++i) {
    ASSERT_GE(start_rank[i], 0);
    disp[i] = std::abs(start_rank[i] - i);
    total += disp[i];
  }
  std::sort(disp.begin(), disp.end());
  // Displacement comes from the workers taking batches of the injector (up to
  // 32 each in the default build, kInjectorBatch in config.h; the small world's
  // are smaller, and the bound generous there), and from a worker preempted while it
  // holds one: typical displacement stays within the batches the workers hold,
  // not the run's length. (A fixed 64 for 4 workers failed once in a clean CI
  // run under ASan, at 77: 4 workers on 2 cores, preempted with their batches.)
  RecordProperty("mean_displacement", static_cast<int>(total / kOps));
  RecordProperty("p50_displacement", disp[kOps / 2]);
  RecordProperty("p90_displacement", disp[kOps * 9 / 10]);
  EXPECT_LT(disp[kOps / 2], 32 * GetParam()) << "median displacement";
  EXPECT_LT(total / kOps, 512.0) << "mean displacement";
}

INSTANTIATE_TEST_SUITE_P(Workers, StartOrderTest, ::testing::Values(2, 4),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::to_string(info.param) + "Workers";
                         });

TEST(FairnessTest, ALongChainYieldsToOtherWorkAfterItsBudget) {
  Engine engine({.workers = 1, .chain_budget = 4});
  Gate gate;
  std::vector<std::string> seen;  // one worker: no synchronization needed
  ASSERT_TRUE(engine.Submit(gate.Waiter()).ok());  // hold the worker while we submit
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(engine.Submit([&seen, i] { seen.push_back("t" + std::to_string(i)); },
                              {.token = "long"})
                    .ok());
  }
  ASSERT_TRUE(engine.Submit([&seen] { seen.push_back("X"); }).ok());
  gate.Open();
  ASSERT_TRUE(engine.WaitIdle().ok());
  ASSERT_EQ(seen.size(), 101u);
  // The chain ran 4 operations in a row, then queued behind other work: X runs
  // within the next budget, not after the whole chain.
  const auto x = std::find(seen.begin(), seen.end(), "X") - seen.begin();
  EXPECT_GE(x, 4);
  EXPECT_LE(x, 8);
  for (int i = 0, k = 0; i < 101; ++i) {
    if (i != x) {
      EXPECT_EQ(seen[i], "t" + std::to_string(k++));  // and kept its order
    }
  }
}

TEST(CancelTest, CancelBeforeStartMeansTheBodyNeverRunsAndTheChainMovesOn) {
  Engine engine({.workers = 2});
  Gate gate;
  std::atomic<bool> b_ran{false};
  Journal journal;
  auto a = engine.Submit(gate.Waiter(), {.token = "t"});
  auto b = engine.Submit([&] { b_ran = true; }, {.token = "t"});
  auto c = engine.Submit(journal.Step("C"), {.token = "t"});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_TRUE(AwaitState(*a, State::kInProgress));
  auto outcome = engine.Cancel(*b);
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome, CancelOutcome::kCanceled);
  EXPECT_EQ(b->state(), State::kCanceled);
  gate.Open();
  ASSERT_TRUE(AwaitState(*c, State::kSucceeded));
  EXPECT_FALSE(b_ran.load());
  EXPECT_THAT(journal.Entries(), ElementsAre("C"));
  EXPECT_THAT(b->error(), HasSubstr("Cancel"));
}

TEST(CancelTest, CancelOfAQueuedIndependentOperationPreventsItsBody) {
  Engine engine({.workers = 1});
  Gate gate;
  std::atomic<bool> ran{false};
  ASSERT_TRUE(engine.Submit(gate.Waiter()).ok());
  auto h = engine.Submit([&] { ran = true; });
  ASSERT_TRUE(h.ok());
  auto outcome = engine.Cancel(*h);
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome, CancelOutcome::kCanceled);
  gate.Open();
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(engine.stats().canceled, 1u);
}

TEST(CancelTest, CancelOfARunningOperationIsACooperativeRequest) {
  Engine engine({.workers = 2});
  std::atomic<bool> entered{false};
  auto h = engine.Submit([&](Context& ctx) {
    entered = true;
    while (!ctx.cancel_requested()) std::this_thread::yield();
    return absl::CancelledError("stopped on request");
  });
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(AwaitState(*h, State::kInProgress));
  auto outcome = engine.Cancel(*h);
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome, CancelOutcome::kCancelRequested);
  // It ends in whatever state its callable reaches: here Failed with its message.
  ASSERT_TRUE(AwaitState(*h, State::kFailed));
  EXPECT_THAT(h->error(), HasSubstr("stopped on request"));
}

TEST(CancelTest, CancelOfAFinishedOperationIsAnErrorAndChangesNothing) {
  Engine engine({.workers = 1});
  auto h = engine.Submit([] {});
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(AwaitState(*h, State::kSucceeded));
  auto outcome = engine.Cancel(*h);
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(outcome.status().message()), HasSubstr("already finished"));
  EXPECT_EQ(h->state(), State::kSucceeded);
  EXPECT_EQ(engine.stats().canceled, 0u);
}

TEST(CancelTest, CancelOfAnEmptyHandleIsInvalid) {
  Engine engine({.workers = 1});
  EXPECT_EQ(engine.Cancel(Handle()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FailureTest, AThrowingCallableFailsWithItsMessageAndTheChainMovesOn) {
  Engine engine({.workers = 2});
  Journal journal;
  auto a = engine.Submit([] { throw std::runtime_error("boom"); }, {.token = "t"});
  auto b = engine.Submit(journal.Step("B"), {.token = "t"});
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(AwaitState(*b, State::kSucceeded));
  EXPECT_EQ(a->state(), State::kFailed);
  EXPECT_EQ(a->error(), "boom");
  EXPECT_THAT(journal.Entries(), ElementsAre("B"));
}

TEST(FailureTest, ANonStandardExceptionFailsTheOperationNotTheProcess) {
  Engine engine({.workers = 1});
  auto a = engine.Submit([] { throw 42; });
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(AwaitState(*a, State::kFailed));
  EXPECT_THAT(a->error(), HasSubstr("unknown exception"));
}

// pthread_exit in an operation unwinds its worker thread with a forced unwind,
// which the engine must not swallow and cannot survive (the operation would
// never end, the worker would be gone): the process ends with a message that
// names it. (Swallowed by catch (...), glibc aborted with "FATAL: exception not
// rethrown", naming nothing.)
TEST(FailureDeathTest, PthreadExitInAnOperationEndsTheProcessWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Engine engine({.workers = 1});
        auto h = engine.Submit([] { pthread_exit(nullptr); });
        if (h.ok()) (void)h->Wait();
      },
      "an operation called pthread_exit");
}

// A ManualClock's listener that calls back into its clock would lock the
// listeners' mutex its thread already holds (undefined; a hang): the process
// ends with a message that says so. Another clock may be moved from there.
TEST(FailureDeathTest, AManualClocksListenerCallingItsClockEndsTheProcessWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  {
    ManualClock a;
    ManualClock b;
    int heard = 0;
    (void)b.AddListener([&heard] { ++heard; });
    (void)a.AddListener([&b] { b.Advance(1ms); });  // another clock: fine
    a.Advance(1ms);
    EXPECT_EQ(heard, 1);
    EXPECT_EQ(b.Now() - ManualClock().Now(), 1ms);
  }
  EXPECT_DEATH(
      {
        ManualClock clock;
        std::uint64_t id = 0;
        id = clock.AddListener([&clock, &id] { clock.RemoveListener(id); });
        clock.Advance(1ms);
      },
      "ManualClock::RemoveListener called from one of the same clock's listeners");
  EXPECT_DEATH(
      {
        ManualClock clock;
        (void)clock.AddListener([&clock] { clock.Advance(1ms); });
        clock.Advance(1ms);
      },
      "ManualClock::Advance or Set called from one of the same clock's listeners");
  EXPECT_DEATH(  // through another clock's listener: a to b, and back to a
      {
        ManualClock a;
        ManualClock b;
        (void)a.AddListener([&b] { b.Advance(1ms); });
        (void)b.AddListener([&a] { a.Set(a.Now()); });
        a.Advance(1ms);
      },
      "ManualClock::Advance or Set called from one of the same clock's listeners");
}

// An engine destroyed from one of its own callables would wait for itself: the
// process ends with a message that says so (it was std::terminate, from a
// worker joining itself, with no word of why).
TEST(FailureDeathTest, DestroyingTheEngineFromItsOwnCallableEndsTheProcessWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto engine = std::make_shared<Engine>(Options{.workers = 1});
        std::promise<void> posted;
        auto h = engine->Submit([&engine, f = posted.get_future().share()]() mutable {
          f.wait();
          engine.reset();  // the last owner, inside the engine's own callable
        });
        posted.set_value();
        if (h.ok()) (void)h->Wait();
      },
      "destroyed from inside one of its own callables");
  // Or in its worker, by the destructor of the capture that held the last
  // owner (the first check looked only inside the callable's body).
  EXPECT_DEATH(
      {
        auto engine = std::make_shared<Engine>(Options{.workers = 1});
        std::promise<void> released;
        ASSERT_TRUE(engine->Post([engine, f = released.get_future().share()] { f.wait(); }).ok());
        engine.reset();  // the capture now holds the last owner
        released.set_value();
        std::promise<void>().get_future().wait();  // the worker ends the process
      },
      "destroyed from inside one of its own callables or their");
}

TEST(FailureTest, AReturnedErrorStatusFailsWithItsMessage) {
  Engine engine({.workers = 1});
  auto a = engine.Submit([]() -> absl::Status { return absl::InternalError("disk on fire"); });
  auto b = engine.Submit([](Context&) { return absl::OkStatus(); });
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(AwaitState(*a, State::kFailed));
  EXPECT_THAT(a->error(), HasSubstr("disk on fire"));
  ASSERT_TRUE(AwaitState(*b, State::kSucceeded));
  EXPECT_EQ(b->error(), "");
}

TEST(HandleTest, ReportsIdTimesAndName) {
  Engine engine({.workers = 1});
  auto a = engine.Submit([] {}, {.name = "first"});
  auto b = engine.Submit([] {});
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(AwaitState(*a, State::kSucceeded));
  ASSERT_TRUE(AwaitState(*b, State::kSucceeded));
  EXPECT_LT(a->id(), b->id());
  EXPECT_EQ(a->name(), "first");
  ASSERT_TRUE(a->started_at().has_value());
  ASSERT_TRUE(a->completed_at().has_value());
  EXPECT_LE(a->created_at(), *a->started_at());
  EXPECT_LE(*a->started_at(), *a->completed_at());
  EXPECT_EQ(a->retry_count(), 0);
  Handle copy = *a;
  EXPECT_EQ(copy, *a);
  EXPECT_EQ(copy.state(), State::kSucceeded);
}

// Every way to submit numbers from one counter: plain posts, posts from inside
// callables, posts with options, batch items and submits. No two share an id,
// none is 0, a callable that asks twice gets the same answer, and a Handle's
// ids from one thread increase in creation order.
TEST(ContextTest, IdsAreUniqueAcrossEveryWayToSubmitAndStableWithinAnOperation) {
  std::mutex mu;
  std::vector<std::uint64_t> ids;
  std::atomic<int> unstable{0};
  auto record = [&](Context& ctx) {
    const std::uint64_t id = ctx.id();
    if (ctx.id() != id) unstable.fetch_add(1);
    std::lock_guard<std::mutex> l(mu);
    ids.push_back(id);
  };
  std::vector<Handle> handles;
  Engine engine({.workers = 2});  // last: destroyed first, while what it runs can still reach the rest
  constexpr int kEach = 500;
  for (int i = 0; i < kEach; ++i) {
    ASSERT_TRUE(engine.Post(record).ok());
    ASSERT_TRUE(engine
                    .Post([&, record](Context& ctx) {
                      record(ctx);
                      ASSERT_TRUE(engine.Post(record).ok());  // from a worker
                    })
                    .ok());
    ASSERT_TRUE(engine.Post(record, {.token = Token(i % 7)}).ok());
    auto h = engine.Submit(record);
    ASSERT_TRUE(h.ok());
    handles.push_back(*h);
  }
  Batch batch(engine);
  for (int i = 0; i < kEach; ++i) ASSERT_TRUE(batch.Add(record).ok());
  ASSERT_TRUE(engine.PostBatch(batch).ok());
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(unstable.load(), 0);
  std::lock_guard<std::mutex> l(mu);
  ASSERT_EQ(ids.size(), 6u * kEach);
  std::vector<std::uint64_t> sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_NE(sorted.front(), 0u);
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "an id was reused";
  for (std::size_t i = 0; i < handles.size(); ++i) {
    EXPECT_TRUE(std::binary_search(sorted.begin(), sorted.end(), handles[i].id()));
    if (i > 0) {
      EXPECT_LT(handles[i - 1].id(), handles[i].id());
    }
  }
}

// A Post(f) takes its id from its thread's block (engine_impl.h D2), a Submit,
// an operation with options or a batch from the counter (D1), which closes the
// block: one thread's ids increase in its creation order whatever the kind,
// from outside the engine and from inside a callable alike.
TEST(ContextTest, OneThreadsIdsIncreaseInItsCreationOrderWhateverTheKind) {
  constexpr int kRounds = 100;
  constexpr int kPerRound = 7;  // the creations of one round, below
  std::vector<std::atomic<std::uint64_t>> outside(kRounds * kPerRound);
  std::vector<std::atomic<std::uint64_t>> inside(kRounds * kPerRound);
  Engine engine({.workers = 2});
  // Creates one round's operations, each recording its id at its creation index.
  auto round = [&engine](std::vector<std::atomic<std::uint64_t>>& at, int r) {
    auto rec = [&at](int i) {
      return [&at, i](Context& ctx) { at[i].store(ctx.id(), std::memory_order_relaxed); };
    };
    const int b = r * kPerRound;
    EXPECT_TRUE(engine.Post(rec(b)).ok());
    EXPECT_TRUE(engine.Post(rec(b + 1)).ok());
    EXPECT_TRUE(engine.Submit(rec(b + 2)).ok());
    EXPECT_TRUE(engine.Post(rec(b + 3)).ok());
    EXPECT_TRUE(engine.Post(rec(b + 4), {.token = Token(r % 3)}).ok());
    Batch batch(engine);
    EXPECT_TRUE(batch.Add(rec(b + 5)).ok());
    EXPECT_TRUE(engine.PostBatch(batch).ok());
    EXPECT_TRUE(engine.Post(rec(b + 6)).ok());
  };
  for (int r = 0; r < kRounds; ++r) round(outside, r);
  ASSERT_TRUE(engine
                  .Post([&] {
                    for (int r = 0; r < kRounds; ++r) round(inside, r);
                  })
                  .ok());
  ASSERT_TRUE(engine.WaitIdle().ok());
  for (auto* ids : {&outside, &inside}) {
    for (std::size_t i = 0; i < ids->size(); ++i) {
      const std::uint64_t id = (*ids)[i].load(std::memory_order_relaxed);
      ASSERT_NE(id, 0u) << (ids == &inside ? "inside " : "outside ") << i << " never ran";
      if (i > 0) {
        ASSERT_LT((*ids)[i - 1].load(std::memory_order_relaxed), id)
            << (ids == &inside ? "inside, " : "outside, ") << "creation " << i;
      }
    }
  }
}

// A thread's lease of a stripe can end while it lives (it caches leases for four
// engines; a fifth evicts one), and its next lease may be a stripe another
// thread gave back with part of a block of ids left. The block is closed at the
// give-back (worker.cc GiveBack), so the thread's ids still increase.
TEST(ContextTest, AThreadsIdsIncreaseAcrossItsLeasesOfStripes) {
  Engine engine({.workers = 1});
  std::vector<std::unique_ptr<Engine>> others;
  for (int i = 0; i < 4; ++i) others.push_back(std::make_unique<Engine>(Options{.workers = 1}));
  std::atomic<std::uint64_t> first{0};
  std::atomic<std::uint64_t> third{0};
  std::uint64_t second = 0;
  std::latch u_posted(1), u_may_exit(1), t_submitted(1), t_may_go_on(1);
  // U leases the first free stripe, takes a block of ids with one Post, and
  // gives the stripe back (the rest of its block in it) when it exits.
  std::thread u([&] {
    EXPECT_TRUE(engine.Post([] {}).ok());
    u_posted.count_down();
    u_may_exit.wait();
  });
  u_posted.wait();
  std::thread t([&] {
    EXPECT_TRUE(engine.Post([&](Context& ctx) { first.store(ctx.id()); }).ok());
    auto h = engine.Submit([] {});  // from the counter: above U's block
    EXPECT_TRUE(h.ok());
    second = h->id();
    t_submitted.count_down();
    t_may_go_on.wait();
    // Four more engines: the lease on `engine` is evicted from the cache, and
    // the next Post leases again, the lowest free stripe: U's.
    for (auto& e : others) EXPECT_TRUE(e->Post([] {}).ok());
    EXPECT_TRUE(engine.Post([&](Context& ctx) { third.store(ctx.id()); }).ok());
  });
  t_submitted.wait();
  u_may_exit.count_down();
  u.join();
  t_may_go_on.count_down();
  t.join();
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_LT(first.load(), second);
  EXPECT_LT(second, third.load()) << "a Post took an id from a block another thread left";
}

// More submitting threads at once than the engine has stripes to lease: the
// rest share stripes, whose writers take each id from the counter. Every id is
// still unique, and each thread's increase.
TEST(ContextTest, IdsStayUniqueWhenThreadsShareStripes) {
  constexpr int kThreads = 72;  // more than the leasable external stripes (config.h)
  constexpr int kEach = 200;
  std::vector<std::atomic<std::uint64_t>> id_of(kThreads * kEach);
  Engine engine({.workers = 2});
  std::latch all_leased(kThreads);  // every thread holds its stripe until all have one
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto rec = [&id_of](int i) {
        return [&id_of, i](Context& ctx) { id_of[i].store(ctx.id(), std::memory_order_relaxed); };
      };
      EXPECT_TRUE(engine.Post(rec(t * kEach)).ok());
      all_leased.arrive_and_wait();
      for (int i = 1; i < kEach; ++i) EXPECT_TRUE(engine.Post(rec(t * kEach + i)).ok());
    });
  }
  for (std::thread& th : threads) th.join();
  ASSERT_TRUE(engine.WaitIdle().ok());
  std::vector<std::uint64_t> sorted;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kEach; ++i) {
      const std::uint64_t id = id_of[t * kEach + i].load(std::memory_order_relaxed);
      ASSERT_NE(id, 0u) << "thread " << t << " op " << i << " never ran";
      if (i > 0) {
        ASSERT_LT(id_of[t * kEach + i - 1].load(std::memory_order_relaxed), id);
      }
      sorted.push_back(id);
    }
  }
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "an id was reused";
}

TEST(HandleTest, WaitForTimesOutOnAnUnfinishedOperation) {
  Engine engine({.workers = 1});
  Gate gate;
  auto a = engine.Submit(gate.Waiter());
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->WaitFor(10ms));
  gate.Open();
  EXPECT_EQ(a->Wait(), State::kSucceeded);
}

TEST(HandleTest, HandlesStayReadableAfterTheEngineIsGone) {
  Handle h;
  {
    Engine engine({.workers = 1});
    auto s = engine.Submit([] {}, {.name = "survivor"});
    ASSERT_TRUE(s.ok());
    h = *s;
  }
  EXPECT_EQ(h.state(), State::kSucceeded);
  EXPECT_EQ(h.name(), "survivor");
  EXPECT_TRUE(h.completed_at().has_value());
  // Explain of a finished operation reads nothing of the engine (it once
  // called a member function of the destroyed one, which happened to read no
  // member: undefined, though no build reported it).
  EXPECT_THAT(h.Explain(), HasSubstr("op " + std::to_string(h.id()) + " is Succeeded (finished at "));
}

// A worker that finds a few operations while searching runs them itself instead
// of waking a sleeper (Parker P2, kWakeBacklog). If the operation it runs first
// blocks, the ones it left behind are not stranded once anything else is
// submitted: that submission finds no searcher and wakes the other worker
// (P1), which takes them too.
TEST(SchedulingTest, WorkLeftBehindABlockedWorkerRunsOnceMoreArrives) {
  Engine engine({.workers = 2});
  for (int round = 0; round < 20; ++round) {
    Gate gate;
    std::vector<Handle> quick;
    auto blocker = engine.Submit(gate.Waiter());
    ASSERT_TRUE(blocker.ok());
    for (int i = 0; i < 3; ++i) {
      auto h = engine.Submit([] {});
      ASSERT_TRUE(h.ok());
      quick.push_back(*h);
    }
    ASSERT_TRUE(AwaitState(*blocker, State::kInProgress));
    auto later = engine.Submit([] {});
    ASSERT_TRUE(later.ok());
    quick.push_back(*later);
    for (const Handle& h : quick) {
      ASSERT_TRUE(AwaitState(h, State::kSucceeded)) << "round " << round;
    }
    EXPECT_EQ(blocker->state(), State::kInProgress);  // all ran beside it
    gate.Open();
    ASSERT_TRUE(AwaitState(*blocker, State::kSucceeded));
  }
}

// As many blocking operations as workers run side by side, however they arrive:
// a worker that takes one of a few while searching leaves the rest to a sleeper
// (woken at once if it sleeps without a timeout, or coming back within
// kStrandCheck if it sleeps timed). Nothing else is submitted meanwhile.
TEST(SchedulingTest, AsManyBlockingOperationsAsWorkersRunSideBySide) {
  Engine engine({.workers = 2});
  for (int round = 0; round < 50; ++round) {
    Gate gate;
    auto a = engine.Submit(gate.Waiter());
    auto b = engine.Submit(gate.Waiter());
    ASSERT_TRUE(a.ok() && b.ok());
    // Neither can finish before the gate opens: both in progress means side by side.
    const bool both = AwaitState(*a, State::kInProgress, std::chrono::seconds(10)) &&
                      AwaitState(*b, State::kInProgress, std::chrono::seconds(10));
    gate.Open();
    ASSERT_TRUE(both) << "round " << round << ": one operation was stranded behind the other";
    ASSERT_TRUE(AwaitState(*a, State::kSucceeded));
    ASSERT_TRUE(AwaitState(*b, State::kSucceeded));
  }
}

TEST(WaitIdleTest, ReturnsOnceEverythingRunnableHasRun) {
  Engine engine({.workers = 2});
  std::atomic<int> ran{0};
  for (int i = 0; i < 5000; ++i) {
    ASSERT_TRUE(engine.Submit([&] { ran.fetch_add(1); }, {.token = Token(i % 13)}).ok());
    ASSERT_TRUE(engine.Submit([&] { ran.fetch_add(1); }).ok());
  }
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(ran.load(), 10000);
  const Stats s = engine.stats();
  EXPECT_EQ(s.pending, 0u);
  EXPECT_EQ(s.succeeded, 10000u);
  EXPECT_EQ(s.active_chains, 0u);
}

TEST(WaitIdleTest, InsideACallableIsAnErrorNotADeadlock) {
  Engine engine({.workers = 1});
  absl::Status inner;
  auto h = engine.Submit([&] { inner = engine.WaitIdle(); });
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(AwaitState(*h, State::kSucceeded));
  EXPECT_EQ(inner.code(), absl::StatusCode::kFailedPrecondition);
}

// Shutdown from inside a callable would wait for that callable: refused, and the
// engine goes on as before.
TEST(ShutdownTest, InsideACallableIsAnErrorNotADeadlock) {
  Engine engine({.workers = 1});
  absl::Status inner;
  auto h = engine.Submit([&] { inner = engine.Shutdown(ShutdownMode::kCancelPending); });
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(AwaitState(*h, State::kSucceeded));
  EXPECT_EQ(inner.code(), absl::StatusCode::kFailedPrecondition);
  auto after = engine.Submit([] {});  // not shut down
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(AwaitState(*after, State::kSucceeded));
  EXPECT_TRUE(engine.Shutdown().ok());
}

// A capture's destructor runs on the worker after the callable, where WaitIdle
// and Shutdown would wait for that worker's own run to end: refused there too
// (they hung: only the callable itself was checked).
TEST(ShutdownTest, FromACapturesDestructorOnAWorkerWaitIdleAndShutdownAreRefused) {
  Engine engine({.workers = 1});
  struct Answers {
    absl::Status wait_idle;
    absl::Status shutdown;
  };
  std::promise<Answers> answered;
  struct Probe {
    Engine* engine;
    std::promise<Answers>* answered;
    ~Probe() { answered->set_value({engine->WaitIdle(), engine->Shutdown()}); }
  };
  std::shared_ptr<Probe> probe(new Probe{&engine, &answered});  // made in place: one destructor
  ASSERT_TRUE(engine.Post([p = std::move(probe)] {}).ok());  // the last owner: the capture
  std::future<Answers> f = answered.get_future();
  if (f.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    // The worker is stuck in the destructor, and the engine's would wait for
    // it: said, and the process ends, rather than hang.
    std::fprintf(stderr, "WaitIdle or Shutdown waited in a capture's destructor\n");
    std::_Exit(1);
  }
  const Answers a = f.get();
  EXPECT_EQ(a.wait_idle.code(), absl::StatusCode::kFailedPrecondition) << a.wait_idle;
  EXPECT_EQ(a.shutdown.code(), absl::StatusCode::kFailedPrecondition) << a.shutdown;
  EXPECT_TRUE(engine.Submit([] {}).ok());  // not shut down
  EXPECT_TRUE(engine.Shutdown().ok());
}

// A kDrainAll waits for what is postponed: with a manual clock nobody moves, for
// ever. A stricter call from another thread cuts it short: it cancels what
// waits in the wheel, and both calls return (the later one used to wait for the
// first, and here never returned).
TEST(ShutdownTest, AStricterLaterCallCutsAWaitingDrainShort) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  auto far = engine.Submit([] {}, {.postpone_until = clock.now() + 1h});
  auto ready = engine.Submit([] {});
  ASSERT_TRUE(far.ok() && ready.ok());
  ASSERT_TRUE(engine.WaitIdle().ok());
  absl::Status first;
  std::thread drainer([&] { first = engine.Shutdown(ShutdownMode::kDrainAll); });
  // The first call has closed the engine once a submit is refused (after it, the
  // call below cannot be the first).
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  absl::Status post;
  while ((post = engine.Post([] {})).ok() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(post.code(), absl::StatusCode::kFailedPrecondition) << post;
  EXPECT_EQ(far->state(), State::kPostponed);  // the drain waits for it
  EXPECT_TRUE(engine.Shutdown(ShutdownMode::kCancelPending).ok());
  drainer.join();
  EXPECT_TRUE(first.ok()) << first;
  EXPECT_EQ(far->state(), State::kCanceled);
  EXPECT_EQ(ready->state(), State::kSucceeded);
  EXPECT_TRUE(engine.Shutdown(ShutdownMode::kDrainAll).ok());  // less strict: nothing more
  EXPECT_EQ(engine.stats().pending, 0u);
}

TEST(ShutdownTest, SubmitAfterShutdownIsRefusedAndChangesNothing) {
  Engine engine({.workers = 1});
  ASSERT_TRUE(engine.Shutdown(ShutdownMode::kDrainReady).ok());
  auto h = engine.Submit([] {});
  EXPECT_EQ(h.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(engine.stats().submitted, 0u);
  EXPECT_EQ(engine.stats().rejected, 1u);
  EXPECT_TRUE(engine.Shutdown().ok());  // a second call is a no-op
}

TEST(ShutdownTest, DrainReadyRunsEverythingRunnable) {
  std::atomic<int> ran{0};
  std::vector<Handle> handles;
  {
    Engine engine({.workers = 2});
    for (int i = 0; i < 3000; ++i) {
      auto h = engine.Submit([&] { ran.fetch_add(1); }, {.token = Token(i % 5)});
      ASSERT_TRUE(h.ok());
      handles.push_back(*h);
    }
    ASSERT_TRUE(engine.Shutdown(ShutdownMode::kDrainReady).ok());
    EXPECT_EQ(engine.stats().pending, 0u);
  }
  EXPECT_EQ(ran.load(), 3000);
  for (auto& h : handles) EXPECT_EQ(h.state(), State::kSucceeded);
}

TEST(ShutdownTest, CancelPendingCancelsWhatHasNotStarted) {
  Engine engine({.workers = 1});
  Gate gate;
  auto running = engine.Submit(gate.Waiter(), {.token = "t"});
  ASSERT_TRUE(running.ok());
  ASSERT_TRUE(AwaitState(*running, State::kInProgress));
  std::vector<Handle> queued;
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; ++i) {
    auto h = engine.Submit([&] { ran.fetch_add(1); }, {.token = i % 2 ? Token("t") : Token()});
    ASSERT_TRUE(h.ok());
    queued.push_back(*h);
  }
  std::thread opener([&] {
    // Open the gate once shutdown has closed the engine to new work.
    while (engine.Submit([] {}).ok()) std::this_thread::yield();
    gate.Open();
  });
  ASSERT_TRUE(engine.Shutdown(ShutdownMode::kCancelPending).ok());
  opener.join();
  EXPECT_EQ(ran.load(), 0);
  for (auto& h : queued) EXPECT_EQ(h.state(), State::kCanceled);
  EXPECT_EQ(running->state(), State::kSucceeded);
}

// kCancelPending: "running operations get a cancel request", posted (a compact
// node, no Handle) or submitted alike. Each body waits for the request, with a
// bound so that a missing request fails the test instead of hanging it.
TEST(ShutdownTest, CancelPendingAsksRunningOperationsToStop) {
  Engine engine({.workers = 2});
  std::latch started(2);
  std::atomic<int> saw_request{0};
  auto body = [&](Context& ctx) {
    started.count_down();
    const auto give_up = std::chrono::steady_clock::now() + 30s;
    while (!ctx.cancel_requested() && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::yield();
    }
    if (ctx.cancel_requested()) saw_request.fetch_add(1);
  };
  ASSERT_TRUE(engine.Post(body).ok());
  auto submitted = engine.Submit(body);
  ASSERT_TRUE(submitted.ok());
  started.wait();  // both run, one per worker
  ASSERT_TRUE(engine.Shutdown(ShutdownMode::kCancelPending).ok());
  EXPECT_EQ(saw_request.load(), 2);
  EXPECT_EQ(submitted->state(), State::kSucceeded);  // it ends as its body does
}

TEST(ShutdownTest, EveryAcceptedOperationEndsInExactlyOneTerminalState) {
  std::vector<Handle> handles;
  Stats s;
  {
    Engine engine({.workers = 2});
    for (int i = 0; i < 2000; ++i) {
      auto h = engine.Submit(
          [i] {
            if (i % 7 == 0) throw std::runtime_error("seven");
          },
          {.token = i % 3 == 0 ? Token() : Token(i % 11)});
      ASSERT_TRUE(h.ok());
      handles.push_back(*h);
      if (i % 5 == 0) (void)engine.Cancel(handles.back());
    }
    ASSERT_TRUE(engine.Shutdown(ShutdownMode::kDrainReady).ok());
    s = engine.stats();
  }
  std::size_t terminal = 0;
  for (auto& h : handles) terminal += IsTerminal(h.state()) ? 1 : 0;
  EXPECT_EQ(terminal, handles.size());
  EXPECT_EQ(s.succeeded + s.failed + s.canceled, s.submitted);
  EXPECT_EQ(s.submitted, 2000u);
}

TEST(BadInputTest, EmptyTokenIsRejected) {
  Engine engine({.workers = 1});
  auto h = engine.Submit([] {}, {.token = ""});
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(h.status().message()), HasSubstr("empty"));
  EXPECT_EQ(engine.stats().submitted, 0u);
  EXPECT_EQ(engine.stats().rejected, 1u);
}

TEST(BadInputTest, OversizedTokenIsRejectedWithTheLimitNamed) {
  Engine engine({.workers = 1, .max_token_bytes = 16});
  auto ok = engine.Submit([] {}, {.token = std::string(16, 'x')});
  EXPECT_TRUE(ok.ok());
  auto h = engine.Submit([] {}, {.token = std::string(17, 'x')});
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(h.status().message()), HasSubstr("max_token_bytes"));
}

TEST(BadInputTest, EmptyCallableIsRejected) {
  Engine engine({.workers = 1});
  std::function<void()> empty;
  auto h = engine.Submit(empty);
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  void (*null_fn)() = nullptr;
  EXPECT_EQ(engine.Submit(null_fn).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.stats().submitted, 0u);
}

TEST(BadInputTest, AFullEngineIsResourceExhaustedWithTheLimitNamed) {
  Engine engine({.workers = 1, .max_pending = 4});
  Gate gate;
  std::vector<Handle> hs;
  for (int i = 0; i < 4; ++i) {
    auto h = engine.Submit(i == 0 ? std::function<void()>(gate.Waiter()) : [] {}, {.token = "t"});
    ASSERT_TRUE(h.ok()) << i;
    hs.push_back(*h);
  }
  auto full = engine.Submit([] {});
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(full.status().message()), HasSubstr("max_pending"));
  EXPECT_EQ(engine.stats().submitted, 4u);
  gate.Open();
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_TRUE(engine.Submit([] {}).ok());  // room again
}

// At a limit of 65,536 and above, a thread keeps a few admission credits of its
// own (engine_impl.cc, K1), which a worker gives back to the shared hoard when it
// runs out of work (K2). So, with the worker parked, one thread fills the engine
// to exactly max_pending, round after round: no credit is lost or made by the
// own credits' refills and overflows, and none stays with the idle worker.
TEST(BadInputTest, ALargeLimitIsReachedExactlyRoundAfterRound) {
  constexpr std::size_t kLimit = std::size_t{1} << 16;
  Engine engine({.workers = 1, .max_pending = kLimit});
  for (int round = 0; round < 3; ++round) {
    Gate gate;
    auto blocker = engine.Submit(gate.Waiter());
    ASSERT_TRUE(blocker.ok());
    ASSERT_TRUE(AwaitState(*blocker, State::kInProgress));
    const std::uint64_t parks = engine.stats().parks;
    std::size_t accepted = 1;  // the blocker
    absl::Status s;
    while ((s = engine.Post([] {})).ok()) ++accepted;
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    EXPECT_EQ(accepted, kLimit) << "round " << round;
    gate.Open();
    ASSERT_TRUE(engine.WaitIdle().ok());
    // The worker gives its own credits back before it parks: wait for a park.
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (engine.stats().parks == parks && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    ASSERT_GT(engine.stats().parks, parks) << "the idle worker never parked";
  }
  const Stats st = engine.stats();
  EXPECT_EQ(st.succeeded, 3 * kLimit);
  EXPECT_EQ(st.rejected, 3u);
}

// A batch takes its credits from the hoard, into which it first puts the few its
// thread kept (K1): the last places under the limit go to a batch as to single
// posts. The thread's own credits cycle with its posts; five batch sizes, so
// that some of the runs meet it holding one or more.
TEST(BadInputTest, ABatchTakesTheLastPlacesWithTheCreditsItsThreadKept) {
  constexpr std::size_t kLimit = std::size_t{1} << 16;
  for (std::size_t batch_size = 96; batch_size <= 100; ++batch_size) {
    Engine engine({.workers = 1, .max_pending = kLimit});
    Gate gate;
    auto blocker = engine.Submit(gate.Waiter());
    ASSERT_TRUE(blocker.ok());
    ASSERT_TRUE(AwaitState(*blocker, State::kInProgress));
    // Single posts up to batch_size places short of the limit.
    for (std::size_t i = 0; i < kLimit - 1 - batch_size; ++i) {
      ASSERT_TRUE(engine.Post([] {}).ok()) << i;
    }
    Batch batch(engine);
    for (std::size_t i = 0; i < batch_size; ++i) ASSERT_TRUE(batch.Add([] {}).ok());
    EXPECT_TRUE(engine.PostBatch(batch).ok()) << "a batch of " << batch_size;
    EXPECT_EQ(engine.Post([] {}).code(), absl::StatusCode::kResourceExhausted);
    gate.Open();
    ASSERT_TRUE(engine.WaitIdle().ok());
  }
}

// A thread that exits gives its own credits back with its stripe (K2): the one
// that stays can still fill the engine to exactly max_pending.
TEST(BadInputTest, CreditsAnExitedThreadKeptAreReclaimed) {
  constexpr std::size_t kLimit = std::size_t{1} << 16;
  Engine engine({.workers = 1, .max_pending = kLimit});
  Gate gate;
  auto blocker = engine.Submit(gate.Waiter());  // this thread leases its stripe first
  ASSERT_TRUE(blocker.ok());
  ASSERT_TRUE(AwaitState(*blocker, State::kInProgress));
  std::thread([&engine] { EXPECT_TRUE(engine.Post([] {}).ok()); }).join();
  std::size_t accepted = 2;  // the blocker and the exited thread's
  while (engine.Post([] {}).ok()) ++accepted;
  EXPECT_EQ(accepted, kLimit);
  gate.Open();
  ASSERT_TRUE(engine.WaitIdle().ok());
}

// --- Post: Submit without a Handle ------------------------------------------------

TEST(PostTest, PostedAndSubmittedOperationsShareOneCreationOrderPerToken) {
  Engine engine({.workers = 4});
  std::vector<int> seen;  // unsynchronized on purpose: the chain orders the writes
  std::atomic<int> independent{0};
  for (int i = 0; i < 3000; ++i) {
    auto step = [&seen, i] { seen.push_back(i); };
    absl::Status s = (i % 3 == 0) ? engine.Submit(step, {.token = "t"}).status()
                                  : engine.Post(step, {.token = "t"});
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_TRUE(engine.Post([&] { independent.fetch_add(1, std::memory_order_relaxed); }).ok());
  }
  ASSERT_TRUE(engine.WaitIdle().ok());
  ASSERT_EQ(seen.size(), 3000u);
  for (int i = 0; i < 3000; ++i) ASSERT_EQ(seen[i], i);
  EXPECT_EQ(independent.load(), 3000);
  const Stats st = engine.stats();
  EXPECT_EQ(st.submitted, 6000u);
  EXPECT_EQ(st.succeeded, 6000u);
}

// Post(f) takes a shorter path than Post(f, options); both refuse alike.
TEST(PostTest, RefusesWhatSubmitRefusesAndCountsIt) {
  Engine engine({.workers = 1, .max_pending = 1});
  EXPECT_EQ(engine.Post([] {}, {.token = ""}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.Post(std::function<void()>()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.Post(std::function<void()>(), {}).code(), absl::StatusCode::kInvalidArgument);
  Gate gate;
  ASSERT_TRUE(engine.Post(gate.Waiter()).ok());  // the one pending place
  for (const absl::Status& full : {engine.Post([] {}), engine.Post([] {}, {})}) {
    EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(std::string(full.message()), HasSubstr("max_pending"));
  }
  gate.Open();
  ASSERT_TRUE(engine.Shutdown().ok());
  EXPECT_EQ(engine.Post([] {}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(engine.Post([] {}, {}).code(), absl::StatusCode::kFailedPrecondition);
  const Stats st = engine.stats();
  EXPECT_EQ(st.submitted, 1u);
  EXPECT_EQ(st.succeeded, 1u);
  EXPECT_EQ(st.rejected, 7u);
}

TEST(PostTest, TokenControlsReachPostedOperations) {
  Engine engine({.workers = 2});
  Gate gate;
  auto head = engine.Submit(gate.Waiter(), {.token = "t"});
  ASSERT_TRUE(head.ok());
  ASSERT_TRUE(AwaitState(*head, State::kInProgress));
  std::atomic<int> ran{0};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(engine.Post([&] { ran++; }, {.token = "t"}).ok());
  auto report = engine.TokenInfo("t");
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->pending, 4u);
  auto canceled = engine.CancelToken("t");
  ASSERT_TRUE(canceled.ok());
  EXPECT_EQ(*canceled, 3u);  // the running head is not "not started"
  gate.Open();
  ASSERT_TRUE(AwaitState(*head, State::kSucceeded));
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(engine.stats().canceled, 3u);
}

TEST(PostTest, APostponedPostHoldsItsChainUntilItsTime) {
  ManualClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  Journal journal;
  ASSERT_TRUE(engine.Post(journal.Step("A"), {.token = "t",
                                               .postpone_until = clock.now() + 5s}).ok());
  auto b = engine.Submit(journal.Step("B"), {.token = "t"});
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(engine.WaitIdle().ok());  // A is postponed, so nothing is runnable
  EXPECT_EQ(b->state(), State::kWaiting);
  EXPECT_EQ(engine.stats().postponed, 1u);
  clock.Advance(5s);
  ASSERT_TRUE(AwaitState(*b, State::kSucceeded));
  EXPECT_THAT(journal.Entries(), ElementsAre("A", "B"));
}

TEST(StatsTest, CountsEveryOutcomeAndExportsPrometheusText) {
  Engine engine({.workers = 2});
  ASSERT_TRUE(engine.Submit([] {}).ok());
  ASSERT_TRUE(engine.Submit([] { throw std::runtime_error("x"); }).ok());
  ASSERT_FALSE(engine.Submit([] {}, {.token = ""}).ok());
  ASSERT_TRUE(engine.WaitIdle().ok());
  const Stats s = engine.stats();
  EXPECT_EQ(s.submitted, 2u);
  EXPECT_EQ(s.started, 2u);
  EXPECT_EQ(s.succeeded, 1u);
  EXPECT_EQ(s.failed, 1u);
  EXPECT_EQ(s.rejected, 1u);
  EXPECT_EQ(s.pending, 0u);
  EXPECT_EQ(s.workers, 2);
  const std::string text = s.ToPrometheus();
  EXPECT_THAT(text, HasSubstr("ordo_submitted_total 2\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE ordo_pending gauge\n"));
}

// Outside threads count on stripes they lease (worker.cc, L1-L3), or share one
// when every leasable stripe is taken. Counts stay exact across more threads than
// stripes, threads that exit (their leases go back) and threads that come later.
TEST(StatsTest, CountsStayExactAcrossManySubmittingThreadsComingAndGoing) {
  Engine engine({.workers = 2});
  std::atomic<long> ran{0};
  constexpr int kWaves = 4, kThreadsPerWave = 40, kEach = 250;  // 160 threads > 60 stripes
  for (int wave = 0; wave < kWaves; ++wave) {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreadsPerWave; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < kEach; ++i) {
          ASSERT_TRUE(engine.Post([&ran] { ran.fetch_add(1, std::memory_order_relaxed); }).ok());
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  ASSERT_TRUE(engine.WaitIdle().ok());
  const Stats st = engine.stats();
  EXPECT_EQ(st.submitted, static_cast<std::uint64_t>(kWaves * kThreadsPerWave * kEach));
  EXPECT_EQ(st.succeeded, st.submitted);
  EXPECT_EQ(ran.load(), kWaves * kThreadsPerWave * kEach);
}

// A thread keeps its lease until it exits: here it outlives the engine it leased
// from and then submits to a new one (at the same address, often). Giving the
// old lease back must not touch the freed engine (ASan), and the new engine
// counts from zero.
TEST(StatsTest, AThreadOutlivingItsEngineLeavesTheNextEngineExact) {
  std::promise<void> first_done, engine_gone, second_done;
  std::unique_ptr<Engine> engine = std::make_unique<Engine>(Options{.workers = 1});
  std::atomic<long> ran{0};
  std::thread t([&] {
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(engine->Post([&ran] { ran++; }).ok());
    first_done.set_value();
    engine_gone.get_future().wait();
    for (int i = 0; i < 7; ++i) ASSERT_TRUE(engine->Post([&ran] { ran++; }).ok());
    second_done.set_value();
  });
  first_done.get_future().wait();
  ASSERT_TRUE(engine->WaitIdle().ok());
  EXPECT_EQ(engine->stats().submitted, 100u);
  engine.reset();
  engine = std::make_unique<Engine>(Options{.workers = 1});
  engine_gone.set_value();
  second_done.get_future().wait();
  ASSERT_TRUE(engine->WaitIdle().ok());
  EXPECT_EQ(engine->stats().submitted, 7u);
  EXPECT_EQ(engine->stats().succeeded, 7u);
  t.join();  // its leases go back now: one to a live engine, one to a freed one
  EXPECT_EQ(ran.load(), 107);
  engine.reset();
}

// The engine's threads carry names (top -H, perf, gdb, and tools that tell the
// timekeeper from the workers): read back from /proc, where Linux keeps them.
TEST(ThreadsTest, TheEnginesThreadsAreNamed) {
  auto names = [] {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
      std::ifstream comm(task.path() / "comm");
      std::string name;
      if (std::getline(comm, name)) out.push_back(name);
    }
    return out;
  };
  if (names().empty()) GTEST_SKIP() << "no /proc/self/task here";
  Engine engine({.workers = 3});
  const std::vector<std::string> seen = names();
  for (const char* want : {"ordo-worker-0", "ordo-worker-1", "ordo-worker-2", "ordo-timekeeper"}) {
    // At least one: a thread of an earlier test's engine, joined, may still be
    // listed for a moment.
    EXPECT_GE(std::count(seen.begin(), seen.end(), want), 1) << want;
  }
}

TEST(StateTest, MapsOntoDynamicsCodes) {
  EXPECT_EQ(ToDynamics(State::kWaiting).state_code, DynamicsStateCode::kReady);
  EXPECT_EQ(ToDynamics(State::kPostponed).status_code, 10);
  EXPECT_EQ(ToDynamics(State::kInProgress).state_code, DynamicsStateCode::kLocked);
  EXPECT_EQ(ToDynamics(State::kSucceeded).status_code, 30);
  EXPECT_EQ(ToDynamics(State::kFailed).status_code, 31);
  EXPECT_EQ(ToDynamics(State::kCanceled).status_code, 32);
  EXPECT_EQ(StateName(State::kPostponed), "Postponed");
}

// Token keeps text up to kInlineText bytes inside itself (SubmitOptions copies it
// on every Submit; tests/api/allocation_test.cc counts that no allocation comes of
// it) and longer text on the heap; copies and moves keep the text either way.
TEST(TokenTest, CopiesAndMovesKeepTheTextShortOrLong) {
  const std::string shorter(Token::kInlineText, 's');
  const std::string longer(Token::kInlineText + 1, 'l');
  for (const std::string& text : {std::string("k"), shorter, longer}) {
    Token a(text);
    Token copy(a);
    EXPECT_EQ(copy.text(), text);
    Token assigned("other");
    assigned = a;
    EXPECT_EQ(assigned.text(), text);
    Token& same = assigned;
    assigned = same;  // self-assignment keeps it
    EXPECT_EQ(assigned.text(), text);
    Token moved(std::move(copy));
    EXPECT_EQ(moved.text(), text);
    EXPECT_TRUE(copy.text().empty());  // NOLINT: a moved-from Token is valid and empty
    Token move_assigned(7);
    move_assigned = std::move(moved);
    EXPECT_EQ(move_assigned.text(), text);
    EXPECT_EQ(move_assigned.kind(), Token::Kind::kString);
    EXPECT_EQ(a.text(), text);  // the source of the copies is untouched
  }
  EXPECT_EQ(Token(42).ToString(), "#42");
  EXPECT_EQ(Token(longer).ToString(), longer);
}

// A Token keeps the hash the engine keys it by (token.h), set with its key and
// carried by copies and moves: equal tokens, however each was made, name one
// chain. An operation held at the head of the chain of one spelling, and a
// batch item behind it, are found (TokenInfo, CancelToken) through every other;
// a stale or wrong hash would look in another place and find an idle token.
TEST(TokenTest, EqualTokensMadeAnyWayNameOneChain) {
  Engine engine({.workers = 1});
  const std::string longer(Token::kInlineText + 12, 'l');  // on the heap
  auto ways = [](const Token& made) {
    std::vector<Token> v;
    v.push_back(made);  // a copy
    Token moved_from(made);
    v.push_back(std::move(moved_from));  // a move
    Token assigned(7);
    assigned = made;  // a copy over an integer
    v.push_back(assigned);
    Token move_assigned("other");
    Token source(made);
    move_assigned = std::move(source);  // a move over other text
    v.push_back(std::move(move_assigned));
    Token reused(made);
    Token gone(std::move(reused));  // reused is moved-from now: its text is gone
    reused = gone;                  // and set again
    v.push_back(reused);
    if (made.kind() == Token::Kind::kString) v.emplace_back(std::string(made.text()));
    return v;
  };
  for (const Token& made : {Token("account-7"), Token(longer), Token(42), Token(-1)}) {
    SCOPED_TRACE(made.ToString());
    for (const Token& spelling : ways(made)) {
      auto held = engine.Submit([] {}, {.token = spelling, .suspended = true});
      ASSERT_TRUE(held.ok()) << held.status();
      // A batch item queues behind it too (the Batch keeps its own copy).
      Batch batch(engine);
      ASSERT_TRUE(batch.Add([] {}, ways(made).front()).ok());
      ASSERT_TRUE(engine.PostBatch(batch).ok());
      for (const Token& other : ways(made)) {
        absl::StatusOr<TokenReport> info = engine.TokenInfo(other);
        ASSERT_TRUE(info.ok()) << info.status();
        EXPECT_EQ(info->pending, 2u);
        EXPECT_EQ(info->head_id, held->id());
      }
      absl::StatusOr<std::size_t> canceled = engine.CancelToken(ways(made).back());
      ASSERT_TRUE(canceled.ok()) << canceled.status();
      EXPECT_EQ(*canceled, 2u);
      EXPECT_EQ(held->state(), State::kCanceled);
      ASSERT_TRUE(engine.WaitIdle().ok());  // its worker takes it off the chain
    }
  }
  EXPECT_EQ(Token(std::uint64_t{18446744073709551615u}).ToString(), Token(-1).ToString());
  ASSERT_TRUE(engine.WaitIdle().ok());
}

}  // namespace
}  // namespace ordo

namespace ordo {
namespace {

using ::ordo::testing::AwaitState;
using ::ordo::testing::Gate;

// Options::max_pending and max_timers of SIZE_MAX ("no limit") once read as -1
// in the engine's int64 counts and refused everything.
TEST(EngineOptionsTest, LimitsOfSizeMaxMeanNoLimit) {
  ManualClock clock;
  Engine engine({.workers = 1,
                 .max_pending = std::numeric_limits<std::size_t>::max(),
                 .clock = &clock,
                 .max_timers = std::numeric_limits<std::size_t>::max()});
  auto now = engine.Submit([] {});
  ASSERT_TRUE(now.ok()) << now.status();
  auto later = engine.Submit([] {}, {.postpone_until = clock.now() + std::chrono::seconds(1)});
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_TRUE(engine.Post([] {}, {.postpone_until = clock.now() + std::chrono::seconds(1)}).ok());
  clock.Advance(std::chrono::seconds(1));
  ASSERT_TRUE(AwaitState(*later, State::kSucceeded));
  ASSERT_TRUE(AwaitState(*now, State::kSucceeded));
}

// A Post gives no Handle: suspended with no token, nothing could resume it.
TEST(EngineOptionsTest, PostRefusesASuspendedOperationWithNoToken) {
  Engine engine({.workers = 1});
  const absl::Status s = engine.Post([] {}, {.suspended = true});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("could never be resumed"));
  EXPECT_EQ(engine.stats().rejected, 1u);
  EXPECT_EQ(engine.stats().pending, 0u);
  // With a token, ResumeToken reaches it.
  std::atomic<bool> ran{false};
  ASSERT_TRUE(engine.Post([&] { ran = true; }, {.token = "t", .suspended = true}).ok());
  auto n = engine.ResumeToken("t");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_TRUE(ran.load());
}

// WaitFor(nanoseconds::max()) computed its deadline as now + timeout: a signed
// overflow, undefined (it happened to wrap back in deadline - now; the
// sanitizer build, which aborts on it, runs this test). The deadline saturates.
// It is computed as WaitFor is entered, so every call below takes that path;
// the waiter usually waits, but may find the operation ended already.
TEST(HandleTest, WaitForTheLongestTimeoutWaits) {
  Engine engine({.workers = 1});
  Gate gate;
  auto h = engine.Submit(gate.Waiter());
  ASSERT_TRUE(h.ok());
  std::atomic<bool> result{false};
  std::atomic<bool> ended_when_returned{false};
  std::thread waiter([&] {
    result = h->WaitFor(std::chrono::nanoseconds::max());
    ended_when_returned = h->state() == State::kSucceeded;
  });
  const bool started = AwaitState(*h, State::kInProgress);
  gate.Open();  // before any check: the waiter must not stay joinable
  waiter.join();
  EXPECT_TRUE(started);
  EXPECT_TRUE(result.load()) << "WaitFor returned false: it gave up before the operation ended";
  EXPECT_TRUE(ended_when_returned.load()) << "WaitFor returned before the operation ended";
  EXPECT_TRUE(h->WaitFor(std::chrono::nanoseconds::max()));  // terminal: at once
}

// A clock that holds every thread but the test's inside Now() while stalled:
// the worker's start stamp waits for the test.
class StallingClock final : public Clock {
 public:
  time_point Now() const override {
    if (std::this_thread::get_id() != test_thread_) {
      while (stalled_.load(std::memory_order_acquire)) std::this_thread::yield();
    }
    return Clock::now();
  }
  void Stall(bool on) { stalled_.store(on, std::memory_order_release); }

 private:
  const std::thread::id test_thread_ = std::this_thread::get_id();
  std::atomic<bool> stalled_{false};
};

// Its runner moves an operation to InProgress, then stamps its start: a reader
// that saw InProgress in between read no start (nullopt, "never started") for
// a running operation. started_at() now waits for the stamp.
TEST(HandleTest, StartedAtIsSetOnceTheStateShowsInProgress) {
  StallingClock clock;
  Engine engine({.workers = 1, .clock = &clock});
  clock.Stall(true);  // the worker's clock reads wait from here
  struct Unstall {  // on every way out: the engine's destructor reads the clock
    StallingClock& clock;
    ~Unstall() { clock.Stall(false); }
  } unstall{clock};
  auto h = engine.Submit([] {});
  ASSERT_TRUE(h.ok());
  const bool running = AwaitState(*h, State::kInProgress);
  std::optional<Clock::time_point> started;
  std::atomic<bool> returned{false};
  std::thread reader([&] {
    started = h->started_at();
    returned.store(true, std::memory_order_release);
  });
  // The start is not stamped while the clock is stalled: a reader that returns
  // now returns without it. A bounded look, then the clock goes on.
  for (int i = 0; i < 200 && !returned.load(std::memory_order_acquire); ++i) {
    std::this_thread::sleep_for(1ms);
  }
  const bool returned_early = returned.load(std::memory_order_acquire);
  clock.Stall(false);
  reader.join();
  EXPECT_TRUE(running);
  EXPECT_FALSE(returned_early) << "started_at() returned before the start was stamped";
  EXPECT_TRUE(started.has_value()) << "a running operation had no start";
  EXPECT_TRUE(AwaitState(*h, State::kSucceeded));
}

// A move-only task whose state the test can see after a refusal.
struct KeptTask {
  std::unique_ptr<int> value;
  std::atomic<int>* seen;
  void operator()() const { seen->store(*value); }
};

// C1 (engine_impl.cc): a refused Submit or Post leaves its callable with the
// caller, as it was, whatever refused it, so the caller can submit it again.
// (The callable moved into the node first, and a refusal destroyed it: a retry
// after ResourceExhausted ran a moved-from capture.)
TEST(SubmitTest, ARefusedSubmissionLeavesTheCallableWithTheCaller) {
  ManualClock clock;
  Engine engine({.workers = 1, .max_pending = 2, .clock = &clock, .max_timers = 1});
  std::atomic<int> seen{0};
  KeptTask task{std::make_unique<int>(42), &seen};
  auto expect_kept = [&](absl::Status s, absl::StatusCode code, const char* what) {
    EXPECT_EQ(s.code(), code) << what << ": " << s;
    EXPECT_NE(task.value, nullptr) << what << " took the refused callable";
  };
  // The wheel full.
  ASSERT_TRUE(engine.Post([] {}, {.postpone_until = clock.now() + 1h}).ok());
  expect_kept(engine.Submit(std::move(task), {.postpone_until = clock.now() + 1s}).status(),
              absl::StatusCode::kResourceExhausted, "Submit into a full wheel");
  expect_kept(engine.Post(std::move(task), {.postpone_until = clock.now() + 1s}),
              absl::StatusCode::kResourceExhausted, "Post into a full wheel");
  // The engine full (max_pending): the timer and a running blocker.
  Gate gate;
  ASSERT_TRUE(engine.Post(gate.Waiter()).ok());
  expect_kept(engine.Submit(std::move(task)).status(), absl::StatusCode::kResourceExhausted,
              "Submit into a full engine");
  expect_kept(engine.Post(std::move(task), {.token = "t"}), absl::StatusCode::kResourceExhausted,
              "Post with a token into a full engine");
  expect_kept(engine.Post(std::move(task)), absl::StatusCode::kResourceExhausted,
              "Post into a full engine");
  // Bad options, refused before any node is taken.
  expect_kept(engine.Submit(std::move(task), {.recurrence = "FREQ=SOMETIMES"}).status(),
              absl::StatusCode::kInvalidArgument, "a bad recurrence rule");
  gate.Open();
  ASSERT_TRUE(engine.WaitIdle().ok());
  // Submitted again, it runs with its capture.
  auto h = engine.Submit(std::move(task));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(task.value, nullptr);  // accepted: moved into the operation
  ASSERT_EQ(h->Wait(), State::kSucceeded);
  EXPECT_EQ(seen.load(), 42);
  // After Shutdown.
  KeptTask late{std::make_unique<int>(7), &seen};
  ASSERT_TRUE(engine.Shutdown(ShutdownMode::kCancelPending).ok());
  EXPECT_EQ(engine.Post(std::move(late)).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(late.value, nullptr) << "Post after Shutdown took the refused callable";
  EXPECT_EQ(engine.stats().rejected, 7u);
}

// A callable whose move constructor throws when told to.
struct ThrowingMove {
  static inline std::atomic<bool> throw_on_move{false};
  std::atomic<int>* runs;
  ThrowingMove(std::atomic<int>* r) : runs(r) {}
  ThrowingMove(ThrowingMove&& other) : runs(other.runs) {
    if (throw_on_move.load()) throw std::runtime_error("move refused");
  }
  void operator()() const { runs->fetch_add(1); }
};

// C1: a callable whose move throws, as it is placed past the last refusal,
// leaves the engine as it was: its admission credit, its timer's place and
// Shutdown's count of submitters in flight are given back, and the exception
// reaches the caller.
TEST(SubmitTest, ACallableWhoseMoveThrowsGivesBackItsAdmission) {
  ManualClock clock;
  Engine engine({.workers = 1, .max_pending = 2, .clock = &clock, .max_timers = 1});
  std::atomic<int> runs{0};
  ThrowingMove::throw_on_move = true;
  for (int round = 0; round < 3; ++round) {
    EXPECT_THROW((void)engine.Post(ThrowingMove(&runs)), std::runtime_error);
    EXPECT_THROW((void)engine.Submit(ThrowingMove(&runs)), std::runtime_error);
    EXPECT_THROW((void)engine.Submit(ThrowingMove(&runs), {.postpone_until = clock.now() + 1s}),
                 std::runtime_error);
  }
  ThrowingMove::throw_on_move = false;
  const Stats st = engine.stats();
  EXPECT_EQ(st.submitted, 0u);
  EXPECT_EQ(st.pending, 0u);
  EXPECT_EQ(st.postponed, 0u);
  // Both credits and the one place are free: all taken at once (a credit
  // comes back only some time after its operation ends, so not one after
  // another), and then the engine is full.
  auto h = engine.Submit(ThrowingMove(&runs), {.postpone_until = clock.now() + 1s});
  ASSERT_TRUE(h.ok()) << h.status();
  Gate gate;
  ASSERT_TRUE(engine.Post(gate.Waiter()).ok());
  EXPECT_EQ(engine.Post(ThrowingMove(&runs)).code(), absl::StatusCode::kResourceExhausted);
  gate.Open();
  clock.Advance(1s);
  ASSERT_EQ(h->Wait(), State::kSucceeded);
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(runs.load(), 1);
  ASSERT_TRUE(engine.Shutdown().ok());  // no submitter left counted in flight
}

// A failure policy belongs to a token's chain: with no token it was accepted
// and ignored.
TEST(SubmitTest, AFailurePolicyWithNoTokenIsRefused) {
  Engine engine({.workers = 1});
  auto h = engine.Submit([] {}, {.failure_policy = FailurePolicy::kHalt});
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(h.status().message()), HasSubstr("no token"));
  EXPECT_EQ(engine.Post([] {}, {.failure_policy = FailurePolicy::kCancelRest}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(engine.Post([] {}, {.token = "t", .failure_policy = FailurePolicy::kHalt}).ok());
  EXPECT_EQ(engine.stats().rejected, 2u);
}

// An error names the call that made it (every one said "Submit:").
TEST(SubmitTest, AnErrorNamesTheCallThatWasRefused) {
  ManualClock clock;
  Engine engine({.workers = 1, .max_pending = 1, .clock = &clock, .max_timers = 1});
  auto starts_with = [](absl::Status s, const std::string& what) {
    EXPECT_TRUE(absl::StartsWith(s.message(), what + ": ")) << s;
  };
  std::function<void()> empty;
  starts_with(engine.Post(empty), "Post");
  starts_with(engine.Post([] {}, {.token = ""}), "Post");
  starts_with(engine.Post([] {}, {.recurrence = "FREQ=NEVER"}), "Post");
  starts_with(engine.Submit([] {}, {.token = ""}).status(), "Submit");
  Batch batch(engine);
  starts_with(batch.Add([] {}, Token("")), "Batch::Add");
  ASSERT_TRUE(engine.Post([] {}, {.postpone_until = clock.now() + 1h}).ok());
  starts_with(engine.Post([] {}), "Post");  // full
  starts_with(engine.Post([] {}, {.token = "t"}), "Post");
  starts_with(engine.Submit([] {}).status(), "Submit");
}

std::atomic<int> plain_function_runs{0};
void PlainFunction() { plain_function_runs.fetch_add(1); }
absl::Status PlainFunctionWithContext(Context&) {
  plain_function_runs.fetch_add(1);
  return absl::OkStatus();
}

// A function (not a pointer, not an object) is accepted by every submit call.
// (C1's first version took the address of its argument as an object's, and a
// function did not compile.)
TEST(SubmitTest, AFunctionIsAcceptedByEverySubmitCall) {
  Engine engine({.workers = 1});
  plain_function_runs = 0;
  auto h = engine.Submit(PlainFunction);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(engine.Submit(PlainFunctionWithContext, {.token = "t"}).ok());
  ASSERT_TRUE(engine.Post(PlainFunction).ok());
  ASSERT_TRUE(engine.Post(PlainFunctionWithContext, {.token = "t"}).ok());
  ASSERT_TRUE(engine.Post(&PlainFunction).ok());
  void (*pointer)() = PlainFunction;
  ASSERT_TRUE(engine.Post(pointer).ok());
  Batch batch(engine);
  ASSERT_TRUE(batch.Add(PlainFunction).ok());
  ASSERT_TRUE(engine.PostBatch(batch).ok());
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(plain_function_runs.load(), 7);
  EXPECT_EQ(h->state(), State::kSucceeded);
}

// Posts from a thread_local destructor that runs after the thread's stripe
// leases went back (its object was built before the thread's first submit, so
// it is destroyed after them): they take a shared stripe, are counted, and run.
// (They read the destroyed leases and leased a stripe nothing gave back; that
// undefined read and leak were not visible here.)
Engine* late_poster_engine = nullptr;
std::atomic<int> late_posts_run{0};
struct LatePoster {
  ~LatePoster() {
    EXPECT_TRUE(late_poster_engine->Post([] { late_posts_run.fetch_add(1); }).ok());
  }
};
thread_local LatePoster t_late_poster;

TEST(SubmitTest, APostFromALateThreadLocalDestructorRuns) {
  Engine engine({.workers = 1});
  late_poster_engine = &engine;
  late_posts_run = 0;
  for (int t = 0; t < 12; ++t) {  // one after another: each leases, then posts late
    std::thread([&engine] {
      (void)&t_late_poster;  // built first, so destroyed after the leases
      EXPECT_TRUE(engine.Post([] { late_posts_run.fetch_add(1); }).ok());
    }).join();
  }
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(late_posts_run.load(), 24);
  const Stats st = engine.stats();
  EXPECT_EQ(st.submitted, 24u);
  EXPECT_EQ(st.succeeded, 24u);
  late_poster_engine = nullptr;
}

// A null C string is an empty token, refused with a message (it was undefined
// behaviour: strlen(nullptr)).
TEST(SubmitTest, ANullCStringTokenIsRefusedAsEmpty) {
  Engine engine({.workers = 1});
  const char* unset = nullptr;
  auto h = engine.Submit([] {}, {.token = unset});
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(h.status().message()), HasSubstr("empty string"));
  EXPECT_EQ(engine.CancelToken(unset).status().code(), absl::StatusCode::kInvalidArgument);
}

// A negative timeout waits for nothing. nanoseconds::min() overflowed the
// time left into a long wait, and WaitFor blocked until the operation ended.
TEST(HandleTest, WaitForWithANegativeTimeoutReturnsAtOnce) {
  Engine engine({.workers = 1});
  Gate gate;
  auto h = engine.Submit(gate.Waiter());
  ASSERT_TRUE(h.ok());
  for (auto timeout : {std::chrono::nanoseconds::min(), std::chrono::nanoseconds(-1)}) {
    auto waited = std::async(std::launch::async, [&] { return h->WaitFor(timeout); });
    // A watchdog, not a synchronisation: the call must not wait for the gate.
    const bool returned = waited.wait_for(30s) == std::future_status::ready;
    if (!returned) gate.Open();  // let it end, to fail rather than hang
    ASSERT_TRUE(returned) << "WaitFor(" << timeout.count() << " ns) blocked";
    EXPECT_FALSE(waited.get());
  }
  gate.Open();
  EXPECT_EQ(h->Wait(), State::kSucceeded);
}

}  // namespace
}  // namespace ordo
