// ordo/context.h: what a running callable may ask of the engine.
//
// A callable that takes `ordo::Context&` receives one for the duration of its run.
// Who may call: only the callable it was given to, on the thread running it; the
// reference must not be kept after the callable returns.
#ifndef ORDO_CONTEXT_H_
#define ORDO_CONTEXT_H_

#include <chrono>
#include <cstdint>

#include "absl/status/status.h"

namespace ordo {
namespace internal {
struct Operation;
class EngineImpl;
}  // namespace internal

class Context {
 public:
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // Unique within its engine, and increasing in the creating thread's order. An
  // operation a Handle can name has the Handle's id (increasing across threads
  // too, between submits ordered by happens-before: Handle::id); an independent Post with default options takes one from
  // its thread's block of ids, which may be below the id of an operation another
  // thread made before it.
  std::uint64_t id() const;
  // True once Engine::Cancel (or CancelToken, for a running recurring occurrence
  // only, or a cancelling shutdown) asked this running operation to stop. Cooperative: the callable decides what to do;
  // the operation ends in whatever state the callable reaches, but a retry it asks
  // for is not made (it ends Canceled). For a recurring occurrence, the request
  // also ends its series (Engine::Cancel).
  bool cancel_requested() const;
  // How many times this operation was retried before this attempt.
  int retry_count() const;

  // Asks to be run again `delay` after this attempt ends. The operation stays at
  // the head of its chain, Postponed, with retry_count raised, up to its maximum
  // (SubmitOptions::max_retries, else Options::max_retries); past it the operation
  // ends Failed with `reason`. Whatever the callable returns or throws afterwards
  // is ignored for this attempt, except that a later call replaces the delay.
  // Once the engine is shutting down, the retry is not made: the operation ends
  // Canceled.
  void RetryAfter(std::chrono::nanoseconds delay, std::string_view reason = "retry requested");

 private:
  friend class internal::EngineImpl;
  Context(internal::EngineImpl* engine, internal::Operation* op) : engine_(engine), op_(op) {}
  internal::EngineImpl* engine_;
  internal::Operation* op_;
};

// A status a callable may return to ask for a retry after `delay`, equivalent to
// calling Context::RetryAfter(delay, message) and returning OK.
absl::Status RetryStatus(std::chrono::nanoseconds delay, std::string_view message = "retry requested");

}  // namespace ordo

#endif  // ORDO_CONTEXT_H_
