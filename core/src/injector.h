// injector.h: the global submission queue, over moodycamel's ConcurrentQueue.
//
// Threads outside the engine (and workers whose deque is full) push here; workers
// take batches of kInjectorBatch with a consumer token each. Per-producer FIFO:
// one producer's operations leave in the order they entered. A producer is a
// thread (implicit), or a leased stripe's token (explicit; a thread keeps its
// lease, and so its order, for as long as it submits to the engine), or a
// worker's own token for what it spills from its full deque (explicit).
// Kept out of public headers: moodycamel is an implementation detail.
//
// One popper at a time (the pop lease), in engines of kPopLeaseMinWorkers or
// more workers. Workers take from here through PopBulkIfFree, a try-lock around
// moodycamel's dequeue: a worker that finds another popping takes nothing and
// goes on to steal (from a random victim first). Why: every dequeue is a
// few RMWs on the cache line that holds the producer's tail index, and with many
// idle workers polling, a producer feeding them one operation at a time paid a
// line transfer per enqueue. On a 16-core machine (bench/HISTORY.md,
// device16_injector_lease_variants.txt; the lease without J4's patience) W1
// with one producer went from 433 to 215 ns/op on 16 workers and from 257 to 137
// on 4; with four producers from 167 to 89 on 16 workers, and W2 from 239 to 200.
// Go's scheduler and tokio's serialise their global queues too (under a lock).
// Invariants
//   J1  The lease is held only around one non-blocking dequeue: it is always
//       released, and a worker that lost the race is never made to wait.
//   J2  It gates taking, not seeing: size_approx() ignores it, so a parking
//       worker's last look (Parker P1) still sees operations that another worker
//       is about to take, and does not sleep on them; nothing waits on the lease.
//   J3  It orders nothing: the operations travel through moodycamel's own
//       release/acquire pairs as before, and moodycamel allows any number of
//       concurrent consumers. A lost race only moves work from the injector to a
//       deque sooner or later, never drops or repeats it.
//   J4  It is a courtesy, not a lock: a holder preempted mid-pop (more threads
//       than cores) would otherwise keep every other worker off the injector for
//       a time slice. A worker that finds the same hold (the lease word's odd
//       value) on kPopLeasePatience looks in a row pops without it.
#ifndef ORDO_CORE_SRC_INJECTOR_H_
#define ORDO_CORE_SRC_INJECTOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

#include <concurrentqueue/concurrentqueue.h>

#include "config.h"
#include "operation.h"
#include "sync.h"

namespace ordo::internal {

class Injector {
 public:
  using ConsumerToken = moodycamel::ConsumerToken;

  Injector() : queue_(1024) {}

  using ProducerToken = moodycamel::ProducerToken;

  void Push(Operation* op) {
    // moodycamel: enqueue releases the element to the dequeuer (its own
    // release/acquire pairs); the caller's writes to *op are visible on dequeue.
    bool ok = queue_.enqueue(op);
    ORDO_CHECK(ok, "injector allocation failed");
  }
  // Through an explicit producer: no lookup of the calling thread's implicit
  // producer (a hash of its thread id, about 50 instructions). A token is used
  // by one thread at a time (a leased stripe's lessee, EngineImpl::Schedule; a
  // worker spilling its deque, EngineImpl::PushLocal).
  void Push(ProducerToken& token, Operation* op) {
    bool ok = queue_.enqueue(token, op);  // releases *op to the dequeuer, as above
    ORDO_CHECK(ok, "injector allocation failed");
  }
  // Out of memory ends the process with a message, as a failed enqueue does: a
  // throw would leave its caller's operations in no queue (Schedule has
  // counted them; a worker's spill has taken them out of its deque).
  std::unique_ptr<ProducerToken> MakeProducerToken() {
    std::unique_ptr<ProducerToken> token;
    try {
      token = std::make_unique<ProducerToken>(queue_);
    } catch (const std::bad_alloc&) {
      ORDO_CHECK(false, "injector allocation failed (a producer token): out of memory");
    }
    // moodycamel does not throw when it cannot make the producer itself: the
    // token is invalid, and an enqueue through it would dereference null.
    ORDO_CHECK(token->valid(), "injector allocation failed (a producer): out of memory");
    return token;
  }
  void PushBulk(Operation** ops, std::size_t n) {
    bool ok = queue_.enqueue_bulk(ops, n);
    ORDO_CHECK(ok, "injector allocation failed");
  }
  // PushBulk through an explicit producer (one thread at a time, as Push).
  void PushBulk(ProducerToken& token, Operation** ops, std::size_t n) {
    bool ok = queue_.enqueue_bulk(token, ops, n);  // releases every *ops[i], as above
    ORDO_CHECK(ok, "injector allocation failed");
  }
  std::size_t PopBulk(ConsumerToken& token, Operation** out, std::size_t max) {
    return queue_.try_dequeue_bulk(token, out, max);
  }
  // What one popper remembers of the holds it lost to (J4). One per worker.
  struct PopLeaseMemory {
    std::uint32_t seen = 0;  // the lease word of the hold last lost to (odd)
    unsigned misses = 0;     // looks in a row that found that same hold
  };
  // PopBulk under the pop lease (J1-J4): 0 without touching the queue when
  // another worker holds it, unless that hold has outlasted kPopLeasePatience of
  // our looks.
  std::size_t PopBulkIfFree(ConsumerToken& token, Operation** out, std::size_t max,
                            PopLeaseMemory& memory) {
    std::uint32_t held;
    if (!TryAcquirePopLease(&held)) {
      if (held != memory.seen) {
        memory.seen = held;
        memory.misses = 0;
      }
      if (++memory.misses < kPopLeasePatience) return 0;
      // J4: the same hold outlasted our patience; its holder was most likely
      // preempted mid-pop. Pop without the lease (safe by J3).
      return PopBulk(token, out, max);
    }
    memory.misses = 0;
    const std::size_t n = PopBulk(token, out, max);
    ReleasePopLease();
    return n;
  }
  // The lease's two halves, public for tests. The word is even when free and odd
  // when held; every acquisition and release adds one, so an odd value names one
  // hold (J4). On failure, *held is the hold that was found.
  bool TryAcquirePopLease(std::uint32_t* held = nullptr) {
    // Test and test-and-set: the relaxed load keeps losers off the line while it
    // is held (a hint; the CAS decides). Acquire pairs with the release in
    // ReleasePopLease, a lock's usual pairing; by J3 nothing else depends on it.
    std::uint32_t w = lease_.load(std::memory_order_relaxed);
    if ((w & 1) == 0 &&
        lease_.compare_exchange_strong(w, w + 1, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      return true;
    }
    // The hold found (the CAS reloads w on failure). If the CAS lost to an
    // acquire and release in between, w is even: recorded as a "hold" no later
    // look can match, which only restarts J4's count.
    if (held != nullptr) *held = w;
    return false;
  }
  void ReleasePopLease() {
    // Only the holder writes the word while it is odd (others' CAS need it even),
    // so a load and a store suffice. Release pairs with the acquire above.
    lease_.store(lease_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  ConsumerToken MakeConsumerToken() { return ConsumerToken(queue_); }
  // Approximate; exact at quiescent points.
  std::size_t size_approx() const { return queue_.size_approx(); }

 private:
  moodycamel::ConcurrentQueue<Operation*> queue_;
  // Its own line: losers read it while the holder writes the queue's lines.
  alignas(kCacheLine) Atomic<std::uint32_t> lease_{0};
};

}  // namespace ordo::internal

#endif  // ORDO_CORE_SRC_INJECTOR_H_
