// journal.h: test support. Journal is a thread-safe, append-only record of step
// names; Gate holds callables until opened; AwaitState is a bounded wait on an
// operation's state (a terminal state blocks on the handle; any other is looked
// at every millisecond, so use it only for states that stay put: gated, or held
// by the manual clock); OverlapGuard catches two operations of one token running
// at once.
#ifndef ORDO_TESTS_SUPPORT_JOURNAL_H_
#define ORDO_TESTS_SUPPORT_JOURNAL_H_

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "ordo/engine.h"

namespace ordo::testing {

class Journal {
 public:
  // A callable that appends `name` when it runs.
  auto Step(std::string name) {
    return [this, name = std::move(name)] { Append(name); };
  }
  void Append(const std::string& s) {
    std::lock_guard<std::mutex> l(mu_);
    entries_.push_back(s);
  }
  std::vector<std::string> Entries() const {
    std::lock_guard<std::mutex> l(mu_);
    return entries_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> entries_;
};

// Waits (blocking on the handle, bounded so a broken engine fails the test
// instead of hanging it) until `h` reaches `want`; true if it did.
inline bool AwaitState(const Handle& h, State want,
                       std::chrono::seconds limit = std::chrono::seconds(30)) {
  if (IsTerminal(want)) {
    if (!h.WaitFor(limit)) return false;
    return h.state() == want;
  }
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (h.state() == want) return true;
    if (IsTerminal(h.state())) return false;
    h.WaitFor(std::chrono::milliseconds(1));  // a state change that is not terminal
  }
  return h.state() == want;
}

// A gate a callable blocks on until the test opens it.
class Gate {
 public:
  Gate() : future_(promise_.get_future().share()) {}
  void Open() { promise_.set_value(); }
  auto Waiter() {
    return [f = future_] { f.wait(); };
  }

 private:
  std::promise<void> promise_;
  std::shared_future<void> future_;
};

// Set on entry, cleared on exit, by exchange: a second entrant sees it set.
class OverlapGuard {
 public:
  bool Enter() { return !busy_.exchange(true, std::memory_order_acq_rel); }
  void Exit() { busy_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> busy_{false};
};

}  // namespace ordo::testing

#endif  // ORDO_TESTS_SUPPORT_JOURNAL_H_
