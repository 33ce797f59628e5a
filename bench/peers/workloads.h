// bench/peers/workloads.h: what ordo_compare does to one peer, per workload: the
// plans, the measuring helpers, and one template per workload that builds the peer,
// warms it (untimed), measures, and checks the oracle. compare.cc picks the
// workloads, runs them over every peer, and prints the tables.
//
// A peer (bench/peers/<name>.h) offers, besides kName and Supports(Feature, tokens):
//   Prepare(plan), Produce(plan, producer, oracle), Fan(plan, oracle),
//   Finish(plan, oracle), Settle()          the throughput workloads
//   Post(f), PostToken(t, f)                closures, for W5, idle and memory
//   DueClock, PostAt(due, f)                postponed closures, for W4 and memory
// A peer without Post/PostAt (limit; tbb has no PostAt) is never asked for them:
// Supports says why, and the templates below are not instantiated for it.
#ifndef ORDO_BENCH_PEERS_WORKLOADS_H_
#define ORDO_BENCH_PEERS_WORKLOADS_H_

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "peers/common.h"

namespace ordo_compare {

using SteadyClock = std::chrono::steady_clock;

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// W4: every operation is due at the burst's start + kBurstLead + uniform [0, kBurstSpread).
inline constexpr std::chrono::milliseconds kBurstLead{5};
inline constexpr std::chrono::milliseconds kBurstSpread{200};
// The memory probes' capture size.
inline constexpr int kCaptureBytes = 32;

// ---------------------------------------------------------------------------
// Plans.

enum class Dist { kUniform, kZipf };

// Operation i of producer p gets one of the tokens p owns (t % producers == p), so
// with one producer: any of the ntokens. ntokens == 0: independent.
inline Plan MakePlan(int ntokens, long ops, std::uint64_t seed, Dist dist = Dist::kUniform,
                     int producers = 1) {
  Plan plan;
  plan.producers = producers;
  plan.names.reserve(ntokens);
  for (int t = 0; t < ntokens; ++t) plan.names.push_back("token-" + std::to_string(t));
  plan.token.resize(ops);
  std::mt19937_64 rng(seed);
  for (int p = 0; p < producers; ++p) {
    const int owned = ntokens == 0 ? 0 : (ntokens - p + producers - 1) / producers;
    std::vector<double> cdf;
    if (dist == Dist::kZipf && owned > 0) {
      // Zipf (s = 1): cumulative weights 1/k, as tools/ordo_driver.cc.
      cdf.resize(owned);
      double sum = 0;
      for (int k = 0; k < owned; ++k) cdf[k] = (sum += 1.0 / (k + 1));
      for (double& c : cdf) c /= sum;
    }
    for (long i = plan.begin(p); i < plan.end(p); ++i) {
      if (owned == 0) {
        plan.token[i] = -1;
        continue;
      }
      int k;
      if (cdf.empty()) {
        k = static_cast<int>(rng() % owned);
      } else {
        const double u = std::uniform_real_distribution<double>(0, 1)(rng);
        k = static_cast<int>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
        k = std::min(k, owned - 1);
      }
      plan.token[i] = p + k * producers;
    }
  }
  return plan;
}

inline Plan MakeFanPlan(long ops, int fan) {
  Plan plan;
  plan.fan = fan;
  plan.token.assign(std::max<long>(fan, ops / fan * fan), -1);
  return plan;
}

// ---------------------------------------------------------------------------
// Measuring.

inline double CpuSeconds(int who) {
  rusage ru{};
  getrusage(who, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

// Heap in use: small chunks plus mmapped ones, over every malloc arena.
inline double HeapBytes() {
  const struct mallinfo2 mi = mallinfo2();
  return static_cast<double>(mi.uordblks) + static_cast<double>(mi.hblkhd);
}

// Peak resident set of this process image in KiB (VmHWM). Unlike ru_maxrss it
// starts afresh at exec, so a probe child does not inherit its parent's peak.
inline double PeakRssKib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr);
  }
  return kNaN;
}

inline double RssBytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

inline std::int64_t NowNs(SteadyClock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// q-quantile of sorted values (nearest rank).
// The smallest value with at least q of them at or below it: rank ceil(q n),
// index ceil(q n) - 1 (floor(q n) read one rank high whenever q n is whole, as
// it is for every default size).
inline double Quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return kNaN;
  const double rank = std::ceil(q * static_cast<double>(sorted.size()));
  const std::size_t k =
      rank < 1 ? 0 : std::min(sorted.size() - 1, static_cast<std::size_t>(rank) - 1);
  return sorted[k];
}

inline double Median(std::vector<double> v) {
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Every worker blocked in one gate job, so what is submitted next stays pending.
struct Gate {
  std::mutex m;
  std::condition_variable cv;
  bool open = false;
  int entered = 0;
  void Enter() {
    std::unique_lock<std::mutex> l(m);
    ++entered;
    cv.notify_all();
    cv.wait(l, [&] { return open; });
  }
  bool AwaitEntered(int n, SteadyClock::duration timeout) {
    std::unique_lock<std::mutex> l(m);
    return cv.wait_for(l, timeout, [&] { return entered >= n; });
  }
  void Open() {
    std::lock_guard<std::mutex> l(m);
    open = true;
    cv.notify_all();
  }
};

// The memory probes' body: 32 bytes of capture, as the issue asks.
struct Body32 {
  Oracle* o;
  std::uint32_t id;
  std::int32_t t;
  std::array<char, 16> pad;
  void operator()() const { o->Ran(id, t); }
};
static_assert(sizeof(Body32) == kCaptureBytes);

// Closures onto a peer: with a token if the peer has PostToken, at a due time if it
// has PostAt. A peer without them is never asked (Supports says why).
struct NoOp {
  void operator()() const {}
};
template <typename Peer>
concept HasPost = requires(Peer& p) {
  p.Post(NoOp{});
};
template <typename Peer>
concept HasPostToken = requires(Peer& p) {
  p.PostToken(0, NoOp{});
};
// Two steps, so a peer without DueClock is a plain "no" (the conjunction stops there).
template <typename Peer>
concept HasDueClock = requires {
  typename Peer::DueClock::time_point;
};
template <typename Peer>
concept HasPostAt = HasDueClock<Peer> && requires(Peer& p, typename Peer::DueClock::time_point tp) {
  p.PostAt(tp, NoOp{});
};
// A group of postponed operations submitted at once (W4-batch): the peer posts
// and empties `group`, and returns false if it refused them.
template <typename Peer>
concept HasPostAtBatch =
    HasDueClock<Peer> &&
    requires(Peer& p, std::vector<std::pair<typename Peer::DueClock::time_point, NoOp>>& group) {
      { p.PostAtBatch(group) } -> std::same_as<bool>;
    };
template <typename Peer>
inline constexpr bool kHasPost = HasPost<Peer>;
template <typename Peer>
inline constexpr bool kHasPostAt = HasPostAt<Peer>;

template <typename Peer, typename F>
bool PostTo(Peer& peer, int t, F&& f) {
  if constexpr (HasPostToken<Peer>) {
    if (t >= 0) return peer.PostToken(t, std::forward<F>(f));
  }
  if (t >= 0) return false;
  return peer.Post(std::forward<F>(f));
}

// ---------------------------------------------------------------------------
// Throughput: W1, W2, W3, W2z, -1us, W1-fan, scaling.

struct Sample {
  double ns_per_op = 0;
  std::string failure;  // empty: the run was correct
};

// Submits the plan (from plan.producers threads) and waits until all of it ran.
template <typename Peer>
std::string RunPlan(Peer& peer, const Plan& plan, Oracle& oracle, double* seconds) {
  std::string failure;
  SteadyClock::time_point start, end;
  if (plan.producers == 1) {
    start = SteadyClock::now();
    failure = plan.fan > 0 ? peer.Fan(plan, oracle) : peer.Produce(plan, 0, oracle);
    if (failure.empty()) failure = peer.Finish(plan, oracle);
    end = SteadyClock::now();
  } else {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::string> failures(plan.producers);
    std::vector<std::thread> producers;
    for (int p = 0; p < plan.producers; ++p) {
      producers.emplace_back([&, p] {
        ready.fetch_add(1);
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
        failures[p] = peer.Produce(plan, p, oracle);
      });
    }
    while (ready.load() < plan.producers) std::this_thread::yield();
    start = SteadyClock::now();
    go.store(true, std::memory_order_release);
    for (std::thread& t : producers) t.join();
    for (const std::string& f : failures) {
      if (!f.empty()) failure = f;
    }
    if (failure.empty()) failure = peer.Finish(plan, oracle);
    end = SteadyClock::now();
  }
  *seconds = std::chrono::duration<double>(end - start).count();
  return failure;
}

// One repetition for one engine: build, warm up (untimed), time one run, check.
template <typename Peer>
Sample RunThroughput(int workers, const Plan& warm, const Plan& plan, Oracle& oracle, int body_ns) {
  Sample s;
  // Destroyed before the timed run's check: its threads joined, a body that ran
  // a second time late is in the log when Check counts it.
  std::optional<Peer> held(std::in_place, workers);
  Peer& peer = *held;
  double seconds = 0;
  peer.Prepare(warm);
  oracle.Reset(warm.ops(), static_cast<int>(warm.names.size()), body_ns);
  s.failure = RunPlan(peer, warm, oracle, &seconds);
  peer.Settle();
  if (s.failure.empty()) s.failure = oracle.Check();
  if (!s.failure.empty()) {
    s.failure = "warm-up: " + s.failure;
    return s;
  }
  peer.Prepare(plan);
  oracle.Reset(plan.ops(), static_cast<int>(plan.names.size()), body_ns);
  s.failure = RunPlan(peer, plan, oracle, &seconds);
  peer.Settle();
  held.reset();
  if (s.failure.empty()) s.failure = oracle.Check();
  s.ns_per_op = seconds * 1e9 / static_cast<double>(plan.ops());
  return s;
}

// ---------------------------------------------------------------------------
// W4: postponed burst.

struct BurstSample {
  double insert_ns = 0, p50_us = 0, p99_us = 0, max_us = 0;
  // Lateness of the operations due after the submission ended (on the peer's
  // clock): the timer's own, with the producer out of the way.
  double after_p99_us = 0, after_max_us = 0;
  long early = 0, due_at_submit = 0;
  std::string failure;
};

// relative (W4-rel): each operation is due at its own submission + uniform
// [0, kBurstSpread), the submission's time read once per kRelStampEvery submits
// (a due time at most that many inserts early); otherwise (W4) at the burst's
// start + kBurstLead + the same offsets.
inline constexpr long kRelStampEvery = 16;

template <typename Peer>
BurstSample RunBurst(int workers, long n, std::uint64_t seed, Oracle& oracle, int batch,
                     bool relative) {
  using C = typename Peer::DueClock;
  auto ns_of = [](typename C::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  };
  BurstSample s;
  std::optional<Peer> held(std::in_place, workers);  // destroyed before the check
  Peer& peer = *held;
  long refused = 0;
  {
    // Warm-up (untimed): the same count, all due together 300 ms out (after the
    // whole warm-up was submitted, at up to 1.5 us per op), so every peer's queues
    // and pools grow to the size the measured burst needs (all pending at once)
    // before it is timed: the timed inserts then measure the engine, not page faults.
    oracle.Reset(n, 0);
    const auto soon = C::now() + std::chrono::milliseconds(300);
    for (long i = 0; i < n; ++i) {
      if (!peer.PostAt(soon + std::chrono::microseconds(i % 1000),
                       [o = &oracle, id = static_cast<std::uint32_t>(i)] { o->Ran(id, -1); })) {
        ++refused;
      }
    }
    if (refused != 0) s.failure = "warm-up refused=" + std::to_string(refused);
    if (s.failure.empty() && !oracle.WaitDone()) s.failure = "warm-up: timed out";
    if (s.failure.empty()) s.failure = oracle.Check();
    if (!s.failure.empty()) return s;
  }
  std::mt19937_64 rng(seed);
  std::vector<std::int64_t> offset(n);
  for (long i = 0; i < n; ++i) {
    offset[i] = static_cast<std::int64_t>(
        rng() % static_cast<std::uint64_t>(std::chrono::nanoseconds(kBurstSpread).count()));
  }
  constexpr long kStampEvery = 1024;  // a clock read per 1,024 submits: negligible
  static_assert(kStampEvery % kRelStampEvery == 0, "the stamps share W4-rel's clock reads");
  std::vector<typename C::time_point> due(n);
  std::vector<typename C::time_point> stamp((n + kStampEvery - 1) / kStampEvery);
  auto started = std::make_unique<std::atomic<std::int64_t>[]>(n);  // zero: not started
  struct Rec {
    Oracle* o;
    std::atomic<std::int64_t>* started;
  } rec{&oracle, started.get()};
  oracle.Reset(n, 0);
  auto offset_of = [&offset](long i) {
    return std::chrono::duration_cast<typename C::duration>(std::chrono::nanoseconds(offset[i]));
  };
  if (!relative) {
    const auto base = C::now() + kBurstLead;
    for (long i = 0; i < n; ++i) due[i] = base + offset_of(i);
  }
  auto body_of = [r = &rec](long i) {
    return [r, id = static_cast<std::uint32_t>(i)] {
      r->started[id].store(
          std::chrono::duration_cast<std::chrono::nanoseconds>(C::now().time_since_epoch()).count(),
          std::memory_order_relaxed);
      r->o->Ran(id, -1);
    };
  };
  // W4-batch: groups of `batch`, gathered and posted inside the timed loop (the
  // group's vector keeps its capacity: no allocation of ours per operation).
  std::vector<std::pair<typename C::time_point, decltype(body_of(0))>> group;
  if constexpr (HasPostAtBatch<Peer>) group.reserve(batch > 0 ? batch : 0);
  const auto t0 = SteadyClock::now();
  typename C::time_point rel_now{};
  for (long i = 0; i < n; ++i) {
    // One clock read where both want one (kStampEvery is a multiple of kRelStampEvery).
    if (relative && i % kRelStampEvery == 0) rel_now = C::now();
    if (i % kStampEvery == 0) stamp[i / kStampEvery] = relative ? rel_now : C::now();
    if (relative) due[i] = rel_now + offset_of(i);
    if constexpr (HasPostAtBatch<Peer>) {
      if (batch > 0) {
        group.emplace_back(due[i], body_of(i));
        if (static_cast<int>(group.size()) == batch || i + 1 == n) {
          const long size = static_cast<long>(group.size());
          if (!peer.PostAtBatch(group)) refused += size;
        }
        continue;
      }
    }
    if (!peer.PostAt(due[i], body_of(i))) ++refused;
  }
  const auto t1 = SteadyClock::now();
  const auto submitted = C::now();
  s.insert_ns = std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(n);
  if (refused != 0) {
    s.failure = "refused=" + std::to_string(refused);
    held.reset();  // before started and rec, which bodies still pending would write
    return s;
  }
  if (!oracle.WaitDone(std::chrono::seconds(60) + kBurstSpread)) s.failure = "timed out";
  held.reset();  // its threads joined: a late second run is in the log
  if (s.failure.empty()) s.failure = oracle.Check();
  std::vector<double> late, after;
  late.reserve(n);
  after.reserve(n);
  for (long i = 0; i < n; ++i) {
    const std::int64_t st = started[i].load(std::memory_order_relaxed);
    if (st == 0) continue;  // lost: Check reported it
    const double l = static_cast<double>(st - ns_of(due[i])) / 1000.0;
    if (l < 0) ++s.early;
    if (due[i] <= stamp[i / kStampEvery]) ++s.due_at_submit;
    late.push_back(l);
    if (due[i] > submitted) after.push_back(l);
  }
  std::sort(after.begin(), after.end());
  s.after_p99_us = Quantile(after, 0.99);
  s.after_max_us = Quantile(after, 1.0);  // NaN when none
  std::sort(late.begin(), late.end());
  s.p50_us = Quantile(late, 0.50);
  s.p99_us = Quantile(late, 0.99);
  s.max_us = late.empty() ? kNaN : late.back();
  if (s.early != 0 && s.failure.empty()) {
    s.failure = "early=" + std::to_string(s.early) + " (started before their due time)";
  }
  return s;
}

// ---------------------------------------------------------------------------
// W5: paced submissions; latency and CPU.

struct PacedSample {
  double p50_us = 0, p99_us = 0, p999_us = 0, cpu_cores = 0, producer_cores = 0;
  long ops = 0;
  std::string failure;
};

template <typename Peer>
PacedSample RunPaced(int workers, int ntokens, double rate, double seconds, long warmup,
                     std::uint64_t seed, Oracle& oracle) {
  PacedSample s;
  std::optional<Peer> held(std::in_place, workers);  // destroyed before the check
  Peer& peer = *held;
  const long n = std::max(1L, std::lround(rate * seconds));
  s.ops = n;
  const Plan plan = MakePlan(ntokens, n, seed);
  peer.Prepare(plan);
  long refused = 0;
  {
    // Warm-up (untimed, unpaced): the plan's first operations.
    const long w = std::min(warmup, n);
    oracle.Reset(w, ntokens);
    for (long i = 0; i < w; ++i) {
      const int t = plan.token[i];
      if (!PostTo(peer, t,
                  [o = &oracle, id = static_cast<std::uint32_t>(i), t] { o->Ran(id, t); })) {
        ++refused;
      }
    }
    if (refused != 0) s.failure = "warm-up refused=" + std::to_string(refused);
    if (s.failure.empty() && !oracle.WaitDone()) s.failure = "warm-up: timed out";
    if (s.failure.empty()) s.failure = oracle.Check();
    if (!s.failure.empty()) return s;
  }
  std::vector<std::int64_t> lat(n, -1);
  struct Rec {
    Oracle* o;
    std::int64_t* lat;
  } rec{&oracle, lat.data()};
  oracle.Reset(n, ntokens);
  double producer_cpu = 0;
  const double cpu0 = CpuSeconds(RUSAGE_SELF);
  const auto w0 = SteadyClock::now();
  std::thread producer([&] {
    const double th0 = CpuSeconds(RUSAGE_THREAD);
    const auto t0 = SteadyClock::now();
    const double period_ns = 1e9 / rate;
    auto due = [&](long k) {
      return t0 + std::chrono::nanoseconds(
                      static_cast<std::int64_t>(static_cast<double>(k) * period_ns));
    };
    long i = 0;
    while (i < n) {
      const auto now = SteadyClock::now();
      if (due(i) > now) {
        // Wakes late by the timer slack (50 us by default), so the pace comes in
        // bursts of a few operations about every 70 us, the same for every engine.
        // Tried with 1 ns of slack (PR_SET_TIMERSLACK): the producer's 50,000
        // wake-ups a second then took 0.6 of a core on the 2-core VM, and every
        // engine's latency there measured the harness more than the engine.
        std::this_thread::sleep_until(due(i));
        continue;
      }
      for (; i < n && due(i) <= now; ++i) {
        const int t = plan.token[i];
        const std::int64_t ts = NowNs(SteadyClock::now());
        if (!PostTo(peer, t, [r = &rec, id = static_cast<std::uint32_t>(i), t, ts] {
              r->lat[id] = NowNs(SteadyClock::now()) - ts;
              r->o->Ran(id, t);
            })) {
          ++refused;
        }
      }
    }
    producer_cpu = CpuSeconds(RUSAGE_THREAD) - th0;
  });
  producer.join();
  const bool done = refused == 0 && oracle.WaitDone();
  const double wall = std::chrono::duration<double>(SteadyClock::now() - w0).count();
  const double cpu = CpuSeconds(RUSAGE_SELF) - cpu0;
  s.cpu_cores = (cpu - producer_cpu) / wall;
  s.producer_cores = producer_cpu / wall;
  held.reset();  // its threads joined: a late second run is in the log
  if (refused != 0) {
    s.failure = "refused=" + std::to_string(refused);
  } else if (!done) {
    s.failure = "timed out";
  } else {
    s.failure = oracle.Check();
  }
  std::vector<double> us;
  us.reserve(n);
  for (std::int64_t l : lat) {
    if (l >= 0) us.push_back(static_cast<double>(l) / 1000.0);
  }
  std::sort(us.begin(), us.end());
  s.p50_us = Quantile(us, 0.50);
  s.p99_us = Quantile(us, 0.99);
  s.p999_us = Quantile(us, 0.999);
  return s;
}

// ---------------------------------------------------------------------------
// idle: CPU of an engine with nothing to do.

struct IdleSample {
  double cores = 0;
  std::string failure;
};

template <typename Peer>
IdleSample RunIdle(int workers, double seconds, Oracle& oracle) {
  IdleSample s;
  Peer peer(workers);
  constexpr long kWake = 1000;  // every worker has run something, then goes idle
  oracle.Reset(kWake, 0);
  long refused = 0;
  for (long i = 0; i < kWake; ++i) {
    if (!peer.Post([o = &oracle, id = static_cast<std::uint32_t>(i)] { o->Ran(id, -1); })) {
      ++refused;
    }
  }
  if (refused != 0) {
    s.failure = "refused=" + std::to_string(refused);
    return s;
  }
  if (!oracle.WaitDone()) s.failure = "timed out";
  if (s.failure.empty()) s.failure = oracle.Check();
  if (!s.failure.empty()) return s;
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // spinning workers settle and park
  const double cpu0 = CpuSeconds(RUSAGE_SELF);
  const auto w0 = SteadyClock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const double wall = std::chrono::duration<double>(SteadyClock::now() - w0).count();
  s.cores = (CpuSeconds(RUSAGE_SELF) - cpu0) / wall;
  return s;
}

// ---------------------------------------------------------------------------
// Memory probes (each in its own child process).

enum class MemKind { kIndependent, kChained, kPostponed, kIdleToken };

inline const char* MemKindName(MemKind k) {
  switch (k) {
    case MemKind::kIndependent:
      return "independent";
    case MemKind::kChained:
      return "chained";
    case MemKind::kPostponed:
      return "postponed";
    case MemKind::kIdleToken:
      return "idle-token";
  }
  return "?";
}

struct MemSample {
  double heap_per = 0, rss_per = 0;
  double peak_rss_kib = 0;  // of the probe's process
  std::string failure;
};

template <typename Peer>
MemSample ProbeMemory(int workers, MemKind kind, long n, Oracle& oracle) {
  MemSample s;
  Peer peer(workers);
  Plan plan;  // only the names matter here
  if (kind == MemKind::kChained) plan.names.push_back("chain");
  if (kind == MemKind::kIdleToken) {
    // Two rounds of n distinct tokens, one operation each; only the second is
    // measured. The first brings every allocator to the high-water mark this
    // load needs (Ordo's node pool, malloc's arenas), so the second round's
    // growth is what idle tokens keep, not what pending operations needed.
    plan.names.reserve(2 * n);
    for (long t = 0; t < 2 * n; ++t) plan.names.push_back("token-" + std::to_string(t));
  }
  peer.Prepare(plan);
  long refused = 0;
  if (kind == MemKind::kIdleToken) {
    double heap0 = 0, rss0 = 0;
    for (int round = 0; round < 2 && s.failure.empty(); ++round) {
      oracle.Reset(n, static_cast<int>(2 * n));
      if (round == 1) heap0 = HeapBytes(), rss0 = RssBytes();
      for (long i = 0; i < n; ++i) {
        const int t = static_cast<int>(round * n + i);
        if (!PostTo(peer, t,
                    Body32{&oracle, static_cast<std::uint32_t>(i), static_cast<std::int32_t>(t),
                           {}})) {
          ++refused;
        }
      }
      if (refused != 0) s.failure = "refused=" + std::to_string(refused);
      if (s.failure.empty() && !oracle.WaitDone()) s.failure = "timed out";
      if (s.failure.empty()) s.failure = peer.Finish(plan, oracle);  // Ordo: then WaitIdle
      if (s.failure.empty()) s.failure = oracle.Check();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // peers' runners settle
    s.heap_per = (HeapBytes() - heap0) / static_cast<double>(n);
    s.rss_per = (RssBytes() - rss0) / static_cast<double>(n);
    return s;
  }
  Gate gate;
  for (int w = 0; w < workers; ++w) {
    if (!peer.Post([g = &gate] { g->Enter(); })) ++refused;
  }
  if (refused != 0 || !gate.AwaitEntered(workers, std::chrono::seconds(10))) {
    gate.Open();
    s.failure = "the gate jobs did not start on every worker";
    return s;
  }
  oracle.Reset(n, kind == MemKind::kChained ? 1 : 0);
  const double heap0 = HeapBytes(), rss0 = RssBytes();
  for (long i = 0; i < n; ++i) {
    const Body32 body{
        &oracle, static_cast<std::uint32_t>(i), kind == MemKind::kChained ? 0 : -1, {}};
    bool ok = false;
    if (kind == MemKind::kPostponed) {
      if constexpr (kHasPostAt<Peer>) {
        ok = peer.PostAt(Peer::DueClock::now() + std::chrono::hours(1), body);
      }
    } else {
      ok = PostTo(peer, body.t, body);
    }
    if (!ok) ++refused;
  }
  s.heap_per = (HeapBytes() - heap0) / static_cast<double>(n);
  s.rss_per = (RssBytes() - rss0) / static_cast<double>(n);
  gate.Open();
  if (refused != 0) {
    s.failure = "refused=" + std::to_string(refused);
  } else if (kind == MemKind::kPostponed) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (oracle.done() != 0) {
      s.failure = std::to_string(oracle.done()) + " ran before their time (one hour ahead)";
    }
    // The peer's destructor drops the hour-ahead operations.
  } else if (!oracle.WaitDone()) {
    s.failure = "timed out";
  } else {
    s.failure = oracle.Check();
  }
  return s;
}

}  // namespace ordo_compare

#endif  // ORDO_BENCH_PEERS_WORKLOADS_H_
