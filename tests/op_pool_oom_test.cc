// op_pool_oom_test.cc: the node pool out of memory. A magazine that cannot be
// made throws bad_alloc with the thread's cache and the depot as they were, so
// a caller that catches it goes on with a pool that hands out each node once.
// This binary replaces the global operator new (support/counting_new.h) to fail
// chosen allocations; each test starts from a process of its own (ctest runs
// them one by one), so the depot holds only what the test put there.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <new>
#include <optional>
#include <thread>
#include <vector>

#include "config.h"
#include "op_pool.h"
#include "ordo/engine.h"
#include "support/counting_new.h"

using ordo::testing::t_allocations_before_failure;
using ordo::testing::t_fail_allocations;

namespace ordo::internal {
namespace {

// Takes n nodes of `kind` on this thread (three magazines' worth unless said)
// and checks that none came twice, then gives them back.
void ExpectEachNodeOnce(NodeKind kind, std::size_t n = 3 * kPoolCacheNodes) {
  std::vector<Operation*> ops(n);
  for (auto& op : ops) op = OpPool::Allocate(kind);
  std::vector<Operation*> sorted = ops;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "a node twice";
  for (Operation* op : ops) OpPool::Free(op);
}

// A thread's first allocation makes its two magazines; the second failing left
// one made and the other null, and the next Allocate read through the null.
TEST(OpPoolOutOfMemoryTest, AThreadWhoseCacheCouldNotBeMadeTriesAgainLater) {
  std::thread([] {
    t_allocations_before_failure = 1;  // the first magazine, not the second
    EXPECT_THROW(OpPool::Allocate(NodeKind::kFull), std::bad_alloc);
    t_allocations_before_failure = -1;
    ExpectEachNodeOnce(NodeKind::kFull);
  }).join();
}

// A thread's third full magazine goes to the depot for an empty one, which the
// depot makes when it has none. Each of the two allocations of that swap fails
// in turn: the new magazine (counter 0), then the depot's list as the full one
// joins it (counter 1: the magazine was made first). Either way the Free throws
// with nothing changed, and the node can be freed again. (Handed to the depot
// before the empty one was made, the full magazine stayed the thread's too
// when that failed: the depot then held it twice and handed its nodes out
// twice. Counter 1 fails that way: the list grew, the magazine did not come.)
// The list has no room to spare at that point: this test's process, the only
// user of the compact depot, has not put a magazine in it before.
TEST(OpPoolOutOfMemoryTest, AFullMagazineThatCouldNotBeSwappedIsHandedOutOnce) {
  constexpr std::size_t kNodes = 3 * kPoolCacheNodes;
  std::thread([] {
    std::vector<Operation*> ops(kNodes);
    for (auto& op : ops) op = OpPool::Allocate(NodeKind::kCompact);
    // The first 2 * kPoolCacheNodes frees fill the thread's two magazines; the
    // next needs a third, from the depot, which has none empty and makes one.
    for (std::size_t i = 0; i < 2 * kPoolCacheNodes; ++i) OpPool::Free(ops[i]);
    for (int fail_at : {0, 1}) {
      t_allocations_before_failure = fail_at;
      EXPECT_THROW(OpPool::Free(ops[2 * kPoolCacheNodes]), std::bad_alloc) << fail_at;
      t_allocations_before_failure = -1;
    }
    // Nothing changed: the node is the caller's still, and goes back now.
    for (std::size_t i = 2 * kPoolCacheNodes; i < kNodes; ++i) OpPool::Free(ops[i]);
  }).join();  // its cache goes to the depot
  // Everything the depot holds, and more: each node exactly once.
  std::thread([] { ExpectEachNodeOnce(NodeKind::kCompact, 2 * kNodes); }).join();
}

// A thread that exits out of memory gives its magazines back to the depot: no
// allocation at thread exit (M1: the room for them was made with them). The
// depot's lists grew there, in the cache's destructor, and out of memory ended
// the process through std::terminate. Here every allocation of the thread
// fails from after its first node to its end; its magazine then serves another
// thread, which makes no new node for it.
TEST(OpPoolOutOfMemoryTest, AThreadThatExitsOutOfMemoryGivesItsMagazinesBack) {
  std::thread([] {
    OpPool::Free(OpPool::Allocate(NodeKind::kFacts));
    t_fail_allocations = true;  // to the thread's end, its exit handlers included
  }).join();
  const std::size_t created = OpPool::NodesCreated();
  std::thread([] {
    std::vector<Operation*> ops(kPoolCacheNodes);
    for (auto& op : ops) op = OpPool::Allocate(NodeKind::kFacts);
    for (Operation* op : ops) OpPool::Free(op);
  }).join();
  EXPECT_EQ(OpPool::NodesCreated(), created) << "the exited thread's nodes were lost";
}

// Out of memory as the last reference to an operation goes, on a thread whose
// node cache cannot be made (OpPool::Free throws): its dropper (here a Handle's
// destructor) cannot back out and the node has no other home, so the node is
// dropped and counted, and the process goes on. (It ended the process.)
TEST(OpPoolOutOfMemoryTest, ALastReferenceDroppedOutOfMemoryLosesOneNodeAndNothingElse) {
  std::optional<Handle> h;
  {
    Engine engine({.workers = 1});
    auto s = engine.Submit([] {});
    ASSERT_TRUE(s.ok()) << s.status();
    h = *std::move(s);
    ASSERT_TRUE(h->WaitFor(std::chrono::seconds(30)));
    ASSERT_EQ(h->state(), State::kSucceeded);
  }  // the engine's references are gone with it: the Handle's is the last
  const std::size_t dropped = OpPool::NodesDropped();
  std::thread([&h] {
    t_fail_allocations = true;  // this thread has no node cache yet
    h.reset();
    t_fail_allocations = false;
  }).join();
  EXPECT_EQ(OpPool::NodesDropped(), dropped + 1);
  // The pool of its kind (a Handle's node is a full one) serves on, each node
  // once, to a thread and to an engine.
  std::thread([] { ExpectEachNodeOnce(NodeKind::kFull); }).join();
  Engine engine({.workers = 1});
  std::atomic<int> ran{0};
  std::vector<Handle> handles;
  for (int i = 0; i < 1000; ++i) {
    auto s = engine.Submit([&ran] { ran.fetch_add(1, std::memory_order_relaxed); });
    ASSERT_TRUE(s.ok()) << s.status();
    handles.push_back(*std::move(s));
  }
  ASSERT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(ran.load(), 1000);
  for (const Handle& handle : handles) EXPECT_EQ(handle.state(), State::kSucceeded);
  EXPECT_EQ(OpPool::NodesDropped(), dropped + 1);
}

}  // namespace
}  // namespace ordo::internal
