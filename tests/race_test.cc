// Races made certain: each test holds engine threads at test points (sync.h,
// ORDO_TEST_POINTS) so that a window between two protocol steps, which the
// stress tests reach only by chance, is entered every run, in a chosen order.
// Built where test points are (the debug, small-world and sanitizer presets).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "engine_impl.h"
#include "op_pool.h"
#include "operation.h"
#include "ordo/engine.h"
#include "sync.h"
#include "token_map.h"

namespace {

using namespace std::chrono_literals;
using ordo::Engine;
using ordo::Handle;
using ordo::ManualClock;
using ordo::Options;
using ordo::ShutdownMode;
using ordo::State;
using ordo::internal::Operation;
using ordo::internal::SetTestHook;
using ordo::internal::TestPointId;

// One thread's stop at a test point: it says it has arrived, and (if held)
// waits there until the test lets it go. Waits are bounded, so that an engine
// that never reaches the point fails the test instead of hanging it.
class Stop {
 public:
  void Arrive() {
    std::lock_guard<std::mutex> lock(mu_);
    arrived_ = true;
    cv_.notify_all();
  }
  void HoldUntilLetGo() {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, 60s, [this] { return go_; })) {
      // Let go by the timeout, not by the test: something waited on the held
      // thread (a wait the test means to show bounded, say), and the test's
      // own assertions may then pass for the wrong reason.
      ADD_FAILURE() << "held for 60 s and never let go: did the engine wait on this thread?";
    }
  }
  bool AwaitArrival() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 60s, [this] { return arrived_; });
  }
  void LetGo() {
    std::lock_guard<std::mutex> lock(mu_);
    go_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool arrived_ = false;
  bool go_ = false;
};

// The test's hook, for as long as it lives: every test point reaches `fn`.
// Made before the engine and so destroyed after it: no engine thread is left
// to call it while it is replaced (TSan caught a hook that was not).
class ScopedHook {
 public:
  explicit ScopedHook(std::function<void(TestPointId, const void*)> fn) {
    fn_ = std::move(fn);
    SetTestHook(&Trampoline);
  }
  ~ScopedHook() {
    SetTestHook(nullptr);
    fn_ = nullptr;
  }
  ScopedHook(const ScopedHook&) = delete;
  ScopedHook& operator=(const ScopedHook&) = delete;

 private:
  static void Trampoline(TestPointId point, const void* op) { fn_(point, op); }
  static inline std::function<void(TestPointId, const void*)> fn_;
};

// Two operations submitted: one ended Succeeded, the other Canceled, and
// nothing is left pending.
void ExpectOneSucceededAndOneCanceled(const Engine& engine) {
  const ordo::Stats st = engine.stats();
  EXPECT_EQ(st.submitted, 2u);
  EXPECT_EQ(st.succeeded, 1u);
  EXPECT_EQ(st.canceled, 1u);
  EXPECT_EQ(st.pending, 0u);
}

std::uint64_t IdOf(const void* node) { return static_cast<const Operation*>(node)->id_relaxed(); }

// A worker owns a queued operation that a Handle, since dropped, postponed: its
// runner reads one reference (its own), so it may decide it is the only party
// (worker.cc U1). Then Shutdown's sweep takes the operation out of the wheel
// with a reference, and cancels it. The runner sees it Canceled and lets go of
// it; the sweep, which still holds its reference, drops it after that. The
// runner once freed the node on that decision, with no RMW, and the sweep
// then dropped a reference of a node back in the pool (DropRef now ends the
// process on that: this test died).
TEST(RaceTest, ARunnerThatReadOneReferenceLeavesAShutdownSweepItsOwn) {
  std::atomic<std::uint64_t> target_id{0};
  std::atomic<const void*> target{nullptr};  // its node, once its runner has read it
  Stop runner_read;                          // kRunItemRead: held
  Stop runner_released;                      // kRunItemReleased: passes
  Stop sweep_canceled;                       // kShutdownSweepCanceled: held
  ScopedHook hook([&](TestPointId point, const void* node) {
    if (point == TestPointId::kRunItemRead && IdOf(node) == target_id.load()) {
      target.store(node);
      runner_read.Arrive();
      runner_read.HoldUntilLetGo();
    } else if (point == TestPointId::kRunItemReleased && node == target.load()) {
      runner_released.Arrive();  // the node may be freed: compared, not read
    } else if (point == TestPointId::kShutdownSweepCanceled && IdOf(node) == target_id.load()) {
      sweep_canceled.Arrive();
      sweep_canceled.HoldUntilLetGo();
    }
  });
  ManualClock clock;
  std::latch blocker_started(1);
  std::latch blocker_may_end(1);
  bool blocker_released = false;
  std::thread shutdown;
  Engine engine({.workers = 1, .clock = &clock});
  // On every way out, a failed ASSERT included: nothing left held, so the
  // engine's destructor can finish.
  absl::Cleanup release_all = [&] {
    if (!blocker_released) blocker_may_end.count_down();
    runner_read.LetGo();
    sweep_canceled.LetGo();
    if (shutdown.joinable()) shutdown.join();
  };
  // The worker busy, so that the operation below stays queued while it is
  // postponed and its Handle dropped.
  auto blocker = engine.Submit([&] {
    blocker_started.count_down();
    blocker_may_end.wait();
  });
  ASSERT_TRUE(blocker.ok());
  blocker_started.wait();
  auto x = engine.Submit([] { ADD_FAILURE() << "a canceled operation ran"; });
  ASSERT_TRUE(x.ok());
  ASSERT_TRUE(engine.Postpone(*x, clock.now() + 1h).ok());
  target_id.store(x->id());
  *x = Handle();  // the runner's is now the only reference
  blocker_released = true;
  blocker_may_end.count_down();
  ASSERT_TRUE(runner_read.AwaitArrival()) << "the worker never took the operation";

  shutdown = std::thread([&] { EXPECT_TRUE(engine.Shutdown(ShutdownMode::kCancelPending).ok()); });
  ASSERT_TRUE(sweep_canceled.AwaitArrival()) << "the sweep never canceled it";
  runner_read.LetGo();  // the runner sees it Canceled and lets go of it
  ASSERT_TRUE(runner_released.AwaitArrival()) << "the runner never let go of it";
  sweep_canceled.LetGo();  // the sweep drops its reference: the last
  shutdown.join();

  ExpectOneSucceededAndOneCanceled(engine);
}

// Cancel of a running operation that ends between the request's store and
// Cancel's second look at its state (here: it ends because it saw the
// request). The request reached it, so the answer is kCancelRequested, as
// when the look comes first; it was once FailedPrecondition, "already
// finished".
TEST(RaceTest, AnOperationThatEndsJustAfterTheCancelRequestIsAnsweredRequested) {
  // The hook first, so that it outlives the engine's threads; what it reads is
  // set before target_id names the operation.
  std::atomic<std::uint64_t> target_id{0};
  Handle seen;
  ScopedHook hook([&](TestPointId point, const void* node) {
    if (point == TestPointId::kCancelRequested && IdOf(node) == target_id.load()) {
      // Cancel's thread, the request stored: the operation ends now.
      EXPECT_TRUE(seen.WaitFor(60s)) << "the operation never ended";
    }
  });
  Engine engine({.workers = 1});
  std::latch running(1);
  auto x = engine.Submit([&](ordo::Context& ctx) {
    running.count_down();
    while (!ctx.cancel_requested()) std::this_thread::yield();  // ends on the request
    return absl::OkStatus();
  });
  ASSERT_TRUE(x.ok());
  seen = *x;
  target_id.store(x->id());
  running.wait();
  const absl::StatusOr<ordo::CancelOutcome> outcome = engine.Cancel(*x);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(*outcome, ordo::CancelOutcome::kCancelRequested);
  EXPECT_EQ(x->state(), State::kSucceeded);  // as its callable chose
}

// Explain of an operation that ends while Explain walks its chain: said as
// finished, not as the waiting the walk saw.
TEST(RaceTest, AnOperationThatEndsDuringExplainsWalkIsExplainedAsFinished) {
  // The hook first, so that it outlives the engine's threads; what it reads is
  // set before target_id names the operation.
  std::atomic<std::uint64_t> target_id{0};
  Engine* engine_seen = nullptr;
  Handle behind_seen;
  int walks = 0;
  ScopedHook hook([&](TestPointId point, const void* node) {
    if (point == TestPointId::kExplainWalked && IdOf(node) == target_id.load()) {
      ++walks;  // Explain's thread, after the walk: the operation ends now
      EXPECT_EQ(engine_seen->Cancel(behind_seen).value_or(ordo::CancelOutcome::kCancelRequested),
                ordo::CancelOutcome::kCanceled);
    }
  });
  std::latch head_may_end(1);
  bool head_released = false;
  Engine engine({.workers = 1});
  absl::Cleanup release_head = [&] {  // a failed ASSERT included
    if (!head_released) head_may_end.count_down();
  };
  auto head = engine.Submit([&] { head_may_end.wait(); }, {.token = "t"});
  auto behind = engine.Submit([] { ADD_FAILURE() << "a canceled operation ran"; },
                              {.token = "t"});
  ASSERT_TRUE(head.ok() && behind.ok());
  engine_seen = &engine;
  behind_seen = *behind;
  target_id.store(behind->id());
  const std::string text = behind->Explain();
  EXPECT_EQ(walks, 1);
  EXPECT_NE(text.find("is Canceled (finished at"), std::string::npos) << text;
  EXPECT_EQ(text.find("waiting behind"), std::string::npos) << text;
  head_released = true;
  head_may_end.count_down();
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(head->state(), State::kSucceeded);
  EXPECT_EQ(behind->state(), State::kCanceled);
}

// S2's runner half: a cancel request that lands after the runner's first look
// and before it names the next occurrence it made. The requester finds no
// successor; the runner, once it names it, finds the request and cancels it.
// (Without that second look, the series went on: the next occurrence ran an
// hour later.)
TEST(RaceTest, ACancelRequestBeforeTheNextOccurrenceIsNamedEndsTheSeries) {
  std::atomic<std::uint64_t> target_id{0};
  Stop runner_made_next;  // kSeriesNextMade: held
  ScopedHook hook([&](TestPointId point, const void* node) {
    if (point == TestPointId::kSeriesNextMade && IdOf(node) == target_id.load()) {
      runner_made_next.Arrive();
      runner_made_next.HoldUntilLetGo();
    }
  });
  ManualClock clock;
  std::atomic<int> runs{0};
  Engine engine({.workers = 1, .clock = &clock});
  absl::Cleanup release_runner = [&] { runner_made_next.LetGo(); };  // a failed ASSERT
  // Postponed by a second, so that target_id is set before the first runs.
  // Relaxed: a count, read after the engine's waits.
  auto first = engine.Submit([&] { runs.fetch_add(1, std::memory_order_relaxed); },
                             {.postpone_until = clock.now() + 1s, .recurrence = "FREQ=HOURLY"});
  ASSERT_TRUE(first.ok());
  // seq_cst (the default; release would do): what the hook reads is set
  // before target_id names the operation.
  target_id.store(first->id());
  clock.Advance(1s);
  ASSERT_TRUE(runner_made_next.AwaitArrival()) << "the first occurrence never made its next";
  // Running still (its runner is inside its end): a request, and no successor
  // named yet for the request to cancel.
  const absl::StatusOr<ordo::CancelOutcome> outcome = engine.Cancel(*first);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(*outcome, ordo::CancelOutcome::kCancelRequested);
  runner_made_next.LetGo();
  ASSERT_TRUE(first->WaitFor(60s));
  EXPECT_EQ(first->state(), State::kSucceeded);
  const Handle next = first->next_occurrence();
  ASSERT_TRUE(next.valid());
  // Canceled before its predecessor ended (the runner's second look comes first).
  EXPECT_EQ(next.state(), State::kCanceled);
  clock.Advance(2h);
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(runs.load(), 1);
  EXPECT_FALSE(next.next_occurrence().valid());
  ExpectOneSucceededAndOneCanceled(engine);
}

// A callable whose move constructor submits to four other engines, from an
// outside thread: each of those submits takes a lease in the thread's cache of
// four, and the eviction once took the outer submit's own, while the outer
// submit still wrote that stripe (another thread could then lease it and write
// it too). The cache now skips a lease a submit is inside (L4, worker.cc).
TEST(RaceTest, ASubmitNestedInACallablesConstructorKeepsTheOuterSubmitsLease) {
  std::atomic<int> placed{0};
  std::atomic<int> unleased{0};
  ScopedHook hook([&](TestPointId point, const void* stripe) {
    if (point != TestPointId::kCallablePlaced) return;
    const auto* st = static_cast<const ordo::internal::Stripe*>(stripe);
    // Relaxed: counts, read on this same thread (the submitting one, where the
    // hook fires) after the posts.
    placed.fetch_add(1, std::memory_order_relaxed);
    // A single-writer external stripe must still be this thread's lease
    // (relaxed: our own lease, set by this thread).
    if (st->single_writer && !st->leased.load(std::memory_order_relaxed)) {
      unleased.fetch_add(1, std::memory_order_relaxed);
    }
  });
  {
    // A lease of an engine destroyed since stays in the thread's cache (L2):
    // the eviction's look must not read its freed stripe (ASan).
    Engine gone({.workers = 1});
    ASSERT_TRUE(gone.Post([] {}).ok());
  }
  Engine outer({.workers = 1});
  std::vector<std::unique_ptr<Engine>> others;
  for (int i = 0; i < 4; ++i) others.push_back(std::make_unique<Engine>(Options{.workers = 1}));
  std::atomic<int> ran{0};
  // Moved once into the node: that move posts to every other engine.
  struct Nesting {
    std::vector<std::unique_ptr<Engine>>* others;
    std::atomic<int>* ran;
    bool armed = true;
    Nesting(std::vector<std::unique_ptr<Engine>>* o, std::atomic<int>* r) : others(o), ran(r) {}
    Nesting(Nesting&& n) noexcept : others(n.others), ran(n.ran), armed(n.armed) {
      if (!std::exchange(n.armed, false)) return;
      armed = false;
      for (auto& e : *others) {
        // Relaxed: a count, read after WaitIdle.
        if (!e->Post([r = ran] { r->fetch_add(1, std::memory_order_relaxed); }).ok()) std::abort();
      }
    }
    void operator()() const { ran->fetch_add(1, std::memory_order_relaxed); }  // as above
  };
  ASSERT_TRUE(outer.Post([] {}).ok());  // the thread's lease of `outer` first
  ASSERT_TRUE(outer.Post(Nesting(&others, &ran)).ok());
  ASSERT_TRUE(outer.WaitIdle().ok());
  for (auto& e : others) ASSERT_TRUE(e->WaitIdle().ok());
  EXPECT_EQ(ran.load(), 5);
  EXPECT_EQ(placed.load(), 7);  // one on `gone`, two on `outer`, one on each of the others
  EXPECT_EQ(unleased.load(), 0) << "a submit went on writing a stripe it no longer leased";
}

// Chain C3: a producer between its tail exchange and its link, and the runner
// of the node before it finishing meanwhile. The runner finds no link and
// cannot empty the chain (the tail is the producer's node), so it waits for the
// link; the producer's node then runs next, in order.
TEST(RaceTest, ARunnerWaitsForTheLinkOfAProducerBetweenItsTwoSteps) {
  // seq_cst (the defaults) on both, more than they need: producer_thread
  // matches only on the thread that stored it; held_node is stored before
  // producer_exchanged.Arrive (a mutex), which the test awaits before it lets
  // the runner on towards kAdvanceWaitsForLink.
  std::atomic<const void*> held_node{nullptr};
  std::atomic<std::thread::id> producer_thread{};
  Stop producer_exchanged;  // kChainLinkPending on the producer's thread: held
  Stop runner_waits;        // kAdvanceWaitsForLink: passes
  ScopedHook hook([&](TestPointId point, const void* node) {
    if (point == TestPointId::kChainLinkPending &&
        std::this_thread::get_id() == producer_thread.load()) {
      held_node.store(node);
      producer_exchanged.Arrive();
      producer_exchanged.HoldUntilLetGo();
    } else if (point == TestPointId::kAdvanceWaitsForLink && held_node.load() != nullptr) {
      runner_waits.Arrive();
    }
  });
  std::vector<int> order;  // written by the chain's runs, one at a time
  std::latch first_may_end(1);
  bool first_released = false;
  std::thread producer;
  Engine engine({.workers = 1});
  absl::Cleanup release_all = [&] {
    if (!first_released) first_may_end.count_down();
    producer_exchanged.LetGo();
    if (producer.joinable()) producer.join();
  };
  auto first = engine.Submit([&] {
    first_may_end.wait();
    order.push_back(1);
  }, {.token = "t"});
  ASSERT_TRUE(first.ok());
  producer = std::thread([&] {
    producer_thread.store(std::this_thread::get_id());
    EXPECT_TRUE(engine.Post([&] { order.push_back(2); }, {.token = "t"}).ok());
  });
  ASSERT_TRUE(producer_exchanged.AwaitArrival()) << "the producer never reached its link";
  first_released = true;
  first_may_end.count_down();  // the first ends; its runner finds no link
  ASSERT_TRUE(runner_waits.AwaitArrival()) << "the runner never waited for the link";
  producer_exchanged.LetGo();
  producer.join();
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_EQ(first->state(), State::kSucceeded);
  EXPECT_EQ(engine.stats().succeeded, 2u);
}

// Token map T4/T5: a producer that has pinned its hint slot and found its idle
// chain there, and a sweep meanwhile. The sweep must not retire a chain a
// pinned producer may push to: it waits for the pin a bounded while, then
// leaves the chain for a later sweep; the producer's push then activates the
// chain still in the map.
TEST(RaceTest, ASweepLeavesAnIdleChainThatAPinnedProducerIsAboutToPushTo) {
  using ordo::internal::OpPool;
  using ordo::internal::TokenKey;
  using ordo::internal::TokenMap;
  // seq_cst (the default), more than it needs: it matches only on the thread
  // that stored it.
  std::atomic<std::thread::id> producer_thread{};
  Stop producer_pinned;  // kTokenPushPinned on the producer's thread: held
  ScopedHook hook([&](TestPointId point, const void*) {
    if (point == TestPointId::kTokenPushPinned &&
        std::this_thread::get_id() == producer_thread.load()) {
      producer_pinned.Arrive();
      producer_pinned.HoldUntilLetGo();
    }
  });
  TokenMap map;
  const ordo::Token token("t");
  char scratch[8] = {};
  const TokenKey key = ordo::internal::MakeTokenKey(token, scratch);
  Operation* a = OpPool::Allocate();
  Operation* b = OpPool::Allocate();
  ASSERT_TRUE(map.Push(key, a));            // the chain, made under the lock
  ASSERT_EQ(map.Advance(a), nullptr);       // and idle again
  bool activated = false;
  std::thread producer([&] {
    producer_thread.store(std::this_thread::get_id());
    activated = map.Push(key, b);           // through the hint slot: pinned
  });
  absl::Cleanup release = [&] {
    producer_pinned.LetGo();
    if (producer.joinable()) producer.join();
  };
  ASSERT_TRUE(producer_pinned.AwaitArrival()) << "the push never pinned the chain";
  EXPECT_EQ(map.SweepIdle(), 0u) << "the sweep retired a chain a producer had pinned";
  EXPECT_EQ(map.active_chains(), 1u);
  producer_pinned.LetGo();
  producer.join();
  EXPECT_TRUE(activated);
  EXPECT_EQ(b->chain, a->chain);
  map.CheckInvariants();
  ASSERT_EQ(map.Advance(b), nullptr);
  EXPECT_EQ(map.SweepIdle(), 1u);  // unpinned and idle: retired now
  EXPECT_EQ(map.active_chains(), 0u);
  OpPool::Free(a);
  OpPool::Free(b);
}

// H6 (operation.h): a Post that activates its idle chain takes the head with
// plain stores, its head and owner bits first, then the chain's head_. A token
// walk that comes in between finds the chain active with no head, waits for
// it, and then cancels the operation; the cancel holds. With the two stores
// the other way round the walk found the node before its bits were stored, its
// cancel was overwritten by them, and the body ran.
TEST(RaceTest, ATokenWalkDuringAPostsActivationWaitsForTheHeadAndItsCancelHolds) {
  // seq_cst (the defaults), more than they need: each matches only the
  // thread or node that stored it.
  std::atomic<std::thread::id> producer_thread{};
  std::atomic<bool> walk_ended{false};
  Stop producer_stored_bits;  // kPrivateHeadBitsStored on the producer: held
  Stop walker_waits;          // kWalkerAwaitsHead: passes
  ScopedHook hook([&](TestPointId point, const void*) {
    if (point == TestPointId::kPrivateHeadBitsStored &&
        std::this_thread::get_id() == producer_thread.load()) {
      producer_stored_bits.Arrive();
      producer_stored_bits.HoldUntilLetGo();
    } else if (point == TestPointId::kWalkerAwaitsHead) {
      walker_waits.Arrive();
    }
  });
  std::atomic<int> ran{0};
  std::thread producer, walker;
  absl::StatusOr<std::size_t> canceled = 0;
  // Both workers busy until the walk has ended, so the operation is still
  // Waiting when the walker finds it (else a worker may start it first, and a
  // cancel of a running operation is only a request).
  std::latch workers_busy(2);
  std::latch workers_may_go(1);
  bool workers_released = false;
  Engine engine({.workers = 2});
  absl::Cleanup release_all = [&] {
    producer_stored_bits.LetGo();
    if (!workers_released) workers_may_go.count_down();
    if (producer.joinable()) producer.join();
    if (walker.joinable()) walker.join();
  };
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(engine.Post([&] {
      workers_busy.count_down();
      workers_may_go.wait();
    }).ok());
  }
  workers_busy.wait();
  producer = std::thread([&] {
    producer_thread.store(std::this_thread::get_id());
    EXPECT_TRUE(engine.Post([&ran] { ran.fetch_add(1); }, {.token = "t"}).ok());
  });
  ASSERT_TRUE(producer_stored_bits.AwaitArrival()) << "the Post never took its head privately";
  walker = std::thread([&] {
    canceled = engine.CancelToken("t");
    walk_ended.store(true);
    walker_waits.Arrive();  // ends the wait below if the walk never had to wait
  });
  ASSERT_TRUE(walker_waits.AwaitArrival()) << "the walk neither waited nor ended";
  EXPECT_FALSE(walk_ended.load()) << "the walk ended before the Post had made itself the head";
  producer_stored_bits.LetGo();
  producer.join();
  walker.join();
  workers_released = true;
  workers_may_go.count_down();
  ASSERT_TRUE(engine.WaitIdle().ok());
  ASSERT_TRUE(canceled.ok()) << canceled.status();
  EXPECT_EQ(*canceled, 1u);
  EXPECT_EQ(ran.load(), 0) << "a canceled operation ran";
  const ordo::Stats st = engine.stats();
  EXPECT_EQ(st.submitted, 3u);  // the two that held the workers, and the Post
  EXPECT_EQ(st.canceled, 1u);
  EXPECT_EQ(st.succeeded, 2u);
  EXPECT_EQ(st.pending, 0u);
}

}  // namespace
