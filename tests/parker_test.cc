// parker_test.cc: the parker's bookkeeping of long sleepers (parker.h, P2). A
// searcher that leaves a small backlog behind wakes a sleeper only if one would
// not come back within kStrandCheck on its own: one parked with no timeout, or
// with a longer one (the parking sweep's, up to kIdleSweepInterval). A park whose
// last look finds work (P1's re-check) returns at once, and that look runs with
// the worker registered: the test reads the parker's view from inside it, with
// no timing involved.
#include "parker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "config.h"

namespace ordo::internal {
namespace {

// Parks worker 0 of `p` with `timeout`; returns HasLongSleeper() as the parked
// worker's last look (P1) saw it, which then finds work so that Park returns.
bool LongWhileParkedFor(Parker& p, std::chrono::nanoseconds timeout) {
  bool seen = false;
  p.BeginSearch();
  p.Park(
      0,
      [&] {
        EXPECT_EQ(p.sleepers(), 1);
        seen = p.HasLongSleeper();
        return true;
      },
      timeout);
  p.EndSearch();
  return seen;
}

TEST(ParkerTest, ASleeperWithNoTimeoutOrOneLongerThanTheStrandCheckIsLong) {
  Parker p(2);
  EXPECT_TRUE(LongWhileParkedFor(p, std::chrono::nanoseconds(-1)));
  // The parking sweep's timeout (up to kIdleSweepInterval): long, so a searcher
  // leaving even one operation behind wakes it rather than wait for it.
  EXPECT_TRUE(LongWhileParkedFor(p, kIdleSweepInterval));
  EXPECT_TRUE(LongWhileParkedFor(p, kStrandCheck + std::chrono::nanoseconds(1)));
  EXPECT_FALSE(p.HasLongSleeper()) << "the mark goes when the sleeper leaves";
}

TEST(ParkerTest, ASleeperThatComesBackWithinTheStrandCheckIsNotLong) {
  Parker p(2);
  EXPECT_FALSE(LongWhileParkedFor(p, kStrandCheck));
  EXPECT_FALSE(LongWhileParkedFor(p, std::chrono::nanoseconds(0)));
  EXPECT_EQ(p.sleepers(), 0);
}

// A long sleeper woken by a producer (not by its own re-check) loses its mark
// too: the next searcher does not wake for a sleeper that is gone.
TEST(ParkerTest, AWokenLongSleeperIsNoLongerCounted) {
  Parker p(2);
  std::atomic<bool> returned{false};
  std::thread sleeper([&] {
    p.BeginSearch();
    p.Park(0, [] { return false; }, std::chrono::nanoseconds(-1));
    p.EndSearch();
    returned.store(true, std::memory_order_release);
  });
  // Waits for the registration (the state under test; the bound only turns a
  // lost wake-up into a failure instead of a hang).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!p.HasLongSleeper() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  EXPECT_EQ(p.sleepers(), 1);
  // Wakes it, once it counts as searching no more (between its registration
  // and that step a producer takes it for a searcher and wakes nobody).
  while (!returned.load(std::memory_order_acquire)) {
    if (std::chrono::steady_clock::now() >= give_up) {
      ADD_FAILURE() << "NotifyWork never woke the sleeper";
      p.WakeAll();
      break;
    }
    p.NotifyWork();
    std::this_thread::yield();
  }
  sleeper.join();
  EXPECT_FALSE(p.HasLongSleeper());
  EXPECT_EQ(p.sleepers(), 0);
}

}  // namespace
}  // namespace ordo::internal
