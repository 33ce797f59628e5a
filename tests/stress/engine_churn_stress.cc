// engine_churn_stress.cc (label "stress"): engines made and destroyed again and
// again while the outside threads that lease their admission stripes come and go.
//
// An outside thread that submits leases one of the engine's stripes and keeps
// the lease in a four-slot thread-local cache until it exits or evicts it; a
// lease goes back only while its engine lives, under the registry of live
// engines (worker.cc, L1-L4). Raced here:
//   - six engine slots (more than the cache holds: every submitter evicts), each
//     replaced by a fresh engine as soon as 512 operations were tried on it, by
//     three churners, so that destructions (each joining workers that hold
//     leases of their own) overlap each other, the other slots' submits, and
//     thread exits;
//   - long-lived submitters, whose caches hold leases of engines destroyed since,
//     and short-lived ones (a thread for a few bursts, then its exit gives its
//     leases back, to live engines and to ones being destroyed): Submit, Post,
//     Batch + PostBatch, independent and on a few tokens, some postponed on a
//     shared ManualClock (stepped by a thread while engines add and remove their
//     listeners) or on the SystemClock;
//   - crowds of 66 threads, more than an engine's 60 leasable stripes, that
//     submit to one slot at once (the rest count on the shared stripes), hold
//     their leases until all have one, then exit together;
//   - operations that post on to another slot's engine from their worker (an
//     outside thread there, whose leases go back as its own engine joins it),
//     and callables whose move into their node, inside Submit or Post, posts to
//     all five other engines: the submitter's cache evicts every lease but the
//     one that submit is inside, which it must keep (L4);
//   - a quarter of the engines shut down (each mode) halfway, while the
//     submits go on (the rest: Shutdown once no thread uses them, or ~Engine).
// An engine is destroyed only once no thread can still use it (each generation
// counts its users, Dekker-paired with the slot's pointer: a destruction during
// a submit would be a bug of this test), with leases of it still cached. Checked
// per generation once it is destroyed:
//   - every accepted operation's body ran at most once, and once unless its
//     shutdown mode could cancel it (kDrainAll: none; kDrainReady, the
//     destructor's: a postponed one; kCancelPending: any); a Handle's terminal
//     state agrees; a refused one never ran;
//   - every accepted operation's callable was destroyed exactly once; no body
//     ran after Shutdown returned, nothing ran or was destroyed after ~Engine;
//   - after an explicit Shutdown, stats: submitted == accepted, rejected ==
//     refused, pending 0, succeeded == bodies run, canceled the rest, failed 0;
//   - no refusal unless a Shutdown raced the submit;
//   - per token, no two bodies at once, and each lane's in its submission order.
// ASan (lifetimes are the point) sees a read of a destroyed engine's stripe.
// A stripe written by two threads at once (a lease evicted from under its
// submit) loses counts: stats disagree, or Shutdown waits for ever on its
// `submitting`, and the watchdog says which churner is stuck where.
// Size: ORDO_STRESS_SCALE multiplies the churners' rounds (default 1: about 600
// engines, 300,000 operations and tens of thousands of threads, a second or two
// here).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <latch>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ordo/engine.h"
#include "stress/stress_support.h"

namespace ordo {
namespace {

using namespace std::chrono_literals;
using namespace stress;  // stress_support.h

constexpr int kEngineSlots = 6;  // more than a thread's lease cache (4) holds
constexpr int kChurners = 3;     // slot s is churner s % kChurners's
constexpr int kTokens = 3;
constexpr int kShortLanes = 4;   // short-lived threads alive at once
constexpr int kCrowd = 66;       // more outside threads at once than an engine's 60 stripes
constexpr long kOpsPerGen = 512;

struct ChurnWorld;

// One operation tried on a generation. `runs` and `freed` are relaxed counts,
// read once the engine's destructor has joined its workers.
struct ChurnOp {
  std::atomic<int> runs{0};
  std::atomic<int> freed{0};  // armed ChurnBody destructions
  // Plain: written by the thread that submitted it before it leaves the
  // generation (Leave's release), read by the churner after its wait for the
  // users (acquire), or after the engine's destructor (which joined the workers).
  bool accepted = false;
  bool postponed = false;
  Handle handle;  // a Submit's
};

enum class GenEnd : std::uint8_t {
  kDestructor,      // ~Engine alone (kDrainReady)
  kShutdownAfter,   // Shutdown(mode) once no thread uses it, then ~Engine
  kShutdownRacing,  // Shutdown(mode) while threads still submit, then ~Engine
};

// One engine of a slot, from its construction until its checks. Never freed
// before the test ends: a thread may read `users` of a generation retired since.
struct Gen {
  Gen(ChurnWorld* w, int s, long n, int lanes) : world(w), slot(s), number(n), tokens(kTokens) {
    for (auto& t : tokens) t.last_seq.assign(lanes, -1);
  }
  ChurnWorld* world;
  int slot;
  long number;  // of the slot's generations, from 0
  bool manual = false;
  int workers = 1;
  GenEnd end = GenEnd::kDestructor;
  ShutdownMode mode = ShutdownMode::kDrainReady;  // the destructor's, for kDestructor
  std::atomic<int> users{0};
  std::atomic<long> next_op{0};  // records taken (a count; published by Leave)
  std::unique_ptr<ChurnOp[]> ops{new ChurnOp[kOpsPerGen]};
  std::vector<TokenState> tokens;
  // Counts, all relaxed: read by the churner once the users have left and the
  // engine is destroyed (Leave's release and the workers' join publish them).
  std::atomic<long> refused{0};       // submits refused (a PostBatch counts once)
  std::atomic<long> rejected_ops{0};  // operations in them (stats' rejected)
  std::atomic<long> overlaps{0};
  std::atomic<long> reorders{0};
  std::atomic<long> late_runs{0};   // bodies that began after Shutdown or ~Engine returned
  std::atomic<long> late_frees{0};  // callables destroyed after ~Engine returned
  // Witnesses for the two checks above, relaxed: a body that saw them set ran
  // late; one that ran late and missed them is left to ASan (a real late run
  // touches the freed engine) and to the Handle and stats checks.
  std::atomic<bool> shut{false};
  std::atomic<bool> gone{false};
  std::unique_ptr<Engine> engine;
};

struct Slot {
  // The slot's current generation (null while none: at the very start and end).
  // Stored by its churner only, seq_cst: see Enter.
  std::atomic<Gen*> current{nullptr};
};

struct ChurnWorld {
  ManualClock clock;
  Slot slots[kEngineSlots];
  std::atomic<bool> stop{false};  // relaxed: a signal; the joins publish the rest
  std::atomic<long> gens_done{0};  // relaxed: progress, for the watchdog
  std::atomic<long> problems{0};   // relaxed: failures, also reported as they are found
  // What each churner is doing, and to which generation: for the watchdog's
  // report only.
  std::atomic<const char*> doing[kChurners] = {};  // string literals: relaxed
  std::atomic<const Gen*> on[kChurners] = {};
};

void Doing(ChurnWorld& w, int churner, const char* what, const Gen* g) {
  // Release: the report (acquire) reads the generation's fields, which this
  // churner wrote as it made it.
  w.on[churner].store(g, std::memory_order_release);
  w.doing[churner].store(what, std::memory_order_relaxed);
}

// Becomes a user of the slot's current generation, or returns null if it has none.
// A Dekker pair with the churner's retirement (Churn): we raise `users`, then
// read `current` again; the churner stores `current`, then reads `users`; all
// seq_cst, so either we see the new pointer (and back off) or it sees us (and
// waits for our Leave). The loads also acquire the churner's store of the
// pointer, after which it made the generation (its engine, its records).
Gen* Enter(Slot& slot) {
  for (;;) {
    Gen* g = slot.current.load(std::memory_order_seq_cst);
    if (g == nullptr) return nullptr;
    g->users.fetch_add(1, std::memory_order_seq_cst);
    if (slot.current.load(std::memory_order_seq_cst) == g) return g;
    // Release: as Leave (nothing was done, but the pairing stays uniform).
    g->users.fetch_sub(1, std::memory_order_release);
  }
}

// Release: everything this user did with the generation (its records, its
// engine's calls) happens-before the churner's acquire load that sees the
// count reach zero, after which the churner checks and destroys.
void Leave(Gen* g) { g->users.fetch_sub(1, std::memory_order_release); }

void PostOn(ChurnWorld& w, int slot);

// Where an operation posts on to the other slots' engines.
enum class Nest : std::uint8_t {
  kNone,
  kOnRun,    // its body posts to one other engine, from the worker
  kOnPlace,  // its first move, into the node inside Submit or Post, posts to all
             // five others: the thread's lease cache (four) must evict all but
             // the lease that submit is inside, and keep that one (L4)
};

// The callable: 24 bytes, nothrow-movable, so it lives in the node. Armed while
// it is the live copy: its destructor then counts the one destruction a callable
// accepted (or batched and discarded) must have.
class ChurnBody {
 public:
  ChurnBody(Gen* g, long index, int token, int lane, long seq, Nest nest)
      : g_(g), seq_(seq), index_(static_cast<std::int32_t>(index)),
        token_(static_cast<std::int8_t>(token)), lane_(static_cast<std::int8_t>(lane)),
        nest_(nest) {}
  ChurnBody(ChurnBody&& o) noexcept
      : g_(o.g_), seq_(o.seq_), index_(o.index_), token_(o.token_), lane_(o.lane_),
        nest_(o.nest_ == Nest::kOnPlace ? Nest::kNone : o.nest_),
        armed_(std::exchange(o.armed_, false)) {
    if (o.nest_ != Nest::kOnPlace) return;
    o.nest_ = Nest::kNone;  // once: later moves (none here) post nothing
    for (int k = 1; k < kEngineSlots; ++k) PostOn(*g_->world, (g_->slot + k) % kEngineSlots);
  }
  ChurnBody& operator=(ChurnBody&&) = delete;
  ~ChurnBody() {
    if (!armed_) return;
    if (g_->gone.load(std::memory_order_relaxed)) {
      g_->late_frees.fetch_add(1, std::memory_order_relaxed);
    }
    g_->ops[index_].freed.fetch_add(1, std::memory_order_relaxed);
  }
  // A refused Submit or Post leaves the callable with its caller: not the engine's.
  void Disarm() { armed_ = false; }

  void operator()() const {
    if (g_->shut.load(std::memory_order_relaxed) || g_->gone.load(std::memory_order_relaxed)) {
      g_->late_runs.fetch_add(1, std::memory_order_relaxed);
    }
    g_->ops[index_].runs.fetch_add(1, std::memory_order_relaxed);
    if (token_ >= 0) {
      TokenState& t = g_->tokens[token_];
      if (!t.guard.Enter()) g_->overlaps.fetch_add(1, std::memory_order_relaxed);
      if (lane_ >= 0) {
        // Plain: the chain serialises the token's bodies (TSan sees it if not).
        if (t.last_seq[lane_] >= seq_) g_->reorders.fetch_add(1, std::memory_order_relaxed);
        t.last_seq[lane_] = seq_;
      }
      t.guard.Exit();
    }
    // On to another slot's engine, from this worker: an outside thread there.
    if (nest_ == Nest::kOnRun) {
      PostOn(*g_->world, (g_->slot + 1 + index_ % (kEngineSlots - 1)) % kEngineSlots);
    }
  }

 private:
  Gen* g_;
  std::int64_t seq_;  // the lane's sequence number (tokened operations)
  std::int32_t index_;
  std::int8_t token_;  // -1: independent
  std::int8_t lane_;   // -1: not checked for order (posted from a worker)
  Nest nest_;
  bool armed_ = true;
};
static_assert(sizeof(ChurnBody) <= kInlineCallableBytes);

Token TokenOf(int t) {
  // A string key and integer keys: both kinds of chain come and go.
  if (t == 0) return Token("churn-0");
  return Token(1000 + t);
}

long TakeRecord(Gen& g) {
  // Relaxed: a unique index; its record is published by Leave.
  const long i = g.next_op.fetch_add(1, std::memory_order_relaxed);
  return i < kOpsPerGen ? i : -1;
}

// A refusal: allowed only while a Shutdown races the submits, and then only
// FailedPrecondition; anything else is reported at once.
void Refused(Gen& g, const absl::Status& s, long ops, const char* what) {
  g.refused.fetch_add(1, std::memory_order_relaxed);
  g.rejected_ops.fetch_add(ops, std::memory_order_relaxed);
  if (s.code() != absl::StatusCode::kFailedPrecondition || g.end != GenEnd::kShutdownRacing) {
    if (g.world->problems.fetch_add(1, std::memory_order_relaxed) < 10) {
      ADD_FAILURE() << what << " refused on slot " << g.slot << " generation " << g.number
                    << " with no Shutdown racing it: " << s;
    }
  }
}

void PostOn(ChurnWorld& w, int slot) {
  Gen* g = Enter(w.slots[slot]);
  if (g == nullptr) return;
  if (const long i = TakeRecord(*g); i >= 0) {
    ChurnBody body(g, i, -1, -1, 0, Nest::kNone);
    if (absl::Status s = g->engine->Post(std::move(body)); s.ok()) {
      g->ops[i].accepted = true;
    } else {
      body.Disarm();
      Refused(*g, s, 1, "a nested Post");
    }
  }
  Leave(g);
}

// One operation (or one batch) on g, of a random kind.
void SubmitSome(Gen& g, std::mt19937& rng, int lane, long& seq) {
  Engine& e = *g.engine;
  const unsigned kind = rng() % 16;
  auto token_for = [&](unsigned one_in) { return rng() % one_in == 0 ? -1 : int(rng() % kTokens); };
  auto until = [&] { return e.clock().Now() + std::chrono::microseconds(rng() % 2000); };
  // `placing`: the callable moves into its node inside the submit (not a
  // batch's Add, which moves it before PostBatch).
  auto body_for = [&](long i, int token, bool placing) {
    const unsigned r = rng() % 16;
    const Nest nest = r < 2 ? Nest::kOnRun : r == 2 && placing ? Nest::kOnPlace : Nest::kNone;
    return ChurnBody(&g, i, token, lane, token >= 0 ? seq++ : 0, nest);
  };
  if (kind < 12) {
    const long i = TakeRecord(g);
    if (i < 0) return;
    ChurnOp& rec = g.ops[i];
    const int token = kind < 4 ? -1 : token_for(3);
    const bool postponed = kind == 6 || kind == 7 || kind >= 10;
    ChurnBody body = body_for(i, token, /*placing=*/true);
    SubmitOptions o;
    if (token >= 0) o.token = TokenOf(token);
    if (postponed) o.postpone_until = until();
    absl::Status s;
    if (kind < 8) {
      s = kind < 4 ? e.Post(std::move(body)) : e.Post(std::move(body), std::move(o));
    } else {
      absl::StatusOr<Handle> h = e.Submit(std::move(body), std::move(o));
      s = h.status();
      if (h.ok()) rec.handle = *std::move(h);
    }
    if (s.ok()) {
      rec.accepted = true;
      rec.postponed = postponed;
    } else {
      body.Disarm();
      Refused(g, s, 1, kind < 8 ? "Post" : "Submit");
    }
    return;
  }
  // A batch: independent, tokened and postponed items, posted at once.
  Batch batch(e);
  std::vector<std::pair<long, bool>> items;  // record, postponed
  const int n = 1 + static_cast<int>(rng() % 8);
  for (int k = 0; k < n; ++k) {
    const long i = TakeRecord(g);
    if (i < 0) break;
    const int token = token_for(2);
    const bool postponed = rng() % 4 == 0;
    ChurnBody body = body_for(i, token, /*placing=*/false);
    absl::Status s;
    if (postponed && token >= 0) {
      s = batch.AddPostponed(std::move(body), until(), TokenOf(token));
    } else if (postponed) {
      s = batch.AddPostponed(std::move(body), until());
    } else if (token >= 0) {
      s = batch.Add(std::move(body), TokenOf(token));
    } else {
      s = batch.Add(std::move(body));
    }
    if (!s.ok()) {
      body.Disarm();
      if (g.world->problems.fetch_add(1, std::memory_order_relaxed) < 10) {
        ADD_FAILURE() << "Batch::Add refused: " << s;
      }
      continue;
    }
    items.emplace_back(i, postponed);
  }
  const std::size_t added = batch.size();
  if (absl::Status s = e.PostBatch(batch); s.ok()) {
    for (auto [i, postponed] : items) {
      g.ops[i].accepted = true;
      g.ops[i].postponed = postponed;
    }
  } else if (added > 0) {
    Refused(g, s, static_cast<long>(added), "PostBatch");
    batch.Clear();  // destroys the items' callables (counted freed, not accepted)
  }
}

// A thread's turn at one slot: a few submits to whatever engine it holds now.
void Burst(ChurnWorld& w, std::mt19937& rng, int lane, long& seq) {
  Gen* g = Enter(w.slots[rng() % kEngineSlots]);
  if (g == nullptr) return;
  const int n = 1 + static_cast<int>(rng() % 6);
  for (int k = 0; k < n; ++k) SubmitSome(*g, rng, lane, seq);
  Leave(g);
}

std::unique_ptr<Gen> NewGen(ChurnWorld& w, int slot, long number, int lanes, std::mt19937& rng) {
  auto g = std::make_unique<Gen>(&w, slot, number, lanes);
  g->manual = rng() % 2 == 0;
  g->workers = 1 + static_cast<int>(rng() % stress::Workers());  // 1 or 2 here
  const unsigned end = rng() % 8;
  g->end = end < 2   ? GenEnd::kDestructor
           : end < 6 ? GenEnd::kShutdownAfter
                     : GenEnd::kShutdownRacing;
  if (g->end != GenEnd::kDestructor) g->mode = static_cast<ShutdownMode>(rng() % 3);
  g->engine = std::make_unique<Engine>(
      Options{.workers = g->workers, .clock = g->manual ? &w.clock : nullptr});
  return g;
}

const char* EndName(const Gen& g) {
  if (g.end == GenEnd::kDestructor) return "~Engine alone";
  static constexpr const char* kModes[] = {"kDrainAll", "kDrainReady", "kCancelPending"};
  static constexpr const char* kRacing[] = {"racing kDrainAll", "racing kDrainReady",
                                            "racing kCancelPending"};
  return (g.end == GenEnd::kShutdownRacing ? kRacing : kModes)[static_cast<int>(g.mode)];
}

// Everything about one generation, once it is destroyed (the engine's
// destructor joined its workers; every user left before that).
void CheckGen(Gen& g, const Stats* st) {
  ChurnWorld& w = *g.world;
  const std::string where = "slot " + std::to_string(g.slot) + " generation " +
                            std::to_string(g.number) + " (" + (g.manual ? "manual" : "system") +
                            " clock, " + std::to_string(g.workers) + " workers, " + EndName(g) +
                            ")";
  auto fail = [&](const std::string& what) {
    if (w.problems.fetch_add(1, std::memory_order_relaxed) < 10) {
      ADD_FAILURE() << where << ": " << what;
    }
  };
  const long taken = std::min(g.next_op.load(std::memory_order_relaxed), kOpsPerGen);
  long accepted = 0, runs = 0, bad = 0;
  for (long i = 0; i < taken; ++i) {
    ChurnOp& r = g.ops[i];
    const int n = r.runs.load(std::memory_order_relaxed);
    const int freed = r.freed.load(std::memory_order_relaxed);
    bool ok;
    std::string state = "-";
    if (!r.accepted) {
      ok = n == 0 && freed <= 1;  // a batch's discarded item was freed once
    } else {
      ++accepted;
      runs += n;
      const bool must_run = MustRun(g.mode, r.postponed);
      ok = freed == 1 && n <= 1 && (n == 1 || !must_run);
      if (r.handle.valid()) {
        const State s = r.handle.state();
        state = std::string(StateName(s));
        ok = ok && (s == State::kSucceeded) == (n == 1) && (s == State::kCanceled) == (n == 0);
      }
    }
    if (!ok && bad++ < 3) {
      fail("record " + std::to_string(i) + ": accepted " + std::to_string(r.accepted) +
           ", postponed " + std::to_string(r.postponed) + ", body ran " + std::to_string(n) +
           " times, callable destroyed " + std::to_string(freed) + " times, handle state " +
           state);
    }
  }
  if (bad > 0) fail(std::to_string(bad) + " records wrong");
  if (const long v = g.late_runs.load(std::memory_order_relaxed)) {
    fail(std::to_string(v) + " bodies began after Shutdown or ~Engine returned");
  }
  if (const long v = g.late_frees.load(std::memory_order_relaxed)) {
    fail(std::to_string(v) + " callables destroyed after ~Engine returned");
  }
  if (const long v = g.overlaps.load(std::memory_order_relaxed)) {
    fail(std::to_string(v) + " overlaps");
  }
  if (const long v = g.reorders.load(std::memory_order_relaxed)) {
    fail(std::to_string(v) + " reorders");
  }
  if (st != nullptr) {
    const auto u = [](long v) { return static_cast<std::uint64_t>(v); };
    if (st->submitted != u(accepted) || st->pending != 0 || st->failed != 0 ||
        st->succeeded != u(runs) || st->canceled != u(accepted - runs) ||
        st->rejected != u(g.rejected_ops.load(std::memory_order_relaxed)) ||
        st->succeeded + st->failed + st->canceled != st->submitted) {
      fail("stats after Shutdown: submitted " + std::to_string(st->submitted) + " (accepted " +
           std::to_string(accepted) + "), rejected " + std::to_string(st->rejected) +
           " (refused " + std::to_string(g.rejected_ops.load(std::memory_order_relaxed)) +
           "), pending " + std::to_string(st->pending) + ", succeeded " +
           std::to_string(st->succeeded) + " (bodies run " + std::to_string(runs) +
           "), canceled " + std::to_string(st->canceled) + ", failed " +
           std::to_string(st->failed));
    }
  }
  // Handles outlive their engine (handle.h): dropped now, after the checks.
  for (long i = 0; i < taken; ++i) g.ops[i].handle = Handle();
}

// Ends a generation: waits out its users, shuts it down as it was drawn to,
// destroys it, checks it. A racing Shutdown was called by Churn, before.
void Finish(Gen& g, int churner) {
  ChurnWorld& w = *g.world;
  Doing(w, churner, "waiting for the users of", &g);
  // Acquire (seq_cst, the Dekker with Enter): sees every Leave's release, so
  // what the users did happens-before what follows.
  while (g.users.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  Stats st;
  const bool have_stats = g.end != GenEnd::kDestructor;
  if (g.end == GenEnd::kShutdownAfter) {
    Doing(w, churner, "in Shutdown of", &g);
    if (absl::Status s = g.engine->Shutdown(g.mode); !s.ok()) ADD_FAILURE() << s;
    g.shut.store(true, std::memory_order_relaxed);  // a witness (Gen::shut)
  }
  if (have_stats) st = g.engine->stats();
  Doing(w, churner, "in ~Engine of", &g);
  g.engine.reset();  // with leases of it still cached by threads alive or exiting
  g.gone.store(true, std::memory_order_relaxed);  // a witness (Gen::gone)
  Doing(w, churner, "checking", &g);
  CheckGen(g, have_stats ? &st : nullptr);
  g.world->gens_done.fetch_add(1, std::memory_order_relaxed);
}

void Churn(ChurnWorld& w, int churner, int rounds, int lanes,
           std::vector<std::unique_ptr<Gen>>& gens) {
  std::mt19937 rng(4242 + churner);
  std::vector<int> mine;
  for (int s = churner; s < kEngineSlots; s += kChurners) mine.push_back(s);
  auto shut_racing = [&w, churner](Gen& g) {
    Doing(w, churner, "in a racing Shutdown of", &g);
    if (absl::Status st = g.engine->Shutdown(g.mode); !st.ok()) ADD_FAILURE() << st;
    g.shut.store(true, std::memory_order_relaxed);  // a witness (Gen::shut)
  };
  auto retire = [&](int s, Gen* next) {
    // Relaxed: only this churner stores the slot's pointer.
    Gen* old = w.slots[s].current.load(std::memory_order_relaxed);
    if (old->end == GenEnd::kShutdownRacing && !old->shut.load(std::memory_order_relaxed)) {
      shut_racing(*old);
    }
    // seq_cst: the Dekker with Enter (it raises users, then reads current).
    w.slots[s].current.store(next, std::memory_order_seq_cst);
    Finish(*old, churner);
  };
  // A generation goes once its records are all taken, so that it takes
  // submits (and its submitters leases) until just before its end; one drawn
  // to race its Shutdown has it at half of them, and its submitters find it
  // closed for the other half.
  for (int r = 0, turn = 0; r < rounds; ++turn) {
    const int s = mine[turn % mine.size()];
    Gen* g = w.slots[s].current.load(std::memory_order_relaxed);  // ours alone to store
    // Relaxed: a count, compared to decide when; Finish orders the rest.
    const long taken = g->next_op.load(std::memory_order_relaxed);
    if (g->end == GenEnd::kShutdownRacing && taken >= kOpsPerGen / 2 &&
        !g->shut.load(std::memory_order_relaxed)) {
      shut_racing(*g);
    }
    if (taken < kOpsPerGen) {
      Doing(w, churner, "waiting for records to be taken of", g);
      std::this_thread::yield();
      continue;
    }
    Doing(w, churner, "making the successor of", g);
    gens.push_back(NewGen(w, s, g->number + 1, lanes, rng));  // made before the old one goes
    retire(s, gens.back().get());
    ++r;
  }
  for (int s : mine) retire(s, nullptr);
  Doing(w, churner, "done", nullptr);
}

TEST(StressTest, EnginesChurnedUnderLeasingThreadsThatComeAndGoLoseNothing) {
  const int long_lived = std::min(Producers(3), 100);  // a lane fits the body's int8
  const int lanes = long_lived + kShortLanes;
  const int rounds = 200 * Scale();  // per churner
  ChurnWorld w;
  std::vector<std::unique_ptr<Gen>> gens[kChurners];
  {
    std::mt19937 rng(77);
    for (int s = 0; s < kEngineSlots; ++s) {
      auto& owner = gens[s % kChurners];
      owner.push_back(NewGen(w, s, 0, lanes, rng));
      // Relaxed: the threads start later (their start publishes it).
      w.slots[s].current.store(owner.back().get(), std::memory_order_relaxed);
    }
  }
  std::atomic<bool> clock_stop{false};  // relaxed: a signal
  // The report's counts are relaxed: a picture of where things stand.
  Watchdog dog(std::chrono::seconds(60 * Scale()), [&] {
    std::fprintf(stderr, "%ld generations done\n", w.gens_done.load(std::memory_order_relaxed));
    for (int c = 0; c < kChurners; ++c) {
      const char* doing = w.doing[c].load(std::memory_order_relaxed);
      const Gen* g = w.on[c].load(std::memory_order_acquire);  // see Doing
      std::fprintf(stderr, "churner %d: %s", c, doing != nullptr ? doing : "starting");
      if (g != nullptr) {
        std::fprintf(stderr, " slot %d generation %ld (%s, %d users)", g->slot, g->number,
                     EndName(*g), g->users.load(std::memory_order_relaxed));
      }
      std::fprintf(stderr, "\n");
    }
    for (int s = 0; s < kEngineSlots; ++s) {
      Gen* g = w.slots[s].current.load(std::memory_order_acquire);  // as Enter's
      if (g == nullptr) continue;
      std::fprintf(stderr, "slot %d: generation %ld, %d users, %ld records, %s\n", s, g->number,
                   g->users.load(std::memory_order_relaxed),
                   g->next_op.load(std::memory_order_relaxed), EndName(*g));
    }
  });
  std::thread advancer([&] {
    while (!clock_stop.load(std::memory_order_relaxed)) {
      w.clock.Advance(200us);
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> threads;
  for (int p = 0; p < long_lived; ++p) {
    threads.emplace_back([&w, p] {
      std::mt19937 rng(100 + p);
      long seq = 0;
      while (!w.stop.load(std::memory_order_relaxed)) {
        Burst(w, rng, p, seq);
        std::this_thread::yield();
      }
    });
  }
  for (int lane = long_lived; lane < lanes; ++lane) {
    threads.emplace_back([&w, lane] {
      long seq = 0;  // the lane's: its threads run one after another (joined)
      for (unsigned k = 0; !w.stop.load(std::memory_order_relaxed); ++k) {
        std::thread t([&w, &seq, lane, k] {
          std::mt19937 rng(1000 * lane + k);
          const int bursts = 1 + static_cast<int>(rng() % 3);
          for (int b = 0; b < bursts; ++b) Burst(w, rng, lane, seq);
        });  // exits with leases cached: given back as it ends
        t.join();
      }
    });
  }
  threads.emplace_back([&w] {
    for (unsigned k = 0; !w.stop.load(std::memory_order_relaxed); ++k) {
      std::latch all_leased(kCrowd);
      std::vector<std::thread> crowd;
      for (int c = 0; c < kCrowd; ++c) {
        crowd.emplace_back([&w, &all_leased, k, c] {
          std::mt19937 rng(kCrowd * k + c);
          long seq = 0;  // not checked (lane -1): the crowd's threads are unordered
          if (Gen* g = Enter(w.slots[k % kEngineSlots])) {
            SubmitSome(*g, rng, -1, seq);
            Leave(g);
          }
          // Every thread of the crowd holds its lease (or its shared stripe) at
          // once, then they all exit, giving them back together.
          all_leased.arrive_and_wait();
        });
      }
      for (auto& t : crowd) t.join();
    }
  });
  std::vector<std::thread> churners;
  for (int c = 0; c < kChurners; ++c) {
    churners.emplace_back([&, c] { Churn(w, c, rounds, lanes, gens[c]); });
  }
  for (auto& t : churners) t.join();
  w.stop.store(true, std::memory_order_relaxed);
  for (auto& t : threads) t.join();
  clock_stop.store(true, std::memory_order_relaxed);
  advancer.join();
  // Relaxed below: every thread was joined.
  long total_gens = 0, accepted = 0, refused = 0;
  for (auto& v : gens) {
    for (auto& g : v) {
      ++total_gens;
      refused += g->refused.load(std::memory_order_relaxed);
      const long taken = std::min(g->next_op.load(std::memory_order_relaxed), kOpsPerGen);
      for (long i = 0; i < taken; ++i) accepted += g->ops[i].accepted;
    }
  }
  ::testing::Test::RecordProperty("generations", static_cast<int>(total_gens));
  ::testing::Test::RecordProperty("accepted", static_cast<int>(accepted));
  ::testing::Test::RecordProperty("refused", static_cast<int>(refused));
  EXPECT_EQ(w.gens_done.load(std::memory_order_relaxed), total_gens);
  EXPECT_EQ(w.problems.load(std::memory_order_relaxed), 0);
}

}  // namespace
}  // namespace ordo
