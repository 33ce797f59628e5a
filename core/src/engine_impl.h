// engine_impl.h: wires the parts; owns submit, control, shutdown and lifetimes.
//
// Parts: TokenMap (token -> chain), Injector (outside submissions), one WorkDeque
// per worker, Parker (sleep/wake), TimingWheel behind timer_mu_ with a timekeeper
// thread, per-thread counter stripes.
//
// Scheduling rule: a head has at most one owner, marked by kOwnedBit in its state
// word (operation.h, H1-H5): a run-queue entry, or the worker that took it inline
// from its chain. "Schedule" hands the caller's ownership to a new entry. The owner
// starts it (CAS Waiting -> InProgress), skips it (Canceled, or a terminal head
// released by ResumeToken: the chain moves on), or drops it (Postponed or
// Suspended meanwhile: whoever releases it takes ownership and schedules it).
//
// Activity accounting (WaitIdle). Every Schedule counts one "scheduled" on the
// scheduling thread's stripe; every popped item, when the worker is done with it
// (including the chain operations it ran inline after it), counts one "finished".
// Chain continuations run inline keep the item; continuations pushed back count a
// Schedule of their own. So sum(finished) == sum(scheduled) exactly when nothing
// is queued or running; postponed and suspended operations, and those waiting
// behind them, are in no queue and do not count.
//
// Lifetimes. Submit takes two references (the Handle's and the engine's). The
// engine's is dropped by the worker that finishes with the node for good
// (terminal and the chain moved past it), by the chain walk that skips a canceled
// node, or at shutdown. A chain node is released only after the chain's head moved
// past it and no token control holds it as its hazard (Chain::hazard_).
#ifndef ORDO_CORE_SRC_ENGINE_IMPL_H_
#define ORDO_CORE_SRC_ENGINE_IMPL_H_

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string_view>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "chain.h"
#include "config.h"
#include "injector.h"
#include "operation.h"
#include "ordo/engine.h"
#include "parker.h"
#include "sync.h"
#include "timing_wheel.h"
#include "token_map.h"
#include "work_deque.h"

namespace ordo::internal {

// Counters of one thread (a worker's own, or an outside thread's lease) or of a
// group of outside threads. Relaxed: statistics and credit counts; nothing is
// published through them, except `finished`/`scheduled`, which WaitIdle reads
// (see ActivityIdle), `submitting` (Shutdown's Dekker, EnterSubmit), and the
// terminal counts `succeeded`/`failed`/`canceled`, stored with release so that
// stats() never sees an end before its submission (EngineImpl::stats).
// A single-writer stripe has one writer for every counter but `credits`
// (submitters reclaim hoards with an exchange): Count adds there with a plain
// load and store, no locked instruction. Shared stripes add with RMWs.
struct alignas(kCacheLine) Stripe {
  // Line 0: what a submission touches (a leased stripe's submitter touches
  // nothing else: through `scheduled`); line 1: what a worker counts as it runs
  // operations.
  // Set once: before the worker thread starts, or at construction for the
  // leasable external stripes (which only their lessee writes).
  bool single_writer = false;
  // Leasable external stripes: held by one thread (EngineImpl::ExternalStripe).
  // CAS false -> true with acquire to take, store false with release to give
  // back, so a lessee sees the counts its predecessor stored.
  Atomic<bool> leased{false};
  // A single-writer stripe's own admission credits (EngineImpl::AdmitOwn and
  // TakeCredits, K1):
  // plain, its writer's alone; at most 2 * kOwnCreditsMax.
  std::int16_t own_credits = 0;
  // Submits, and ShutdownScopes, in flight on this stripe; Dekker partner of
  // closed_ (Shutdown, S1-S3).
  Atomic<std::uint32_t> submitting{0};
  Atomic<std::uint64_t> submitted{0};
  // Admission credits held by this stripe, which any submitter may reclaim (see
  // EngineImpl::TakeCredits).
  Atomic<std::int64_t> credits{0};
  // The injector producer a leased stripe's lessee pushes through, or a worker
  // spills its full deque through (PushLocal); made on first use, destroyed with
  // the engine, before the injector (declared after it).
  std::unique_ptr<Injector::ProducerToken> producer;
  // A single-writer stripe's ids for compact nodes (EngineImpl::CompactId): what
  // is left of a block taken from next_id_, [id_next, id_end). Plain: only the
  // writer touches them; a lessee closes the block as it gives the stripe back
  // (worker.cc GiveBack), and the next one sees that by L1.
  std::uint64_t id_next = 0;
  std::uint64_t id_end = 0;
  Atomic<std::uint64_t> rejected{0};
  Atomic<std::uint64_t> scheduled{0};
  Atomic<std::uint64_t> started{0};
  Atomic<std::uint64_t> succeeded{0};
  Atomic<std::uint64_t> failed{0};
  Atomic<std::uint64_t> canceled{0};
  Atomic<std::uint64_t> retried{0};
  Atomic<std::uint64_t> finished{0};
  Atomic<std::uint64_t> steals{0};
  Atomic<std::uint64_t> parks{0};
};
static_assert(sizeof(Stripe) == 2 * kCacheLine, "a stripe is two lines");

// Moves a single-writer stripe's own credits into its reclaimable hoard (K2). By
// its writer: when a worker runs out of work, when a lessee gives its stripe back.
inline void FlushOwnCredits(Stripe& st) {
  if (st.own_credits == 0) return;
  // Relaxed: a count, as every credit operation.
  st.credits.fetch_add(st.own_credits, std::memory_order_relaxed);
  st.own_credits = 0;
}

// Adds n (modulo 2^bits: a subtraction is the addition of its complement) to a
// counter of st. On a single-writer stripe (a worker's own, or a lease) that
// writer is the only one, so load + store cannot lose an addition; readers see the
// counter move with the same release/relaxed guarantee an RMW would give.
template <typename T>
inline void Count(Stripe& st, Atomic<T>& c, std::type_identity_t<T> n = 1,
                  std::memory_order order = std::memory_order_relaxed) {
  if (st.single_writer) {
    // Relaxed load: our own last store. `order` (release for `finished`) as below.
    c.store(c.load(std::memory_order_relaxed) + n, order);
  } else {
    c.fetch_add(n, order);  // shared stripe: a real RMW
  }
}

// One thread's latency histogram (a worker's; Stats::queue_wait and the others
// sum them). Single writer: Record loads and stores, no locked instruction. A
// snapshot (AddTo) sees the sum of every sample it counts (stored before the
// bucket's release), and may see in it samples whose bucket it read before
// they came, so the mean may run ahead for an instant (a statistic); it
// derives the count from the buckets so the two always agree, and
// never sees a bucket's sample without its max: the max is stored first, and
// the bucket's release store pairs with AddTo's acquire load, so a quantile
// (clamped to the max) is never below a sample it counts.
struct LatencyCells {
  Atomic<std::uint64_t> counts[LatencyHistogram::kBuckets] = {};
  Atomic<std::uint64_t> sum_ns{0};
  Atomic<std::uint64_t> max_ns{0};

  // A duration measured as NsAhead(end, start): 0 when the clock stepped back
  // past the start, and exact across the whole of int64 (an int64 difference
  // overflowed between readings far apart on either side of 1970).
  void Record(std::uint64_t v) {
    // Relaxed loads: our own last stores (single writer).
    if (v > max_ns.load(std::memory_order_relaxed)) max_ns.store(v, std::memory_order_relaxed);
    sum_ns.store(sum_ns.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
    Atomic<std::uint64_t>& c = counts[LatencyHistogram::BucketOf(v)];
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_release);  // after max
  }
  void AddTo(LatencyHistogram& h) const {
    for (int i = 0; i < LatencyHistogram::kBuckets; ++i) {
      const std::uint64_t n = counts[i].load(std::memory_order_acquire);  // then max, below
      h.counts[i] += n;
      h.count += n;
    }
    h.sum_ns += sum_ns.load(std::memory_order_relaxed);
    h.max_ns = std::max(h.max_ns, max_ns.load(std::memory_order_relaxed));
  }
};

// A worker's samples (Options::latency_sample_every; EngineImpl::Execute).
struct WorkerLatencies {
  LatencyCells queue_wait;
  LatencyCells run_time;
  LatencyCells lateness;
};

class EngineImpl;

// The registry of live engines, for stripe leases (worker.cc, L2): a serial
// unique in the process, valid until UnregisterEngine.
std::uint64_t RegisterEngine();
void UnregisterEngine(std::uint64_t serial);
// E1 (Handle::Explain against ~EngineImpl): true, and engine->explain_pins_
// raised, if the engine with this serial is still registered; under the
// registry's mutex, so an engine unregistered after it sees the pin (and waits
// for its release before it frees anything). False, and `engine` (which may
// be gone) not touched, once it is unregistered.
bool PinEngine(std::uint64_t serial, EngineImpl* engine);

// What the running callable asked for (Context::RetryAfter, RetryStatus).
// delay_ns and reason mean something only once retry is set.
struct Attempt {
  bool retry = false;
  std::int64_t delay_ns = 0;
  std::string reason;
};

struct Worker {
  Worker(EngineImpl* e, int i, Injector& injector)
      : engine(e), index(i), consumer(injector.MakeConsumerToken()) {
    stripe.single_writer = true;  // only this worker's thread counts here (see Stripe)
  }
  EngineImpl* engine;
  int index;
  WorkDeque deque;
  Stripe stripe;
  Injector::ConsumerToken consumer;
  Injector::PopLeaseMemory pop_lease;  // injector.h, J4
  std::uint32_t rng = 0;
  unsigned tick = 0;
  // Parked at most kStrandCheck since it last found work (Parker P1 (a): the
  // next park may be long, with the heavy fence). Only this worker's thread.
  bool parked_short = false;
  // Written only by this worker's thread; read by stats(). Apart from the
  // stripe: recorded once per sampled operation, not per operation.
  WorkerLatencies latency;
  // The attempt of the operation this worker runs (EngineImpl::Execute), one
  // at a time: kept here, not made and destroyed per operation. Only this
  // worker's thread.
  Attempt attempt;
  std::thread thread;
};

// The worker the calling thread is, if any (worker.cc); constant-initialized,
// so reached inline with no TLS wrapper.
extern constinit thread_local Worker* t_worker;

// A string kept for its next user (a spare extras' texts, a worker's retry
// reason) keeps its buffer up to this size; a longer one is freed, so that one
// long text does not stay pinned.
inline constexpr std::size_t kKeptTextCapacity = 256;
inline void FreeLongText(std::string& s) {
  if (s.capacity() > kKeptTextCapacity) [[unlikely]] std::string().swap(s);
}

// Frees the calling thread's spare extras (EngineImpl::NewExtras), so that its
// next extras come from the heap: for tests of running out of memory there.
void FreeSpareExtras();

class EngineImpl {
 public:
  // Throws what its allocations or thread starts throw (std::bad_alloc,
  // std::system_error), with every thread it started stopped and joined.
  explicit EngineImpl(Options options);
  ~EngineImpl();

  // --- submit (engine.cc) ---
  absl::Status Validate(const SubmitOptions& options, const char* what);
  // InvalidArgument when postpone-until `t` is beyond Options::horizon from `now`,
  // its message starting with `what` (the caller's name).
  absl::Status CheckHorizon(std::int64_t t, std::int64_t now,
                            absl::string_view what = "Submit") const;
  // CheckHorizon's test alone (PostBatch names the item only on a refusal).
  bool BeyondHorizon(std::int64_t t, std::int64_t now) const;
  // A compact node when `options` is null (Post(f)) or asks for nothing a compact
  // node cannot hold (CompactFits), a facts node otherwise, a full one for a Handle.
  Operation* NewOperation(void** storage, const SubmitOptions* options, bool with_handle);
  // True for one submission in Options::latency_sample_every of this thread's.
  bool SampleNext();
  // The creation time InitFacts records: `now` if the caller read the clock, a
  // reading of it for a sampled operation (its queue wait starts there), else
  // none (kNoTime).
  std::int64_t CreationTime(const Operation* op, std::int64_t now) const;
  // For a sampled operation about to start (Execute): records its queue wait and
  // lateness in w's histograms and returns the start time, from which its run
  // time is measured.
  std::int64_t RecordStart(Worker* w, const Operation* op);
  // True when an operation with these options, and no Handle, needs no facts:
  // independent, not postponed or suspended, no name, recurrence, retry settings
  // or policy (operation.h: a compact node).
  static bool CompactFits(const SubmitOptions& o);
  void DiscardOperation(Operation* op);
  // Accepts op, placing f in it past the last refusal, or returns its node and
  // leaves f as it was (C1). With with_handle, op carries a second reference,
  // for the Handle the caller makes on success.
  absl::Status Enqueue(Operation* op, detail::PendingCallable f, SubmitOptions&& options,
                       bool with_handle);
  // Enqueue with default options and no Handle (Post(f)): the same operation,
  // without the option checks, so a job posting jobs pays only for admission.
  absl::Status EnqueuePlain(Operation* op, detail::PendingCallable f);
  // C1: moves f into an admitted op (EnterSubmit, a credit and, if reserved, a
  // timer's place taken). If its move or copy throws, gives all that back,
  // returns the node, and rethrows: nothing changed.
  void PlaceCallable(Operation* op, detail::PendingCallable f, Stripe& st, bool timer_reserved);
  // Engine::PostBatch: the n prepared nodes of a Batch (compact for plain
  // independent items, facts nodes for tokened and postponed ones, full ones
  // when sampled; the tokens are tokens[item.token]), as n
  // Post calls in a row would post them, with one admission (TakeCredits), one
  // id fetch_add and one run-queue push per chunk of runnable nodes. All or
  // nothing: on an error nothing is taken, destroyed or published (the Batch
  // keeps its items). Once the first node is published the batch no longer
  // owns its items, so an allocation failure in the token map midway (a new
  // chain) ends the process with a message, as the injector's does (ORDO_CHECK),
  // rather than leave the Batch holding published nodes and Shutdown's
  // handshake open. Before admission (building a refusal's message) an
  // allocation failure throws to the caller, with nothing taken.
  // `postponed` of the items have a postpone-until time (Batch::AddPostponed,
  // facts nodes): one clock read checks them against the horizon (before
  // anything is taken), and after admission one reservation takes the wheel's
  // places for those still in the future (refused, the admission's credits go
  // back); their timers go onto the inbox in one push, before any of them is
  // pushed onto its chain (as Enqueue arms before it pushes).
  absl::Status EnqueueBatch(const BatchItem* items, std::size_t n, const Token* tokens,
                            std::size_t postponed);
  void CountRejected(std::uint64_t n = 1);
  // A refusal before admission, counted: `refusal` is built by the caller first,
  // so that an allocation failing for its message counts nothing (the bad_alloc
  // reaches the caller with nothing taken).
  absl::Status Rejected(absl::Status refusal) {
    CountRejected();
    return refusal;
  }
  // Engine::CheckBatchAdd.
  absl::Status CheckBatchAdd(std::size_t size, std::vector<std::int64_t>* future_dues,
                             std::int64_t due_ns, bool* takes_place);
  // Batches of this engine holding operations (Engine::CountLoadedBatch).
  // Relaxed: a count; the destructor reads it after every Batch call that
  // happens-before it.
  void CountLoadedBatch(int delta) { loaded_batches_.fetch_add(delta, std::memory_order_relaxed); }
  // Admission inside EnterSubmit/ExitSubmit, for n operations at once (a
  // Submit's one, or a batch's): FailedPrecondition once Shutdown began,
  // ResourceExhausted when max_pending has no room for all n; OK with n credits
  // taken. `what` names the call in the message.
  absl::Status Admit(Stripe& st, std::size_t n = 1, const char* what = "Submit");
  // Admit's common case for one operation, inline: the engine open and a credit
  // of the stripe's own (K1). False leaves everything as it was: Admit decides.
  bool AdmitOwn(Stripe& st) {
    // seq_cst: as Admit's load, the Submit half of Shutdown's Dekker.
    if (closed_.load(std::memory_order_seq_cst)) return false;
    if (own_batch_ == 0 || !st.single_writer || st.own_credits <= 0) return false;
    --st.own_credits;  // K1: only this stripe's writer is here
    return true;
  }
  // A submit refused after EnterSubmit: leaves the Dekker, returns op's node
  // unpublished (its callable not placed yet, C1), counts the rejection and
  // returns `why`.
  absl::Status Refuse(Operation* op, Stripe& st, absl::Status why);
  // Marks a new, independent, unpublished op runnable: its own head, owned
  // (H1 by a plain store).
  static void StoreNewHead(Operation* op);
  // Publishes a new, independent, runnable op to the run queues (StoreNewHead).
  void ScheduleNew(Operation* op, Stripe& st);

  // --- control ---
  absl::StatusOr<CancelOutcome> Cancel(Operation* op);
  absl::Status Postpone(Operation* op, std::optional<Clock::time_point> until);
  // `changed` (if given) says whether this call's own CAS made the change: OK
  // also answers an operation already Suspended (by Suspend), or not suspended
  // (by Resume), and a token control counts only what it changed.
  absl::Status Suspend(Operation* op, bool* changed = nullptr);
  absl::Status Resume(Operation* op, bool* changed = nullptr);
  absl::StatusOr<std::size_t> CancelToken(const Token& token);
  absl::StatusOr<std::size_t> SuspendToken(const Token& token);
  absl::StatusOr<std::size_t> ResumeToken(const Token& token);
  absl::StatusOr<TokenReport> TokenInfo(const Token& token);
  absl::Status SetFailurePolicy(const Token& token, FailurePolicy policy);
  // InvalidArgument, naming `what`, for a token Submit would refuse (none, an
  // empty string, over Options::max_token_bytes).
  absl::Status CheckControlToken(const Token& token, const char* what) const;
  std::string Explain(Operation* op);
  std::uint64_t serial() const { return serial_; }
  // E1: Handle::Explain calls in flight into this engine (PinEngine); the
  // destructor waits for none after it unregisters.
  Atomic<int> explain_pins_{0};
  // Explain of a terminal operation: reads no engine state, so a Handle can
  // ask after its engine is gone.
  static std::string ExplainFinished(Operation* op, State s);

  absl::Status WaitIdle();
  absl::Status Shutdown(ShutdownMode mode);
  // Shutdown's first call: closes the engine and sweeps per `mode` (S1-S3).
  void StartShutdown(ShutdownMode mode) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shutdown_mu_);
  // A later call: adds what a stricter `mode` cancels (S4).
  void EscalateShutdown(ShutdownMode mode) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shutdown_mu_);
  // Cancels what waits in the wheel (kDrainReady first releases what is due);
  // out of memory, the process ends (SweepWheelForShutdownOrThrow cannot be
  // undone halfway).
  void SweepWheelForShutdown(ShutdownMode mode);
  void SweepWheelForShutdownOrThrow(ShutdownMode mode);
  Stats stats() const;
  Clock& clock() const { return *clock_; }
  int workers() const { return static_cast<int>(workers_.size()); }
  // Options::max_pending as the constructor took it (0 -> 1, capped at 2^62).
  std::size_t max_pending() const { return options_.max_pending; }
  // The most operations one batch may hold: max_pending less what the
  // single-writer stripes may keep (K3), which no reclaim reaches. A batch of
  // max_pending itself could then be refused for ever by an idle engine, while
  // a thread that posted once lives on with a credit or two of its own. And no
  // more than a tokened item's 32-bit index tells apart from BatchItem::kNoToken.
  std::size_t batch_limit() const {
    const std::size_t kept = static_cast<std::size_t>(2 * own_batch_) *
                             (kExternalStripes - kSharedStripes + workers_.size());
    const std::size_t limit = options_.max_pending > kept ? options_.max_pending - kept : 1;
    return std::min<std::size_t>(limit, BatchItem::kNoToken);
  }

  // --- Context ---
  void RequestRetry(Operation* op, std::chrono::nanoseconds delay, std::string_view reason);
  static bool InCallableOf(const EngineImpl* e);
  // On one of e's worker threads (in a callable, or in a capture's destructor).
  static bool OnWorkerOf(const EngineImpl* e);
  // Shutdown(kCancelPending) asks every running operation to stop (Context).
  // Relaxed: a request, as OpFacts::cancel_requested.
  bool ShutdownCancels() const { return cancel_all_.load(std::memory_order_relaxed); }

  // --- Handle ---
  static void AddRef(Operation* op);
  static void DropRef(Operation* op);
  // Frees a node whose last reference is gone (its extras, then the pool).
  static void Reclaim(Operation* op);
  // Whether a Handle could still read op's times: false only when the engine's
  // reference (held by the caller) is the only one. A Handle comes only from
  // Submit (Post makes none), from copying a Handle, or from a predecessor's
  // next_occurrence (whose reference counts here), so with a count of 1 no Handle
  // exists or can be made,
  // and skipping the clock reads is unobservable. Token walks take temporary
  // references too; they only make the count larger. Relaxed: a stale read sees
  // a larger count (a Handle dropped meanwhile): a time recorded for nobody.
  // Only a full node can have a Handle (and times to record).
  static bool Observed(const Operation* op) {
    return HasTimes(op) && op->refs.load(std::memory_order_relaxed) > 1;
  }

  std::int64_t NowNs() const { return clock_->Now().time_since_epoch().count(); }
  // A reading never later than NowNs() at the time of the call, cheaper on the
  // system clock: CLOCK_REALTIME_COARSE, the time at the kernel's last tick (up
  // to a tick behind; 6 ns against 28 for a full read on the development VM).
  // On any other clock, NowNs().
  std::int64_t NowLowerBoundNs() const;

 private:
  // --- scheduling (worker.cc) ---
  void Schedule(Operation* op);
  // Schedule for a caller that has its stripe at hand (Submit).
  void Schedule(Operation* op, Stripe& st);
  // Schedule for n owned nodes at once (PostBatch): one bulk push to the
  // injector (a push per node to the worker's own deque) and one NotifyWork.
  void Schedule(Operation** ops, std::size_t n, Stripe& st);
  // Schedule's push, without its count and wake-up: to w's deque, spilling half
  // of it and op to the injector when it is full.
  void PushLocal(Worker* w, Operation* op);
  void MakeHead(Operation* op);
  // MakeHead without the Schedule: true when the caller took ownership of the
  // head (then it must schedule it; EnqueueBatch gathers such heads).
  bool BecomeHead(Operation* op);
  // BecomeHead for a Waiting node that nobody else can reach yet (operation.h H6):
  // a store, not an RMW. The caller owns the head and must schedule it.
  void BecomePrivateHead(Operation* op);
  // Sets kHeadBit (and kOwnedBit when it takes ownership, H1) in one RMW; returns
  // the prior word and stores the new one in *next.
  static std::uint32_t TakeHead(Operation* op, std::uint32_t* next);
  // The constructor's last step: the parker, the workers and their threads, the
  // timekeeper (or the manual clock's listener).
  void StartThreads();
  // Sets stop_, wakes and joins every thread started (the destructor's last
  // step, and a constructor's that failed).
  void StopThreads();
  void WorkerLoop(Worker* w);
  Operation* FindWork(Worker* w);
  // Moves a batch of outside submissions to the back of w's deque (fairness).
  void PullInjectorBatch(Worker* w);
  // A batch from the injector, under its pop lease when pop_lease_ (injector.h).
  std::size_t PopInjector(Worker* w, Operation** out, std::size_t max);
  Operation* Steal(Worker* w);
  bool HasVisibleWork() const;
  // Operations in the injector and the deques (approximate: a hint for waking).
  std::size_t VisibleBacklog() const;
  // Parker P2: wakes a sleeper for visible work we cannot start ourselves now.
  void ShareBacklog();
  void RunItem(Worker* w, Operation* op);
  // Sweeps idle chains if due; returns how long the caller may park (-1: no limit).
  std::chrono::nanoseconds SweepBeforePark();
  // Runs op's callable; returns true if the operation is finished with (terminal),
  // false if it was re-postponed for a retry.
  // `sole`: the runner is the node's only party (U1-U3 in worker.cc).
  // A compact op that asks for a retry first moves into a facts node (Enlarge),
  // and `op` then names that node.
  bool Execute(Worker* w, Operation*& op, bool sole);
  // Runner of a compact, sole, InProgress op: moves its callable and id into a
  // facts node in the same state, frees op, and returns the new node, which only
  // the runner knows (U1 holds for it as for op).
  Operation* Enlarge(Operation* op);
  // After `x` (a chain head) is finished with: the next runnable head, or nullptr.
  // Releases x (and any canceled nodes it skips).
  // Moves x's chain on past x (ended), applying the token's failure policy to a
  // failed x: as decided before its failure was published (F1 in worker.cc) if
  // `decided` is that decision, else as the policy reads now.
  struct FailureDecision {
    const Operation* op = nullptr;  // the failed head it was made for
    FailurePolicy policy = FailurePolicy::kContinue;
    Operation* last = nullptr;        // kCancelRest: the chain's tail then
    std::uint32_t resume_epoch = 0;   // kHalt: Chain::resume_epoch_ then
  };
  Operation* AdvanceChain(Operation* x, const FailureDecision* decided = nullptr);
  // F1: the decision for a failed head x of a chain, made before its runner
  // publishes the failure.
  FailureDecision DecideFailure(Operation* x);
  // F1: Execute's decision for the head it just failed, for RunItem's
  // AdvanceChain right after (same thread); cleared once used.
  static thread_local FailureDecision t_failure_decision_;
  void ReleaseChainNode(Chain* c, Operation* x);
  // Destroys op's callable, if it still has one; by whoever releases op.
  void DestroyCallable(Operation* op);
  // Destroys op's callable and drops the engine's reference (`sole`: U1-U3 in
  // worker.cc, frees it with no RMW).
  void ReleaseEngineRef(Operation* op, bool sole = false);
  // Makes `op` terminal from InProgress (H4: only its runner does); wakes waiters.
  // give_credit false: the operation's admission credit went to its next
  // occurrence (SpawnNextOccurrence).
  void FinishInProgress(Operation* op, State terminal, std::string&& error, Stripe& st,
                        CancelReason reason, bool sole = false, bool give_credit = true);
  void OnTerminal(State terminal, Stripe& st, bool give_credit = true);
  // CAS from a not-started state (only from Suspended if `only_suspended`) to
  // Canceled with `reason`. On success, removes its timer and schedules it if it
  // is a head (H2, H3). Returns the prior word.
  std::optional<std::uint32_t> TryCancelNotStarted(Operation* op, CancelReason reason,
                                                   bool only_suspended = false);
  // kMade when it made the next occurrence, which then holds op's admission
  // credit: a series takes one place under max_pending, never more. kNone: the
  // series ended (no next time, canceled, shutting down). kOutOfMemory: the
  // series ended for want of memory, nothing made, op's callable still its own.
  enum class Spawn : std::uint8_t { kNone, kMade, kOutOfMemory };
  Spawn SpawnNextOccurrence(Operation* op, Stripe& st);
  // A cancel request on a running operation (Cancel: kByCancel; CancelToken:
  // kByToken): stores cancel_requested under the timer lock (C1 in timers.cc;
  // seq_cst for S2), with `reason` if it is the first request, and returns the
  // state read after it.
  State RequestCancel(Operation* op, CancelReason reason);
  // Cancels op if it has not started (true); else stores a cancel request on it
  // (false), canceling it after all if a retry postponed it meanwhile. For a
  // recurring op whose series must end (CancelToken, EndSeriesAfter).
  bool CancelOrRequest(Operation* op, CancelReason reason);
  // "Cancel" or "CancelToken": who asked, in the text of what the request ended.
  static const char* RequesterName(CancelReason reason);
  // S2 (engine_impl.cc, "Recurrence"): a cancel request reached the running
  // occurrence op, so its series ends; a next occurrence op made before the
  // request is canceled (asked to stop, and so on, if it runs already). Returns
  // how many it canceled.
  std::size_t EndSeriesAfter(Operation* op, CancelReason reason);
  FailurePolicy PolicyFor(const Chain* c);
  static std::string PolicyKey(const Token& token);
  void SetPolicy(const Token& token, FailurePolicy p);
  // Runner only: cancels every not-started node linked behind x, up to `last`
  // (the tail as of now if null), but `spared`.
  void CancelBehind(Operation* x, CancelReason reason, const Operation* spared = nullptr,
                    Operation* last = nullptr);
  // Runner only: holds the chain at failed head x (kHalt), unless a ResumeToken
  // came since `resume_epoch` was read (F1). False if not halted.
  bool HaltChain(Chain* c, Operation* x, std::uint32_t resume_epoch);
  static OpExtras* ExtrasOf(Operation* op);
  // Extras from the thread's spares, or the heap (may throw bad_alloc); and
  // back to the thread's spares (or the heap), with their series reference
  // dropped.
  static OpExtras* NewExtras();
  static void DeleteExtras(OpExtras* ex);
  static void DropSeries(Series* s);
  // The held registry, so Shutdown can find what no queue or timer holds: the
  // suspended operations and the failed heads of halted chains, in two sets (one
  // operation can be in both for a moment: resumed, it may start, fail and halt
  // its chain before Resume removes it from the first; in one set, either party
  // could remove the other's entry and leave a held operation unregistered, and
  // Shutdown waiting for ever). Each entry holds a reference.
  //   R1  Suspended: Submit adds the entry before it publishes the operation;
  //       Suspend adds it, and Resume removes it right after its CAS, both
  //       under timer_mu_; a cancel from Suspended removes it after its CAS. So
  //       an operation that is Suspended has its entry, and an entry Suspend
  //       finds belongs to an operation that is Suspended or already canceled.
  //   R2  Halted: the runner adds the entry before it sets halted_at_ (or
  //       removes it again if the chain is not its own, or a ResumeToken came
  //       since its failure was decided: F1 in worker.cc); ResumeToken and
  //       Shutdown remove it together with clearing halted_at_, under the
  //       chain's shard lock. So, under that lock and with no HaltChain between
  //       its two steps (Shutdown's sweep never meets one: HaltChain runs in a
  //       ShutdownScope, S1, S2), a registered head is its chain's halted head,
  //       and its chain is alive.
  enum class Held : std::uint8_t { kSuspended = 0, kHalted = 1 };
  // Returns true if it added the entry (and its reference).
  bool RegisterHeld(Operation* op, Held why);
  // Removes the entry and drops its reference, if there was one.
  void UnregisterHeld(Operation* op, Held why);
  // Removes the entry, keeping its reference for the caller to drop (outside any
  // lock); true if there was one.
  bool EraseHeld(Operation* op, Held why);

  // --- timers (timers.cc) ---
  // Puts op's timer into the wheel, in a place already counted for it: one its
  // caller reserved (ReserveTimers(1)), or the one its timer held until the
  // caller took it out with MoveOutTimerLocked (I3).
  void ArmTimerLocked(Operation* op, std::int64_t due_ns) ABSL_EXCLUSIVE_LOCKS_REQUIRED(timer_mu_);
  // Takes op's timer out of the wheel and gives its place back; gives back the
  // place a Suspended op kept (place_kept) as well.
  void DisarmTimerLocked(Operation* op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(timer_mu_);
  // Suspend: takes op's timer out of the wheel, its place kept for Resume (I3).
  void KeepPlaceLocked(Operation* op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(timer_mu_);
  // Marks a place op holds (taken by ReserveTimers, not armed) as kept.
  void MarkPlaceKept(Operation* op);
  // Resume: true if op kept a place, which is now the caller's to arm or give
  // back, as if just reserved.
  bool TakeKeptPlaceLocked(Operation* op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(timer_mu_);
  // Takes op's timer out of the wheel keeping its place, for ArmTimerLocked to
  // put it back at another time.
  void MoveOutTimerLocked(Operation* op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(timer_mu_);
  // Gives back n places that ReserveTimers took and nothing armed.
  void ReleaseTimers(std::int64_t n);
  // Submit: arms a private, Postponed op without the lock, through the inbox
  // (timers.cc), in the place the caller reserved (ReserveTimers(1)).
  void ArmTimerFromSubmit(Operation* op, std::int64_t due_ns);
  // ArmTimerFromSubmit in two steps, for a batch: ReserveTimers takes n places
  // (I3; false, and nothing taken, if that would pass Options::max_timers);
  // PushTimers pushes the private, Postponed timers first..last (linked through
  // next, last->next is overwritten) onto the inbox with one CAS, `earliest`
  // being the smallest of their due times.
  bool ReserveTimers(std::int64_t n);
  // A series' next occurrence: one place, past max_timers if there is none
  // (I3's one exception, timers.cc).
  void TakeSeriesTimer();
  void PushTimers(TimerNode* first, TimerNode* last, std::int64_t earliest);
  // Moves the inbox into the wheel; every holder of timer_mu_ calls it first.
  // With lower_target (every holder but ReleaseDue, which works out the target
  // from the wheel afterwards and kicks for it itself), also lowers the
  // timekeeper's target to the earliest drained due time (timers.cc I5).
  void DrainTimerInboxLocked(bool lower_target) ABSL_EXCLUSIVE_LOCKS_REQUIRED(timer_mu_);
  // The inbox stack a submit of `first` pushes onto.
  Atomic<TimerNode*>& InboxWayOf(const TimerNode* first);
  // I5's timekeeper half: true if every way of the inbox is empty (seq_cst loads).
  bool TimerInboxEmpty();
  // Holds timer_mu_ with the inbox drained into the wheel (timers.cc I2): how the
  // engine takes the timer lock once it is built, so no holder can skip the drain.
  class ABSL_SCOPED_LOCKABLE TimerLock {
   public:
    explicit TimerLock(EngineImpl* e, bool lower_target = true)
        ABSL_EXCLUSIVE_LOCK_FUNCTION(e->timer_mu_)
        : e_(e) {
      e_->timer_mu_.Lock();
      e_->DrainTimerInboxLocked(lower_target);
    }
    // Releases what an arm under the lock found already due on a manual clock
    // (I6, timers.cc), once the lock is free.
    ~TimerLock() ABSL_UNLOCK_FUNCTION() {
      const bool release = e_->manual_due_pending_;
      e_->manual_due_pending_ = false;
      e_->timer_mu_.Unlock();
      if (release) (void)e_->ReleaseDue();
    }
    TimerLock(const TimerLock&) = delete;
    TimerLock& operator=(const TimerLock&) = delete;

   private:
    EngineImpl* e_;
  };
  // Kicks the timekeeper if due_ns comes before the deadline it sleeps towards.
  void LowerTimekeeperTarget(std::int64_t due_ns);
  absl::Status WheelFullError(const char* what) const;
  // Runner: InProgress -> Postponed at due_ns for its retry number `retry`
  // (stored with the change, so no reader sees a count that is then taken
  // back). kWheelFull: nothing changed, and the caller fails the operation
  // instead; kCancelRequested: a Cancel asked for it during the attempt (C1 in
  // timers.cc), nothing changed, and the caller cancels it instead.
  enum class Repostponed { kYes, kWheelFull, kCancelRequested };
  Repostponed RepostponeForRetry(Operation* op, std::int64_t due_ns, int retry);
  // Releases what is due at the clock's reading; returns the next deadline,
  // which it stores as the timekeeper's target, kicking the timekeeper if that
  // lowered the target, unless called by_timekeeper (timers.cc I5).
  // *ahead_pending: whether the wheel has a slot to cascade ahead (a turn of it:
  // CascadeAheadTurn).
  // Out of memory, the process ends with a message (ReleaseDueOrThrow's work
  // cannot be undone halfway).
  std::optional<std::int64_t> ReleaseDue(bool* ahead_pending = nullptr,
                                         bool by_timekeeper = false);
  std::optional<std::int64_t> ReleaseDueOrThrow(bool* ahead_pending, bool by_timekeeper);
  // A turn of it; true if the slot still holds nodes.
  bool CascadeAheadTurn();
  void TimekeeperLoop();
  void KickTimekeeper();
  // The manual clock's listener: release due timers on the advancing thread
  // (out of memory there, ReleaseDue ends the process).
  void OnClockAdvanced();

  // --- waiting ---
  bool ActivityIdle() const;
  std::uint64_t Pending() const;
  // Blocks until done() holds, re-checking whenever a worker runs out of work.
  void AwaitCondition(const std::function<bool()>& done);

  // --- admission and counters ---
  // The calling thread's stripe: its worker's, or for an outside thread, the
  // stripe it leases (or a shared one when none is free).
  Stripe& MyStripe() {
    Worker* w = t_worker;
    if (w != nullptr && w->engine == this) return w->stripe;
    return ExternalStripe();
  }
  Stripe& ExternalStripe();
  // One of the kSharedStripes, round robin (counted with RMWs).
  Stripe& SharedStripe();
  // Ids. Unique per engine, all from next_id_.
  //   D1  A full or facts node takes its own from next_id_ (TakeIds), whose
  //       modification order extends happens-before: so ids of operations that
  //       a Handle can name increase in creation order, across threads too,
  //       between submits ordered by happens-before (handle.h), and so do the
  //       ties of equal due times (DESIGN: released in creation order). Two
  //       concurrent submits to one token take their ids before their chain
  //       push, which is where their calls take effect: their chain order may
  //       be the opposite of their ids' (a review found the docs claimed more).
  //       Enqueue takes the id before it moves the callable in (its RMW then
  //       waits for none of the node's stores): a submit made by that move
  //       constructor, to the same engine, takes a later id but joins a shared
  //       token's chain first. Neither submit happens-before the other (one
  //       runs inside the other), so handle.h's promise does not cover them.
  //   D2  A compact node (Post(f): independent, runnable, no Handle) submitted
  //       through a single-writer stripe takes the next id of the stripe's block
  //       (CompactId), kIdBlock ids taken with one RMW, so that submitters do not
  //       all bounce one line per operation (the issue's "no global counter that
  //       every op touches"). TakeIds closes the stripe's block, so one thread's
  //       ids still increase in its creation order, whatever the kind.
  //   D3  What D2 gives up: a compact node's id may be below that of an operation
  //       another thread created before it. Nothing orders independent
  //       operations (their start order is not guaranteed), and no Handle shows
  //       the id; a retried one's id breaks ties with the same due time only.
  static constexpr std::uint64_t kIdBlock = 64;
  std::uint64_t TakeIds(Stripe& st, std::uint64_t n = 1);
  std::uint64_t CompactId(Stripe& st) {
    // A shared stripe has several writers: each id from the counter (D1's way).
    if (!st.single_writer) return TakeIds(st);
    if (st.id_next == st.id_end) {
      st.id_next = TakeIds(st, kIdBlock);  // the next block (TakeIds closed the old)
      st.id_end = st.id_next + kIdBlock;
    }
    return st.id_next++;
  }
  // Submit's half of the Dekker with Shutdown (see Shutdown): submitting goes
  // up before closed_ is read. On a single-writer stripe with asymmetric
  // fences, a plain store and a compiler barrier (Shutdown issues the
  // membarrier); otherwise a seq_cst RMW.
  void EnterSubmit(Stripe& st) {
    if (st.single_writer && asymmetric_) {
      // Relaxed load: our own last store. The store need not be seq_cst: the
      // HeavyFence in Shutdown supplies the barrier between it and our read of
      // closed_.
      st.submitting.store(st.submitting.load(std::memory_order_relaxed) + 1,
                          std::memory_order_relaxed);
      LightFence();
    } else {
      st.submitting.fetch_add(1, std::memory_order_seq_cst);
    }
  }
  static void ExitSubmit(Stripe& st) {
    // Release: pairs with Shutdown's loads of submitting, so what this submit
    // published happens-before Shutdown's drain.
    Count(st, st.submitting, ~std::uint32_t{0}, std::memory_order_release);  // minus one
  }
  // The same Dekker for a change other than a submit that Shutdown must see
  // whole or not at all (S1-S3 above Shutdown): a Suspend, a Postpone, a retry's
  // re-arm, a series' next occurrence, a chain halted by its failure. Open for
  // the scope's life; closed() is the Dekker's read, after EnterSubmit's raise.
  class ShutdownScope {
   public:
    ShutdownScope(EngineImpl* e, Stripe& st) : e_(e), st_(st) { e_->EnterSubmit(st_); }
    ~ShutdownScope() { ExitSubmit(st_); }
    // seq_cst, or the asymmetric pair (EnterSubmit's store and compiler barrier,
    // then this load; Shutdown's seq_cst store and membarrier).
    bool closed() const { return e_->closed_.load(std::memory_order_seq_cst); }
    ShutdownScope(const ShutdownScope&) = delete;
    ShutdownScope& operator=(const ShutdownScope&) = delete;

   private:
    EngineImpl* e_;
    Stripe& st_;
  };
  // n credits at once, or none (PostBatch's all-or-nothing admission): from the
  // stripe's own credits (K1, one at a time), then its hoard, then the global
  // pool, reclaiming every hoard once before it reports the engine full.
  bool TakeCredits(Stripe& st, std::int64_t n);
  // TakeCredits' shared part: the stripe's hoard, then the global pool, then
  // (if `reclaim`) every hoard reclaimed into the pool and the pool again.
  bool TakeSharedCredits(Stripe& st, std::int64_t n, bool reclaim = true);
  // Gives n credits taken for a submission that was then refused back to the
  // shared pool.
  void ReturnCredits(std::int64_t n);
  void GiveCredit(Stripe& st);

  // --- token controls ---
  // Calls fn(node) for each node of the token's chain from its head to the tail
  // seen at the start, under the shard lock, with the head protected (hazard).
  std::size_t ForEachInChain(const Token& token,
                             const std::function<void(Chain*, Operation*)>& fn);

  friend class ::ordo::Engine;

  Options options_;
  Clock* clock_;
  // clock_->is_manual(), read once: the timer paths ask on every arm (timers.cc I6).
  bool manual_clock_ = false;
  std::uint64_t clock_listener_ = 0;
  std::int64_t batch_ = 1;
  // K1: credits a single-writer stripe keeps for itself per refill (0: none).
  static constexpr std::int64_t kOwnCreditsMax = 8;
  std::int64_t own_batch_ = 0;

  // Unique per engine object ever made in the process: the key of the stripe
  // leases threads cache (an engine at a reused address is another engine).
  const std::uint64_t serial_;
  // AsymmetricFencesAvailable(), read once.
  const bool asymmetric_;
  Atomic<unsigned> next_shared_{0};  // relaxed: spreads lease-less threads

  // Ids: every full or facts node takes the next one, so a Handle's id increases
  // in creation order (handle.h); a single-writer stripe takes them kIdBlock at a
  // time for its compact nodes (CompactId).
  alignas(kCacheLine) Atomic<std::uint64_t> next_id_{0};
  // A worker is spinning for work before it parks (at most one does; WorkerLoop).
  alignas(kCacheLine) Atomic<bool> spinner_{false};
  // Steady-clock ns of the last idle sweep of the token map (SweepBeforePark).
  Atomic<std::int64_t> last_sweep_ns_{0};
  // One parking sweeper at a time (SweepBeforePark): taken by exchange with
  // acquire, given back with a release store, so each sweeper sees the round's
  // cursor (TokenMap::SweepIdleStep) and round_spared_ as the last one left them.
  Atomic<bool> sweeping_{false};
  // Chains the parking round under way has spared so far; decides whether the
  // park that ends the round is timed. Relaxed: read and written only by the
  // holder of sweeping_, which orders them.
  Atomic<std::size_t> round_spared_{0};
  alignas(kCacheLine) Atomic<bool> closed_{false};
  Atomic<bool> stop_{false};
  // Set by Shutdown(kCancelPending) only: workers cancel rather than start what
  // they pop, and running callables see Context::cancel_requested(). Relaxed
  // reads: a mode switch, published by the seq_cst store in Shutdown and re-read
  // on every pop.
  Atomic<bool> cancel_all_{false};
  Atomic<std::int64_t> global_credits_{0};
  Atomic<std::int64_t> loaded_batches_{0};  // CountLoadedBatch

  Injector injector_;
  bool pop_lease_ = false;  // workers >= kPopLeaseMinWorkers (PopInjector)
  TokenMap tokens_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<Parker> parker_;
  std::unique_ptr<Stripe[]> external_;

  // WaitIdle: waiters count and an epoch word they sleep on. WakeIdleWaiters
  // moves the epoch when there are waiters: called after what may make their
  // condition true (a worker out of work, released operations scheduled).
  void WakeIdleWaiters();
  alignas(kCacheLine) Atomic<int> idle_waiters_{0};
  Atomic<std::uint32_t> idle_epoch_{0};
  // Operations a ReleaseDue took out of the wheel (under timer_mu_) and has not
  // scheduled yet: runnable, but in no queue and in no stripe's scheduled count,
  // so ActivityIdle counts them here (timers.cc, ReleaseDue).
  Atomic<std::int64_t> releasing_{0};
  // ReleaseDue's list of the operations it released, kept between rounds so
  // that a round allocates only past the largest before it. One round at a
  // time has it (ready_taken_: exchange true with acquire to take, store false
  // with release to give back, so the next taker sees the cleared vector); a
  // round that finds it taken (two releasers at once) uses a vector of its own.
  std::vector<Operation*> ready_;
  Atomic<bool> ready_taken_{false};

  // Timers.
  mutable Mutex timer_mu_;
  std::unique_ptr<TimingWheel> wheel_ ABSL_GUARDED_BY(timer_mu_);
  std::vector<TimerNode*> due_scratch_ ABSL_GUARDED_BY(timer_mu_);
  // A manual clock only: a timer armed under the lock was due at the clock's
  // reading there; the TimerLock releases it after unlocking (timers.cc I6).
  bool manual_due_pending_ ABSL_GUARDED_BY(timer_mu_) = false;
  // The deadline the timekeeper sleeps towards (ns; INT64_MAX none). Written by
  // the timekeeper under timer_mu_ and lowered by whoever arms an earlier timer
  // (who then kicks it); a hint: see timers.cc.
  Atomic<std::int64_t> timekeeper_target_{INT64_MAX};
  // Postponed operations submitted but not yet moved into the wheel: Treiber
  // stacks through TimerNode::next, a submit picking one by its node's address
  // (timers.cc, I1-I5, "Ways").
  static_assert(std::has_single_bit(kTimerInboxWays), "a way is picked by masking");
  CacheAligned<Atomic<TimerNode*>> timer_inbox_[kTimerInboxWays];
  // Timer places taken: in the wheel, in the inbox, or reserved and about to be
  // armed (timers.cc I3); the max_timers admission count.
  alignas(kCacheLine) Atomic<std::int64_t> timers_armed_{0};
  // Of those, the places kept by Suspended operations (I3, place_kept): not in
  // the wheel, so stats().postponed leaves them out.
  Atomic<std::int64_t> timers_kept_{0};
  Atomic<std::uint32_t> timekeeper_word_{0};
  std::thread timekeeper_;

  // Token policies that differ from kContinue (costs bytes only for those tokens).
  // The standard containers here and in held_, not absl's: both are written by
  // calls that throw bad_alloc to their caller with nothing changed
  // (SetFailurePolicy, Suspend), and an insert into a std::unordered_ container
  // that fails has no effect, where Debian's absl leaves a table that could not
  // grow broken. Both are off the hot path.
  // A key is the token's kind byte, then its bytes (PolicyKey), hashed as the
  // token map hashes it (TokenHash). PolicyFor looks one up by its chain's
  // TokenKey, with no key built and no hash computed: it runs on a worker as a
  // head fails, where building one allocated for a token over std::string's
  // inline bytes (a cost per failure, and out of memory there ended the process).
  struct PolicyKeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view stored) const {
      return TokenHash(static_cast<std::uint8_t>(stored[0]), stored.substr(1));
    }
    std::size_t operator()(const TokenKey& k) const { return k.hash; }
  };
  struct PolicyKeyEq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const { return a == b; }
    bool operator()(std::string_view stored, const TokenKey& k) const {
      return stored.size() == k.bytes.size() + 1 &&
             static_cast<std::uint8_t>(stored[0]) == k.kind && stored.substr(1) == k.bytes;
    }
    bool operator()(const TokenKey& k, std::string_view stored) const { return (*this)(stored, k); }
  };
  mutable Mutex policy_mu_;
  std::unordered_map<std::string, FailurePolicy, PolicyKeyHash, PolicyKeyEq> policies_
      ABSL_GUARDED_BY(policy_mu_);
  Atomic<bool> any_policy_{false};

  Mutex held_mu_;
  std::unordered_set<Operation*> held_[2] ABSL_GUARDED_BY(held_mu_);  // by Held

  Mutex shutdown_mu_;
  bool shutdown_started_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  // The strictest mode applied so far (S4 above EngineImpl::Shutdown).
  ShutdownMode shutdown_mode_ ABSL_GUARDED_BY(shutdown_mu_) = ShutdownMode::kDrainAll;
};

}  // namespace ordo::internal

#endif  // ORDO_CORE_SRC_ENGINE_IMPL_H_
