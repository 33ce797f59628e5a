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
// reaches the head of its chain otherwise. It lives in the same word as the state,
// so exactly one party sees "head and Waiting" begin, and that party schedules it:
//   H1  Whoever sets kHeadBit on a Waiting word schedules the operation.
//   H2  Whoever moves a word with kHeadBit from Postponed or Suspended to Waiting
//       schedules it; from Postponed or Suspended to Canceled, schedules it too (a
//       worker then skips it and moves the chain on: the chain is released at once).
//   H3  Ownership. A head that is Waiting (or terminal and not yet moved past) is
//       owned by exactly one party: its queue entry (kQueuedBit set) or the
//       worker that got it inline from its chain (bit clear). Schedule sets
//       kQueuedBit and pushes only if the bit was clear; the worker that pops the
//       entry clears it in the same CAS that decides what to do (start, skip a
//       canceled one, or drop a held one). An inline runner that finds the bit set
//       leaves the node to its entry. Cancel of a Waiting head schedules nothing:
//       its owner sees Canceled and moves the chain on. So a node is started,
//       skipped or moved past by one worker, once, however the transitions race.
//   H4  Only the worker that moved the word to kInProgress changes it while it is
//       kInProgress (Cancel only sets cancel_requested).
//
// References. refs counts Handles plus one for the engine, dropped when a worker
// (or the chain walk that skips it) has finished with the node. The last reference
// returns the node to the pool.
#ifndef ORDO_CORE_SRC_OPERATION_H_
#define ORDO_CORE_SRC_OPERATION_H_

#include <cstdint>
#include <limits>
#include <string>

#include "ordo/callable.h"
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
// In a run queue (set by Schedule, cleared by the worker that pops it): at most
// one queue entry per operation, whoever calls Schedule and however often.
inline constexpr std::uint32_t kQueuedBit = 1u << 6;
inline constexpr int kReasonShift = 8;
inline constexpr std::uint32_t kReasonMask = 0xFu << kReasonShift;
inline constexpr std::int64_t kNoTime = std::numeric_limits<std::int64_t>::min();

inline State StateOf(std::uint32_t word) { return static_cast<State>(word & kStateMask); }
inline std::uint32_t WithState(std::uint32_t word, State s) {
  return (word & ~kStateMask) | static_cast<std::uint32_t>(s);
}
inline CancelReason ReasonOf(std::uint32_t word) {
  return static_cast<CancelReason>((word & kReasonMask) >> kReasonShift);
}

// Cold data, allocated only when an operation needs it.
struct OpExtras {
  std::string name;
  std::string error;  // written by the owner of the Failed transition before it
  std::string recurrence_text;
  std::int64_t recurrence_start_ns = kNoTime;
  void* recurrence = nullptr;  // const RecurrenceRule*, owned (engine_impl.cc)
  int max_retries = -1;
  // The next occurrence of a recurrence, with a reference; set once by the runner
  // (release) and read by Handle::next_occurrence (acquire).
  Atomic<Operation*> successor{nullptr};
  std::uint8_t backoff_kind = 0;
  std::int64_t backoff_base_ns = 0;
  std::int64_t backoff_max_ns = 0;
};

struct Operation {
  // --- hot: read or written for every operation --------------------------------
  Atomic<std::uint32_t> word{0};
  Atomic<std::uint32_t> refs{0};
  // The chain link (Chain::Push publishes, the runner reads). Reused as the free
  // list link while the node sits in a pool.
  Atomic<Operation*> chain_next{nullptr};
  Chain* chain = nullptr;  // fixed from submit to the engine's release; null = independent
  std::uint64_t token_hash = 0;  // the chain's TokenKey::hash (finds its shard safely)
  const detail::CallableOps* ops = nullptr;
  alignas(kInlineCallableAlign) unsigned char storage[kInlineCallableBytes];

  // --- per-operation facts -----------------------------------------------------
  // Relaxed everywhere: written before the node is published (Submit) and read by
  // diagnostics that may look at a recycled node; nothing is ordered by it.
  Atomic<std::uint64_t> id{0};
  EngineImpl* engine = nullptr;
  // Times in ns since the epoch of the engine's clock. Each is written before the
  // state transition that publishes it (release) and read after it (acquire).
  Atomic<std::int64_t> created_ns{kNoTime};
  Atomic<std::int64_t> started_ns{kNoTime};
  Atomic<std::int64_t> completed_ns{kNoTime};
  // Postpone-until; kNoTime when none. Written under the engine's timer lock.
  Atomic<std::int64_t> due_ns{kNoTime};
  Atomic<std::int32_t> retry_count{0};
  // Set by Cancel on a running operation; read by Context::cancel_requested.
  // Relaxed: a request, not a publication; nothing else is read because of it.
  Atomic<bool> cancel_requested{false};
  // Set while the node's timer is in the wheel (under the timer lock).
  bool in_wheel = false;
  // Release on store (Submit before publish, or the sole runner), acquire on load.
  Atomic<OpExtras*> extras{nullptr};
  TimerNode timer;

  std::uint64_t id_relaxed() const { return id.load(std::memory_order_relaxed); }
  void* callable_storage() { return storage; }
};

// The Operation that owns `node` (its timer member).
inline Operation* OperationOfTimer(TimerNode* node) {
  return reinterpret_cast<Operation*>(reinterpret_cast<char*>(node) -
                                      offsetof(Operation, timer));
}

}  // namespace ordo::internal

#endif  // ORDO_CORE_SRC_OPERATION_H_
