// engine_bench.cc: Ordo's throughput on the basic workload shapes, as Google
// Benchmark cases. Each iteration submits a batch from one external producer and
// waits for the engine to be idle; setup (the engine, the token names) is untimed;
// each case checks that every submitted operation ran and skips with an error if
// not. Peers side by side come with the performance issue (bench/peers/).
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
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

// Each iteration submits kBatch operations through submit(i, body) (false:
// refused) and waits for the engine to be idle; every one must have run, else
// the case skips with an error. Sets items and ns_per_op; returns how many
// operations were submitted.
template <typename Submit>
long RunBatches(benchmark::State& state, ordo::Engine& engine, Submit submit) {
  std::atomic<long> ran{0};
  long submitted = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      if (!submit(i, [&ran] { ran.fetch_add(1, std::memory_order_relaxed); })) {
        state.SkipWithError("an operation was refused");
        return submitted;
      }
    }
    submitted += kBatch;
    if (!engine.WaitIdle().ok()) state.SkipWithError("WaitIdle failed");
  }
  if (ran.load() != submitted) state.SkipWithError("operations ran != operations submitted");
  state.SetItemsProcessed(submitted);
  state.counters["ns_per_op"] = benchmark::Counter(
      static_cast<double>(submitted), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  return submitted;
}

// tokens == 0: independent operations.
void RunShape(benchmark::State& state, int tokens) {
  ordo::Engine engine({.workers = static_cast<int>(state.range(0))});
  const std::vector<ordo::Token> names = MakeTokens(tokens);
  RunBatches(state, engine, [&](int i, auto body) {
    return (tokens == 0 ? engine.Submit(body) : engine.Submit(body, {.token = names[i % tokens]}))
        .ok();
  });
}

// Goal: cost per independent operation, one producer, all workers.
void BM_IndependentOneProducer(benchmark::State& state) { RunShape(state, 0); }
// Goal: cost per operation over many cold tokens (10,000, uniform).
void BM_ManyColdTokens(benchmark::State& state) { RunShape(state, 10000); }
// Goal: cost per operation over four hot tokens.
void BM_HotTokens(benchmark::State& state) { RunShape(state, 4); }
// Goal: cost per operation on one token: chain hand-off only.
void BM_OneHotToken(benchmark::State& state) { RunShape(state, 1); }

// Goal: the cost of the latency histograms' sampling (Options::
// latency_sample_every) per Post(f), one producer, one worker: 0 samples none,
// 128 is the default, 1 samples every operation (three clock reads and a full
// node each). Each iteration's posts are checked as RunShape's are.
void BM_PostLatencySampling(benchmark::State& state) {
  ordo::Engine engine({.workers = 1,
                       .latency_sample_every = static_cast<std::uint32_t>(state.range(0))});
  const long submitted =
      RunBatches(state, engine, [&](int, auto body) { return engine.Post(body).ok(); });
  const ordo::Stats s = engine.stats();
  // The thread's count carries over from the case before: one sample more or less.
  const std::uint64_t every = static_cast<std::uint64_t>(state.range(0));
  const std::uint64_t want = every == 0 ? 0 : static_cast<std::uint64_t>(submitted) / every;
  if (s.run_time.count + 1 < want || s.run_time.count > want + 1 ||
      (every == 0 && s.run_time.count != 0)) {
    state.SkipWithError("samples != operations / latency_sample_every");
  }
  state.counters["queue_wait_p99_us"] =
      static_cast<double>(s.queue_wait.Quantile(0.99).count()) / 1000.0;
}

BENCHMARK(BM_IndependentOneProducer)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ManyColdTokens)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HotTokens)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_OneHotToken)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PostLatencySampling)->Arg(0)->Arg(128)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
