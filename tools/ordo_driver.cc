// ordo_driver: the main job. Pushes millions of operations through an engine on
// its defaults (or the flags' settings), verifies exactly-once execution and
// per-token order, and prints throughput per workload.
//
//   ordo_driver                          # the default run: W1, W2, W3, W2z
//   ordo_driver --ops=4000000 --workers=2 --producers=2
//   ordo_driver --scaling=1,2,4,8,16     # throughput by worker count
//   ordo_driver --batch=64               # through Batch + Engine::PostBatch (W4:
//                                        # Batch::AddPostponed)
//   ordo_driver --format=json
//
// Workloads (trivial bodies unless --body_ns is set):
//   W1  independent operations
//   W2  many tokens (--tokens, uniform)
//   W3  hot tokens (--hot)
//   W2z many tokens, Zipf-skewed (s = 1.0)
//   W4  postponed burst: --burst operations postponed uniformly over 0-200 ms on the
//       system clock; reports the submit cost, lateness (start minus due) p50, p99
//       and max, and counts early starts (must be 0)
// A run whose check fails prints the failure and exits 1 instead of a number.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "ordo/engine.h"

ABSL_FLAG(long, ops, 2000000, "operations per workload (all producers together)");
ABSL_FLAG(int, workers, 0, "worker threads (0: hardware concurrency)");
ABSL_FLAG(int, producers, 1, "submitting threads");
ABSL_FLAG(int, tokens, 10000, "tokens in W2 and W2z");
ABSL_FLAG(int, hot, 4, "tokens in W3");
ABSL_FLAG(int, spin_us, -1, "Options::spin in microseconds (-1: the engine's default)");
ABSL_FLAG(int, body_ns, 0, "busy work per operation, in ns (0: trivial body)");
ABSL_FLAG(std::string, workloads, "W1,W2,W3,W2z,W4", "which workloads to run");
ABSL_FLAG(long, burst, 200000, "operations in W4's postponed burst");
ABSL_FLAG(std::string, scaling, "", "comma-separated worker counts: run each workload at each");
ABSL_FLAG(int, batch, 0, "operations per Engine::PostBatch (0: one Post each)");
ABSL_FLAG(int, repeat, 1, "runs per configuration (the median is reported)");
ABSL_FLAG(std::string, format, "text", "text or json");

namespace {

using Clock = std::chrono::steady_clock;

void BusyFor(int ns) {
  if (ns <= 0) return;
  const auto until = Clock::now() + std::chrono::nanoseconds(ns);
  while (Clock::now() < until) {
  }
}

ordo::Options EngineOptions(int workers) {
  ordo::Options o{.workers = workers};
  if (absl::GetFlag(FLAGS_spin_us) >= 0) o.spin = std::chrono::microseconds(absl::GetFlag(FLAGS_spin_us));
  return o;
}

struct Result {
  std::string workload;
  // W4 only: lateness percentiles in microseconds, and early starts.
  double late_p50_us = 0, late_p99_us = 0, late_max_us = 0;
  long early = 0;
  int workers = 0;
  int producers = 0;
  long ops = 0;
  double seconds = 0;
  bool ok = true;
  std::string failure;
  ordo::Stats stats;
  double ns_per_op() const { return seconds * 1e9 / static_cast<double>(ops); }
  double ops_per_sec() const { return static_cast<double>(ops) / seconds; }
};

// Token choice per workload. -1: independent.
class TokenPicker {
 public:
  TokenPicker(const std::string& w, int tokens, int hot, std::uint64_t seed) : rng_(seed) {
    if (w == "W1") {
      n_ = 0;
    } else if (w == "W3") {
      n_ = hot;
    } else {
      n_ = tokens;
      if (w == "W2z") {
        // Zipf(s = 1): cumulative weights 1/k.
        cdf_.resize(n_);
        double sum = 0;
        for (int k = 0; k < n_; ++k) cdf_[k] = (sum += 1.0 / (k + 1));
        for (double& c : cdf_) c /= sum;
      }
    }
  }
  int count() const { return n_; }
  int Next() {
    if (n_ == 0) return -1;
    if (cdf_.empty()) return static_cast<int>(rng_() % n_);
    const double u = std::uniform_real_distribution<double>(0, 1)(rng_);
    return static_cast<int>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
  }

 private:
  std::mt19937_64 rng_;
  int n_ = 0;
  std::vector<double> cdf_;
};

// --batch: operations per PostBatch (0: one Post each).
std::size_t BatchSize() {
  return static_cast<std::size_t>(std::max(0, absl::GetFlag(FLAGS_batch)));
}

// Posts `batch`; if it is refused, drops it and returns how many it held.
long PostOrDrop(ordo::Engine& engine, ordo::Batch& batch) {
  const long n = static_cast<long>(batch.size());
  if (engine.PostBatch(batch).ok()) return 0;
  batch.Clear();
  return n;
}

Result RunWorkload(const std::string& w, int workers, int producers, long ops) {
  Result r;
  r.workload = w;
  r.producers = producers;
  r.ops = ops;
  const int tokens = absl::GetFlag(FLAGS_tokens);
  const int hot = absl::GetFlag(FLAGS_hot);
  const int body_ns = absl::GetFlag(FLAGS_body_ns);
  const long per_producer = ops / producers;
  r.ops = per_producer * producers;
  // The oracle: how often each operation ran; per token, whether one of its
  // bodies is running (a body that finds one running overlaps it: the token ran
  // on two threads at once), and per token and producer the last sequence number
  // seen (written inside the token's serialized bodies).
  std::vector<std::atomic<std::uint8_t>> runs(r.ops);
  const int ntok = TokenPicker(w, tokens, hot, 0).count();
  std::vector<std::vector<long>> last(std::max(ntok, 1), std::vector<long>(producers, -1));
  std::vector<std::atomic<bool>> running(std::max(ntok, 1));
  std::atomic<long> reorders{0}, overlaps{0};
  struct Oracle {
    std::vector<std::atomic<std::uint8_t>>& runs;
    std::vector<std::vector<long>>& last;
    std::vector<std::atomic<bool>>& running;
    std::atomic<long>& reorders;
    std::atomic<long>& overlaps;
    long per_producer;
    int body_ns;
    void Ran(std::uint32_t id, int t) {
      runs[id].fetch_add(1, std::memory_order_relaxed);
      // Relaxed: the engine must order a token's bodies; one that does not is
      // caught whichever value the exchange reads. An overlapping body leaves
      // last[t] to the one already running.
      const bool alone = t < 0 || !running[t].exchange(true, std::memory_order_relaxed);
      if (!alone) overlaps.fetch_add(1, std::memory_order_relaxed);
      if (t >= 0 && alone) {
        const long p = id / per_producer, i = id % per_producer;
        long& seen = last[t][p];
        if (seen >= i) reorders.fetch_add(1, std::memory_order_relaxed);
        seen = i;
      }
      BusyFor(body_ns);
      if (t >= 0 && alone) running[t].store(false, std::memory_order_relaxed);
    }
  } oracle{runs, last, running, reorders, overlaps, per_producer, body_ns};
  std::vector<ordo::Token> names;
  names.reserve(ntok);
  for (int t = 0; t < ntok; ++t) names.emplace_back("token-" + std::to_string(t));

  ordo::Engine engine(EngineOptions(workers));
  r.workers = engine.workers();
  std::atomic<bool> go{false};
  // Producers that have built their plans: the clock starts once all have, so
  // the timed run is the submissions alone (it once included every plan's
  // allocation and token draws: for W2z a Zipf draw per operation).
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  std::atomic<long> refused{0};
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      TokenPicker picker(w, tokens, hot, 1000 + p);
      std::vector<int> plan(per_producer);
      for (long i = 0; i < per_producer; ++i) plan[i] = picker.Next();
      const std::size_t batch_size = BatchSize();
      ordo::Batch batch(engine);
      batch.Reserve(batch_size);
      auto post_batch = [&] { refused.fetch_add(PostOrDrop(engine, batch)); };
      // Release: the main thread acquires it before it starts the clock.
      ready.fetch_add(1, std::memory_order_release);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      for (long i = 0; i < per_producer; ++i) {
        const long id = p * per_producer + i;
        const int t = plan[i];
        // A small capture (16 bytes): the callable lives inside the node.
        auto body = [&oracle, id = static_cast<std::uint32_t>(id), t] {
          oracle.Ran(id, t);
        };
        if (batch_size > 0) {
          static const ordo::Token kNone{};
          if (!batch.Add(std::move(body), t < 0 ? kNone : names[t]).ok()) refused.fetch_add(1);
          if (batch.size() >= batch_size) post_batch();
          continue;
        }
        // Post: nothing here reads a Handle, so none is made.
        const absl::Status s = t < 0 ? engine.Post(std::move(body))
                                     : engine.Post(std::move(body), {.token = names[t]});
        if (!s.ok()) refused.fetch_add(1);
      }
      if (!batch.empty()) post_batch();
    });
  }
  // Acquire: pairs with each producer's release once its plan is built.
  while (ready.load(std::memory_order_acquire) < producers) std::this_thread::yield();
  const auto start = Clock::now();
  go.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();
  (void)engine.WaitIdle();
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.stats = engine.stats();
  long lost = 0, dup = 0;
  for (auto& c : runs) {
    const int v = c.load(std::memory_order_relaxed);
    lost += v == 0;
    dup += v > 1;
  }
  if (refused.load() || lost || dup || reorders.load() || overlaps.load() ||
      r.stats.pending != 0) {
    r.ok = false;
    r.failure =
        absl::StrFormat("refused=%d lost=%d duplicated=%d reordered=%d overlapped=%d pending=%d",
                        refused.load(), lost, dup, reorders.load(), overlaps.load(),
                        r.stats.pending);
  }
  return r;
}

Result RunBurst(int workers, long n) {
  Result r;
  r.workload = "W4";
  r.producers = 1;
  r.ops = n;
  ordo::Engine engine(EngineOptions(workers));
  r.workers = engine.workers();
  {
    // Warm-up burst (untimed): node pools and the wheel reach their working size,
    // so the measured burst shows the steady state, not first-touch page faults.
    const auto soon = ordo::Clock::now() + std::chrono::milliseconds(1);
    std::vector<ordo::Handle> warm;
    warm.reserve(n);
    for (long i = 0; i < n; ++i) {
      auto h = engine.Submit([] {}, {.postpone_until = soon + std::chrono::microseconds(i % 1000)});
      if (h.ok()) warm.push_back(*std::move(h));
    }
    for (auto& h : warm) h.Wait();
  }
  std::vector<ordo::Clock::time_point> due(n);
  std::vector<std::atomic<std::int64_t>> started(n);
  std::mt19937_64 rng(7);
  const auto base = ordo::Clock::now() + std::chrono::milliseconds(5);
  for (long i = 0; i < n; ++i) {
    due[i] = base + std::chrono::microseconds(rng() % 200000);
  }
  long refused = 0;
  std::atomic<long> dup{0};  // bodies that ran twice
  // --batch: the burst through Batch::AddPostponed, in groups of that many.
  const std::size_t batch_size = BatchSize();
  ordo::Batch batch(engine);
  batch.Reserve(batch_size);
  auto post_batch = [&] { refused += PostOrDrop(engine, batch); };
  const auto start = Clock::now();
  for (long i = 0; i < n; ++i) {
    // Exchange: a second run finds the first one's stamp and is counted. Relaxed:
    // both are read only after the engine is idle (WaitIdle's happens-before).
    auto body = [&started, &dup, i] {
      if (started[i].exchange(ordo::Clock::now().time_since_epoch().count(),
                              std::memory_order_relaxed) != 0) {
        dup.fetch_add(1, std::memory_order_relaxed);
      }
    };
    if (batch_size > 0) {
      if (!batch.AddPostponed(body, due[i]).ok()) ++refused;
      if (batch.size() >= batch_size) post_batch();
      continue;
    }
    if (!engine.Post(body, {.postpone_until = due[i]}).ok()) ++refused;
  }
  if (!batch.empty()) post_batch();
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();  // submit cost
  // Wait for the burst to come due and run (it ends within ~205 ms of base).
  for (;;) {
    (void)engine.WaitIdle();
    if (engine.stats().pending == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // driver pacing, not a test
  }
  r.stats = engine.stats();
  std::vector<double> late(n);
  long lost = 0;
  for (long i = 0; i < n; ++i) {
    const std::int64_t s = started[i].load(std::memory_order_relaxed);
    if (s == 0) {
      ++lost;
      continue;
    }
    const double l = static_cast<double>(s - due[i].time_since_epoch().count()) / 1000.0;
    if (l < 0) ++r.early;
    late[i] = l;
  }
  std::sort(late.begin(), late.end());
  // Nearest rank: the value at rank ceil(q n), index ceil(q n) - 1.
  auto quantile = [&late, n](long percent) {
    const long rank = (n * percent + 99) / 100;
    return late[static_cast<std::size_t>(std::clamp(rank - 1, 0L, n - 1))];
  };
  r.late_p50_us = quantile(50);
  r.late_p99_us = quantile(99);
  r.late_max_us = late.back();
  if (refused || lost || r.early || dup.load()) {
    r.ok = false;
    r.failure = absl::StrFormat("refused=%d lost=%d duplicated=%d early=%d", refused, lost,
                                dup.load(), r.early);
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Ordo's stress and throughput driver; see the file header.");
  absl::ParseCommandLine(argc, argv);
  const bool json = absl::GetFlag(FLAGS_format) == "json";
  std::vector<int> worker_counts;
  if (absl::GetFlag(FLAGS_scaling).empty()) {
    worker_counts.push_back(absl::GetFlag(FLAGS_workers));
  } else {
    for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_scaling), ',')) {
      worker_counts.push_back(std::stoi(std::string(s)));
    }
  }
  const int repeat = std::max(1, absl::GetFlag(FLAGS_repeat));
  bool all_ok = true;
  if (json) std::printf("[\n");
  else
    std::printf("%-5s %8s %9s %10s %10s %12s %8s %8s  %s\n", "load", "workers", "producers",
                "ops", "ns/op", "ops/s", "steals", "parks", "check");
  bool first = true;
  for (int wc : worker_counts) {
    for (absl::string_view wl : absl::StrSplit(absl::GetFlag(FLAGS_workloads), ',')) {
      std::vector<Result> runs;
      for (int k = 0; k < repeat; ++k) {
        if (wl == "W4") {
          runs.push_back(RunBurst(wc, absl::GetFlag(FLAGS_burst)));
        } else {
          runs.push_back(RunWorkload(std::string(wl), wc, absl::GetFlag(FLAGS_producers),
                                     absl::GetFlag(FLAGS_ops)));
        }
      }
      std::sort(runs.begin(), runs.end(),
                [](const Result& a, const Result& b) { return a.seconds < b.seconds; });
      const Result& r = runs[runs.size() / 2];
      bool ok = true;
      std::string failure;
      for (const Result& x : runs) {
        if (!x.ok) {
          ok = false;
          failure = x.failure;
        }
      }
      all_ok &= ok;
      if (json) {
        // A failed run reports its error, not a number: every figure is null.
        auto fig = [ok](const char* format, double v) -> std::string {
          if (!ok) return "null";
          char text[64];
          std::snprintf(text, sizeof text, format, v);
          return text;
        };
        std::printf(
            "%s  {\"workload\": \"%s\", \"workers\": %d, \"producers\": %d, \"ops\": %ld, "
            "\"ns_per_op\": %s, \"ops_per_sec\": %s, \"min_ns_per_op\": %s, "
            "\"max_ns_per_op\": %s, \"steals\": %s, \"parks\": %s, "
            "\"late_p50_us\": %s, \"late_p99_us\": %s, \"late_max_us\": %s, "
            "\"ok\": %s%s}",
            first ? "" : ",\n", r.workload.c_str(), r.workers, r.producers, r.ops,
            fig("%.2f", r.ns_per_op()).c_str(), fig("%.0f", r.ops_per_sec()).c_str(),
            fig("%.2f", runs.front().ns_per_op()).c_str(),
            fig("%.2f", runs.back().ns_per_op()).c_str(),
            fig("%.0f", static_cast<double>(r.stats.steals)).c_str(),
            fig("%.0f", static_cast<double>(r.stats.parks)).c_str(),
            fig("%.1f", r.late_p50_us).c_str(), fig("%.1f", r.late_p99_us).c_str(),
            fig("%.1f", r.late_max_us).c_str(), ok ? "true" : "false",
            ok ? "" : (", \"failure\": \"" + failure + "\"").c_str());
      } else if (ok) {
        std::printf("%-5s %8d %9d %10ld %10.1f %12.0f %8llu %8llu  ok", r.workload.c_str(),
                    r.workers, r.producers, r.ops, r.ns_per_op(), r.ops_per_sec(),
                    static_cast<unsigned long long>(r.stats.steals),
                    static_cast<unsigned long long>(r.stats.parks));
        if (r.workload == "W4") {
          // The engine's own view, from Stats' sampled histogram, beside the
          // driver's measurement of every operation (the same run). An operation
          // already due when its submit began is runnable at once: the engine
          // counts its wait in queue_wait, not as lateness, so this is the timer's.
          std::printf("  (ns/op = submit cost; of the run with the median submit cost: "
                      "lateness p50 %.0f us, p99 %.0f us, max %.0f us, 0 early; the engine's sampled Stats::lateness, which leaves out what "
                      "was due before its submit: p50 %.0f us, p99 %.0f us of %llu)",
                      r.late_p50_us, r.late_p99_us, r.late_max_us,
                      static_cast<double>(r.stats.lateness.Quantile(0.5).count()) / 1000.0,
                      static_cast<double>(r.stats.lateness.Quantile(0.99).count()) / 1000.0,
                      static_cast<unsigned long long>(r.stats.lateness.count));
        }
        std::printf("\n");
      } else {
        std::printf("%-5s %8d %9d %10ld %10s %12s %8s %8s  FAILED: %s\n", r.workload.c_str(),
                    r.workers, r.producers, r.ops, "-", "-", "-", "-", failure.c_str());
      }
      first = false;
      std::fflush(stdout);
    }
  }
  if (json) std::printf("\n]\n");
  return all_ok ? 0 : 1;
}
