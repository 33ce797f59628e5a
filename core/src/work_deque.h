// work_deque.h: a worker's local run queue. The owner pushes at the tail and pops
// at the head; thieves steal half from the head. FIFO for the owner too, so that
// operations from one producer start close to creation order.
//
// Roles: owner (the worker the deque belongs to), thief (any other worker).
// Invariants
//   D1  tail_ is written only by the owner; head_ only by CAS (owner or thief).
//   D2  0 <= tail_ - head_ <= kDequeCapacity (unsigned arithmetic, wrapping).
//   D3  Slot i (mod capacity) is written only by the owner, only while it is
//       outside [head_, tail_); a thief reads [h, h+n) and claims it by CAS of
//       head_ from h, so a slot it read but lost to the owner's rewrite makes its
//       CAS fail (head_ moved past it first).
// Algorithm: the bounded ring of tokio's local queue (learned from, not copied),
// without the LIFO slot; Chase-Lev was rejected because its owner end is LIFO.
// ORDO_LOCKED_DEQUE swaps in a mutex-protected twin with the same interface.
#ifndef ORDO_CORE_SRC_WORK_DEQUE_H_
#define ORDO_CORE_SRC_WORK_DEQUE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>

#include "config.h"
#include "operation.h"
#include "sync.h"

namespace ordo::internal {

#ifndef ORDO_LOCKED_DEQUE
class WorkDeque {
 public:
  static constexpr std::size_t kCapacity = kDequeCapacity;

  // Owner only. False when full (the caller spills to the injector).
  bool Push(Operation* op) {
    const std::uint32_t t = tail_.load(std::memory_order_relaxed);  // D1: ours
    // Acquire: pairs with the CAS that freed slots in Pop/Steal, so their reads of
    // a slot happen-before our rewrite of it (D3).
    const std::uint32_t h = head_.load(std::memory_order_acquire);
    if (t - h >= kCapacity) return false;
    // Relaxed: published by the release store of tail_ below.
    slots_[t & (kCapacity - 1)].store(op, std::memory_order_relaxed);
    ChaosPoint();
    // Release: publishes the slot; pairs with the acquire loads of tail_ in Steal
    // and size().
    tail_.store(t + 1, std::memory_order_release);
    return true;
  }

  // Owner only. nullptr when empty.
  Operation* Pop() {
    std::uint32_t h = head_.load(std::memory_order_acquire);  // pairs with thieves' CAS
    for (;;) {
      const std::uint32_t t = tail_.load(std::memory_order_relaxed);  // D1: ours
      if (h == t) return nullptr;
      // Relaxed: the owner wrote it (D3).
      Operation* op = slots_[h & (kCapacity - 1)].load(std::memory_order_relaxed);
      ChaosPoint();
      // acq_rel: claims the slot against thieves (their CAS on the same word);
      // release orders our slot read before the owner's later rewrite (trivially
      // ours) and before a thief's view of the new head.
      if (head_.compare_exchange_weak(h, h + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        return op;
      }
    }
  }

  // Thief: moves up to half of the victim's items (at most `max`) into out[].
  // Returns how many.
  std::size_t Steal(Operation** out, std::size_t max) {
    std::uint32_t h = head_.load(std::memory_order_acquire);  // pairs with CASes
    for (;;) {
      // Acquire: pairs with Push's release store; the slots below are visible.
      const std::uint32_t t = tail_.load(std::memory_order_acquire);
      const std::uint32_t avail = t - h;
      if (avail == 0 || avail > kCapacity) {
        if (avail == 0) return 0;
        h = head_.load(std::memory_order_acquire);  // torn view: reread
        continue;
      }
      std::size_t n = (avail + 1) / 2;
      if (n > max) n = max;
      for (std::size_t i = 0; i < n; ++i) {
        // Relaxed: visible through the acquire of tail_; D3 makes a stale read
        // lose the CAS below.
        out[i] = slots_[(h + i) & (kCapacity - 1)].load(std::memory_order_relaxed);
      }
      ChaosPoint();
      // acq_rel: claims [h, h+n) (D3); release orders our slot reads before the
      // owner's rewrite (its acquire of head_ in Push).
      if (head_.compare_exchange_weak(h, static_cast<std::uint32_t>(h + n),
                                      std::memory_order_acq_rel, std::memory_order_acquire)) {
        return n;
      }
    }
  }

  // Owner only: the item `ahead` places from the head, or nullptr. A hint for a
  // prefetch, nothing more: a thief may take it at any moment (nodes are
  // type-stable, op_pool.h, so even a stale pointer names node memory). Relaxed:
  // nothing is read through it.
  Operation* Peek(std::uint32_t ahead) const {
    const std::uint32_t h = head_.load(std::memory_order_relaxed);
    const std::uint32_t t = tail_.load(std::memory_order_relaxed);  // D1: ours
    if (t - h <= ahead || t - h > kCapacity) return nullptr;
    return slots_[(h + ahead) & (kCapacity - 1)].load(std::memory_order_relaxed);
  }

  // Any thread: approximate occupancy (for parking decisions and stats).
  std::size_t size() const {
    const std::uint32_t h = head_.load(std::memory_order_acquire);
    const std::uint32_t t = tail_.load(std::memory_order_acquire);
    const std::uint32_t n = t - h;
    return n > kCapacity ? 0 : n;
  }

 private:
  alignas(kCacheLine) Atomic<std::uint32_t> head_{0};
  alignas(kCacheLine) Atomic<std::uint32_t> tail_{0};
  alignas(kCacheLine) Atomic<Operation*> slots_[kCapacity] = {};
};
#else
// The locked twin: same interface, a mutex and a std::deque.
class WorkDeque {
 public:
  static constexpr std::size_t kCapacity = kDequeCapacity;
  bool Push(Operation* op) {
    std::lock_guard<std::mutex> l(mu_);
    if (q_.size() >= kCapacity) return false;
    q_.push_back(op);
    size_.store(q_.size(), std::memory_order_relaxed);
    return true;
  }
  Operation* Pop() {
    std::lock_guard<std::mutex> l(mu_);
    if (q_.empty()) return nullptr;
    Operation* op = q_.front();
    q_.pop_front();
    size_.store(q_.size(), std::memory_order_relaxed);
    return op;
  }
  std::size_t Steal(Operation** out, std::size_t max) {
    std::lock_guard<std::mutex> l(mu_);
    std::size_t n = (q_.size() + 1) / 2;
    if (n > max) n = max;
    for (std::size_t i = 0; i < n; ++i) {
      out[i] = q_.front();
      q_.pop_front();
    }
    size_.store(q_.size(), std::memory_order_relaxed);
    return n;
  }
  Operation* Peek(std::uint32_t ahead) const {
    std::lock_guard<std::mutex> l(mu_);
    return ahead < q_.size() ? q_[ahead] : nullptr;
  }
  // Relaxed: a hint for parking, re-checked under the idle protocol's fences.
  std::size_t size() const { return size_.load(std::memory_order_relaxed); }

 private:
  mutable std::mutex mu_;
  std::deque<Operation*> q_;
  Atomic<std::size_t> size_{0};
};
#endif

}  // namespace ordo::internal

#endif  // ORDO_CORE_SRC_WORK_DEQUE_H_
