// bench/peers/tbb.h: oneTBB. A task_arena of N slots, none reserved for external
// threads, with a global_control that lets the market create N worker threads (the
// default allows hardware_concurrency - 1). An external producer hands each
// operation over with arena.enqueue(group.defer(body)): a task_group tracks the work
// and the arena's queue takes it without the producer joining the arena (several
// producers may do so at once). Fan-out: a body calls group.run, which spawns into
// the running worker's own deque. TBB has no per-key serialization and no timers,
// so it runs the independent workloads only.
#ifndef ORDO_BENCH_PEERS_TBB_H_
#define ORDO_BENCH_PEERS_TBB_H_

#include <string>
#include <utility>

#include "oneapi/tbb/global_control.h"
#include "oneapi/tbb/task_arena.h"
#include "oneapi/tbb/task_group.h"
#include "peers/common.h"

namespace ordo_compare {

class TbbPeer : public FinishesByOracle {
 public:
  static constexpr const char* kName = "tbb";
  static Support Supports(Feature f, bool tokens) {
    if (tokens) return {false, "TBB has no per-key serialization (independent work only)"};
    if (f == Feature::kPostpone) return {false, "TBB has no timers"};
    if (f == Feature::kBatch) {
      return {false, "task_group has no batch submit (tasks go one run() each: see W1, W1-fan)"};
    }
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

  std::string Produce(const Plan& plan, int p, Oracle& oracle) {
    const long end = plan.end(p);
    for (long i = plan.begin(p); i < end; ++i) {
      const int t = plan.token[i];
      arena_.enqueue(
          group_.defer([o = &oracle, id = static_cast<std::uint32_t>(i), t] { o->Ran(id, t); }));
    }
    return {};
  }

  std::string Fan(const Plan& plan, Oracle& oracle) {
    const int fan = plan.fan;
    for (long r = 0; r < plan.ops(); r += fan) {
      arena_.enqueue(group_.defer([this, o = &oracle, id = static_cast<std::uint32_t>(r), fan] {
        o->Ran(id, -1);
        for (int k = 1; k < fan; ++k) group_.run([o, c = id + k] { o->Ran(c, -1); });
      }));
    }
    return {};
  }

  // Untimed, after the counter reached ops: the task group's own bookkeeping.
  void Settle() { Drain(); }

  template <typename F>
  bool Post(F&& f) {
    arena_.enqueue(group_.defer(std::forward<F>(f)));
    return true;
  }

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
