// bench/peers/ordo.h: Ordo itself, through its public API only.
// Independent work: Post(body). Per-token work: Post(body, {.token = name}).
// Postponed work: Post(body, {.postpone_until = t}) with t on the system clock
// (ordo::Clock, the engine's default clock). Fan-out: a body calls Post. Batches
// (W1-batch, W1-fan-batch): Batch::Add, then Engine::PostBatch per plan.batch. Post, not
// Submit: no workload here reads a Handle, as no peer's post returns one (Asio's
// post and TBB's run return nothing; the pool returns nothing).
// The throughput bodies capture 16 bytes (oracle pointer, id, token index), so they
// are stored inside the operation's node. Completion: the oracle's log, polled as
// for every peer, then Engine::WaitIdle (inside the timed window) for the
// throughput workloads; the oracle's log alone for the others (WaitIdle does not
// wait for postponed operations).
#ifndef ORDO_BENCH_PEERS_ORDO_H_
#define ORDO_BENCH_PEERS_ORDO_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "ordo/engine.h"
#include "peers/common.h"

namespace ordo_compare {

// The engine's tuning for every OrdoPeer made after it is set (ordo_compare's
// --ordo_tick_us and --ordo_spin_us; the library's defaults otherwise). Set once,
// before any peer is made.
inline ordo::Options& OrdoTuning() {
  static ordo::Options options;
  return options;
}

class OrdoPeer {
 public:
  static constexpr const char* kName = "ordo";
  // Due times are on the engine's clock, the system clock.
  using DueClock = std::chrono::system_clock;
  static Support Supports(Feature /*f*/, bool /*tokens*/) { return {}; }

  explicit OrdoPeer(int workers) : engine_(WithWorkers(workers)) {}

  static ordo::Options WithWorkers(int workers) {
    ordo::Options o = OrdoTuning();
    o.workers = workers;
    return o;
  }

  // Untimed: the tokens are built once, as a user keeps its keys.
  void Prepare(const Plan& plan) {
    tokens_.clear();
    tokens_.reserve(plan.names.size());
    for (const std::string& n : plan.names) tokens_.emplace_back(n);
  }
  void Settle() {}

  // Producer `p` submits its share of the plan; any number of producers at once.
  std::string Produce(const Plan& plan, int p, Oracle& oracle) {
    long refused = 0;
    const long end = plan.end(p);
    if (plan.batch > 0) {  // W1-batch, W2-batch
      ordo::Batch batch(engine_);
      batch.Reserve(plan.batch);
      static const ordo::Token kNone{};
      for (long i = plan.begin(p); i < end; ++i) {
        const int t = plan.token[i];
        auto body = [o = &oracle, id = static_cast<std::uint32_t>(i), t] { o->Ran(id, t); };
        if (!batch.Add(body, t < 0 ? kNone : tokens_[t]).ok()) ++refused;
        if (static_cast<int>(batch.size()) == plan.batch) refused += PostBatch(batch);
      }
      refused += PostBatch(batch);
      if (refused != 0) refused_.fetch_add(refused, std::memory_order_relaxed);
      return {};
    }
    for (long i = plan.begin(p); i < end; ++i) {
      const int t = plan.token[i];
      auto body = [o = &oracle, id = static_cast<std::uint32_t>(i), t] { o->Ran(id, t); };
      const absl::Status s =
          t < 0 ? engine_.Post(body) : engine_.Post(body, {.token = tokens_[t]});
      if (!s.ok()) ++refused;
    }
    if (refused != 0) refused_.fetch_add(refused, std::memory_order_relaxed);
    return {};
  }

  // W1-fan: the producer submits the roots; each root submits its children.
  std::string Fan(const Plan& plan, Oracle& oracle) {
    const int fan = plan.fan;
    const int group = plan.batch;
    long refused = 0;
    for (long r = 0; r < plan.ops(); r += fan) {
      auto root = [this, o = &oracle, id = static_cast<std::uint32_t>(r), fan, group] {
        o->Ran(id, -1);
        if (group > 0) {
          ordo::Batch batch(engine_);
          batch.Reserve(std::min(group, fan));
          long lost = 0;
          for (int k = 1; k < fan; ++k) {
            if (!batch.Add([o, c = id + k] { o->Ran(c, -1); }).ok()) ++lost;
            if (static_cast<int>(batch.size()) == group) lost += PostBatch(batch);
          }
          lost += PostBatch(batch);
          if (lost != 0) refused_.fetch_add(lost, std::memory_order_relaxed);
          return;
        }
        for (int k = 1; k < fan; ++k) {
          if (!engine_.Post([o, c = id + k] { o->Ran(c, -1); }).ok()) {
            refused_.fetch_add(1, std::memory_order_relaxed);
          }
        }
      };
      if (!engine_.Post(root).ok()) ++refused;
    }
    if (refused != 0) refused_.fetch_add(refused, std::memory_order_relaxed);
    return {};
  }

  // After every producer returned: waits until everything ran. The end is seen
  // the peers' way, by polling the oracle (FinishesByOracle), so no engine's
  // timed window gains from a faster end-of-run signal; WaitIdle after it lets
  // the last operations' bookkeeping finish, inside the window. A refusal the
  // producers saw ends the run at once (refused operations never run); one in a
  // fan-out's children is seen once the oracle's wait times out.
  std::string Finish(const Plan& /*plan*/, Oracle& oracle) {
    if (long r = refused_.exchange(0); r != 0) return "refused=" + std::to_string(r);
    const bool done = oracle.WaitDone();
    if (long r = refused_.exchange(0); r != 0) return "refused=" + std::to_string(r);
    if (!done) return "timed out";
    if (absl::Status s = engine_.WaitIdle(); !s.ok()) return "WaitIdle: " + s.ToString();
    return {};
  }

  // Closures, for W4, W5, idle and the memory probe. False if refused.
  template <typename F>
  bool Post(F&& f) {
    return engine_.Post(std::forward<F>(f)).ok();
  }
  template <typename F>
  bool PostToken(int t, F&& f) {
    return engine_.Post(std::forward<F>(f), {.token = tokens_[t]}).ok();
  }
  template <typename F>
  bool PostAt(DueClock::time_point due, F&& f) {
    return engine_
        .Post(std::forward<F>(f),
              {.postpone_until = std::chrono::time_point_cast<ordo::Clock::duration>(due)})
        .ok();
  }
  // W4-batch: the group through one Batch (kept, so its storage is reused).
  template <typename F>
  bool PostAtBatch(std::vector<std::pair<DueClock::time_point, F>>& group) {
    long refused = 0;
    for (auto& [due, f] : group) {
      const auto until = std::chrono::time_point_cast<ordo::Clock::duration>(due);
      if (!at_batch_.AddPostponed(std::move(f), until).ok()) ++refused;
    }
    group.clear();
    return refused + PostBatch(at_batch_) == 0;
  }

 private:
  // Posts and empties `batch`; how many it held if they were refused.
  long PostBatch(ordo::Batch& batch) {
    const long n = static_cast<long>(batch.size());
    if (n == 0 || engine_.PostBatch(batch).ok()) return 0;
    batch.Clear();
    return n;
  }

  std::atomic<long> refused_{0};  // declared first: bodies still running in ~Engine use it
  std::vector<ordo::Token> tokens_;
  ordo::Engine engine_;
  ordo::Batch at_batch_{engine_};  // W4-batch's; after engine_, so destroyed before it
};

}  // namespace ordo_compare

#endif  // ORDO_BENCH_PEERS_ORDO_H_
