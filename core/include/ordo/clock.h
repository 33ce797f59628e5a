// ordo/clock.h: where the engine reads the time.
//
// Offers
//   Clock        the interface the engine reads (Options::clock); its static now()
//                reads the system clock, so `ordo::Clock::now() + 5s` is the
//                natural way to write a postpone-until time.
//   SystemClock  wall-clock time (std::chrono::system_clock); the default.
//   ManualClock  time that moves only when a test calls Advance() or Set(); every
//                engine reading it releases what became due before Advance returns
//                to the caller's next observation (see Engine).
//
// Time points are absolute wall-clock instants, as Dynamics' PostponeUntil is.
// Who may call: every member of every clock, from any thread; but a listener of a
// ManualClock (the engines reading it, and what they run there) must not call
// that clock's Advance, Set, AddListener or RemoveListener (the process ends,
// saying so: it would wait for itself).
// Not promised: SystemClock is not monotonic; when the wall clock jumps, a
// postponed operation becomes due when the clock's reading passes its time (a jump
// forward releases it early in elapsed time, a jump back holds it longer). It never
// starts before the clock reads its postpone-until time.
#ifndef ORDO_CLOCK_H_
#define ORDO_CLOCK_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ordo {

class Clock {
 public:
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<std::chrono::system_clock, duration>;

  virtual ~Clock() = default;

  // The current reading of this clock. Must not throw (the engine reads it where
  // it cannot back out of a submission), nor block for long (Handle::started_at
  // waits for a worker's read of it).
  virtual time_point Now() const = 0;

  // True for clocks whose time moves only by explicit calls (ManualClock). The
  // engine then sleeps until told that the time moved, never on a deadline.
  virtual bool is_manual() const { return false; }

  // Registers `on_advance` to be called (on the advancing thread) after each
  // change of a manual clock. Returns an id for RemoveListener. No-op for clocks
  // that move by themselves.
  virtual std::uint64_t AddListener(std::function<void()> on_advance) {
    (void)on_advance;
    return 0;
  }
  virtual void RemoveListener(std::uint64_t id) { (void)id; }

  // The system clock's reading: `ordo::Clock::now() + 5s`. Static: through a
  // Clock& (Engine::clock()) it still reads the system clock; call Now() there.
  static time_point now() {
    return std::chrono::time_point_cast<duration>(std::chrono::system_clock::now());
  }
};

class SystemClock final : public Clock {
 public:
  time_point Now() const override { return Clock::now(); }
  // The process-wide instance the engine uses when Options::clock is null.
  static SystemClock& Instance();
};

// A clock for tests: starts at `start` (default: 2026-01-01T00:00:00Z) and moves
// only by Advance() or Set(). Advance() calls each listening engine, which releases
// everything due at the new time into its run queues before Advance returns.
class ManualClock final : public Clock {
 public:
  ManualClock();
  explicit ManualClock(time_point start);
  ManualClock(const ManualClock&) = delete;
  ManualClock& operator=(const ManualClock&) = delete;

  time_point Now() const override;
  time_point now() const { return Now(); }
  bool is_manual() const override { return true; }

  // Moves the time forward by `d` (negative durations are ignored; saturates at
  // time_point::max()).
  void Advance(duration d);
  // Sets the time; a time before the current reading is allowed (a jump back).
  void Set(time_point t);

  std::uint64_t AddListener(std::function<void()> on_advance) override;
  void RemoveListener(std::uint64_t id) override;

 private:
  void Notify();

  // Nanoseconds since the epoch. Relaxed would do for a lone reading; release on
  // the writer and acquire on readers make what the advancing thread did before
  // Advance() visible to a thread that sees the new time (ManualClock::Advance
  // pairs with ManualClock::Now).
  std::atomic<std::int64_t> now_ns_;
  mutable std::mutex listeners_mu_;
  // The thread running this clock's listeners (Notify), set under
  // listeners_mu_; relaxed: compared only with the reader's own id, which only
  // that thread stores.
  std::atomic<std::thread::id> notifying_{};
  std::vector<std::pair<std::uint64_t, std::function<void()>>> listeners_;
  std::uint64_t next_listener_id_ = 1;
};

}  // namespace ordo

#endif  // ORDO_CLOCK_H_
