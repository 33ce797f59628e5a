// Races made certain: each test holds engine threads at test points (sync.h,
// ORDO_TEST_POINTS) so that a window between two protocol steps, which the
// stress tests reach only by chance, is entered every run, in a chosen order.
// Built where test points are (the debug, small-world and sanitizer presets).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <latch>
#include <mutex>
#include <thread>

#include "operation.h"
#include "ordo/engine.h"
#include "sync.h"

namespace {

using namespace std::chrono_literals;
using ordo::Engine;
using ordo::Handle;
using ordo::ManualClock;
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
    cv_.wait_for(lock, 60s, [this] { return go_; });
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

// The state the hook reads: set by the test before the engine can reach a
// point (SetTestHook's release orders it), each Stop synchronised by its mutex.
struct SoleRunRace {
  std::atomic<std::uint64_t> target_id{0};
  std::atomic<const void*> target{nullptr};  // its node, once its runner has read it
  Stop runner_read;                          // kRunItemRead: held
  Stop runner_released;                      // kRunItemReleased: passes
  Stop sweep_canceled;                       // kShutdownSweepCanceled: held
};
SoleRunRace* g_sole_run = nullptr;

void SoleRunHook(TestPointId point, const void* node) {
  SoleRunRace& r = *g_sole_run;
  switch (point) {
    case TestPointId::kRunItemRead:
      if (static_cast<const Operation*>(node)->id_relaxed() != r.target_id.load()) return;
      r.target.store(node);
      r.runner_read.Arrive();
      r.runner_read.HoldUntilLetGo();
      return;
    case TestPointId::kRunItemReleased:
      if (node == r.target.load()) r.runner_released.Arrive();
      return;
    case TestPointId::kShutdownSweepCanceled:
      if (static_cast<const Operation*>(node)->id_relaxed() != r.target_id.load()) return;
      r.sweep_canceled.Arrive();
      r.sweep_canceled.HoldUntilLetGo();
      return;
  }
}

// A worker owns a queued operation that a Handle, since dropped, postponed: its
// runner reads one reference (its own), so it may decide it is the only party
// (worker.cc U1). Then Shutdown's sweep takes the operation out of the wheel
// with a reference, and cancels it. The runner sees it Canceled and lets go of
// it; the sweep, which still holds its reference, drops it after that. The
// runner once freed the node on that decision, with no RMW, and the sweep
// then dropped a reference of a node back in the pool (DropRef now ends the
// process on that: this test died).
TEST(RaceTest, ARunnerThatReadOneReferenceLeavesAShutdownSweepItsOwn) {
  SoleRunRace race;
  g_sole_run = &race;
  SetTestHook(&SoleRunHook);
  {
    ManualClock clock;
    Engine engine({.workers = 1, .clock = &clock});
    std::latch blocker_started(1);
    std::latch blocker_may_end(1);
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
    race.target_id.store(x->id());
    *x = Handle();  // the runner's is now the only reference
    blocker_may_end.count_down();
    ASSERT_TRUE(race.runner_read.AwaitArrival()) << "the worker never took the operation";

    std::thread shutdown([&] { EXPECT_TRUE(engine.Shutdown(ShutdownMode::kCancelPending).ok()); });
    ASSERT_TRUE(race.sweep_canceled.AwaitArrival()) << "the sweep never canceled it";
    race.runner_read.LetGo();  // the runner sees it Canceled and lets go of it
    ASSERT_TRUE(race.runner_released.AwaitArrival()) << "the runner never let go of it";
    race.sweep_canceled.LetGo();  // the sweep drops its reference: the last
    shutdown.join();

    const ordo::Stats st = engine.stats();
    EXPECT_EQ(st.submitted, 2u);
    EXPECT_EQ(st.succeeded, 1u);
    EXPECT_EQ(st.canceled, 1u);
    EXPECT_EQ(st.pending, 0u);
  }
  SetTestHook(nullptr);
  g_sole_run = nullptr;
}

}  // namespace
