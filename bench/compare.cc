// ordo_compare: Ordo against its peers on the same workloads, interleaved in one
// process run, reporting absolute figures and peer/ordo ratios (> 1: Ordo is better).
//
//   ordo_compare                                # W1 W2 W3 W2z W1-fan and two -batch; 1,000,000 ops
//   ordo_compare --ops=200000 --workers=4 --repeat=3 --workloads=W2
//   ordo_compare --workloads=all --format=json > bench/results/compare.json
//   tools/plot.sh bench/results/compare.json    # SVG charts in bench/results/
//
// Throughput workloads (1 external producer thread submits --ops operations; N
// workers; the body only records the oracle, see peers/common.h, then spins
// --body_ns; ns/op = wall time from the first submit until all ran / ops):
//   W1          independent operations
//   W2          --tokens string tokens (default 10,000), uniform random
//   W3          --hot string tokens (default 4)
//   W2z         --tokens string tokens, Zipf-skewed (s = 1; token k has weight 1/(k+1))
//   W1-1us      W1 with a 1 us busy body (whatever --body_ns says)
//   W2-1us      W2 with a 1 us busy body
//   W1-fan      jobs submitted from jobs: the producer submits --ops/--fan roots; each
//               root's body submits --fan - 1 independent children; ns/op counts all
//   W1-batch    W1 submitted in groups of --batch through each peer's batch submit
//               (Ordo: Batch + PostBatch; limit: enqueue_bulk; pool: one lock per
//               group); Asio and oneTBB have none and are skipped (see W1)
//   W1-fan-batch  W1-fan whose roots submit their children in groups of --batch
//   W2-batch    W2 in groups of --batch (Ordo: Batch::Add(f, token); the pool: one
//               lock per group; Asio's strands have no batch post)
//   W1-scaling  W1 from each of --scaling_producers producer threads at once, on each
//   W2-scaling  of --scaling_workers worker counts (W2: producer p owns the tokens
//               t with t % producers == p, so per-token order is still checkable)
// Timer, latency and footprint workloads:
//   W4          postponed burst: --burst operations, each due at start + 5 ms + a
//               uniform 0-200 ms, submitted back to back from one producer (start:
//               the peer's clock read just before the first submit). Reports the
//               insert cost (producer time / op, while earlier ones already fire),
//               lateness (body start - due, on the peer's clock) p50/p99/max, early
//               starts (any is a failure), and how many were already due before their
//               submit began (their lateness includes the producer's own backlog).
//   W4-rel      W4 as the performance issue's peer figures imply it (their lateness
//               p99 of about 5 ms at 384 and 1,884 ns per insert cannot include a
//               backlog of 77 and 377 ms): each operation due at its own submit
//               (the clock read every 16 submits) + a uniform 0-200 ms, so the
//               lateness is the timer's under the load, not the producer's backlog
//   W4-batch    W4 in groups of --batch (Ordo: Batch::AddPostponed + PostBatch; the
//               pool: one lock per group, one wake of its timer thread)
//   W5, W5-tok  paced: one producer submits at --rate ops/s for --w5_seconds,
//               independent (W5) or over --w5_tokens tokens (W5-tok). Reports
//               submit-to-start latency p50/p99/p99.9 (steady clock read right
//               before Submit, compared in the body) and the engine's CPU in cores:
//               (process CPU - producer thread CPU) / wall, from getrusage.
//   idle        CPU cores an engine uses while idle for --idle_seconds, after it ran
//               1,000 operations and settled 100 ms
//   mem-independent, mem-chained, mem-postponed
//               heap bytes per pending operation (32-byte capture): every worker is
//               first blocked by a gate job, then --mem_ops operations are submitted
//               (independent; all on one token; postponed one hour) and the heap
//               (mallinfo2 uordblks + hblkhd) is compared before and after; the RSS
//               delta is shown too (it also sees memory from mmap, as tbbmalloc's).
//   mem-idle-token
//               heap bytes kept per idle token: --mem_ops distinct tokens ran one
//               operation each; the engine is idle again.
//               Each memory probe runs in a fresh child process (this binary with
//               --memory_probe), because Ordo keeps its operation nodes pooled for
//               the life of the process: a second probe in one process would reuse
//               the first one's nodes and report nothing.
//   --workloads=all runs all of the above; peak RSS of the run (and of the probe
//   children) is reported at the end.
// Peers (bench/peers/<name>.h; asio and tbb are built only when their Debian
// package was found at configure time):
//   ordo   ordo::Engine, public API
//   limit  raw moodycamel::ConcurrentQueue hand-off to spinning consumers (W1, W1-fan,
//          W1-scaling only)
//   asio   io_context + post; one strand per token; a steady_timer per postponed op
//   tbb    task_arena + task_group (independent work only: no per-key order, no timers)
//   pool   mutex + condition_variable + deque<function> + per-token chain map +
//          priority queue and timer thread
// Each throughput repetition builds every engine afresh, warms it with one small
// untimed run (--warmup operations), then times from the first submit until every
// operation has run, which every engine's run sees the same way: by polling the
// oracle's log (Ordo then calls WaitIdle, inside the window). The peer order
// rotates between repetitions. Every run checks exactly-once execution (after the
// engine is destroyed, so a late second run is counted), per-token order and that
// no two operations of a token overlap; a peer/workload with any failed run
// prints FAILED and the exit status is 1. A peer that cannot run a workload says
// "skipped: why".
// Reported: the median of --repeat runs (min-max for throughput); W4 and W5 report
// the median of each figure over --repeat runs, except W4's max lateness and
// due-at-submit count (the largest of the runs) and its early count (their sum);
// idle and memory run once.
#include <malloc.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
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

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "peers/common.h"
#include "peers/limit.h"
#include "peers/ordo.h"
#include "peers/pool.h"
#include "peers/workloads.h"
#ifdef ORDO_COMPARE_HAVE_ASIO
#include "peers/asio.h"
#endif
#ifdef ORDO_COMPARE_HAVE_TBB
#include "peers/tbb.h"
#endif

extern char** environ;

ABSL_FLAG(long, ops, 1000000, "operations per timed throughput run");
ABSL_FLAG(int, workers, 2, "worker threads of every engine");
ABSL_FLAG(int, repeat, 5, "timed runs per workload and engine (the median is reported)");
ABSL_FLAG(std::string, workloads, "W1,W2,W3,W2z,W1-fan,W1-fan-batch,W2-batch",
          "comma-separated: W1 W2 W3 W2z W1-1us W2-1us W1-fan W1-batch W1-fan-batch W2-batch "
          "W1-scaling W2-scaling W4 W4-batch W4-rel W5 "
          "W5-tok idle mem-independent mem-chained mem-postponed mem-idle-token; 'all' for "
          "every one, 'mem' for the four memory probes, 'scaling' for both scaling runs");
ABSL_FLAG(int, tokens, 10000, "tokens in W2, W2z, W2-1us and W2-scaling");
ABSL_FLAG(int, hot, 4, "tokens in W3");
ABSL_FLAG(long, warmup, 50000, "operations in each untimed warm-up run (capped at --ops)");
ABSL_FLAG(int, body_ns, 0,
          "busy work per operation in ns, spun on the steady clock, in every throughput "
          "workload except the -1us ones (which always spin 1000 ns)");
ABSL_FLAG(std::string, peers, "",
          "comma-separated peers to run beside ordo (limit asio tbb pool; empty: every "
          "peer built), e.g. none to profile Ordo alone");
ABSL_FLAG(int, batch, 64, "W1-batch, W1-fan-batch, W2-batch, W4-batch: operations per batch submit");
ABSL_FLAG(int, fan, 64, "W1-fan: operations per root (the root and its fan - 1 children)");
ABSL_FLAG(std::string, scaling_producers, "1,2,4", "producer counts of W1/W2-scaling");
ABSL_FLAG(std::string, scaling_workers, "1,2", "worker counts of W1/W2-scaling");
ABSL_FLAG(long, burst, 200000, "W4: postponed operations in the burst");
ABSL_FLAG(double, rate, 50000, "W5: submissions per second");
ABSL_FLAG(double, w5_seconds, 1.0, "W5: seconds of paced submission");
ABSL_FLAG(int, w5_tokens, 1000, "W5-tok: tokens");
ABSL_FLAG(double, idle_seconds, 1.0, "idle: seconds the idle engine is watched");
ABSL_FLAG(long, mem_ops, 100000, "memory probes: pending operations, or idle tokens");
ABSL_FLAG(std::string, format, "text", "text or json");
ABSL_FLAG(double, ordo_tick_us, 1000, "Ordo's Options::tick, in microseconds (tuning experiments)");
ABSL_FLAG(double, ordo_spin_us, 100, "Ordo's Options::spin, in microseconds (tuning experiments)");
ABSL_FLAG(std::string, memory_probe, "",
          "internal: run one memory probe (peer:kind) in this process and print it");

namespace {

using ordo_compare::Body32;
using ordo_compare::BurstSample;
using ordo_compare::Dist;
using ordo_compare::Feature;
using ordo_compare::IdleSample;
using ordo_compare::kBurstLead;
using ordo_compare::kBurstSpread;
using ordo_compare::kCaptureBytes;
using ordo_compare::kHasPost;
using ordo_compare::kHasPostAt;
using ordo_compare::kNaN;
using ordo_compare::MakeFanPlan;
using ordo_compare::MakePlan;
using ordo_compare::Median;
using ordo_compare::MemKind;
using ordo_compare::MemKindName;
using ordo_compare::MemSample;
using ordo_compare::Oracle;
using ordo_compare::PacedSample;
using ordo_compare::PeakRssKib;
using ordo_compare::Plan;
using ordo_compare::ProbeMemory;
using ordo_compare::RunBurst;
using ordo_compare::RunIdle;
using ordo_compare::RunPaced;
using ordo_compare::RunThroughput;
using ordo_compare::Sample;
using ordo_compare::Support;

double g_probe_peak_rss_kib = 0;  // largest VmHWM reported by a memory-probe child

// ---------------------------------------------------------------------------
// Peers.

struct PeerEntry {
  const char* name;
  Support (*supports)(Feature, bool tokens);
  Sample (*throughput)(int, const Plan&, const Plan&, Oracle&, int) = nullptr;
  BurstSample (*burst)(int, long, std::uint64_t, Oracle&, int, bool) = nullptr;
  bool burst_batches = false;  // W4-batch: its adapter has PostAtBatch
  PacedSample (*paced)(int, int, double, double, long, std::uint64_t, Oracle&) = nullptr;
  IdleSample (*idle)(int, double, Oracle&) = nullptr;
  MemSample (*memory)(int, MemKind, long, Oracle&) = nullptr;
};

template <typename Peer>
PeerEntry Entry() {
  PeerEntry e{Peer::kName, &Peer::Supports};
  e.throughput = &RunThroughput<Peer>;
  if constexpr (kHasPostAt<Peer>) e.burst = &RunBurst<Peer>;
  e.burst_batches = ordo_compare::HasPostAtBatch<Peer>;
  if constexpr (kHasPost<Peer>) {
    e.paced = &RunPaced<Peer>;
    e.idle = &RunIdle<Peer>;
    e.memory = &ProbeMemory<Peer>;
  }
  return e;
}

std::vector<PeerEntry> AllPeers(std::vector<std::string>* not_built) {
  (void)not_built;  // used only when a peer was not built
  std::vector<PeerEntry> peers = {Entry<ordo_compare::OrdoPeer>(),
                                  Entry<ordo_compare::LimitPeer>()};
#ifdef ORDO_COMPARE_HAVE_ASIO
  peers.push_back(Entry<ordo_compare::AsioPeer>());
#else
  not_built->push_back("asio: not built: asio.hpp (libasio-dev) not found at configure time");
#endif
#ifdef ORDO_COMPARE_HAVE_TBB
  peers.push_back(Entry<ordo_compare::TbbPeer>());
#else
  not_built->push_back("tbb: not built: TBB (libtbb-dev) not found at configure time");
#endif
  peers.push_back(Entry<ordo_compare::PoolPeer>());
  return peers;
}

// ---------------------------------------------------------------------------
// Workloads and rows.

enum class Kind { kThroughput, kScaling, kBurst, kPaced, kIdle, kMemory };

struct Workload {
  std::string name;
  Kind kind;
  int ntokens = 0;
  Dist dist = Dist::kUniform;
  int body_ns = 0;
  int fan = 0;
  int batch = 0;  // > 0: submitted in groups of this many (Feature::kBatch)
  bool relative = false;  // W4-rel: due times from each operation's own submission
  MemKind mem = MemKind::kIndependent;
};

const std::vector<std::string>& AllWorkloadNames() {
  static const std::vector<std::string> names = {"W1",
                                                 "W2",
                                                 "W3",
                                                 "W2z",
                                                 "W1-1us",
                                                 "W2-1us",
                                                 "W1-fan",
                                                 "W1-batch",
                                                 "W1-fan-batch",
                                                 "W2-batch",
                                                 "W1-scaling",
                                                 "W2-scaling",
                                                 "W4",
                                                 "W4-batch",
                                                 "W4-rel",
                                                 "W5",
                                                 "W5-tok",
                                                 "idle",
                                                 "mem-independent",
                                                 "mem-chained",
                                                 "mem-postponed",
                                                 "mem-idle-token"};
  return names;
}

bool MakeWorkload(const std::string& w, Workload* out) {
  const int tokens = std::max(1, absl::GetFlag(FLAGS_tokens));
  const int body = std::max(0, absl::GetFlag(FLAGS_body_ns));
  Workload x{w, Kind::kThroughput};
  if (w == "W1") {
    x.body_ns = body;
  } else if (w == "W2") {
    x.ntokens = tokens;
    x.body_ns = body;
  } else if (w == "W3") {
    x.ntokens = std::max(1, absl::GetFlag(FLAGS_hot));
    x.body_ns = body;
  } else if (w == "W2z") {
    x.ntokens = tokens;
    x.dist = Dist::kZipf;
    x.body_ns = body;
  } else if (w == "W1-1us") {
    x.body_ns = 1000;
  } else if (w == "W2-1us") {
    x.ntokens = tokens;
    x.body_ns = 1000;
  } else if (w == "W1-fan") {
    x.fan = std::max(1, absl::GetFlag(FLAGS_fan));
    x.body_ns = body;
  } else if (w == "W1-batch") {
    x.batch = std::max(1, absl::GetFlag(FLAGS_batch));
    x.body_ns = body;
  } else if (w == "W2-batch") {
    x.ntokens = tokens;
    x.batch = std::max(1, absl::GetFlag(FLAGS_batch));
    x.body_ns = body;
  } else if (w == "W1-fan-batch") {
    x.fan = std::max(1, absl::GetFlag(FLAGS_fan));
    x.batch = std::max(1, absl::GetFlag(FLAGS_batch));
    x.body_ns = body;
  } else if (w == "W1-scaling") {
    x.kind = Kind::kScaling;
    x.body_ns = body;
  } else if (w == "W2-scaling") {
    x.kind = Kind::kScaling;
    x.ntokens = tokens;
    x.body_ns = body;
  } else if (w == "W4") {
    x.kind = Kind::kBurst;
  } else if (w == "W4-batch") {
    x.kind = Kind::kBurst;
    x.batch = std::max(1, absl::GetFlag(FLAGS_batch));
  } else if (w == "W4-rel") {
    x.kind = Kind::kBurst;
    x.relative = true;
  } else if (w == "W5") {
    x.kind = Kind::kPaced;
  } else if (w == "W5-tok") {
    x.kind = Kind::kPaced;
    x.ntokens = std::max(1, absl::GetFlag(FLAGS_w5_tokens));
  } else if (w == "idle") {
    x.kind = Kind::kIdle;
  } else if (w.rfind("mem-", 0) == 0) {
    x.kind = Kind::kMemory;
    const std::string k = w.substr(4);
    if (k == "independent") {
      x.mem = MemKind::kIndependent;
    } else if (k == "chained") {
      x.mem = MemKind::kChained;
      x.ntokens = 1;
    } else if (k == "postponed") {
      x.mem = MemKind::kPostponed;
    } else if (k == "idle-token") {
      x.mem = MemKind::kIdleToken;
      x.ntokens = 1;
    } else {
      return false;
    }
  } else {
    return false;
  }
  *out = x;
  return true;
}

// What the workload asks of a peer.
Support SupportFor(const PeerEntry& p, const Workload& w) {
  const bool tokens = w.ntokens > 0;
  switch (w.kind) {
    case Kind::kThroughput:
      if (w.batch > 0) {
        if (Support s = p.supports(Feature::kBatch, tokens); !s.ok) return s;
      }
      return p.supports(w.fan > 0 ? Feature::kFanOut : Feature::kThroughput, tokens);
    case Kind::kScaling:
      return p.supports(Feature::kProducers, tokens);
    case Kind::kBurst:
      if (w.batch > 0) {
        if (Support s = p.supports(Feature::kBatch, false); !s.ok) return s;
      }
      return p.supports(Feature::kPostpone, false);
    case Kind::kPaced:
      return p.supports(Feature::kPaced, tokens);
    case Kind::kIdle:
      return p.supports(Feature::kIdle, false);
    case Kind::kMemory: {
      Support s = p.supports(Feature::kMemory, tokens);
      if (s.ok && w.mem == MemKind::kPostponed) s = p.supports(Feature::kPostpone, false);
      return s;
    }
  }
  return {false, "unknown workload"};
}

// One output line: a workload, a peer, and named figures (JSON numbers, in order;
// NaN is written as null).
struct Row {
  Kind kind = Kind::kThroughput;
  std::string workload;
  std::string peer;
  bool skipped = false;
  bool ok = true;
  std::string note;  // why skipped, or the failure
  std::vector<std::pair<std::string, double>> fields;

  // A failed row (Fail, which every row builder calls before its Sets) keeps
  // its configuration and reports its error, not a number: every other figure
  // is NaN, null in the JSON and blank in the tables. (The burst, paced and
  // idle rows, and the throughput range, once kept their figures beside
  // "ok": false.)
  static bool IsConfiguration(const std::string& k) {
    static const char* const kKeys[] = {"ops",   "workers", "producers", "repeat",
                                        "body_ns", "fan",   "batch",     "tokens",
                                        "rate",  "seconds", "capture_bytes"};
    for (const char* key : kKeys) {
      if (k == key) return true;
    }
    return false;
  }
  void Set(const std::string& k, double v) {
    if (!ok && !IsConfiguration(k)) v = kNaN;
    for (auto& f : fields) {
      if (f.first == k) {
        f.second = v;
        return;
      }
    }
    fields.emplace_back(k, v);
  }
  double Get(const std::string& k) const {
    for (const auto& f : fields) {
      if (f.first == k) return f.second;
    }
    return kNaN;
  }
  // The median of the repetitions as `k`, and their range as min_k and max_k.
  // A repetition with no figure (NaN: e.g. nothing was due after a burst's
  // submission) is left out; with none left, the median is NaN and no range.
  void SetSpread(const std::string& k, std::vector<double> v) {
    std::erase_if(v, [](double x) { return std::isnan(x); });
    Set(k, Median(v));  // NaN when empty
    if (v.empty()) return;
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    Set("min_" + k, *lo);
    Set("max_" + k, *hi);
  }
};

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string JsonNumber(double v) {
  if (std::isnan(v) || std::isinf(v)) return "null";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return absl::StrFormat("%.0f", v);
  return absl::StrFormat("%.4f", v);
}

std::string JsonRow(const Row& r) {
  std::string s = absl::StrFormat("{\"workload\": \"%s\", \"peer\": \"%s\"", JsonEscape(r.workload),
                                  JsonEscape(r.peer));
  if (r.skipped) return s + ", \"skipped\": \"" + JsonEscape(r.note) + "\"}";
  s += r.ok ? ", \"ok\": true" : ", \"ok\": false";
  for (const auto& [k, v] : r.fields) s += ", \"" + k + "\": " + JsonNumber(v);
  if (!r.ok) {
    s += ", \"failure\": \"" + JsonEscape(r.note) + "\"";
  } else if (!r.note.empty()) {
    s += ", \"note\": \"" + JsonEscape(r.note) + "\"";
  }
  return s + "}";
}

// peer / ordo of one figure, NaN when either is unknown or ordo's is not positive.
double Ratio(double peer, double ordo) {
  if (std::isnan(peer) || std::isnan(ordo) || ordo <= 0) return kNaN;
  return peer / ordo;
}

// A ratio or figure with printf format `f` ("%.2f"), or "-" when unknown.
std::string Fmt(const char* f, double v) {
  if (std::isnan(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// ---------------------------------------------------------------------------
// Text output: one table per workload.

void PrintHeader(Kind kind, const std::string& workload) {
  switch (kind) {
    case Kind::kThroughput:
      std::printf("%-10s %-7s %-27s %-10s %s\n", "workload", "peer", "ns/op (median, min-max)",
                  "peer/ordo", "note");
      break;
    case Kind::kScaling:
      std::printf("%-10s %-9s %-7s %-7s %-27s %-10s %s\n", "workload", "producers", "workers",
                  "peer", "ns/op (median, min-max)", "peer/ordo", "note");
      break;
    case Kind::kBurst: {
      const std::string due_at =
          workload == "W4-rel"
              ? absl::StrFormat("its own submit (the time read every %d submits)",
                                ordo_compare::kRelStampEvery)
              : absl::StrFormat("start + %d ms", kBurstLead.count());
      std::printf(
          "# %s: %ld ops each due at %s + uniform 0-%lld ms; insert = producer time/op while "
          "earlier ones fire; lateness = body start - due\n",
          workload.c_str(), absl::GetFlag(FLAGS_burst), due_at.c_str(),
          static_cast<long long>(kBurstSpread.count()));
      std::printf("%-10s %-7s %9s %9s %10s %10s %10s %6s %10s %9s %10s %10s %s\n", "workload",
                  "peer", "insert ns", "peer/ordo", "late p50us", "late p99us", "late maxus",
                  "early", "due@submit", "p99 p/o", "aft p99us", "aft maxus", "note");
      break;
    }
    case Kind::kPaced:
      std::printf(
          "# %s: %.0f ops/s for %.2f s; latency = submit to body start; cpu = engine "
          "cores (process minus producer thread); all = the whole process, which also "
          "counts each engine's submit path and wake-ups on the producer; cpu p/o "
          "compares all\n",
          workload.c_str(), absl::GetFlag(FLAGS_rate), absl::GetFlag(FLAGS_w5_seconds));
      std::printf("%-10s %-7s %8s %9s %9s %10s %9s %9s %9s %9s %9s %s\n", "workload", "peer",
                  "ops", "p50 us", "p99 us", "p99.9 us", "cpu cores", "prod cores", "all cores",
                  "p99 p/o", "cpu p/o", "note");
      break;
    case Kind::kIdle:
      std::printf(
          "# idle: CPU used by a built, idle engine over %.2f s (target < 1%% of a "
          "core)\n",
          absl::GetFlag(FLAGS_idle_seconds));
      std::printf("%-10s %-7s %10s %10s %s\n", "workload", "peer", "cpu cores", "% of core",
                  "note");
      break;
    case Kind::kMemory:
      std::printf(
          "# memory: %ld operations pending behind blocked workers (32-byte capture), "
          "or idle tokens; B/each = heap delta (mallinfo2) per each, or the RSS delta "
          "where the peer allocates outside malloc; peak = the probe process's VmHWM\n",
          absl::GetFlag(FLAGS_mem_ops));
      std::printf("%-16s %-7s %10s %10s %10s %9s %10s %s\n", "workload", "peer", "B/each", "heap B",
                  "rss B", "peer/ordo", "peak KiB", "note");
      break;
  }
}

void PrintRow(const Row& r) {
  const char* w = r.workload.c_str();
  const char* p = r.peer.c_str();
  const bool mem = r.kind == Kind::kMemory;
  const std::string note = r.note.empty() ? "" : " " + r.note;  // an ok row's remark
  if (r.skipped || !r.ok) {
    const std::string what = r.skipped ? "skipped: " + r.note : "FAILED: " + r.note;
    if (r.kind == Kind::kScaling) {
      std::printf("%-10s %-9.0f %-7.0f %-7s %s\n", w, r.Get("producers"), r.Get("workers"), p,
                  what.c_str());
    } else {
      std::printf(mem ? "%-16s %-7s %s\n" : "%-10s %-7s %s\n", w, p, what.c_str());
    }
    return;
  }
  switch (r.kind) {
    case Kind::kThroughput: {
      const std::string ns = absl::StrFormat("%.0f (%.0f-%.0f)", r.Get("ns_per_op"),
                                             r.Get("min_ns_per_op"), r.Get("max_ns_per_op"));
      std::printf("%-10s %-7s %-27s %s\n", w, p, ns.c_str(),
                  Fmt("%.2f", r.Get("peer_over_ordo")).c_str());
      break;
    }
    case Kind::kScaling: {
      const std::string ns = absl::StrFormat("%.0f (%.0f-%.0f)", r.Get("ns_per_op"),
                                             r.Get("min_ns_per_op"), r.Get("max_ns_per_op"));
      std::printf("%-10s %-9.0f %-7.0f %-7s %-27s %s\n", w, r.Get("producers"), r.Get("workers"), p,
                  ns.c_str(), Fmt("%.2f", r.Get("peer_over_ordo")).c_str());
      break;
    }
    case Kind::kBurst:
      std::printf("%-10s %-7s %9.0f %9s %10.0f %10.0f %10.0f %6.0f %10.0f %9s %10.0f %10.0f%s\n",
                  w, p, r.Get("insert_ns_per_op"),
                  Fmt("%.2f", r.Get("insert_peer_over_ordo")).c_str(), r.Get("lateness_p50_us"),
                  r.Get("lateness_p99_us"), r.Get("lateness_max_us"), r.Get("early"),
                  r.Get("due_at_submit"), Fmt("%.2f", r.Get("lateness_p99_peer_over_ordo")).c_str(),
                  r.Get("lateness_after_submit_p99_us"), r.Get("lateness_after_submit_max_us"),
                  note.c_str());
      break;
    case Kind::kPaced:
      std::printf("%-10s %-7s %8.0f %9.1f %9.1f %10.1f %9.3f %9.3f %9.3f %9s %9s\n", w, p,
                  r.Get("ops"), r.Get("latency_p50_us"), r.Get("latency_p99_us"),
                  r.Get("latency_p999_us"), r.Get("cpu_cores"), r.Get("producer_cpu_cores"),
                  r.Get("process_cpu_cores"),
                  Fmt("%.2f", r.Get("latency_p99_peer_over_ordo")).c_str(),
                  Fmt("%.2f", r.Get("cpu_peer_over_ordo")).c_str());
      break;
    case Kind::kIdle:
      std::printf("%-10s %-7s %10.4f %10.2f\n", w, p, r.Get("cpu_cores"), r.Get("cpu_cores") * 100);
      break;
    case Kind::kMemory: {
      const bool token = r.workload == "mem-idle-token";
      const std::string each = token ? "per_token" : "per_op";
      std::printf("%-16s %-7s %10.1f %10.1f %10.1f %9s %10.0f%s\n", w, p, r.Get("bytes_" + each),
                  r.Get("heap_bytes_" + each), r.Get("rss_bytes_" + each),
                  Fmt("%.2f", r.Get("peer_over_ordo")).c_str(), r.Get("probe_peak_rss_kib"),
                  note.c_str());
      break;
    }
  }
}

// ---------------------------------------------------------------------------
// Running one workload for every peer.

struct Config {
  long ops;
  int workers;
  int repeat;
  long warmup;
};

Row BaseRow(const Workload& w, const PeerEntry& p) {
  Row r;
  r.kind = w.kind;
  r.workload = w.name;
  r.peer = p.name;
  const Support s = SupportFor(p, w);
  if (!s.ok) {
    r.skipped = true;
    r.note = s.why;
    return r;
  }
  const bool built = w.kind == Kind::kBurst    ? p.burst != nullptr && (w.batch == 0 || p.burst_batches)
                     : w.kind == Kind::kPaced  ? p.paced != nullptr
                     : w.kind == Kind::kIdle   ? p.idle != nullptr
                     : w.kind == Kind::kMemory ? p.memory != nullptr
                                               : p.throughput != nullptr;
  if (!built) {
    r.skipped = true;
    r.note = "its adapter in bench/peers/ lacks the call this workload needs";
  }
  return r;
}

void Fail(Row& r, const std::string& failure) {
  if (failure.empty()) return;
  r.ok = false;
  r.note = failure;
}

// Throughput at one (producers, workers) point: every active peer, --repeat times.
std::vector<Row> RunThroughputRows(const Workload& w, const std::vector<PeerEntry>& peers,
                                   const Config& c, int producers, int workers, Oracle& oracle) {
  std::vector<Row> rows;
  std::vector<std::size_t> active;
  for (std::size_t p = 0; p < peers.size(); ++p) {
    rows.push_back(BaseRow(w, peers[p]));
    if (!rows.back().skipped) active.push_back(p);
  }
  std::vector<std::vector<Sample>> samples(peers.size());
  for (int k = 0; k < c.repeat; ++k) {
    const long warm_ops = std::max<long>(c.warmup, w.fan);
    Plan warm = w.fan > 0 ? MakeFanPlan(warm_ops, w.fan)
                          : MakePlan(w.ntokens, c.warmup, 7919 + k, w.dist, producers);
    Plan plan = w.fan > 0 ? MakeFanPlan(c.ops, w.fan)
                          : MakePlan(w.ntokens, c.ops, 1000 + k, w.dist, producers);
    warm.batch = plan.batch = w.batch;
    for (std::size_t j = 0; j < active.size(); ++j) {
      const std::size_t p = active[(j + k) % active.size()];  // rotate the order
      samples[p].push_back(peers[p].throughput(workers, warm, plan, oracle, w.body_ns));
    }
  }
  const long ops = w.fan > 0 ? MakeFanPlan(c.ops, w.fan).ops() : c.ops;
  for (std::size_t p : active) {
    Row& r = rows[p];
    std::vector<double> ns;
    for (const Sample& s : samples[p]) {
      Fail(r, s.failure);
      ns.push_back(s.ns_per_op);
    }
    std::sort(ns.begin(), ns.end());
    r.Set("ops", static_cast<double>(ops));
    r.Set("workers", workers);
    r.Set("producers", producers);
    r.Set("repeat", c.repeat);
    r.Set("body_ns", w.body_ns);
    if (w.fan > 0) r.Set("fan", w.fan);
    if (w.batch > 0) r.Set("batch", w.batch);
    if (w.ntokens > 0) r.Set("tokens", w.ntokens);
    r.Set("ns_per_op", r.ok ? Median(ns) : kNaN);
    r.Set("min_ns_per_op", ns.front());
    r.Set("max_ns_per_op", ns.back());
    r.Set("ops_per_sec", r.ok ? 1e9 / Median(ns) : kNaN);
  }
  for (Row& r : rows) {
    if (!r.skipped && r.ok && rows[0].ok) {
      r.Set("peer_over_ordo", Ratio(r.Get("ns_per_op"), rows[0].Get("ns_per_op")));
    } else if (!r.skipped) {
      r.Set("peer_over_ordo", kNaN);
    }
  }
  return rows;
}

// One row per peer (a skipped one says why) in *rows, the peers that run in
// *active, and their samples: --repeat rounds, the order of peers rotating between
// rounds. run(p, k) takes peer p's sample of round k.
template <typename Sample, typename Run>
std::vector<std::vector<Sample>> RotatedSamples(const Workload& w,
                                                const std::vector<PeerEntry>& peers,
                                                const Config& c, std::vector<Row>* rows,
                                                std::vector<std::size_t>* active, Run run) {
  for (std::size_t p = 0; p < peers.size(); ++p) {
    rows->push_back(BaseRow(w, peers[p]));
    if (!rows->back().skipped) active->push_back(p);
  }
  std::vector<std::vector<Sample>> samples(peers.size());
  for (int k = 0; k < c.repeat; ++k) {
    for (std::size_t j = 0; j < active->size(); ++j) {
      const std::size_t p = (*active)[(j + k) % active->size()];
      samples[p].push_back(run(p, k));
    }
  }
  return samples;
}

std::vector<Row> RunBurstRows(const Workload& w, const std::vector<PeerEntry>& peers,
                              const Config& c, Oracle& oracle) {
  std::vector<Row> rows;
  std::vector<std::size_t> active;
  const long n = std::max(1L, absl::GetFlag(FLAGS_burst));
  std::vector<std::vector<BurstSample>> samples = RotatedSamples<BurstSample>(
      w, peers, c, &rows, &active,
      [&](std::size_t p, int k) {
        return peers[p].burst(c.workers, n, 4242 + k, oracle, w.batch, w.relative);
      });
  for (std::size_t p : active) {
    Row& r = rows[p];
    std::vector<double> ins, p50, p99, mx, ap99, amx;
    long early = 0, due = 0;
    for (const BurstSample& s : samples[p]) {
      Fail(r, s.failure);
      ins.push_back(s.insert_ns);
      p50.push_back(s.p50_us);
      p99.push_back(s.p99_us);
      mx.push_back(s.max_us);
      ap99.push_back(s.after_p99_us);
      amx.push_back(s.after_max_us);
      early += s.early;
      due = std::max(due, s.due_at_submit);
    }
    r.Set("ops", static_cast<double>(n));
    r.Set("workers", c.workers);
    r.Set("repeat", c.repeat);
    r.SetSpread("insert_ns_per_op", ins);
    r.Set("lateness_p50_us", Median(p50));
    r.SetSpread("lateness_p99_us", p99);
    r.Set("lateness_max_us", *std::max_element(mx.begin(), mx.end()));
    r.SetSpread("lateness_after_submit_p99_us", ap99);
    // The largest of the repetitions' maxima that exist (fmax leaves out NaN).
    double after_max = kNaN;
    for (double m : amx) after_max = std::fmax(after_max, m);
    r.Set("lateness_after_submit_max_us", after_max);
    r.Set("early", static_cast<double>(early));
    r.Set("due_at_submit", static_cast<double>(due));
    if (r.ok && due > 0) {
      r.note = std::to_string(due) + " were due before their submit began (producer too slow)";
    }
  }
  for (Row& r : rows) {
    if (r.skipped) continue;
    const bool both = r.ok && rows[0].ok;
    r.Set("insert_peer_over_ordo",
          both ? Ratio(r.Get("insert_ns_per_op"), rows[0].Get("insert_ns_per_op")) : kNaN);
    r.Set("lateness_p99_peer_over_ordo",
          both ? Ratio(r.Get("lateness_p99_us"), rows[0].Get("lateness_p99_us")) : kNaN);
  }
  return rows;
}

std::vector<Row> RunPacedRows(const Workload& w, const std::vector<PeerEntry>& peers,
                              const Config& c, Oracle& oracle) {
  std::vector<Row> rows;
  std::vector<std::size_t> active;
  const double rate = std::max(1.0, absl::GetFlag(FLAGS_rate));
  const double seconds = std::max(0.001, absl::GetFlag(FLAGS_w5_seconds));
  std::vector<std::vector<PacedSample>> samples = RotatedSamples<PacedSample>(
      w, peers, c, &rows, &active, [&](std::size_t p, int k) {
        return peers[p].paced(c.workers, w.ntokens, rate, seconds, c.warmup, 555 + k, oracle);
      });
  for (std::size_t p : active) {
    Row& r = rows[p];
    std::vector<double> p50, p99, p999, cpu, prod, all;
    long ops = 0;
    for (const PacedSample& s : samples[p]) {
      Fail(r, s.failure);
      p50.push_back(s.p50_us);
      p99.push_back(s.p99_us);
      p999.push_back(s.p999_us);
      cpu.push_back(s.cpu_cores);
      prod.push_back(s.producer_cores);
      all.push_back(s.cpu_cores + s.producer_cores);
      ops = s.ops;
    }
    r.Set("ops", static_cast<double>(ops));
    r.Set("rate", rate);
    r.Set("seconds", seconds);
    r.Set("tokens", w.ntokens);
    r.Set("workers", c.workers);
    r.Set("repeat", c.repeat);
    r.Set("latency_p50_us", Median(p50));
    r.SetSpread("latency_p99_us", p99);
    r.SetSpread("latency_p999_us", p999);
    r.Set("cpu_cores", Median(cpu));
    r.Set("producer_cpu_cores", Median(prod));
    r.Set("process_cpu_cores", Median(all));
  }
  for (Row& r : rows) {
    if (r.skipped) continue;
    const bool both = r.ok && rows[0].ok;
    r.Set("latency_p99_peer_over_ordo",
          both ? Ratio(r.Get("latency_p99_us"), rows[0].Get("latency_p99_us")) : kNaN);
    // The whole process: an engine's work on the producer (its submit path, the
    // wake-ups it makes there) counts as much as its own threads'.
    r.Set("cpu_peer_over_ordo",
          both ? Ratio(r.Get("process_cpu_cores"), rows[0].Get("process_cpu_cores")) : kNaN);
  }
  return rows;
}

std::vector<Row> RunIdleRows(const Workload& w, const std::vector<PeerEntry>& peers,
                             const Config& c, Oracle& oracle) {
  std::vector<Row> rows;
  const double seconds = std::max(0.01, absl::GetFlag(FLAGS_idle_seconds));
  for (const PeerEntry& p : peers) {
    Row r = BaseRow(w, p);
    if (!r.skipped) {
      const IdleSample s = p.idle(c.workers, seconds, oracle);
      Fail(r, s.failure);
      r.Set("workers", c.workers);
      r.Set("seconds", seconds);
      r.Set("cpu_cores", s.cores);
    }
    rows.push_back(r);
  }
  return rows;
}

// Runs one probe in a child process (this binary, --memory_probe=peer:kind) and
// reads back its line: "probe ok <heap per> <rss per> <peak rss KiB>" or
// "probe failed <why>".
MemSample SpawnProbe(const std::string& peer, MemKind kind, long n, int workers) {
  MemSample s;
  const std::string exe = "/proc/self/exe";
  std::vector<std::string> args = {
      "ordo_compare", "--memory_probe=" + peer + ":" + MemKindName(kind),
      "--mem_ops=" + std::to_string(n), "--workers=" + std::to_string(workers)};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int fd[2];
  if (pipe(fd) != 0) {
    s.failure = "pipe failed";
    return s;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fd[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, fd[0]);
  posix_spawn_file_actions_addclose(&fa, fd[1]);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fd[1]);
  std::string out;
  if (rc == 0) {
    char buf[512];
    ssize_t k;
    while ((k = read(fd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(k));
  }
  close(fd[0]);
  if (rc != 0) {
    s.failure = "posix_spawn failed: " + std::to_string(rc);
    return s;
  }
  int status = 0;
  waitpid(pid, &status, 0);
  const std::size_t at = out.rfind("probe ");
  if (at == std::string::npos) {
    s.failure = absl::StrFormat("probe child printed nothing (status %d)", status);
    return s;
  }
  std::string line = out.substr(at);
  if (!line.empty() && line.back() == '\n') line.pop_back();
  const std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(' ', 4));
  if (parts.size() == 5 && parts[1] == "ok" && absl::SimpleAtod(parts[2], &s.heap_per) &&
      absl::SimpleAtod(parts[3], &s.rss_per) && absl::SimpleAtod(parts[4], &s.peak_rss_kib)) {
    return s;
  }
  s.failure =
      parts.size() >= 3 && parts[1] == "failed" ? line.substr(13) : "bad probe line: " + line;
  return s;
}

std::vector<Row> RunMemoryRows(const Workload& w, const std::vector<PeerEntry>& peers,
                               const Config& c) {
  std::vector<Row> rows;
  const long n = std::max(1L, absl::GetFlag(FLAGS_mem_ops));
  const bool token = w.mem == MemKind::kIdleToken;
  for (const PeerEntry& p : peers) {
    Row r = BaseRow(w, p);
    if (!r.skipped) {
      const MemSample s = SpawnProbe(p.name, w.mem, n, c.workers);
      Fail(r, s.failure);
      // The figure is the heap delta, unless the peer allocates outside malloc
      // (oneTBB takes its task memory from tbbmalloc, which maps its own pages):
      // then the heap barely moves and the RSS delta is the better estimate.
      const bool outside_malloc = r.ok && s.heap_per < 1 && s.rss_per >= 8;
      if (outside_malloc) r.note = "allocates outside malloc (heap ~0): figure is the RSS delta";
      const std::string each = token ? "per_token" : "per_op";
      r.Set(token ? "tokens" : "ops", static_cast<double>(n));
      r.Set("workers", c.workers);
      r.Set("capture_bytes", kCaptureBytes);
      r.Set("bytes_" + each, !r.ok ? kNaN : outside_malloc ? s.rss_per : s.heap_per);
      r.Set("heap_bytes_" + each, r.ok ? s.heap_per : kNaN);
      r.Set("rss_bytes_" + each, r.ok ? s.rss_per : kNaN);
      r.Set("probe_peak_rss_kib", r.ok ? s.peak_rss_kib : kNaN);
      g_probe_peak_rss_kib = std::max(g_probe_peak_rss_kib, r.ok ? s.peak_rss_kib : 0.0);
    }
    rows.push_back(r);
  }
  const std::string key = token ? "bytes_per_token" : "bytes_per_op";
  for (Row& r : rows) {
    if (!r.skipped) r.Set("peer_over_ordo", Ratio(r.Get(key), rows[0].Get(key)));
  }
  return rows;
}

// The child side of SpawnProbe.
int RunProbeChild(const std::string& spec) {
  const std::vector<std::string> parts = absl::StrSplit(spec, ':');
  std::vector<std::string> not_built;
  const std::vector<PeerEntry> peers = AllPeers(&not_built);
  MemKind kind = MemKind::kIndependent;
  bool kind_ok = false;
  for (MemKind k :
       {MemKind::kIndependent, MemKind::kChained, MemKind::kPostponed, MemKind::kIdleToken}) {
    if (parts.size() == 2 && parts[1] == MemKindName(k)) {
      kind = k;
      kind_ok = true;
    }
  }
  for (const PeerEntry& p : peers) {
    if (!kind_ok || parts[0] != p.name || p.memory == nullptr) continue;
    Oracle oracle;
    const MemSample s = p.memory(std::max(1, absl::GetFlag(FLAGS_workers)), kind,
                                 std::max(1L, absl::GetFlag(FLAGS_mem_ops)), oracle);
    if (s.failure.empty()) {
      std::printf("probe ok %.3f %.3f %.0f\n", s.heap_per, s.rss_per, PeakRssKib());
    } else {
      std::printf("probe failed %s\n", s.failure.c_str());
    }
    std::fflush(stdout);
    return s.failure.empty() ? 0 : 1;
  }
  std::printf("probe failed unknown probe %s\n", spec.c_str());
  return 2;
}

std::vector<int> ParseInts(const std::string& s) {
  std::vector<int> out;
  for (absl::string_view v : absl::StrSplit(s, ',', absl::SkipEmpty())) {
    int x;
    if (absl::SimpleAtoi(v, &x) && x > 0) out.push_back(x);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Ordo against its peers, one process run; see the file header.");
  // --help lists the flags of the files named like the program, and this one's
  // name is not: without this it listed none.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return file.find("bench/compare.cc") != absl::string_view::npos;
  };
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);
  auto microseconds = [](double us, double least) {
    return std::chrono::nanoseconds(std::llround(std::max(least, us) * 1000));
  };
  ordo_compare::OrdoTuning().tick = microseconds(absl::GetFlag(FLAGS_ordo_tick_us), 1.0);
  ordo_compare::OrdoTuning().spin = microseconds(absl::GetFlag(FLAGS_ordo_spin_us), 0.0);
  if (!absl::GetFlag(FLAGS_memory_probe).empty()) {
    return RunProbeChild(absl::GetFlag(FLAGS_memory_probe));
  }
  const bool json = absl::GetFlag(FLAGS_format) == "json";
  Config c;
  c.ops = std::max(1L, absl::GetFlag(FLAGS_ops));
  c.workers = std::max(1, absl::GetFlag(FLAGS_workers));
  c.repeat = std::max(1, absl::GetFlag(FLAGS_repeat));
  c.warmup = std::clamp(absl::GetFlag(FLAGS_warmup), 1L, c.ops);

  // The workload list, expanded.
  std::vector<Workload> workloads;
  for (absl::string_view wv :
       absl::StrSplit(absl::GetFlag(FLAGS_workloads), ',', absl::SkipEmpty())) {
    std::vector<std::string> names;
    if (wv == "all") {
      names = AllWorkloadNames();
    } else if (wv == "mem") {
      names = {"mem-independent", "mem-chained", "mem-postponed", "mem-idle-token"};
    } else if (wv == "scaling") {
      names = {"W1-scaling", "W2-scaling"};
    } else {
      names = {std::string(wv)};
    }
    for (const std::string& n : names) {
      Workload w;
      if (!MakeWorkload(n, &w)) {
        std::fprintf(stderr, "unknown workload %s (expected one of: %s; or all, mem, scaling)\n",
                     n.c_str(), absl::StrJoin(AllWorkloadNames(), " ").c_str());
        return 2;
      }
      workloads.push_back(w);
    }
  }
  const std::vector<int> scaling_producers = ParseInts(absl::GetFlag(FLAGS_scaling_producers));
  const std::vector<int> scaling_workers = ParseInts(absl::GetFlag(FLAGS_scaling_workers));
  for (const Workload& w : workloads) {
    if (w.kind == Kind::kScaling && w.ntokens > 0) {
      for (int p : scaling_producers) {
        if (p > w.ntokens) {
          std::fprintf(stderr, "%s: %d producers need at least as many tokens (--tokens=%d)\n",
                       w.name.c_str(), p, w.ntokens);
          return 2;
        }
      }
    }
  }

  std::vector<std::string> not_built;
  std::vector<PeerEntry> peers = AllPeers(&not_built);
  if (const std::string only = absl::GetFlag(FLAGS_peers); !only.empty()) {
    const std::vector<std::string> keep = absl::StrSplit(only, ',');
    // Ordo stays first: every ratio is a peer's figure over Ordo's.
    std::erase_if(peers, [&](const PeerEntry& p) {
      return std::string(p.name) != "ordo" &&
             std::find(keep.begin(), keep.end(), p.name) == keep.end();
    });
  }
  if (!json) {
    std::printf(
        "# ordo_compare: ops=%ld workers=%d repeat=%d warmup=%ld body_ns=%d, 1 producer "
        "unless stated; peer/ordo = peer figure / ordo figure (> 1: Ordo better)\n",
        c.ops, c.workers, c.repeat, c.warmup, std::max(0, absl::GetFlag(FLAGS_body_ns)));
    for (const std::string& nb : not_built) std::printf("# %s\n", nb.c_str());
    std::fflush(stdout);
  }

  std::vector<Row> rows;
  bool all_ok = true;
  Oracle oracle;
  bool first_table = true;
  std::optional<Kind> last_kind;
  for (const Workload& w : workloads) {
    std::vector<Row> wrows;
    switch (w.kind) {
      case Kind::kThroughput:
        wrows = RunThroughputRows(w, peers, c, 1, c.workers, oracle);
        break;
      case Kind::kScaling:
        for (int wk : scaling_workers) {
          for (int pr : scaling_producers) {
            for (Row& r : RunThroughputRows(w, peers, c, pr, wk, oracle)) {
              r.Set("producers", pr);
              r.Set("workers", wk);
              wrows.push_back(std::move(r));
            }
          }
        }
        break;
      case Kind::kBurst:
        wrows = RunBurstRows(w, peers, c, oracle);
        break;
      case Kind::kPaced:
        wrows = RunPacedRows(w, peers, c, oracle);
        break;
      case Kind::kIdle:
        wrows = RunIdleRows(w, peers, c, oracle);
        break;
      case Kind::kMemory:
        wrows = RunMemoryRows(w, peers, c);
        break;
    }
    if (!json) {
      // A new table when the kind changes, or for every timer/latency/footprint one.
      if (!last_kind || *last_kind != w.kind || w.kind == Kind::kBurst || w.kind == Kind::kPaced ||
          w.kind == Kind::kScaling) {
        if (!first_table) std::printf("\n");
        PrintHeader(w.kind, w.name);
        first_table = false;
      }
      last_kind = w.kind;
    }
    for (Row& r : wrows) {
      all_ok &= r.skipped || r.ok;
      if (!json) PrintRow(r);
      rows.push_back(std::move(r));
    }
    std::fflush(stdout);
  }

  rusage self{};
  getrusage(RUSAGE_SELF, &self);
  Row rss;
  rss.workload = "peak_rss";
  rss.peer = "*";
  rss.Set("peak_rss_kib", static_cast<double>(self.ru_maxrss));
  rss.Set("probe_peak_rss_kib", g_probe_peak_rss_kib > 0 ? g_probe_peak_rss_kib : kNaN);
  if (json) {
    std::printf("[\n");
    bool first = true;
    for (const std::string& nb : not_built) {
      const std::size_t colon = nb.find(':');
      std::printf("%s  {\"workload\": \"*\", \"peer\": \"%s\", \"skipped\": \"%s\"}",
                  first ? "" : ",\n", nb.substr(0, colon).c_str(),
                  JsonEscape(nb.substr(colon + 2)).c_str());
      first = false;
    }
    for (const Row& r : rows) {
      std::printf("%s  %s", first ? "" : ",\n", JsonRow(r).c_str());
      first = false;
    }
    std::printf("%s  %s\n]\n", first ? "" : ",\n", JsonRow(rss).c_str());
  } else {
    std::printf("\n# peak RSS: %ld KiB (this process, ru_maxrss)", self.ru_maxrss);
    if (g_probe_peak_rss_kib > 0) {
      std::printf("; %.0f KiB (largest memory-probe child, VmHWM)", g_probe_peak_rss_kib);
    }
    std::printf("\n");
  }
  return all_ok ? 0 : 1;
}
