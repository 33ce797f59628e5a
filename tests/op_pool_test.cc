// op_pool_test.cc: node pools reuse nodes, across threads too, and in steady state
// make no new ones.
#include "op_pool.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace ordo::internal {
namespace {

TEST(OpPoolTest, AFreedNodeIsReusedByTheSameThread) {
  Operation* a = OpPool::Allocate();
  OpPool::Free(a);
  Operation* b = OpPool::Allocate();
  EXPECT_EQ(a, b);
  OpPool::Free(b);
}

TEST(OpPoolTest, AReusedNodeComesBackInItsInitialState) {
  Operation* a = OpPool::Allocate();
  a->word.store(5, std::memory_order_relaxed);
  a->retry_count.store(3, std::memory_order_relaxed);
  a->cancel_requested.store(true, std::memory_order_relaxed);
  OpPool::Free(a);
  Operation* b = OpPool::Allocate();
  EXPECT_EQ(b->word.load(std::memory_order_relaxed), 0u);
  EXPECT_EQ(b->retry_count.load(std::memory_order_relaxed), 0);
  EXPECT_FALSE(b->cancel_requested.load(std::memory_order_relaxed));
  EXPECT_EQ(b->chain, nullptr);
  OpPool::Free(b);
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
