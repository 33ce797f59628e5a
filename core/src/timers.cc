// timers.cc: the engine's side of postponement: arming and disarming an
// operation's timer, releasing due operations, the timekeeper thread, and the
// manual clock's listener.
//
// Protocol. Every insert into or removal from the wheel, and every state change
// into or out of Postponed that goes with one, happens under timer_mu_. A released
// node's Postponed -> Waiting CAS is made under timer_mu_ too, so a canceler
// (which CASes first, then takes timer_mu_ to disarm) finds the node either still
// in the wheel (and removes it) or already released (and its CAS lost). Due nodes
// come out of the wheel in (due, id) order and are scheduled in that order, so
// operations due at the same time are released in creation order.
//
// Idle cost. With nothing postponed the timekeeper sleeps on its futex with no
// timeout; otherwise it sleeps until the wheel's next deadline and no longer: no
// periodic wake-up. On the system clock that sleep is an absolute CLOCK_REALTIME
// futex wait, which the kernel moves when the wall clock is set, so a jump is
// honoured without polling. On another (custom) clock it is a relative sleep
// capped at one second, since such a clock cannot tell us when it jumps.
// ArmTimerLocked kicks the timekeeper when a new deadline comes before the one it
// sleeps towards.
//
// The inbox. Submit does not take timer_mu_: the timekeeper holds it while it
// cascades thousands of timers in a burst, and submitters queued behind it (W4
// measured 0.7-1 us per postponed submit, most of it waiting). Submit pushes the
// operation's timer node onto timer_inbox_, Treiber stacks; every holder of
// timer_mu_ takes it through EngineImpl::TimerLock, which first moves the inbox
// into the wheel (DrainTimerInboxLocked).
//
// Ways. The inbox is kTimerInboxWays stacks, a submit picking one by its node's
// address, and the drain walks them side by side, one node of each per round,
// as the wheel walks a slot (timing_wheel.h, "Ways"): every node is a miss (its
// submitter wrote it last), and in one stack each waits for the one before it.
// Order does not matter: the wheel orders what it releases.
// Invariants
//   I1  A node is in the inbox only while its operation is Postponed or was made
//       Canceled/Suspended by a party that has yet to take timer_mu_; nobody frees
//       an operation that left Postponed without taking timer_mu_ after it (Cancel
//       disarms under it, Suspend and Postpone change it under it, the timekeeper
//       releases under it). So a drain never meets a freed node.
//   I2  Every reader of the wheel holds timer_mu_ and drains first, so under the
//       lock "armed" means "in the wheel" (in_wheel), as before the inbox.
//   I3  timers_armed_ counts wheel + inbox + places reserved and not yet armed.
//       Every place is taken by ReserveTimers' CAS, which never takes the count
//       past max_timers: Submit and PostBatch (for all their postponed
//       operations at once) before they push, Postpone, Resume and a retry
//       under timer_mu_ before they change the word (and give it back if they
//       then arm nothing). One exception: a series' next occurrence
//       (TakeSeriesTimer) takes its place even past max_timers. It replaces the
//       occurrence that just ended, whose admission credit it takes over, so
//       these extra places number at most the live series, which max_pending
//       bounds. A disarm or a release gives one back; a re-postponement moves
//       its timer and keeps its place, and so does a suspension: a Suspended
//       operation with a time keeps its place (place_kept) until Resume arms
//       it there (or gives it back, the time having come), or a cancel or a
//       Postpone that clears the time gives it back, so Resume and ResumeToken
//       never find the wheel full. A suspended operation has a time to wait
//       for exactly when it keeps a place. (Suspend gave the place back once: a series'
//       occurrence, suspended, lost its place past max_timers, Resume was then
//       refused while the wheel was full, and ResumeToken left it Suspended
//       without a word.) So the wheel never holds more than
//       max_timers + max_pending (its own cap), and neither a drain's insert nor
//       an arm can fail.
//   I4  Submit lowers timekeeper_target_ and kicks when its due time is earlier.
//       The timekeeper reads the kick count before it drains, so a kick after
//       that makes its sleep return at once.
//   I5  Dekker pair, both sides seq_cst: Submit pushes onto the inbox, then loads
//       the target (I4); the timekeeper stores the target it will sleep towards
//       (under timer_mu_), then loads every way of the inbox, and sleeps only if
//       all are empty.
//       So a push after the timekeeper's drain either sees the new target (and
//       kicks if it is due earlier) or is seen by the timekeeper, which drains
//       again instead of sleeping. Any other holder of timer_mu_ that drains the
//       inbox lowers the target to what it drained, and kicks (TimerLock), so a
//       node it moved into the wheel after the timekeeper looked is not slept
//       through either; ReleaseDue called by another thread (WaitIdle,
//       Shutdown, an arm on a manual clock) drains without lowering, stores the
//       wheel's next deadline as the target, and kicks if that lowered it. It
//       once did not kick: with the timekeeper asleep towards no deadline, a
//       submit whose node WaitIdle's drain had moved into the wheel then loaded
//       the target WaitIdle had lowered to its own due time, and did not kick
//       either (found by review). Before I5 the timekeeper published its target without
//       looking again: a submit that loaded the previous target (already due, so
//       no kick) while the timekeeper emptied the wheel left its operation in the
//       inbox with the timekeeper asleep towards no deadline, for ever (seen in
//       W4's warm-up; stress test PostponedSubmitsRacingTheTimekeepersRelease...).
//   I6  A manual clock has no timekeeper: the thread that moves it releases what is
//       due (OnClockAdvanced). An arm that read the time before an Advance and
//       armed after that Advance's release would wait for the next Advance, so
//       every arm looks at the clock again once its timer is in place:
//       - under timer_mu_ (ArmTimerLocked): the advancer writes the time before
//         it takes the lock to release, so either its release comes after our
//         arm (and finds the timer) or we read its time (the lock orders both)
//         and our TimerLock releases after unlocking;
//       - through the inbox (ArmTimerFromSubmit): a Dekker pair with seq_cst
//         fences, push / fence / read the time against write the time / fence /
//         drain (OnClockAdvanced): either the advancer's drain sees our node or
//         we see its time and release ourselves.
#include <algorithm>
#include <new>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "engine_impl.h"

namespace ordo::internal {

namespace {
// Longest sleep on a clock that cannot report its jumps (see above).
constexpr std::int64_t kMaxTimekeeperSleepNs = 1'000'000'000;
}

void EngineImpl::ArmTimerLocked(Operation* op, std::int64_t due_ns) {
  // I3: the place is counted already, so the wheel (which holds at most what is
  // counted) has room for it.
  absl::Status s = wheel_->Insert(&Facts(op).timer, due_ns, op->id_relaxed());
  ORDO_CHECK_OP(s.ok(), "the wheel refused a timer whose place was reserved (I3)",
                op->id_relaxed());
  Facts(op).in_wheel = true;
  LowerTimekeeperTarget(due_ns);
  if (manual_clock_ && due_ns <= NowNs()) manual_due_pending_ = true;  // I6
}

void EngineImpl::DisarmTimerLocked(Operation* op) {
  if (TakeKeptPlaceLocked(op)) {
    ReleaseTimers(1);
    return;
  }
  if (!Facts(op).in_wheel) return;
  MoveOutTimerLocked(op);
  ReleaseTimers(1);
}

void EngineImpl::KeepPlaceLocked(Operation* op) {
  MoveOutTimerLocked(op);
  MarkPlaceKept(op);
}

void EngineImpl::MarkPlaceKept(Operation* op) {
  Facts(op).place_kept = true;
  timers_kept_.fetch_add(1, std::memory_order_relaxed);  // a count (I3)
}

bool EngineImpl::TakeKeptPlaceLocked(Operation* op) {
  if (!Facts(op).place_kept) return false;
  Facts(op).place_kept = false;
  timers_kept_.fetch_sub(1, std::memory_order_relaxed);  // a count (I3)
  return true;
}

void EngineImpl::MoveOutTimerLocked(Operation* op) {
  wheel_->Cancel(&Facts(op).timer);
  Facts(op).in_wheel = false;
}

void EngineImpl::ReleaseTimers(std::int64_t n) {
  timers_armed_.fetch_sub(n, std::memory_order_relaxed);  // a count (I3)
}

void EngineImpl::ArmTimerFromSubmit(Operation* op, std::int64_t due_ns) {
  TimerNode* n = &Facts(op).timer;
  PushTimers(n, n, due_ns);
}

bool EngineImpl::ReserveTimers(std::int64_t n) {
  // I3, by CAS: the count never rises past max_timers, not even for a moment
  // (a fetch_add and undo of a large batch would make a wheel with room look
  // full to concurrent Postpone, Resume and retries). Every place is taken here,
  // by submitters without the timer lock and by Postpone, Resume, a retry and a
  // recurrence under it alike: a check of the count followed by an add (as
  // those once did) let a submitter's CAS take the last place in between, and
  // the wheel then refused a timer whose place the count promised (a process
  // abort). Relaxed: an admission count; nothing is published through it.
  const std::int64_t limit = static_cast<std::int64_t>(options_.max_timers);
  std::int64_t armed = timers_armed_.load(std::memory_order_relaxed);
  do {
    if (armed + n > limit) return false;
  } while (!timers_armed_.compare_exchange_weak(armed, armed + n, std::memory_order_relaxed));
  return true;
}

void EngineImpl::TakeSeriesTimer() {
  // I3's exception: a series that finds the wheel full waits for its next
  // occurrence's time all the same. (It ran that occurrence at once instead,
  // then spawned the next from that occurrence's place on the grid, which was
  // in the future too: with the wheel full, every later occurrence ran back
  // to back, and the series ended at the end of the clock's range.) Relaxed:
  // an admission count, as in ReserveTimers.
  timers_armed_.fetch_add(1, std::memory_order_relaxed);
}

Atomic<TimerNode*>& EngineImpl::InboxWayOf(const TimerNode* first) {
  // The node's address, mixed: consecutive nodes of a slab take different ways.
  const std::uint64_t mixed =
      (reinterpret_cast<std::uintptr_t>(first) >> 6) * 0x9E3779B97F4A7C15ULL;
  return timer_inbox_[(mixed >> 32) & (kTimerInboxWays - 1)].value;
}

bool EngineImpl::TimerInboxEmpty() {
  for (auto& way : timer_inbox_) {
    // seq_cst: I5's timekeeper half, after its seq_cst store of the target.
    if (way.value.load(std::memory_order_seq_cst) != nullptr) return false;
  }
  return true;
}

void EngineImpl::PushTimers(TimerNode* first, TimerNode* last, std::int64_t earliest) {
  ChaosPoint();
  Atomic<TimerNode*>& inbox = InboxWayOf(first);
  TimerNode* head = inbox.load(std::memory_order_relaxed);
  do {
    last->next = head;  // private until the CAS publishes it
    // seq_cst: I5's Submit half (push, then load the target), which includes the
    // release that publishes the nodes' due_ns and ids (and their links) to the
    // drainer's acquire exchange.
  } while (!inbox.compare_exchange_weak(head, first, std::memory_order_seq_cst,
                                        std::memory_order_relaxed));
  ChaosPoint();
  LowerTimekeeperTarget(earliest);  // I4, I5
  if (manual_clock_) {
    // I6: the submit half of the fence pair with OnClockAdvanced.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (earliest <= NowNs()) (void)ReleaseDue();
  }
}

namespace {
// The timekeeper's target for a due time. INT64_MAX means none (it sleeps until
// kicked), so a timer due at INT64_MAX itself (a saturated retry, or
// time_point::max() with no horizon) targets one less: it kicks, and the
// timekeeper then sleeps towards it. (It lowered nothing, so nobody kicked; on
// a clock the engine must watch, the timekeeper slept on with no deadline and
// the timer was never released.)
constexpr std::int64_t TargetOf(std::int64_t due_ns) {
  return due_ns == INT64_MAX ? INT64_MAX - 1 : due_ns;
}
}  // namespace

void EngineImpl::LowerTimekeeperTarget(std::int64_t due_ns) {
  due_ns = TargetOf(due_ns);
  // seq_cst load: I5's Submit half (see ArmTimerFromSubmit). Relaxed store: the
  // target is a hint that spares kicks; the kick is what wakes the timekeeper
  // (I4). Lowering it at once means a burst of inserts kicks once per new
  // earliest deadline, not once per insert until the timekeeper has looked (each
  // kick is a system call). Two submitters racing here may leave it higher than
  // their earliest due time: that costs a kick, never a missed one.
  if (due_ns < timekeeper_target_.load(std::memory_order_seq_cst)) {
    timekeeper_target_.store(due_ns, std::memory_order_relaxed);
    KickTimekeeper();
  }
}

void EngineImpl::DrainTimerInboxLocked(bool lower_target) {
  TimerNode* cur[kTimerInboxWays];
  std::size_t live = 0;
  for (auto& way : timer_inbox_) {
    // Relaxed first look: the common case (nothing submitted) costs no RMW.
    if (way.value.load(std::memory_order_relaxed) == nullptr) continue;
    // Acquire: pairs with the pushers' release (seq_cst) CAS.
    if (TimerNode* n = way.value.exchange(nullptr, std::memory_order_acquire)) cur[live++] = n;
  }
  if (live == 0) return;
  std::int64_t earliest = INT64_MAX;
  // Taken here, under the lock: the thread-safety analysis does not follow the
  // lock into the lambda below, which runs before this function returns.
  TimingWheel* const wheel = wheel_.get();
  // The stacks side by side ("Ways"), as the wheel walks a slot.
  WalkSideBySide(cur, live, [&](TimerNode* n) {
    n->next = nullptr;
    Operation* op = OperationOfTimer(n);
    // The timer holds its due time and id (OpFacts), written before the push
    // that published the node; Insert keeps them.
    const std::int64_t due = n->deadline();
    absl::Status s = wheel->Insert(n, due, n->sequence());
    ORDO_CHECK_OP(s.ok(), "the wheel refused a timer whose place was reserved (I3)",
                  op->id_relaxed());
    Facts(op).in_wheel = true;
    earliest = std::min(earliest, due);
  });
  // At least one node was drained, so `earliest` is a due time (INT64_MAX
  // included, which TargetOf still lowers the target for).
  if (lower_target) LowerTimekeeperTarget(earliest);  // I5
}

// C1, a cancel request against a retry: Cancel of an InProgress operation stores
// cancel_requested and reads the state again under the timer lock, and the runner
// reads the request and moves the operation to Postponed for its retry under the
// same lock. So either Cancel reads Postponed, and cancels the waiting retry
// itself, or the runner reads the request, and makes no retry: a Cancel that
// answered kCancelRequested never leaves a retry to run. (Read outside the lock,
// the request could land between the runner's look and its change, and Cancel,
// still reading InProgress, answered while the retry went ahead.)
EngineImpl::Repostponed EngineImpl::RepostponeForRetry(Operation* op, std::int64_t due_ns,
                                                       int retry) {
  TimerLock lock(this);  // drains the inbox first (I2)
  // Relaxed: C1's lock orders it with Cancel's store.
  if (Facts(op).cancel_requested.load(std::memory_order_relaxed)) {
    return Repostponed::kCancelRequested;
  }
  if (!ReserveTimers(1)) return Repostponed::kWheelFull;  // I3
  // Relaxed, both: published by the release CAS below (a Handle that reads the
  // count meanwhile may see either, never one taken back).
  Facts(op).retry_count.store(retry, std::memory_order_relaxed);
  Facts(op).due_ns().store(due_ns, std::memory_order_relaxed);
  std::uint32_t w = op->word.load(std::memory_order_relaxed);
  // Release: publishes the attempt's writes and retry_count to the next attempt
  // and to Handle readers. Only kWaiterBit changes under us (H4).
  while (!op->word.compare_exchange_weak(w, WithState(w, State::kPostponed),
                                         std::memory_order_release,
                                         std::memory_order_relaxed)) {
  }
  ArmTimerLocked(op, due_ns);  // in the place reserved above
  return Repostponed::kYes;
}

std::optional<std::int64_t> EngineImpl::ReleaseDue(bool* ahead_pending, bool by_timekeeper) {
  // Out of memory (the wheel's list of what is due, ours of what we own), the
  // operations already taken out of the wheel or owned would never be
  // scheduled, and WaitIdle, Shutdown and the destructor would wait for them
  // for ever, whoever called (the timekeeper, a manual clock's listener, a
  // submit, WaitIdle, Shutdown): the process ends with a message instead.
  try {
    return ReleaseDueOrThrow(ahead_pending, by_timekeeper);
  } catch (const std::bad_alloc&) {
    ORDO_CHECK(false, "an engine ran out of memory releasing due timers: out of memory");
  }
  return std::nullopt;  // not reached
}

std::optional<std::int64_t> EngineImpl::ReleaseDueOrThrow(bool* ahead_pending,
                                                          bool by_timekeeper) {
  // The kept list if no other round has it (acquire: pairs with the release
  // below, so its last user's clear() is seen), else one of our own.
  std::vector<Operation*> own;
  const bool kept = !ready_taken_.exchange(true, std::memory_order_acquire);
  std::vector<Operation*>& ready = kept ? ready_ : own;
  absl::Cleanup give_back = [&] {
    if (!kept) return;
    ready_.clear();
    ready_taken_.store(false, std::memory_order_release);  // see above
  };
  std::optional<std::int64_t> next;
  bool lowered = false;
  {
    // Drains the inbox first (I2); our own deadline comes from the wheel below.
    TimerLock lock(this, /*lower_target=*/false);
    manual_due_pending_ = false;  // this release covers it (I6)
    due_scratch_.clear();
    wheel_->Advance(NowNs(), &due_scratch_);
    // I3: released timers give their places back. Relaxed: a count.
    timers_armed_.fetch_sub(static_cast<std::int64_t>(due_scratch_.size()),
                            std::memory_order_relaxed);
    for (std::size_t i = 0; i < due_scratch_.size(); ++i) {
      // A node's word is on the line before its timer's, which the wheel read:
      // fetched a few nodes ahead for the CAS below.
      constexpr std::size_t kAhead = 4;
      if (i + kAhead < due_scratch_.size()) {
        PrefetchForWrite(&OperationOfTimer(due_scratch_[i + kAhead])->word);
      }
      Operation* op = OperationOfTimer(due_scratch_[i]);
      Facts(op).in_wheel = false;
      std::uint32_t w = op->word.load(std::memory_order_acquire);
      std::uint32_t next = w;
      // acq_rel: races with Cancel/Suspend on the same word; one wins. H2: a head
      // nobody owns becomes ours in the same CAS.
      while (StateOf(w) == State::kPostponed &&
             !op->word.compare_exchange_weak(
                 w, next = TakeOwnershipIfUnowned(WithState(w, State::kWaiting)),
                 std::memory_order_acq_rel, std::memory_order_acquire)) {
      }
      if (StateOf(w) == State::kPostponed && TookOwnership(w, next)) ready.push_back(op);
    }
    if (ahead_pending != nullptr) *ahead_pending = wheel_->CanCascadeAhead();
    next = wheel_->NextDeadline();
    // Relaxed: under timer_mu_, whose release publishes it to the next holder
    // (WaitIdle's own ReleaseDue, before it looks at ActivityIdle).
    if (!ready.empty()) {
      releasing_.fetch_add(static_cast<std::int64_t>(ready.size()), std::memory_order_relaxed);
    }
    ChaosPoint();
    // seq_cst: I5's timekeeper half (store the target, then load the inbox in
    // TimekeeperLoop); an exchange, so that another caller knows whether it
    // lowered the target the timekeeper may be sleeping towards (I5).
    const std::int64_t target = next.has_value() ? TargetOf(*next) : INT64_MAX;
    lowered = target < timekeeper_target_.exchange(target, std::memory_order_seq_cst);
  }
  if (lowered && !by_timekeeper) KickTimekeeper();  // I5
  // Outside the lock: we own each of them (H2), and only the owner releases a node.
  for (Operation* op : ready) Schedule(op);
  if (!ready.empty()) {
    // Release: every Schedule above (its scheduled count) happens-before a
    // reader that sees the count drop (ActivityIdle's acquire load).
    releasing_.fetch_sub(static_cast<std::int64_t>(ready.size()), std::memory_order_release);
    // As a worker that runs out of work: a waiter that saw the count before it
    // dropped is woken.
    WakeIdleWaiters();
  }
  return next;
}

bool EngineImpl::CascadeAheadTurn() {
  // Its own turn of the lock, after ReleaseDue scheduled what was due: the
  // releases never wait for it. The lock drains the inbox and lowers the target
  // (a kick) for what it drained, so the timekeeper's next look sees it.
  TimerLock lock(this);
  return wheel_->CascadeAhead(kCascadeAheadBudget);
}

void EngineImpl::KickTimekeeper() {
  // Release: the kick's count is only a wake-up token; the deadline itself is
  // read under timer_mu_.
  timekeeper_word_.fetch_add(1, std::memory_order_release);
  FutexWakeOne(&timekeeper_word_);
}

void EngineImpl::TimekeeperLoop() {
  for (;;) {
    // Read the kick count before looking at the wheel, so a kick that lands
    // after the look makes the wait below return at once.
    const std::uint32_t seen = timekeeper_word_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_acquire)) return;
    bool ahead_pending = false;
    std::optional<std::int64_t> next = ReleaseDue(&ahead_pending, /*by_timekeeper=*/true);
    // I5: seq_cst, after the target's store in ReleaseDue. A submit that pushed
    // after our drain and loaded the target before our store did not kick: drain
    // again rather than sleep through it.
    if (!TimerInboxEmpty()) continue;
    // The next level-1 slot holds timers: a turn of cascading it ahead
    // (timing_wheel.h), which the wheel would otherwise do all at once when T
    // enters it (2-3 ms with a burst's 64,000 timers in it, every operation due
    // just after that boundary as late). Then look again, releasing what came
    // due meanwhile first. Bounded: a turn moves up to kCascadeAheadBudget (> 0)
    // nodes, and the slot empties once its inserts stop.
    if (ahead_pending) {
      CascadeAheadTurn();
      continue;
    }
    if (!next.has_value()) {
      FutexWait(&timekeeper_word_, seen);
      continue;
    }
    const std::int64_t now = NowNs();
    if (*next <= now) continue;
    if (clock_ == &SystemClock::Instance()) {
      FutexWaitUntilRealtime(&timekeeper_word_, seen, *next);
    } else {
      // NsAhead: exact also from a clock that reads before 1970 to a due time
      // far ahead (an int64 difference overflowed, and the timekeeper spun
      // instead of sleeping).
      const std::uint64_t left =
          std::min(NsAhead(*next, now), static_cast<std::uint64_t>(kMaxTimekeeperSleepNs));
      FutexWait(&timekeeper_word_, seen,
                std::chrono::nanoseconds(static_cast<std::int64_t>(left)));
    }
  }
}

void EngineImpl::OnClockAdvanced() {
  // I6: the advancer's half of the fence pair with ArmTimerFromSubmit (the
  // clock's new time is written before this listener runs).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool ahead_pending = false;
  (void)ReleaseDue(&ahead_pending);
  // The timekeeper sleeps through a manual clock's steps unless kicked: the
  // advancing thread takes the turns of cascading ahead itself, so that tests
  // (and users) stepping the clock go through the staged path too.
  while (ahead_pending && CascadeAheadTurn()) {
  }
}

}  // namespace ordo::internal
