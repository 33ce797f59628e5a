// ordo/handle.h: a reference to one submitted operation.
//
// A Handle is cheap to copy (one atomic increment) and keeps the operation's record
// alive, even past the engine's destruction, so its answers stay readable. Every
// accessor but Explain reads per-operation atomics and takes no lock (Explain
// takes its token's shard lock, and a process-wide one to pin the engine).
//
// Who may call: any thread, any member, concurrently.
// Ordering: once state() returns a terminal state, or Wait() returns, everything
// the callable wrote happens-before the caller's next step, and error() and
// completed_at() hold their final values.
// Not promised: a non-terminal state() can be stale the moment it returns.
#ifndef ORDO_HANDLE_H_
#define ORDO_HANDLE_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "ordo/clock.h"
#include "ordo/state.h"

namespace ordo {
class Engine;
namespace internal {
struct Operation;
class EngineImpl;
}  // namespace internal

class Handle {
 public:
  Handle() = default;  // refers to nothing; valid() is false
  Handle(const Handle& other);
  Handle(Handle&& other) noexcept : op_(other.op_) { other.op_ = nullptr; }
  Handle& operator=(const Handle& other);
  Handle& operator=(Handle&& other) noexcept;
  ~Handle();

  bool valid() const { return op_ != nullptr; }

  // Unique within its engine (two engines may hand out the same id), increasing in
  // creation order between Submits ordered by happens-before (one thread's, or
  // synchronised). Two concurrent Submits to one token take their ids before
  // they join the chain, so their chain order (the order their calls took
  // effect) may be the opposite of their ids'. So may a Submit made inside
  // another's callable's move (or copy) constructor, against that one.
  std::uint64_t id() const;
  State state() const;
  // The failure message once Failed (the exception's what(), or the returned
  // status as text, absl::Status::ToString(): its code and message, e.g.
  // "INTERNAL: disk on fire"); the cancel reason once Canceled; empty otherwise.
  std::string error() const;
  // How many times the operation was retried (0 on its first attempt).
  int retry_count() const;
  // The name given at submit (SubmitOptions::name), or empty.
  std::string name() const;

  Clock::time_point created_at() const;
  // The first attempt's start: set once state() has shown InProgress.
  std::optional<Clock::time_point> started_at() const;
  std::optional<Clock::time_point> completed_at() const;  // when it became terminal

  // Blocks until the operation is terminal; returns its terminal state.
  State Wait() const;
  // Blocks until terminal or until `timeout` elapses (real time); true if terminal.
  bool WaitFor(std::chrono::nanoseconds timeout) const;

  // In words, why the operation is not running now ("waiting behind op 17, which is
  // Postponed until 2026-01-01T12:00:05.000Z"), or its state when it is running or
  // finished.
  std::string Explain() const;

  // For a recurring operation: the next occurrence, once it was created (cancel it
  // to end the series), which is before this one is seen ended, and may be while
  // it still runs; otherwise an empty handle.
  Handle next_occurrence() const;

  friend bool operator==(const Handle& a, const Handle& b) { return a.op_ == b.op_; }

 private:
  friend class internal::EngineImpl;
  friend class Engine;
  explicit Handle(internal::Operation* op) : op_(op) {}  // adopts one reference
  internal::Operation* op_ = nullptr;
};

}  // namespace ordo

#endif  // ORDO_HANDLE_H_
