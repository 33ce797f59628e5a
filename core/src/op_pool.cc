#include "op_pool.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include "config.h"

namespace ordo::internal {
namespace {

// Full (or partly full) magazines and empty ones, under a mutex: one visit per
// kPoolCacheNodes allocations or frees. Magazines are never freed, like nodes
// (but one TakeEmpty made and then found it did not need); their number follows
// the peak of pending nodes and of threads.
//   M1  Each list has room for every magazine ever made for this depot
//       (Reserve, called before a magazine is made): so a push into either
//       never allocates, and Give, which a thread's cache calls from its
//       destructor at thread exit, cannot throw. (Its push grew the list there
//       once, and out of memory ended the process through std::terminate.)
class Depot {
 public:
  // M1: room for n more magazines, before they are made. Out of memory it
  // throws, and none is counted (the room already made stays, unused).
  void Reserve(std::size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    // Geometrically, as push_back would grow them: reserve(made_ + n) alone
    // reallocated both lists for every magazine made, quadratic in a depot
    // that grows to tens of thousands.
    for (std::vector<Magazine*>* list : {&loaded_, &empty_}) {
      if (list->capacity() < made_ + n) list->reserve(std::max(made_ + n, 2 * list->capacity()));
    }
    made_ += n;
  }
  // A fresh empty magazine, its room reserved first (M1). Outside the lock;
  // out of memory it throws, with nothing made.
  std::unique_ptr<Magazine> Make() {
    Reserve(1);
    return std::make_unique<Magazine>();
  }
  // Swaps `*m` (empty) for a magazine with nodes; false if there is none.
  bool TakeLoaded(Magazine** m) {
    std::lock_guard<std::mutex> lock(mu_);
    if (loaded_.empty()) return false;
    empty_.push_back(*m);  // M1: room made
    *m = loaded_.back();
    loaded_.pop_back();
    return true;
  }
  // Swaps `*m` (full) for an empty magazine, made if there is none. Out of
  // memory, it throws with nothing changed: `*m` is still the caller's alone
  // (handed to the depot before the throw, it would be handed out twice).
  void TakeEmpty(Magazine** m) {
    std::unique_ptr<Magazine> made;
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!empty_.empty() || made != nullptr) {
          loaded_.push_back(*m);  // M1: room made
          if (!empty_.empty()) {
            *m = empty_.back();
            empty_.pop_back();
          } else {
            *m = made.release();
          }
          return;  // a magazine made and not needed is freed: it held nothing
        }
      }
      made = Make();
    }
  }
  // Never throws (M1).
  void Give(Magazine* m) {
    if (m == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    (m->count > 0 ? loaded_ : empty_).push_back(m);  // M1: room made
  }
  // One node, from a thread whose caches are gone (LateFrees): onto the
  // magazine a TakeLoaded hands out next, or a fresh one if that is full.
  // Out of memory for a fresh one, it throws with nothing changed.
  void GiveOne(Operation* op) {
    std::unique_ptr<Magazine> made;
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (loaded_.empty() || loaded_.back()->full()) {
          Magazine* m = nullptr;
          if (!empty_.empty()) {
            m = empty_.back();
            empty_.pop_back();
          } else if (made != nullptr) {
            m = made.release();
          }
          if (m != nullptr) loaded_.push_back(m);  // M1: room made
        }
        if (!loaded_.empty() && !loaded_.back()->full()) {
          Magazine* m = loaded_.back();
          m->slots[m->count++] = op;
          return;  // a magazine made and not needed is freed: it held nothing
        }
      }
      made = Make();
    }
  }
  // One node for a thread whose caches are gone, null if the depot has none.
  Operation* TakeOne() {
    std::lock_guard<std::mutex> lock(mu_);
    if (loaded_.empty()) return nullptr;
    Magazine* m = loaded_.back();
    Operation* op = m->slots[--m->count];
    if (m->count == 0) {
      loaded_.pop_back();
      empty_.push_back(m);
    }
    return op;
  }

 private:
  std::mutex mu_;
  std::vector<Magazine*> loaded_;
  std::vector<Magazine*> empty_;
  std::size_t made_ = 0;  // magazines ever made for this depot (M1)
};

// One per node kind. Never destroyed: thread-local caches flush into them from
// thread exit handlers that may run after static destructors of other
// translation units.
Depot& TheDepot(NodeKind kind) {
  static Depot* full = new Depot();
  static Depot* facts = new Depot();
  static Depot* compact = new Depot();
  switch (kind) {
    case NodeKind::kCompact: return *compact;
    case NodeKind::kFacts: return *facts;
    default: return *full;
  }
}

// Statistics only; relaxed.
Atomic<std::size_t> g_nodes_created{0};
Atomic<std::size_t> g_nodes_dropped{0};  // OpPool::FreeOrDrop

// Late frees. A thread_local destructor that runs after this thread's cache of
// a kind is gone (one holding a Handle, say, made before the thread's first
// node) may still free or allocate a node of that kind: it must not touch the
// destroyed cache (filling fresh magazines there leaked them and their nodes),
// so it trades one node at a time with the depot (Depot::GiveOne, TakeOne).
// t_cache_gone says which caches are gone: trivially destructible, so it can be
// read until the thread's very end.
constinit thread_local bool t_cache_gone[3] = {false, false, false};

// The caches themselves are t_pool_caches (op_pool.h, defined below),
// trivially destructible and constant-initialized. (When they were three
// thread_locals with a destructor each, every Allocate and Free went through a
// TLS wrapper function, a guard check and a call, about 12 instructions, twice
// per operation.) Their destructor is CacheFlusher's, below.

// Gives the thread's caches back to the depots at its exit. Its destructor is
// registered by its first use, in the thread's first Ready: thread_locals made
// before it (which may free or allocate late) are destroyed after it.
struct CacheFlusher {
  bool armed = false;
  ~CacheFlusher() {
    for (NodeKind kind : {NodeKind::kFull, NodeKind::kFacts, NodeKind::kCompact}) {
      PoolCache& c = t_pool_caches[static_cast<int>(kind)];
      TheDepot(kind).Give(c.loaded);  // never throws (M1)
      TheDepot(kind).Give(c.spare);
      c.loaded = nullptr;
      c.spare = nullptr;
      t_cache_gone[static_cast<int>(kind)] = true;  // later calls go to the depot
    }
  }
};
thread_local CacheFlusher t_flusher;

PoolCache& CacheOf(NodeKind kind) { return t_pool_caches[static_cast<int>(kind)]; }

// The cache of `kind` with its two magazines, made on its first use. Both or
// neither: a throw out of memory leaves the cache as it was.
inline void Ready(PoolCache& c, NodeKind kind) {
  if (c.loaded == nullptr) [[unlikely]] {
    t_flusher.armed = true;     // its destructor gives the caches back at thread exit
    TheDepot(kind).Reserve(2);  // M1: and Give cannot throw there
    auto first = std::make_unique<Magazine>();
    c.spare = new Magazine();
    c.loaded = first.release();
  }
}

// The kind bits a node of this kind keeps in its word for life (operation.h).
std::uint32_t KindBits(NodeKind kind) {
  switch (kind) {
    case NodeKind::kCompact: return kCompactBit;
    case NodeKind::kFacts: return kNoTimesBit;
    default: return 0;
  }
}
// A slab of nodes of type N (Operation, FactsOperation, FullOperation), each
// carrying its kind in its word. An Operation is at offset 0 of each type
// (operation.h asserts it).
template <typename N>
void FillWith(NodeKind kind, Magazine* m) {
  N* slab = new N[kPoolCacheNodes];
  for (std::size_t i = 0; i < kPoolCacheNodes; ++i) {
    Operation* op = reinterpret_cast<Operation*>(&slab[kPoolCacheNodes - 1 - i]);  // slab[0] first
    // Relaxed: private until a Submit publishes it. The kind, for life.
    op->word.store(KindBits(kind), std::memory_order_relaxed);
    m->slots[i] = op;
  }
}

// Nodes are never returned to the heap (type-stable, see op_pool.h), so they
// come in slabs: one allocation per kPoolCacheNodes nodes, and no allocator
// header per node (a 192-byte node cost 208 bytes from malloc).
void FillFromSlab(NodeKind kind, Magazine* m) {
  switch (kind) {
    case NodeKind::kCompact: FillWith<Operation>(kind, m); break;
    case NodeKind::kFacts: FillWith<FactsOperation>(kind, m); break;
    default: FillWith<FullOperation>(kind, m); break;
  }
  m->count = kPoolCacheNodes;
  g_nodes_created.fetch_add(kPoolCacheNodes, std::memory_order_relaxed);
}

}  // namespace

constinit thread_local PoolCache t_pool_caches[3];

Operation* OpPool::AllocateSlow(NodeKind kind) {
  if (t_cache_gone[static_cast<int>(kind)]) [[unlikely]] {  // Late frees, above
    if (Operation* op = TheDepot(kind).TakeOne()) return op;
    // A fresh slab's rest goes to the depot whole. Out of memory, nothing is
    // kept: the magazine goes with the exception (it leaked), and Give cannot
    // throw (M1).
    std::unique_ptr<Magazine> m = TheDepot(kind).Make();
    FillFromSlab(kind, m.get());
    Operation* op = m->slots[--m->count];
    TheDepot(kind).Give(m.release());
    return op;
  }
  PoolCache& c = CacheOf(kind);
  Ready(c, kind);
  Magazine* m = c.loaded;
  if (m->count == 0) {
    if (c.spare->count > 0) {
      std::swap(c.loaded, c.spare);
    } else if (!TheDepot(kind).TakeLoaded(&c.loaded)) {
      FillFromSlab(kind, c.loaded);
    }
    m = c.loaded;
    // A fresh magazine: start the fetches that each allocation then keeps
    // kPrefetchAhead ahead (below, and in the inline Allocate).
    for (std::size_t i = 1; i <= kPrefetchAhead && i < m->count; ++i) {
      Prefetch(kind, m->slots[m->count - 1 - i]);
    }
  }
  Operation* op = m->slots[--m->count];
  // The node kPrefetchAhead allocations from now, fetched for writing while the
  // callers fill this one (its line 0 is usually in the freeing worker's cache).
  if (m->count >= kPrefetchAhead) Prefetch(kind, m->slots[m->count - kPrefetchAhead]);
  return op;
}

void OpPool::FreeSlow(Operation* op, NodeKind kind) {
  if (t_cache_gone[static_cast<int>(kind)]) [[unlikely]] {  // Late frees, above
    TheDepot(kind).GiveOne(op);
    return;
  }
  PoolCache& c = CacheOf(kind);
  Ready(c, kind);
  if (c.loaded->full()) {
    if (!c.spare->full()) {
      std::swap(c.loaded, c.spare);
    } else {
      TheDepot(kind).TakeEmpty(&c.loaded);
    }
  }
  c.loaded->slots[c.loaded->count++] = op;
}

std::size_t OpPool::NodesCreated() { return g_nodes_created.load(std::memory_order_relaxed); }

// Relaxed: a count for tests and diagnosis, ordered with nothing.
void OpPool::FreeOrDrop(Operation* op) noexcept {
  try {
    Free(op);
  } catch (const std::bad_alloc&) {
    g_nodes_dropped.fetch_add(1, std::memory_order_relaxed);
  }
}
std::size_t OpPool::NodesDropped() { return g_nodes_dropped.load(std::memory_order_relaxed); }

}  // namespace ordo::internal
