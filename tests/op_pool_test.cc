// op_pool_test.cc: node pools reuse nodes, across threads too, and in steady state
// make no new ones.
#include "op_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
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

// Line 0 (operation.h) comes back reset; the facts and times are stale until
// InitFacts, which writes every one of them. (The timer's links are clear
// whenever a node is freed: the wheel clears them as it lets go.)
TEST(OpPoolTest, AReusedNodeComesBackInItsInitialStateOnceInitFactsRan) {
  Operation* a = OpPool::Allocate();
  a->word.store(5, std::memory_order_relaxed);
  a->refs.store(2, std::memory_order_relaxed);
  a->chain = reinterpret_cast<Chain*>(a);  // any non-null value; never dereferenced
  Facts(a).id().store(3, std::memory_order_relaxed);
  Facts(a).due_ns().store(42, std::memory_order_relaxed);
  Facts(a).token_hash = 99;
  Times(a).started_ns.store(10, std::memory_order_relaxed);
  Times(a).completed_ns.store(11, std::memory_order_relaxed);
  Facts(a).retry_count.store(3, std::memory_order_relaxed);
  Facts(a).cancel_requested.store(true, std::memory_order_relaxed);
  OpPool::Free(a);
  Operation* b = OpPool::Allocate();
  ASSERT_EQ(b, a);  // the thread's free list is last in, first out
  EXPECT_EQ(b->word.load(std::memory_order_relaxed), 0u);
  EXPECT_EQ(b->refs.load(std::memory_order_relaxed), 0u);
  EXPECT_EQ(b->chain, nullptr);
  EXPECT_EQ(b->ops, nullptr);
  InitFacts(b, 7, nullptr, 0, 100, kNoTime);
  EXPECT_EQ(b->id_relaxed(), 7u);
  EXPECT_EQ(Facts(b).token_hash, 0u);
  EXPECT_EQ(Times(b).created_ns.load(std::memory_order_relaxed), 100);
  EXPECT_EQ(Times(b).started_ns.load(std::memory_order_relaxed), kNoTime);
  EXPECT_EQ(Times(b).completed_ns.load(std::memory_order_relaxed), kNoTime);
  EXPECT_EQ(Facts(b).due_ns().load(std::memory_order_relaxed), kNoTime);
  EXPECT_EQ(Facts(b).retry_count.load(std::memory_order_relaxed), 0);
  EXPECT_FALSE(Facts(b).cancel_requested.load(std::memory_order_relaxed));
  OpPool::Free(b);
}

// Compact, facts and full nodes (operation.h) come from their own pools: their
// kind kept across reuse, never handed out as another kind, and their id read
// back from where each kind keeps it. Only a full node has times.
TEST(OpPoolTest, EachKindOfNodeComesFromItsOwnPoolAndKeepsItsKind) {
  Operation* c = OpPool::Allocate(NodeKind::kCompact);
  Operation* f = OpPool::Allocate(NodeKind::kFull);
  Operation* m = OpPool::Allocate(NodeKind::kFacts);
  EXPECT_TRUE(IsCompact(c));
  EXPECT_FALSE(IsCompact(f));
  EXPECT_FALSE(IsCompact(m));
  EXPECT_TRUE(HasTimes(f));
  EXPECT_FALSE(HasTimes(m));
  EXPECT_FALSE(HasTimes(c));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(c) % kCacheLine, 0u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(m) % kCacheLine, 0u);
  SetCompactId(c, 41);
  InitFacts(f, 42, nullptr, 0, kNoTime, kNoTime);
  InitFacts(m, 43, nullptr, 0, 5, 6);
  EXPECT_EQ(c->id_relaxed(), 41u);
  EXPECT_EQ(f->id_relaxed(), 42u);
  EXPECT_EQ(m->id_relaxed(), 43u);
  EXPECT_EQ(Facts(m).due_ns().load(std::memory_order_relaxed), 6);
  EXPECT_EQ(m->word.load(std::memory_order_relaxed), kNoTimesBit);
  // A finished facts node's word: its kind, kExtrasBit, the head bit, a state.
  m->word.store(kNoTimesBit | kExtrasBit | kHeadBit | static_cast<std::uint32_t>(State::kFailed),
                std::memory_order_relaxed);
  OpPool::Free(m);
  EXPECT_EQ(OpPool::Allocate(NodeKind::kFacts), m);  // its own pool
  EXPECT_EQ(m->word.load(std::memory_order_relaxed), kNoTimesBit);  // reset, kind kept
  OpPool::Free(m);
  // A finished compact node's word holds its terminal state and the kind bit.
  c->word.store(kCompactBit | static_cast<std::uint32_t>(State::kSucceeded) | kHeadBit,
                std::memory_order_relaxed);
  c->refs.store(1, std::memory_order_relaxed);
  OpPool::Free(c);
  OpPool::Free(f);
  Operation* f2 = OpPool::Allocate(NodeKind::kFull);
  Operation* c2 = OpPool::Allocate(NodeKind::kCompact);
  EXPECT_EQ(f2, f);  // each pool is last in, first out, and apart
  EXPECT_EQ(c2, c);
  EXPECT_EQ(c2->word.load(std::memory_order_relaxed), kCompactBit);  // reset, kind kept
  EXPECT_EQ(c2->refs.load(std::memory_order_relaxed), 0u);
  EXPECT_EQ(c2->chain_next.load(std::memory_order_relaxed), nullptr);
  EXPECT_EQ(f2->word.load(std::memory_order_relaxed), 0u);
  OpPool::Free(c2);
  OpPool::Free(f2);
}

// InitFacts writes a facts node's one line of facts and nothing past it: the
// node after it in a slab is another operation's.
TEST(OpPoolTest, InitFactsOfAFactsNodeLeavesTheNextNodeAlone) {
  FactsOperation slab[2];
  for (FactsOperation& n : slab) n.op.word.store(kNoTimesBit, std::memory_order_relaxed);
  unsigned char before[sizeof(FactsOperation)];
  std::memcpy(before, &slab[1], sizeof before);
  InitFacts(&slab[0].op, 9, nullptr, 0, 100, 200);
  EXPECT_EQ(std::memcmp(before, &slab[1], sizeof before), 0);
  EXPECT_EQ(slab[0].op.id_relaxed(), 9u);
  EXPECT_EQ(Facts(&slab[0].op).due_ns().load(std::memory_order_relaxed), 200);
}

// Magazines: many frees and allocations across magazine boundaries (and depot
// trades) hand back exactly the nodes freed, each once, and make none.
TEST(OpPoolTest, NodesFreedAcrossManyMagazinesComeBackEachExactlyOnce) {
  for (NodeKind kind : {NodeKind::kFull, NodeKind::kFacts, NodeKind::kCompact}) {
    SCOPED_TRACE(kind == NodeKind::kFull    ? "full nodes"
                 : kind == NodeKind::kFacts ? "facts nodes"
                                            : "compact nodes");
    // Whole magazines, so that the first loop leaves none half used.
    constexpr std::size_t kNodes = 16 * kPoolCacheNodes;
    std::vector<Operation*> first(kNodes);
    for (auto& op : first) op = OpPool::Allocate(kind);
    for (Operation* op : first) OpPool::Free(op);
    const std::size_t before = OpPool::NodesCreated();
    std::vector<Operation*> second(kNodes);
    for (auto& op : second) op = OpPool::Allocate(kind);
    EXPECT_EQ(OpPool::NodesCreated(), before);
    std::sort(first.begin(), first.end());
    std::sort(second.begin(), second.end());
    EXPECT_EQ(std::adjacent_find(second.begin(), second.end()), second.end()) << "a node twice";
    EXPECT_EQ(first, second);
    for (Operation* op : second) {
      EXPECT_EQ(IsCompact(op), kind == NodeKind::kCompact);
      EXPECT_EQ(HasTimes(op), kind == NodeKind::kFull);
      OpPool::Free(op);
    }
  }
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

// A thread_local made before the thread's first node is destroyed after the
// thread's node caches: what it frees or allocates then goes through the depot
// one node at a time. (It went into fresh magazines that the ending thread
// kept: those nodes, and a depot magazine a late Allocate took, were lost.)
struct LateUser {
  bool allocate_late = false;
  Operation* to_free = nullptr;
  Operation** late_node = nullptr;  // where a late Allocate reports its node
  ~LateUser() {
    if (to_free != nullptr) OpPool::Free(to_free);
    if (allocate_late) {
      Operation* a = OpPool::Allocate(NodeKind::kFacts);
      *late_node = a;
      OpPool::Free(a);
    }
  }
};
thread_local LateUser t_late_user;

// The next node a fresh thread allocates (its caches start empty, so it takes
// the magazine the depot hands out next).
Operation* FirstNodeOfAFreshThread(NodeKind kind) {
  Operation* got = nullptr;
  std::thread([&] {
    got = OpPool::Allocate(kind);
    OpPool::Free(got);
  }).join();
  return got;
}

TEST(OpPoolTest, ANodeFreedAfterTheThreadsCacheIsGoneGoesBackToTheDepot) {
  Operation* late = nullptr;
  std::thread([&] {
    t_late_user.to_free = nullptr;  // made first, so destroyed after the cache
    late = OpPool::Allocate(NodeKind::kCompact);
    t_late_user.to_free = late;
  }).join();
  EXPECT_EQ(FirstNodeOfAFreshThread(NodeKind::kCompact), late);
}

TEST(OpPoolTest, ANodeAllocatedAfterTheThreadsCacheIsGoneComesFromTheDepotAndGoesBack) {
  Operation* late = nullptr;
  std::thread([&] {
    t_late_user.allocate_late = true;  // made first, so destroyed after the cache
    t_late_user.late_node = &late;
    OpPool::Free(OpPool::Allocate(NodeKind::kFacts));  // the cache exists now
  }).join();
  ASSERT_NE(late, nullptr);
  EXPECT_EQ(FirstNodeOfAFreshThread(NodeKind::kFacts), late);
}

}  // namespace
}  // namespace ordo::internal
