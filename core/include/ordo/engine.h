// ordo/engine.h: the engine that runs asynchronous operations.
//
// Offers
//   Engine::Submit       accept a callable with options; returns a Handle or an error
//   Engine::Post         the same without a Handle; PostBatch posts a Batch at once
//   Cancel / Postpone / Suspend / Resume          control one operation
//   CancelToken / SuspendToken / ResumeToken / TokenInfo / SetFailurePolicy
//                                                  control a token's chain
//   WaitIdle / Shutdown / stats                    the engine as a whole
//
// Ordering promises (happens-before terms)
//   - Operations with the same token start in creation order, one at a time: B
//     starts only after A is terminal, and everything A wrote happens-before B
//     starts. Creation order is the order in which the Submit calls for that token
//     take effect; if Submit(A) happens-before Submit(B), A is first.
//   - Submit(X) happens-before X starts.
//   - X's terminal state is published with release: a thread that reads it with
//     Handle::state() or Handle::Wait() sees everything X wrote.
// Not promised
//   - Start order of independent operations (no token) is best effort: from one
//     producer it is close to creation order, not equal to it.
//
// Who may call: every member from any thread, concurrently, including from inside
// a callable, except WaitIdle and Shutdown (errors on the engine's workers: inside
// a callable, or a capture's destructor) and the destructor. A callable that
// submits to its own token never runs the new operation inline.
#ifndef ORDO_ENGINE_H_
#define ORDO_ENGINE_H_

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ordo/callable.h"
#include "ordo/clock.h"
#include "ordo/context.h"
#include "ordo/handle.h"
#include "ordo/state.h"
#include "ordo/stats.h"
#include "ordo/token.h"

namespace ordo {
namespace internal {
class EngineImpl;
struct Operation;
// One prepared operation of a Batch: its node, its callable's ops, the index of
// its token in the batch's tokens (kNoToken: independent), and its postpone-until
// time in ns of the engine's clock (kNotPostponed: none).
struct BatchItem {
  static constexpr std::uint32_t kNoToken = ~std::uint32_t{0};
  static constexpr std::int64_t kNotPostponed = INT64_MIN;
  Operation* op;
  const detail::CallableOps* ops;
  std::uint32_t token = kNoToken;
  std::int64_t due_ns = kNotPostponed;
};
}  // namespace internal
class Batch;

// What a token's chain does after one of its operations ends Failed, but for a
// recurring occurrence whose body succeeded and whose next occurrence found no
// memory (SubmitOptions::recurrence): that failure is the engine's, and the
// chain moves on.
enum class FailurePolicy : std::uint8_t {
  kDefault,       // in SubmitOptions: keep the token's current policy (initially kContinue)
  kContinue,      // the chain moves on (Dynamics: Failed is "Completed")
  kHalt,          // the chain is held after a failure until ResumeToken
  kCancelRest,    // every operation queued behind the failed one is Canceled, but
                  // a failed recurring occurrence's own next occurrence is spared
};

// How a retried operation's delay grows.
struct Backoff {
  enum class Kind : std::uint8_t { kFixed, kExponential } kind = Kind::kFixed;
  // kExponential: delay * 2^retry_count, capped at max_delay. A negative
  // max_delay is refused (InvalidArgument), whatever the kind.
  std::chrono::nanoseconds max_delay = std::chrono::hours(1);
};

struct Options {
  // Worker threads; 0 means std::thread::hardware_concurrency().
  int workers = 0;
  // Accepted, not yet terminal operations; Submit beyond it is ResourceExhausted.
  // Below 65,536 the limit is exact. From there on a few places may be kept for
  // a thread's next submits, at most 1/16384 of the limit (and 16) per thread:
  // by each worker until it runs out of work, and by each outside thread that
  // submitted from its own stripe until it exits; so a submit can be refused
  // that much short of the limit, even just after WaitIdle returns.
  // Values above 2^62 (SIZE_MAX included) are taken as 2^62: no limit in practice;
  // 0 is taken as 1.
  std::size_t max_pending = std::size_t{1} << 22;
  // Longest token, in bytes, that Submit accepts (integer keys always fit).
  std::size_t max_token_bytes = 1024;
  // Where the engine reads the time; null means SystemClock::Instance(). The clock
  // must outlive the engine.
  Clock* clock = nullptr;
  // Default maximum retries of an operation (SubmitOptions::max_retries overrides).
  int max_retries = 10;
  // The timing wheel's tick: lateness is at most one tick plus scheduling delay.
  // Zero or negative is taken as the default, 1 ms.
  std::chrono::nanoseconds tick = std::chrono::milliseconds(1);
  // Furthest postpone-until accepted, measured from the clock's reading at submit
  // (zero or negative: none later than that reading).
  std::chrono::nanoseconds horizon = std::chrono::hours(24 * 366 * 10);
  // Postponed operations that may be pending in the timing wheel at once (above
  // 2^62 taken as 2^62). A suspended operation with a time keeps its place, so
  // its Resume never finds the wheel full. A recurring series' next occurrence
  // is the exception: it takes a place past the limit when there is none (it
  // replaces the occurrence that ended, so at most one more per live series).
  std::size_t max_timers = std::size_t{1} << 22;
  // Consecutive operations of one chain a worker runs before it requeues the chain
  // behind other work (fairness budget).
  int chain_budget = 32;
  // How long an idle worker looks for work before it parks. One worker at a time
  // spins this long, the others an eighth of it, so a lightly loaded engine spends
  // about one core on it, not one per worker. Held to [0, 1 hour].
  std::chrono::nanoseconds spin = std::chrono::microseconds(100);
  // Stats' latency histograms sample one operation in this many of those each
  // thread submits (1: every one; 0: none). A sampled operation costs three clock
  // reads and, for a Post, a larger node: at 128, under 1 ns and about a byte
  // per operation on average (bench/HISTORY.md, eleventh session).
  std::uint32_t latency_sample_every = 128;
};

// Every member has a default member initializer, so designated initializers that
// name only some members compile warning-free under -Wextra (g++ and clang).
struct SubmitOptions {
  // Operations sharing a token run one at a time, in creation order. Empty: independent.
  Token token = {};
  // Do not start before this instant (absolute, the engine clock's time).
  std::optional<Clock::time_point> postpone_until = std::nullopt;
  // An iCalendar RRULE subset ("FREQ=DAILY;INTERVAL=3;"); empty for a one-off. The
  // first occurrence is at postpone_until if set, else now, and runs whether or
  // not it matches the BY parts. The series is computed in UTC (a daily 09:00
  // moves by an hour in local time across a DST change), and every occurrence
  // keeps the first's seconds and fraction (BYHOUR=9;BYMINUTE=0 from 14:23:47.1
  // runs at 09:00:47.1). A series that falls behind goes on at the next
  // occurrence still to come: the missed ones are skipped, and COUNT counts
  // them. Out of memory making the next occurrence ends the series: the
  // occurrence that ran ends Failed, its error saying so (if its body did not
  // fail, the token's FailurePolicy does not apply: its chain goes on).
  // ordo/recurrence.h has the rest.
  std::string recurrence = {};
  // For observability: shown by Explain(), kept by the Handle.
  std::string name = {};
  // Submit the operation Suspended: it does not start until Resume (or
  // ResumeToken). Post refuses it with no token: nothing could resume it. With
  // postpone_until, it takes its place in the wheel now (Options::max_timers).
  bool suspended = false;
  // Maximum retries of this operation; negative means Options::max_retries.
  int max_retries = -1;
  Backoff backoff = {};
  // Sets the token's failure policy from this submit on (kDefault leaves it);
  // any other policy with no token is InvalidArgument.
  FailurePolicy failure_policy = FailurePolicy::kDefault;
};

enum class ShutdownMode : std::uint8_t {
  kDrainAll,       // run everything that remains, postponed operations included (they
                   // are waited for, unless a stricter Shutdown follows); suspended
                   // operations are Canceled
  kDrainReady,     // run what is runnable (what is due included); cancel what is
                   // postponed or suspended
  kCancelPending,  // cancel everything not started; running operations get a cancel request
};

struct TokenReport {
  std::size_t pending = 0;          // not-terminal operations of the token
  std::optional<State> head_state;  // state of the chain's head; nullopt if idle
  std::uint64_t head_id = 0;        // id of the head, 0 if idle
};

class Engine {
 public:
  // Starts the workers (and the timekeeper). Throws std::system_error when a
  // thread cannot be started (a limit on threads: lower Options::workers) or
  // std::bad_alloc, with every thread it started stopped and joined.
  explicit Engine(Options options = {});
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  // Shuts down with kDrainReady (after an earlier Shutdown, what kDrainReady adds
  // to its mode, if anything) and joins the workers.
  // Never waits for a postponement. Must not run inside one of its callables, nor
  // on one of its workers (a capture's destructor dropping the last owner): the
  // process then ends with a message saying so.
  ~Engine();

  // Accepts `f`, callable as f(Context&) or f(), returning void or absl::Status,
  // possibly throwing. `f` is moved (or copied) into the operation only once it
  // is accepted: on an error it is left as it was, so a caller may submit it
  // again. Errors (nothing changes): InvalidArgument for an empty
  // callable, an empty or oversized token, a bad recurrence rule, a time out of
  // range; ResourceExhausted when max_pending (or max_timers) is reached;
  // FailedPrecondition after Shutdown began.
  template <typename F>
  absl::StatusOr<Handle> Submit(F&& f, SubmitOptions options = {}) {
    // A function: through its pointer (PendingCallable points at an object).
    if constexpr (std::is_function_v<std::remove_reference_t<F>>) {
      return Submit(&f, std::move(options));
    } else {
      internal::Operation* op = nullptr;
      if (absl::Status s = PrepareNode(f, &options, /*with_handle=*/true, &op, "Submit");
          !s.ok()) {
        return s;
      }
      return Enqueue(op, detail::PendingCallable::Of<F>(f), std::move(options));
    }
  }

  // Submit for work nobody watches: the same operation, the same order, states and
  // errors (and one more: InvalidArgument for `suspended` with no token, which
  // nothing could resume), but no Handle. The operation is reachable only through its token
  // (CancelToken, SuspendToken, ResumeToken, TokenInfo), through WaitIdle and
  // Shutdown. Cheaper than discarding Submit's Handle: the engine holds the only
  // reference, so no other thread touches the node's count, and no start or finish
  // time is read from the clock for it. An independent Post with default options
  // (no token, postponement, name, recurrence, retry settings, policy or
  // suspension) takes a one-cache-line node, 64 bytes with a nothrow-movable
  // capture of up to 32 (callable.h: any other is allocated apart); it can still retry (Context::RetryAfter), up to Options::max_retries.
  // Any other Post takes two lines (128 bytes), and a Submit three (the third
  // holds the times only a Handle shows). The exception: one operation in
  // Options::latency_sample_every, sampled for Stats' latency histograms, takes
  // three lines and three clock reads, whichever way it was submitted. A
  // postponed Post reads a cheaper, coarse reading of the system clock, never later than the true time: a
  // postpone-until that has just passed (by up to one kernel tick) may show as
  // Postponed in TokenInfo until the timekeeper's next look (microseconds)
  // instead of Waiting; it still starts at once, and WaitIdle and Shutdown
  // count it as runnable.
  template <typename F>
  absl::Status Post(F&& f, SubmitOptions options) {
    if constexpr (std::is_function_v<std::remove_reference_t<F>>) {
      return Post(&f, std::move(options));  // as in Submit
    } else {
      internal::Operation* op = nullptr;
      if (absl::Status s = PrepareNode(f, &options, /*with_handle=*/false, &op, "Post");
          !s.ok()) {
        return s;
      }
      return EnqueueDetached(op, detail::PendingCallable::Of<F>(f), std::move(options));
    }
  }
  // Post(f, {}), on a shorter path: with no options there is nothing to check
  // but the callable and admission.
  template <typename F>
  absl::Status Post(F&& f) {
    if constexpr (std::is_function_v<std::remove_reference_t<F>>) {
      return Post(&f);  // as in Submit
    } else {
      internal::Operation* op = nullptr;
      if (absl::Status s = PrepareNode(f, nullptr, /*with_handle=*/false, &op, "Post"); !s.ok()) {
        return s;
      }
      return EnqueuePlain(op, detail::PendingCallable::Of<F>(f));
    }
  }

  // Posts every operation of `batch` (see Batch), in the order they were added,
  // as one submission: one admission for all of them, one block of ids, one push
  // to the injector and one wake-up per 64 runnable operations (from inside a
  // callable they go onto the worker's own deque, as a Post there does), and one
  // push of the postponed ones' timers. All or nothing: on an error none is
  // posted and the batch keeps its operations, to post again or Clear;
  // FailedPrecondition after Shutdown began, ResourceExhausted when max_pending
  // has no room for all of them or max_timers has none for every postponed one
  // still in the future (Batch::Add keeps a batch within both limits, as the
  // clock read at each Add saw it), InvalidArgument for a batch of another
  // engine or a postponement beyond Options::horizon (naming the item: possible
  // only if the clock went back since its Add; checked before Shutdown and
  // room). On success the batch is empty (and keeps its capacity). An empty
  // batch posts nothing and returns OK.
  absl::Status PostBatch(Batch& batch);

  // Cancels an operation: kCanceled if it had not started (its body never runs and
  // its chain moves on; for an operation waiting to be retried, no further attempt
  // runs), kCancelRequested if it is running (it then makes no further attempt: a
  // retry it asks for ends it Canceled; also the answer when the request reached
  // it and it ended before Cancel returned). FailedPrecondition if it is already
  // terminal; InvalidArgument for an empty handle. Canceling a
  // recurring occurrence, running or not, ends its series: a next occurrence
  // made before the request reached the running one is canceled too (or, due
  // at once and started already, asked to stop in turn).
  absl::StatusOr<CancelOutcome> Cancel(const Handle& handle);

  // Changes (or, with nullopt, clears) the postpone-until time of an operation that
  // has not started; it keeps its place in its chain. FailedPrecondition if it is
  // running or terminal, or during shutdown. An operation waiting for a retry
  // counts as not started: this moves (or clears) the retry's time.
  // ResourceExhausted, nothing changed, when the wheel has no place for a new
  // time (Options::max_timers), also for a suspended operation, which keeps its
  // place for its Resume.
  absl::Status Postpone(const Handle& handle, std::optional<Clock::time_point> until);
  // Holds a not-started operation; a suspended head blocks its chain. An
  // operation waiting for a retry counts as not started: this holds it past its
  // retry time.
  absl::Status Suspend(const Handle& handle);
  // Releases a suspended operation (Postponed again if its time has not come,
  // in the wheel's place it kept while suspended).
  absl::Status Resume(const Handle& handle);

  // Token controls act on every not-started operation of the token that was
  // submitted before the call took effect (later submits are not affected).
  // They return how many operations changed. InvalidArgument, nothing changed,
  // for no token, an empty string, or one over Options::max_token_bytes.
  // CancelToken also ends a series whose occurrence is running on the token: it
  // is asked to stop, as Cancel asks it (not counted), and no next occurrence
  // follows (one its runner made already is canceled: counted if this call's
  // cancel of it won, not if the runner's, seeing the request, did).
  absl::StatusOr<std::size_t> CancelToken(const Token& token);
  absl::StatusOr<std::size_t> SuspendToken(const Token& token);
  // Resumes every suspended operation of the token and releases a chain held by
  // FailurePolicy::kHalt, also one whose failed head has ended but is not held
  // yet (that release is not counted).
  absl::StatusOr<std::size_t> ResumeToken(const Token& token);
  absl::StatusOr<TokenReport> TokenInfo(const Token& token) const;
  // Sets the token's failure policy for its operations that fail from now on;
  // kDefault puts it back to the default, kContinue.
  absl::Status SetFailurePolicy(const Token& token, FailurePolicy policy);

  // Returns once nothing is running and nothing is runnable (postponed and
  // suspended operations, and those waiting behind them, do not count; a
  // postponed one whose time has come when WaitIdle is called does).
  // Everything the operations that ran did happens-before its return: what they
  // wrote may be read after it without further synchronisation.
  // FailedPrecondition when called on one of this engine's workers (inside a
  // callable, or a capture's destructor): it would wait for itself.
  absl::Status WaitIdle();

  // Stops accepting work and finishes per `mode`; returns once every accepted
  // operation is terminal. Everything the operations that ran did
  // happens-before its return, as for WaitIdle. The workers stop in the
  // destructor, and until then
  // one may still be destroying a canceled operation's callable (its captures).
  // A later call, or one made while another runs, returns OK once every
  // operation is terminal, as the first does; with a stricter mode (from least
  // to most strict: kDrainAll, kDrainReady, kCancelPending) it first adds what
  // its mode cancels: postponed operations (kDrainReady still runs those due),
  // and with kCancelPending what has not started when it applies its mode
  // (what a worker took before may still start). So a kDrainAll waiting for an
  // operation postponed by an hour is cut short by a kCancelPending from
  // another thread. FailedPrecondition on one of
  // this engine's workers, as WaitIdle. During any shutdown a retry an
  // attempt asks for ends the operation Canceled (CancelReason: retries during
  // shutdown), in every mode; a retry armed before it comes due as its mode
  // says (kDrainAll runs it).
  absl::Status Shutdown(ShutdownMode mode = ShutdownMode::kDrainReady);

  Stats stats() const;
  Clock& clock() const;
  int workers() const;

 private:
  // `what` names the call in an error's text ("Submit", "Post", "Batch::Add").
  absl::Status RejectEmptyCallable(const char* what);
  absl::Status Validate(const SubmitOptions& options, const char* what);
  // A node of the kind the options need (engine_impl.h, CompactFits).
  internal::Operation* NewOperation(void** storage, const SubmitOptions* options,
                                    bool with_handle);
  void DiscardOperation(internal::Operation* op);
  // Each moves f into op once nothing can refuse it (and on an error leaves f
  // as it was and gives the node back).
  absl::StatusOr<Handle> Enqueue(internal::Operation* op, detail::PendingCallable f,
                                 SubmitOptions&& options);
  absl::Status EnqueueDetached(internal::Operation* op, detail::PendingCallable f,
                               SubmitOptions&& options);
  absl::Status EnqueuePlain(internal::Operation* op, detail::PendingCallable f);
  // Checks f and the options (null: the defaults, nothing to check) and takes a
  // node for f. On an error nothing was taken.
  template <typename F>
  absl::Status PrepareNode(F& f, const SubmitOptions* options, bool with_handle,
                           internal::Operation** op, const char* what,
                           void** storage = nullptr) {
    using Fn = std::decay_t<F>;
    static_assert(detail::TakesContext<Fn> || detail::TakesNothing<Fn>,
                  "Submit and Post take a callable invocable as f(ordo::Context&) or f()");
    static_assert(detail::kReturnsVoidOrStatus<Fn>,
                  "Submit and Post take a callable that returns void or absl::Status");
    static_assert(std::is_nothrow_destructible_v<Fn>,
                  "Submit and Post take a callable whose destructor does not throw (the "
                  "engine destroys it on a worker, where a throw could not be reported)");
    if (detail::IsEmptyCallable<Fn>(f)) return RejectEmptyCallable(what);
    if (options != nullptr) {
      if (absl::Status s = Validate(*options, what); !s.ok()) return s;
    }
    void* unused = nullptr;
    *op = NewOperation(storage != nullptr ? storage : &unused, options, with_handle);
    return absl::OkStatus();
  }
  // PrepareNode, then f moved into the node at once (a Batch's Add).
  template <typename F>
  absl::Status Prepare(F&& f, const SubmitOptions* options, bool with_handle,
                       internal::Operation** op, const detail::CallableOps** ops,
                       const char* what) {
    void* storage = nullptr;
    if (absl::Status s = PrepareNode(f, options, with_handle, op, what, &storage); !s.ok()) {
      return s;
    }
    try {
      *ops = detail::Emplace(storage, std::forward<F>(f));
    } catch (...) {
      DiscardOperation(*op);
      throw;
    }
    return absl::OkStatus();
  }

  friend class Batch;
  // Destroys a prepared, never published operation's callable and returns its node.
  void DiscardPrepared(internal::Operation* op, const detail::CallableOps* ops);
  // What PostBatch could never post, refused at the Add (nothing added): a
  // batch already holding BatchLimit() operations, max_timers still-future
  // postponed ones, or a postponement beyond the horizon. `size` is how many
  // items the batch holds; `due_ns` is the new item's postpone-until time (ns), or
  // BatchItem::kNotPostponed; `*future_dues` the batch's min-heap
  // (std::greater) of the times of its items that take a place, from which,
  // once it holds max_timers, those that have come due since their Add are
  // taken; `*takes_place` is set to whether this one would (a time still to
  // come). Each refusal counts one rejected operation.
  absl::Status CheckBatchAdd(std::size_t size, std::vector<std::int64_t>* future_dues,
                             std::int64_t due_ns, bool* takes_place);
  // The most items a Batch may hold: Options::max_pending as the engine took it,
  // less, from a limit of 65,536 on, the places threads may keep for their next
  // submits (Options::max_pending), which an idle engine may still hold; and at
  // most 2^32 - 1 (a tokened item's index is 32 bits; BatchItem::kNoToken).
  std::size_t BatchLimit() const;
  // +1 when a Batch of this engine goes from empty to holding operations, -1
  // when it is emptied: the destructor checks none still holds any.
  void CountLoadedBatch(int delta);

  std::unique_ptr<internal::EngineImpl> impl_;
};

// Operations gathered to be posted together (Engine::PostBatch): each is what
// Post(f), Post(f, {.token = token}) or, by AddPostponed, Post(f, {.token =
// token, .postpone_until = until}) would post, with the same states, order,
// errors and lifetime, and a batch costs one admission and one block of ids, and
// one queue push and one wake-up per 64 runnable operations, instead of one of
// each per operation. For a producer with work in hand, that is most of a
// submission's cross-core traffic.
//
//   ordo::Batch batch(engine);
//   for (Request& r : requests) batch.Add([&r] { Handle(r); });
//   absl::Status s = engine.PostBatch(batch);  // all of them, or none
//
// Add takes the node and moves (or copies, for an lvalue) the callable in at once;
// once the batch's vectors have grown it allocates nothing else (reuse one Batch
// per producer thread), but for what Post would allocate too: a callable over 32
// bytes, or one whose move may throw (callable.h), and a string token over 48.
// Nothing runs until PostBatch; a batch destroyed or cleared before it destroys
// its callables without running them. Ids are taken at PostBatch, in Add order,
// and the creation order of a token's operations is their Add order (after the
// token's operations created before PostBatch). Independent start order is best
// effort, as for Post. A Batch belongs to one engine, is used by one thread at a
// time, and must not outlive its engine while it holds operations (the engine's
// destructor ends the process, saying so, if one does).
class Batch {
 public:
  explicit Batch(Engine& engine) : engine_(&engine), max_items_(engine.BatchLimit()) {}
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
  ~Batch() { Clear(); }

  // Prepares an operation running `f` (as for Post(f)). InvalidArgument for an
  // empty callable, ResourceExhausted when the batch already holds
  // Options::max_pending operations (from a limit of 65,536 on, fewer by what
  // threads may keep, Options::max_pending: up to 16 per worker and about 1,000
  // for the outside threads), more than PostBatch could be sure to admit at
  // once: post it, then add on. Nothing is added. Admission waits for
  // PostBatch. On any error, a thrown bad_alloc included, `f` is left as it was.
  template <typename F>
  absl::Status Add(F&& f) {
    return AddPrepared(std::forward<F>(f), nullptr, internal::BatchItem::kNotPostponed);
  }
  // Prepares an operation running `f` on `token`'s chain, after the token's
  // operations created before it (as Post(f, {.token = token})); a default
  // Token: independent, as Add(f). InvalidArgument for an empty callable, an
  // empty or oversized token; ResourceExhausted as for Add(f) (nothing is added).
  template <typename F>
  absl::Status Add(F&& f, const Token& token) {
    if (token.empty()) return Add(std::forward<F>(f));
    SubmitOptions options;
    options.token = token;
    return AddPrepared(std::forward<F>(f), &options, internal::BatchItem::kNotPostponed);
  }
  // Prepares an operation running `f` that starts no sooner than `until` (a time
  // point of the engine's clock), on `token`'s chain if one is given, as
  // Post(f, {.token = token, .postpone_until = until}) would: a postponed head
  // holds its chain until it is due, and a time already past when PostBatch reads
  // the clock runs it at once (and takes no place in the wheel).
  // InvalidArgument, and nothing is added, for an empty callable, an empty or
  // oversized token, a time before the clock's epoch, or one beyond
  // Options::horizon; ResourceExhausted, nothing added, as for Add, or when the
  // batch already holds Options::max_timers items whose time is still to come.
  // PostBatch checks the horizon and the room in the wheel again, for every
  // postponed item at once (the wheel may be full of others' timers then).
  template <typename F>
  absl::Status AddPostponed(F&& f, Clock::time_point until, const Token& token = {}) {
    SubmitOptions options;
    options.token = token;
    options.postpone_until = until;
    return AddPrepared(std::forward<F>(f), &options, until.time_since_epoch().count());
  }
  std::size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  // Destroys every operation not yet posted, unrun.
  void Clear() {
    if (items_.empty()) return;
    for (const internal::BatchItem& it : items_) engine_->DiscardPrepared(it.op, it.ops);
    Forget();
  }
  // Reserves room for n operations (Add then allocates nothing below n, nor
  // below n tokened or postponed ones).
  void Reserve(std::size_t n) {
    items_.reserve(n);
    tokens_.reserve(n);
    future_dues_.reserve(n);
  }

 private:
  friend class Engine;
  // The Adds: a node prepared as Post(f, *options) would (a compact one for null
  // options), recorded with its token and due time (ns, or kNotPostponed). If
  // recording it fails (out of memory), the node goes back unpublished.
  template <typename F>
  absl::Status AddPrepared(F&& f, SubmitOptions* options, std::int64_t due_ns) {
    bool takes_place = false;
    // Inline for every Add: the size against max_items_ (BatchLimit()); the engine's own look
    // only for a full batch (the refusal) and for a postponed item.
    if (items_.size() >= max_items_ || due_ns != internal::BatchItem::kNotPostponed) {
      if (absl::Status s = engine_->CheckBatchAdd(items_.size(), &future_dues_, due_ns,
                                                  &takes_place);
          !s.ok()) {
        return s;
      }
    }
    const bool tokened = options != nullptr && !options->token.empty();
    // Room for the record first: out of memory here, f has not been moved
    // from (Prepare moves it into the node), and the pushes below cannot throw.
    Grow(items_);
    if (tokened) Grow(tokens_);
    if (takes_place) Grow(future_dues_);
    internal::Operation* op = nullptr;
    const detail::CallableOps* ops = nullptr;
    if (absl::Status s =
            engine_->Prepare(std::forward<F>(f), options, /*with_handle=*/false, &op, &ops,
                             "Batch::Add");
        !s.ok()) {
      return s;
    }
    const std::uint32_t index = tokened ? static_cast<std::uint32_t>(tokens_.size())
                                        : internal::BatchItem::kNoToken;
    static_assert(std::is_nothrow_move_constructible_v<Token>);
    items_.push_back(internal::BatchItem{op, ops, index, due_ns});  // room made above
    if (tokened) tokens_.push_back(std::move(options->token));
    if (due_ns != internal::BatchItem::kNotPostponed) ++postponed_;
    if (takes_place) {  // room made above
      future_dues_.push_back(due_ns);
      std::push_heap(future_dues_.begin(), future_dues_.end(), std::greater<std::int64_t>());
    }
    if (items_.size() == 1) engine_->CountLoadedBatch(1);
    return absl::OkStatus();
  }

  // Makes room for one more element, growing geometrically as push_back would.
  template <typename V>
  static void Grow(V& v) {
    if (v.size() == v.capacity()) v.reserve(v.capacity() < 8 ? 8 : 2 * v.capacity());
  }

  // Empties the batch without touching its operations (destroyed by Clear, or
  // owned by the engine once posted).
  void Forget() {
    items_.clear();
    tokens_.clear();
    postponed_ = 0;
    future_dues_.clear();
    engine_->CountLoadedBatch(-1);
  }

  Engine* engine_;
  std::size_t max_items_;  // the engine's BatchLimit(): no batch may hold more
  std::vector<internal::BatchItem> items_;
  std::vector<Token> tokens_;  // of the tokened items, in Add order
  std::size_t postponed_ = 0;  // items added by AddPostponed
  // Of those, the times (ns) of the ones whose time was still to come at their
  // Add, less those CheckBatchAdd has since seen come: a min-heap
  // (std::greater), whose size is an upper bound of the items that take a place.
  std::vector<std::int64_t> future_dues_;
};

}  // namespace ordo

#endif  // ORDO_ENGINE_H_
