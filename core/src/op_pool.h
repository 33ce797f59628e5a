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

#include "operation.h"

namespace ordo::internal {

// operation.h, "Layout": full (with times), facts (without), compact.
enum class NodeKind : std::uint8_t { kFull, kFacts, kCompact };

class OpPool {
 public:
  // A node with line 0 in its initial state (kWaiting, refs 0, no chain, its
  // kind bits) and its timer unlinked; its facts and times are stale until
  // InitFacts (operation.h).
  static Operation* Allocate(NodeKind kind = NodeKind::kFull);
  // Returns a node whose callable was destroyed and whose refs reached 0, to the
  // pool of its kind.
  static void Free(Operation* op);
  // Free, or, when Free throws bad_alloc (no magazine could be made for the
  // node), drops the node, counted: nodes are never given back to the system
  // anyway, so the pool is one node short and nothing else changes. For a last
  // holder that cannot back out (EngineImpl::Reclaim).
  static void FreeOrDrop(Operation* op) noexcept;
  // Nodes FreeOrDrop dropped since the process started.
  static std::size_t NodesDropped();
  // Nodes made since the process started (for tests that count allocations).
  static std::size_t NodesCreated();
};

}  // namespace ordo::internal

#endif  // ORDO_CORE_SRC_OP_POOL_H_
