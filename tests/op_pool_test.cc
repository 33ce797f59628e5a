// op_pool_test.cc: node pools reuse nodes, across threads too, and in steady state
// make no new ones.
#include "op_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <thread>
#include <vector>

#include "config.h"

namespace ordo::internal {
namespace {

TEST(OpPoolTest, AFreedNodeIsReusedByTheSameThread) {
  Operation* a = OpPool::Allocate();
  OpPool::Free(a);
  Operation* b = OpPool::Allocate();
  EXPECT_EQ(a, b);
  OpPool::Free(b);
}

// Lines 0 and 2 (operation.h) come back reset; line 1 is stale until InitFacts,
// which writes every field of it.
TEST(OpPoolTest, AReusedNodeComesBackInItsInitialStateOnceInitFactsRan) {
  Operation* a = OpPool::Allocate();
  a->word.store(5, std::memory_order_relaxed);
  a->refs.store(2, std::memory_order_relaxed);
  a->chain = reinterpret_cast<Chain*>(a);  // any non-null value; never dereferenced
  a->in_wheel = true;
  a->timer.deadline_ns = 42;
  a->timer.slot_index = 3;
  a->token_hash = 99;
  a->started_ns.store(10, std::memory_order_relaxed);
  a->completed_ns.store(11, std::memory_order_relaxed);
  a->retry_count.store(3, std::memory_order_relaxed);
  a->cancel_requested.store(true, std::memory_order_relaxed);
  OpPool::Free(a);
  Operation* b = OpPool::Allocate();
  ASSERT_EQ(b, a);  // the thread's free list is last in, first out
  EXPECT_EQ(b->word.load(std::memory_order_relaxed), 0u);
  EXPECT_EQ(b->refs.load(std::memory_order_relaxed), 0u);
  EXPECT_EQ(b->chain, nullptr);
  EXPECT_EQ(b->ops, nullptr);
  EXPECT_FALSE(b->in_wheel);
  EXPECT_FALSE(b->timer.linked());
  EXPECT_EQ(b->timer.deadline_ns, 0);
  EXPECT_EQ(b->extras.load(std::memory_order_relaxed), nullptr);
  InitFacts(b, 7, nullptr, 100, kNoTime);
  EXPECT_EQ(b->id_relaxed(), 7u);
  EXPECT_EQ(b->token_hash, 0u);
  EXPECT_EQ(b->created_ns.load(std::memory_order_relaxed), 100);
  EXPECT_EQ(b->started_ns.load(std::memory_order_relaxed), kNoTime);
  EXPECT_EQ(b->completed_ns.load(std::memory_order_relaxed), kNoTime);
  EXPECT_EQ(b->due_ns.load(std::memory_order_relaxed), kNoTime);
  EXPECT_EQ(b->retry_count.load(std::memory_order_relaxed), 0);
  EXPECT_FALSE(b->cancel_requested.load(std::memory_order_relaxed));
  OpPool::Free(b);
}

// Magazines: many frees and allocations across magazine boundaries (and depot
// trades) hand back exactly the nodes freed, each once, and make none.
TEST(OpPoolTest, NodesFreedAcrossManyMagazinesComeBackEachExactlyOnce) {
  // Whole magazines, so that the first loop leaves none half used.
  constexpr std::size_t kNodes = 16 * kPoolCacheNodes;
  std::vector<Operation*> first(kNodes);
  for (auto& op : first) op = OpPool::Allocate();
  for (Operation* op : first) OpPool::Free(op);
  const std::size_t before = OpPool::NodesCreated();
  std::vector<Operation*> second(kNodes);
  for (auto& op : second) op = OpPool::Allocate();
  EXPECT_EQ(OpPool::NodesCreated(), before);
  std::sort(first.begin(), first.end());
  std::sort(second.begin(), second.end());
  EXPECT_EQ(std::adjacent_find(second.begin(), second.end()), second.end()) << "a node twice";
  EXPECT_EQ(first, second);
  for (Operation* op : second) OpPool::Free(op);
}

TEST(OpPoolTest, AProducerAndAConsumerThreadReachASteadyStateWithNoNewNodes) {
  // The producer allocates, the consumer frees: nodes travel back in batches
  // through the depot. After a warm-up, no node is made any more.
  auto round = [](int n) {
    std::vector<Operation*> made(n);
    for (int i = 0; i < n; ++i) made[i] = OpPool::Allocate();
    std::thread consumer([&] {
      for (Operation* op : made) OpPool::Free(op);
    });
    consumer.join();
  };
  for (int i = 0; i < 4; ++i) round(4096);  // warm-up
  const std::size_t before = OpPool::NodesCreated();
  for (int i = 0; i < 20; ++i) round(4096);
  EXPECT_EQ(OpPool::NodesCreated(), before);
}

}  // namespace
}  // namespace ordo::internal
