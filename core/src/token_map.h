// token_map.h: the sharded token -> chain map; chain creation and retirement.
//
// Roles: producers (Submit on any thread) look a token up and push; the runner of
// a chain (TokenMap::Advance) moves it on and retires it when it empties.
//
// Structure. The authoritative map is sharded (kTokenShards absl::flat_hash_maps,
// each under its own mutex). In front of it sits a direct-mapped cache of
// kHintSlots hint slots, each {pins, chain}, read without a lock: a producer whose
// token's chain is in its hint slot pushes with two RMWs on the slot and one
// exchange on the chain, and no lock. Slot and shard come from the same hash bits
// (kHintSlots is a multiple of kTokenShards), so one shard lock guards every
// write to a given slot.
//
// Invariants
//   T1  At most one chain per token is reachable (in its shard's map, or in a hint
//       slot, or pinned by a producer that loaded it from a slot). Chains are
//       created only under the shard lock, after a miss in the map.
//   T2  A slot's chain is written only under its shard's lock; a chain in a slot
//       is also in the map.
//   T3  A chain is retired (removed from the map, recycled) only by its runner,
//       under the shard lock, after (a) removing it from its hint slot, (b) seeing
//       the slot's pins at 0, and (c) emptying tail_ by CAS from its last node.
//   T4  Dekker pair, both sides seq_cst: a producer increments pins, then loads the
//       slot's chain; the retirer stores nullptr to the slot, then loads pins. So a
//       producer either sees the slot emptied (and goes to the locked path, which
//       waits for the retirer) or is seen by the retirer (which waits for its pin
//       to drop). A producer that pushed and unpinned before the retirer's load
//       made tail_ non-null, so the retirer's CAS in (c) fails and it keeps
//       running the chain.
//   T5  If the pins do not drain within a bound (a producer preempted while
//       pinned), the runner still empties tail_ but leaves the chain in the map
//       on the shard's deferred list; a later sweep under the lock retires it.
//       The chain stays valid meanwhile (a pinned producer may still push to it).
//
// Rejected: a lock per lookup (the hot token's producers would serialize on it);
// a lock-free resizable map (needs safe memory reclamation of its arrays, and a
// hot token is served by the hint slot anyway).
#ifndef ORDO_CORE_SRC_TOKEN_MAP_H_
#define ORDO_CORE_SRC_TOKEN_MAP_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "chain.h"
#include "config.h"
#include "sync.h"

namespace ordo::internal {

class TokenMap {
 public:
  TokenMap();
  ~TokenMap();
  TokenMap(const TokenMap&) = delete;
  TokenMap& operator=(const TokenMap&) = delete;

  // Producer: sets op->chain and appends op to the token's chain, creating the
  // chain if the token is idle. True if the caller took the activation and must
  // make op the head (Chain C2).
  bool Push(const TokenKey& key, Operation* op);

  // Runner: `x`, the head of its chain, is finished with. Returns the next node
  // (waiting for an in-flight link if need be), or nullptr if x was the last: the
  // chain is then idle and, where T3 allows, retired. The caller must not touch
  // x->chain after nullptr.
  Operation* Advance(Operation* x);

  // Calls fn(chain) under the token's shard lock with the token's chain, or with
  // nullptr if the token is idle. While fn runs the chain is not retired.
  void WithChainLocked(const TokenKey& key, const std::function<void(Chain*)>& fn);

  // Calls fn() under the shard lock of the token whose hash is `hash`: no chain
  // of that shard is retired meanwhile.
  void WithShardLocked(std::uint64_t hash, const std::function<void()>& fn) {
    Shard& s = ShardOf(hash);
    MutexLock lock(&s.mu);
    fn();
  }

  // Retires chains left on deferred lists (T5) whose pins have drained.
  void SweepDeferred();

  // Tokens that hold a chain now (deferred ones included).
  std::size_t active_chains() const;

  // Test hook: checks T1/T2 at a quiescent point (no concurrent calls).
  void CheckInvariants() const;

 private:
  struct KeyRef {
    std::uint8_t kind;
    absl::string_view bytes;
    std::uint64_t hash;
  };
  struct KeyHash {
    std::size_t operator()(const KeyRef& k) const { return static_cast<std::size_t>(k.hash); }
  };
  struct KeyEq {
    bool operator()(const KeyRef& a, const KeyRef& b) const {
      return a.hash == b.hash && a.kind == b.kind && a.bytes == b.bytes;
    }
  };
  struct alignas(kCacheLine) Shard {
    mutable Mutex mu;
    absl::flat_hash_map<KeyRef, Chain*, KeyHash, KeyEq> map ABSL_GUARDED_BY(mu);
    absl::flat_hash_set<Chain*> deferred ABSL_GUARDED_BY(mu);
    std::vector<Chain*> free_chains ABSL_GUARDED_BY(mu);
    // Relaxed gauge, written under mu, read by stats without it.
    Atomic<std::int64_t> live{0};
  };
  struct HintSlot {
    Atomic<std::uint32_t> pins{0};
    Atomic<Chain*> chain{nullptr};
  };

  static KeyRef Ref(const TokenKey& k) {
    return KeyRef{k.kind, absl::string_view(k.bytes.data(), k.bytes.size()), k.hash};
  }
  Shard& ShardOf(std::uint64_t hash) { return shards_[hash & (kTokenShards - 1)]; }
  HintSlot& SlotOf(std::uint64_t hash) { return slots_[hash & (kHintSlots - 1)]; }

  bool PushLocked(Shard& s, HintSlot& slot, const TokenKey& key, Operation* op)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  // Runner: tries to empty the chain whose last node is x. True if emptied.
  bool TryRetire(Chain* c, Operation* x);
  void RetireLocked(Shard& s, Chain* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  void SweepDeferredLocked(Shard& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  static bool DrainPins(HintSlot& slot);

  std::unique_ptr<Shard[]> shards_;
  std::unique_ptr<HintSlot[]> slots_;
};

}  // namespace ordo::internal

#endif  // ORDO_CORE_SRC_TOKEN_MAP_H_
