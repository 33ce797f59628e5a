// timer_cpu.cc: the CPU an engine's threads spend on postponed work, thread by
// thread, which ordo_compare does not show: W4's shape (a burst of --burst
// Post(f, {.postpone_until}) due --lead_ms + uniform [0, --spread_ms) ahead),
// --rounds times on one engine, each burst waited for until every operation ran.
// Prints each round's insert cost, then the CPU (user + system, from
// /proc/self/task/*/stat) of the timekeeper, the workers and the submitting
// thread, in all and per timer. The timekeeper's figure is its cost per timer:
// moving the inbox into the wheel, cascading, sorting and releasing.
//
//   build/release/bench/ordo_timer_cpu [--burst=200000] [--rounds=5] [--workers=2]
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "ordo/engine.h"

ABSL_FLAG(long, burst, 200000, "postponed operations per round");
ABSL_FLAG(int, rounds, 5, "bursts, one after another, on one engine");
ABSL_FLAG(int, workers, 2, "worker threads");
ABSL_FLAG(int, lead_ms, 5, "the earliest due time, after the burst's start");
ABSL_FLAG(int, spread_ms, 200, "due times spread uniformly over this long");

namespace {

// CPU seconds (user + system) of every thread of this process, by its name
// (the engine names its threads ordo-worker-N and ordo-timekeeper).
std::map<std::string, double> ThreadCpu() {
  std::map<std::string, double> cpu;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::string name, stat;
    std::getline(std::ifstream(task.path() / "comm"), name);
    std::getline(std::ifstream(task.path() / "stat"), stat);
    const std::size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(stat.substr(close + 2));  // from field 3, the state
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
    }
    const bool worker = name.rfind("ordo-worker-", 0) == 0;
    const bool ours = worker || name == "ordo-timekeeper";
    cpu[worker ? "workers" : ours ? name : "submitter and the rest"] += ticks / tick;
  }
  return cpu;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const long n = absl::GetFlag(FLAGS_burst);
  const int rounds = absl::GetFlag(FLAGS_rounds);
  if (n <= 0 || rounds <= 0 || absl::GetFlag(FLAGS_spread_ms) <= 0) {
    std::fprintf(stderr, "timer_cpu: --burst, --rounds and --spread_ms must be positive\n");
    return 2;
  }
  std::atomic<long> left{0};
  // After `left`: destroyed first, so operations it still runs find `left` alive.
  ordo::Engine engine({.workers = absl::GetFlag(FLAGS_workers)});
  std::mt19937_64 rng(1);
  const auto spread = std::chrono::milliseconds(absl::GetFlag(FLAGS_spread_ms));
  std::vector<ordo::Clock::time_point> due(static_cast<std::size_t>(n));
  const std::map<std::string, double> before = ThreadCpu();
  for (int round = 0; round < rounds; ++round) {
    const auto base = ordo::Clock::now() + std::chrono::milliseconds(absl::GetFlag(FLAGS_lead_ms));
    for (auto& d : due) {
      d = base + std::chrono::nanoseconds(rng() % static_cast<std::uint64_t>(
                                                      std::chrono::nanoseconds(spread).count()));
    }
    left.store(n, std::memory_order_relaxed);
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& d : due) {
      const absl::Status s = engine.Post(
          [&left] {
            // acq_rel: the last one's notify sees every other decrement.
            if (left.fetch_sub(1, std::memory_order_acq_rel) == 1) left.notify_one();
          },
          {.postpone_until = d});
      if (!s.ok()) {
        std::fprintf(stderr, "timer_cpu: refused: %s\n", s.ToString().c_str());
        return 1;
      }
    }
    const auto t1 = std::chrono::steady_clock::now();
    for (long l = left.load(std::memory_order_acquire); l != 0;
         l = left.load(std::memory_order_acquire)) {
      left.wait(l, std::memory_order_acquire);
    }
    std::printf("round %d: %ld postponed posts, insert %.1f ns each\n", round + 1, n,
                std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(n));
  }
  const std::map<std::string, double> after = ThreadCpu();
  const double timers = static_cast<double>(n) * rounds;
  std::printf("CPU over all rounds (user + system):\n");
  for (const auto& [who, seconds] : after) {
    const double used = seconds - (before.count(who) != 0 ? before.at(who) : 0.0);
    std::printf("  %-24s %8.0f ms  %7.0f ns per timer\n", who.c_str(), used * 1e3,
                used * 1e9 / timers);
  }
  return 0;
}
