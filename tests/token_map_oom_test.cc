// token_map_oom_test.cc: the token map's sweep out of memory. A sweep runs where
// nothing could handle an exception (a parking worker, WaitIdle, the engine's
// destructor), so it must not throw: it allocates nothing to retire a chain, and
// a shrink of a shard's map that cannot allocate leaves the map as it was.
// This binary replaces the global operator new (support/counting_new.h) to fail
// allocations.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "op_pool.h"
#include "support/counting_new.h"
#include "token_map.h"

using ordo::testing::t_fail_allocations;

namespace ordo::internal {
namespace {

// Owns the token the key's bytes point into.
struct Key {
  explicit Key(std::int64_t k) : token(k), key(MakeTokenKey(token, scratch)) {}
  operator const TokenKey&() const { return key; }  // NOLINT
  Token token;
  char scratch[8] = {};
  TokenKey key;
};

// Enough tokens that every shard's map grows past the 256 slots from which a
// sweep shrinks it; one in 64 stays busy, so each map is left holding a few
// chains in a table over eight times their number: the shrink must allocate.
// (absl's rehash in place, used until then, recorded the smaller capacity
// before its allocation failed, and the map then looked its keys up with the
// wrong mask.) The chains retired are kept or deleted, nothing allocated.
TEST(TokenMapOutOfMemoryTest, ASweepThatCannotAllocateRetiresChainsAndKeepsTheMapWhole) {
  constexpr std::int64_t kTokens = 600 * static_cast<std::int64_t>(kTokenShards);
  TokenMap map;
  std::vector<Operation*> ops(kTokens);
  for (std::int64_t k = 0; k < kTokens; ++k) {
    ops[k] = OpPool::Allocate();
    ASSERT_TRUE(map.Push(Key(k), ops[k]));
  }
  std::size_t busy = 0;
  for (std::int64_t k = 0; k < kTokens; ++k) {
    if (k % 64 == 0) {
      ++busy;
    } else {
      ASSERT_EQ(map.Advance(ops[k]), nullptr);  // its chain is idle
    }
  }
  ASSERT_EQ(map.active_chains(), static_cast<std::size_t>(kTokens));

  std::size_t retired = 0;
  t_fail_allocations = true;
  try {
    retired = map.SweepIdle();
  } catch (const std::bad_alloc&) {
    t_fail_allocations = false;
    FAIL() << "the sweep threw bad_alloc";
  }
  t_fail_allocations = false;
  EXPECT_EQ(retired, static_cast<std::size_t>(kTokens) - busy);
  EXPECT_EQ(map.active_chains(), busy);
  map.CheckInvariants();

  // Every busy token still finds its chain: a push queues behind its head.
  std::vector<Operation*> behind;
  for (std::int64_t k = 0; k < kTokens; k += 64) {
    Operation* op = OpPool::Allocate();
    behind.push_back(op);
    EXPECT_FALSE(map.Push(Key(k), op)) << "token " << k << " lost its chain";
    EXPECT_EQ(op->chain, ops[k]->chain);
    EXPECT_EQ(map.Advance(ops[k]), op);
    EXPECT_EQ(map.Advance(op), nullptr);
  }
  // And a sweep with memory retires them all.
  EXPECT_EQ(map.SweepIdle(), busy);
  EXPECT_EQ(map.active_chains(), 0u);
  map.CheckInvariants();
  for (Operation* op : ops) OpPool::Free(op);
  for (Operation* op : behind) OpPool::Free(op);
}

}  // namespace
}  // namespace ordo::internal
