// engine_impl.cc: construction, submit, control of single operations and tokens,
// WaitIdle, Shutdown, stats. Workers are in worker.cc, timers in timers.cc.
#include "engine_impl.h"

#include <time.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <new>
#include <string>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "op_pool.h"
#include "ordo/recurrence.h"

namespace ordo::internal {

namespace {

// A refusal made between EnterSubmit and ExitSubmit (Admit, WheelFullError): it
// must not throw, or the submit count would stay up and Shutdown wait for it for
// ever. Out of memory for its message, the status has its code alone (absl keeps
// a code with no message inline: no allocation). The message is built with
// std::string, not absl::StrFormat: a bad_alloc inside Debian's StrFormat cannot
// leave it (checked: the process terminates, however it is caught). The other
// refusals in this file use StrCat, which lets it pass, for the same reason,
// and are counted after their message is made (Rejected).
template <typename MakeMessage>
absl::Status Refusal(absl::StatusCode code, MakeMessage make_message) noexcept {
  try {
    return absl::Status(code, make_message());
  } catch (...) {
    return absl::Status(code, "");
  }
}

std::string FormatTime(std::int64_t ns) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixNanos(ns), absl::UTCTimeZone());
}

std::string OpName(Operation* op) { return absl::StrCat("op ", op->id_relaxed()); }

std::string StateText(State s) { return std::string(StateName(s)); }

bool NotStarted(State s) {
  return s == State::kWaiting || s == State::kPostponed || s == State::kSuspended;
}

}  // namespace

// ---------------------------------------------------------------------------
// Construction and teardown

EngineImpl::EngineImpl(Options options)
    : options_(std::move(options)),
      serial_(RegisterEngine()),
      asymmetric_(AsymmetricFencesAvailable()) {
  if (options_.workers <= 0) {
    options_.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  pop_lease_ = options_.workers >= kPopLeaseMinWorkers;
  if (options_.chain_budget < 1) options_.chain_budget = 1;
  if (options_.tick.count() <= 0) options_.tick = std::chrono::milliseconds(1);
  // Added to a clock reading (worker.cc): held to an hour, and 0 if negative
  // (nanoseconds::max() overflowed there into the past: no spin at all).
  options_.spin = std::clamp<std::chrono::nanoseconds>(options_.spin, std::chrono::nanoseconds(0),
                                                       std::chrono::hours(1));
  if (options_.max_pending == 0) options_.max_pending = 1;
  // A limit past int64 (SIZE_MAX meaning "no limit") read as negative in the
  // int64 counts below and refused everything: held at 2^62, none in practice.
  options_.max_pending = std::min(options_.max_pending, kNoLimit);
  options_.max_timers = std::min(options_.max_timers, kNoLimit);
  clock_ = options_.clock != nullptr ? options_.clock : &SystemClock::Instance();
  manual_clock_ = clock_->is_manual();
  // Credits move between stripes in batches small enough that a stripe's hoard
  // is a small part of the limit.
  batch_ = static_cast<std::int64_t>(
      std::clamp<std::size_t>(options_.max_pending / 1024, 1, 256));
  // K3: none below a batch of 64 (max_pending 65,536); batch_ <= 256 keeps it
  // within kOwnCreditsMax.
  own_batch_ = batch_ >= 64 ? batch_ / 32 : 0;
  static_assert(256 / 32 <= kOwnCreditsMax &&
                2 * kOwnCreditsMax <= std::numeric_limits<std::int16_t>::max());
  global_credits_.store(static_cast<std::int64_t>(options_.max_pending),
                        std::memory_order_relaxed);
  try {
    external_.reset(new Stripe[kExternalStripes]);
    for (std::size_t i = kSharedStripes; i < kExternalStripes; ++i) {
      external_[i].single_writer = true;  // leased to one thread at a time
    }
    {
      MutexLock lock(&timer_mu_);
      // Room for max_timers and a place per live series past it (I3 in
      // timers.cc); both limits are at most 2^62, so the sum fits.
      wheel_ = std::make_unique<TimingWheel>(options_.tick.count(), NowNs(),
                                             options_.max_timers + options_.max_pending);
    }
    StartThreads();
  } catch (...) {
    // Out of memory, or a thread that could not be started (a limit on
    // threads): the engine was never usable. Those started are stopped and
    // joined, and the exception goes to the caller. (Thrown past joinable
    // std::threads, it was std::terminate.)
    if (clock_listener_ != 0) clock_->RemoveListener(clock_listener_);
    StopThreads();
    UnregisterEngine(serial_);
    throw;
  }
}

void EngineImpl::StopThreads() {
  // Release: pairs with the workers' and timekeeper's acquire loads of stop_.
  stop_.store(true, std::memory_order_release);
  if (parker_ != nullptr) parker_->WakeAll();
  KickTimekeeper();
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();  // not, for one never started
  }
  if (timekeeper_.joinable()) timekeeper_.join();
}

void EngineImpl::StartThreads() {
  parker_ = std::make_unique<Parker>(options_.workers);
  workers_.reserve(options_.workers);
  for (int i = 0; i < options_.workers; ++i) {
    workers_.push_back(std::make_unique<Worker>(this, i, injector_));
  }
  for (auto& w : workers_) {
    Worker* raw = w.get();
    w->thread = std::thread([this, raw] {
      // The run path allocates outside the callable (a retry's error text, a
      // halted chain's registry entry); out of memory there ends the process,
      // as in Submit past admission, with a message rather than
      // std::terminate's silence. The callable's own exceptions never get here
      // (Execute catches them), nor does a series' next occurrence (its series
      // ends, its occurrence Failed: SpawnNextOccurrence).
      try {
        WorkerLoop(raw);
      } catch (const std::bad_alloc&) {
        ORDO_CHECK(false, "a worker ran out of memory outside a callable (a retry, a "
                          "halted chain): out of memory");
      }
    });
    NameThread(w->thread, absl::StrCat("ordo-worker-", raw->index).c_str());
  }
  if (manual_clock_) {
    clock_listener_ = clock_->AddListener([this] { OnClockAdvanced(); });
  } else {
    timekeeper_ = std::thread([this] {
      try {  // as the workers' (above)
        TimekeeperLoop();
      } catch (const std::bad_alloc&) {
        ORDO_CHECK(false, "the timekeeper ran out of memory releasing timers: out of memory");
      }
    });
    NameThread(timekeeper_, "ordo-timekeeper");
  }
}

EngineImpl::~EngineImpl() {
  // From one of its own callables, or its worker destroying a capture that
  // held the last owner, it would wait for itself (Shutdown refuses it, and
  // its worker would join itself): std::terminate, with no word of why.
  ORDO_CHECK(!InCallableOf(this) && !OnWorkerOf(this),
             "an ordo::Engine is destroyed from inside one of its own callables or their "
             "captures' destructors (the last owner let go there); destroy it from outside "
             "the engine");
  // Relaxed: see CountLoadedBatch. A Batch still holding operations would free
  // them into this engine after it is gone.
  ORDO_CHECK(loaded_batches_.load(std::memory_order_relaxed) == 0,
             "an ordo::Batch still holding operations outlives its engine; post or Clear it "
             "before the engine is destroyed");
  (void)Shutdown(ShutdownMode::kDrainReady);
  UnregisterEngine(serial_);  // from here no thread gives a lease back to us
  // E1: from here no Handle::Explain pins us; wait for those that did.
  // Acquire: pairs with their release unpin, after their last read of us.
  while (explain_pins_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  if (clock_listener_ != 0) clock_->RemoveListener(clock_listener_);
  StopThreads();
  // Every operation is terminal and no queue holds one; what is left are the token
  // map's idle chains, and any held-registry entry a race left behind.
  tokens_.SweepIdle();
  // Taken out whole (a swap allocates nothing, in a destructor that must not
  // throw), then dropped outside the lock.
  std::unordered_set<Operation*> left[2];
  {
    MutexLock lock(&held_mu_);
    for (int i = 0; i < 2; ++i) left[i].swap(held_[i]);
  }
  for (const auto& set : left) {
    for (Operation* op : set) DropRef(op);
  }
}

// ---------------------------------------------------------------------------
// Admission credits. The limit is max_pending; credits travel from a global pool
// to per-stripe hoards in batches, and back, so a submission usually touches
// only its own stripe. When the pool runs dry the submitter reclaims every
// stripe's hoard before it reports the engine full, so a rejection means the
// limit was reached (up to submissions racing with the reclaim, and K3).
//   K1  A single-writer stripe (a worker's, a lease) also keeps a few credits of
//       its own, own_credits, which only its writer touches, with plain loads
//       and stores: a submit takes one there, a finish gives one back there,
//       and only a refill (own_batch_ + 1 from the hoard, one RMW) or an
//       overflow (own_batch_ to the hoard) touches an atomic. The hoard's RMW
//       per submit and per finish was 11 % of W1's samples (the locked
//       instruction waits for the node's stores before it).
//   K2  Own credits return to the reclaimable hoard when a worker runs out of
//       work and when a lessee gives its stripe back (worker.cc).
//   K3  What K1 gives up: own credits cannot be reclaimed while a worker is
//       busy, nor while an outside thread that stopped submitting lives on;
//       at most 2 * own_batch_ per stripe. own_batch_ is
//       batch_ / 32 (at most 8), and 0 (no own credits) below max_pending
//       65,536, so the shortfall is at most 1/16384 of max_pending per stripe
//       (the 60 leasable ones and the workers': 0.4 % with 2 workers), and small
//       limits stay exact. A batch (n > 1) first puts its own credits into the
//       hoard, where it takes its credits from.

bool EngineImpl::TakeCredits(Stripe& st, std::int64_t n) {
  if (own_batch_ > 0 && st.single_writer) {
    // K1: only this stripe's writer is here.
    if (n > 1) {
      FlushOwnCredits(st);  // a batch takes them with the hoard's
    } else if (st.own_credits > 0) {
      --st.own_credits;
      return true;
    } else if (TakeSharedCredits(st, own_batch_ + 1, /*reclaim=*/false)) {
      // A refill: one now, own_batch_ kept. Near the limit it finds too few and
      // the single credit below is looked for with the reclaim.
      st.own_credits = static_cast<std::int16_t>(own_batch_);
      return true;
    }
  }
  return TakeSharedCredits(st, n);
}

bool EngineImpl::TakeSharedCredits(Stripe& st, std::int64_t n, bool reclaim) {
  // Relaxed throughout: credits are a count; no data is published through them.
  // All or nothing (PostBatch): what the hoard gives is kept aside (`got`) until
  // the rest is found, and returned otherwise.
  std::int64_t got = 0;
  std::int64_t c = st.credits.load(std::memory_order_relaxed);
  while (c > 0) {
    const std::int64_t take = std::min(c, n);
    if (st.credits.compare_exchange_weak(c, c - take, std::memory_order_relaxed)) {
      got = take;
      break;
    }
  }
  if (got == n) return true;
  const std::int64_t need = n - got;
  for (int round = 0; round < 2; ++round) {
    std::int64_t g = global_credits_.load(std::memory_order_relaxed);
    while (g >= need) {
      // What we need and a batch for the hoard, less the one we use (for a single
      // submit: a batch, one used at once), as far as the pool has it.
      const std::int64_t take = std::min(g, need + batch_ - 1);
      if (global_credits_.compare_exchange_weak(g, g - take, std::memory_order_relaxed)) {
        if (take > need) st.credits.fetch_add(take - need, std::memory_order_relaxed);
        return true;
      }
    }
    if (round == 1 || !reclaim) break;
    auto reclaim_hoard = [this](Stripe& s) {
      const std::int64_t v = s.credits.exchange(0, std::memory_order_relaxed);
      // A hoard can be below zero: GiveCredit's overflow (fetch_add, then
      // fetch_sub of a batch) may straddle this exchange, and on a shared
      // stripe another submitter's take or other overflows may come between
      // the two. Its debt moves to the pool with it; dropping it made credits.
      if (v != 0) global_credits_.fetch_add(v, std::memory_order_relaxed);
    };
    for (std::size_t i = 0; i < kExternalStripes; ++i) reclaim_hoard(external_[i]);
    for (auto& w : workers_) reclaim_hoard(w->stripe);
  }
  if (got > 0) ReturnCredits(got);
  return false;
}

void EngineImpl::ReturnCredits(std::int64_t n) {
  global_credits_.fetch_add(n, std::memory_order_relaxed);  // a count, as above
}

void EngineImpl::GiveCredit(Stripe& st) {
  std::int64_t n = 1;
  if (own_batch_ > 0 && st.single_writer) {
    // K1: only this stripe's writer is here.
    if (st.own_credits < 2 * own_batch_) {
      ++st.own_credits;
      return;
    }
    st.own_credits = static_cast<std::int16_t>(st.own_credits - own_batch_ + 1);
    n = own_batch_;
  }
  const std::int64_t c = st.credits.fetch_add(n, std::memory_order_relaxed) + n;  // a count
  if (c > 2 * batch_) {
    ChaosPoint();  // a reclaim here can leave the hoard below zero (reclaim_hoard)
    st.credits.fetch_sub(batch_, std::memory_order_relaxed);
    global_credits_.fetch_add(batch_, std::memory_order_relaxed);
  }
}

// ---------------------------------------------------------------------------
// Submit

absl::Status EngineImpl::Validate(const SubmitOptions& o, const char* what) {
  if (o.token.kind() == Token::Kind::kString) {
    if (o.token.text().empty()) {
      return Rejected(absl::InvalidArgumentError(absl::StrCat(
          what,
          ": the dependency token is an empty string; pass a non-empty token, or no "
          "token (a default-constructed ordo::Token) for an independent operation")));
    }
    if (o.token.text().size() > options_.max_token_bytes) {
      return Rejected(absl::InvalidArgumentError(absl::StrCat(
          what, ": the dependency token is ", o.token.text().size(),
          " bytes, over the limit of ", options_.max_token_bytes,
          " (Options::max_token_bytes); use a shorter token, e.g. a hash of it")));
    }
  }
  if (o.failure_policy != FailurePolicy::kDefault && o.token.empty()) {
    // A policy belongs to a token's chain: with no token it was accepted and
    // ignored.
    return Rejected(absl::InvalidArgumentError(absl::StrCat(
        what,
        ": failure_policy is set but there is no token (a failure policy applies to a "
        "token's chain); give the operation a token, or leave failure_policy kDefault")));
  }
  if (o.backoff.max_delay.count() < 0) {
    // Capped below zero, every exponential retry's delay was negative: it ran
    // at once, whatever RetryAfter asked for.
    return Rejected(absl::InvalidArgumentError(absl::StrCat(
        what, ": backoff.max_delay is negative (",
        absl::FormatDuration(absl::FromChrono(o.backoff.max_delay)),
        "); pass the longest delay a retry may wait, or nanoseconds::max() for no cap")));
  }
  if (o.postpone_until.has_value()) {
    const std::int64_t t = o.postpone_until->time_since_epoch().count();
    if (t < 0) {
      return Rejected(absl::InvalidArgumentError(absl::StrCat(
          what, ": postpone_until is before 1970-01-01T00:00:00Z (out of range); pass a "
          "time point of the engine's clock")));
    }
    // The horizon is checked against the clock's reading in Enqueue (one clock
    // read per submission, not two) or in Postpone.
  }
  return absl::OkStatus();
}

std::int64_t EngineImpl::NowLowerBoundNs() const {
  if (clock_ == &SystemClock::Instance()) {
    // The same epoch and scale as SystemClock (system_clock: CLOCK_REALTIME).
    timespec ts;
    if (clock_gettime(CLOCK_REALTIME_COARSE, &ts) == 0) {
      return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
    }
  }
  return NowNs();
}

bool EngineImpl::BeyondHorizon(std::int64_t t, std::int64_t now) const {
  if (t <= now) return false;
  // Exact also for a clock reading before 1970 (as an int64 difference it
  // overflowed there, and a far time was accepted).
  const std::uint64_t ahead = NsAhead(t, now);
  const std::int64_t horizon = options_.horizon.count();
  return horizon < 0 || ahead > static_cast<std::uint64_t>(horizon);
}

absl::Status EngineImpl::CheckBatchAdd(std::size_t size, std::vector<std::int64_t>* future_dues,
                                       std::int64_t due_ns, bool* takes_place) {
  *takes_place = false;
  const bool postponed = due_ns != BatchItem::kNotPostponed;
  // Each refusal counts one rejected operation, as an Add's other checks do.
  if (size >= batch_limit()) {
    return Rejected(absl::ResourceExhaustedError(absl::StrCat(
        postponed ? "Batch::AddPostponed" : "Batch::Add", ": the batch already holds ", size,
        " operations, as many as one batch may (Options::max_pending, less the few places "
        "threads may keep for their next submits from a limit of 65,536 on); post it "
        "(PostBatch) and add to it again, or raise the limit")));
  }
  if (!postponed) return absl::OkStatus();
  // A lower bound of the time, as Post reads (Enqueue), and the exact time
  // only for an item that looks beyond the horizon by it.
  std::int64_t now = NowLowerBoundNs();
  if (BeyondHorizon(due_ns, now)) now = NowNs();
  if (absl::Status s = CheckHorizon(due_ns, now, "Batch::AddPostponed"); !s.ok()) {
    return Rejected(s);
  }
  *takes_place = due_ns > now;
  if (*takes_place && future_dues->size() >= options_.max_timers) {
    // The heap holds the times of the items whose time was still to come at
    // their Add; some may have come since. Those leave it here, at the limit
    // only, earliest first, against the same lower bound of the time: an item
    // kept may have come due too (PostBatch, which reads the clock, gives it no
    // place), never the reverse on a clock that goes only forward. On a manual
    // clock set back, PostBatch checks the room in the wheel again. Each item
    // enters the heap once and leaves it at most once: O(log n) per item over
    // the batch's life, however its items come due (the count this replaced
    // read the whole batch again, on every Add of a batch held at the limit
    // whose items kept coming due one at a time).
    const auto later_first = std::greater<std::int64_t>();
    while (!future_dues->empty() && future_dues->front() <= now) {
      std::pop_heap(future_dues->begin(), future_dues->end(), later_first);
      future_dues->pop_back();
    }
  }
  if (*takes_place && future_dues->size() >= options_.max_timers) {
    *takes_place = false;
    return Rejected(absl::ResourceExhaustedError(absl::StrCat(
        "Batch::AddPostponed: the batch already holds ", future_dues->size(),
        " operations postponed to a time still to come, as many as Options::max_timers "
        "has places for; post it (PostBatch) and add to it again, or raise the limit")));
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::CheckHorizon(std::int64_t t, std::int64_t now,
                                      absl::string_view what) const {
  if (BeyondHorizon(t, now)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": postpone_until ", FormatTime(t), " is beyond the engine's horizon of ",
        absl::FormatDuration(absl::FromChrono(options_.horizon)),
        " from now (Options::horizon); postpone less far or raise the horizon"));
  }
  return absl::OkStatus();
}

void EngineImpl::CountRejected(std::uint64_t n) {
  Stripe& st = MyStripe();
  Count(st, st.rejected, n);
}

bool EngineImpl::CompactFits(const SubmitOptions& o) {
  return o.token.empty() && !o.postpone_until.has_value() && o.recurrence.empty() &&
         o.name.empty() && !o.suspended && o.max_retries < 0 &&
         o.backoff.kind == Backoff::Kind::kFixed && o.failure_policy == FailurePolicy::kDefault;
}

// Submissions by this thread since its last sampled one (Options::
// latency_sample_every); shared by every engine the thread submits to, which
// only shifts where each engine's one in N falls.
thread_local constinit std::uint32_t t_since_sample = 0;

bool EngineImpl::SampleNext() {
  const std::uint32_t every = options_.latency_sample_every;
  if (every == 0 || ++t_since_sample < every) return false;
  t_since_sample = 0;
  return true;
}

Operation* EngineImpl::NewOperation(void** storage, const SubmitOptions* options,
                                    bool with_handle) {
  // A sampled operation takes a full node: its creation time is on line 2.
  const bool sampled = SampleNext();
  const NodeKind kind = with_handle || sampled                          ? NodeKind::kFull
                        : options == nullptr || CompactFits(*options) ? NodeKind::kCompact
                                                                      : NodeKind::kFacts;
  Operation* op = OpPool::Allocate(kind);
  if (sampled) {
    // Relaxed: the node is private (the pool's reset left the kind alone).
    op->word.store(op->word.load(std::memory_order_relaxed) | kSampledBit |
                       (with_handle ? 0 : kNoHandleBit),
                   std::memory_order_relaxed);
  }
  *storage = op->callable_storage();
  return op;
}

std::int64_t EngineImpl::CreationTime(const Operation* op, std::int64_t now) const {
  if (now != kNoTime) return now;
  // Relaxed: the node is private to the submitter.
  return (op->word.load(std::memory_order_relaxed) & kSampledBit) != 0 ? NowNs() : kNoTime;
}

void EngineImpl::DiscardOperation(Operation* op) {
  // The callable was not constructed (its constructor threw) or was destroyed;
  // the node was never published, so its extras (if any) go as a last reference's.
  op->ops = nullptr;
  Reclaim(op);
}

OpExtras* EngineImpl::ExtrasOf(Operation* op) {
  // Acquire/release: the only writers are the submitter (before publishing) and
  // the sole runner (H4); readers in Handle load with acquire.
  OpExtras* ex = Facts(op).extras.load(std::memory_order_acquire);
  if (ex == nullptr) {
    ex = NewExtras();
    Facts(op).extras.store(ex, std::memory_order_release);
  }
  return ex;
}

namespace {

// Spare extras, a few per thread. A recurring series makes its next
// occurrence's extras on the worker that runs an occurrence, and that run's
// end frees the extras of the occurrence before it there too (Reclaim, when
// the last reference goes; no Handle kept): a thread's own frees feed its
// allocations, and a series' steady state needs no heap. The same serves the
// extras of failures' texts and of named operations.
// Late frees, from a thread_local destructor that runs after the spares are
// gone (as OpPool's late frees): to the heap (t_spare_extras_gone, trivially
// destructible, readable to the thread's end).
constexpr int kSpareExtras = 16;
struct SpareExtras {
  OpExtras* items[kSpareExtras];
  int count;
};
constinit thread_local SpareExtras t_spare_extras = {};
constinit thread_local bool t_spare_extras_gone = false;

void FreeSpares() {
  SpareExtras& spares = t_spare_extras;
  while (spares.count > 0) delete spares.items[--spares.count];
}

// Frees the thread's spares at its exit; registered by the first spare kept.
struct SpareExtrasFlusher {
  bool armed = false;
  ~SpareExtrasFlusher() {
    FreeSpares();
    t_spare_extras_gone = true;
  }
};
thread_local SpareExtrasFlusher t_spare_extras_flusher;

// A spare's strings, empty, with their buffers kept up to kKeptTextCapacity.
void ClearText(std::string& s) {
  FreeLongText(s);
  s.clear();
}

}  // namespace

OpExtras* EngineImpl::NewExtras() {
  SpareExtras& spares = t_spare_extras;
  if (spares.count > 0) return spares.items[--spares.count];
  return new OpExtras();
}

void FreeSpareExtras() { FreeSpares(); }

void EngineImpl::DropSeries(Series* s) {
  if (s == nullptr) return;
  // acq_rel: see Series::refs.
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete s;
}

void EngineImpl::DeleteExtras(OpExtras* ex) {
  DropSeries(ex->series);
  SpareExtras& spares = t_spare_extras;
  if (spares.count == kSpareExtras || t_spare_extras_gone) {
    delete ex;
    return;
  }
  static_assert(sizeof(OpExtras) == 112, "a field added to OpExtras is reset here too");
  // As made: NewExtras' caller writes only what it needs. The caller of this
  // is the extras' last user (the node's last reference, or the maker of
  // extras never published), so plain stores suffice; relaxed for the link.
  ClearText(ex->name);
  ClearText(ex->error);
  ex->occurrence_ns = kNoTime;
  ex->series = nullptr;
  ex->max_retries = -1;
  ex->successor.store(nullptr, std::memory_order_relaxed);
  ex->backoff_kind = 0;
  ex->backoff_max_ns = 0;
  // Its destructor frees the spares at thread exit. Touched when the stack is
  // empty only: each touch goes through the TLS wrapper and its guard.
  if (spares.count == 0) t_spare_extras_flusher.armed = true;
  spares.items[spares.count++] = ex;
}

// C1. A refused submission leaves its callable with the caller, as it was: the
// callable moves into the node only past the last refusal (PlaceCallable), and
// a refusal before that returns the bare node. (It moved in first, and a
// refusal destroyed it: a caller that submitted again after ResourceExhausted
// had lost its work, or ran a moved-from capture.) If that move throws, the
// admission is given back and nothing has changed.
absl::Status EngineImpl::Enqueue(Operation* op, detail::PendingCallable f, SubmitOptions&& o,
                                 bool with_handle) {
  // Post(f, o) with options a compact node holds (NewOperation chose it, and
  // Validate found nothing to refuse): the plain path.
  if (IsCompact(op)) return EnqueuePlain(op, f);
  const char* what = with_handle ? "Submit" : "Post";  // names the call in errors
  // A refused submission returns the node unpublished (C1: its callable was
  // never placed): DiscardOperation below.
  if (!with_handle && o.suspended && o.token.empty()) {
    // Nothing could ever resume it: Post returns no Handle to Resume, and
    // ResumeToken needs a token. It would hold a max_pending place until
    // Shutdown canceled it.
    DiscardOperation(op);
    return Rejected(absl::InvalidArgumentError(
        "Post: a suspended operation with no token could never be resumed (Post returns "
        "no Handle, and ResumeToken needs a token); give it a token, or Submit it and "
        "Resume its Handle"));
  }
  std::unique_ptr<Series> series;
  if (!o.recurrence.empty()) {
    absl::StatusOr<RecurrenceRule> parsed;
    try {  // out of memory: nothing taken yet (see the extras below)
      parsed = RecurrenceRule::Parse(o.recurrence);
      if (parsed.ok()) series = std::make_unique<Series>(*parsed);
    } catch (...) {
      DiscardOperation(op);
      throw;
    }
    if (!parsed.ok()) {
      DiscardOperation(op);
      return Rejected(absl::InvalidArgumentError(
          absl::StrCat(what, ": invalid recurrence rule \"", o.recurrence, "\": ",
                       parsed.status().message())));
    }
  }
  // The clock is read only when something needs it: the creation time only a
  // Handle shows, the horizon and due time of a postponement, a recurrence's
  // start. A plain Post reads no clock (a clock read is 25-30 ns on this VM,
  // a quarter of a submit).
  // A postponement alone (Post) reads a lower bound of the time (NowLowerBoundNs,
  // 6 ns). A due time at or before it runs at once. One after it is armed, and
  // if the true time has passed it too, the wheel releases it at the timekeeper's
  // next look, never early; WaitIdle and Shutdown(kDrainReady) release what is
  // due before they look (EngineImpl::ReleaseDue), so such an operation counts as
  // runnable there, as it would with a full read. A full read decides when the
  // bound finds the due time beyond the horizon, or the wheel full.
  // Relaxed: the node is private to this thread.
  const bool sampled = (op->word.load(std::memory_order_relaxed) & kSampledBit) != 0;
  const bool exact_clock = with_handle || series != nullptr || sampled;
  const bool needs_clock = exact_clock || o.postpone_until.has_value();
  std::int64_t now = exact_clock ? NowNs() : needs_clock ? NowLowerBoundNs() : kNoTime;
  if (o.postpone_until.has_value()) {
    const std::int64_t t = o.postpone_until->time_since_epoch().count();
    if (!exact_clock && BeyondHorizon(t, now)) now = NowNs();
    if (absl::Status s = CheckHorizon(t, now, what); !s.ok()) {
      DiscardOperation(op);
      return Rejected(s);
    }
  }
  // The extras are made before EnterSubmit: an allocation that fails here throws
  // out of Submit with nothing taken (the node's last reference frees them, on a
  // refusal or here).
  if (!o.name.empty() || series != nullptr || o.max_retries >= 0 ||
      o.backoff.kind != Backoff::Kind::kFixed) {
    try {
      OpExtras* ex = NewExtras();
      Facts(op).extras.store(ex, std::memory_order_relaxed);  // private until published
      // kExtrasBit at once, so a refusal below frees them (Reclaim). Relaxed:
      // the word is private too.
      op->word.store(op->word.load(std::memory_order_relaxed) | kExtrasBit,
                     std::memory_order_relaxed);
      ex->max_retries = o.max_retries;
      ex->backoff_kind = o.backoff.kind == Backoff::Kind::kExponential ? 1 : 0;
      ex->backoff_max_ns = o.backoff.max_delay.count();
      if (series != nullptr) {
        series->name = std::move(o.name);
        series->start_ns = o.postpone_until ? o.postpone_until->time_since_epoch().count() : now;
        ex->occurrence_ns = series->start_ns;  // the first: the start (OpExtras)
        ex->series = series.release();
      } else {
        ex->name = std::move(o.name);
      }
    } catch (...) {
      DiscardOperation(op);
      throw;
    }
  }
  Stripe& st = MyStripe();
  EnterSubmit(st);
  if (!AdmitOwn(st)) {
    if (absl::Status refused = Admit(st, 1, what); !refused.ok()) {
      return Refuse(op, st, std::move(refused));
    }
  }
  std::int64_t due = o.postpone_until ? o.postpone_until->time_since_epoch().count() : kNoTime;
  if (due != kNoTime && due <= now) due = kNoTime;  // a past time: runnable at once
  // A suspended one takes its place too, and keeps it until Resume (I3).
  if (due != kNoTime && !ReserveTimers(1)) {
    // The wheel is full (timers.cc I3). A due time that only the lower bound of
    // the time put ahead, and that the true time has reached, runs at once.
    if (exact_clock || due > NowNs()) {
      GiveCredit(st);  // undo: nothing was published
      return Refuse(op, st, WheelFullError(what));
    }
    due = kNoTime;
  }
  // The id's RMW before the callable's stores: a locked instruction waits for
  // the stores ahead of it, and here there are none of the node's yet (W2: 7
  // of 8 paired runs 3-5 % faster). A callable whose move throws leaves a gap.
  const std::uint64_t id = TakeIds(st);
  PlaceCallable(op, f, st, /*timer_reserved=*/due != kNoTime);  // past the last refusal (C1)
  // The node is private until the push below publishes it.
  InitFacts(op, id, this, serial_, now, due);
  if (o.suspended && due != kNoTime) MarkPlaceKept(op);  // the place reserved above
  // The engine's reference, and the Handle's if Submit makes one.
  op->refs.store(with_handle ? 2 : 1, std::memory_order_relaxed);
  State initial = State::kWaiting;
  if (o.suspended) {
    initial = State::kSuspended;
  } else if (due != kNoTime) {
    initial = State::kPostponed;
  }
  // H1 by a store for an independent operation: it is its own head from the
  // start, and nothing has published the node yet (the timer's push or the held
  // registry below does). Held (Postponed, Suspended), it is owned by nobody until
  // whoever releases it takes it (H2). A chained one becomes head through its chain.
  const std::uint32_t head = o.token.empty() ? kHeadBit : 0;
  // The kind and kExtrasBit (set above) stay.
  op->word.store(KeptBitsOf(op) | static_cast<std::uint32_t>(initial) | head,
                 std::memory_order_relaxed);

  // Counted before any publication (the arm below, the pushes further on): a
  // stats() snapshot that sees it end then sees it submitted (stats()).
  Count(st, st.submitted);
  // From here nothing may leave by an exception: EnterSubmit's count would stay
  // up and Shutdown wait for it for ever, and a postponed operation is in the
  // timekeeper's hands once armed. The token map and the held registry may
  // still allocate (a new chain, a registry entry), and so may the arm on a
  // manual clock (it releases what is due, timers.cc I6); if that fails, the
  // process ends with a message, as when the injector cannot grow.
  try {
    if (initial == State::kPostponed) ArmTimerFromSubmit(op, due);  // its place reserved above
    // Past the last refusal: a refused Submit changes nothing, the token's policy
    // included. Before the push, so the policy is in force for this operation.
    if (o.failure_policy != FailurePolicy::kDefault) SetPolicy(o.token, o.failure_policy);
    if (initial == State::kSuspended) RegisterHeld(op, Held::kSuspended);
    if (o.token.empty() && initial == State::kWaiting) {
      ScheduleNew(op, st);
    } else if (o.token.empty()) {
      // A held head (above): its release schedules it (H2).
    } else {
      char scratch[8];
      const TokenKey key = MakeTokenKey(o.token, scratch);
      Facts(op).token_hash = key.hash;
      if (tokens_.Push(key, op)) {
        if (!with_handle && initial == State::kWaiting) {
          BecomePrivateHead(op);  // H6 (operation.h)
          Schedule(op, st);
        } else {
          MakeHead(op);
        }
      }
    }
  } catch (...) {
    ORDO_CHECK(false,
               "Submit could not allocate after admitting its operation (a token's chain, "
               "the held registry, the release of due timers on a manual clock): out of "
               "memory");
  }
  ExitSubmit(st);  // the push above happens-before Shutdown's drain
  return absl::OkStatus();
}

std::uint64_t EngineImpl::TakeIds(Stripe& st, std::uint64_t n) {
  // Relaxed: the RMW makes the ids unique and its modification order (which
  // extends happens-before) orders them (D1); they publish nothing.
  const std::uint64_t first = next_id_.fetch_add(n, std::memory_order_relaxed) + 1;
  // D2: this thread's later compact nodes take a block after these ids.
  if (st.single_writer) st.id_next = st.id_end;
  return first;
}

absl::Status EngineImpl::EnqueuePlain(Operation* op, detail::PendingCallable f) {
  // A sampled Post(f) took a full node (NewOperation): Enqueue's path, which
  // reads the clock for it.
  if (!IsCompact(op)) return Enqueue(op, f, SubmitOptions{}, /*with_handle=*/false);
  Stripe& st = MyStripe();
  EnterSubmit(st);
  if (!AdmitOwn(st)) {
    if (absl::Status refused = Admit(st, 1, "Post"); !refused.ok()) {
      return Refuse(op, st, std::move(refused));
    }
  }
  PlaceCallable(op, f, st, /*timer_reserved=*/false);  // past the last refusal (C1)
  // As Enqueue for an independent, runnable operation with no Handle: no clock
  // read, the engine's reference only, and no facts but the id (a compact node,
  // D2). The push publishes the node.
  SetCompactId(op, CompactId(st));
  op->refs.store(1, std::memory_order_relaxed);
  Count(st, st.submitted);
  ScheduleNew(op, st);
  ExitSubmit(st);  // the push above happens-before Shutdown's drain
  return absl::OkStatus();
}

absl::Status EngineImpl::EnqueueBatch(const BatchItem* items, std::size_t n,
                                      const Token* tokens, std::size_t postponed) {
  Stripe& st = MyStripe();
  // Postponed items: one clock read, as Enqueue makes one per submit. A time
  // already past makes its item runnable at once (a Waiting facts node); the
  // others are armed, and each needs a place in the wheel.
  const std::int64_t now = postponed > 0 ? NowNs() : kNoTime;
  std::int64_t to_arm = 0;
  auto armed = [now](const BatchItem& it) {
    return it.due_ns != BatchItem::kNotPostponed && it.due_ns > now;
  };
  for (std::size_t i = 0; postponed > 0 && i < n; ++i) {
    if (items[i].due_ns == BatchItem::kNotPostponed) continue;
    if (!BeyondHorizon(items[i].due_ns, now)) {
      if (armed(items[i])) ++to_arm;
      continue;
    }
    // The message first: out of memory for it, nothing is counted either.
    const absl::Status beyond =
        CheckHorizon(items[i].due_ns, now, absl::StrCat("PostBatch: item ", i));
    absl::Status refused = absl::InvalidArgumentError(
        absl::StrCat(beyond.message(), "; nothing was posted (the batch keeps its operations)"));
    Count(st, st.rejected, n);
    return refused;
  }
  EnterSubmit(st);
  // Admission for n at once, and the wheel's places; refused, the caller keeps
  // every item.
  absl::Status refused = Admit(st, n, "PostBatch");
  if (refused.ok() && to_arm > 0 && !ReserveTimers(to_arm)) {
    ReturnCredits(static_cast<std::int64_t>(n));  // the n Admit took
    refused = WheelFullError("PostBatch");
  }
  if (!refused.ok()) {
    ExitSubmit(st);
    Count(st, st.rejected, n);
    return refused;
  }
  // From here nothing may leave by an exception, as in Enqueue: the first push
  // publishes nodes the Batch no longer owns, and EnterSubmit's count would stay
  // up. The token map may allocate (a new chain); if that fails, the process
  // ends with a message.
  try {
    // Each as EnqueuePlain (independent) or Enqueue (tokened or postponed, no
    // Handle) would, ids in the batch's order (D1: one block for all). The pushes
    // publish the nodes.
    const std::uint64_t first = TakeIds(st, n);
    Count(st, st.submitted, n);
    if (to_arm > 0) {
      // The armed items' nodes are made and their timers pushed before any item is
      // pushed onto a chain, as Enqueue arms before it pushes: once a node is on
      // its chain a token control may cancel it, and a canceled node's timer must
      // already be where its canceler's disarm (or a drain) finds it (timers.cc I1).
      // An independent one is its own head from the start, held (H1: head bit
      // alone); a tokened one becomes head through its chain.
      TimerNode* head = nullptr;
      TimerNode* tail = nullptr;
      std::int64_t earliest = INT64_MAX;
      for (std::size_t i = 0; i < n; ++i) {
        if (!armed(items[i])) continue;
        Operation* op = items[i].op;
        op->ops = items[i].ops;
        op->refs.store(1, std::memory_order_relaxed);  // private until the push below
        InitFacts(op, first + i, this, serial_, CreationTime(op, now), items[i].due_ns);
        if (items[i].token != BatchItem::kNoToken) {
          // Written before the timer's publication like every other fact (the
          // token's key is made again below, for its push).
          char scratch[8];
          Facts(op).token_hash = MakeTokenKey(tokens[items[i].token], scratch).hash;
        }
        const std::uint32_t head_bit = items[i].token == BatchItem::kNoToken ? kHeadBit : 0;
        // Relaxed: private until PushTimers' seq_cst CAS publishes it with the rest.
        op->word.store(KeptBitsOf(op) | static_cast<std::uint32_t>(State::kPostponed) | head_bit,
                       std::memory_order_relaxed);
        TimerNode* t = &Facts(op).timer;
        if (tail == nullptr) {
          head = t;
        } else {
          tail->next = t;  // private until PushTimers publishes the list
        }
        tail = t;
        earliest = std::min(earliest, items[i].due_ns);
      }
      PushTimers(head, tail, earliest);
    }
    // Runnable nodes we own (new independent ones, and heads of chains we
    // activated), scheduled a chunk at a time. A chain we activated waits for its
    // chunk's push: nobody else can run it meanwhile (Chain C2), and nothing here
    // blocks.
    constexpr std::size_t kChunk = 64;
    Operation* chunk[kChunk];
    std::size_t k = 0;
    // Software pipelining over the tokened items: the key of item i + kKeyAhead is
    // made and its hint bucket fetched, the chain of item i + kChainAhead fetched
    // (its bucket has arrived by then), so item i's push finds both lines here
    // instead of waiting on two misses in turn (perf: the two loads after W2's
    // first locked instruction were most of a tokened submit).
    constexpr std::size_t kKeyAhead = 8, kChainAhead = 4;
    struct Ahead {
      TokenKey key;
      char scratch[8];  // an integer token's bytes (key.bytes points here)
    };
    Ahead ring[kKeyAhead];
    auto fetch_key = [&](std::size_t j) {
      if (j >= n || items[j].token == BatchItem::kNoToken) return;
      Ahead& a = ring[j % kKeyAhead];
      a.key = MakeTokenKey(tokens[items[j].token], a.scratch);
      tokens_.FetchBucket(a.key.hash);
    };
    for (std::size_t j = 0; j < kKeyAhead; ++j) fetch_key(j);
    for (std::size_t i = 0; i < n; ++i) {
      if (i + kChainAhead < n && items[i + kChainAhead].token != BatchItem::kNoToken) {
        tokens_.FetchChain(ring[(i + kChainAhead) % kKeyAhead].key.hash);
      }
      Operation* op = items[i].op;
      const bool held = armed(items[i]);  // its node is made and its timer armed (above)
      if (!held) {
        op->ops = items[i].ops;
        op->refs.store(1, std::memory_order_relaxed);  // private until its push
      }
      if (items[i].token == BatchItem::kNoToken) {
        if (!held) {  // a held one's timer release schedules it (H2)
          if (IsCompact(op)) {
            SetCompactId(op, first + i);
          } else {
            // Postponed to a time past, or sampled.
            InitFacts(op, first + i, this, serial_, CreationTime(op, now), kNoTime);
          }
          StoreNewHead(op);
          chunk[k++] = op;
        }
      } else {
        if (!held) {
          // As Enqueue: no clock read unless a postponed item asked for one,
          // Waiting, head through its chain.
          InitFacts(op, first + i, this, serial_, CreationTime(op, now), kNoTime);
          // Relaxed: private until the chain push below publishes it.
          op->word.store(KeptBitsOf(op) | static_cast<std::uint32_t>(State::kWaiting),
                         std::memory_order_relaxed);
        }
        const TokenKey key = ring[i % kKeyAhead].key;  // made kKeyAhead items ago
        if (!held) Facts(op).token_hash = key.hash;    // a held one's is written above
        if (tokens_.Push(key, op)) {
          if (!held) {
            BecomePrivateHead(op);  // H6 (operation.h): no Handle, not armed
            chunk[k++] = op;
          } else if (BecomeHead(op)) {
            chunk[k++] = op;
          }
        }
      }
      fetch_key(i + kKeyAhead);  // into the slot item i's key just left
      if (k == kChunk) {
        Schedule(chunk, k, st);
        k = 0;
      }
    }
    if (k > 0) Schedule(chunk, k, st);
  } catch (...) {
    ORDO_CHECK(false,
               "PostBatch could not allocate after admitting its operations (a token's "
               "chain): out of memory");
  }
  ExitSubmit(st);  // the pushes above happen-before Shutdown's drain
  return absl::OkStatus();
}

void EngineImpl::StoreNewHead(Operation* op) {
  // H1 without an RMW: nothing has published the node yet (no timer, no held
  // entry, no chain), so the head and owner bits go in with a plain store, and
  // the run queue's push publishes them with the rest of the node.
  // The kind and kExtrasBit stay (operation.h). Relaxed load: the node is still
  // private to this thread.
  op->word.store(KeptBitsOf(op) |
                     static_cast<std::uint32_t>(State::kWaiting) | kHeadBit | kOwnedBit,
                 std::memory_order_relaxed);
}

void EngineImpl::ScheduleNew(Operation* op, Stripe& st) {
  StoreNewHead(op);
  Schedule(op, st);
}

void EngineImpl::PlaceCallable(Operation* op, detail::PendingCallable f, Stripe& st,
                               bool timer_reserved) {
  // The callable's move (or copy) constructor runs here, inside our
  // EnterSubmit on st. One that submits from an outside thread to other
  // engines takes leases of its own (ExternalStripe), which never evict st's
  // while this submit is inside it (L4, worker.cc).
  try {
    op->ops = f.Place(op->storage);
    TestPoint(TestPointId::kCallablePlaced, &st);
  } catch (...) {
    if (timer_reserved) ReleaseTimers(1);
    GiveCredit(st);
    ExitSubmit(st);
    DiscardOperation(op);
    throw;
  }
}

absl::Status EngineImpl::Refuse(Operation* op, Stripe& st, absl::Status why) {
  ExitSubmit(st);
  DiscardOperation(op);
  Count(st, st.rejected);
  return why;
}

absl::Status EngineImpl::Admit(Stripe& st, std::size_t n, const char* what) {
  // seq_cst, or the asymmetric pair: the Submit half of Shutdown's Dekker
  // (EnterSubmit's store, then this load).
  if (closed_.load(std::memory_order_seq_cst)) {
    return Refusal(absl::StatusCode::kFailedPrecondition, [&] {
      return std::string(what) +
             ": the engine is shut down (Shutdown was called); submit to a live engine";
    });
  }
  if (n > options_.max_pending) {
    return Refusal(absl::StatusCode::kResourceExhausted, [&] {
      return std::string(what) + ": the batch holds " + std::to_string(n) +
             " operations, more than Options::max_pending (" +
             std::to_string(options_.max_pending) +
             ") admits at once; post it in smaller batches or raise the limit";
    });
  }
  if (!TakeCredits(st, static_cast<std::int64_t>(n))) {
    return Refusal(absl::StatusCode::kResourceExhausted, [&] {
      if (n == 1) {
        return std::string(what) + ": the engine is full: " +
               std::to_string(options_.max_pending) +
               " operations pending (Options::max_pending); wait for some to finish "
               "(WaitIdle, Handle::Wait) or raise the limit";
      }
      return std::string(what) + ": the engine has no room for " + std::to_string(n) +
             " more operations (Options::max_pending is " +
             std::to_string(options_.max_pending) +
             "); wait for some to finish (WaitIdle, Handle::Wait), post fewer, or raise the "
             "limit";
    });
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Control of one operation

std::optional<std::uint32_t> EngineImpl::TryCancelNotStarted(Operation* op, CancelReason reason,
                                                             bool only_suspended) {
  // Acquire: see the latest transition's writes before deciding.
  std::uint32_t w = op->word.load(std::memory_order_acquire);
  std::uint32_t next;
  do {
    if (!NotStarted(StateOf(w))) return std::nullopt;
    if (only_suspended && StateOf(w) != State::kSuspended) return std::nullopt;
    ChaosPoint();  // the state read, then the CAS: a Resume or a start may come between
    next = TakeOwnershipIfUnowned((WithState(w, State::kCanceled) & ~kReasonMask) |
                                  (static_cast<std::uint32_t>(reason) << kReasonShift));
    // acq_rel: the cancel and a worker's start are RMWs on one word: one wins.
  } while (!op->word.compare_exchange_weak(w, next, std::memory_order_acq_rel,
                                           std::memory_order_acquire));
  if (HasTimes(op)) StampCanceled(op, NowNs());  // after the CAS, before waking (OpTimes)
  if (w & kWaiterBit) FutexWakeAll(&op->word);
  OnTerminal(State::kCanceled, MyStripe());
  const State was = StateOf(w);
  if (was == State::kPostponed || was == State::kSuspended) {
    TimerLock lock(this);  // drains the inbox first (I2)
    // Its memory is released at once; a Suspended op's kept place goes back (I3).
    DisarmTimerLocked(op);
  }
  if (was == State::kSuspended) UnregisterHeld(op, Held::kSuspended);
  // H2: a held head nobody owned is now ours, and goes to a worker that moves its
  // chain on at once. Otherwise its owner sees Canceled and does (H3).
  if (TookOwnership(w, next)) Schedule(op);
  return w;
}

absl::StatusOr<CancelOutcome> EngineImpl::Cancel(Operation* op) {
  bool requested = false;  // a request stored while it ran (below)
  for (;;) {
    if (TryCancelNotStarted(op, CancelReason::kByCancel)) return CancelOutcome::kCanceled;
    const std::uint32_t w = op->word.load(std::memory_order_acquire);
    const State s = StateOf(w);
    if (s == State::kInProgress) {
      const State now = RequestCancel(op, CancelReason::kByCancel);
      requested = true;
      // S2: its series ends; a next occurrence canceled names the first to ask.
      EndSeriesAfter(op, Facts(op).RequestReason());
      // Still running: its runner makes no retry now (C1). Moved to Postponed
      // for a retry before the request: cancel that, from the top. Ended
      // meanwhile: from the top too, where the terminal branch tells an end
      // our request caused from one that something else did (a shutdown's
      // refused retry, a CancelToken of the retry), which was once answered
      // kCancelRequested as well.
      if (now == State::kInProgress) return CancelOutcome::kCancelRequested;
      continue;
    }
    if (IsTerminal(s)) {
      // Ended after our request reached it: by that request, if its next attempt
      // read it first (it asks for no retry), or as its callable chose. Not if
      // something else canceled it (CancelToken, Shutdown): that answer stands.
      if (requested && (s != State::kCanceled || ReasonOf(w) == CancelReason::kByCancel)) {
        return CancelOutcome::kCancelRequested;
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "Cancel: ", OpName(op), " already finished (", StateText(s),
          "); nothing was changed"));
    }
  }
}

State EngineImpl::RequestCancel(Operation* op, CancelReason reason) {
  // C1 (timers.cc): under the timer lock, as the runner's look before a retry.
  TimerLock lock(this);
  OpFacts& f = Facts(op);
  // Relaxed, both: under the lock, which orders requesters; the first one's
  // reason stays. Published by the flag's store below.
  if (!f.cancel_requested.load(std::memory_order_relaxed)) {
    f.cancel_request_reason.store(static_cast<std::uint8_t>(reason), std::memory_order_relaxed);
  }
  // seq_cst: S2's requester half (this store, then EndSeriesAfter's load of the
  // successor), and its release half publishes the reason; C1 itself needs
  // only the lock (the callable polls the flag).
  f.cancel_requested.store(true, std::memory_order_seq_cst);
  TestPoint(TestPointId::kCancelRequested, op);
  return StateOf(op->word.load(std::memory_order_acquire));
}

bool EngineImpl::CancelOrRequest(Operation* op, CancelReason reason) {
  for (;;) {
    if (TryCancelNotStarted(op, reason)) return true;
    ChaosPoint();  // a retry may postpone it here (below)
    // Not started again: it asked for a retry and was postponed before our
    // request, so cancel that from the top, as Cancel does. C1: with the
    // request stored, no further retry is made, so this runs at most twice.
    if (!NotStarted(RequestCancel(op, reason))) return false;
  }
}

const char* EngineImpl::RequesterName(CancelReason reason) {
  return reason == CancelReason::kByToken ? "CancelToken" : "Cancel";
}

absl::Status EngineImpl::Postpone(Operation* op, std::optional<Clock::time_point> until) {
  // S1: armed before Shutdown drains the wheel, or refused.
  ShutdownScope scope(this, MyStripe());
  if (scope.closed()) {
    return absl::FailedPreconditionError(
        "Postpone: the engine is shutting down; postponements are refused");
  }
  std::int64_t due = kNoTime;
  if (until.has_value()) {
    due = until->time_since_epoch().count();
    if (due < 0) {
      // As Validate says it for Submit, but not counted: Stats::rejected counts
      // refused submissions, and a refused Postpone changes nothing.
      return absl::InvalidArgumentError(
          "Postpone: the time is before 1970-01-01T00:00:00Z (out of range); pass a time "
          "point of the engine's clock");
    }
    const std::int64_t now = NowNs();
    if (absl::Status s = CheckHorizon(due, now, "Postpone"); !s.ok()) return s;
    if (due <= now) due = kNoTime;
  }
  bool schedule = false;
  {
    TimerLock lock(this);  // drains the inbox first (I2)
    // A place for the timer, reserved before any change (I3, ReserveTimers);
    // given back on every way out that does not arm it.
    bool reserved = false;
    auto unreserve = [&] {
      if (reserved) ReleaseTimers(1);
    };
    std::uint32_t w = op->word.load(std::memory_order_acquire);
    for (;;) {
      const State s = StateOf(w);
      if (!NotStarted(s)) {
        unreserve();
        return absl::FailedPreconditionError(absl::StrCat(
            "Postpone: ", OpName(op), " is ", StateText(s),
            "; only an operation that has not started can be postponed"));
      }
      if (s == State::kSuspended) {
        // Stays suspended; Resume uses the new time. A time keeps a place for
        // Resume (I3): taken now if it had none, refused if there is none.
        unreserve();
        if (due != kNoTime && !Facts(op).place_kept) {
          if (!ReserveTimers(1)) return WheelFullError("Postpone");
          MarkPlaceKept(op);
        } else if (due == kNoTime) {
          DisarmTimerLocked(op);  // gives back the place it kept, if any
        }
        // Relaxed: read under timer_mu_.
        Facts(op).due_ns().store(due, std::memory_order_relaxed);
        return absl::OkStatus();
      }
      const State target = due == kNoTime ? State::kWaiting : State::kPostponed;
      if (s == State::kWaiting && target == State::kWaiting) {
        unreserve();
        return absl::OkStatus();
      }
      // Bad input changes nothing: refuse before any change if the wheel is full.
      // A timer already in the wheel keeps its place (in_wheel is stable while we
      // hold timer_mu_).
      if (target == State::kPostponed && !Facts(op).in_wheel && !reserved) {
        if (!ReserveTimers(1)) return WheelFullError("Postpone");
        reserved = true;
      }
      const std::uint32_t next = TakeOwnershipIfUnowned(WithState(w, target));  // H2
      // acq_rel: the change races with starts and cancels on the same word.
      if (op->word.compare_exchange_weak(w, next, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
        schedule = TookOwnership(w, next);
        if (target == State::kPostponed) {
          if (Facts(op).in_wheel) MoveOutTimerLocked(op);  // keeps its place
        } else {
          DisarmTimerLocked(op);  // gives its place back, if it had one
        }
        Facts(op).due_ns().store(due, std::memory_order_relaxed);  // under timer_mu_
        if (target == State::kPostponed) ArmTimerLocked(op, due);
        break;
      }
    }
  }
  if (schedule) Schedule(op);  // H2
  return absl::OkStatus();
}

absl::Status EngineImpl::WheelFullError(const char* what) const {
  return Refusal(absl::StatusCode::kResourceExhausted, [&] {
    return std::string(what) + ": " + std::to_string(options_.max_timers) +
           " postponed operations (suspended ones with a time included) hold the wheel's "
           "places (Options::max_timers); nothing was changed: let some come due, cancel "
           "some, or raise the limit";
  });
}

absl::Status EngineImpl::Suspend(Operation* op, bool* changed) {
  // S1: registered and Suspended before Shutdown takes the held registry, or
  // refused (a suspension that came after it would hold its chain for ever).
  ShutdownScope scope(this, MyStripe());
  if (scope.closed()) {
    return absl::FailedPreconditionError(
        "Suspend: the engine is shutting down; suspensions are refused");
  }
  // Under timer_mu_, nobody else can make op Suspended (Suspend and Resume hold it;
  // Submit registers before publishing). It is registered before the CAS, so a
  // Cancel or Resume that follows the CAS finds the entry to remove.
  TimerLock lock(this);  // drains the inbox first (I2)
  std::uint32_t w = op->word.load(std::memory_order_acquire);
  if (StateOf(w) == State::kSuspended) return absl::OkStatus();
  const bool registered = RegisterHeld(op, Held::kSuspended);
  for (;;) {
    const State s = StateOf(w);
    if (!NotStarted(s) || s == State::kSuspended) {
      if (registered) UnregisterHeld(op, Held::kSuspended);
      if (s == State::kSuspended) return absl::OkStatus();
      return absl::FailedPreconditionError(absl::StrCat(
          "Suspend: ", OpName(op), " is ", StateText(s),
          "; only an operation that has not started can be suspended"));
    }
    // acq_rel: as in Postpone.
    if (op->word.compare_exchange_weak(w, WithState(w, State::kSuspended),
                                       std::memory_order_acq_rel, std::memory_order_acquire)) {
      // Keeps due_ns and its place for Resume (I3); a Waiting op has no timer.
      if (Facts(op).in_wheel) KeepPlaceLocked(op);
      if (changed != nullptr) *changed = true;
      return absl::OkStatus();
    }
  }
}

absl::Status EngineImpl::Resume(Operation* op, bool* changed) {
  bool schedule = false;
  {
    TimerLock lock(this);  // drains the inbox first (I2)
    std::uint32_t w = op->word.load(std::memory_order_acquire);
    for (;;) {
      const State s = StateOf(w);
      if (s != State::kSuspended) {
        if (NotStarted(s)) return absl::OkStatus();  // not suspended: nothing to do
        return absl::FailedPreconditionError(absl::StrCat(
            "Resume: ", OpName(op), " is ", StateText(s), "; only a suspended operation resumes"));
      }
      // A suspended operation is not in the wheel (Suspend takes it out). It
      // has a time to wait for exactly when it kept a place (I3): one that was
      // Waiting when suspended had its time already (the timekeeper released
      // it), so it runs at once, even if a clock gone back puts that time ahead
      // again. (It reserved a place then, and a full wheel refused the Resume,
      // which ResumeToken left Suspended without a word.) Under timer_mu_.
      std::int64_t due = Facts(op).place_kept
                             ? Facts(op).due_ns().load(std::memory_order_relaxed)
                             : kNoTime;
      if (due != kNoTime && due <= NowNs()) due = kNoTime;
      const State target = due == kNoTime ? State::kWaiting : State::kPostponed;
      const std::uint32_t next = TakeOwnershipIfUnowned(WithState(w, target));  // H2
      if (op->word.compare_exchange_weak(w, next, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
        // Under timer_mu_, where Suspend adds it: a Suspend that follows adds
        // it again, and finds no stale entry that we would then remove.
        UnregisterHeld(op, Held::kSuspended);
        Facts(op).due_ns().store(due, std::memory_order_relaxed);
        schedule = TookOwnership(w, next);
        if (changed != nullptr) *changed = true;
        const bool kept = TakeKeptPlaceLocked(op);  // now ours, as if reserved
        if (target == State::kPostponed) {
          ArmTimerLocked(op, due);  // in the place it kept
        } else if (kept) {
          ReleaseTimers(1);  // its time has come
        }
        break;
      }
    }
  }
  if (schedule) Schedule(op);  // H2
  return absl::OkStatus();
}

bool EngineImpl::RegisterHeld(Operation* op, Held why) {
  MutexLock lock(&held_mu_);
  if (!held_[static_cast<int>(why)].insert(op).second) return false;
  AddRef(op);
  return true;
}

bool EngineImpl::EraseHeld(Operation* op, Held why) {
  MutexLock lock(&held_mu_);
  return held_[static_cast<int>(why)].erase(op) > 0;
}

void EngineImpl::UnregisterHeld(Operation* op, Held why) {
  const bool had = EraseHeld(op, why);
  if (had) DropRef(op);
}

// ---------------------------------------------------------------------------
// Failure policy and token controls

std::string EngineImpl::PolicyKey(const Token& token) {
  char scratch[8];
  const TokenKey k = MakeTokenKey(token, scratch);
  std::string key(1, static_cast<char>(k.kind));
  key.append(k.bytes.data(), k.bytes.size());
  return key;
}

void EngineImpl::SetPolicy(const Token& token, FailurePolicy p) {
  if (token.empty()) return;
  MutexLock lock(&policy_mu_);
  if (p == FailurePolicy::kContinue || p == FailurePolicy::kDefault) {
    policies_.erase(PolicyKey(token));
  } else {
    policies_[PolicyKey(token)] = p;
  }
  // Relaxed: a hint that lets the failure path skip the lock; set under the lock.
  any_policy_.store(!policies_.empty(), std::memory_order_relaxed);
}

absl::Status EngineImpl::CheckControlToken(const Token& token, const char* what) const {
  // The tokens Submit refuses name no chain: refused here too, with the same
  // reasons, rather than answered with an empty result.
  if (token.empty() || (token.kind() == Token::Kind::kString && token.text().empty())) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": pass a non-empty token (a string or an integer)"));
  }
  if (token.kind() == Token::Kind::kString && token.text().size() > options_.max_token_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": the token is ", token.text().size(), " bytes, over the limit of ",
        options_.max_token_bytes,
        " (Options::max_token_bytes), so no operation can have it; pass the token the "
        "operations were submitted with"));
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::SetFailurePolicy(const Token& token, FailurePolicy policy) {
  if (absl::Status bad = CheckControlToken(token, "SetFailurePolicy"); !bad.ok()) return bad;
  SetPolicy(token, policy);
  return absl::OkStatus();
}

FailurePolicy EngineImpl::PolicyFor(const Chain* c) {
  if (!any_policy_.load(std::memory_order_relaxed)) return FailurePolicy::kContinue;
  MutexLock lock(&policy_mu_);
  auto it = policies_.find(c->key());
  return it == policies_.end() ? FailurePolicy::kContinue : it->second;
}

void EngineImpl::CancelBehind(Operation* x, CancelReason reason, const Operation* spared,
                              Operation* last) {
  // The runner walks the nodes linked behind x, up to `last` (F1 in worker.cc:
  // the tail when x's failure was decided), or the tail as of now: those are
  // "the rest" (a later submit is not affected). They cannot be released
  // before the runner moves past x, which it has not.
  if (last == nullptr) last = x->chain->tail_.load(std::memory_order_seq_cst);
  if (last == x) return;
  for (Operation* n = x;;) {
    Operation* next;
    // Acquire: pairs with Chain::Push's release link; a link in flight lands soon.
    while ((next = n->chain_next.load(std::memory_order_acquire)) == nullptr) {
      std::this_thread::yield();
    }
    n = next;
    if (n != spared) TryCancelNotStarted(n, reason);
    if (n == last) return;
  }
}

bool EngineImpl::HaltChain(Chain* c, Operation* x, std::uint32_t resume_epoch) {
  // Registered before halted_at_ is set: a ResumeToken that takes x from
  // halted_at_ at once then finds the entry it removes (registered after, x
  // would stay in the registry with a reference, and Shutdown would read its
  // chain, retired by then).
  const bool registered = RegisterHeld(x, Held::kHalted);
  ORDO_DCHECK(registered, "a head halted twice");
  (void)registered;
  ChaosPoint();  // the registry, then the chain (a ResumeToken may look between)
  bool halted = false;
  tokens_.WithChainLocked(c->key(), [&](Chain* found) {
    if (found != c) return;
    // F1 (worker.cc): a ResumeToken since the failure was decided releases it.
    // Relaxed: the shard lock orders it with ResumeToken's bump.
    if (c->resume_epoch_.load(std::memory_order_relaxed) != resume_epoch) return;
    // The runner's ownership of x passes to halted_at_ (H3); ResumeToken or
    // Shutdown hands it to a run-queue entry. Relaxed: published by the lock.
    x->word.fetch_or(kOwnedBit, std::memory_order_relaxed);
    c->halted_at_ = x;
    halted = true;
  });
  if (!halted) UnregisterHeld(x, Held::kHalted);
  return halted;
}

std::size_t EngineImpl::ForEachInChain(
    const Token& token, const std::function<void(Chain*, Operation*)>& fn) {
  char scratch[8];
  const TokenKey key = MakeTokenKey(token, scratch);
  std::size_t visited = 0;
  tokens_.WithChainLocked(key, [&](Chain* c) {
    if (c == nullptr) return;
    Operation* h;
    while ((h = c->PinHead()) == nullptr) {
      // Activated but its producer has not made the head yet (it is between
      // two steps of Submit), or its runner is emptying it (TokenMap T3), or
      // idle (kept until a sweep). seq_cst, as PinHead's loads.
      if (c->tail_.load(std::memory_order_seq_cst) == nullptr) return;
      TestPoint(TestPointId::kWalkerAwaitsHead, c);
      std::this_thread::yield();
    }
    Chain::HazardHold hold(c);  // withdrawn on every way out, a throw from fn too
    // The tail as of now bounds the walk: later submits are not affected.
    Operation* last = c->tail_.load(std::memory_order_seq_cst);
    for (Operation* n = h;;) {
      fn(c, n);
      ++visited;
      if (n == last || last == nullptr) break;
      Operation* next;
      // Acquire: pairs with Chain::Push's release link; a link in flight lands soon.
      while ((next = n->chain_next.load(std::memory_order_acquire)) == nullptr) {
        std::this_thread::yield();
      }
      n = next;
    }
  });
  return visited;
}

absl::StatusOr<std::size_t> EngineImpl::CancelToken(const Token& token) {
  if (absl::Status bad = CheckControlToken(token, "CancelToken"); !bad.ok()) return bad;
  std::size_t changed = 0;
  ForEachInChain(token, [&](Chain*, Operation* n) {
    const OpExtras* ex = IsCompact(n) ? nullptr : ExtrasIfAny(n, std::memory_order_acquire);
    if (ex == nullptr || ex->series == nullptr) {
      if (TryCancelNotStarted(n, CancelReason::kByToken)) ++changed;
      return;
    }
    // A recurring operation: its series ends, as a Cancel of it would end it.
    // Not started, it is canceled. Started (the head, the only one that can),
    // it is asked to stop (S2). A series Post made has no Handle, and its token
    // is the only way to stop it: a CancelToken that came while an occurrence
    // ran found nothing to cancel, and the series went on. Ended meanwhile (its
    // next, pushed behind the walk's last node, is then out of the walk's
    // reach), its next is canceled all the same: while the walk's hazard names
    // it, its runner has not moved the chain on, so that next has not started.
    // Postponed for a retry after our first look, it is canceled from the top,
    // as Cancel does (looked at once, the retry ran unasked, and the series
    // went on). The request is not counted (nothing changed state); a next
    // occurrence it cancels is.
    if (CancelOrRequest(n, CancelReason::kByToken)) {
      ++changed;
      return;
    }
    // A next occurrence canceled names the first to ask (RequestCancel ran).
    changed += EndSeriesAfter(n, Facts(n).RequestReason());
  });
  return changed;
}

absl::StatusOr<std::size_t> EngineImpl::SuspendToken(const Token& token) {
  if (absl::Status bad = CheckControlToken(token, "SuspendToken"); !bad.ok()) return bad;
  if (closed_.load(std::memory_order_acquire)) {
    return absl::FailedPreconditionError(
        "SuspendToken: the engine is shutting down; suspensions are refused");
  }
  std::vector<Operation*> ops;
  // The references taken below go back on every way out, a throw included (out
  // of memory in the walk, or in a Suspend's error text).
  absl::Cleanup drop_refs = [&] {
    for (Operation* n : ops) DropRef(n);
  };
  ForEachInChain(token, [&](Chain*, Operation* n) {
    if (NotStarted(StateOf(n->word.load(std::memory_order_acquire)))) {
      ops.push_back(n);  // first: if it throws, no reference was taken
      AddRef(n);
    }
  });
  std::size_t changed = 0;
  for (Operation* n : ops) {
    // Counted by our own CAS: a Suspend racing ours (another SuspendToken, a
    // Handle's) answers OK for the one it found Suspended, and both counted it.
    bool mine = false;
    (void)Suspend(n, &mine);
    if (mine) ++changed;
  }
  return changed;
}

absl::StatusOr<std::size_t> EngineImpl::ResumeToken(const Token& token) {
  if (absl::Status bad = CheckControlToken(token, "ResumeToken"); !bad.ok()) return bad;
  std::vector<Operation*> ops;
  Operation* halted = nullptr;
  bool halted_entry = false;
  const Chain* bumped = nullptr;
  // On every way out, a throw included (out of memory in the walk, or in a
  // Resume's error text): the references taken below go back, then the halt
  // taken below is released. Taken from the chain and the registry, it is
  // found nowhere else (an allocation that threw after it was taken once left
  // the chain halted for good).
  absl::Cleanup release = [&] {
    for (Operation* n : ops) DropRef(n);
    if (halted == nullptr) return;
    Schedule(halted);  // a worker moves the chain on past the failed head
    // R2: a halted head is registered; the registry's reference goes now.
    ORDO_DCHECK(halted_entry, "a chain halted at an unregistered head");
    if (halted_entry) DropRef(halted);
  };
  ForEachInChain(token, [&](Chain* c, Operation* n) {
    if (c != bumped) {  // F1 (worker.cc): once per chain, under the shard lock
      // Relaxed: the shard lock orders it with HaltChain's read
      // (Chain::resume_epoch_).
      c->resume_epoch_.fetch_add(1, std::memory_order_relaxed);
      bumped = c;
    }
    if (c->halted_at_ != nullptr && halted == nullptr) {
      halted = c->halted_at_;
      c->halted_at_ = nullptr;
      halted_entry = EraseHeld(halted, Held::kHalted);  // R2: with halted_at_
    }
    if (StateOf(n->word.load(std::memory_order_acquire)) == State::kSuspended) {
      ops.push_back(n);  // first: if it throws, no reference was taken
      AddRef(n);
    }
  });
  std::size_t changed = 0;
  for (Operation* n : ops) {
    bool mine = false;  // counted by our own CAS, as in SuspendToken
    (void)Resume(n, &mine);
    if (mine) ++changed;
  }
  if (halted != nullptr) ++changed;
  return changed;  // `release` runs now: the halt goes after the resumes
}

absl::StatusOr<TokenReport> EngineImpl::TokenInfo(const Token& token) {
  if (absl::Status bad = CheckControlToken(token, "TokenInfo"); !bad.ok()) return bad;
  // Counted by walking the chain (no per-operation counter on the hot path).
  TokenReport r;
  bool first = true;
  ForEachInChain(token, [&](Chain*, Operation* n) {
    const State s = StateOf(n->word.load(std::memory_order_acquire));
    if (first) {
      first = false;
      r.head_state = s;
      r.head_id = n->id_relaxed();
    }
    if (!IsTerminal(s)) ++r.pending;
  });
  return r;
}

std::string EngineImpl::ExplainFinished(Operation* op, State s) {
  return absl::StrCat(OpName(op), " is ", StateText(s), " (finished at ",
                      FormatTime(CompletedNs(op)), ")");
}

std::string EngineImpl::Explain(Operation* op) {
  const std::uint32_t w = op->word.load(std::memory_order_acquire);
  const State s = StateOf(w);
  const std::string me = OpName(op);
  auto due_text = [](Operation* o) {
    const std::int64_t d = Facts(o).due_ns().load(std::memory_order_relaxed);  // diagnostic
    return d == kNoTime ? std::string() : " until " + FormatTime(d);
  };
  switch (s) {
    case State::kSucceeded:
    case State::kFailed:
    case State::kCanceled:
      return ExplainFinished(op, s);
    case State::kInProgress:
      return absl::StrCat(me, " is running");
    case State::kSuspended:
      return absl::StrCat(me, " is Suspended until resumed (Resume or ResumeToken)");
    default:
      break;
  }
  std::string head_text;
  if (op->chain != nullptr && (w & kHeadBit) == 0) {
    // Under the shard lock the chain is not retired, so op->chain stays valid if
    // op is still not terminal (checked again inside).
    TokenKey probe;
    probe.hash = Facts(op).token_hash;
    tokens_.WithShardLocked(Facts(op).token_hash, [&] {
      if (IsTerminal(StateOf(op->word.load(std::memory_order_acquire)))) return;
      Chain* c = op->chain;
      Operation* h;
      while ((h = c->PinHead()) == nullptr) {
        // No head for an instant: its runner is between emptying steps and a
        // producer pushed behind its last node (TokenMap T3), or a producer is
        // making its first node the head. op, not terminal, is in the chain, so
        // a head comes; as ForEachInChain waits for it. (Answered at once, op
        // was "queued for a worker" while it waited behind that head.)
        // seq_cst, as PinHead's loads.
        if (c->tail_.load(std::memory_order_seq_cst) == nullptr) return;
        std::this_thread::yield();
      }
      Chain::HazardHold hold(c);  // the text below allocates, and may throw
      if (h == op) return;        // op itself is the head now: nothing ahead of it
      const State hs = StateOf(h->word.load(std::memory_order_acquire));
      head_text = absl::StrCat("waiting behind ", OpName(h), ", which is ", StateText(hs),
                               hs == State::kPostponed ? due_text(h) : "");
      if (c->halted_at_ == h) head_text += " (the chain is halted after its failure: ResumeToken)";
      // The first held operation between the head and op, which keeps op
      // waiting once the head has ended. Safe to read: with the head pinned,
      // its runner cannot move past it, so nothing behind it is released. A
      // link not made yet (a producer between its two steps) ends the look, as
      // does a long chain (a diagnostic: the first 4,096).
      Operation* n = h->chain_next.load(std::memory_order_acquire);  // as Advance's
      for (int i = 0; n != nullptr && n != op && i < 4096; ++i) {
        // Acquire: pairs with the release of whoever last moved its state, as
        // the other diagnostic loads of a word here.
        const State ns = StateOf(n->word.load(std::memory_order_acquire));
        if (ns == State::kPostponed || ns == State::kSuspended) {
          absl::StrAppend(&head_text, ", and then behind ", OpName(n), ", which is ",
                          StateText(ns), ns == State::kPostponed ? due_text(n) : "");
          break;
        }
        n = n->chain_next.load(std::memory_order_acquire);
      }
    });
    TestPoint(TestPointId::kExplainWalked, op);
    // Ended meanwhile (the walk above stopped at it, or found the chain
    // emptied past it): said as finished, not as the waiting it was before.
    // Acquire: as the first load of the word.
    const State now = StateOf(op->word.load(std::memory_order_acquire));
    if (IsTerminal(now)) return ExplainFinished(op, now);
  }
  if (s == State::kPostponed) {
    std::string t = absl::StrCat(me, " is Postponed", due_text(op));
    if (!head_text.empty()) absl::StrAppend(&t, ", and ", head_text);
    return t;
  }
  if (!head_text.empty()) return absl::StrCat(me, " is ", head_text);
  return absl::StrCat(me, " is Waiting: ready, queued for a worker");
}

// ---------------------------------------------------------------------------
// Recurrence

EngineImpl::Spawn EngineImpl::SpawnNextOccurrence(Operation* op, Stripe& st) {
  OpExtras* ex = Facts(op).extras.load(std::memory_order_acquire);
  Series* series = ex->series;
  // S1: the next occurrence is armed or queued before Shutdown drains the wheel
  // and waits for what is pending, or the series ends here.
  ShutdownScope scope(this, st);
  if (scope.closed()) return Spawn::kNone;
  // Canceling an occurrence ends the series (DESIGN), a running one too: the
  // cancel request is the only stop its user could ask for, the next
  // occurrence having no Handle yet. A first look, relaxed: seen, no next is
  // made; a request that lands after it is caught by S2 (below, above
  // EndSeriesAfter), which cancels the next made here.
  if (Facts(op).cancel_requested.load(std::memory_order_relaxed)) return Spawn::kNone;
  const std::int64_t now = NowNs();
  // From this occurrence's place on the grid (OpExtras::occurrence_ns, the
  // start for the first), or its due time if a Postpone moved it later:
  // computing from its due time alone found the start again for a first
  // occurrence run early.
  // The due time read under timer_mu_, not the wheel (no drain, I2): a
  // Postpone that made this occurrence runnable stores its new due time after
  // its CAS, under that lock, and we may have started it in between; read
  // without the lock, a Postpone(nullopt) after a Postpone to later had the
  // series go on from the later time, skipping what came between.
  std::int64_t due_now;
  {
    MutexLock lock(&timer_mu_);
    due_now = Facts(op).due_ns().load(std::memory_order_relaxed);
  }
  const std::int64_t this_due = std::max(due_now, ex->occurrence_ns);
  const std::int64_t after = std::max(now, this_due);
  using TP = Clock::time_point;
  // The time alone: the index, which nothing here reads, is a count since the
  // start for some rules, which would grow with the series' age.
  const std::optional<Clock::time_point> next = series->rule.NextTimeAfter(
      TP(Clock::duration(series->start_ns)), TP(Clock::duration(after)));
  if (!next.has_value()) return Spawn::kNone;
  // Everything that may throw bad_alloc comes before the callable moves: out of
  // memory ends the series here, the callable staying with this occurrence (and
  // destroyed at its end), where a throw after the move leaked the new node and
  // ended the worker.
  struct ExtrasDeleter {
    void operator()(OpExtras* e) const { DeleteExtras(e); }
  };
  std::unique_ptr<OpExtras, ExtrasDeleter> made;
  Operation* n;
  try {
    made.reset(NewExtras());
    // A Handle can reach it only through one of the predecessor's
    // (next_occurrence): a full node if the predecessor may have a Handle, else
    // a facts node (a sampled Post's series is sampled once, at its submission).
    n = OpPool::Allocate(MayHaveHandle(op) ? NodeKind::kFull : NodeKind::kFacts);
  } catch (const std::bad_alloc&) {
    return Spawn::kOutOfMemory;
  }
  op->ops->relocate(op->storage, n->storage);
  n->ops = op->ops;
  op->ops = nullptr;  // moved: the engine's release must not destroy it
  OpExtras* nex = made.release();
  nex->max_retries = ex->max_retries;
  nex->backoff_kind = ex->backoff_kind;
  nex->backoff_max_ns = ex->backoff_max_ns;
  // Relaxed: we hold a reference (op's extras), see Series::refs.
  series->refs.fetch_add(1, std::memory_order_relaxed);
  nex->series = series;
  Facts(n).extras.store(nex, std::memory_order_relaxed);  // published by the push below
  const std::int64_t due = next->time_since_epoch().count();
  nex->occurrence_ns = due;
  const bool postponed = due > now;
  InitFacts(n, TakeIds(st), this, serial_, now, postponed ? due : kNoTime);
  // The engine's, the predecessor's link (Handle::next_occurrence).
  n->refs.store(2, std::memory_order_relaxed);
  // Relaxed: private until the timer's arming, MakeHead or the chain push below.
  n->word.store(KeptBitsOf(n) | kExtrasBit |
                    static_cast<std::uint32_t>(postponed ? State::kPostponed : State::kWaiting),
                std::memory_order_relaxed);
  // An occurrence replaces the one that ends: it takes over that one's admission
  // credit (whose end gives none back), so it is never refused for want of one
  // (a series never silently stops) and a series never holds more than one.
  // Counted before the arm or push publishes it (stats()).
  Count(st, st.submitted);
  if (postponed) {
    TimerLock lock(this);  // drains the inbox first (I2)
    TakeSeriesTimer();     // I3: a place even when the wheel is full
    ArmTimerLocked(n, due);
  }
  if (op->chain == nullptr) {
    MakeHead(n);
  } else {
    const TokenKey key = op->chain->key();  // op is the head: the chain is alive
    Facts(n).token_hash = key.hash;
    if (tokens_.Push(key, n)) MakeHead(n);
  }
  // Release: Handle::next_occurrence acquires it, and so sees n's chain and
  // token hash (Explain reads them). After the push: n may already run, which
  // is harmless (op, still ours, holds n by its link reference); before op ends,
  // so a thread that sees op end finds next_occurrence() set. seq_cst: S2's
  // runner half (this store, then the load of the request below).
  ChaosPoint();  // a cancel request may land between the first look and here
  TestPoint(TestPointId::kSeriesNextMade, op);
  ex->successor.store(n, std::memory_order_seq_cst);
  // S2: a request that came after the first look above ends the series here,
  // unless its requester found n and canceled it itself; the cancel names who
  // asked (the load that saw the flag acquired the reason).
  if (Facts(op).cancel_requested.load(std::memory_order_seq_cst)) {
    EndSeriesAfter(op, Facts(op).RequestReason());
  }
  return Spawn::kMade;
}

// S2, a cancel request against a series' next occurrence. The runner of a
// running occurrence looks at its cancel request before it makes the next
// (SpawnNextOccurrence's first look), but a request may land after that look.
// So both sides look again, seq_cst on all four accesses (a Dekker pair):
//   requester: stores cancel_requested (RequestCancel), then loads successor;
//   runner:    stores successor, then loads cancel_requested.
// At least one sees the other's store: the requester finds the next occurrence,
// or the runner finds the request, and that one cancels the next occurrence
// (both may: one CAS wins, TryCancelNotStarted). So after a cancel request on
// a running occurrence no later occurrence starts, but one that started
// already, due at once, which is asked to stop in turn. Either side's cancel
// names who asked (OpFacts::cancel_request_reason: the first requester).
std::size_t EngineImpl::EndSeriesAfter(Operation* op, CancelReason reason) {
  std::size_t canceled = 0;
  // Each occurrence holds its next by its link reference (OpExtras::successor),
  // and the caller holds op (a Handle, a token walk's hazard, or the runner's
  // ownership): every node below stays alive.
  for (;;) {
    if (IsCompact(op)) return canceled;
    const OpExtras* ex = ExtrasIfAny(op, std::memory_order_acquire);
    if (ex == nullptr || ex->series == nullptr) return canceled;
    Operation* n = ex->successor.load(std::memory_order_seq_cst);  // S2
    if (n == nullptr) return canceled;  // op's runner sees the request first
    if (CancelOrRequest(n, reason)) return canceled + 1;
    // Started already (due at once): asked to stop as op was, and S2 again for
    // its own next. Or ended, unasked: its own next, stored before it ended.
    op = n;
  }
}

// ---------------------------------------------------------------------------
// WaitIdle, Shutdown, stats

bool EngineImpl::ActivityIdle() const {
  // Released from the wheel and not yet scheduled: not idle. First, and acquire:
  // pairs with ReleaseDue's release decrement, after which the scheduled counts
  // below include those operations.
  if (releasing_.load(std::memory_order_acquire) != 0) return false;
  // Finished first, then scheduled (see engine_impl.h). Acquire on finished pairs
  // with the workers' release increments.
  std::uint64_t finished = 0, scheduled = 0;
  for (const auto& w : workers_) finished += w->stripe.finished.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < kExternalStripes; ++i) {
    finished += external_[i].finished.load(std::memory_order_acquire);
  }
  for (const auto& w : workers_) scheduled += w->stripe.scheduled.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < kExternalStripes; ++i) {
    scheduled += external_[i].scheduled.load(std::memory_order_acquire);
  }
  return finished == scheduled;
}

std::uint64_t EngineImpl::Pending() const {
  const Stats s = stats();
  return s.pending;
}

void EngineImpl::WakeIdleWaiters() {
  // The fence pairs with the one after idle_waiters_'s increment in
  // AwaitCondition: either the waiter's evaluation sees what our caller did just
  // before (a finished count, a releasing_ decrement) or we see the waiter and
  // move the epoch it sleeps on.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (idle_waiters_.load(std::memory_order_relaxed) > 0) {
    idle_epoch_.fetch_add(1, std::memory_order_release);  // wake-up token only
    FutexWakeAll(&idle_epoch_);
  }
}

void EngineImpl::AwaitCondition(const std::function<bool()>& done) {
  idle_waiters_.fetch_add(1, std::memory_order_seq_cst);
  for (;;) {
    const std::uint32_t epoch = idle_epoch_.load(std::memory_order_acquire);
    // Pairs with the fence in WakeIdleWaiters (which workers call) before it reads
    // idle_waiters_.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (done()) break;
    // The timeout is a safety net only; workers bump the epoch when they run out
    // of work, and ReleaseDue when it has scheduled what came due (released but
    // not yet scheduled, an operation keeps WaitIdle waiting: releasing_), which
    // is when the condition can become true.
    FutexWait(&idle_epoch_, epoch, std::chrono::milliseconds(50));
  }
  idle_waiters_.fetch_sub(1, std::memory_order_relaxed);  // a hint for workers
}

absl::Status EngineImpl::WaitIdle() {
  // On a worker (in a callable, or in a capture's destructor, which runs there
  // after the callable), it would wait for that worker's own run to end.
  if (InCallableOf(this) || OnWorkerOf(this)) {
    return absl::FailedPreconditionError(
        "WaitIdle: called on a worker of this engine (inside a callable, or a capture's "
        "destructor), it would wait for itself; wait from outside the engine, or use "
        "Handle::Wait on the operations you need");
  }
  // What is due is runnable: released now, not at the timekeeper's next look (a
  // postponed Post armed on a lower bound of the time may be due already).
  (void)ReleaseDue();
  AwaitCondition([this] { return ActivityIdle(); });
  tokens_.SweepIdle();
  return absl::OkStatus();
}

// Shutdown closes the engine, then sweeps what would otherwise never end: the held
// registry (suspended operations, halted chains) in every mode, and the wheel
// (kDrainReady, kCancelPending; or later, by a stricter call: S4 above
// EscalateShutdown). Nothing may be added behind a sweep:
//   S1  Whatever suspends an operation, halts a chain or arms a timer (Suspend,
//       Postpone, a retry's re-arm, a series' next occurrence, a submit) does it
//       inside EnterSubmit/ExitSubmit on its stripe, after reading closed_ there
//       as false; read true, it does nothing (the series ends, the retry is
//       canceled, the chain's rest is canceled, the call is refused).
//   S2  Shutdown stores closed_, then waits until no stripe is inside (the
//       Dekker: each side writes, then reads the other's word), then sweeps. So
//       each such change either ended before the sweeps, which see it, or reads
//       closed_ as true.
//   S3  Resume is allowed during shutdown (it holds nothing new): the held sweep
//       cancels an operation only while it is still Suspended (a CAS from that
//       state), so a Resume that won keeps its operation, which then runs, or
//       (kDrainReady, kCancelPending) is canceled by the wheel's sweep, its timer
//       being armed under the timer lock before that sweep takes it.
absl::Status EngineImpl::Shutdown(ShutdownMode mode) {
  // As WaitIdle: on a worker, the wait for every operation to end would wait
  // for that worker's own run (a capture's destructor runs after the callable).
  if (InCallableOf(this) || OnWorkerOf(this)) {
    return absl::FailedPreconditionError(
        "Shutdown: called on a worker of this engine (inside a callable, or a capture's "
        "destructor); call it from outside the engine");
  }
  {
    MutexLock lock(&shutdown_mu_);
    if (shutdown_started_) {
      EscalateShutdown(mode);
    } else {
      StartShutdown(mode);
    }
  }
  // Wait until every accepted operation is terminal and no queue holds one;
  // a later or concurrent call waits with the first.
  AwaitCondition([this] { return Pending() == 0 && ActivityIdle(); });
  return absl::OkStatus();
}

namespace {
constexpr const char* kShutdownOutOfMemory =
    "Shutdown ran out of memory sweeping the engine's operations: out of memory";
}  // namespace

void EngineImpl::StartShutdown(ShutdownMode mode) {
  // Before closed_: whoever sees the engine closed (a refused Submit) and then
  // lets a worker go on also sees that nothing pending may start. Stored after
  // closed_, a worker released in between started what it popped (a CI run of
  // ShutdownTest.CancelPendingCancelsWhatHasNotStarted under TSan caught it).
  // seq_cst, as closed_ below, which it so happens-before; workers re-read it on
  // every pop. What is submitted before closed_ is canceled when popped: pending.
  if (mode == ShutdownMode::kCancelPending) cancel_all_.store(true, std::memory_order_seq_cst);
  // seq_cst: Dekker with Enqueue and every ShutdownScope (EnterSubmit: it raises
  // submitting, then reads closed_; S2). With asymmetric fences, the submitter's
  // side is a compiler barrier and ours the membarrier below.
  closed_.store(true, std::memory_order_seq_cst);
  if (asymmetric_) HeavyFence();
  auto submitters_busy = [this] {
    for (std::size_t i = 0; i < kExternalStripes; ++i) {
      if (external_[i].submitting.load(std::memory_order_seq_cst) != 0) return true;
    }
    for (const auto& w : workers_) {
      if (w->stripe.submitting.load(std::memory_order_seq_cst) != 0) return true;
    }
    return false;
  };
  while (submitters_busy()) std::this_thread::yield();
  // From here the engine is closed and there is no way back: out of memory in
  // the sweeps below (their lists, the release of what is due), operations
  // taken out of the wheel or the registry would never end, and every later
  // wait would hang. The process ends with a message instead (here, and in
  // SweepWheelForShutdown).
  try {
    // Suspended operations and halted chains: canceled in every mode. A halted
    // chain's failed head is released, and everything behind it canceled.
    std::vector<Operation*> suspended, halted;
    {
      MutexLock hl(&held_mu_);
      const auto& s_set = held_[static_cast<int>(Held::kSuspended)];
      const auto& h_set = held_[static_cast<int>(Held::kHalted)];
      suspended.assign(s_set.begin(), s_set.end());
      halted.assign(h_set.begin(), h_set.end());
      for (Operation* op : suspended) AddRef(op);
      for (Operation* op : halted) AddRef(op);
    }
    for (Operation* op : suspended) {
      // S3: only while still Suspended; a Resume that won keeps its operation.
      TryCancelNotStarted(op, CancelReason::kByShutdown, /*only_suspended=*/true);
      DropRef(op);
    }
    for (Operation* op : halted) {
      bool released = false;
      tokens_.WithShardLocked(Facts(op).token_hash, [&] {
        // R2: still registered, so still its chain's halted head, and the chain
        // alive (a ResumeToken since our snapshot removed both under this lock;
        // no HaltChain is between its two steps: S1, S2).
        if (EraseHeld(op, Held::kHalted)) {
          ORDO_DCHECK(op->chain != nullptr && op->chain->halted_at_ == op,
                      "a registered halted head is its chain's halted head");
          op->chain->halted_at_ = nullptr;
          released = true;
        }
      });
      if (released) {
        CancelBehind(op, CancelReason::kByShutdown);
        Schedule(op);
        DropRef(op);  // the registry's reference
      }
      DropRef(op);  // the snapshot's
    }
  } catch (const std::bad_alloc&) {
    ORDO_CHECK(false, kShutdownOutOfMemory);
  }
  if (mode != ShutdownMode::kDrainAll) SweepWheelForShutdown(mode);
  shutdown_started_ = true;
  shutdown_mode_ = mode;
}

namespace {
// How much a shutdown mode cancels: each adds to the one before.
int Strictness(ShutdownMode m) {
  switch (m) {
    case ShutdownMode::kDrainAll: return 0;
    case ShutdownMode::kDrainReady: return 1;
    case ShutdownMode::kCancelPending: return 2;
  }
  ORDO_DCHECK(false, "a ShutdownMode out of range");
  return 2;  // as StartShutdown takes it: every mode but kDrainAll sweeps
}
}  // namespace

// S4: a later Shutdown with a stricter mode than the one begun adds what its
// mode cancels, under shutdown_mu_ as the first call's sweeps were: the wheel
// (nothing is armed since the close but by a Resume that won against the held
// sweep, S3, whose timer is in the wheel by now) and, for kCancelPending,
// what has not started (workers see cancel_all_ on their next pop; what they
// started before runs, as the first mode let it).
void EngineImpl::EscalateShutdown(ShutdownMode mode) {
  if (Strictness(mode) <= Strictness(shutdown_mode_)) return;
  // seq_cst, as in StartShutdown.
  if (mode == ShutdownMode::kCancelPending) cancel_all_.store(true, std::memory_order_seq_cst);
  if (shutdown_mode_ == ShutdownMode::kDrainAll) SweepWheelForShutdown(mode);
  shutdown_mode_ = mode;
}

void EngineImpl::SweepWheelForShutdown(ShutdownMode mode) {
  try {
    SweepWheelForShutdownOrThrow(mode);
  } catch (const std::bad_alloc&) {
    ORDO_CHECK(false, kShutdownOutOfMemory);
  }
}

void EngineImpl::SweepWheelForShutdownOrThrow(ShutdownMode mode) {
  // kDrainReady runs what is runnable, and what is due is: released first, as
  // in WaitIdle; what stays in the wheel is canceled below.
  if (mode == ShutdownMode::kDrainReady) (void)ReleaseDue();
  // Postponed operations: canceled (kDrainReady, kCancelPending).
  std::vector<TimerNode*> all;
  {
    TimerLock tl(this);  // drains the inbox first (I2)
    // To the end of time, which a saturated retry's due time is (worker.cc).
    wheel_->Advance(INT64_MAX, &all);
    // I3 (timers.cc). Relaxed: a count.
    timers_armed_.fetch_sub(static_cast<std::int64_t>(all.size()), std::memory_order_relaxed);
    for (TimerNode* n : all) {
      Operation* op = OperationOfTimer(n);
      Facts(op).in_wheel = false;
      AddRef(op);
    }
  }
  for (TimerNode* n : all) {
    Operation* op = OperationOfTimer(n);
    TryCancelNotStarted(op, CancelReason::kByShutdown);
    TestPoint(TestPointId::kShutdownSweepCanceled, op);
    DropRef(op);
  }
}

Stats EngineImpl::stats() const {
  Stats s;
  // Every stripe's terminal counts first, then every stripe's submitted, so
  // that no operation is seen ended and not submitted (succeeded + failed +
  // canceled <= submitted in every snapshot): an operation is counted
  // submitted before it is published (Enqueue, EnqueuePlain, EnqueueBatch,
  // SpawnNextOccurrence), its end is counted with release (OnTerminal), and
  // these acquire loads then make its submitted count visible to the loads
  // below. (Read stripe by stripe, submitted first, a snapshot could see an
  // operation a worker posted end on another worker and not its submission.)
  auto add_ended = [&s](const Stripe& st) {
    s.succeeded += st.succeeded.load(std::memory_order_acquire);
    s.failed += st.failed.load(std::memory_order_acquire);
    s.canceled += st.canceled.load(std::memory_order_acquire);
  };
  auto add_rest = [&s](const Stripe& st) {
    // Relaxed: a snapshot of statistics (submitted: see above).
    s.submitted += st.submitted.load(std::memory_order_relaxed);
    s.rejected += st.rejected.load(std::memory_order_relaxed);
    s.started += st.started.load(std::memory_order_relaxed);
    s.retried += st.retried.load(std::memory_order_relaxed);
    s.steals += st.steals.load(std::memory_order_relaxed);
    s.parks += st.parks.load(std::memory_order_relaxed);
  };
  for (const auto& w : workers_) add_ended(w->stripe);
  for (std::size_t i = 0; i < kExternalStripes; ++i) add_ended(external_[i]);
  for (const auto& w : workers_) {
    add_rest(w->stripe);
    w->latency.queue_wait.AddTo(s.queue_wait);
    w->latency.run_time.AddTo(s.run_time);
    w->latency.lateness.AddTo(s.lateness);
  }
  for (std::size_t i = 0; i < kExternalStripes; ++i) add_rest(external_[i]);
  const std::uint64_t ended = s.succeeded + s.failed + s.canceled;
  s.pending = s.submitted > ended ? s.submitted - ended : 0;
  // Wheel and inbox, and for a moment a place reserved and not yet armed;
  // not the places Suspended operations keep (timers.cc I3). Relaxed: a
  // snapshot of counts.
  s.postponed = static_cast<std::uint64_t>(
      std::max<std::int64_t>(0, timers_armed_.load(std::memory_order_relaxed) -
                                    timers_kept_.load(std::memory_order_relaxed)));
  s.active_chains = tokens_.active_chains();
  s.workers = static_cast<int>(workers_.size());
  return s;
}

}  // namespace ordo::internal
