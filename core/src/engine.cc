// engine.cc: the public classes (Engine, Handle, Context, clocks, states, stats)
// over EngineImpl.
#include "ordo/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "engine_impl.h"
#include "retry_status.h"

namespace ordo {

using internal::EngineImpl;
using internal::Facts;
using internal::Operation;

// --- Engine ----------------------------------------------------------------

Engine::Engine(Options options) : impl_(std::make_unique<EngineImpl>(std::move(options))) {}
Engine::~Engine() = default;

absl::Status Engine::RejectEmptyCallable(const char* what) {
  return impl_->Rejected(absl::InvalidArgumentError(
      absl::StrCat(what,
                   ": the callable is empty (a null function pointer or an empty "
                   "std::function/AnyInvocable); pass something to run")));
}
absl::Status Engine::Validate(const SubmitOptions& options, const char* what) {
  return impl_->Validate(options, what);
}
internal::Operation* Engine::NewOperation(void** storage, const SubmitOptions* options,
                                          bool with_handle) {
  return impl_->NewOperation(storage, options, with_handle);
}
void Engine::DiscardOperation(internal::Operation* op) { impl_->DiscardOperation(op); }
absl::StatusOr<Handle> Engine::Enqueue(internal::Operation* op, detail::PendingCallable f,
                                       SubmitOptions&& options) {
  if (absl::Status s = impl_->Enqueue(op, f, std::move(options), /*with_handle=*/true);
      !s.ok()) {
    return s;
  }
  return Handle(op);  // adopts the reference Enqueue took for it
}
absl::Status Engine::EnqueueDetached(internal::Operation* op, detail::PendingCallable f,
                                     SubmitOptions&& options) {
  return impl_->Enqueue(op, f, std::move(options), /*with_handle=*/false);
}
absl::Status Engine::EnqueuePlain(internal::Operation* op, detail::PendingCallable f) {
  return impl_->EnqueuePlain(op, f);
}
void Engine::DiscardPrepared(internal::Operation* op, const detail::CallableOps* ops) {
  ops->destroy(op->storage);
  impl_->DiscardOperation(op);
}
void Engine::CountLoadedBatch(int delta) { impl_->CountLoadedBatch(delta); }
std::size_t Engine::BatchLimit() const { return impl_->batch_limit(); }
absl::Status Engine::CheckBatchAdd(std::size_t size, std::vector<std::int64_t>* future_dues,
                                   std::int64_t due_ns, bool* takes_place) {
  return impl_->CheckBatchAdd(size, future_dues, due_ns, takes_place);
}
absl::Status Engine::PostBatch(Batch& batch) {
  if (batch.items_.empty()) return absl::OkStatus();
  if (batch.engine_ != this) {
    impl_->CountRejected(batch.items_.size());  // each operation refused, as below
    return absl::InvalidArgumentError(
        "PostBatch: the batch was made for another engine; post it to the engine it was "
        "constructed with");
  }
  if (absl::Status s = impl_->EnqueueBatch(batch.items_.data(), batch.items_.size(),
                                           batch.tokens_.data(), batch.postponed_);
      !s.ok()) {
    return s;
  }
  batch.Forget();  // posted: the engine owns them now
  return absl::OkStatus();
}

namespace {
absl::Status NoHandle(const char* what) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": the handle refers to no operation (default-constructed or "
                         "moved from); pass the handle Submit returned"));
}
}  // namespace

// A handle is only accepted by the engine that made it.
#define ORDO_OWN_HANDLE(what, handle)                                                   \
  do {                                                                                  \
    if (!(handle).valid()) return NoHandle(what);                                       \
    if (internal::Times((handle).op_).engine_serial != impl_->serial())                  \
      return absl::InvalidArgumentError(                                                \
          absl::StrCat(what, ": the handle belongs to another engine (or to one that "  \
                             "was destroyed)"));                                        \
  } while (0)

absl::StatusOr<CancelOutcome> Engine::Cancel(const Handle& handle) {
  ORDO_OWN_HANDLE("Cancel", handle);
  return impl_->Cancel(handle.op_);
}
absl::Status Engine::Postpone(const Handle& handle, std::optional<Clock::time_point> until) {
  ORDO_OWN_HANDLE("Postpone", handle);
  return impl_->Postpone(handle.op_, until);
}
absl::Status Engine::Suspend(const Handle& handle) {
  ORDO_OWN_HANDLE("Suspend", handle);
  return impl_->Suspend(handle.op_);
}
absl::Status Engine::Resume(const Handle& handle) {
  ORDO_OWN_HANDLE("Resume", handle);
  return impl_->Resume(handle.op_);
}
#undef ORDO_OWN_HANDLE

absl::StatusOr<std::size_t> Engine::CancelToken(const Token& token) {
  return impl_->CancelToken(token);
}
absl::StatusOr<std::size_t> Engine::SuspendToken(const Token& token) {
  return impl_->SuspendToken(token);
}
absl::StatusOr<std::size_t> Engine::ResumeToken(const Token& token) {
  return impl_->ResumeToken(token);
}
absl::StatusOr<TokenReport> Engine::TokenInfo(const Token& token) const {
  return impl_->TokenInfo(token);
}
absl::Status Engine::SetFailurePolicy(const Token& token, FailurePolicy policy) {
  return impl_->SetFailurePolicy(token, policy);
}
absl::Status Engine::WaitIdle() { return impl_->WaitIdle(); }
absl::Status Engine::Shutdown(ShutdownMode mode) { return impl_->Shutdown(mode); }
Stats Engine::stats() const { return impl_->stats(); }
Clock& Engine::clock() const { return impl_->clock(); }
int Engine::workers() const { return impl_->workers(); }

// --- Handle ----------------------------------------------------------------

Handle::Handle(const Handle& other) : op_(other.op_) {
  if (op_ != nullptr) EngineImpl::AddRef(op_);
}
Handle& Handle::operator=(const Handle& other) {
  if (this != &other) {
    if (other.op_ != nullptr) EngineImpl::AddRef(other.op_);
    if (op_ != nullptr) EngineImpl::DropRef(op_);
    op_ = other.op_;
  }
  return *this;
}
Handle& Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    if (op_ != nullptr) EngineImpl::DropRef(op_);
    op_ = other.op_;
    other.op_ = nullptr;
  }
  return *this;
}
Handle::~Handle() {
  if (op_ != nullptr) EngineImpl::DropRef(op_);
}

std::uint64_t Handle::id() const { return op_ == nullptr ? 0 : op_->id_relaxed(); }

State Handle::state() const {
  if (op_ == nullptr) return State::kCanceled;
  // Acquire: pairs with the release of every state transition.
  return internal::StateOf(op_->word.load(std::memory_order_acquire));
}

std::string Handle::error() const {
  if (op_ == nullptr) return "no operation";
  const std::uint32_t w = op_->word.load(std::memory_order_acquire);  // as in state()
  const State s = internal::StateOf(w);
  if (s == State::kCanceled) {
    const internal::OpExtras* ex = Facts(op_).extras.load(std::memory_order_acquire);
    if (ex != nullptr && !ex->error.empty()) return ex->error;
    switch (internal::ReasonOf(w)) {
      case internal::CancelReason::kByToken: return "canceled by CancelToken";
      case internal::CancelReason::kByShutdown: return "canceled by Shutdown";
      case internal::CancelReason::kByPolicy:
        return "canceled: an operation ahead of it on its token failed (FailurePolicy::kCancelRest)";
      case internal::CancelReason::kRetriesDuringShutdown:
        return "canceled: a retry was due while the engine shut down";
      default: return "canceled by Cancel";
    }
  }
  if (s != State::kFailed) return "";
  const internal::OpExtras* ex = Facts(op_).extras.load(std::memory_order_acquire);
  return ex == nullptr ? std::string() : ex->error;
}

int Handle::retry_count() const {
  return op_ == nullptr ? 0 : Facts(op_).retry_count.load(std::memory_order_acquire);
}

std::string Handle::name() const {
  if (op_ == nullptr) return "";
  const internal::OpExtras* ex = Facts(op_).extras.load(std::memory_order_acquire);
  if (ex == nullptr) return std::string();
  return ex->series != nullptr ? ex->series->name : ex->name;
}

namespace {
Clock::time_point FromNs(std::int64_t ns) { return Clock::time_point(Clock::duration(ns)); }
}  // namespace

Clock::time_point Handle::created_at() const {
  return op_ == nullptr ? Clock::time_point{}
                        : FromNs(Times(op_).created_ns.load(std::memory_order_relaxed));
}
std::optional<Clock::time_point> Handle::started_at() const {
  if (op_ == nullptr) return std::nullopt;
  const std::uint32_t w = op_->word.load(std::memory_order_acquire);  // orders the read below
  std::int64_t t = Times(op_).started_ns.load(std::memory_order_relaxed);
  // InProgress: its runner stamps the first start just after that transition
  // (Execute), and stamps it whenever a Handle exists (Observed: this one, or
  // the predecessor's link it came through), so for an instant it may not be
  // there yet: waited for, as CompletedNs waits for a canceler's stamp.
  // Relaxed: the stamp publishes nothing (a relaxed store); the loop needs
  // only to see it, which coherence makes certain.
  if (t == internal::kNoTime && internal::StateOf(w) == State::kInProgress) {
    while ((t = Times(op_).started_ns.load(std::memory_order_relaxed)) == internal::kNoTime) {
      std::this_thread::yield();
    }
  }
  if (t == internal::kNoTime) return std::nullopt;
  return FromNs(t);
}
std::optional<Clock::time_point> Handle::completed_at() const {
  if (op_ == nullptr || !IsTerminal(state())) return std::nullopt;
  return FromNs(internal::CompletedNs(op_));  // after the acquire in state()
}

State Handle::Wait() const {
  if (op_ == nullptr) return State::kCanceled;
  for (;;) {
    std::uint32_t w = op_->word.load(std::memory_order_acquire);  // as in state()
    if (IsTerminal(internal::StateOf(w))) return internal::StateOf(w);
    if ((w & internal::kWaiterBit) == 0) {
      // Relaxed on failure: we reload with acquire above. The bit tells the
      // finisher to wake this word's futex (FinishInProgress, TryCancelNotStarted).
      if (!op_->word.compare_exchange_weak(w, w | internal::kWaiterBit,
                                           std::memory_order_acq_rel,
                                           std::memory_order_relaxed)) {
        continue;
      }
      w |= internal::kWaiterBit;
    }
    internal::FutexWait(&op_->word, w);
  }
}

bool Handle::WaitFor(std::chrono::nanoseconds timeout) const {
  if (op_ == nullptr) return true;
  // Saturating: now + nanoseconds::max() is a signed overflow (undefined
  // behaviour, which only happened to wrap back in deadline - now).
  // And a negative timeout is none: deadline - now below would overflow for
  // nanoseconds::min(), wrap to a long wait, and block.
  timeout = std::max(timeout, std::chrono::nanoseconds::zero());
  const auto now = std::chrono::steady_clock::now();
  const auto deadline = timeout > std::chrono::steady_clock::time_point::max() - now
                            ? std::chrono::steady_clock::time_point::max()
                            : now + timeout;
  for (;;) {
    std::uint32_t w = op_->word.load(std::memory_order_acquire);  // as in state()
    if (IsTerminal(internal::StateOf(w))) return true;
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) return false;
    if ((w & internal::kWaiterBit) == 0) {
      if (!op_->word.compare_exchange_weak(w, w | internal::kWaiterBit,
                                           std::memory_order_acq_rel,
                                           std::memory_order_relaxed)) {
        continue;
      }
      w |= internal::kWaiterBit;
    }
    internal::FutexWait(&op_->word, w,
                        std::chrono::duration_cast<std::chrono::nanoseconds>(left));
  }
}

std::string Handle::Explain() const {
  if (op_ == nullptr) return "no operation (empty handle)";
  // A finished operation is explained without its engine, which may be gone
  // (handles stay readable after it). Acquire: as in state().
  const State s = internal::StateOf(op_->word.load(std::memory_order_acquire));
  if (IsTerminal(s)) return EngineImpl::ExplainFinished(op_, s);
  // E1: the engine may be destroyed meanwhile (its destructor ends every
  // operation first): pinned while we read it, or, gone, it left ours finished.
  // (It was read unpinned: a destructor that ran between the look above and the
  // call freed what the call then read.)
  internal::ChaosPoint();
  EngineImpl* engine = Times(op_).engine;
  if (!internal::PinEngine(Times(op_).engine_serial, engine)) {
    return EngineImpl::ExplainFinished(
        op_, internal::StateOf(op_->word.load(std::memory_order_acquire)));
  }
  // Unpinned on every way out, a bad_alloc from the text included (a pin left
  // up kept the engine's destructor waiting for ever).
  absl::Cleanup unpin = [engine] {
    // Release: our reads of the engine before its destructor's acquire (E1).
    engine->explain_pins_.fetch_sub(1, std::memory_order_release);
  };
  return engine->Explain(op_);
}

Handle Handle::next_occurrence() const {
  if (op_ == nullptr) return Handle();
  const internal::OpExtras* ex = Facts(op_).extras.load(std::memory_order_acquire);
  if (ex == nullptr) return Handle();
  // Acquire: pairs with the runner's release store in SpawnNextOccurrence.
  Operation* n = ex->successor.load(std::memory_order_acquire);
  if (n == nullptr) return Handle();
  EngineImpl::AddRef(n);  // safe: our op holds a reference to n
  return Handle(n);
}

// --- Context ---------------------------------------------------------------

std::uint64_t Context::id() const { return op_->id_relaxed(); }
bool Context::cancel_requested() const {
  // A compact node has no Handle, so only a cancelling Shutdown asks it.
  // Relaxed: a request; see OpFacts::cancel_requested.
  const bool asked =
      !internal::IsCompact(op_) && Facts(op_).cancel_requested.load(std::memory_order_relaxed);
  return asked || engine_->ShutdownCancels();
}
int Context::retry_count() const {
  // A compact node is on its first attempt: a retry moves it into a facts node.
  return internal::IsCompact(op_) ? 0 : Facts(op_).retry_count.load(std::memory_order_relaxed);
}
void Context::RetryAfter(std::chrono::nanoseconds delay, std::string_view reason) {
  engine_->RequestRetry(op_, delay, reason);
}

absl::Status RetryStatus(std::chrono::nanoseconds delay, std::string_view message) {
  absl::Status s = absl::UnavailableError(
      absl::string_view(message.data(), message.size()));
  s.SetPayload(internal::kRetryPayloadUrl, absl::Cord(std::to_string(delay.count())));
  return s;
}

namespace internal {
std::optional<std::int64_t> RetryDelayOf(const absl::Status& status) {
  absl::optional<absl::Cord> p = status.GetPayload(kRetryPayloadUrl);
  if (!p.has_value()) return std::nullopt;
  std::int64_t v = 0;
  if (!absl::SimpleAtoi(std::string(*p), &v)) return std::nullopt;
  return v;
}
}  // namespace internal

// --- Clocks ----------------------------------------------------------------

SystemClock& SystemClock::Instance() {
  static SystemClock* clock = new SystemClock();  // never destroyed: engines may outlive statics
  return *clock;
}

ManualClock::ManualClock()
    : ManualClock(time_point(std::chrono::duration_cast<duration>(
          std::chrono::seconds(1767225600)))) {}  // 2026-01-01T00:00:00Z
ManualClock::ManualClock(time_point start) : now_ns_(start.time_since_epoch().count()) {}

Clock::time_point ManualClock::Now() const {
  return time_point(duration(now_ns_.load(std::memory_order_acquire)));  // see now_ns_
}

void ManualClock::Advance(duration d) {
  if (d.count() > 0) {
    // Saturating at the end of the range (Advance(nanoseconds::max()) is "to the
    // end of time"; an add wrapped to before 1970). acq_rel, as a fetch_add was:
    // see now_ns_. The load and a failed CAS relaxed: only a guess at the value;
    // the successful CAS decides.
    std::int64_t cur = now_ns_.load(std::memory_order_relaxed);
    std::int64_t next;
    do {
      if (__builtin_add_overflow(cur, d.count(), &next)) next = std::numeric_limits<std::int64_t>::max();
    } while (!now_ns_.compare_exchange_weak(cur, next, std::memory_order_acq_rel,
                                            std::memory_order_relaxed));
  }
  Notify();
}

void ManualClock::Set(time_point t) {
  now_ns_.store(t.time_since_epoch().count(), std::memory_order_release);  // see now_ns_
  Notify();
}

namespace {
// A listener that calls back into its own clock (directly, or through another
// clock's listeners) would lock listeners_mu_ again on the thread that holds
// it: undefined, a hang in practice. Said plainly.
void CheckNotInListenerOf(const std::atomic<std::thread::id>& notifying, const char* call) {
  // Relaxed: equal only to an id this thread stored itself (ManualClock::notifying_).
  ORDO_CHECK(notifying.load(std::memory_order_relaxed) != std::this_thread::get_id(),
             absl::StrCat("ManualClock::", call,
                          " called from one of the same clock's listeners (an engine "
                          "reading it, or the code it runs there); call it from outside")
                 .c_str());
}
}  // namespace

std::uint64_t ManualClock::AddListener(std::function<void()> on_advance) {
  CheckNotInListenerOf(notifying_, "AddListener");
  std::lock_guard<std::mutex> lock(listeners_mu_);
  const std::uint64_t id = next_listener_id_++;
  listeners_.emplace_back(id, std::move(on_advance));
  return id;
}

void ManualClock::RemoveListener(std::uint64_t id) {
  CheckNotInListenerOf(notifying_, "RemoveListener");
  std::lock_guard<std::mutex> lock(listeners_mu_);
  std::erase_if(listeners_, [id](const auto& e) { return e.first == id; });
}

void ManualClock::Notify() {
  // Under the lock: RemoveListener (engine destruction) waits for a running
  // notification, so a listener never runs on a destroyed engine.
  CheckNotInListenerOf(notifying_, "Advance or Set");
  std::lock_guard<std::mutex> lock(listeners_mu_);
  // Relaxed, both stores: only this thread compares its own id with them.
  notifying_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  struct Restore {  // also if a listener throws
    std::atomic<std::thread::id>& notifying;
    ~Restore() { notifying.store(std::thread::id(), std::memory_order_relaxed); }
  } restore{notifying_};
  for (auto& [id, fn] : listeners_) fn();
}

// --- States and stats ------------------------------------------------------

std::string_view StateName(State s) {
  switch (s) {
    case State::kWaiting: return "Waiting";
    case State::kPostponed: return "Postponed";
    case State::kSuspended: return "Suspended";
    case State::kInProgress: return "InProgress";
    case State::kSucceeded: return "Succeeded";
    case State::kFailed: return "Failed";
    case State::kCanceled: return "Canceled";
  }
  return "Unknown";
}

DynamicsCodes ToDynamics(State s) {
  switch (s) {
    case State::kWaiting: return {DynamicsStateCode::kReady, 0};
    case State::kPostponed: return {DynamicsStateCode::kSuspended, 10};
    case State::kSuspended: return {DynamicsStateCode::kSuspended, 10};
    case State::kInProgress: return {DynamicsStateCode::kLocked, 20};
    case State::kSucceeded: return {DynamicsStateCode::kCompleted, 30};
    case State::kFailed: return {DynamicsStateCode::kCompleted, 31};
    case State::kCanceled: return {DynamicsStateCode::kCompleted, 32};
  }
  return {DynamicsStateCode::kReady, 0};
}

namespace {
// A recorded duration as nanoseconds: a sample can reach 2^64 - 2 (NsAhead is
// exact across the whole of int64, from a clock far back to a time far ahead),
// past what nanoseconds holds, which once came out negative. Saturating.
std::chrono::nanoseconds SaturatedNs(std::uint64_t ns) {
  constexpr std::uint64_t kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  return std::chrono::nanoseconds(static_cast<std::int64_t>(std::min(ns, kMax)));
}
}  // namespace

std::chrono::nanoseconds LatencyHistogram::Quantile(double q) const {
  if (count == 0) return std::chrono::nanoseconds(0);
  q = q >= 0 ? std::min(q, 1.0) : 0.0;  // NaN too
  // The rank of the sample asked for, 1-based: at least the first, at most the last.
  const std::uint64_t rank = std::clamp<std::uint64_t>(
      static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count))), 1, count);
  std::uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += counts[i];
    if (seen >= rank) {
      // The bucket's end, less one: the largest duration it can hold.
      const std::uint64_t end = i + 1 < kBuckets ? LowerNs(i + 1) - 1 : max_ns;
      return SaturatedNs(std::min(end, max_ns));
    }
  }
  return SaturatedNs(max_ns);  // counts lag count
}

std::chrono::nanoseconds LatencyHistogram::Mean() const {
  return count == 0 ? std::chrono::nanoseconds(0) : SaturatedNs(sum_ns / count);
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  for (int i = 0; i < kBuckets; ++i) counts[i] += other.counts[i];
  count += other.count;
  sum_ns += other.sum_ns;
  max_ns = std::max(max_ns, other.max_ns);
}

std::string Stats::ToPrometheus() const {
  std::string out;
  // StrAppend, and numbers formatted on the stack, not StrAppendFormat: a
  // bad_alloc inside Debian's StrFormat ends the process; here it reaches the
  // caller.
  auto header = [&out](const char* name, const char* help, const char* type) {
    absl::StrAppend(&out, "# HELP ordo_", name, " ", help, "\n# TYPE ordo_", name, " ", type,
                    "\n");
  };
  auto counter = [&](const char* name, const char* help, std::uint64_t v) {
    header(name, help, "counter");
    absl::StrAppend(&out, "ordo_", name, " ", v, "\n");
  };
  auto gauge = [&](const char* name, const char* help, std::uint64_t v) {
    header(name, help, "gauge");
    absl::StrAppend(&out, "ordo_", name, " ", v, "\n");
  };
  counter("submitted_total", "Operations accepted by Submit.", submitted);
  counter("rejected_total", "Submissions refused with an error.", rejected);
  counter("started_total", "Attempts started.", started);
  counter("succeeded_total", "Operations that ended Succeeded.", succeeded);
  counter("failed_total", "Operations that ended Failed.", failed);
  counter("canceled_total", "Operations that ended Canceled.", canceled);
  counter("retried_total", "Attempts that were retried.", retried);
  counter("steals_total", "Operations stolen between workers.", steals);
  counter("parks_total", "Times a worker went to sleep.", parks);
  gauge("pending", "Accepted operations not yet terminal.", pending);
  gauge("postponed", "Timers pending in the timing wheel.", postponed);
  gauge("active_chains", "Chains in memory: tokens with operations, and idle ones not yet swept.", active_chains);
  gauge("workers", "Worker threads.", static_cast<std::uint64_t>(workers));
  // Cumulative buckets at each power of two of a nanosecond from 2^7 (128 ns) to
  // 2^37 (137 s): bucket boundaries of LatencyHistogram, so each count is exact
  // for "below the bound" (a sample of exactly 2^e ns, which Prometheus' "le"
  // would count, is in the next bucket: 1 ns off).
  auto histogram = [&](const char* name, const char* help, const LatencyHistogram& h) {
    header(name, help, "histogram");
    std::uint64_t cumulative = 0;
    int i = 0;
    for (int e = 7; e <= 37; ++e) {
      const std::uint64_t bound = std::uint64_t{1} << e;
      for (; i < LatencyHistogram::kBuckets && LatencyHistogram::LowerNs(i) < bound; ++i) {
        cumulative += h.counts[i];
      }
      char le[32];
      std::snprintf(le, sizeof le, "%.12g", static_cast<double>(bound) * 1e-9);
      absl::StrAppend(&out, "ordo_", name, "_bucket{le=\"", le, "\"} ", cumulative, "\n");
    }
    absl::StrAppend(&out, "ordo_", name, "_bucket{le=\"+Inf\"} ", h.count, "\n");
    char sum[64];
    std::snprintf(sum, sizeof sum, "%.9f", static_cast<double>(h.sum_ns) * 1e-9);
    absl::StrAppend(&out, "ordo_", name, "_sum ", sum, "\n");
    absl::StrAppend(&out, "ordo_", name, "_count ", h.count, "\n");
  };
  histogram("queue_wait_seconds",
            "Sampled operations: from ready (submitted, or due) to the first start.",
            queue_wait);
  histogram("run_time_seconds", "Sampled operations: start to end of each attempt.", run_time);
  histogram("lateness_seconds", "Sampled operations: due time to start, when postponed.",
            lateness);
  return out;
}

}  // namespace ordo
