// chain_test.cc: the per-token MPSC list on its own, one half-step at a time:
// activation goes to the producer that finds the chain idle (C2), the rest link
// behind in push order (C5), and concurrent producers lose nothing.
#include "chain.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

namespace ordo::internal {
namespace {

TEST(ChainTest, TheProducerThatFindsTheChainIdleTakesTheActivation) {
  Chain c;
  Operation a, b, d;
  EXPECT_TRUE(c.Push(&a));   // C2: idle -> activation
  EXPECT_FALSE(c.Push(&b));  // linked behind a
  EXPECT_FALSE(c.Push(&d));
  EXPECT_EQ(a.chain_next.load(), &b);  // C5: push order
  EXPECT_EQ(b.chain_next.load(), &d);
  EXPECT_EQ(d.chain_next.load(), nullptr);
  EXPECT_EQ(c.tail_.load(), &d);
}

TEST(ChainTest, AnEmptiedChainActivatesAgainOnTheNextPush) {
  Chain c;
  Operation a, b;
  ASSERT_TRUE(c.Push(&a));
  Operation* expected = &a;
  // The runner's half-step that releases the activation (TokenMap::TryRetire).
  ASSERT_TRUE(c.tail_.compare_exchange_strong(expected, nullptr));
  EXPECT_TRUE(c.Push(&b));  // C1: idle again, so b's producer activates
}

TEST(ChainTest, TheEmptyingCasFailsWhenAProducerPushedFirst) {
  Chain c;
  Operation a, b;
  ASSERT_TRUE(c.Push(&a));
  ASSERT_FALSE(c.Push(&b));
  Operation* expected = &a;
  EXPECT_FALSE(c.tail_.compare_exchange_strong(expected, nullptr));  // runner keeps going
  EXPECT_EQ(a.chain_next.load(), &b);
}

TEST(ChainTest, ConcurrentProducersLinkEveryNodeOnceInPerProducerOrder) {
  constexpr int kProducers = 4;
  constexpr int kPer = 50000;
  Chain c;
  std::vector<std::unique_ptr<FullOperation>> nodes;
  for (int i = 0; i < kProducers * kPer; ++i) {
    nodes.push_back(std::make_unique<FullOperation>());
    Facts(&nodes.back()->op).id().store(static_cast<std::uint64_t>(i), std::memory_order_relaxed);
  }
  std::atomic<int> activations{0};
  Operation* first = nullptr;
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < kPer; ++i) {
        Operation* op = &nodes[p * kPer + i]->op;
        if (c.Push(op)) {
          activations.fetch_add(1);
          first = op;  // exactly one writer (checked below)
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(activations.load(), 1);
  // Walk from the head: every node once, each producer's nodes in its order.
  std::vector<int> last(kProducers, -1);
  int count = 0;
  for (Operation* n = first; n != nullptr; n = n->chain_next.load()) {
    const int id = static_cast<int>(n->id_relaxed());
    const int p = id / kPer, i = id % kPer;
    ASSERT_GT(i, last[p]);
    last[p] = i;
    ++count;
  }
  EXPECT_EQ(count, kProducers * kPer);
}

}  // namespace
}  // namespace ordo::internal
