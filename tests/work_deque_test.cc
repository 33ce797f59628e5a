// work_deque_test.cc: the worker's local run queue: FIFO for its owner, bounded,
// thieves take half; under concurrent owner/thieves nothing is lost or duplicated.
#include "work_deque.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "support/compact_ops.h"

namespace ordo::internal {
namespace {

using ::ordo::testing::MakeCompactOps;

TEST(WorkDequeTest, OwnerPopsInPushOrder) {
  WorkDeque d;
  auto ops = MakeCompactOps(WorkDeque::kCapacity);
  for (auto& op : ops) ASSERT_TRUE(d.Push(op.get()));
  for (auto& op : ops) EXPECT_EQ(d.Pop(), op.get());
  EXPECT_EQ(d.Pop(), nullptr);
}

TEST(WorkDequeTest, PushFailsWhenFullAndSucceedsAfterAPop) {
  WorkDeque d;
  auto ops = MakeCompactOps(WorkDeque::kCapacity + 1);
  for (std::size_t i = 0; i < WorkDeque::kCapacity; ++i) ASSERT_TRUE(d.Push(ops[i].get()));
  EXPECT_FALSE(d.Push(ops.back().get()));
  EXPECT_EQ(d.size(), WorkDeque::kCapacity);
  EXPECT_EQ(d.Pop(), ops[0].get());
  EXPECT_TRUE(d.Push(ops.back().get()));
}

// Peek (a prefetch hint) names what the owner pops next, and nothing past the tail.
TEST(WorkDequeTest, PeekNamesTheItemsTheOwnerPopsNext) {
  WorkDeque d;
  EXPECT_EQ(d.Peek(0), nullptr);
  auto ops = MakeCompactOps(WorkDeque::kCapacity);
  for (int round = 0; round < 3; ++round) {  // across the wrap-around too
    for (auto& op : ops) ASSERT_TRUE(d.Push(op.get()));
    for (std::size_t i = 0; i < ops.size(); ++i) {
      EXPECT_EQ(d.Peek(0), ops[i].get());
      EXPECT_EQ(d.Peek(1), i + 1 < ops.size() ? ops[i + 1].get() : nullptr);
      EXPECT_EQ(d.Peek(static_cast<std::uint32_t>(ops.size() - i)), nullptr);
      EXPECT_EQ(d.Pop(), ops[i].get());
    }
    EXPECT_EQ(d.Peek(0), nullptr);
  }
}

TEST(WorkDequeTest, WrapsAroundManyTimesKeepingOrder) {
  WorkDeque d;
  auto ops = MakeCompactOps(3);
  for (int round = 0; round < 10 * static_cast<int>(WorkDeque::kCapacity); ++round) {
    ASSERT_TRUE(d.Push(ops[0].get()));
    ASSERT_TRUE(d.Push(ops[1].get()));
    ASSERT_EQ(d.Pop(), ops[0].get());
    ASSERT_EQ(d.Pop(), ops[1].get());
  }
  EXPECT_EQ(d.size(), 0u);
}

TEST(WorkDequeTest, ThiefTakesTheOlderHalf) {
  WorkDeque d;
  auto ops = MakeCompactOps(4);
  for (auto& op : ops) ASSERT_TRUE(d.Push(op.get()));
  Operation* got[8];
  const std::size_t n = d.Steal(got, 8);
  ASSERT_EQ(n, 2u);
  EXPECT_EQ(got[0], ops[0].get());
  EXPECT_EQ(got[1], ops[1].get());
  EXPECT_EQ(d.Pop(), ops[2].get());
  EXPECT_EQ(d.Steal(got, 8), 1u);
  EXPECT_EQ(got[0], ops[3].get());
  EXPECT_EQ(d.Steal(got, 8), 0u);
}

TEST(WorkDequeTest, ConcurrentOwnerAndThievesLoseAndDuplicateNothing) {
  constexpr int kItems = 200000;
  auto ops = MakeCompactOps(kItems);
  WorkDeque d;
  std::vector<std::atomic<int>> taken(kItems);
  std::atomic<bool> done{false};
  auto take = [&](Operation* op) { taken[op->id_relaxed() - 1].fetch_add(1); };
  std::vector<std::thread> thieves;
  for (int t = 0; t < 2; ++t) {
    thieves.emplace_back([&] {
      Operation* got[WorkDeque::kCapacity];
      while (!done.load(std::memory_order_acquire) || d.size() > 0) {
        const std::size_t n = d.Steal(got, WorkDeque::kCapacity);
        for (std::size_t i = 0; i < n; ++i) take(got[i]);
        if (n == 0) std::this_thread::yield();
      }
    });
  }
  int pushed = 0;
  while (pushed < kItems) {
    if (d.Push(ops[pushed].get())) {
      ++pushed;
    } else if (Operation* op = d.Pop()) {
      take(op);
    }
    if (pushed % 3 == 0) {
      if (Operation* op = d.Pop()) take(op);
    }
  }
  while (Operation* op = d.Pop()) take(op);
  done.store(true, std::memory_order_release);
  for (auto& t : thieves) t.join();
  for (int i = 0; i < kItems; ++i) ASSERT_EQ(taken[i].load(), 1) << "item " << i;
}

}  // namespace
}  // namespace ordo::internal
