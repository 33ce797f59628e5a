// token_map_test.cc: the token map and the chain activation/retirement protocol,
// driven directly (no engine): every push that takes the activation runs the
// chain to its end; producers race with runners emptying chains and with sweeps
// retiring them.
#include "token_map.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "op_pool.h"

namespace ordo::internal {
namespace {

// Owns the token the key's bytes point into.
struct Key {
  explicit Key(Token t) : token(std::move(t)), key(MakeTokenKey(token, scratch)) {}
  explicit Key(const char* s) : Key(Token(s)) {}
  explicit Key(const std::string& s) : Key(Token(s)) {}
  operator const TokenKey&() const { return key; }  // NOLINT
  Token token;
  char scratch[8] = {};
  TokenKey key;
};

Operation* NewOp(std::uint64_t id) {
  Operation* op = OpPool::Allocate();
  Facts(op).id().store(id, std::memory_order_relaxed);
  return op;
}

TEST(TokenMapTest, TheFirstPushActivatesAndLaterPushesQueueBehindIt) {
  TokenMap map;
  Operation* a = NewOp(1);
  Operation* b = NewOp(2);
  EXPECT_TRUE(map.Push(Key("t"), a));
  EXPECT_FALSE(map.Push(Key("t"), b));
  EXPECT_EQ(a->chain, b->chain);
  EXPECT_EQ(map.active_chains(), 1u);
  EXPECT_EQ(map.Advance(a), b);
  EXPECT_EQ(map.Advance(b), nullptr);  // idle: kept until a sweep
  EXPECT_EQ(map.active_chains(), 1u);
  map.CheckInvariants();
  EXPECT_EQ(map.SweepIdle(), 1u);
  EXPECT_EQ(map.active_chains(), 0u);
  map.CheckInvariants();
  OpPool::Free(a);
  OpPool::Free(b);
}

TEST(TokenMapTest, AChainThatRanDryIsReusedByTheTokensNextPushUntilSwept) {
  TokenMap map;
  Operation* a = NewOp(1);
  Operation* b = NewOp(2);
  Operation* c = NewOp(3);
  ASSERT_TRUE(map.Push(Key("t"), a));
  Chain* first = a->chain;
  ASSERT_EQ(map.Advance(a), nullptr);
  EXPECT_TRUE(map.Push(Key("t"), b));  // idle chain: the push activates it again
  EXPECT_EQ(b->chain, first);
  EXPECT_EQ(first->head_.load(), nullptr);  // emptied (T3 a); the head is the pusher's to set
  ASSERT_EQ(map.Advance(b), nullptr);
  EXPECT_EQ(map.SweepIdle(), 1u);
  EXPECT_EQ(map.SweepIdle(), 0u);
  EXPECT_TRUE(map.Push(Key("t"), c));  // swept: a chain is made again
  EXPECT_EQ(map.active_chains(), 1u);
  ASSERT_EQ(map.Advance(c), nullptr);
  EXPECT_EQ(map.SweepIdle(), 1u);
  map.CheckInvariants();
  for (Operation* op : {a, b, c}) OpPool::Free(op);
}

// A parking worker's round (SweepIdleStep) goes a shard at a time while work is
// waiting: each call sweeps one shard, asks, and stops, keeping its place; the
// calls together sweep every shard exactly once (a shard swept twice would
// retire its chains, spared the first time), and the last call ends the round.
TEST(TokenMapTest, AParkingRoundStopsAfterEachShardWhenAskedAndResumesWhereItStopped) {
  TokenMap map;
  std::vector<Operation*> ops;
  std::vector<int> per_shard(kTokenShards, 0);
  // At least 512 tokens, and more until every shard holds one: the hash is seeded
  // per process, so a fixed set of names leaves a shard empty in about one run of
  // fifty (64 shards, 512 names). All pushed first, then all run dry: a busy chain is
  // never retired, so the sweeps a growing shard makes of its idle chains
  // (PushLocked) leave them all.
  int empty_shards = static_cast<int>(kTokenShards);
  for (int i = 0; i < 512 || empty_shards > 0; ++i) {
    ASSERT_LT(i, 100000) << "the token hash leaves a shard empty";
    Key k("t" + std::to_string(i));
    if (per_shard[k.key.hash & (kTokenShards - 1)]++ == 0) --empty_shards;
    Operation* op = NewOp(static_cast<std::uint64_t>(i) + 1);
    ASSERT_TRUE(map.Push(k, op));
    ops.push_back(op);
  }
  const int kTokens = static_cast<int>(ops.size());
  for (Operation* op : ops) ASSERT_EQ(map.Advance(op), nullptr);  // idle, marked recent
  ASSERT_EQ(map.active_chains(), static_cast<std::size_t>(kTokens));
  std::vector<int> expected_spared;  // after each call: the shards so far, in order
  int sum = 0;
  for (int n : per_shard) {
    sum += n;
    expected_spared.push_back(sum);
  }
  // Every shard holds some (64 shards; 2 in the small-world build).
  ASSERT_EQ(expected_spared.size(), kTokenShards);
  std::size_t spared = 0;
  int asked = 0;
  std::size_t calls = 0;
  bool done = false;
  while (!done && calls < 4 * kTokenShards) {
    done = map.SweepIdleStep(
        [&] {
          ++asked;
          return true;  // work is waiting
        },
        &spared);
    ASSERT_LT(calls, expected_spared.size());
    EXPECT_EQ(spared, static_cast<std::size_t>(expected_spared[calls])) << calls;
    ++calls;
    EXPECT_EQ(map.sweep_underway(), !done);
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(calls, expected_spared.size());
  EXPECT_EQ(asked, static_cast<int>(expected_spared.size()) - 1);  // not after the last shard
  EXPECT_EQ(map.active_chains(), static_cast<std::size_t>(kTokens));  // all spared, none retired
  // The next round, with nothing waiting, retires them all in one call.
  spared = 0;
  EXPECT_TRUE(map.SweepIdleStep([] { return false; }, &spared));
  EXPECT_EQ(spared, 0u);
  EXPECT_EQ(map.active_chains(), 0u);
  map.CheckInvariants();
  for (Operation* op : ops) OpPool::Free(op);
}

// A parking worker's sweep (spare_recent) spares a chain emptied since the last
// such sweep and clears its mark; the next one retires it if it stayed idle; a
// full sweep retires it at once. A busy chain is never retired.
TEST(TokenMapTest, AGenerationalSweepSparesAChainEmptiedSinceTheLastOne) {
  TokenMap map;
  Operation* a = NewOp(1);
  Operation* b = NewOp(2);
  Operation* c = NewOp(3);
  ASSERT_TRUE(map.Push(Key("used"), a));
  ASSERT_EQ(map.Advance(a), nullptr);  // emptied: marked recent
  ASSERT_TRUE(map.Push(Key("busy"), b));  // stays busy
  std::size_t spared = 0;
  EXPECT_EQ(map.SweepIdle(/*spare_recent=*/true, &spared), 0u);
  EXPECT_EQ(spared, 1u);
  EXPECT_EQ(map.active_chains(), 2u);
  // Used again between the sweeps: spared again.
  ASSERT_TRUE(map.Push(Key("used"), c));
  ASSERT_EQ(map.Advance(c), nullptr);
  spared = 0;
  EXPECT_EQ(map.SweepIdle(true, &spared), 0u);
  EXPECT_EQ(spared, 1u);
  // Idle through a whole interval: retired.
  spared = 0;
  EXPECT_EQ(map.SweepIdle(true, &spared), 1u);
  EXPECT_EQ(spared, 0u);
  EXPECT_EQ(map.active_chains(), 1u);  // "busy" is left
  ASSERT_EQ(map.Advance(b), nullptr);
  EXPECT_EQ(map.SweepIdle(), 1u);  // a full sweep ignores the mark
  EXPECT_EQ(map.active_chains(), 0u);
  map.CheckInvariants();
  for (Operation* op : {a, b, c}) OpPool::Free(op);
}

// T3 (b): a token control walking from the chain's last node (its hazard pointer
// names it) keeps the runner from emptying the chain until the walk ends. The
// walker writes `walked` before it clears its hazard, so a runner that returned
// from Advance must see it. The walker waits (bounded) until the runner is
// inside Advance, past its store of head_ = nullptr (TryEmpty, T3 (a)), and
// checks the chain is not emptied yet before it lets go.
TEST(TokenMapTest, TheRunnerDoesNotEmptyAChainWhileAWalkerHoldsItsLastNode) {
  for (int round = 0; round < 20; ++round) {
    TokenMap map;
    Operation* a = NewOp(1);
    ASSERT_TRUE(map.Push(Key("walked"), a));
    Chain* c = a->chain;
    c->head_.store(a);
    c->hazard_.store(a);  // the walker's half: hazard_ = a, then head_ re-read == a
    ASSERT_EQ(c->head_.load(), a);
    std::atomic<bool> walked{false};
    bool seen = false;
    std::thread runner([&] {
      EXPECT_EQ(map.Advance(a), nullptr);
      seen = walked.load(std::memory_order_relaxed);
    });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (c->head_.load() != nullptr && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    EXPECT_EQ(c->head_.load(), nullptr) << "the runner never reached the emptying";
    for (int i = 0; i < 100; ++i) std::this_thread::yield();  // room to empty early
    EXPECT_EQ(c->tail_.load(), a) << "the chain was emptied under a walker's hazard";
    walked.store(true, std::memory_order_relaxed);
    c->WithdrawHazard();
    runner.join();
    EXPECT_TRUE(seen) << "the chain was emptied under a walker's hazard";
    EXPECT_EQ(c->head_.load(), nullptr);
    EXPECT_EQ(map.SweepIdle(), 1u);
    OpPool::Free(a);
  }
}

TEST(TokenMapTest, ASweepLeavesABusyChain) {
  TokenMap map;
  Operation* a = NewOp(1);
  Operation* b = NewOp(2);
  ASSERT_TRUE(map.Push(Key("busy"), a));
  ASSERT_TRUE(map.Push(Key("dry"), b));
  ASSERT_EQ(map.Advance(b), nullptr);
  EXPECT_EQ(map.SweepIdle(), 1u);  // "dry" only: "busy" still has a
  EXPECT_EQ(map.active_chains(), 1u);
  ASSERT_EQ(map.Advance(a), nullptr);
  EXPECT_EQ(map.SweepIdle(), 1u);
  EXPECT_EQ(map.active_chains(), 0u);
  for (Operation* op : {a, b}) OpPool::Free(op);
}

TEST(TokenMapTest, DistinctTokensGetDistinctChainsAndIntegerKeysDifferFromText) {
  TokenMap map;
  Operation* a = NewOp(1);
  Operation* b = NewOp(2);
  Operation* c = NewOp(3);
  EXPECT_TRUE(map.Push(Key("7"), a));
  EXPECT_TRUE(map.Push(Key(Token(7)), b));
  EXPECT_TRUE(map.Push(Key(Token(8)), c));
  EXPECT_NE(a->chain, b->chain);
  EXPECT_NE(b->chain, c->chain);
  EXPECT_EQ(map.active_chains(), 3u);
  for (Operation* op : {a, b, c}) EXPECT_EQ(map.Advance(op), nullptr);
  EXPECT_EQ(map.SweepIdle(), 3u);
  EXPECT_EQ(map.active_chains(), 0u);
  map.CheckInvariants();
  for (Operation* op : {a, b, c}) OpPool::Free(op);
}

TEST(TokenMapTest, IdleChainsAreBoundedWhileTokensComeAndGoAndNoneOutlivesASweep) {
  TokenMap map;
  std::size_t peak = 0;
  for (int i = 0; i < 100000; ++i) {
    Operation* op = NewOp(i + 1);
    ASSERT_TRUE(map.Push(Key("token-" + std::to_string(i)), op));
    ASSERT_EQ(map.Advance(op), nullptr);
    OpPool::Free(op);
    peak = std::max(peak, map.active_chains());
  }
  // A shard sweeps before it grows past its mark, so the idle chains kept stay
  // near kTokenShards * kShardSweepMark however many tokens went by.
  EXPECT_LE(peak, kTokenShards * kShardSweepMark + kTokenShards);
  map.CheckInvariants();
  map.SweepIdle();
  EXPECT_EQ(map.active_chains(), 0u);
  map.CheckInvariants();
}

// The race the lifetime protocol exists for: producers push onto a token while
// the runner of its chain empties it and a sweeper retires it. Whoever takes the activation
// becomes the runner and drains the chain (as a worker would). Checked: every
// push is drained exactly once, at most one runner per token at any moment, and
// each runner sees its token's operations in push order per producer.
TEST(TokenMapTest, ProducersRacingRetirementNeverLoseNorDoubleRunAChain) {
  TokenMap map;
  constexpr int kProducers = 4;
  constexpr int kPerProducer = 20000;
  constexpr int kTokens = 3;
  std::atomic<int> runners[kTokens] = {};
  std::atomic<int> overlaps{0};
  std::atomic<long> drained{0};
  // Per token and producer: the last sequence number a runner saw.
  std::vector<std::vector<long>> last_seen(kTokens, std::vector<long>(kProducers, -1));
  std::atomic<int> order_violations{0};

  auto run_chain = [&](int t, Operation* op) {
    while (op != nullptr) {
      // "Running" op: no other operation of the token may be running now.
      if (runners[t].exchange(1) != 0) overlaps.fetch_add(1);
      const std::uint64_t id = op->id_relaxed();
      const int producer = static_cast<int>(id >> 32);
      const long seq = static_cast<long>(id & 0xffffffff);
      if (seq <= last_seen[t][producer]) order_violations.fetch_add(1);
      last_seen[t][producer] = seq;  // runner-exclusive: a race would show in TSan
      drained.fetch_add(1);
      runners[t].store(0);  // op is finished; the chain may move on
      Operation* next = map.Advance(op);
      OpPool::Free(op);
      op = next;
    }
  };
  // A sweeper retires chains while producers push and runners empty them.
  std::atomic<bool> stop{false};
  std::atomic<long> sweeps{0};
  std::thread sweeper([&] {
    do {  // at least one sweep, however soon the producers finish
      map.SweepIdle();
      sweeps.fetch_add(1);
      std::this_thread::yield();
    } while (!stop.load());
  });
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (long i = 0; i < kPerProducer; ++i) {
        const int t = static_cast<int>(i % kTokens);
        Operation* op = NewOp((static_cast<std::uint64_t>(p) << 32) | static_cast<std::uint64_t>(i));
        if (map.Push(Key("hot-" + std::to_string(t)), op)) run_chain(t, op);
      }
    });
  }
  for (auto& t : producers) t.join();
  stop.store(true);
  sweeper.join();
  EXPECT_GT(sweeps.load(), 0);
  EXPECT_EQ(drained.load(), static_cast<long>(kProducers) * kPerProducer);
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(order_violations.load(), 0);
  map.SweepIdle();
  EXPECT_EQ(map.active_chains(), 0u);
  map.CheckInvariants();
}

}  // namespace
}  // namespace ordo::internal
