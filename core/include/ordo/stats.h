// ordo/stats.h: a snapshot of an engine's counters and gauges.
//
// Engine::stats() sums per-thread counter stripes; no lock is taken and no counter
// is shared by every operation. The snapshot is not atomic across fields: under
// load, pending may lag submitted by the operations in flight during the read.
#ifndef ORDO_STATS_H_
#define ORDO_STATS_H_

#include <cstdint>
#include <string>

namespace ordo {

struct Stats {
  std::uint64_t submitted = 0;  // accepted by Submit (recurrences' occurrences included)
  std::uint64_t rejected = 0;   // refused by Submit with an error
  std::uint64_t started = 0;    // attempts started (a retried operation counts each attempt)
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;
  std::uint64_t canceled = 0;
  std::uint64_t retried = 0;    // attempts that asked for a retry and got one
  std::uint64_t pending = 0;    // accepted and not yet terminal
  std::uint64_t postponed = 0;  // timers pending in the wheel
  std::uint64_t active_chains = 0;  // chains in memory: tokens with operations, and idle
                                    // ones not yet swept (an idle engine holds none)
  std::uint64_t steals = 0;     // operations taken from another worker's deque
  std::uint64_t parks = 0;      // times a worker went to sleep
  int workers = 0;

  // The counters in Prometheus' text exposition format, names prefixed "ordo_".
  std::string ToPrometheus() const;
};

}  // namespace ordo

#endif  // ORDO_STATS_H_
