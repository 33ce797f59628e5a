// worker.cc: the worker loop (own deque, injector, steal, park), running an
// operation, and moving a chain on. See engine_impl.h for the scheduling rule.
#include <cxxabi.h>

#include <exception>
#include <limits>
#include <new>
#include <thread>
#include <unordered_set>

#include "engine_impl.h"
#include "op_pool.h"
#include "ordo/recurrence.h"
#include "retry_status.h"

namespace ordo::internal {

constinit thread_local Worker* t_worker = nullptr;  // engine_impl.h

namespace {
thread_local EngineImpl* t_running_engine = nullptr;
thread_local Attempt* t_attempt = nullptr;

// The error of a recurring occurrence after which no next one could be made.
constexpr const char* kSeriesOutOfMemory =
    "out of memory: the series' next occurrence could not be made, so the series ended";

// An operation's error or cancel text, or, if making it finds no memory, one
// that needs none: "out of memory" fits std::string's inline bytes. The run
// path cannot back out of ending an operation, and a text it could not make
// ended the process (from inside a catch handler, for an exception's what()).
template <typename F>
std::string TextOr(F&& make) {
  try {
    return make();
  } catch (const std::bad_alloc&) {
    return std::string("out of memory");
  }
}

std::uint32_t NextRandom(std::uint32_t& s) {  // xorshift32
  s ^= s << 13;
  s ^= s >> 17;
  s ^= s << 5;
  return s;
}
}  // namespace

bool EngineImpl::InCallableOf(const EngineImpl* e) { return t_running_engine == e; }
bool EngineImpl::OnWorkerOf(const EngineImpl* e) {
  return t_worker != nullptr && t_worker->engine == e;
}

// ---------------------------------------------------------------------------
// Stripe leases. An outside thread that submits takes one of the engine's
// leasable stripes for itself and keeps it in a small thread-local cache, keyed
// by the engine's serial, until the thread exits or the cache needs the slot. On
// its own stripe it counts and marks its submits in flight with plain stores.
//   L1  A leasable stripe has at most one lessee: taken by CAS false -> true
//       (acquire), given back by a store of false (release) after the lessee's
//       last write, so the next lessee continues its counts.
//   L2  A lease is given back only while its engine is alive: the registry of
//       live serials is checked and the stripe released under one mutex, and
//       ~EngineImpl unregisters under it before the stripes are freed.
//   L3  Serials are never reused, so a cached lease of a destroyed engine never
//       matches a new engine at the same address.
//   L4  The cache evicts only a lease no submit of its thread is inside
//       (`submitting` 0): a submit may nest others (a callable's constructor
//       runs inside its submit), and the outer one writes its stripe to the end.
// With more submitting threads than leasable stripes, the rest share the first
// kSharedStripes and count with RMWs.

namespace {

std::mutex& RegistryMutex() {
  static std::mutex* mu = new std::mutex();  // never destroyed: thread exits use it
  return *mu;
}
// A standard set: an engine whose construction runs out of memory here throws
// and leaves the set as it was (Debian's absl leaves a table that could not
// grow broken, and this one every engine of the process reads).
std::unordered_set<std::uint64_t>& LiveEngines() {
  static auto* live = new std::unordered_set<std::uint64_t>();
  return *live;
}

struct Lease {
  std::uint64_t serial = 0;  // 0: empty
  Stripe* stripe = nullptr;
  bool owned = false;  // leased (L1), not a shared stripe
};

// GiveBack, for a caller that holds the registry mutex.
void GiveBackLocked(Lease& l) {
  if (l.owned && LiveEngines().contains(l.serial)) {
    FlushOwnCredits(*l.stripe);  // K2 (engine_impl.cc): reclaimable again
    // D2: the rest of our block of ids is not the next lessee's, whose ids
    // must keep increasing in its own order.
    l.stripe->id_next = l.stripe->id_end;
    // Release: our counts before the next lessee's (L1).
    l.stripe->leased.store(false, std::memory_order_release);
  }
  l = Lease{};
}

void GiveBack(Lease& l) {
  if (!l.owned) {
    l = Lease{};  // a shared stripe: nothing to give back, no lock
    return;
  }
  std::lock_guard<std::mutex> lock(RegistryMutex());
  GiveBackLocked(l);
}

// Set as this thread's leases go back. A thread_local built before the
// thread's first submit is destroyed after t_leases; if its destructor submits,
// it takes a shared stripe (it read the destroyed leases, and leased a stripe
// that nothing would give back: L1's lessee gone, its credits with it).
// Trivially destructible, so readable to the thread's very end.
thread_local constinit bool t_leases_gone = false;

struct ThreadLeases {
  static constexpr int kSlots = 4;  // engines a thread submits to at once, cached
  Lease slot[kSlots];
  unsigned victim = 0;
  ~ThreadLeases() {
    for (Lease& l : slot) GiveBack(l);
    t_leases_gone = true;
  }
};
thread_local ThreadLeases t_leases;

}  // namespace

std::uint64_t RegisterEngine() {
  static Atomic<std::uint64_t> next{0};
  // Relaxed: uniqueness only; the registry mutex orders the rest.
  const std::uint64_t serial = next.fetch_add(1, std::memory_order_relaxed) + 1;
  std::lock_guard<std::mutex> lock(RegistryMutex());
  LiveEngines().insert(serial);
  return serial;
}

void UnregisterEngine(std::uint64_t serial) {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  LiveEngines().erase(serial);
}

bool PinEngine(std::uint64_t serial, EngineImpl* engine) {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  if (!LiveEngines().contains(serial)) return false;
  // Relaxed: the registry mutex orders it before UnregisterEngine's erase,
  // and so before the destructor's wait (E1).
  engine->explain_pins_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

Stripe& EngineImpl::SharedStripe() {
  // Relaxed: only spreads threads over the shared stripes.
  return external_[next_shared_.fetch_add(1, std::memory_order_relaxed) % kSharedStripes];
}

Stripe& EngineImpl::ExternalStripe() {
  if (t_leases_gone) [[unlikely]] return SharedStripe();  // late submits, above
  ThreadLeases& leases = t_leases;
  for (Lease& l : leases.slot) {
    if (l.serial == serial_) return *l.stripe;
  }
  // L4: the lease evicted is one no submit of this thread is inside. A
  // callable's constructor runs inside its submit (PlaceCallable) and may
  // submit to other engines; evicting the outer submit's lease there let
  // another thread lease that stripe while the outer submit still wrote it.
  // The look is under the registry mutex, with the engine's liveness: a cached
  // lease may be of an engine destroyed since (L2), whose stripes are freed (a
  // look without it read them). Relaxed: a live leased stripe's `submitting`
  // is this thread's own to write. The victim goes back under the same lock
  // (L2), before a stripe of this engine is leased for its slot.
  int victim = -1;
  {
    std::lock_guard<std::mutex> lock(RegistryMutex());
    for (int tries = 0; tries < ThreadLeases::kSlots && victim < 0; ++tries) {
      const int i = static_cast<int>(leases.victim++ % ThreadLeases::kSlots);
      const Lease& l = leases.slot[i];
      const bool busy = l.owned && LiveEngines().contains(l.serial) &&
                        l.stripe->submitting.load(std::memory_order_relaxed) != 0;
      if (!busy) victim = i;
    }
    if (victim >= 0) GiveBackLocked(leases.slot[victim]);
  }
  // Every slot is inside a submit (four engines nested): a shared stripe for
  // this one, and no lease taken.
  if (victim < 0) return SharedStripe();
  Lease fresh{serial_, nullptr, false};
  for (std::size_t i = kSharedStripes; i < kExternalStripes; ++i) {
    Stripe& s = external_[i];
    bool expected = false;
    // Relaxed look first (no RMW on a taken stripe); acquire CAS: L1.
    if (!s.leased.load(std::memory_order_relaxed) &&
        s.leased.compare_exchange_strong(expected, true, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
      fresh.stripe = &s;
      fresh.owned = true;
      break;
    }
  }
  // All leased to other threads: a shared stripe, cached like a lease (it is
  // never given back, owned false), so this thread does not look again.
  if (fresh.stripe == nullptr) fresh.stripe = &SharedStripe();
  leases.slot[victim] = fresh;
  return *fresh.stripe;
}

void EngineImpl::Schedule(Operation* op) { Schedule(op, MyStripe()); }

void EngineImpl::Schedule(Operation* op, Stripe& st) {
  // One operation from one of this engine's workers (a job submitting, a
  // chain's next): the batch path's first case, without its loop and call.
  Worker* w = t_worker;
  if (w != nullptr && w->engine == this) {
    // Relaxed: a check of our own ownership (the caller took it).
    ORDO_DCHECK(op->word.load(std::memory_order_relaxed) & kOwnedBit, "scheduling an unowned op");
    Count(st, st.scheduled, 1);
    PushLocal(w, op);
    parker_->NotifyWork();
    return;
  }
  Schedule(&op, 1, st);
}

void EngineImpl::Schedule(Operation** ops, std::size_t n, Stripe& st) {
  // The caller owns every node (H1-H3: by its store for a new independent node,
  // by an RMW for a chain head) and hands each to a run-queue entry. The queues'
  // own release/acquire pairs publish the caller's writes to the popper. One
  // wake-up for all: a woken worker that finds more than it takes wakes the next
  // (Parker P2), as after any burst.
  // Relaxed: a check of our own ownership (the caller took it).
  ORDO_DCHECK(ops[0]->word.load(std::memory_order_relaxed) & kOwnedBit,
              "scheduling an unowned op");
  Count(st, st.scheduled, n);
  Worker* w = t_worker;
  if (w != nullptr && w->engine == this) {
    for (std::size_t i = 0; i < n; ++i) PushLocal(w, ops[i]);
  } else if (st.single_writer) {
    // A leased stripe (one lessee at a time, L1): its explicit producer.
    if (st.producer == nullptr) st.producer = injector_.MakeProducerToken();
    if (n == 1) {
      injector_.Push(*st.producer, ops[0]);
    } else {
      injector_.PushBulk(*st.producer, ops, n);
    }
  } else if (n == 1) {
    injector_.Push(ops[0]);
  } else {
    injector_.PushBulk(ops, n);
  }
  parker_->NotifyWork();
}

void EngineImpl::PushLocal(Worker* w, Operation* op) {
  if (!w->deque.Push(op)) {
    // Full: move half of our deque and op to the injector, oldest first, through
    // this worker's own explicit producer (made on the first spill; only this
    // thread pushes through it).
    Operation* spill[WorkDeque::kCapacity / 2 + 1];
    std::size_t n = w->deque.Steal(spill, WorkDeque::kCapacity / 2);
    spill[n++] = op;
    if (w->stripe.producer == nullptr) w->stripe.producer = injector_.MakeProducerToken();
    injector_.PushBulk(*w->stripe.producer, spill, n);
  }
}

std::uint32_t EngineImpl::TakeHead(Operation* op, std::uint32_t* next) {
  // acq_rel: head and owner bits join the state word in one RMW (H1); acquire
  // sees the state another thread set, release publishes our chain ownership.
  std::uint32_t w = op->word.load(std::memory_order_acquire);
  do {
    ORDO_CHECK_OP((w & kHeadBit) == 0, "an operation became head twice", op->id_relaxed());
    *next = TakeOwnershipIfUnowned(w | kHeadBit);
  } while (!op->word.compare_exchange_weak(w, *next, std::memory_order_acq_rel,
                                           std::memory_order_acquire));
  return w;
}

void EngineImpl::MakeHead(Operation* op) {
  if (BecomeHead(op)) Schedule(op);
}

bool EngineImpl::BecomeHead(Operation* op) {
  if (op->chain != nullptr) {
    // Release: a walker that loads op here sees op's fields. Not seq_cst: the
    // hazard protocol's store-then-load is the runner's (a later head_ store,
    // then its hazard_ load: AdvanceChain, TryEmpty), and the activator loads no
    // hazard after this store. A walker's re-read in PinHead cannot return op
    // once the runner's seq_cst store of the next head precedes it in the total
    // order, since this store happens-before that one; so PinHead's guarantee
    // holds. The xchg a seq_cst store costs on x86 was one of the locked
    // instructions of every activation (nearly every submit in W2).
    op->chain->head_.store(op, std::memory_order_release);
  }
  std::uint32_t next;
  const std::uint32_t w = TakeHead(op, &next);
  const State s = StateOf(w);
  ORDO_CHECK_OP(!IsTerminal(s) || s == State::kCanceled, "a finished operation became head",
                op->id_relaxed());
  ORDO_CHECK_OP(s != State::kInProgress, "a started operation became head", op->id_relaxed());
  // Waiting or Canceled: ours, to a worker (a canceled one is skipped there).
  // Postponed or Suspended: held; H2 schedules it when it is released.
  return TookOwnership(w, next);
}

// H6 (operation.h): nobody else can reach op until head_ names it, so nobody
// can have changed its word since its submitter wrote it.
void EngineImpl::BecomePrivateHead(Operation* op) {
  // Relaxed: the word is ours alone (H6); the release below publishes it.
  const std::uint32_t w = op->word.load(std::memory_order_relaxed);
  ORDO_DCHECK(StateOf(w) == State::kWaiting && (w & kHeadBit) == 0,
              "a private head that is not a fresh Waiting node");
  op->word.store(w | kHeadBit | kOwnedBit, std::memory_order_relaxed);
  TestPoint(TestPointId::kPrivateHeadBitsStored, op);
  // Release: a walker that loads op from head_ sees its word (BecomeHead).
  op->chain->head_.store(op, std::memory_order_release);
}

bool EngineImpl::HasVisibleWork() const {
  if (injector_.size_approx() != 0) return true;
  for (const auto& w : workers_) {
    if (w->deque.size() != 0) return true;
  }
  return false;
}

void EngineImpl::ShareBacklog() {
  // Parker P2. A sleeper is woken (a futex call, microseconds here, before our
  // operation runs, and a thread that then competes for the cores) only when the
  // backlog is large, or when some sleeper would not come back soon on its own
  // (a long sleeper); a few operations and only short sleepers: they come within
  // kStrandCheck, and we are likely back for them first.
  const std::size_t backlog = VisibleBacklog();
  if (backlog == 0) return;
  if (backlog >= kWakeBacklog || parker_->HasLongSleeper()) parker_->NotifyWork();
}

std::size_t EngineImpl::VisibleBacklog() const {
  std::size_t n = injector_.size_approx();
  for (const auto& w : workers_) n += w->deque.size();
  return n;
}

Operation* EngineImpl::Steal(Worker* w) {
  const std::size_t n = workers_.size();
  if (n <= 1) return nullptr;
  const std::size_t start = NextRandom(w->rng) % n;
  for (std::size_t i = 0; i < n; ++i) {
    Worker* victim = workers_[(start + i) % n].get();
    if (victim == w) continue;
    Operation* got[WorkDeque::kCapacity / 2 + 1];
    std::size_t k = victim->deque.Steal(got, WorkDeque::kCapacity / 2);
    if (k == 0) continue;
    Count(w->stripe, w->stripe.steals, k);
    for (std::size_t j = 1; j < k; ++j) {
      bool ok = w->deque.Push(got[j]);
      ORDO_CHECK(ok, "a stolen half did not fit an empty deque");
    }
    // More than we can start at once: share it (Parker P2's rule), as after an
    // injector batch. A worker that steals right after running an operation is
    // not searching, so no EndSearch shares it for us: a sleeper that had just
    // looked at both deques slept on past what we moved here.
    if (k > 1) ShareBacklog();
    return got[0];
  }
  return nullptr;
}

std::size_t EngineImpl::PopInjector(Worker* w, Operation** out, std::size_t max) {
  return pop_lease_ ? injector_.PopBulkIfFree(w->consumer, out, max, w->pop_lease)
                    : injector_.PopBulk(w->consumer, out, max);
}

void EngineImpl::PullInjectorBatch(Worker* w) {
  Operation* batch[kInjectorBatch];
  const std::size_t room = WorkDeque::kCapacity - w->deque.size();
  if (room == 0) return;  // and so no lease taken for nothing
  const std::size_t n = PopInjector(w, batch, std::min<std::size_t>(room, kInjectorBatch));
  for (std::size_t i = 0; i < n; ++i) {
    // The owner alone pushes; room was measured, so only a full deque refuses.
    if (!w->deque.Push(batch[i])) injector_.PushBulk(batch + i, 1);
  }
}

Operation* EngineImpl::FindWork(Worker* w) {
  Operation* batch[kInjectorBatch];
  // Fairness: every kInjectorCheckInterval items, move a batch of outside
  // submissions to the back of our deque, so a deque that keeps refilling itself
  // (chains, fan-out) cannot starve the injector. Behind, not ahead: one
  // producer's operations keep their order.
  if (++w->tick % kInjectorCheckInterval == 0) PullInjectorBatch(w);
  if (Operation* op = w->deque.Pop()) {
    // The node after next, fetched for writing while this one runs: the
    // submitter wrote it last, so it is a cross-core miss, and the worker writes
    // its state word. The next one was fetched the same way a round ago.
    if (Operation* ahead = w->deque.Peek(1)) PrefetchForWrite(ahead);
    return op;
  }
  // One popper at a time (injector.h, J1-J4), with kPopLeaseMinWorkers or more:
  // if another worker is taking a batch, we steal instead.
  std::size_t n = PopInjector(w, batch, kInjectorBatch);
  if (n > 0) {
    for (std::size_t i = 1; i < n; ++i) {
      bool ok = w->deque.Push(batch[i]);
      ORDO_CHECK(ok, "an injector batch did not fit an empty deque");
    }
    // The two nodes that run next, as after a Pop above.
    for (std::size_t i = 1; i < std::min<std::size_t>(n, 3); ++i) {
      PrefetchForWrite(batch[i]);
    }
    // More than we can start at once: share it (Parker P2's rule).
    if (n > 1) ShareBacklog();
    return batch[0];
  }
  return Steal(w);
}

void EngineImpl::WorkerLoop(Worker* w) {
  t_worker = w;
  w->rng = 0x9e3779b9u * static_cast<std::uint32_t>(w->index + 1);
  parker_->BeginSearch();
  bool searching = true;
  for (;;) {
    Operation* op = FindWork(w);
    if (op == nullptr) {
      if (!searching) {
        parker_->BeginSearch();
        searching = true;
      }
      // K2 (engine_impl.cc): our own credits back where a submitter can reclaim
      // them, before we may park.
      FlushOwnCredits(w->stripe);
      // Tell WaitIdle/Shutdown waiters that a worker ran out of work: either
      // they see our last "finished" count or we see them.
      WakeIdleWaiters();
      // Spin a little before parking: a parked thread costs microseconds to wake.
      // One worker at a time spins for Options::spin (the spinner); the others
      // spin an eighth of it. A lightly loaded engine so burns about one core
      // waiting, not one per worker (W5: 1.3 -> 1.0 cores on 2 workers), while a
      // busy one keeps its workers between bursts a few microseconds apart
      // (parking them at once cost W2/W3 a third of their throughput: tens of
      // thousands of park/wake cycles per million operations).
      // The clock is read every 16 rounds only: on virtual machines a clock read
      // can cost more than a round.
      // Relaxed: spinner_ is a hint; no data is published through it.
      const bool spinner = spinner_.load(std::memory_order_relaxed) == 0 &&
                           !spinner_.exchange(true, std::memory_order_relaxed);
      const auto spin_until =
          std::chrono::steady_clock::now() + (spinner ? options_.spin : options_.spin / 8);
      for (unsigned round = 1; op == nullptr && !stop_.load(std::memory_order_acquire);
           ++round) {
        if (round % 16 == 0 && std::chrono::steady_clock::now() >= spin_until) break;
        for (int i = 0; i < 32; ++i) CpuRelax();
        std::this_thread::yield();
        op = FindWork(w);
      }
      if (spinner) spinner_.store(false, std::memory_order_relaxed);  // a hint, as above
      if (op == nullptr) {
        // Acquire: pairs with the release store in StopThreads (from the
        // destructor, or a constructor that failed); everything is drained by then.
        if (stop_.load(std::memory_order_acquire) && !HasVisibleWork()) break;
        Count(w->stripe, w->stripe.parks);
        // Parker P2: while another worker is awake, it may leave a few operations
        // behind a long one; a timed park comes back for them. Relaxed count: a
        // stale read only changes the timeout, not P1's guarantees.
        std::chrono::nanoseconds timeout = SweepBeforePark();
        // Parker P1 (a): a park that is untimed or longer than kStrandCheck costs
        // a membarrier (microseconds, and an interrupt on every core running
        // this process). So the first park after work is short, with the light
        // fence; a worker that then found nothing for kStrandCheck parks long.
        // Paced load (W5, one operation every 20 us) mostly wakes it first: the
        // membarriers were 4 % of that profile's samples, parks 5,000 a second.
        if ((parker_->sleepers() < static_cast<int>(workers_.size()) - 1 ||
             !w->parked_short) &&
            (timeout.count() < 0 || timeout > kStrandCheck)) {
          timeout = kStrandCheck;
        }
        w->parked_short = timeout.count() >= 0 && timeout <= kStrandCheck;
        parker_->Park(
            w->index,
            [this] { return HasVisibleWork() || stop_.load(std::memory_order_acquire); },
            timeout);
        continue;  // counted as searching again (Parker P3)
      }
    }
    if (searching) {
      searching = false;
      w->parked_short = false;  // found work: the next park starts short again
      if (parker_->EndSearch()) {
        // Parker P2, when there is more to do than what we took. The fence pairs
        // with the producer's in NotifyWork: either it saw us still searching,
        // and then we see its work here, or it saw us not.
        std::atomic_thread_fence(std::memory_order_seq_cst);
        ShareBacklog();
      }
    }
    RunItem(w, op);
  }
  if (searching) parker_->EndSearch();
  t_worker = nullptr;
}

std::chrono::nanoseconds EngineImpl::SweepBeforePark() {
  // Out of work: retire the chains that ran dry (token_map.h), so an idle engine
  // holds none. At most one sweep per kIdleSweepInterval: a workload that pauses
  // often would otherwise retire and re-create its tokens' chains at every pause.
  // A sweep put off makes the park timed, so the engine still ends up with none.
  if (tokens_.active_chains() == 0) return std::chrono::nanoseconds(-1);  // gauges
  const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::steady_clock::now().time_since_epoch())
                               .count();
  // Relaxed: a rate limit; two workers sweeping at once is merely redundant.
  const std::int64_t last = last_sweep_ns_.load(std::memory_order_relaxed);
  const std::int64_t interval =
      std::chrono::duration_cast<std::chrono::nanoseconds>(kIdleSweepInterval).count();
  // sweep_underway() here is a hint (relaxed, read before our turn): the turn
  // below reads it again.
  if (now - last < interval && !tokens_.sweep_underway()) {
    return std::chrono::nanoseconds(interval - (now - last));
  }
  // One sweeper at a time: a round's steps then never overlap, so no shard is
  // swept twice in a round (which would retire what the first sweep spared) and
  // the count of spared chains is exact. Another worker sweeping: park timed,
  // and look again. Acquire/release: see sweeping_.
  if (sweeping_.exchange(true, std::memory_order_acquire)) {
    return std::chrono::nanoseconds(interval);
  }
  // In our turn, again: a worker that passed the check above while another
  // finished a round would otherwise start the next one at once, retiring the
  // chains that round had just spared. Relaxed: ordered by sweeping_.
  if (!tokens_.sweep_underway()) {
    const std::int64_t ended = last_sweep_ns_.load(std::memory_order_relaxed);
    if (now - ended < interval) {
      sweeping_.store(false, std::memory_order_release);  // see sweeping_
      return std::chrono::nanoseconds(interval - (now - ended));
    }
  }
  // A shard at a time, stopping as soon as work shows (TokenMap::SweepIdleStep):
  // this worker still counts as searching, so nobody else is woken for it. A
  // round cut short goes on at the next park, with no wait for the interval.
  // Generational (token_map.h): chains emptied since the previous round stay. If
  // any did, the park that ends the round is timed, so the next round retires
  // them once they have stayed idle.
  std::size_t spared = 0;
  const bool done = tokens_.SweepIdleStep(
      // Acquire, as the caller's check of stop_.
      [this] { return HasVisibleWork() || stop_.load(std::memory_order_acquire); }, &spared);
  // Relaxed: ordered by sweeping_ (above).
  spared += round_spared_.load(std::memory_order_relaxed);
  std::chrono::nanoseconds timeout;
  if (!done) {
    // Work is visible, so the park returns at once; should another worker take
    // that work first, this one is back within kStrandCheck to go on.
    round_spared_.store(spared, std::memory_order_relaxed);  // ordered by sweeping_
    timeout = kStrandCheck;
  } else {
    round_spared_.store(0, std::memory_order_relaxed);  // ordered by sweeping_
    // Relaxed: a time stamp that publishes nothing; the next sweeper reads it
    // after taking sweeping_, whose release below orders it.
    last_sweep_ns_.store(now, std::memory_order_relaxed);
    timeout = spared > 0 ? std::chrono::nanoseconds(interval) : std::chrono::nanoseconds(-1);
  }
  sweeping_.store(false, std::memory_order_release);
  return timeout;
}

// Sole runs. Most operations are independent and posted: nobody but their
// runner can reach them, so the two state CASes and the reference RMW, each a
// locked instruction, buy nothing. The runner of an owned, independent node
// (chain == nullptr) whose refs it reads as 1 is its sole party:
//   U1  No other reference exists, and none can be made: a Handle comes only
//       from Submit (before publication), from a Handle, or from a predecessor's
//       next_occurrence (which holds its own reference); token walks never see a
//       node with no chain; and the Shutdown sweeps (the wheel's and the held
//       registry's) take one for a Postponed or Suspended node, never for a
//       Waiting one. So the decision holds only while the words the runner
//       loads are Waiting: a node it owns may be Postponed or Suspended (by a
//       Handle, since dropped, while the node was queued), and then a sweep may
//       take a reference, cancel it, and use it after the runner has seen it
//       Canceled. On any other word the runner forgets the decision and takes
//       the RMW path (it once freed such a node with no RMW, and the sweep then
//       stamped and dropped a reference of a node back in the pool).
//   U2  Every party that changed the word held a reference and dropped it with
//       an acq_rel RMW afterwards. The runner loads refs with acquire *before* it
//       loads the word, so it sees each such change, and no later one can come.
//   U3  What remains is Shutdown's cancel_all_, which the runner reads itself.
// So the runner moves the word Waiting -> InProgress -> terminal with plain
// stores, wakes nobody (kWaiterBit needs a Handle), and frees the node with no
// RMW. A node that fails U1 (refs > 1, or a chain) takes the CAS path. A compact
// node (operation.h) always passes U1: it is independent and no Handle can name it.
void EngineImpl::RunItem(Worker* w, Operation* op) {
  // We own `cur` (H3): the popped entry's ownership, then the inline ownership
  // AdvanceChain takes of each next head.
  Operation* cur = op;
  int budget = options_.chain_budget;
  while (cur != nullptr) {
    bool finished_with = false;
    // U2: acquire, and before the word's load; pairs with the acq_rel fetch_sub
    // of the last other holder.
    bool sole = cur->chain == nullptr && cur->refs.load(std::memory_order_acquire) == 1;
    ChaosPoint();
    TestPoint(TestPointId::kRunItemRead, cur);
    // Acquire: pairs with the release of whoever scheduled or last changed it.
    std::uint32_t word = cur->word.load(std::memory_order_acquire);
    ORDO_CHECK_OP((word & kOwnedBit) != 0, "a worker holds an operation it does not own",
                  cur->id_relaxed());
    for (;;) {
      const State s = StateOf(word);
      const std::uint32_t released = word & ~kOwnedBit;
      if (s == State::kWaiting) {
        if (cancel_all_.load(std::memory_order_relaxed)) {
          // Shutdown kCancelPending: cancel rather than start; still ours.
          const std::uint32_t canceled =
              (WithState(word, State::kCanceled) & ~kReasonMask) |
              (static_cast<std::uint32_t>(CancelReason::kByShutdown) << kReasonShift);
          // acq_rel as below.
          if (!cur->word.compare_exchange_weak(word, canceled, std::memory_order_acq_rel,
                                               std::memory_order_acquire)) {
            continue;
          }
          if (HasTimes(cur)) StampCanceled(cur, NowNs());  // after the CAS (OpTimes)
          if (word & kWaiterBit) FutexWakeAll(&cur->word);
          OnTerminal(State::kCanceled, w->stripe);
          finished_with = true;
          break;
        }
        if (sole) {
          // U1-U3: nobody else writes this word. Relaxed: the callable's inputs
          // came with the run-queue entry (its acquire); nobody reads this store
          // for ordering.
          cur->word.store(WithState(released, State::kInProgress), std::memory_order_relaxed);
        } else if (!cur->word.compare_exchange_weak(word, WithState(released, State::kInProgress),
                                                    std::memory_order_acq_rel,
                                                    std::memory_order_acquire)) {
          // acq_rel: acquire what the submitter (and the chain's previous
          // operation) wrote; one of this CAS and Cancel's/Postpone's CAS wins.
          continue;
        }
        finished_with = Execute(w, cur, sole);
        break;
      }
      ORDO_CHECK_OP(s != State::kInProgress, "an owned operation is in progress",
                    cur->id_relaxed());
      // Not Waiting: a sweep may hold a reference now (U1).
      sole = false;
      if (IsTerminal(s)) {
        finished_with = true;  // canceled, or a halted head released by ResumeToken
        break;
      }
      // Postponed or Suspended: give up ownership (H3). acq_rel: a concurrent
      // release to Waiting makes this fail, and we look again (still the owner).
      if (cur->word.compare_exchange_weak(word, released, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
        break;
      }
    }
    if (!finished_with) break;
    Chain* const chain = cur->chain;
    Operation* next = nullptr;
    if (chain != nullptr) {
      // F1: the failure policy as decided before Execute published cur's failure.
      next = AdvanceChain(cur, &t_failure_decision_);  // releases cur; we own next, if any
      t_failure_decision_.op = nullptr;
    } else {
      ReleaseEngineRef(cur, sole);
      TestPoint(TestPointId::kRunItemReleased, cur);  // compared, not read: it may be freed
    }
    cur = nullptr;
    if (next != nullptr) {
      if (--budget > 0) {
        cur = next;
      } else {
        // Fairness: the chain queues behind other work, outside submissions
        // included: a batch from the injector goes into our deque ahead of it
        // (unless another worker is popping the injector just then, injector.h J1:
        // then that worker is serving it).
        PullInjectorBatch(w);
        Schedule(next);  // the ownership moves with the entry
      }
    }
  }
  // Release: pairs with the acquire loads in EngineImpl::ActivityIdle (WaitIdle),
  // so a reader that counts this item also sees every "scheduled" before it.
  Count(w->stripe, w->stripe.finished, 1, std::memory_order_release);
}

bool EngineImpl::Execute(Worker* w, Operation*& op, bool sole) {
  Stripe& st = w->stripe;
  // Relaxed: published with the terminal state (release) or read by the runner.
  // Only a Handle reads the times; with none left, the clock read is skipped.
  // Only a full node has times (line 2) or a sample, so the common node costs
  // one load of its word here. Relaxed: its kind and kSampledBit were set before
  // the node was published, whose acquisition ordered them before this load.
  std::int64_t sample_start = kNoTime;
  if (const std::uint32_t word = op->word.load(std::memory_order_relaxed);
      (word & kKindBits) == 0) {
    if (Observed(op) && Times(op).started_ns.load(std::memory_order_relaxed) == kNoTime) {
      Times(op).started_ns.store(NowNs(), std::memory_order_relaxed);
    }
    if ((word & kSampledBit) != 0) sample_start = RecordStart(w, op);
  }
  Count(st, st.started);
  Attempt& attempt = w->attempt;
  attempt.retry = false;  // the previous operation's request, if any, was read
  FreeLongText(attempt.reason);  // one kept from an earlier retry
  Context ctx(this, op);
  absl::Status status;
  std::string error;
  bool threw = false;
  EngineImpl* const outer_engine = t_running_engine;
  Attempt* const outer_attempt = t_attempt;
  t_running_engine = this;
  t_attempt = &attempt;
  try {
    status = op->ops->invoke(op->storage, ctx);
#ifdef __GLIBCXX__  // libstdc++'s; libc++ has no such type
  } catch (const abi::__forced_unwind&) {
    // pthread_exit or pthread_cancel on a worker thread unwinds with this, which
    // must not be swallowed (glibc then aborts with 'exception not rethrown'),
    // and which the engine cannot survive either: its operation would never
    // end, and the worker would be gone. Said plainly instead.
    ORDO_CHECK_OP(false,
                  "an operation called pthread_exit, or its worker thread was canceled "
                  "(pthread_cancel); an operation must return or throw instead",
                  op->id_relaxed());
#endif
  } catch (const std::exception& e) {
    threw = true;
    error = TextOr([&] {
      std::string what = e.what();
      return what.empty() ? std::string("exception with an empty what()") : what;
    });
  } catch (...) {
    threw = true;
    error = TextOr(
        [] { return std::string("unknown exception (not derived from std::exception)"); });
  }
  t_running_engine = outer_engine;
  t_attempt = outer_attempt;
  if (sample_start != kNoTime) w->latency.run_time.Record(NsAhead(NowNs(), sample_start));

  // The common end, inline: a compact node that ran once and succeeded, with
  // no party but its runner (sole, U1-U3). It has no extras, times, Handle,
  // series or chain, so FinishInProgress would take none of its branches: the
  // terminal word by a plain store (release, as there), the count, the credit.
  if (sole && !threw && status.ok() && !attempt.retry && IsCompact(op)) {
    // Relaxed: nobody else writes this word (U1-U3).
    const std::uint32_t word = op->word.load(std::memory_order_relaxed);
    ORDO_CHECK_OP(StateOf(word) == State::kInProgress, "finish of an operation not in progress",
                  op->id_relaxed());
    // Release: a reader of the terminal word sees what the callable wrote.
    op->word.store(WithState(word, State::kSucceeded), std::memory_order_release);
    OnTerminal(State::kSucceeded, st, /*give_credit=*/true);
    return true;
  }
  bool failed = threw;
  if (!threw && !status.ok()) {
    if (std::optional<std::int64_t> d = RetryDelayOf(status)) {
      attempt.retry = true;
      attempt.delay_ns = *d;
      attempt.reason = TextOr([&] { return std::string(status.message()); });
    } else {
      failed = true;
      error = TextOr([&] { return status.ToString(); });
    }
  }
  if (attempt.retry) {
    auto cancel_for_shutdown = [&] {
      FinishInProgress(op, State::kCanceled, TextOr([&] {
                         return "retry canceled: the engine is shutting down (" + attempt.reason +
                                ")";
                       }),
                       st, CancelReason::kRetriesDuringShutdown);
    };
    // A cancel request came during the attempt: no retry. The text names who
    // asked (read after a look at the flag that saw it); the reason stays
    // kByCancel, which Cancel's answer reads as "ended by a request"
    // (EngineImpl::Cancel).
    auto cancel_for_request = [&] {
      FinishInProgress(op, State::kCanceled, TextOr([&] {
                         return std::string("retry canceled: ") +
                                RequesterName(Facts(op).RequestReason()) +
                                " was requested during the attempt (" + attempt.reason + ")";
                       }),
                       st, CancelReason::kByCancel);
    };
    // A first look, before the node is enlarged. Relaxed: a hint; the read
    // inside the ShutdownScope below decides (S1).
    if (closed_.load(std::memory_order_relaxed)) {
      cancel_for_shutdown();
      return true;
    }
    // Cancel of the running attempt was requested: no further attempt (as a
    // Cancel of an operation waiting for its retry would have it). A compact
    // node has no Handle, so nobody can ask. A first look, before the node is
    // enlarged; a request that lands after it is read again under the timer
    // lock (C1 in timers.cc), before the retry is made. Acquire: pairs with
    // RequestCancel's store (seq_cst, so release), which publishes the reason
    // read next.
    if (!IsCompact(op) && Facts(op).cancel_requested.load(std::memory_order_acquire)) {
      cancel_for_request();
      return true;
    }
    // A compact node has no room for a timer or a count: it retries as a facts node
    // (its first retry; the compact node had no options, so the engine's maximum).
    if (IsCompact(op) && options_.max_retries > 0) op = Enlarge(op);
    OpExtras* ex = ExtrasIfAny(op, std::memory_order_acquire);
    const int max = (ex != nullptr && ex->max_retries >= 0) ? ex->max_retries : options_.max_retries;
    const int done = IsCompact(op) ? 0 : Facts(op).retry_count.load(std::memory_order_relaxed);
    if (done < max) {
      constexpr std::int64_t kMaxNs = std::numeric_limits<std::int64_t>::max();
      std::int64_t delay = attempt.delay_ns < 0 ? 0 : attempt.delay_ns;
      if (ex != nullptr && ex->backoff_kind == 1) {  // exponential
        // Saturating: an uncapped backoff (max_delay = nanoseconds::max()) once
        // overflowed into a negative delay, and the retries ran at once.
        for (int i = 0; i < done && delay < ex->backoff_max_ns; ++i) {
          delay = delay > kMaxNs / 2 ? kMaxNs : delay * 2;
        }
        if (delay > ex->backoff_max_ns) delay = ex->backoff_max_ns;
      }
      // The delay counts from the end of the attempt; saturating too, so that
      // RetryAfter(nanoseconds::max()) means "not in this clock's range".
      const std::int64_t now = NowNs();
      const std::int64_t due = now > 0 && delay > kMaxNs - now ? kMaxNs : now + delay;
      Repostponed reposted;
      {
        // S1 (engine_impl.cc, above Shutdown): armed before Shutdown drains the
        // wheel, or canceled.
        ShutdownScope scope(this, st);
        if (scope.closed()) {
          cancel_for_shutdown();
          return true;
        }
        reposted = RepostponeForRetry(op, due, done + 1);
        if (reposted == Repostponed::kYes) Count(st, st.retried);
      }
      if (reposted == Repostponed::kYes) return false;
      if (reposted == Repostponed::kCancelRequested) {  // C1 (timers.cc)
        cancel_for_request();  // the flag was read under the timer lock
        return true;
      }
      failed = true;
      error = TextOr([] {
        return std::string(
            "retry could not be scheduled: the timing wheel is full (Options::max_timers)");
      });
    } else {
      failed = true;
      error = TextOr([&] {
        return attempt.reason + " (gave up after " + std::to_string(done) + " retries)";
      });
    }
  }
  // A recurrence's next occurrence exists before this one is seen terminal, so a
  // thread that sees it end finds Handle::next_occurrence() set.
  OpExtras* ex = ExtrasIfAny(op, std::memory_order_acquire);
  bool credit_handed_on = false;
  bool failed_by_engine = false;  // the body did not fail; the engine did
  if (ex != nullptr && ex->series != nullptr) {
    const Spawn spawn = SpawnNextOccurrence(op, st);
    credit_handed_on = spawn == Spawn::kMade;
    if (spawn == Spawn::kOutOfMemory) {
      failed_by_engine = !failed;
      // A series never stops unseen: this occurrence fails, saying why. (Its
      // error's own copy may find no memory either: then it says only that.)
      failed = true;
      error = TextOr([&] {
        return error.empty() ? std::string(kSeriesOutOfMemory) : error + "; " + kSeriesOutOfMemory;
      });
    }
  }
  // F1: a failed head's policy is decided before its failure is published. A
  // failure that is the engine's, not the body's, takes no policy: its chain
  // goes on (kCancelRest would cancel others' work for it, and kHalt's
  // registry entry needs memory there may not be).
  if (failed && op->chain != nullptr) {
    if (failed_by_engine) {
      t_failure_decision_ = FailureDecision();  // kContinue
      t_failure_decision_.op = op;
    } else {
      t_failure_decision_ = DecideFailure(op);
    }
  }
  FinishInProgress(op, failed ? State::kFailed : State::kSucceeded, std::move(error), st,
                   CancelReason::kByCancel, sole, /*give_credit=*/!credit_handed_on);
  return true;
}

std::int64_t EngineImpl::RecordStart(Worker* w, const Operation* op) {
  const std::int64_t now = NowNs();
  // A sampled node is a full one (NewOperation). Relaxed: the creation time was
  // written before the node's publication, the retry count by the previous
  // attempt's runner before the release that postponed it, and the due time
  // before the timer released it. A Postpone or Resume that makes it runnable
  // stores its new due time after the CAS that does (under the timer lock): a
  // runner that starts it at once may read the old one. A statistic: the sample
  // is off (a lateness clamped to 0), nothing else.
  const std::int64_t created = Times(op).created_ns.load(std::memory_order_relaxed);
  const std::int64_t due = Facts(op).due_ns().load(std::memory_order_relaxed);
  if (due != kNoTime) w->latency.lateness.Record(NsAhead(now, due));
  if (Facts(op).retry_count.load(std::memory_order_relaxed) == 0 && created != kNoTime) {
    // kNoTime is the minimum.
    w->latency.queue_wait.Record(NsAhead(now, std::max(created, due)));
  }
  return now;
}

Operation* EngineImpl::Enlarge(Operation* op) {
  // U1 (RunItem): a compact node is independent and has no Handle, so its runner
  // is its sole party; the new node is private until RepostponeForRetry arms it.
  Operation* n = OpPool::Allocate(NodeKind::kFacts);  // no Handle: no times
  op->ops->relocate(op->storage, n->storage);  // nothrow: inline callables are
  n->ops = op->ops;                            // nothrow-movable, others a pointer
  op->ops = nullptr;
  // The id it was created with keeps its place among equal due times (the wheel's
  // tie-break); it was never postponed, so there is no creation time to keep.
  InitFacts(n, op->id_relaxed(), this, serial_, kNoTime, kNoTime);
  // Relaxed: private. The same state and head bit (InProgress, owned by nobody:
  // H4 makes the runner its only writer), without the compact kind.
  n->word.store((op->word.load(std::memory_order_relaxed) & ~kCompactBit) | kNoTimesBit,
                std::memory_order_relaxed);
  n->refs.store(1, std::memory_order_relaxed);  // the engine's
  Reclaim(op);  // U1: no other reference to op exists
  return n;
}

void EngineImpl::RequestRetry(Operation* op, std::chrono::nanoseconds delay,
                              std::string_view reason) {
  Attempt* a = t_attempt;
  ORDO_CHECK_OP(a != nullptr && t_running_engine == this,
                "Context::RetryAfter called outside its callable", op->id_relaxed());
  // The reason first: its copy may throw bad_alloc (into the callable), and
  // then nothing is recorded (a callable that caught it and returned was
  // retried all the same).
  a->reason.assign(reason);  // strong guarantee: unchanged if it throws
  a->delay_ns = delay.count();
  a->retry = true;
}

void EngineImpl::FinishInProgress(Operation* op, State terminal, std::string&& error, Stripe& st,
                                  CancelReason reason, bool sole, bool give_credit) {
  // Only a Handle reads the error, and only a full node can have one.
  std::uint32_t extras_bit = 0;
  if ((terminal == State::kFailed || terminal == State::kCanceled) && MayHaveHandle(op)) {
    if (!error.empty() || terminal == State::kFailed) {
      // Out of memory for the extras: the error is not kept, rather than the
      // process end (Handle::error() is then empty for a failure, and the
      // reason's text for a cancel).
      try {
        OpExtras* ex = ExtrasOf(op);
        ex->error = std::move(error);
        extras_bit = kExtrasBit;  // published with the terminal word, below
      } catch (const std::bad_alloc&) {
      }
    }
  }
  if (Observed(op)) {
    Times(op).completed_ns.store(CompletionStamp(NowNs()), std::memory_order_relaxed);  // published below
  }
  std::uint32_t w = op->word.load(std::memory_order_relaxed);
  auto finished = [&](std::uint32_t from) {
    ORDO_CHECK_OP(StateOf(from) == State::kInProgress, "finish of an operation not in progress",
                  op->id_relaxed());
    std::uint32_t to = WithState(from, terminal) | extras_bit;
    if (terminal == State::kCanceled) {
      to = (to & ~kReasonMask) | (static_cast<std::uint32_t>(reason) << kReasonShift);
    }
    return to;
  };
  if (sole) {
    // U1-U3: nobody else writes this word, and nobody waits on it. Release, as
    // the CAS below (a plain store on x86): a reader of the terminal word sees
    // what the callable wrote.
    op->word.store(finished(w), std::memory_order_release);
  } else {
    // Release: publishes the callable's writes, error and completed_ns to
    // Handle::state()/Wait() (acquire) and to the chain's next operation (through
    // the chain protocol). Only kWaiterBit can change under us (H4).
    while (!op->word.compare_exchange_weak(w, finished(w), std::memory_order_release,
                                           std::memory_order_relaxed)) {
    }
    if (w & kWaiterBit) FutexWakeAll(&op->word);
  }
  OnTerminal(terminal, st, give_credit);
}

void EngineImpl::OnTerminal(State terminal, Stripe& st, bool give_credit) {
  // Release: pairs with stats()' acquire loads of these, after which the
  // operation's submitted count (made before it was published) is visible.
  switch (terminal) {
    case State::kSucceeded: Count(st, st.succeeded, 1, std::memory_order_release); break;
    case State::kFailed: Count(st, st.failed, 1, std::memory_order_release); break;
    default: Count(st, st.canceled, 1, std::memory_order_release); break;
  }
  if (give_credit) GiveCredit(st);
}

// F1, a failure policy against those who see the failure. What a failed head's
// policy does is decided before its runner publishes the failure (the CAS to
// Failed in FinishInProgress), and applied after it: the policy read then; for
// kCancelRest the chain's tail then, the last operation it cancels; for kHalt
// ResumeToken's count then (Chain::resume_epoch_), and HaltChain, under the shard
// lock, holds the chain only if no ResumeToken has come since. A thread that sees
// the failure (acquire, paired with that CAS) and then submits on the token, sets
// its policy or resumes it acts after those reads (coherence: a read that
// happens before an RMW reads an older value), so its submit is not canceled,
// its policy applies from the next failure, and its ResumeToken is not lost: it
// bumps the count before HaltChain looks, or it finds the chain halted and
// releases it. (Decided after the failure was visible, a compensating operation
// submitted on seeing it could be canceled as "the rest", and a ResumeToken on
// seeing it find nothing to resume, the chain then halted for good.) A submit or
// ResumeToken concurrent with the failure, before it is visible, may fall on
// either side: the decision is read a little before the CAS (FinishInProgress
// first prepares the error text), so one made just then is taken as later.
thread_local EngineImpl::FailureDecision EngineImpl::t_failure_decision_;

EngineImpl::FailureDecision EngineImpl::DecideFailure(Operation* x) {
  FailureDecision d;
  d.op = x;
  d.policy = PolicyFor(x->chain);
  if (d.policy == FailurePolicy::kCancelRest) {
    // Acquire: pairs with Chain::Push's exchange, so the nodes up to it are ours to
    // walk once linked (CancelBehind waits for links in flight).
    d.last = x->chain->tail_.load(std::memory_order_acquire);
  } else if (d.policy == FailurePolicy::kHalt) {
    // Relaxed: read before the release CAS to Failed; a ResumeToken by a thread
    // that saw the failure bumps it later (coherence, F1).
    d.resume_epoch = x->chain->resume_epoch_.load(std::memory_order_relaxed);
  }
  return d;
}

Operation* EngineImpl::AdvanceChain(Operation* x, const FailureDecision* decided) {
  Chain* c = x->chain;
  // Failure policy: applied once per failed head (kPolicyDoneBit).
  std::uint32_t xw = x->word.load(std::memory_order_acquire);
  if (StateOf(xw) == State::kFailed && (xw & kPolicyDoneBit) == 0) {
    x->word.fetch_or(kPolicyDoneBit, std::memory_order_relaxed);  // runner-private flag
    const FailureDecision d =
        decided != nullptr && decided->op == x ? *decided : DecideFailure(x);
    const FailurePolicy p = d.policy;
    if (p == FailurePolicy::kCancelRest) {
      // A failed occurrence's next is spared: a failure never stops a series
      // (DESIGN). It is in the rest, pushed before x ended (SpawnNextOccurrence,
      // on this thread: the acquire is for form's sake, and pairs with that
      // release store).
      const OpExtras* ex = ExtrasIfAny(x, std::memory_order_acquire);
      CancelBehind(x, CancelReason::kByPolicy,
                   ex != nullptr ? ex->successor.load(std::memory_order_acquire) : nullptr,
                   d.last);
    } else if (p == FailurePolicy::kHalt) {
      // S1 (engine_impl.cc, above Shutdown): halted and registered before
      // Shutdown's sweep of the held registry, or the rest canceled; or neither,
      // when a ResumeToken came since the failure was decided (F1): the chain
      // moves on.
      bool closing, halted = false;
      {
        ShutdownScope scope(this, MyStripe());
        closing = scope.closed();
        if (!closing) halted = HaltChain(c, x, d.resume_epoch);
      }
      if (halted) return nullptr;  // held until ResumeToken (or Shutdown)
      // Shutting down: the rest is canceled as Shutdown cancels a halted chain's
      // (and says so: kByPolicy would name kCancelRest, not this token's policy).
      if (closing) CancelBehind(x, CancelReason::kByShutdown);
    }
  }
  Operation* prev = x;
  for (;;) {
    // The callable's destructor (its captures') is prev's last write: before
    // the chain moves on, so it happens-before the next operation of the token
    // starts (DESIGN: everything A wrote). It ran after Advance once, and when
    // that emptied the chain, an operation submitted then could start on
    // another worker while this destructor still ran.
    DestroyCallable(prev);
    Operation* n = tokens_.Advance(prev);
    if (n == nullptr) {
      // The chain is idle (and may be retired by a sweep at any time): Advance
      // emptied it only once no token control held prev as its hazard (T3).
      ReleaseEngineRef(prev);
      return nullptr;
    }
    // seq_cst: the hazard protocol's runner half (store head_, then load hazard_).
    c->head_.store(n, std::memory_order_seq_cst);
    ChaosPoint();  // a walker may look between the head's store and our hazard load
    ReleaseChainNode(c, prev);
    std::uint32_t next;
    const std::uint32_t w = TakeHead(n, &next);  // we own a Waiting or Canceled n (H1)
    const State s = StateOf(w);
    if (s == State::kWaiting) return n;  // ours, to run inline or schedule
    if (s == State::kCanceled) {
      prev = n;  // ours: skip it (its canceler counted it)
      continue;
    }
    ORDO_CHECK_OP(s == State::kPostponed || s == State::kSuspended,
                  "a chain node ran before it was head", n->id_relaxed());
    return nullptr;  // held, unowned; H2 schedules it when released
  }
}

void EngineImpl::ReleaseChainNode(Chain* c, Operation* x) {
  // seq_cst: pairs with the walker's store of hazard_ then load of head_
  // (Chain::PinHead).
  while (c->hazard_.load(std::memory_order_seq_cst) == x) std::this_thread::yield();
  ReleaseEngineRef(x);
}

void EngineImpl::DestroyCallable(Operation* op) {
  if (op->ops != nullptr) {
    op->ops->destroy(op->storage);
    op->ops = nullptr;
  }
}

void EngineImpl::ReleaseEngineRef(Operation* op, bool sole) {
  DestroyCallable(op);
  if (sole) {
    // U1: still the only reference (none can be made), so no RMW. A compact
    // node has no extras, so no successor: straight back to the pool.
    if (IsCompact(op)) {
      OpPool::FreeOrDrop(op);
    } else {
      Reclaim(op);
    }
  } else {
    DropRef(op);
  }
}

void EngineImpl::AddRef(Operation* op) {
  // Relaxed: the caller already holds a reference, so the node cannot be freed.
  op->refs.fetch_add(1, std::memory_order_relaxed);
}

void EngineImpl::DropRef(Operation* op) {
  // acq_rel: the last dropper acquires every other holder's accesses before it
  // frees the node; the others release theirs.
  const std::uint32_t before = op->refs.fetch_sub(1, std::memory_order_acq_rel);
  // A node back in the pool has none (OpPool::Free): a drop from one is a use
  // after free, and the node's next user would lose a reference.
  ORDO_CHECK(before != 0, "a reference dropped from an operation that has none (freed)");
  if (before != 1) return;
  Reclaim(op);
}

void EngineImpl::Reclaim(Operation* op) {
  // An occurrence holds its successor (OpExtras::successor), so freeing one may
  // free the next, and so on down every occurrence a kept Handle held: a loop,
  // not DropRef's recursion, which a year of a minutely series (half a million
  // links) would take past the stack.
  while (op != nullptr) {
    Operation* next = nullptr;
    OpExtras* ex = ExtrasIfAny(op, std::memory_order_relaxed);  // sole owner now
    if (ex != nullptr) {
      if (Operation* s = ex->successor.load(std::memory_order_relaxed)) {
        // acq_rel, as DropRef: the last dropper acquires the other holders'
        // accesses before it frees the node.
        if (s->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) next = s;
      }
      DeleteExtras(ex);
      Facts(op).extras.store(nullptr, std::memory_order_relaxed);
    }
    // The node has no other home and our callers (a Handle's destructor,
    // DropRef in cleanups and in the engine's destructor) cannot back out: out
    // of memory for a magazine drops it (OpPool::FreeOrDrop).
    OpPool::FreeOrDrop(op);
    op = next;
  }
}

}  // namespace ordo::internal
