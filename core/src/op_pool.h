// op_pool.h: per-thread pools of Operation nodes; the only code that allocates them.
//
// Each thread keeps two private magazines (arrays of free node pointers; no
// synchronisation). A thread that frees more than it allocates (a worker) trades
// full magazines for empty ones at a process-wide depot under a mutex; a thread
// that allocates more (a producer) trades the other way. In steady state an
// operation costs no heap allocation and one depot visit per kPoolCacheNodes
// nodes. Allocate fetches the node a few allocations ahead for writing: the array
// gives its address without touching the node (a linked free list did not).
//
// Nodes are type-stable: once made they are never returned to the heap while the
// process runs, so a diagnostic (Handle::Explain) may read the atomics of a node
// that was recycled under it and at worst report stale facts. The price: the
// depot holds as many nodes as were ever pending at once (64 B a compact node,
// 128 B a facts node, 192 B a full one, made in slabs of kPoolCacheNodes), and
// the magazines that held them (8 B a node). The three kinds (operation.h) have
// a pool each; a node stays in its own.
// Rejected: returning nodes to the heap beyond a cap; it makes a stale read a
// use-after-free.
#ifndef ORDO_CORE_SRC_OP_POOL_H_
#define ORDO_CORE_SRC_OP_POOL_H_

#include <cstddef>
#include <cstdint>

#include "config.h"
#include "operation.h"
#include "sync.h"

namespace ordo::internal {

// operation.h, "Layout": full (with times), facts (without), compact.
enum class NodeKind : std::uint8_t { kFull, kFacts, kCompact };

// Magazines (Bonwick's slab allocator, learned from, not copied): a thread's free
// nodes are an array of pointers, not a list linked through the nodes. Allocate
// then reads no node to find the next one, so it can fetch nodes several ahead
// for writing: the producer of W1 takes nodes that a worker freed (their line 0
// is in the worker's cache), and with a linked list it waited on one such miss
// per node, with nothing to overlap it (perf: Allocate 14% of the producer once
// the P1 fence was gone). Free writes no link into the node either.
struct Magazine {
  std::size_t count = 0;
  Operation* slots[kPoolCacheNodes];
  bool full() const { return count == kPoolCacheNodes; }
};

// A thread's two magazines of one kind: it allocates from and frees into
// `loaded`; `spare` absorbs a burst of either without a depot visit (a thread
// that alternates allocating and freeing around a magazine boundary would
// otherwise visit it on every call). Both null until the thread's first node of
// the kind, and again once its exit gave them back (op_pool.cc, late frees).
struct PoolCache {
  Magazine* loaded = nullptr;
  Magazine* spare = nullptr;
};
// The caches, one per kind (NodeKind's value), defined in op_pool.cc: trivially
// destructible and constant-initialized (constinit here too), so reached at one
// %fs-relative address with no TLS wrapper or guard, inline in the callers.
extern constinit thread_local PoolCache t_pool_caches[3];

class OpPool {
 public:
  // A node with line 0 in its initial state (kWaiting, refs 0, no chain, its
  // kind bits) and its timer unlinked; its facts and times are stale until
  // InitFacts (operation.h). Inline while the loaded magazine has more than
  // kPrefetchAhead nodes; AllocateSlow does the rest (the first use, a
  // magazine swap or depot visit, a late allocation).
  static Operation* Allocate(NodeKind kind = NodeKind::kFull) {
    Magazine* m = t_pool_caches[static_cast<int>(kind)].loaded;
    if (m != nullptr && m->count > kPrefetchAhead) [[likely]] {
      Operation* op = m->slots[--m->count];
      // The node kPrefetchAhead allocations from now, fetched for writing while
      // the callers fill this one (its line 0 is usually in the freeing worker's
      // cache).
      Prefetch(kind, m->slots[m->count - kPrefetchAhead]);
      return op;
    }
    return AllocateSlow(kind);
  }
  // Returns a node whose callable was destroyed and whose refs reached 0, to the
  // pool of its kind. Inline while the loaded magazine has room; FreeSlow does
  // the rest.
  static void Free(Operation* op) {
    const NodeKind kind = ResetForPool(op);
    Magazine* m = t_pool_caches[static_cast<int>(kind)].loaded;
    if (m != nullptr && !m->full()) [[likely]] {
      m->slots[m->count++] = op;
      return;
    }
    FreeSlow(op, kind);
  }
  // Free, or, when Free throws bad_alloc (no magazine could be made for the
  // node), drops the node, counted: nodes are never given back to the system
  // anyway, so the pool is one node short and nothing else changes. For a last
  // holder that cannot back out (EngineImpl::Reclaim).
  static void FreeOrDrop(Operation* op) noexcept;
  // Nodes FreeOrDrop dropped since the process started.
  static std::size_t NodesDropped();
  // Nodes made since the process started (for tests that count allocations).
  static std::size_t NodesCreated();

 private:
  // How far ahead Allocate fetches: enough to overlap a few cross-core misses.
  static constexpr std::size_t kPrefetchAhead = kPoolCacheNodes >= 8 ? 4 : 1;

  static Operation* AllocateSlow(NodeKind kind);
  static void FreeSlow(Operation* op, NodeKind kind);

  static NodeKind KindOf(std::uint32_t word) {
    if ((word & kCompactBit) != 0) return NodeKind::kCompact;
    if ((word & kNoTimesBit) != 0) return NodeKind::kFacts;
    return NodeKind::kFull;
  }
  // Fetches a node for writing. The submitter writes every line of a node
  // (InitFacts; a postponed one's timer is in line 1), so all are fetched: a
  // postponed burst takes nodes freed long ago, cold in every cache.
  static void Prefetch(NodeKind kind, Operation* op) {
    PrefetchForWrite(op);
    if (kind != NodeKind::kCompact) {
      PrefetchForWrite(reinterpret_cast<char*>(op) + kCacheLine);
    }
    if (kind == NodeKind::kFull) {
      PrefetchForWrite(reinterpret_cast<char*>(op) + 2 * kCacheLine);
    }
  }
  // Resets line 0 (operation.h), keeping the kind, and returns the kind. The
  // facts are left as they are: whoever takes the node writes them in full
  // (InitFacts), and the timer's links are clear whenever it is not armed (the
  // wheel clears them as it lets go, and the inbox's drain hands every node to
  // the wheel), so not touching them here keeps them in the last submitter's
  // cache. Relaxed: the node is private to this thread until a later Submit
  // publishes it.
  static NodeKind ResetForPool(Operation* op) {
    const std::uint32_t kind_bits = op->word.load(std::memory_order_relaxed) & kKindBits;
    op->word.store(kind_bits, std::memory_order_relaxed);
    op->refs.store(0, std::memory_order_relaxed);
    op->chain_next.store(nullptr, std::memory_order_relaxed);
    op->chain = nullptr;
    op->ops = nullptr;
    const NodeKind kind = KindOf(kind_bits);
    if (kind != NodeKind::kCompact) {
      ORDO_DCHECK(!Facts(op).in_wheel && !Facts(op).place_kept && !Facts(op).timer.linked() &&
                      Facts(op).timer.prev == nullptr && Facts(op).timer.next == nullptr,
                  "a node freed with its timer armed");
    }
    return kind;
  }
};

}  // namespace ordo::internal

#endif  // ORDO_CORE_SRC_OP_POOL_H_
