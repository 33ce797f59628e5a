#include "parker.h"

#include <algorithm>

#include "config.h"

namespace ordo::internal {

Parker::Parker(int workers)
    : asymmetric_(AsymmetricFencesAvailable()), slots_(new Slot[workers]) {
  MutexLock lock(&mu_);
  sleepers_.reserve(workers);
}

void Parker::WakeOne() {
  int w;
  {
    MutexLock lock(&mu_);
    if (sleepers_.empty()) return;
    w = sleepers_.back();
    sleepers_.pop_back();
    Forget(w);
    // P3: counted as searching from now. Relaxed: under mu_, and the fences of P1
    // carry the ordering producers rely on.
    num_sleepers_.fetch_sub(1, std::memory_order_relaxed);
    num_searching_.fetch_add(1, std::memory_order_relaxed);
  }
  // Release: pairs with the acquire exchange in Park (P4).
  slots_[w].word.store(1, std::memory_order_release);
  FutexWakeOne(&slots_[w].word);
}

void Parker::WakeAll() {
  std::vector<int> all;
  {
    MutexLock lock(&mu_);
    all.swap(sleepers_);
    for (int w : all) Forget(w);
    num_sleepers_.fetch_sub(static_cast<int>(all.size()), std::memory_order_relaxed);
    num_searching_.fetch_add(static_cast<int>(all.size()), std::memory_order_relaxed);
  }
  for (int w : all) {
    slots_[w].word.store(1, std::memory_order_release);  // P4
    FutexWakeOne(&slots_[w].word);
  }
}

bool Parker::Unregister(int w) {
  MutexLock lock(&mu_);
  auto it = std::find(sleepers_.begin(), sleepers_.end(), w);
  if (it == sleepers_.end()) return false;
  sleepers_.erase(it);
  Forget(w);
  num_sleepers_.fetch_sub(1, std::memory_order_relaxed);
  num_searching_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Parker::Forget(int w) {
  if (slots_[w].long_sleep) {
    slots_[w].long_sleep = false;
    // Relaxed: under mu_; P2's reader orders itself with the fences of P1.
    num_long_.fetch_sub(1, std::memory_order_relaxed);
  }
}

void Parker::Park(int w, const std::function<bool()>& has_work,
                  std::chrono::nanoseconds timeout) {
  {
    MutexLock lock(&mu_);
    sleepers_.push_back(w);
    if (timeout.count() < 0 || timeout > kStrandCheck) {  // P2: it would not come back soon
      slots_[w].long_sleep = true;
      num_long_.fetch_add(1, std::memory_order_relaxed);  // ordered by the fence (P1)
    }
    num_sleepers_.fetch_add(1, std::memory_order_relaxed);  // ordered by the fence (P1)
  }
  num_searching_.fetch_sub(1, std::memory_order_relaxed);  // ordered by the fence (P1)
  // P1, worker side: the heavy half of the asymmetric fence for a sleep that is
  // untimed or longer than kStrandCheck (P1 (a)); a seq_cst fence otherwise.
  if (asymmetric_ && (timeout.count() < 0 || timeout > kStrandCheck)) {
    HeavyFence();
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  if (has_work()) {
    if (Unregister(w)) return;
    // A waker popped us already and is about to set our word: take that wake.
  }
  Slot& slot = slots_[w];
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // Acquire: pairs with the waker's release store (P4).
    if (slot.word.exchange(0, std::memory_order_acquire) == 1) return;
    std::chrono::nanoseconds left(-1);
    if (timeout.count() >= 0) {
      left = std::chrono::duration_cast<std::chrono::nanoseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        if (Unregister(w)) return;
        continue;  // popped by a waker meanwhile: its store is on the way
      }
    }
    FutexWait(&slot.word, 0, left);
  }
}

}  // namespace ordo::internal
