#include "op_pool.h"

#include <mutex>
#include <new>
#include <vector>

#include "config.h"

namespace ordo::internal {
namespace {

// A batch is a singly linked list through chain_next.
struct Batch {
  Operation* head = nullptr;
  std::size_t count = 0;
};

class Depot {
 public:
  bool Take(Batch* out) {
    std::lock_guard<std::mutex> lock(mu_);
    if (batches_.empty()) return false;
    *out = batches_.back();
    batches_.pop_back();
    return true;
  }
  void Give(Batch b) {
    if (b.count == 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    batches_.push_back(b);
  }

 private:
  std::mutex mu_;
  std::vector<Batch> batches_;
};

// Never destroyed: thread-local caches flush into it from thread exit handlers that
// may run after static destructors of other translation units.
Depot& TheDepot() {
  static Depot* depot = new Depot();
  return *depot;
}

// Statistic only; relaxed.
Atomic<std::size_t> g_nodes_created{0};

struct LocalCache {
  Batch free;   // allocate from here
  Batch spill;  // freed nodes beyond kPoolCacheNodes gather here, go to the depot full
  ~LocalCache() {
    TheDepot().Give(free);
    TheDepot().Give(spill);
  }
};

thread_local LocalCache t_cache;

void Push(Batch* b, Operation* op) {
  op->chain_next.store(b->head, std::memory_order_relaxed);  // pool-private link
  b->head = op;
  ++b->count;
}

Operation* Pop(Batch* b) {
  Operation* op = b->head;
  b->head = op->chain_next.load(std::memory_order_relaxed);
  --b->count;
  return op;
}

}  // namespace

Operation* OpPool::Allocate() {
  LocalCache& c = t_cache;
  if (c.free.count == 0) {
    if (c.spill.count > 0) {
      c.free = c.spill;
      c.spill = {};
    } else if (!TheDepot().Take(&c.free)) {
      // Nodes are never returned to the heap (type-stable, see op_pool.h), so
      // they come in slabs: one allocation per kPoolCacheNodes nodes, and no
      // allocator header per node (a 192-byte node cost 208 bytes from malloc).
      Operation* slab = new Operation[kPoolCacheNodes];
      g_nodes_created.fetch_add(kPoolCacheNodes, std::memory_order_relaxed);
      for (std::size_t i = 1; i < kPoolCacheNodes; ++i) Push(&c.free, &slab[i]);
      return &slab[0];
    }
  }
  Operation* op = Pop(&c.free);
  // The next node is the next Allocate's (a linked free list: its address is only
  // known now). Fetched for writing while the caller fills this one: a burst that
  // takes many cold nodes (W4: 200,000 postponed) waits on one miss per node
  // otherwise.
  if (c.free.head != nullptr) __builtin_prefetch(c.free.head, 1, 3);
  return op;
}

void OpPool::Free(Operation* op) {
  // Reset line 0 (operation.h). Line 1 is left stale: whoever takes the node
  // writes it in full (InitFacts), and not touching it here keeps it in the
  // submitter's cache. Line 2 is written only where it differs, so an operation
  // that did not use it leaves it shared. Relaxed: the node is private to this
  // thread until a later Submit publishes it.
  op->word.store(0, std::memory_order_relaxed);
  op->refs.store(0, std::memory_order_relaxed);
  op->chain = nullptr;
  op->ops = nullptr;
  if (op->in_wheel) op->in_wheel = false;
  if (op->timer.slot_index != TimerNode{}.slot_index || op->timer.prev != nullptr ||
      op->timer.next != nullptr || op->timer.deadline_ns != 0 || op->timer.seq != 0) {
    op->timer = TimerNode{};
  }
  LocalCache& c = t_cache;
  if (c.free.count < kPoolCacheNodes) {
    Push(&c.free, op);
    return;
  }
  Push(&c.spill, op);
  if (c.spill.count >= kPoolCacheNodes) {
    TheDepot().Give(c.spill);
    c.spill = {};
  }
}

std::size_t OpPool::NodesCreated() { return g_nodes_created.load(std::memory_order_relaxed); }

}  // namespace ordo::internal
