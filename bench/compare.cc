// ordo_compare: Ordo against its peers on the same workloads, interleaved in one
// process run, reporting absolute ns/op and peer/ordo ratios (> 1: Ordo is faster).
//
//   ordo_compare                                # W1, W2, W3; 1,000,000 ops; 2 workers; 5 runs
//   ordo_compare --ops=200000 --workers=4 --repeat=3 --workloads=W2
//   ordo_compare --format=json
//
// Workloads (1 external producer thread submits; N workers; trivial body that only
// records the oracle, see peers/common.h):
//   W1  independent operations
//   W2  --tokens string tokens (default 10,000), uniform random
//   W3  --hot string tokens (default 4)
// Peers (bench/peers/<name>.h; asio and tbb are built only when their Debian
// package was found at configure time):
//   ordo   ordo::Engine, public API
//   limit  raw moodycamel::ConcurrentQueue hand-off to spinning consumers (W1 only)
//   asio   io_context + post; one strand per token
//   tbb    task_arena + task_group (W1 only: TBB has no per-key serialization)
//   pool   mutex + condition_variable + deque<function> + per-token chain map
// Each repetition builds every engine afresh, warms it with one small untimed run
// (--warmup operations), then times from the first submit until every operation
// has run: Ordo waits with WaitIdle, the peers with the oracle's completion counter
// (a condition variable woken by the last body). The peer order rotates between
// repetitions. Every run checks exactly-once execution and per-token order; a
// peer/workload with any failed run prints FAILED and the exit status is 1.
// Reported: the median of --repeat runs, with min-max.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "peers/common.h"
#include "peers/limit.h"
#include "peers/ordo.h"
#include "peers/pool.h"
#ifdef ORDO_COMPARE_HAVE_ASIO
#include "peers/asio.h"
#endif
#ifdef ORDO_COMPARE_HAVE_TBB
#include "peers/tbb.h"
#endif

ABSL_FLAG(long, ops, 1000000, "operations per timed run");
ABSL_FLAG(int, workers, 2, "worker threads of every engine");
ABSL_FLAG(int, repeat, 5, "timed runs per workload and engine (the median is reported)");
ABSL_FLAG(std::string, workloads, "W1,W2,W3", "comma-separated: W1, W2, W3");
ABSL_FLAG(int, tokens, 10000, "tokens in W2");
ABSL_FLAG(int, hot, 4, "tokens in W3");
ABSL_FLAG(long, warmup, 50000, "operations in each untimed warm-up run (capped at --ops)");
ABSL_FLAG(std::string, format, "text", "text or json");

namespace {

using ordo_compare::Oracle;
using ordo_compare::Plan;
using ordo_compare::Support;
using SteadyClock = std::chrono::steady_clock;

Plan MakePlan(int ntokens, long ops, std::uint64_t seed) {
  Plan plan;
  plan.names.reserve(ntokens);
  for (int t = 0; t < ntokens; ++t) plan.names.push_back("token-" + std::to_string(t));
  plan.token.resize(ops);
  std::mt19937_64 rng(seed);
  for (long i = 0; i < ops; ++i) {
    plan.token[i] = ntokens == 0 ? -1 : static_cast<int>(rng() % ntokens);
  }
  return plan;
}

struct Sample {
  double ns_per_op = 0;
  std::string failure;  // empty: the run was correct
};

// One repetition for one engine: build, warm up (untimed), time one run, check.
template <typename Peer>
Sample RunOne(int workers, const Plan& warm, const Plan& plan, Oracle& oracle) {
  Sample s;
  Peer peer(workers);
  peer.Prepare(warm);
  oracle.Reset(warm.ops(), static_cast<int>(warm.names.size()));
  s.failure = peer.Run(warm, oracle);
  peer.Settle();
  if (s.failure.empty()) s.failure = oracle.Check();
  if (!s.failure.empty()) {
    s.failure = "warm-up: " + s.failure;
    return s;
  }
  peer.Prepare(plan);
  oracle.Reset(plan.ops(), static_cast<int>(plan.names.size()));
  const auto start = SteadyClock::now();
  s.failure = peer.Run(plan, oracle);
  const auto end = SteadyClock::now();
  peer.Settle();
  if (s.failure.empty()) s.failure = oracle.Check();
  s.ns_per_op = std::chrono::duration<double, std::nano>(end - start).count() /
                static_cast<double>(plan.ops());
  return s;
}

struct PeerEntry {
  const char* name;
  Support (*supports)(bool tokens);
  Sample (*run)(int, const Plan&, const Plan&, Oracle&);
};

template <typename Peer>
PeerEntry Entry() {
  return {Peer::kName, &Peer::Supports, &RunOne<Peer>};
}

struct Row {
  std::string workload;
  std::string peer;
  bool skipped = false;
  std::string note;  // why skipped, or the failure
  bool ok = true;
  double median = 0, min = 0, max = 0;
  double ratio = 0;  // peer median / ordo median; 0 when unknown
};

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Ordo against its peers, one process run; see the file header.");
  absl::ParseCommandLine(argc, argv);
  const bool json = absl::GetFlag(FLAGS_format) == "json";
  const long ops = std::max(1L, absl::GetFlag(FLAGS_ops));
  const int workers = std::max(1, absl::GetFlag(FLAGS_workers));
  const int repeat = std::max(1, absl::GetFlag(FLAGS_repeat));
  const long warmup = std::clamp(absl::GetFlag(FLAGS_warmup), 1L, ops);

  std::vector<PeerEntry> peers = {Entry<ordo_compare::OrdoPeer>(),
                                  Entry<ordo_compare::LimitPeer>()};
  std::vector<Row> not_built;
#ifdef ORDO_COMPARE_HAVE_ASIO
  peers.push_back(Entry<ordo_compare::AsioPeer>());
#else
  not_built.push_back({"*", "asio", true, "not built: asio.hpp (libasio-dev) not found at configure time"});
#endif
#ifdef ORDO_COMPARE_HAVE_TBB
  peers.push_back(Entry<ordo_compare::TbbPeer>());
#else
  not_built.push_back({"*", "tbb", true, "not built: TBB (libtbb-dev) not found at configure time"});
#endif
  peers.push_back(Entry<ordo_compare::PoolPeer>());

  std::vector<Row> rows;
  bool all_ok = true;
  if (!json) {
    std::printf("# ordo_compare: ops=%ld workers=%d repeat=%d warmup=%ld, 1 producer; "
                "peer/ordo = peer ns/op / ordo ns/op (> 1: Ordo faster)\n",
                ops, workers, repeat, warmup);
    for (const Row& r : not_built) std::printf("# %s: %s\n", r.peer.c_str(), r.note.c_str());
    std::printf("%-9s %-7s %-27s %-10s %s\n", "workload", "peer", "ns/op (median, min-max)",
                "peer/ordo", "note");
    std::fflush(stdout);
  }
  Oracle oracle;
  for (absl::string_view wv : absl::StrSplit(absl::GetFlag(FLAGS_workloads), ',')) {
    const std::string w(wv);
    int ntokens;
    if (w == "W1") {
      ntokens = 0;
    } else if (w == "W2") {
      ntokens = std::max(1, absl::GetFlag(FLAGS_tokens));
    } else if (w == "W3") {
      ntokens = std::max(1, absl::GetFlag(FLAGS_hot));
    } else {
      std::fprintf(stderr, "unknown workload %s (expected W1, W2 or W3)\n", w.c_str());
      return 2;
    }
    // Which engines run this workload.
    std::vector<std::size_t> active;
    std::vector<Row> wrows(peers.size());
    for (std::size_t p = 0; p < peers.size(); ++p) {
      wrows[p].workload = w;
      wrows[p].peer = peers[p].name;
      const Support s = peers[p].supports(ntokens > 0);
      if (s.ok) {
        active.push_back(p);
      } else {
        wrows[p].skipped = true;
        wrows[p].note = s.why;
      }
    }
    std::vector<std::vector<Sample>> samples(peers.size());
    for (int k = 0; k < repeat; ++k) {
      const Plan warm = MakePlan(ntokens, warmup, 7919 + k);
      const Plan plan = MakePlan(ntokens, ops, 1000 + k);
      for (std::size_t j = 0; j < active.size(); ++j) {
        const std::size_t p = active[(j + k) % active.size()];  // rotate the order
        samples[p].push_back(peers[p].run(workers, warm, plan, oracle));
      }
    }
    for (std::size_t p : active) {
      Row& r = wrows[p];
      std::vector<double> ns;
      for (const Sample& s : samples[p]) {
        if (!s.failure.empty()) {
          r.ok = false;
          r.note = s.failure;
        }
        ns.push_back(s.ns_per_op);
      }
      std::sort(ns.begin(), ns.end());
      r.median = ns.size() % 2 ? ns[ns.size() / 2] : (ns[ns.size() / 2 - 1] + ns[ns.size() / 2]) / 2;
      r.min = ns.front();
      r.max = ns.back();
      all_ok &= r.ok;
    }
    const Row& ordo_row = wrows[0];
    for (Row& r : wrows) {
      if (!r.skipped && r.ok && ordo_row.ok && ordo_row.median > 0) {
        r.ratio = r.median / ordo_row.median;
      }
    }
    for (const Row& r : wrows) {
      rows.push_back(r);
      if (json) continue;
      if (r.skipped) {
        std::printf("%-9s %-7s %-27s %-10s skipped: %s\n", r.workload.c_str(), r.peer.c_str(),
                    "-", "-", r.note.c_str());
      } else if (!r.ok) {
        std::printf("%-9s %-7s %-27s %-10s %s\n", r.workload.c_str(), r.peer.c_str(), "FAILED",
                    "-", r.note.c_str());
      } else {
        const std::string ns = absl::StrFormat("%.0f (%.0f-%.0f)", r.median, r.min, r.max);
        const std::string ratio = r.ratio > 0 ? absl::StrFormat("%.2f", r.ratio) : "-";
        std::printf("%-9s %-7s %-27s %s\n", r.workload.c_str(), r.peer.c_str(), ns.c_str(),
                    ratio.c_str());
      }
    }
    std::fflush(stdout);
  }
  if (json) {
    std::printf("[\n");
    bool first = true;
    for (const Row& r : not_built) {
      std::printf("%s  {\"workload\": \"*\", \"peer\": \"%s\", \"skipped\": \"%s\"}",
                  first ? "" : ",\n", r.peer.c_str(), JsonEscape(r.note).c_str());
      first = false;
    }
    for (const Row& r : rows) {
      if (r.skipped) {
        std::printf("%s  {\"workload\": \"%s\", \"peer\": \"%s\", \"skipped\": \"%s\"}",
                    first ? "" : ",\n", r.workload.c_str(), r.peer.c_str(),
                    JsonEscape(r.note).c_str());
      } else {
        std::printf(
            "%s  {\"workload\": \"%s\", \"peer\": \"%s\", \"ops\": %ld, \"workers\": %d, "
            "\"producers\": 1, \"repeat\": %d, \"ok\": %s, \"ns_per_op\": %.2f, "
            "\"min_ns_per_op\": %.2f, \"max_ns_per_op\": %.2f, \"peer_over_ordo\": %s%s}",
            first ? "" : ",\n", r.workload.c_str(), r.peer.c_str(), ops, workers, repeat,
            r.ok ? "true" : "false", r.ok ? r.median : -1.0, r.min, r.max,
            r.ratio > 0 ? absl::StrFormat("%.4f", r.ratio).c_str() : "null",
            r.ok ? "" : (", \"failure\": \"" + JsonEscape(r.note) + "\"").c_str());
      }
      first = false;
    }
    std::printf("\n]\n");
  }
  return all_ok ? 0 : 1;
}
