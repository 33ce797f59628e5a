// series_stress.cc (label "stress"): recurring series and retried operations on
// tokens, racing the token controls (CancelToken, SuspendToken + ResumeToken,
// TokenInfo, Cancel) on a ManualClock that a ticker thread moves. Time moves only
// by the manual clock; the threads wait for one another by counts and the clock's
// reading, never by a sleep. Every operation is counted in and out, per operation
// and against stats(): the checks are exact, or bounds the contract allows where
// it leaves a choice to the engine (said at each). Size: ORDO_STRESS_SCALE;
// width: ORDO_STRESS_WORKERS, ORDO_STRESS_PRODUCERS (stress_support.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ordo/engine.h"
#include "stress/stress_support.h"
#include "support/journal.h"

namespace ordo {
namespace {

using namespace std::chrono_literals;
using namespace stress;  // stress_support.h

// A watchdog's report: the engine's counts at `tick`, and each token with
// operations pending, with its head.
void ReportStuck(const Engine& engine, const char* what, long tick,
                 const std::vector<Token>& tokens) {
  const Stats now = engine.stats();
  std::fprintf(stderr, "%s stuck: tick %ld, submitted %llu, pending %llu, postponed %llu\n", what,
               tick, static_cast<unsigned long long>(now.submitted),
               static_cast<unsigned long long>(now.pending),
               static_cast<unsigned long long>(now.postponed));
  for (const Token& t : tokens) {
    auto info = engine.TokenInfo(t);
    if (!info.ok() || info->pending == 0) continue;
    std::fprintf(stderr, "  %s: %zu pending, head %llu %s\n", t.text().data(), info->pending,
                 static_cast<unsigned long long>(info->head_id),
                 info->head_state ? StateName(*info->head_state).data() : "(none)");
  }
}

// A control that cancels nothing: one time in three TokenInfo on `t`, else
// SuspendToken and then ResumeToken, adding up what each reported.
void InspectOrSuspendAndResume(Engine& engine, const Token& t, std::mt19937& rng,
                               std::size_t& suspended, std::size_t& resumed) {
  if (rng() % 3 == 0) {
    EXPECT_TRUE(engine.TokenInfo(t).ok());
    return;
  }
  auto s = engine.SuspendToken(t);
  auto r = engine.ResumeToken(t);
  EXPECT_TRUE(s.ok() && r.ok()) << s.status() << " " << r.status();
  if (s.ok()) suspended += *s;
  if (r.ok()) resumed += *r;
}

std::int64_t Ns(Clock::time_point t) { return t.time_since_epoch().count(); }
std::int64_t Ns(std::chrono::nanoseconds d) { return d.count(); }

// ---------------------------------------------------------------------------
// Series on tokens racing the token controls, then an end per SeriesEnd.
//
// Races: 2 producers Submit and Post recurring series (MINUTELY;COUNT=4 on even
// tokens, MINUTELY;INTERVAL=2;COUNT=3 on odd ones), mixed with plain tokened
// Submits, on 3 "target" and 3 "bystander" tokens; a controller loops CancelToken
// (one every other tick), SuspendToken + ResumeToken and TokenInfo on the
// targets only (1 to 64 controls a tick); a ticker advances the ManualClock by a
// quarter minute and then calls WaitIdle, paced by the producers (never more
// than a tick ahead of them), so Advance races the submits' arming, the controls
// race the occurrences it releases, and the series' next occurrences are made
// while the controls walk. Then the race stops, between two grid points
// (controller joined, every target resumed, WaitIdle: a quiescent engine, whose
// snapshot is exact), and the test ends per SeriesEnd: the clock driven until
// every series ran out, or a Shutdown in one of its modes with the series still
// live.
//
// Why bystander series run exactly COUNT times (the run-out end): a series that
// falls behind skips the occurrences it missed (COUNT counts them), so exactness
// needs every occurrence to run before its next grid point. Each ticker step is
// a quarter of an interval and waits (WaitIdle) for all that it made due; every
// series on a token starts on that token's grid (the grid point after the
// producer's clock read), so an occurrence is never queued behind a postponed one
// due later. The one way to fall behind is a submit that the clock overtook: a
// start reached before Submit (or Post) returned. Such a series is "late": its
// count is only bounded (at most COUNT), not exact.
//
// Checked, whatever the end:
//   - every operation terminal; no body ran twice (plain) or more than COUNT
//     times (series); none ran before its due time (occurrence r of a series
//     starts no sooner than start + r * interval), none after Shutdown returned;
//   - per token, no two bodies at once, and per producer its plain operations and
//     first occurrences in submission order;
//   - stats(): pending 0, postponed 0, failed 0, succeeded + canceled ==
//     submitted, succeeded == bodies that ran;
//   - each Submit'ed series, walked by next_occurrence: at most COUNT
//     occurrences, all Succeeded but the last, which may be Canceled (by
//     CancelToken, or by Shutdown), and its body ran once per Succeeded one;
//   - at the snapshot: the tokens' TokenInfo pending counts add up to
//     stats().pending, which holds the postponed occurrences (stats().postponed)
//     and what waits behind them: every plain operation not yet terminal, and
//     occurrences whose time has come on a token whose series fell behind;
//   - CancelToken's counts (engine.h: how many operations changed; a running
//     occurrence asked to stop is not counted, and neither is a next occurrence
//     that the occurrence's own runner cancels on seeing the request): at least
//     every canceled plain operation and first occurrence of a Submit'ed series,
//     at most every cancel before the snapshot, and short of it by no more than
//     the canceled later occurrences; every ResumeToken undid its SuspendToken
//     (short by at most those uncounted cancels, which may land on a suspended
//     next occurrence), and the final ResumeToken found nothing suspended;
//   - bystanders are never canceled but by Shutdown; an on-time bystander
//     series' every run started within the tick that made it due, and its run
//     count follows from its count at the snapshot (a live series has its one
//     pending occurrence, postponed): run-out, exactly COUNT; kDrainAll, one
//     more if it was live (that occurrence runs, no further one is made);
//     kDrainReady and kCancelPending, none more (it is canceled; a late one
//     under kDrainReady may have a due occurrence queued behind a postponed
//     one, which runs, so only on-time ones are counted exactly there);
//   - Shutdown's sums against the snapshot: kDrainAll runs every pending
//     operation; kDrainReady cancels exactly the postponed ones (the wheel's)
//     and runs the rest, which waited behind them; kCancelPending cancels them
//     all; no next occurrence is made during any of them. (kDrainAll's clock
//     moves only once a probe Post is refused: moved before Shutdown closed the
//     engine, an occurrence could run and make its next.)
enum class SeriesEnd { kRunOut, kDrainAll, kDrainReady, kCancelPending };

constexpr int kSeriesTargets = 3;
constexpr int kSeriesTokens = 6;  // targets, then bystanders
constexpr std::chrono::nanoseconds kSeriesStep = 15s;
// Producer ops per tick: a burst, then the producer waits for the clock.
constexpr int kBurst = 24;

struct SeriesRule {
  const char* text;
  std::chrono::nanoseconds interval;
  int count;
};
// One rule per token, so all series of a token share its grid.
SeriesRule RuleOf(int token) {
  return token % 2 == 0 ? SeriesRule{"FREQ=MINUTELY;COUNT=4", 60s, 4}
                        : SeriesRule{"FREQ=MINUTELY;INTERVAL=2;COUNT=3", 120s, 3};
}

struct SeriesOp {
  // Set by the producer before it submits (Submit happens-before the body).
  int token = 0;
  bool recurring = false;
  bool posted = false;  // a series made by Post (no Handle)
  std::int64_t start_ns = 0;
  std::int64_t interval_ns = 0;
  int count = 1;  // COUNT, 1 for a plain operation
  // Set by the producer once its Submit or Post returned (read once joined).
  bool accepted = false;
  Handle handle;         // plain operations, and the first occurrence of a Submit'ed series
  bool on_time = false;  // series: the clock had not reached its start when the call returned
  // Written only by the operation's own bodies, which its chain (and, for a
  // series, the order of its occurrences) runs one at a time; read after
  // WaitIdle or Shutdown. Plain, so TSan checks the engine's ordering.
  int runs = 0;
  int early = 0;     // runs that started before their grid point
  int off_grid = 0;  // runs that started a tick or more after it
  // The main thread's snapshot of the quiescent engine.
  int runs_at_snapshot = 0;
  bool pending_at_snapshot = false;  // plain: not terminal then
};

void RunSeriesTokenControlStress(SeriesEnd end, int producers, long bursts) {
  // The race ends at tick `bursts`, between the tokens' grid points (which
  // fall on ticks divisible by 4 and 8), so the plain operations submitted
  // since the last one wait behind the postponed occurrences at the snapshot.
  bursts = bursts / 8 * 8 + 6;
  const long per_producer = bursts * kBurst;
  const long total = producers * per_producer;
  Oracle oracle(kSeriesTokens, producers, /*ops=*/0);  // tokens, overlaps, reorders
  std::vector<SeriesOp> ops(static_cast<std::size_t>(total));
  std::vector<Token> tokens;
  for (int t = 0; t < kSeriesTokens; ++t) {
    tokens.emplace_back((t < kSeriesTargets ? "target-" : "bystander-") + std::to_string(t));
  }
  ManualClock clock;
  const std::int64_t base = Ns(clock.now());
  // Bodies that ran. Relaxed counting: read after Shutdown returned, which
  // happens-after every body that ran (each is ordered before its operation's
  // terminal state, which Shutdown waits for), and after the engine is gone.
  std::atomic<long> ran{0};
  std::size_t cancel_token_count = 0, suspended = 0, resumed = 0, final_resumed = 0;
  long controls = 0;
  Stats snap, fin;
  std::size_t token_info_pending = 0;
  long plain_pending = 0;
  long ran_at_return = 0;
  long probes = 0;  // kDrainAll: the drain ticker's Posts accepted before the close
  {
    Engine engine({.workers = Workers(), .clock = &clock});
    // Bursts each producer finished. Relaxed: pacing only, it publishes nothing
    // (the ops' fields are read once the producers are joined).
    std::unique_ptr<std::atomic<long>[]> bursts_done(new std::atomic<long>[producers]);
    for (int p = 0; p < producers; ++p) bursts_done[p].store(0, std::memory_order_relaxed);
    // Stop signals, relaxed: what the stopped threads did is published by join.
    std::atomic<bool> stop_controller{false}, stop_ticker{false};
    // The controller's iterations. Relaxed: pacing only, as bursts_done.
    std::atomic<long> control_count{0};
    auto tick_of_now = [&] { return (Ns(clock.now()) - base) / Ns(kSeriesStep); };
    std::thread ticker([&] {
      long controls_seen = -1;
      for (long n = 0; !stop_ticker.load(std::memory_order_relaxed); ++n) {
        // Never more than a tick ahead of a producer: to tick n + 1 once every
        // producer finished burst n - 1 (bursts_done >= n); and a control at
        // least between two ticks, however the threads are scheduled. The
        // race's last tick is `bursts`.
        bool behind = control_count.load(std::memory_order_relaxed) == controls_seen || n >= bursts;
        for (int p = 0; p < producers; ++p) {
          behind |= bursts_done[p].load(std::memory_order_relaxed) < n;
        }
        if (behind) {
          --n;
          std::this_thread::yield();
          continue;
        }
        controls_seen = control_count.load(std::memory_order_relaxed);
        clock.Advance(kSeriesStep);
        EXPECT_TRUE(engine.WaitIdle().ok());  // all it made due has run
      }
    });
    std::thread controller([&] {
      std::mt19937 rng(31);
      long last_cancel_tick = -2, this_tick = -1, in_this_tick = 0;
      do {  // at least one control, however soon the race ends
        const long tick = tick_of_now();
        if (tick != this_tick) {
          this_tick = tick;
          in_this_tick = 0;
        }
        // At most 64 controls per tick: a SuspendToken + ResumeToken loop left
        // free takes the CPU from the others.
        if (in_this_tick >= 64) {
          std::this_thread::yield();
          continue;
        }
        ++in_this_tick;
        const Token& t = tokens[rng() % kSeriesTargets];
        if (tick >= last_cancel_tick + 2) {
          // One CancelToken every other tick: series on the targets then live
          // for some occurrences, so the walk meets them running, postponed
          // and just made.
          auto n = engine.CancelToken(t);
          EXPECT_TRUE(n.ok()) << n.status();
          if (n.ok()) cancel_token_count += *n;
          last_cancel_tick = tick;
        } else {
          InspectOrSuspendAndResume(engine, t, rng, suspended, resumed);
        }
        ++controls;
        control_count.fetch_add(1, std::memory_order_relaxed);
      } while (!stop_controller.load(std::memory_order_relaxed));
    });
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
      threads.emplace_back([&, p] {
        // However it returns (a failed assertion too), the ticker goes on.
        // Relaxed, as every bursts_done access: a count the ticker polls.
        OnReturn done_on_return{
            [&done = bursts_done[p]] { done.store(1L << 40, std::memory_order_relaxed); }};
        std::mt19937 rng(500 + p);
        for (long i = 0; i < per_producer; ++i) {
          if (i % kBurst == 0) {
            bursts_done[p].store(i / kBurst, std::memory_order_relaxed);
            // Burst b starts at tick b: submissions spread over the race.
            while (tick_of_now() < i / kBurst) std::this_thread::yield();
          }
          SeriesOp& op = ops[static_cast<std::size_t>(p * per_producer + i)];
          op.token = static_cast<int>(rng() % kSeriesTokens);
          op.recurring = rng() % 2 == 0;
          op.posted = op.recurring && rng() % 2 == 0;
          TokenState* ts = &oracle.tokens[static_cast<std::size_t>(op.token)];
          auto body = [&oracle, &ran, &clock, &op, ts, p, i] {
            const std::int64_t now = Ns(clock.now());
            if (!ts->guard.Enter()) oracle.overlaps.fetch_add(1, std::memory_order_relaxed);
            const int r = op.runs++;
            if (op.recurring) {
              const std::int64_t due = op.start_ns + r * op.interval_ns;
              if (now < due) ++op.early;
              if (now >= due + Ns(kSeriesStep)) ++op.off_grid;
            }
            if (r == 0) {  // a plain operation, or a series' first occurrence
              if (ts->last_seq[p] >= i) oracle.reorders.fetch_add(1, std::memory_order_relaxed);
              ts->last_seq[p] = i;
            }
            ran.fetch_add(1, std::memory_order_relaxed);
            ts->guard.Exit();
          };
          SubmitOptions o{.token = tokens[static_cast<std::size_t>(op.token)]};
          if (op.recurring) {
            const SeriesRule rule = RuleOf(op.token);
            // The token's grid point after this reading of the clock.
            const std::int64_t now = Ns(clock.now());
            const std::int64_t interval = Ns(rule.interval);
            op.start_ns = base + ((now - base) / interval + 1) * interval;
            op.interval_ns = interval;
            op.count = rule.count;
            o.postpone_until = Clock::time_point(Clock::duration(op.start_ns));
            o.recurrence = rule.text;
          }
          if (op.posted) {
            const absl::Status s = engine.Post(body, std::move(o));
            ASSERT_TRUE(s.ok()) << s;
          } else {
            auto h = engine.Submit(body, std::move(o));
            ASSERT_TRUE(h.ok()) << h.status();
            op.handle = *std::move(h);
          }
          op.accepted = true;
          op.on_time = op.recurring && Ns(clock.now()) < op.start_ns;
        }
      });
    }
    Watchdog watchdog(120s * Scale(), [&] {
      const std::string what = "series stress (end " + std::to_string(static_cast<int>(end)) + ")";
      ReportStuck(engine, what.c_str(), tick_of_now(), tokens);
    });
    for (auto& t : threads) t.join();
    // The last tick (the producers are done: nothing holds the ticker back).
    while (tick_of_now() < bursts) std::this_thread::yield();
    stop_ticker.store(true, std::memory_order_relaxed);
    ticker.join();
    stop_controller.store(true, std::memory_order_relaxed);
    controller.join();
    // Quiescent: nothing suspended, nothing runnable.
    for (const Token& t : tokens) {
      auto r = engine.ResumeToken(t);
      EXPECT_TRUE(r.ok()) << r.status();  // not ASSERT: threads may still need joining
      if (r.ok()) final_resumed += *r;
    }
    ASSERT_TRUE(engine.WaitIdle().ok());
    snap = engine.stats();
    for (const Token& t : tokens) {
      auto info = engine.TokenInfo(t);
      ASSERT_TRUE(info.ok()) << info.status();
      token_info_pending += info->pending;
    }
    for (SeriesOp& op : ops) {
      op.runs_at_snapshot = op.runs;  // after WaitIdle: every body that ran is visible
      if (op.recurring || !op.handle.valid()) continue;
      op.pending_at_snapshot = !IsTerminal(op.handle.state());
      plain_pending += op.pending_at_snapshot;
    }
    absl::Status s;
    switch (end) {
      case SeriesEnd::kRunOut:
        // Tick on until every series has run out (and what waited behind it).
        while (engine.stats().pending != 0) {
          clock.Advance(kSeriesStep);
          ASSERT_TRUE(engine.WaitIdle().ok());
        }
        s = engine.Shutdown(ShutdownMode::kDrainAll);
        break;
      case SeriesEnd::kDrainAll: {
        // Shutdown waits for the postponed occurrences: the clock moves on, a
        // step at a time and each step waited for, as in the race, once
        // Shutdown has closed the engine (a probe Post refused: moved sooner,
        // an occurrence would run and make its next before the close).
        std::atomic<bool> returned{false};  // relaxed: a signal; join publishes
        std::thread drain_ticker([&] {
          while (engine.Post([] {}).ok()) {
            ++probes;  // each runs (kDrainAll): one more submitted and succeeded
            std::this_thread::yield();
          }
          while (!returned.load(std::memory_order_relaxed)) {
            clock.Advance(kSeriesStep);
            EXPECT_TRUE(engine.WaitIdle().ok());
          }
        });
        s = engine.Shutdown(ShutdownMode::kDrainAll);
        ran_at_return = ran.load(std::memory_order_relaxed);
        returned.store(true, std::memory_order_relaxed);
        drain_ticker.join();
        break;
      }
      // The clock stands still: every pending occurrence is in the future.
      case SeriesEnd::kDrainReady:
        s = engine.Shutdown(ShutdownMode::kDrainReady);
        break;
      case SeriesEnd::kCancelPending:
        s = engine.Shutdown(ShutdownMode::kCancelPending);
        break;
    }
    ASSERT_TRUE(s.ok()) << s;
    if (end != SeriesEnd::kDrainAll) ran_at_return = ran.load(std::memory_order_relaxed);
    fin = engine.stats();
    for (const Token& t : tokens) {
      auto info = engine.TokenInfo(t);
      ASSERT_TRUE(info.ok()) << info.status();
      EXPECT_EQ(info->pending, 0u) << t.text();
    }
  }
  const long ran_after = ran.load(std::memory_order_relaxed);  // the workers are joined

  // Per operation.
  long bad = 0, plain = 0, series = 0, late = 0, exact_bystanders = 0, runs_total = 0;
  // For CancelToken's bounds, at the snapshot (see the comment at the top).
  long counted_canceled = 0;   // plain ops, and Submit'ed first occurrences, canceled
  long later_canceled = 0;     // Submit'ed series' later occurrences canceled
  long posted_unfinished = 0;  // Posted series short of COUNT (each holds one cancel at most)
  const bool shutdown_cancels = end == SeriesEnd::kDrainReady || end == SeriesEnd::kCancelPending;
  for (std::size_t k = 0; k < ops.size(); ++k) {
    const SeriesOp& op = ops[k];
    if (!op.accepted) continue;
    const bool bystander = op.token >= kSeriesTargets;
    runs_total += op.runs;
    std::string why;
    if (!op.recurring) {
      ++plain;
      const State st = op.handle.state();
      const std::string err = op.handle.error();
      if (!IsTerminal(st)) {
        why = "not terminal";
      } else if (op.runs > 1) {
        why = "ran twice";
      } else if ((st == State::kSucceeded) != (op.runs == 1)) {
        why = "state and runs disagree";
      } else if (st != State::kSucceeded && st != State::kCanceled) {
        why = "neither Succeeded nor Canceled";
      } else if (st == State::kCanceled) {
        // Before the snapshot by CancelToken only; after it, by Shutdown only.
        const std::string want =
            op.pending_at_snapshot ? "canceled by Shutdown" : "canceled by CancelToken";
        if (err != want) why = "canceled as '" + err + "', expected '" + want + "'";
        if (bystander && !op.pending_at_snapshot) why = "a bystander canceled by CancelToken";
        if (op.pending_at_snapshot && end != SeriesEnd::kCancelPending) {
          why = "a plain operation pending at the snapshot canceled by this Shutdown";
        }
        if (!op.pending_at_snapshot) ++counted_canceled;
      } else if (op.pending_at_snapshot && end == SeriesEnd::kCancelPending) {
        why = "ran after kCancelPending";
      }
    } else {
      ++series;
      late += !op.on_time;
      if (op.runs > op.count) why = "ran more than COUNT";
      if (op.early != 0) why = "an occurrence started before its time";
      if (bystander) {
        // Never canceled, a bystander series has one pending occurrence until it
        // ends; one on time skips none, so it ends only at COUNT.
        int want = -1;
        if (op.on_time && op.off_grid != 0) why = "a bystander occurrence ran a tick or more late";
        switch (end) {
          case SeriesEnd::kRunOut:
            if (op.on_time) {
              want = op.count;
              ++exact_bystanders;
            }
            break;
          case SeriesEnd::kDrainAll:
            if (op.on_time) want = std::min(op.runs_at_snapshot + 1, op.count);
            break;
          case SeriesEnd::kDrainReady:
            // A late series' occurrence may be due and queued behind a
            // postponed one at the snapshot: it runs.
            if (op.on_time) want = op.runs_at_snapshot;
            break;
          case SeriesEnd::kCancelPending:
            want = op.runs_at_snapshot;
            break;
        }
        if (want >= 0 && op.runs != want) {
          why = "a bystander series ran " + std::to_string(op.runs) + " times, expected " +
                std::to_string(want) + " (" + std::to_string(op.runs_at_snapshot) +
                " at the snapshot)";
        }
      }
      if (op.posted) {
        posted_unfinished += op.runs_at_snapshot < op.count;
      } else {
        // Walk the series: all Succeeded but the last, which may be Canceled.
        int length = 0, succeeded = 0;
        for (Handle h = op.handle; h.valid(); h = h.next_occurrence()) {
          ++length;
          const State st = h.state();
          const bool last = !h.next_occurrence().valid();
          if (st == State::kSucceeded) {
            ++succeeded;
          } else if (!(last && st == State::kCanceled)) {
            why = "occurrence " + std::to_string(length - 1) + " ended " +
                  std::string(StateName(st)) + (last ? "" : " and has a next occurrence");
            break;
          } else {
            const std::string err = h.error();
            const bool by_shutdown = err == "canceled by Shutdown";
            if (!by_shutdown && err != "canceled by CancelToken") {
              why = "last occurrence canceled as '" + err + "'";
            } else if (by_shutdown ? !shutdown_cancels : bystander) {
              why = "last occurrence canceled as '" + err + "' (" +
                    (bystander ? "bystander" : "target") + ")";
            } else if (!by_shutdown) {
              if (length == 1) {
                ++counted_canceled;
              } else {
                ++later_canceled;
              }
            }
          }
        }
        if (why.empty() && length > op.count) why = "more occurrences than COUNT";
        if (why.empty() && succeeded != op.runs) {
          why = "ran " + std::to_string(op.runs) + " times, " + std::to_string(succeeded) +
                " occurrences Succeeded";
        }
      }
    }
    if (!why.empty() && bad++ < 8) {
      ADD_FAILURE() << "op " << k << " ("
                    << (op.recurring ? (op.posted ? "posted series" : "series") : "plain")
                    << ", token " << op.token << ", on time " << op.on_time << "): " << why
                    << "; runs " << op.runs << ", at the snapshot " << op.runs_at_snapshot;
    }
  }
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(oracle.overlaps.load(), 0);
  EXPECT_EQ(oracle.reorders.load(), 0);
  EXPECT_EQ(ran_after, ran_at_return) << "a body ran after Shutdown returned";
  EXPECT_EQ(ran_after, runs_total);
  EXPECT_GT(controls, 0);
  EXPECT_GT(cancel_token_count, 0u);
  if (end == SeriesEnd::kRunOut) {
    EXPECT_GT(exact_bystanders, 0);
  }
  ::testing::Test::RecordProperty("plain", static_cast<int>(plain));
  ::testing::Test::RecordProperty("series", static_cast<int>(series));
  ::testing::Test::RecordProperty("late_series", static_cast<int>(late));
  ::testing::Test::RecordProperty("exact_bystander_series", static_cast<int>(exact_bystanders));
  ::testing::Test::RecordProperty("cancel_token_count", static_cast<int>(cancel_token_count));
  ::testing::Test::RecordProperty("canceled_before_snapshot", static_cast<int>(snap.canceled));
  ::testing::Test::RecordProperty("suspended", static_cast<int>(suspended));
  ::testing::Test::RecordProperty("resumed", static_cast<int>(resumed));
  ::testing::Test::RecordProperty("pending_at_snapshot", static_cast<int>(snap.pending));
  ::testing::Test::RecordProperty("plain_pending_at_snapshot", static_cast<int>(plain_pending));
  ::testing::Test::RecordProperty("submitted", static_cast<int>(fin.submitted));
  ::testing::Test::RecordProperty("controls", static_cast<int>(controls));

  // The engine's sums.
  EXPECT_EQ(fin.pending, 0u);
  EXPECT_EQ(fin.postponed, 0u);
  EXPECT_EQ(fin.failed, 0u);
  EXPECT_EQ(fin.succeeded + fin.canceled, fin.submitted);
  EXPECT_EQ(fin.succeeded, static_cast<std::uint64_t>(runs_total + probes));
  EXPECT_EQ(fin.rejected, end == SeriesEnd::kDrainAll ? 1u : 0u);  // the refused probe
  // The snapshot: what is pending is the postponed occurrences (in the wheel)
  // and what is queued behind them: plain operations, and occurrences whose
  // time has come (a target's series that fell behind, or a late one).
  EXPECT_LE(snap.postponed + static_cast<std::uint64_t>(plain_pending), snap.pending);
  EXPECT_EQ(token_info_pending, snap.pending);
  EXPECT_EQ(final_resumed, 0u) << "a ResumeToken left an operation Suspended";
  // Shutdown against the snapshot; no next occurrence is made during it.
  switch (end) {
    case SeriesEnd::kRunOut:
      EXPECT_EQ(fin.canceled, snap.canceled);
      break;
    case SeriesEnd::kDrainAll:
      EXPECT_EQ(fin.submitted, snap.submitted + static_cast<std::uint64_t>(probes));
      EXPECT_EQ(fin.canceled, snap.canceled);
      EXPECT_EQ(fin.succeeded, snap.succeeded + snap.pending + static_cast<std::uint64_t>(probes));
      break;
    case SeriesEnd::kDrainReady:
      EXPECT_EQ(fin.submitted, snap.submitted);
      EXPECT_EQ(fin.canceled, snap.canceled + snap.postponed);
      EXPECT_EQ(fin.succeeded, snap.succeeded + snap.pending - snap.postponed);
      break;
    case SeriesEnd::kCancelPending:
      EXPECT_EQ(fin.submitted, snap.submitted);
      EXPECT_EQ(fin.canceled, snap.canceled + snap.pending);
      EXPECT_EQ(fin.succeeded, snap.succeeded);
      break;
  }
  // CancelToken's counts. Every cancel before the snapshot was a CancelToken's
  // (counted or not); those of plain operations and first occurrences are all
  // counted; the uncounted ones are later occurrences, at most one per series.
  const auto C = static_cast<long>(cancel_token_count);
  const auto canceled_before = static_cast<long>(snap.canceled);
  EXPECT_GE(C, counted_canceled);
  EXPECT_LE(C, canceled_before);
  EXPECT_LE(canceled_before - C, later_canceled + posted_unfinished);
  const long posted_canceled = canceled_before - counted_canceled - later_canceled;
  EXPECT_GE(posted_canceled, 0);
  EXPECT_LE(posted_canceled, posted_unfinished);
  EXPECT_GE(suspended, resumed);
  EXPECT_LE(static_cast<long>(suspended - resumed), canceled_before - C)
      << "a ResumeToken did not resume what its SuspendToken suspended";
}

TEST(StressTest, SeriesOnTokensRacingTokenControlsRunOutToTheirCountOnBystanders) {
  RunSeriesTokenControlStress(SeriesEnd::kRunOut, Producers(2), /*bursts=*/1500L * Scale());
}

TEST(StressTest, DrainAllShutdownOfLiveSeriesRunsEachPendingOccurrenceAndMakesNoMore) {
  RunSeriesTokenControlStress(SeriesEnd::kDrainAll, Producers(2), /*bursts=*/1500L * Scale());
}

TEST(StressTest, DrainReadyShutdownOfLiveSeriesCancelsTheirOccurrencesAndRunsWhatWaited) {
  RunSeriesTokenControlStress(SeriesEnd::kDrainReady, Producers(2), /*bursts=*/1500L * Scale());
}

TEST(StressTest, CancelPendingShutdownOfLiveSeriesCancelsEveryPendingOperation) {
  RunSeriesTokenControlStress(SeriesEnd::kCancelPending, Producers(2), /*bursts=*/1500L * Scale());
}

// ---------------------------------------------------------------------------
// Retries on tokens racing the token controls.
//
// Races: 2 producers Submit operations on 3 "target" and 3 "bystander" tokens,
// each with at most 8 unfinished (it waits on the Handle of its 8th-latest), so
// chains stay short; operation i asks for a retry on its first i % 3 attempts,
// after 0, 1 ms or 3 ms of the ManualClock ((i / 3) % 3), which a ticker
// advances by half a millisecond at a time, so retries are re-armed while
// Advance releases what came due. A controller loops on the targets only, paced
// by the operations made: CancelToken (every 64), Cancel of the oldest
// unfinished target operation among a producer's latest 16 (every 4: a head,
// running or waiting for its retry, or one queued), SuspendToken + ResumeToken
// and TokenInfo in between. Then every target is resumed and each Handle waited
// for while the clock moves on.
// Checked (DESIGN.md: a retried operation stays at the head of its chain, and
// its successors wait; order is never lost on retry):
//   - every operation terminal, none Failed; a Succeeded one ran exactly k + 1
//     attempts and its retry_count() is k; a Canceled one ran at most k, and
//     either retry_count() of them (canceled before an attempt: by CancelToken,
//     or by a Cancel that answered kCanceled, which then saw its final count) or
//     one more (its last attempt's retry refused for a cancel request); every
//     bystander Succeeded;
//   - after a Cancel answered kCancelRequested, no retry was made (its
//     retry_count() as Cancel returned is final) and the operation ended Succeeded
//     (its last attempt) or Canceled for the request;
//   - each attempt saw ctx.retry_count() == the attempts before it, and started
//     no sooner than its predecessor's end plus its delay (clock read in the
//     body, never after the engine's);
//   - per token, no two attempts at once, the attempts of one operation
//     consecutive (nothing of the token ran between them), and each producer's
//     operations in submission order; per token, the attempts that ran are those
//     the operations counted;
//   - stats(): submitted, succeeded and canceled as the Handles say, failed,
//     pending and postponed 0; started == attempts; retried == the sum of
//     retry_count(); attempts == succeeded + retried + the retries refused for a
//     cancel request (each attempt either ended its operation or was retried);
//   - CancelToken's counts add up to the operations Canceled "by CancelToken",
//     the kCanceled answers to those Canceled "by Cancel"; every ResumeToken
//     resumed what its SuspendToken suspended (nothing else ends a suspended
//     operation meanwhile), and the final ResumeToken found nothing suspended.
constexpr int kRetryTargets = 3;
constexpr int kRetryTokens = 6;  // targets, then bystanders
constexpr std::chrono::nanoseconds kRetryStep = 500us;
constexpr long kRetryWindow = 8;  // a producer's unfinished operations, at most

struct RetryOp {
  // Set by the producer before its Submit (which happens-before the first attempt).
  int token = 0;
  int retries = 0;  // k: the first k attempts ask for a retry
  std::chrono::nanoseconds delay{0};
  // Set by the producer once Submit returned; the controller reads it after
  // made[p]'s acquire, the main thread once the producer is joined.
  Handle handle;
  // Attempts started. Atomic: the controller reads it as a Cancel returns.
  std::atomic<int> attempts{0};
  // Written by the attempts only (one at a time: its chain runs them, each
  // ordered after the last by the retry); read after WaitIdle. Plain: TSan checks.
  long first_stamp = -1;           // the token's stamp at its first attempt
  long last_stamp = -1;            // ... at its latest attempt
  std::int64_t not_before_ns = 0;  // the clock as the last attempt asked, plus the delay
  int wrong_retry_count = 0;       // attempts whose ctx.retry_count() was not the attempts before
  int early = 0;                   // attempts that started before not_before_ns
  // The controller's, read once it is joined.
  bool got_canceled = false;    // a Cancel answered kCanceled
  bool got_requested = false;   // a Cancel answered kCancelRequested
  int attempts_at_cancel = -1;  // attempts as the kCanceled Cancel returned
  int retries_at_request = -1;  // retry_count() as the first kCancelRequested Cancel returned
};

void RunRetryTokenControlStress(int producers, long per_producer) {
  Oracle oracle(kRetryTokens, producers, /*ops=*/0);  // tokens, overlaps, reorders
  // Per token: the attempts that ran, each stamped with the count before it.
  // Written only inside the token's attempts (the chain serialises them).
  std::vector<long> stamps(kRetryTokens, 0);
  std::vector<std::unique_ptr<RetryOp[]>> ops(producers);
  for (auto& o : ops) o = std::make_unique<RetryOp[]>(static_cast<std::size_t>(per_producer));
  std::vector<Token> tokens;
  for (int t = 0; t < kRetryTokens; ++t) {
    tokens.emplace_back((t < kRetryTargets ? "target-" : "bystander-") + std::to_string(t));
  }
  ManualClock clock;
  const std::int64_t base = Ns(clock.now());
  auto tick_of_now = [&] { return (Ns(clock.now()) - base) / Ns(kRetryStep); };  // for reports
  std::size_t cancel_token_count = 0, suspended = 0, resumed = 0, final_resumed = 0;
  long controls = 0, canceled_answers = 0, requested_answers = 0;
  Stats st;
  {
    Engine engine({.workers = Workers(), .clock = &clock});
    // Operations each producer made (release: their Handles are set; the
    // controller's acquire pairs with it).
    std::unique_ptr<std::atomic<long>[]> made(new std::atomic<long>[producers]);
    for (int p = 0; p < producers; ++p) made[p].store(0, std::memory_order_relaxed);
    // Stop signals, relaxed: what the stopped threads did is published by join.
    std::atomic<bool> stop_controller{false}, stop_ticker{false};
    // The controller's iterations. Relaxed: pacing only, it publishes nothing.
    std::atomic<long> control_count{0};
    std::thread ticker([&] {
      while (!stop_ticker.load(std::memory_order_relaxed)) {
        clock.Advance(kRetryStep);
        std::this_thread::yield();  // a core for the workers on a 2-core machine
      }
    });
    // All the producers made, a pacing read for the controller (relaxed).
    auto made_now = [&] {
      long m = 0;
      for (int p = 0; p < producers; ++p) m += made[p].load(std::memory_order_relaxed);
      return m;
    };
    std::thread controller([&] {
      std::mt19937 rng(77);
      long last_cancel_token = 0, last_cancel = 0;
      do {  // at least one control, however soon the producers finish
        const long m = made_now();
        // At most 4 controls per operation made: a SuspendToken + ResumeToken
        // loop left free held the targets' chains back, and the producers, who
        // wait for their operations, with them (seconds, in some runs).
        if (controls >= 4 * (m + 1)) {
          std::this_thread::yield();
          continue;
        }
        const Token& t = tokens[rng() % kRetryTargets];
        if (m >= last_cancel_token + 64) {
          auto n = engine.CancelToken(t);
          EXPECT_TRUE(n.ok()) << n.status();
          if (n.ok()) cancel_token_count += *n;
          last_cancel_token = m;
        } else if (m >= last_cancel + 4) {
          // The oldest unfinished target operation among a producer's last 16
          // (a head, running or waiting for its retry, if its token has one).
          last_cancel = m;
          const int p = static_cast<int>(rng() % producers);
          const long n = made[p].load(std::memory_order_acquire);
          RetryOp* pick = nullptr;
          for (long i = std::max(0L, n - 16); i < n && pick == nullptr; ++i) {
            RetryOp& op = ops[p][static_cast<std::size_t>(i)];
            if (op.token < kRetryTargets && !IsTerminal(op.handle.state())) pick = &op;
          }
          if (pick != nullptr) {
            RetryOp& op = *pick;
            const absl::StatusOr<CancelOutcome> c = engine.Cancel(op.handle);
            if (!c.ok()) {
              EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition) << c.status();
            } else if (*c == CancelOutcome::kCanceled) {
              op.got_canceled = true;
              // Relaxed: Cancel's CAS acquired the release that made the
              // operation wait (the runner's, after the last attempt's count).
              op.attempts_at_cancel = op.attempts.load(std::memory_order_relaxed);
              ++canceled_answers;
            } else {
              if (!op.got_requested) op.retries_at_request = op.handle.retry_count();
              op.got_requested = true;
              ++requested_answers;
            }
          }
        } else {
          InspectOrSuspendAndResume(engine, t, rng, suspended, resumed);
        }
        ++controls;
        control_count.fetch_add(1, std::memory_order_relaxed);
      } while (!stop_controller.load(std::memory_order_relaxed));
    });
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
      threads.emplace_back([&, p] {
        std::mt19937 rng(900 + p);
        long controls_seen = -1;
        for (long i = 0; i < per_producer; ++i) {
          // At most kRetryWindow operations of this producer unfinished (a
          // blocking wait, on its oldest): the chains stay short, so the
          // controls meet heads waiting for a retry, not only long queues.
          if (i >= kRetryWindow) ops[p][static_cast<std::size_t>(i - kRetryWindow)].handle.Wait();
          // And a control between every 32 operations, however the threads are
          // scheduled.
          if (i % 32 == 0) {
            while (control_count.load(std::memory_order_relaxed) == controls_seen) {
              std::this_thread::yield();
            }
            controls_seen = control_count.load(std::memory_order_relaxed);
          }
          RetryOp& op = ops[p][static_cast<std::size_t>(i)];
          op.token = static_cast<int>(rng() % kRetryTokens);
          op.retries = static_cast<int>(i % 3);
          static constexpr std::chrono::nanoseconds kDelays[3] = {0ms, 1ms, 3ms};
          op.delay = kDelays[(i / 3) % 3];
          TokenState* ts = &oracle.tokens[static_cast<std::size_t>(op.token)];
          long* stamp = &stamps[static_cast<std::size_t>(op.token)];
          // A body of varying length, so that Cancel finds some attempts running.
          const int spin = i % 8 == 0 ? 20000 : static_cast<int>(i % 7) * 40;
          auto body = [&oracle, &clock, &op, ts, stamp, spin, p, i](Context& ctx) {
            const int a = op.attempts.fetch_add(1, std::memory_order_relaxed);
            const std::int64_t now = Ns(clock.now());
            if (ctx.retry_count() != a) ++op.wrong_retry_count;
            if (a > 0 && now < op.not_before_ns) ++op.early;
            if (!ts->guard.Enter()) oracle.overlaps.fetch_add(1, std::memory_order_relaxed);
            const long s = (*stamp)++;
            if (a == 0) {
              op.first_stamp = s;
              if (ts->last_seq[p] >= i) oracle.reorders.fetch_add(1, std::memory_order_relaxed);
              ts->last_seq[p] = i;
            }
            op.last_stamp = s;
            for (int k = 0; k < spin; ++k) std::atomic_signal_fence(std::memory_order_seq_cst);
            ts->guard.Exit();
            if (a < op.retries) {
              // The engine reads the clock after the attempt: due no sooner.
              op.not_before_ns = Ns(clock.now()) + Ns(op.delay);
              ctx.RetryAfter(op.delay, "planned retry");
            }
          };
          auto h = engine.Submit(body, {.token = tokens[static_cast<std::size_t>(op.token)]});
          ASSERT_TRUE(h.ok()) << h.status();
          op.handle = *std::move(h);
          made[p].store(i + 1, std::memory_order_release);
        }
      });
    }
    Watchdog watchdog(120s * Scale(), [&] {
      ReportStuck(engine, "retry stress", static_cast<long>(tick_of_now()), tokens);
    });
    for (auto& t : threads) t.join();
    stop_controller.store(true, std::memory_order_relaxed);
    controller.join();
    for (const Token& t : tokens) {
      auto r = engine.ResumeToken(t);
      EXPECT_TRUE(r.ok()) << r.status();  // not ASSERT: threads may still need joining
      if (r.ok()) final_resumed += *r;
    }
    // The ticker goes on: the retries still waiting come due.
    for (int p = 0; p < producers; ++p) {
      const long n = made[p].load(std::memory_order_relaxed);  // joined
      for (long i = 0; i < n; ++i) ops[p][static_cast<std::size_t>(i)].handle.Wait();
    }
    stop_ticker.store(true, std::memory_order_relaxed);
    ticker.join();
    ASSERT_TRUE(engine.WaitIdle().ok());
    st = engine.stats();
  }

  long bad = 0, total = 0, attempts = 0, retried = 0, succeeded = 0, canceled = 0;
  long by_token = 0, by_cancel = 0, refused = 0, target_succeeded = 0;
  std::vector<long> token_attempts(kRetryTokens, 0);
  for (int p = 0; p < producers; ++p) {
    std::vector<long> last_stamp(kRetryTokens, -1);  // per token, this producer's latest attempt
    for (long i = 0; i < per_producer; ++i) {
      const RetryOp& op = ops[p][static_cast<std::size_t>(i)];
      if (!op.handle.valid()) continue;  // a producer that stopped on a failure
      ++total;
      const bool bystander = op.token >= kRetryTargets;
      const State s = op.handle.state();
      const int a = op.attempts.load(std::memory_order_relaxed);  // the engine is gone
      const int rc = op.handle.retry_count();
      const std::string err = op.handle.error();
      const int k = op.retries;
      attempts += a;
      retried += rc;
      token_attempts[static_cast<std::size_t>(op.token)] += a;
      std::string why;
      if (s == State::kSucceeded) {
        ++succeeded;
        target_succeeded += !bystander;
        if (a != k + 1 || rc != k) why = "Succeeded with the wrong attempts or retry count";
      } else if (s == State::kCanceled) {
        ++canceled;
        const bool request = err.rfind("retry canceled: Cancel was requested", 0) == 0;
        by_token += err == "canceled by CancelToken";
        by_cancel += err == "canceled by Cancel";
        refused += request;
        if (bystander) {
          why = "a bystander canceled";
        } else if (a > k) {
          why = "Canceled after its last attempt";
        } else if (request ? a != rc + 1 : a != rc) {
          why = "Canceled with attempts and retry count apart";
        } else if (request && !op.got_requested) {
          why = "retry refused for a request nobody made";
        } else if (!request && err != "canceled by CancelToken" && err != "canceled by Cancel") {
          why = "canceled for an unexpected reason";
        }
      } else {
        why = IsTerminal(s) ? "Failed" : "not terminal";
      }
      if (why.empty() && op.got_canceled &&
          (s != State::kCanceled || err != "canceled by Cancel" || a != op.attempts_at_cancel)) {
        why = "Cancel answered kCanceled, then attempts " + std::to_string(op.attempts_at_cancel);
      }
      if (why.empty() && op.got_requested) {
        const bool request = s == State::kCanceled && err.rfind("retry canceled: Cancel", 0) == 0;
        if (rc != op.retries_at_request) {
          why = "a retry after Cancel answered kCancelRequested (retry count then " +
                std::to_string(op.retries_at_request) + ")";
        } else if (!request && s != State::kSucceeded) {
          why = "Cancel answered kCancelRequested, then it ended otherwise";
        }
      }
      if (why.empty() && (op.wrong_retry_count != 0 || op.early != 0)) {
        why = "an attempt saw the wrong retry_count() or started before its delay";
      }
      if (why.empty() && a > 0) {
        // The attempts of one operation are consecutive on its token, after the
        // attempts of the producer's operation before it there.
        if (op.last_stamp - op.first_stamp != a - 1)
          why = "another attempt ran between its retries";
        long& last = last_stamp[static_cast<std::size_t>(op.token)];
        if (op.first_stamp <= last) why = "started before its predecessor's attempts ended";
        last = op.last_stamp;
      }
      if (!why.empty() && bad++ < 8) {
        ADD_FAILURE() << "producer " << p << " op " << i << " (token " << op.token << ", k " << k
                      << ", delay " << op.delay.count() << " ns): " << why << "; " << StateName(s)
                      << " '" << err << "', attempts " << a << ", retry count " << rc << ", stamps "
                      << op.first_stamp << ".." << op.last_stamp << ", Cancel answered "
                      << (op.got_canceled ? "kCanceled " : "")
                      << (op.got_requested ? "kCancelRequested" : "");
      }
    }
  }
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(oracle.overlaps.load(), 0);
  EXPECT_EQ(oracle.reorders.load(), 0);
  for (int t = 0; t < kRetryTokens; ++t) {
    EXPECT_EQ(stamps[static_cast<std::size_t>(t)], token_attempts[static_cast<std::size_t>(t)])
        << "token " << t;
  }
  EXPECT_EQ(st.submitted, static_cast<std::uint64_t>(total));
  EXPECT_EQ(st.succeeded, static_cast<std::uint64_t>(succeeded));
  EXPECT_EQ(st.canceled, static_cast<std::uint64_t>(canceled));
  EXPECT_EQ(st.failed, 0u);
  EXPECT_EQ(st.pending, 0u);
  EXPECT_EQ(st.postponed, 0u);
  EXPECT_EQ(st.started, static_cast<std::uint64_t>(attempts));
  EXPECT_EQ(st.retried, static_cast<std::uint64_t>(retried));
  EXPECT_EQ(static_cast<std::uint64_t>(attempts), st.succeeded + st.retried + refused);
  EXPECT_EQ(by_token, static_cast<long>(cancel_token_count));
  EXPECT_EQ(by_cancel, canceled_answers);
  EXPECT_LE(refused, requested_answers);
  EXPECT_EQ(suspended, resumed);
  EXPECT_EQ(final_resumed, 0u) << "a ResumeToken left an operation Suspended";
  // Coverage, not correctness: each control changed something.
  EXPECT_GT(controls, 0);
  EXPECT_GT(cancel_token_count, 0u);
  EXPECT_GT(canceled_answers, 0);
  EXPECT_GT(suspended, 0u);
  EXPECT_GT(target_succeeded, 0);
  ::testing::Test::RecordProperty("operations", static_cast<int>(total));
  ::testing::Test::RecordProperty("retried", static_cast<int>(retried));
  ::testing::Test::RecordProperty("canceled_by_token", static_cast<int>(by_token));
  ::testing::Test::RecordProperty("cancel_answered_canceled", static_cast<int>(canceled_answers));
  ::testing::Test::RecordProperty("cancel_answered_requested", static_cast<int>(requested_answers));
  ::testing::Test::RecordProperty("retries_refused_for_a_request", static_cast<int>(refused));
  ::testing::Test::RecordProperty("suspended", static_cast<int>(suspended));
  ::testing::Test::RecordProperty("target_succeeded", static_cast<int>(target_succeeded));
}

TEST(StressTest, RetriesOnTokensRacingTokenControlsKeepTheirChainsOrderAndCounts) {
  RunRetryTokenControlStress(Producers(2), 80000L * Scale());
}

}  // namespace
}  // namespace ordo
