// operation.h: the node that carries one operation through the engine: its state
// word, its chain link, its inline callable storage, its times.
//
// Lifecycle. Every change of state is a single CAS on word, so all threads see one
// order of transitions and never a flag apart from its state:
//   kWaiting     -> kInProgress | kPostponed | kSuspended | kCanceled
//   kPostponed   -> kWaiting (due or cleared) | kSuspended | kCanceled
//   kSuspended   -> kWaiting | kPostponed | kCanceled
//   kInProgress  -> kSucceeded | kFailed | kCanceled | kPostponed (retry)
//   kSucceeded, kFailed, kCanceled: terminal, never left (ORDO_CHECK)
//
// The head bit. kHeadBit is set, once, when the operation becomes runnable as far
// as its chain is concerned: at submit for an independent operation, when it
// reaches the head of its chain otherwise. Head and owner bits live in the state
// word, so every decision about who acts is one RMW:
//   H1  Whoever sets kHeadBit on a Waiting or Canceled word sets kOwnedBit in the
//       same RMW and becomes its owner (it pushes a run-queue entry, or a worker
//       runs it inline). On a Postponed or Suspended word it sets kHeadBit alone:
//       the head is held, and nobody owns it.
//   H2  Whoever moves a head from Postponed or Suspended to Waiting or Canceled
//       sets kOwnedBit in the same CAS if it was clear, and then pushes an entry.
//       If it was set, the owner (which has not yet seen the held state) acts.
//   H3  The owner alone starts the operation (Waiting -> InProgress, clearing
//       kOwnedBit), drops a held one (clearing kOwnedBit by CAS; if that CAS fails
//       because the head was released meanwhile, it is still the owner and looks
//       again), or moves the chain past a terminal one. Handing an owned head to a
//       run-queue entry passes the ownership with it. So a head is started,
//       skipped or moved past by exactly one party, once, however the transitions
//       race; and a node is released only by its owner.
//   H4  Only the worker that moved the word to kInProgress changes it while it is
//       kInProgress (Cancel only sets cancel_requested).
//   H5  A Waiting head with kOwnedBit clear does not exist.
//   H6  H1's RMW is a plain store where nobody else can reach the node yet: a
//       Waiting node with no Handle and no registration as held (a Post, a
//       batch item) that has just activated its idle chain (Chain C2). Walkers
//       start at the chain's head_ (Chain::PinHead), which the emptying runner
//       cleared before its emptying CAS (TokenMap T3); producers behind it write
//       only its link; nothing else holds it. Its submitter stores the head and
//       owner bits, then publishes the node with a release store of head_
//       (EngineImpl::BecomePrivateHead). The RMW was a locked instruction on
//       every activation (W2: 97-101 -> 84-88 ns without it).
//
// References. refs counts Handles plus one for the engine, dropped when a worker
// (or the chain walk that skips it) has finished with the node. The last reference
// returns the node to the pool.
#ifndef ORDO_CORE_SRC_OPERATION_H_
#define ORDO_CORE_SRC_OPERATION_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>
#include <type_traits>

#include "ordo/callable.h"
#include "ordo/recurrence.h"
#include "ordo/state.h"
#include "sync.h"
#include "timing_wheel.h"

namespace ordo::internal {

class Chain;
class EngineImpl;

// Why a Canceled operation was canceled (kept in the state word, bits 8..11).
enum class CancelReason : std::uint8_t {
  kByCancel = 0,   // Engine::Cancel
  kByToken = 1,    // Engine::CancelToken
  kByShutdown = 2,
  kByPolicy = 3,   // FailurePolicy::kCancelRest after a failure ahead of it
  kRetriesDuringShutdown = 4,
};

inline constexpr std::uint32_t kStateMask = 0x7;
inline constexpr std::uint32_t kWaiterBit = 1u << 3;  // a thread sleeps in Handle::Wait
inline constexpr std::uint32_t kHeadBit = 1u << 4;
// FailurePolicy applied to this failed head already (a resumed halt moves on).
inline constexpr std::uint32_t kPolicyDoneBit = 1u << 5;
// Owned: some worker-side party (a run-queue entry, or the worker that took it
// inline from its chain) has the duty to start, skip or drop this head. See H3.
inline constexpr std::uint32_t kOwnedBit = 1u << 6;
// kCompactBit (bit 7): the node's kind, below.
inline constexpr int kReasonShift = 8;
inline constexpr std::uint32_t kReasonMask = 0xFu << kReasonShift;
inline constexpr std::int64_t kNoTime = std::numeric_limits<std::int64_t>::min();

inline State StateOf(std::uint32_t word) { return static_cast<State>(word & kStateMask); }
inline std::uint32_t WithState(std::uint32_t word, State s) {
  return (word & ~kStateMask) | static_cast<std::uint32_t>(s);
}
// H2: the word `next` (the target of a transition) with kOwnedBit added when it
// is a Waiting or Canceled head that nobody owns.
inline std::uint32_t TakeOwnershipIfUnowned(std::uint32_t next) {
  const State s = static_cast<State>(next & kStateMask);
  if ((next & kHeadBit) != 0 && (next & kOwnedBit) == 0 &&
      (s == State::kWaiting || s == State::kCanceled)) {
    return next | kOwnedBit;
  }
  return next;
}
// True when the transition prev -> next made its caller the owner (H2).
inline bool TookOwnership(std::uint32_t prev, std::uint32_t next) {
  return (prev & kOwnedBit) == 0 && (next & kOwnedBit) != 0;
}

inline CancelReason ReasonOf(std::uint32_t word) {
  return static_cast<CancelReason>((word & kReasonMask) >> kReasonShift);
}

// What every occurrence of a recurring series shares, and nothing changes once
// the series is submitted: made by the submit (with the first occurrence's
// extras), a reference held by each occurrence's extras, freed with the last.
// Shared, not copied: an occurrence is made on the worker that runs the one
// before it, where a copy of the rule and name cost an allocation each.
struct Series {
  explicit Series(const RecurrenceRule& r) : rule(r) {}
  // A count, and the last release frees the block. Taking one is relaxed: its
  // taker holds a reference already (the occurrence it copies from). Dropping
  // one is acq_rel: the last dropper acquires every other holder's reads
  // before it frees (they read only what was written before the first
  // publication, but the free itself must come after their reads).
  Atomic<std::uint32_t> refs{1};
  const RecurrenceRule rule;
  std::string name;                  // the series' Handle::name(), every occurrence's
  std::int64_t start_ns = kNoTime;   // DTSTART, the grid's origin
};

// Cold data, allocated only when an operation needs it (and kept for reuse by
// the thread that frees it: EngineImpl::NewExtras).
struct OpExtras {
  std::string name;   // a series keeps its name in Series, shared
  std::string error;  // written by the owner of the Failed transition before it
  // An occurrence's time on its series' grid (the start, for the first): kept
  // apart from the due time, which a Postpone moves or clears, so that the
  // series goes on from this point, not from before it (the first occurrence
  // postponed to before its start, or run while the clock stepped back, found
  // the start itself as its next, and ran twice).
  std::int64_t occurrence_ns = kNoTime;
  Series* series = nullptr;  // a recurring operation's, one reference held
  int max_retries = -1;
  // The next occurrence of a recurrence, with a reference; set once by the runner
  // (release) and read by Handle::next_occurrence (acquire).
  Atomic<Operation*> successor{nullptr};
  std::uint8_t backoff_kind = 0;
  std::int64_t backoff_max_ns = 0;
};

// Layout. Three kinds of node, from three pools (op_pool.h), told apart by
// kCompactBit and kNoTimesBit in the state word, which a node keeps for its life:
//   compact  one cache line, Operation alone: an independent operation with no
//            Handle and no option that needs a fact (Post(f), or Post(f, o) with
//            o's defaults). 64 bytes: the state word, references, its id, the
//            callable. Nothing can observe its times, so none are kept; a retry
//            moves it into a facts node (EngineImpl::Enlarge).
//   facts    (kNoTimesBit) two lines, 128 bytes: that line and the facts (OpFacts):
//            an operation with no Handle that needs more than a compact node holds
//            (a token, a postponement, a suspension, extras). Nobody can read its
//            times (a Handle alone shows them), so it has no line for them.
//   full     FullOperation: three lines, 192 bytes; the third holds the times and
//            the engine a Handle reads. Every operation made by Submit.
// Lines, grouped so that the common path moves one line between the submitting
// core and the worker's, not three:
//     line 0  what both sides touch: the state word, references, links, the
//             callable. Written by the submitter, then by the worker (transitions,
//             the pool's reset).
//     line 1  the facts: the id and due time (kept in the timer, whose tie-break
//             and deadline they are), the timer's links, the token's hash,
//             extras, retries. Written in full by whoever takes the node from the
//             pool (InitFacts); on the common path the worker reads nothing there
//             (kExtrasBit says there are no extras) and writes only what an
//             operation uses (a retry; the timekeeper, the timer).
//     line 2  (full only) the engine and the three times: written by InitFacts,
//             by the runner only while a Handle exists (Observed), and by
//             whoever cancels the operation (its completion time).
// Engine code holds every node as an Operation*; Facts(op) reaches the facts of
// a facts or full node, Times(op) the times of a full one (both are
// standard-layout with op first, so the addresses are one).
inline constexpr std::uint32_t kCompactBit = 1u << 7;
// kNoTimesBit (bit 12): a facts node, above. Bits 8..11 are the cancel reason.
inline constexpr std::uint32_t kNoTimesBit = 1u << 12;
inline constexpr std::uint32_t kKindBits = kCompactBit | kNoTimesBit;
// kExtrasBit: the node has extras (OpFacts::extras is set). In the word, so the
// worker's common path (no extras) reads nothing in line 1, which the submitter
// wrote: one cross-core miss fewer per chained operation. Set in the store or
// RMW that publishes the extras (the submitter's first store of the word, or the
// runner's terminal transition, EngineImpl::FinishInProgress); cleared by the
// pool's reset. The pointer itself is nulled by Reclaim, which frees the extras:
// ExtrasOf and the Handle read it without the bit.
inline constexpr std::uint32_t kExtrasBit = 1u << 13;
// kSampledBit: the operation's latencies go into Stats' histograms
// (Options::latency_sample_every). Only a full node carries it (its creation time
// is where the wait is measured from). Set by NewOperation while the node is
// private, kept by every later store of the whole word (KeptBitsOf), cleared by
// the pool's reset with the rest.
inline constexpr std::uint32_t kSampledBit = 1u << 14;
// kNoHandleBit: a full node that no Handle can ever name (a sampled Post's, or
// Batch::Add's): it has times only for the histograms, so nothing keeps a Handle's
// facts for it (the error of a failure, a full node for its next occurrence).
// Set, kept and cleared with kSampledBit.
inline constexpr std::uint32_t kNoHandleBit = 1u << 15;

struct alignas(kCacheLine) Operation {
  Atomic<std::uint32_t> word{0};
  Atomic<std::uint32_t> refs{0};
  // The chain link (Chain::Push publishes, the runner reads). A compact node is
  // never in a chain: there the field holds its id (SetCompactId, id_relaxed),
  // written before the node is published and never changed.
  Atomic<Operation*> chain_next{nullptr};
  const detail::CallableOps* ops = nullptr;
  Chain* chain = nullptr;  // fixed from submit to the engine's release; null = independent
  alignas(kInlineCallableAlign) unsigned char storage[kInlineCallableBytes];

  // Relaxed: ids order nothing by themselves (see OpFacts::id).
  std::uint64_t id_relaxed() const;
  void* callable_storage() { return storage; }
};
static_assert(sizeof(Operation) == kCacheLine, "a compact node is one cache line");
static_assert(offsetof(Operation, storage) + kInlineCallableBytes <= kCacheLine,
              "line 0 holds the callable");

// The facts (line 1 above) of a facts or full node. 64 bytes: the id and the
// due time live in the timer, as its seq and deadline, and nowhere else.
struct OpFacts {
  // seq: the id; deadline_ns: postpone-until (kNoTime when none). Both relaxed
  // everywhere: written before the node is published (InitFacts), or, for the due
  // time, under the engine's timer lock (Postpone, Resume, a retry) before the
  // timer is armed; read by diagnostics that may look at a recycled node, by
  // Explain, and (under timer_mu_) by a series' next occurrence; nothing is
  // ordered by them. The wheel owns the links while the timer is armed
  // (in_wheel, under the timer lock).
  alignas(kCacheLine) TimerNode timer;
  std::uint64_t token_hash = 0;  // the chain's TokenKey::hash (finds its shard safely)
  // Release on store (Submit before publish, or the sole runner), acquire on load.
  Atomic<OpExtras*> extras{nullptr};
  Atomic<std::int32_t> retry_count{0};
  // Set by Cancel (or CancelToken, for a recurring head) on a running operation,
  // under the timer lock (C1 in timers.cc; EngineImpl::RequestCancel); read by
  // Context::cancel_requested, Execute, SpawnNextOccurrence (a request ends a
  // series) and, under the timer lock, RepostponeForRetry (no retry after a
  // request). A request, not a publication: C1 needs only the timer lock, and
  // the other reads are relaxed, but for S2 (engine_impl.cc, "Recurrence"),
  // whose store and second look are seq_cst against the successor's.
  Atomic<bool> cancel_requested{false};
  // Who made the first request (a CancelReason: kByCancel or kByToken), named
  // by what it ends: a retry not made (in its text; its reason stays kByCancel,
  // the mark of a request-driven end that Cancel's answer looks for) and a
  // series' next occurrence (its reason).
  // Written with the first request, under the timer lock, before the flag;
  // relaxed, read after a load of the flag that saw it (its seq_cst store
  // publishes it), or under the timer lock.
  Atomic<std::uint8_t> cancel_request_reason{0};
  // Set while the node's timer is in the wheel (under the timer lock).
  bool in_wheel = false;
  // Set while a Suspended operation with a time keeps its timer's place (I3 in
  // timers.cc: Suspend takes the timer out and keeps the place, Resume arms in
  // it). Written by Submit before the node is published, otherwise under the
  // timer lock; false when the node is freed.
  bool place_kept = false;

  // Who asked (cancel_request_reason), once cancel_requested was seen set.
  CancelReason RequestReason() const {
    return static_cast<CancelReason>(cancel_request_reason.load(std::memory_order_relaxed));
  }
  Atomic<std::uint64_t>& id() { return timer.seq; }
  const Atomic<std::uint64_t>& id() const { return timer.seq; }
  Atomic<std::int64_t>& due_ns() { return timer.deadline_ns; }
  const Atomic<std::int64_t>& due_ns() const { return timer.deadline_ns; }
};
static_assert(sizeof(OpFacts) == kCacheLine, "the facts are one cache line");

// The times (line 2 above) of a full node. Each is written before the state
// transition that publishes it (release) and read after it (acquire), but for
// completed_ns of a cancel: the canceler stamps it just after its CAS made the
// operation terminal (stamped before, a canceler that then lost the CAS to a
// worker that finished it could overwrite the worker's stamp after the state
// was published, and completed_at() changed). CompletedNs() reads it.
struct OpTimes {
  alignas(kCacheLine) EngineImpl* engine = nullptr;
  // The engine's serial (worker.cc, L3: never reused), which tells a Handle's
  // engine from a later one at the same address, and pins it (PinEngine).
  std::uint64_t engine_serial = 0;
  // Times in ns since the epoch of the engine's clock.
  Atomic<std::int64_t> created_ns{kNoTime};
  Atomic<std::int64_t> started_ns{kNoTime};
  Atomic<std::int64_t> completed_ns{kNoTime};
};

struct FactsOperation {
  Operation op;
  OpFacts facts;
};
struct FullOperation {
  Operation op;
  OpFacts facts;
  OpTimes times;
};
static_assert(sizeof(FactsOperation) == 2 * kCacheLine, "a facts node is two cache lines");
static_assert(sizeof(FullOperation) == 3 * kCacheLine, "a full node is three cache lines");
static_assert(std::is_standard_layout_v<FactsOperation> &&
                  std::is_standard_layout_v<FullOperation> &&
                  offsetof(FactsOperation, op) == 0 && offsetof(FullOperation, op) == 0 &&
                  offsetof(FactsOperation, facts) == offsetof(FullOperation, facts),
              "an Operation* of a facts or full node is its FactsOperation*");

// The kind bits never change while a node lives (the pool keeps them too), so
// any load of the word tells the kind. Relaxed: the bits order nothing.
inline bool IsCompact(const Operation* op) {
  return (op->word.load(std::memory_order_relaxed) & kCompactBit) != 0;
}
// What a store of the whole word of a node still private to its writer keeps:
// the kind (for life), kExtrasBit (set when the extras were made), kSampledBit
// and kNoHandleBit. Relaxed: the node is private, so the load reads its writer's
// own last store.
inline std::uint32_t KeptBitsOf(const Operation* op) {
  return op->word.load(std::memory_order_relaxed) &
         (kKindBits | kExtrasBit | kSampledBit | kNoHandleBit);
}
// A full node that a Handle may name (made by Submit, or its occurrences): it
// keeps what only a Handle reads. Relaxed: the kind bits and kNoHandleBit never
// change while the node lives.
inline bool MayHaveHandle(const Operation* op) {
  return (op->word.load(std::memory_order_relaxed) & (kKindBits | kNoHandleBit)) == 0;
}
// A full node: it has times (line 2), and may have a Handle.
inline bool HasTimes(const Operation* op) {
  return (op->word.load(std::memory_order_relaxed) & kKindBits) == 0;
}
// The facts of a facts or full node.
inline OpFacts& Facts(Operation* op) {
  ORDO_DCHECK(!IsCompact(op), "the facts of a compact node");
  return reinterpret_cast<FactsOperation*>(op)->facts;
}
inline const OpFacts& Facts(const Operation* op) {
  ORDO_DCHECK(!IsCompact(op), "the facts of a compact node");
  return reinterpret_cast<const FactsOperation*>(op)->facts;
}
// The times of a full node.
inline OpTimes& Times(Operation* op) {
  ORDO_DCHECK(HasTimes(op), "the times of a node without them");
  return reinterpret_cast<FullOperation*>(op)->times;
}
inline const OpTimes& Times(const Operation* op) {
  ORDO_DCHECK(HasTimes(op), "the times of a node without them");
  return reinterpret_cast<const FullOperation*>(op)->times;
}
// The completion time of an operation seen terminal (acquire of the word
// first). A canceler stamps it just after its CAS (OpTimes), so a reader can
// come in between, for an instant: it waits for the stamp. Acquire: pairs
// with StampCanceled's release store (a finisher's stamp came before its
// release of the word, which the caller acquired).
inline std::int64_t CompletedNs(const Operation* op) {
  std::int64_t t;
  while ((t = Times(op).completed_ns.load(std::memory_order_acquire)) == kNoTime) {
    std::this_thread::yield();
  }
  return t;
}
// A completion stamp: never kNoTime, which CompletedNs waits past (a clock
// set to its very first instant reads as that).
inline std::int64_t CompletionStamp(std::int64_t now_ns) { return now_ns == kNoTime ? now_ns + 1 : now_ns; }
// A canceler's stamp, just after its CAS made op Canceled (OpTimes).
inline void StampCanceled(Operation* op, std::int64_t now_ns) {
  // Release: pairs with CompletedNs.
  Times(op).completed_ns.store(CompletionStamp(now_ns), std::memory_order_release);
}
// A node's extras, or null, for a caller that has acquired the word transition
// that published them (kExtrasBit; a compact node has none). `order` is the
// caller's: acquire against the release store of whoever set them (the
// submitter before publishing, or the sole runner; EngineImpl::ExtrasOf),
// relaxed for the last owner of the node.
inline OpExtras* ExtrasIfAny(const Operation* op, std::memory_order order) {
  // Relaxed: the caller's acquire of the word (or its ownership) ordered it.
  if ((op->word.load(std::memory_order_relaxed) & kExtrasBit) == 0) return nullptr;
  return Facts(op).extras.load(order);
}
// A compact node's id, in the chain link it never uses (Operation::chain_next).
// Relaxed: written before the node is published.
inline void SetCompactId(Operation* op, std::uint64_t id) {
  op->chain_next.store(reinterpret_cast<Operation*>(static_cast<std::uintptr_t>(id)),
                       std::memory_order_relaxed);
}
inline std::uint64_t Operation::id_relaxed() const {
  if (IsCompact(this)) {
    return static_cast<std::uint64_t>(
        reinterpret_cast<std::uintptr_t>(chain_next.load(std::memory_order_relaxed)));
  }
  return Facts(this).id().load(std::memory_order_relaxed);
}

// Writes the facts of a node (and a full node's times) in full: a node from the
// pool carries its last user's. Relaxed: the node is private until its
// publication (a queue or chain push, a timer's arming), which orders these
// writes before any reader. The timer's links are the pool's (clear) and stay.
inline void InitFacts(Operation* op, std::uint64_t id, EngineImpl* engine,
                      std::uint64_t engine_serial, std::int64_t created_ns,
                      std::int64_t due_ns) {
  OpFacts& f = Facts(op);
  f.id().store(id, std::memory_order_relaxed);
  f.due_ns().store(due_ns, std::memory_order_relaxed);
  f.token_hash = 0;
  f.retry_count.store(0, std::memory_order_relaxed);
  f.cancel_requested.store(false, std::memory_order_relaxed);
  f.cancel_request_reason.store(0, std::memory_order_relaxed);
  if (HasTimes(op)) {
    OpTimes& t = Times(op);
    t.engine = engine;
    t.engine_serial = engine_serial;
    t.created_ns.store(created_ns, std::memory_order_relaxed);
    t.started_ns.store(kNoTime, std::memory_order_relaxed);
    t.completed_ns.store(kNoTime, std::memory_order_relaxed);
  }
}

// The Operation that owns `node` (the timer of a facts or full node).
inline Operation* OperationOfTimer(TimerNode* node) {
  return &reinterpret_cast<FactsOperation*>(reinterpret_cast<char*>(node) -
                                            offsetof(FactsOperation, facts) -
                                            offsetof(OpFacts, timer))
              ->op;
}

}  // namespace ordo::internal

#endif  // ORDO_CORE_SRC_OPERATION_H_
