// parker.h: sleeping and waking workers with no lost wake-up.
//
// Roles: producers (anything that makes work visible: Submit, a timer release, a
// worker spilling), and workers (which search for work, then park).
// State: num_searching_ (workers awake and looking for work), num_sleepers_ and
// the sleeper stack (under mu_), one futex word per worker.
// Invariants
//   P1  A producer makes its work visible, fences, then reads num_sleepers_ and
//       num_searching_. A worker going to sleep registers (num_sleepers_ up,
//       num_searching_ down), fences, then looks for work once more. With seq_cst
//       fences on both sides (no asymmetric fences: old kernels, TSan), either
//       the worker's last look sees the work, or the producer sees the worker
//       registered (or another worker still searching, whose last look will see
//       the work). With asymmetric fences (sync.h) the producer's first fence is
//       a compiler barrier, and:
//       (a) it reads num_sleepers_ 0: a sleeper it missed either parks untimed or
//           for longer than kStrandCheck, and then fences heavily (every thread
//           of the process runs a full barrier), so its last look sees the work;
//           or parks for at most kStrandCheck with a seq_cst fence, and then may
//           sleep through the work, but wakes within kStrandCheck and searches.
//           The bound is P2's for work left behind. A worker's first park after
//           work is such a short one (WorkerLoop); only if it finds nothing in
//           it does it park long, so the heavy fence is paid once per idle
//           spell, not per park. An engine whose workers all sleep long misses
//           nothing.
//       (b) it reads a sleeper: it runs a seq_cst fence before num_searching_, so
//           the symmetric argument above holds against the searchers (their
//           fence after EndSearch, P2) and the sleepers.
//   P2  A searcher that finds work and was the last searcher notifies, after a
//       seq_cst fence, when more work is visible and either at least
//       kWakeBacklog operations are, or some sleeper sleeps long (with no
//       timeout, or one longer than kStrandCheck).
//       So a burst of submissions that a searcher did not take wakes a sleeper.
//       A smaller backlog with only short sleepers it leaves: a short sleeper
//       wakes within kStrandCheck and takes it, if the searcher, now running its
//       operation, has not come back for it first (and a submission meanwhile
//       finds no searcher and wakes a sleeper itself, by P1). A worker parks
//       with the kStrandCheck timeout when another worker is awake (that one may
//       be about to leave work behind), and long when all others sleep: with no
//       timeout (an idle engine then sleeps for good), or until the next
//       parking sweep (up to kIdleSweepInterval, 100 ms) while chains remain.
//       Both are long sleepers: a searcher wakes one for any backlog (a
//       sweep-timed sleeper counted as timed once left a few operations behind
//       a long one for up to 100 ms). If a sleeper registered long after the
//       searcher's check, its own re-check (P1) sees the backlog.
//       Waking for every left-over operation cost W5 (paced submissions in
//       small batches) a futex call before each run and a woken thread competing
//       for the cores: p50 5-7 us against 2 us with one worker.
//   P3  A wake is a pop from the sleeper stack under mu_, so each sleeper is woken
//       at most once per sleep; the woken worker counts as searching from the
//       moment it is popped, so concurrent producers do not wake a second one
//       for the same work.
//   P4  A worker's futex word goes 0 -> 1 by its waker (release) and back to 0 by
//       the worker (acquire exchange) before it sleeps again.
// Fences, not RMWs: the producer's side runs on every submission and must keep
// the counters' cache line shared (read-only) across cores; an RMW would bounce it.
// The heavy fence costs a worker microseconds per park: W5 (paced, workers park
// between operations) showed its p50 at 4.4-4.7 us with it on every park against
// 2.4 with it on untimed and long parks only.
// TSan does not model fences, but no data is published through this protocol
// (the work itself travels through the queues' own release/acquire pairs), so
// it has nothing to misreport; a lost wake-up would show as a hang in the tests.
#ifndef ORDO_CORE_SRC_PARKER_H_
#define ORDO_CORE_SRC_PARKER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "sync.h"

namespace ordo::internal {

class Parker {
 public:
  explicit Parker(int workers);

  // Producer: after making work visible (P1).
  void NotifyWork() {
    // P1, producer side. With asymmetric fences, a compiler barrier while nobody
    // sleeps (the common case under load: a seq_cst fence here drained the store
    // buffer on every submission, waiting for the node's lines), and the full
    // fence only once a sleeper shows. Without them, the full fence first.
    if (asymmetric_) {
      LightFence();
    } else {
      std::atomic_thread_fence(std::memory_order_seq_cst);
    }
    // Relaxed: ordered by the fences (P1). Sleepers first: it changes only when
    // a worker parks or wakes, so under load its line stays shared in the
    // producer's cache. num_searching_ changes every time a worker runs dry and
    // finds work again; read per submission, it cost a cross-core miss each
    // (97% of Schedule's samples in W1 with one worker).
    if (num_sleepers_.load(std::memory_order_relaxed) == 0) return;
    if (asymmetric_) std::atomic_thread_fence(std::memory_order_seq_cst);
    if (num_searching_.load(std::memory_order_relaxed) != 0) return;
    WakeOne();
  }

  // Worker: begins and ends a search (spinning/stealing before parking).
  void BeginSearch() {
    // Relaxed: a hint for producers (P1 is carried by the fences).
    num_searching_.fetch_add(1, std::memory_order_relaxed);
  }
  // Returns true if this was the last searcher (the caller then notifies, P2).
  bool EndSearch() {
    return num_searching_.fetch_sub(1, std::memory_order_seq_cst) == 1;
  }

  // Worker `w`, searching, found nothing: registers as a sleeper, re-checks with
  // `has_work` (P1) and sleeps until woken or `timeout` (negative = none).
  // Returns when it should search again; it is then counted as searching.
  void Park(int w, const std::function<bool()>& has_work, std::chrono::nanoseconds timeout);

  // Wakes every sleeper (shutdown).
  void WakeAll();

  int sleepers() const { return num_sleepers_.load(std::memory_order_relaxed); }
  // P2: a long sleeper (no timeout, or one over kStrandCheck) exists. Relaxed:
  // read after P2's fence.
  bool HasLongSleeper() const { return num_long_.load(std::memory_order_relaxed) != 0; }

 private:
  struct alignas(kCacheLine) Slot {
    Atomic<std::uint32_t> word{0};
    bool long_sleep = false;  // registered as a long sleeper (P2); under mu_
  };
  // Drops w's long-sleeper mark as it leaves the sleeper stack. Under mu_.
  void Forget(int w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WakeOne();
  // Removes w from the sleeper stack if still there; true if removed.
  bool Unregister(int w);

  const bool asymmetric_;  // P1's fences: LightFence/HeavyFence (sync.h)
  // Separate lines: producers read num_sleepers_ on every submission, and
  // searching workers write num_searching_ all the time.
  alignas(kCacheLine) Atomic<int> num_searching_{0};
  alignas(kCacheLine) Atomic<int> num_sleepers_{0};
  Atomic<int> num_long_{0};  // long sleepers, P2 (written under mu_)
  alignas(kCacheLine) Mutex mu_;
  std::vector<int> sleepers_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Slot[]> slots_;
};

}  // namespace ordo::internal

#endif  // ORDO_CORE_SRC_PARKER_H_
