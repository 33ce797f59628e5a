// engine_bench.cc: Ordo's throughput on the basic workload shapes, as Google
// Benchmark cases. Each iteration submits a batch from one external producer and
// waits for the engine to be idle; setup (the engine, the token names) is untimed;
// each case checks that every submitted operation ran and skips with an error if
// not. Peers side by side come with the performance issue (bench/peers/).
#include <benchmark/benchmark.h>

#include <atomic>
#include <string>
#include <vector>

#include "ordo/engine.h"

namespace {

constexpr int kBatch = 10000;

std::vector<ordo::Token> MakeTokens(int n) {
  std::vector<ordo::Token> v;
  v.reserve(n);
  for (int i = 0; i < n; ++i) v.emplace_back("token-" + std::to_string(i));
  return v;
}

// tokens == 0: independent operations.
void RunShape(benchmark::State& state, int tokens) {
  ordo::Engine engine({.workers = static_cast<int>(state.range(0))});
  const std::vector<ordo::Token> names = MakeTokens(tokens);
  std::atomic<long> ran{0};
  long submitted = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      auto body = [&ran] { ran.fetch_add(1, std::memory_order_relaxed); };
      auto h = tokens == 0 ? engine.Submit(body)
                           : engine.Submit(body, {.token = names[i % tokens]});
      if (!h.ok()) {
        state.SkipWithError("Submit refused an operation");
        return;
      }
    }
    submitted += kBatch;
    if (!engine.WaitIdle().ok()) state.SkipWithError("WaitIdle failed");
  }
  if (ran.load() != submitted) state.SkipWithError("operations ran != operations submitted");
  state.SetItemsProcessed(submitted);
  state.counters["ns_per_op"] = benchmark::Counter(
      static_cast<double>(submitted), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// Goal: cost per independent operation, one producer, all workers.
void BM_IndependentOneProducer(benchmark::State& state) { RunShape(state, 0); }
// Goal: cost per operation over many cold tokens (10,000, uniform).
void BM_ManyColdTokens(benchmark::State& state) { RunShape(state, 10000); }
// Goal: cost per operation over four hot tokens.
void BM_HotTokens(benchmark::State& state) { RunShape(state, 4); }
// Goal: cost per operation on one token: chain hand-off only.
void BM_OneHotToken(benchmark::State& state) { RunShape(state, 1); }

BENCHMARK(BM_IndependentOneProducer)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ManyColdTokens)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HotTokens)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_OneHotToken)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
