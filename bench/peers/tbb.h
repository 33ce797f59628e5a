// bench/peers/tbb.h: oneTBB. A task_arena of N slots, none reserved for external
// threads, with a global_control that lets the market create N worker threads (the
// default allows hardware_concurrency - 1). The external producer hands each
// operation over with arena.enqueue(group.defer(body)): a task_group tracks the work
// and the arena's queue takes it without the producer joining the arena. TBB has no
// per-key serialization, so it runs W1 only.
#ifndef ORDO_BENCH_PEERS_TBB_H_
#define ORDO_BENCH_PEERS_TBB_H_

#include <string>

#include "oneapi/tbb/global_control.h"
#include "oneapi/tbb/task_arena.h"
#include "oneapi/tbb/task_group.h"
#include "peers/common.h"

namespace ordo_compare {

class TbbPeer {
 public:
  static constexpr const char* kName = "tbb";
  static Support Supports(bool tokens) {
    if (tokens) return {false, "TBB has no per-key serialization (W1 only)"};
    return {};
  }

  explicit TbbPeer(int workers)
      : control_(tbb::global_control::max_allowed_parallelism,
                 static_cast<std::size_t>(workers) + 1),
        arena_(workers, /*reserved_for_masters=*/0) {
    arena_.initialize();
  }
  ~TbbPeer() { Drain(); }
  TbbPeer(const TbbPeer&) = delete;
  TbbPeer& operator=(const TbbPeer&) = delete;

  void Prepare(const Plan&) {}

  std::string Run(const Plan& plan, Oracle& oracle) {
    const long ops = plan.ops();
    for (long i = 0; i < ops; ++i) {
      const int t = plan.token[i];
      arena_.enqueue(
          group_.defer([o = &oracle, id = static_cast<std::uint32_t>(i), t] { o->Ran(id, t); }));
    }
    if (!oracle.WaitDone(std::chrono::seconds(60) + std::chrono::microseconds(20) * ops)) {
      return "timed out";
    }
    return {};
  }

  // Untimed, after the counter reached ops: the task group's own bookkeeping.
  void Settle() { Drain(); }

 private:
  void Drain() {
    arena_.execute([this] { group_.wait(); });
  }

  tbb::global_control control_;
  tbb::task_arena arena_;
  tbb::task_group group_;
};

}  // namespace ordo_compare

#endif  // ORDO_BENCH_PEERS_TBB_H_
