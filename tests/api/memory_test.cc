// memory_test.cc: an idle token costs nothing. After a million distinct tokens
// have run once each, no chain is active and the heap in use is back near its
// baseline (the node pools keep only what was pending at once).
#include <gtest/gtest.h>
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "ordo/engine.h"
#include "support/journal.h"

namespace ordo {
namespace {

std::size_t HeapInUse() { return mallinfo2().uordblks; }

// The sanitizers' runtimes replace malloc, and mallinfo2 does not see theirs.
bool HeapIsVisible() {
  const std::size_t before = HeapInUse();
  std::vector<char> probe(1 << 16);
  // The probe escapes: unused, clang would drop its allocation and every clang
  // build would skip the heap checks.
  asm volatile("" : : "r"(probe.data()) : "memory");
  return HeapInUse() >= before + probe.size();
}

TEST(MemoryTest, AMillionTokensRunOnceLeaveNoChainAndNoMemoryBehind) {
  Engine engine({.workers = 2});
  std::atomic<long> ran{0};
  {
    // With both workers held, a tokened operation's chain is certainly there:
    // what the end of the test finds gone was made.
    ::ordo::testing::Gate gate;
    std::latch started(2);
    for (int w = 0; w < 2; ++w) {
      ASSERT_TRUE(engine.Post([&started, wait = gate.Waiter()] {
        started.count_down();
        wait();
      }).ok());
    }
    started.wait();
    ASSERT_TRUE(engine.Post([&ran] { ran.fetch_add(1, std::memory_order_relaxed); },
                            {.token = "held"}).ok());
    EXPECT_EQ(engine.stats().active_chains, 1u);
    gate.Open();
    ASSERT_TRUE(engine.WaitIdle().ok());
  }
  std::size_t peak_chains = 0;
  auto wave = [&](long first, long count) {
    for (long i = first; i < first + count; ++i) {
      auto h = engine.Submit([&ran] { ran.fetch_add(1, std::memory_order_relaxed); },
                             {.token = "customer-" + std::to_string(i)});
      ASSERT_TRUE(h.ok());
    }
    // Before WaitIdle, which retires what ran dry: the wave's chains are there.
    peak_chains = std::max<std::size_t>(peak_chains, engine.stats().active_chains);
    ASSERT_TRUE(engine.WaitIdle().ok());
  };
  for (int i = 0; i < 30; ++i) wave(i * 2000, 2000);  // warm pools and maps
  const std::size_t baseline = HeapInUse();
  constexpr long kTokens = 1000000;
  for (long first = 60000; first < 60000 + kTokens; first += 2000) {
    // Waves of 2,000 tokens pile up as chains, then drain. (Waves keep the node
    // pools' high-water mark small: pooled nodes are not what this test measures.)
    wave(first, 2000);
  }
  EXPECT_EQ(ran.load(), 1 + 60000 + kTokens);
  RecordProperty("peak_chains", static_cast<int>(peak_chains));  // what a wave left, unswept
  EXPECT_EQ(engine.stats().active_chains, 0u);
  if (!HeapIsVisible()) GTEST_SKIP() << "mallinfo2 does not see this heap (chains checked)";
  const long grown = static_cast<long>(HeapInUse()) - static_cast<long>(baseline);
  RecordProperty("heap_growth_bytes", static_cast<int>(grown));
  // Under 4 bytes per token that ran: 1,000,000 idle tokens at even one pointer
  // each would be 8 MB. What growth there is comes from node pools spread over
  // threads (nodes are pooled for the process's life; see op_pool.h).
  EXPECT_LT(grown, 4L << 20) << "heap grew by " << grown << " bytes";
}

// Without WaitIdle: the chains that ran dry are retired by the workers as they
// run out of work and park (at most one sweep per 100 ms, then a timed park), so
// an engine left alone ends with none. Waits on the handles, then polls the
// gauge with a deadline (the sweep runs on the workers' own schedule).
TEST(MemoryTest, AnEngineLeftIdleRetiresItsChainsOnItsOwn) {
  Engine engine({.workers = 2});
  std::vector<Handle> handles;
  for (long i = 0; i < 5000; ++i) {
    auto h = engine.Submit([] {}, {.token = Token(i)});
    ASSERT_TRUE(h.ok());
    handles.push_back(*std::move(h));
  }
  for (Handle& h : handles) ASSERT_EQ(h.Wait(), State::kSucceeded);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (engine.stats().active_chains != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(engine.stats().active_chains, 0u);
}

TEST(MemoryTest, ChainsPiledUpAtOnceAreAllRetired) {
  Engine engine({.workers = 2});
  std::atomic<long> ran{0};
  for (long i = 0; i < 100000; ++i) {
    ASSERT_TRUE(engine
                    .Submit([&ran] { ran.fetch_add(1, std::memory_order_relaxed); },
                            {.token = Token(i)})
                    .ok());
  }
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(ran.load(), 100000);
  EXPECT_EQ(engine.stats().active_chains, 0u);
}

// Bytes per pending operation, by kind of node (operation.h, "Layout"): a Post
// with a token or a postponement takes a two-line node (128 bytes), not the
// three lines of a Submit, whose third holds the times only a Handle shows. Both
// workers are held by gate jobs while the operations pile up, so none of them
// runs; the heap's growth is the nodes' slabs (a magazine is refilled in place
// while a thread only allocates), the 100 chains and the run queue's slots for
// their heads.
TEST(MemoryTest, APendingPostWithATokenOrAPostponementTakesTwoCacheLines) {
  if (!HeapIsVisible()) GTEST_SKIP() << "mallinfo2 does not see this heap";
  constexpr int kWorkers = 2;
  constexpr long kOps = 32768;
  Engine engine({.workers = kWorkers});
  std::atomic<bool> open{false};
  std::atomic<int> gated{0};
  for (int i = 0; i < kWorkers; ++i) {
    ASSERT_TRUE(engine
                    .Post([&] {
                      gated.fetch_add(1);
                      while (!open.load()) std::this_thread::yield();
                    })
                    .ok());
  }
  while (gated.load() < kWorkers) std::this_thread::yield();
  auto per_op = [&](auto post) {
    const std::size_t before = HeapInUse();
    for (long i = 0; i < kOps; ++i) {
      if (!post(i).ok()) return -1.0;  // refused: fails the checks below
    }
    return (static_cast<double>(HeapInUse()) - static_cast<double>(before)) / kOps;
  };
  std::atomic<long> ran{0};
  const double chained = per_op([&](long i) {
    return engine.Post([&ran] { ran.fetch_add(1); }, {.token = Token(i % 100)});
  });
  const auto later = engine.clock().Now() + std::chrono::hours(1);
  const double postponed = per_op([&](long) {
    return engine.Post([&ran] { ran.fetch_add(1); }, {.postpone_until = later});
  });
  RecordProperty("chained_bytes", static_cast<int>(chained));
  RecordProperty("postponed_bytes", static_cast<int>(postponed));
  // The growth is counted in whole slabs, so a slab that an earlier phase left
  // partly free can bring it a little under 128 (a lent 16-core machine measured
  // 127.7 postponed): 120 still tells two lines from one (a one-line node with
  // its queue slot measures under 80).
  EXPECT_GE(chained, 120.0);
  EXPECT_LE(chained, 144.0);
  EXPECT_GE(postponed, 120.0);
  EXPECT_LE(postponed, 144.0);
  open.store(true);
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(ran.load(), kOps);  // the chained ones; the postponed ones are not due
  ASSERT_TRUE(engine.Shutdown(ShutdownMode::kCancelPending).ok());
  EXPECT_EQ(engine.stats().canceled, static_cast<std::uint64_t>(kOps));
}

}  // namespace
}  // namespace ordo
