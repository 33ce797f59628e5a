// stress_support.h: what the stress tests (label "stress") share: their size and
// width from the environment, the per-token oracle, and the watchdog that fails a
// test that would hang.
#ifndef ORDO_TESTS_STRESS_STRESS_SUPPORT_H_
#define ORDO_TESTS_STRESS_STRESS_SUPPORT_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "ordo/engine.h"
#include "support/journal.h"

namespace ordo::stress {

inline int EnvOr(const char* name, int fallback) {
  const char* s = std::getenv(name);
  const int v = s == nullptr ? fallback : std::atoi(s);
  return v < 1 ? fallback : v;
}

inline int Scale() { return EnvOr("ORDO_STRESS_SCALE", 1); }
// The worker count of the tests written for the 2-core development machine.
inline int Workers() { return EnvOr("ORDO_STRESS_WORKERS", 2); }
// A test's producer count, or more if the environment asks for more.
inline int Producers(int n) { return std::max(n, EnvOr("ORDO_STRESS_PRODUCERS", n)); }

struct TokenState {
  ::ordo::testing::OverlapGuard guard;
  // Last sequence seen per producer; written only inside the token's bodies,
  // which the chain serializes (a race here would be a chain bug, and TSan sees it).
  std::vector<long> last_seq;
};

struct Oracle {
  explicit Oracle(int tokens, int producers, long ops) : runs(ops), tokens(tokens) {
    for (auto& t : this->tokens) t.last_seq.assign(producers, -1);
  }
  std::vector<std::atomic<int>> runs;  // per operation: how often its body ran
  std::vector<TokenState> tokens;
  std::atomic<long> overlaps{0};
  std::atomic<long> reorders{0};
};

// Whether Shutdown(mode) must run an operation accepted before it began, left
// unsuspended and not canceled by anyone else: kDrainAll runs all of them,
// kDrainReady those not postponed; kCancelPending promises none.
inline bool MustRun(ShutdownMode mode, bool postponed) {
  return mode == ShutdownMode::kDrainAll || (mode == ShutdownMode::kDrainReady && !postponed);
}

// Runs `f` as it goes out of scope, however the scope is left (a failed ASSERT
// returns from a thread's function too).
template <typename F>
struct OnReturn {
  F f;
  ~OnReturn() { f(); }
};
template <typename F>
OnReturn(F) -> OnReturn<F>;

// Fails a test that would hang: unless dismissed (destroyed) within `limit`, it
// prints what `report` says and ends the process. A bound, not a sleep: the test
// goes on as soon as what it waits for happens.
class Watchdog {
 public:
  Watchdog(std::chrono::seconds limit, std::function<void()> report)
      : thread_([this, limit, report = std::move(report)] {
          std::unique_lock<std::mutex> l(mu_);
          if (cv_.wait_for(l, limit, [this] { return dismissed_; })) return;
          std::fprintf(stderr, "watchdog: still waiting after %llds\n",
                       static_cast<long long>(limit.count()));
          std::fflush(stderr);
          // The report reads a broken engine and may hang itself: a second bound.
          std::thread([] {
            std::this_thread::sleep_for(std::chrono::seconds(10));
            std::abort();
          }).detach();
          report();
          std::fflush(stderr);
          std::abort();
        }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> l(mu_);
      dismissed_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool dismissed_ = false;
  std::thread thread_;  // last: it starts once the members above exist
};

}  // namespace ordo::stress

#endif  // ORDO_TESTS_STRESS_STRESS_SUPPORT_H_
