// injector.h: the global submission queue, over moodycamel's ConcurrentQueue.
//
// Threads outside the engine (and workers whose deque is full) push here; workers
// take batches of kInjectorBatch with a consumer token each. Per-producer FIFO:
// one producer's operations leave in the order they entered. A producer is a
// thread (implicit), or a leased stripe's token (explicit; a thread keeps its
// lease, and so its order, for as long as it submits to the engine).
// Kept out of public headers: moodycamel is an implementation detail.
#ifndef ORDO_CORE_SRC_INJECTOR_H_
#define ORDO_CORE_SRC_INJECTOR_H_

#include <cstddef>
#include <memory>

#include <concurrentqueue/concurrentqueue.h>

#include "operation.h"

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
  // by one thread at a time (a leased stripe's lessee, EngineImpl::Schedule).
  void Push(ProducerToken& token, Operation* op) {
    bool ok = queue_.enqueue(token, op);  // releases *op to the dequeuer, as above
    ORDO_CHECK(ok, "injector allocation failed");
  }
  std::unique_ptr<ProducerToken> MakeProducerToken() {
    return std::make_unique<ProducerToken>(queue_);
  }
  void PushBulk(Operation** ops, std::size_t n) {
    bool ok = queue_.enqueue_bulk(ops, n);
    ORDO_CHECK(ok, "injector allocation failed");
  }
  std::size_t PopBulk(ConsumerToken& token, Operation** out, std::size_t max) {
    return queue_.try_dequeue_bulk(token, out, max);
  }
  ConsumerToken MakeConsumerToken() { return ConsumerToken(queue_); }
  // Approximate; exact at quiescent points.
  std::size_t size_approx() const { return queue_.size_approx(); }

 private:
  moodycamel::ConcurrentQueue<Operation*> queue_;
};

}  // namespace ordo::internal

#endif  // ORDO_CORE_SRC_INJECTOR_H_
