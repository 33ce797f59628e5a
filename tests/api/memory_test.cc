// memory_test.cc: an idle token costs nothing. After a million distinct tokens
// have run once each, no chain is active and the heap in use is back near its
// baseline (the node pools keep only what was pending at once).
#include <gtest/gtest.h>
#include <malloc.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "ordo/engine.h"

namespace ordo {
namespace {

std::size_t HeapInUse() { return mallinfo2().uordblks; }

TEST(MemoryTest, AMillionTokensRunOnceLeaveNoChainAndNoMemoryBehind) {
  Engine engine({.workers = 2});
  std::atomic<long> ran{0};
  auto wave = [&](long first, long count) {
    for (long i = first; i < first + count; ++i) {
      auto h = engine.Submit([&ran] { ran.fetch_add(1, std::memory_order_relaxed); },
                             {.token = "customer-" + std::to_string(i)});
      ASSERT_TRUE(h.ok());
    }
    ASSERT_TRUE(engine.WaitIdle().ok());
  };
  for (int i = 0; i < 30; ++i) wave(i * 2000, 2000);  // warm pools and maps
  const std::size_t baseline = HeapInUse();
  constexpr long kTokens = 1000000;
  std::size_t peak_chains = 0;
  for (long first = 60000; first < 60000 + kTokens; first += 2000) {
    // Waves of 2,000 tokens pile up as chains, then drain. (Waves keep the node
    // pools' high-water mark small: pooled nodes are not what this test measures.)
    wave(first, 2000);
    peak_chains = std::max<std::size_t>(peak_chains, engine.stats().active_chains);
  }
  EXPECT_EQ(ran.load(), 60000 + kTokens);
  EXPECT_EQ(engine.stats().active_chains, 0u);
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

}  // namespace
}  // namespace ordo
