// parts_bench.cc: each lock-free part of Ordo on its own, single-threaded unless
// stated, so a regression can be traced to a part. Setup is untimed; each case
// checks its own result and skips with an error if it is wrong.
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "chain.h"
#include "op_pool.h"
#include "token_map.h"
#include "work_deque.h"

namespace ordo::internal {
namespace {

// Goal: cost of one push onto an active chain plus the runner's hand-off to it.
void BM_ChainPushAndHandOff(benchmark::State& state) {
  TokenMap map;
  Token token("hot");
  char scratch[8];
  const TokenKey key = MakeTokenKey(token, scratch);
  Operation* head = OpPool::Allocate();
  if (!map.Push(key, head)) state.SkipWithError("first push did not activate");
  for (auto _ : state) {
    Operation* next = OpPool::Allocate();
    if (map.Push(key, next)) state.SkipWithError("an active chain activated again");
    Operation* got = map.Advance(head);  // runner hands off to next
    if (got != next) state.SkipWithError("hand-off returned the wrong node");
    OpPool::Free(head);
    head = next;
  }
  if (map.Advance(head) != nullptr) state.SkipWithError("chain did not empty");
  OpPool::Free(head);
}
BENCHMARK(BM_ChainPushAndHandOff);

// Goal: cost of a token's whole life: lookup miss, chain create, push, retire.
// Pushes then empties over 4,096 cold tokens. range(0) == 1: a sweep every 256
// operations retires the idle chains, so every push creates its token's chain
// under the shard lock and every chain is retired (the sweep's cost is included,
// amortised); range(0) == 0: no sweeps, so after the first round each push finds
// its token's emptied chain in the hint slot (the lazy-retirement fast path).
void BM_TokenCreateAndRetire(benchmark::State& state) {
  const bool sweep = state.range(0) != 0;
  TokenMap map;
  std::vector<Token> tokens;
  for (int i = 0; i < 4096; ++i) tokens.emplace_back("cold-" + std::to_string(i));
  std::size_t i = 0;
  for (auto _ : state) {
    char scratch[8];
    const TokenKey key = MakeTokenKey(tokens[i++ & 4095], scratch);
    Operation* op = OpPool::Allocate();
    if (!map.Push(key, op)) state.SkipWithError("an idle token's chain was not idle");
    if (map.Advance(op) != nullptr) state.SkipWithError("chain did not empty");
    OpPool::Free(op);
    if (sweep && (i & 255) == 0) map.SweepIdle();
  }
  map.SweepIdle();
  if (map.active_chains() != 0) state.SkipWithError("chains left behind");
}
BENCHMARK(BM_TokenCreateAndRetire)->ArgName("sweep")->Arg(1)->Arg(0);

// Goal: how long a parking worker is away sweeping, with range(0) tokens whose
// chains have just run dry (each marked recent, as in a busy engine). range(1)
// == 0: the whole round at once (SweepIdle, what SweepBeforePark did until it
// went a shard at a time); 1: one step of SweepIdleStep when work is waiting,
// which stops after its first shard. Here the chains are warm in this core's
// cache, a worker's sweep finds them in the other workers' caches, and pays
// more; and the timer's pause and resume around each call are part of the
// figure (most of it, for one step).
void BM_ParkingSweepPause(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  const bool step = state.range(1) != 0;
  TokenMap map;
  std::vector<Token> tokens;
  tokens.reserve(n);
  for (std::size_t t = 0; t < n; ++t) tokens.emplace_back("idle-" + std::to_string(t));
  for (auto _ : state) {
    state.PauseTiming();
    for (std::size_t t = 0; t < n; ++t) {  // every chain idle, and emptied since the last round
      char scratch[8];
      Operation* op = OpPool::Allocate();
      if (!map.Push(MakeTokenKey(tokens[t], scratch), op) || map.Advance(op) != nullptr) {
        state.SkipWithError("an idle token's chain did not run dry at once");
      }
      OpPool::Free(op);
    }
    std::size_t spared = 0;
    state.ResumeTiming();
    if (step) {
      if (map.SweepIdleStep([] { return true; }, &spared)) state.SkipWithError("one step ended a round");
    } else {
      map.SweepIdle(/*spare_recent=*/true, &spared);
    }
    state.PauseTiming();
    if (spared == 0 || (!step && spared != n)) state.SkipWithError("the sweep spared the wrong chains");
    while (!map.SweepIdleStep([] { return false; }, &spared)) {
    }
    map.SweepIdle();  // a full sweep retires what the round spared
    if (map.active_chains() != 0) state.SkipWithError("chains left behind");
    state.ResumeTiming();
  }
}
BENCHMARK(BM_ParkingSweepPause)->ArgNames({"tokens", "step"})->Args({1000, 0})->Args({1000, 1})->Args({10000, 0})->Args({10000, 1});

// Goal: cost of a lookup that hits an existing active chain, plus the push onto it,
// over range(0) warm tokens taken round-robin (4,096 mostly fit the hint slots;
// 65,536 mostly miss them and take the shard map). The runner's hand-off follows
// each push so every chain stays one node deep; BM_ChainPushAndHandOff is the same
// with one hot token, so the difference is the lookup.
void BM_ChainLookupHitAndPush(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  TokenMap map;
  std::vector<Token> tokens;
  std::vector<Operation*> heads(n);
  tokens.reserve(n);
  for (std::size_t t = 0; t < n; ++t) tokens.emplace_back("warm-" + std::to_string(t));
  for (std::size_t t = 0; t < n; ++t) {  // untimed: every token gets an active chain
    char scratch[8];
    heads[t] = OpPool::Allocate();
    if (!map.Push(MakeTokenKey(tokens[t], scratch), heads[t])) {
      state.SkipWithError("a warm token's first push did not activate");
      return;
    }
  }
  std::size_t i = 0;
  for (auto _ : state) {
    const std::size_t t = i++ % n;
    char scratch[8];
    const TokenKey key = MakeTokenKey(tokens[t], scratch);
    Operation* next = OpPool::Allocate();
    if (map.Push(key, next)) state.SkipWithError("an active chain activated again (lookup missed)");
    if (map.Advance(heads[t]) != next) state.SkipWithError("hand-off returned the wrong node");
    OpPool::Free(heads[t]);
    heads[t] = next;
  }
  // Whether an emptied chain is retired at once or by a later sweep is the
  // token map's business, not this case's: only the emptying is checked.
  for (std::size_t t = 0; t < n; ++t) {
    if (map.Advance(heads[t]) != nullptr) state.SkipWithError("chain did not empty");
    OpPool::Free(heads[t]);
  }
}
BENCHMARK(BM_ChainLookupHitAndPush)->Arg(4096)->Arg(65536);

// Goal: owner push + pop on a worker's deque.
void BM_DequePushPop(benchmark::State& state) {
  WorkDeque d;
  Operation op;
  for (auto _ : state) {
    if (!d.Push(&op)) state.SkipWithError("push failed");
    if (d.Pop() != &op) state.SkipWithError("pop returned the wrong node");
  }
}
BENCHMARK(BM_DequePushPop);

// Goal: a thief stealing half of a full deque, per operation moved.
void BM_DequeStealHalf(benchmark::State& state) {
  WorkDeque d;
  Operation op;
  Operation* got[WorkDeque::kCapacity];
  std::int64_t moved = 0;
  for (auto _ : state) {
    state.PauseTiming();
    while (d.Push(&op)) {
    }
    state.ResumeTiming();
    const std::size_t n = d.Steal(got, WorkDeque::kCapacity);
    if (n != WorkDeque::kCapacity / 2) state.SkipWithError("did not steal half");
    moved += static_cast<std::int64_t>(n);
    state.PauseTiming();
    while (d.Pop() != nullptr) {
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(moved);
}
BENCHMARK(BM_DequeStealHalf);

// Goal: node allocate + free from the thread-local pool.
void BM_NodePoolAllocateFree(benchmark::State& state) {
  for (auto _ : state) {
    Operation* op = OpPool::Allocate();
    benchmark::DoNotOptimize(op);
    OpPool::Free(op);
  }
}
BENCHMARK(BM_NodePoolAllocateFree);

// Goal: nodes made on one thread and freed on another travel back through the
// depot: cost per node of the round trip.
void BM_NodePoolCrossThread(benchmark::State& state) {
  constexpr int kBatch = 4096;
  std::vector<Operation*> nodes(kBatch);
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) nodes[i] = OpPool::Allocate();
    std::thread consumer([&] {
      for (Operation* op : nodes) OpPool::Free(op);
    });
    consumer.join();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_NodePoolCrossThread)->UseRealTime();

}  // namespace
}  // namespace ordo::internal

BENCHMARK_MAIN();
