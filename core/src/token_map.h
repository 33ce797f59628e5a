// token_map.h: the sharded token -> chain map; chain creation and retirement.
//
// Roles: producers (Submit on any thread) look a token up and push; the runner of
// a chain (TokenMap::Advance) moves it on and empties it when it runs dry; a
// sweeper (a worker about to park, WaitIdle, a shard that grew) retires idle
// chains.
//
// Structure. The authoritative map is sharded (kTokenShards absl::flat_hash_maps,
// each under its own mutex). In front of it sits a set-associative cache of
// kHintSlots hint slots, each {pins, tag, chain}, in buckets of kHintWays that
// fill one cache line, read without a lock: a producer whose token's chain is in
// a way of its bucket (the way whose tag, 32 bits of the token's hash, matches)
// pushes with two RMWs on that way and one exchange on the chain, and no lock.
// Bucket and shard come from the same hash bits (the bucket count is a multiple
// of kTokenShards), so one shard lock guards every write to a given bucket. The
// tag is a filter read with no ordering: a stale one costs a trip to the locked
// path or a pin for nothing, never a wrong chain (the chain's key decides).
//
// Lazy retirement. A chain that runs dry is emptied without a lock and stays in
// the map and its hint slot, idle, so a token used again soon (the common case:
// many tokens, each visited now and then) is pushed to without a lock on either
// side. Idle chains are retired by sweeps: when a shard grows past its sweep mark
// (amortised: the mark then doubles), when a worker runs out of work and is about
// to park, at WaitIdle, and at destruction. So an idle engine keeps no chain, and
// a busy one keeps at most one per recently used token. A parking worker's sweep
// (at most one per kIdleSweepInterval) spares a chain emptied since the previous
// one (Chain::recent_) and clears the mark, so a token in steady use keeps its
// chain across the short idle spells of a busy engine (W2's 10,000 tokens were
// all re-created under the shard lock after every such sweep); the others are
// full sweeps, and the parked worker sweeps again one interval later, so an idle
// engine still ends with none. A parking worker sweeps a shard at a time and
// stops when work shows, resuming at its next park (SweepIdleStep).
//
// Invariants
//   T1  At most one chain per token is reachable (in its shard's map, or in a hint
//       slot, or pinned by a producer that loaded it from a slot). Chains are
//       created only under the shard lock, after a miss in the map.
//   T2  A slot's chain (and tag) is written only under its shard's lock; a chain
//       in a slot is also in the map, and in at most one way of its bucket (the
//       only bucket it can be in: its hash picks it).
//   T3  The runner empties its chain, whose last node is x, by (a) storing
//       head_ = nullptr, (b) waiting until no walker names x in hazard_, (c) a CAS
//       of tail_ from x to nullptr (Chain C1). If (c) fails a producer pushed
//       behind x and the runner goes on. After (c) succeeds the runner touches
//       the chain no more, so a sweeper may retire it at once. (a)+(b) are the
//       runner's half of the hazard protocol (Chain::hazard_): a walker that
//       stored hazard_ = x before (b) read it is waited for; one that stored it
//       after re-reads head_ == nullptr and does not walk from x.
//   T4  Dekker pair, both sides seq_cst: a producer increments a way's pins, then
//       loads the way's chain; the sweeper stores nullptr to the way that holds
//       the chain (if one does), then loads the pins of every way of the bucket.
//       So a producer either sees the way emptied (and goes to the locked path,
//       which waits for the sweeper) or is seen by the sweeper (which waits for
//       its pin to drop). Every way, not only the one holding the chain: a
//       producer may have loaded it from a way it was evicted from since (an
//       eviction moves no pins and, like every slot write, happens under the
//       lock the sweeper holds, so after the sweeper's store no way holds the
//       chain). A producer that pushed and unpinned before the sweeper's load
//       made tail_ non-null, so the sweeper sees the chain busy.
//   T5  A chain is retired (removed from the map, recycled) only by a sweeper,
//       under the shard lock, after (a) removing it from its bucket, (b) seeing
//       the pins of every way of the bucket at 0, and (c) then seeing tail_ ==
//       nullptr. If the pins do not drain within a bound (a producer preempted
//       while pinned), the chain stays, valid, for a later sweep.
//
// Rejected: a lock per lookup (the hot token's producers would serialize on it);
// a lock-free resizable map (needs safe memory reclamation of its arrays, and a
// hot token is served by the hint slot anyway); retiring a chain the moment it
// runs dry (with many tokens nearly every operation then created and retired a
// chain under the shard lock: two locked map updates per operation).
#ifndef ORDO_CORE_SRC_TOKEN_MAP_H_
#define ORDO_CORE_SRC_TOKEN_MAP_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
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

  // Producer hints for a Push of `hash` a few submissions from now (a batch):
  // FetchBucket brings the hint bucket's line; FetchChain, once that line is
  // here, the line of the chain its tag names (Push compares its key, then
  // exchanges its tail, all in the chain's first line: chain.h), for writing.
  // Hints only: they read without a pin (a chain they name may be swept
  // meanwhile; a prefetch of its memory is harmless) and change nothing.
  void FetchBucket(std::uint64_t hash) { PrefetchForWrite(&BucketOf(hash)); }
  void FetchChain(std::uint64_t hash) {
    const std::uint32_t tag = TagOf(hash);
    for (HintSlot& slot : BucketOf(hash).way) {
      // Relaxed: a hint, as above.
      if (slot.tag.load(std::memory_order_relaxed) == tag) {
        const char* c = reinterpret_cast<const char*>(slot.chain.load(std::memory_order_relaxed));
        if (c != nullptr) PrefetchForWrite(c);
        return;
      }
    }
  }

  // Runner: `x`, the head of its chain, is finished with. Returns the next node
  // (waiting for an in-flight link if need be), or nullptr if x was the last: the
  // chain is then idle (T3; no walker holds x) and may be retired by a sweep at
  // any moment: the caller must not touch x->chain after nullptr.
  Operation* Advance(Operation* x);

  // Calls fn(chain) under the token's shard lock with the token's chain, or with
  // nullptr if the token is idle. While fn runs the chain is not retired. A
  // FunctionRef: a halting runner calls it per failure, and a std::function of
  // its captures allocated each time (out of memory there ended the process).
  void WithChainLocked(const TokenKey& key, absl::FunctionRef<void(Chain*)> fn);

  // Calls fn() under the shard lock of the token whose hash is `hash`: no chain
  // of that shard is retired meanwhile.
  void WithShardLocked(std::uint64_t hash, const std::function<void()>& fn) {
    Shard& s = ShardOf(hash);
    MutexLock lock(&s.mu);
    fn();
  }

  // Retires every idle chain (T5) whose slot's pins drain; returns how many.
  // With spare_recent, a chain emptied since the previous such sweep is spared
  // instead (its mark cleared) and counted in *spared.
  std::size_t SweepIdle(bool spare_recent = false, std::size_t* spared = nullptr);

  // A parking worker's sweep (spare_recent, as above), in steps that work can
  // interrupt: before each shard after the first it swept, it calls `yield`, and
  // stops if that returns true, keeping its place for the next call. True when
  // the call finished a round over every shard. A sweep of every shard at once
  // held its worker for as long as it took (1,000 idle chains: each a cache
  // miss), and the parker counted that worker as still searching, so an
  // operation submitted meanwhile woke nobody and waited for the sweep. One
  // step at a time: the caller keeps steps from overlapping (sweep_next_).
  bool SweepIdleStep(absl::FunctionRef<bool()> yield, std::size_t* spared);
  // True between a SweepIdleStep that stopped early and the one that ends its round.
  bool sweep_underway() const { return sweep_next_.load(std::memory_order_relaxed) != 0; }

  // Chains in the map: tokens with operations, and idle chains not yet swept.
  std::size_t active_chains() const;

  // Test hook: checks T1/T2 at a quiescent point (no concurrent calls).
  void CheckInvariants() const;

 private:
  struct KeyRef {
    std::uint8_t kind;
    absl::string_view bytes;
    std::uint64_t hash;
  };
  // The map takes its control-byte tag from the hash's low 7 bits, but in one
  // shard the low log2(kTokenShards) bits are all the same (ShardOf): the tag
  // then took 2 values, so about half of a probe group's slots matched and
  // were compared (a cache miss each). Rotated, the tag comes from bits the
  // shard does not fix.
  struct KeyHash {
    std::size_t operator()(const KeyRef& k) const {
      return static_cast<std::size_t>(std::rotr(k.hash, std::countr_zero(kTokenShards)));
    }
  };
  struct KeyEq {
    bool operator()(const KeyRef& a, const KeyRef& b) const {
      return a.hash == b.hash && a.kind == b.kind && a.bytes == b.bytes;
    }
  };
  struct alignas(kCacheLine) Shard {
    mutable Mutex mu;
    absl::flat_hash_map<KeyRef, Chain*, KeyHash, KeyEq> map ABSL_GUARDED_BY(mu);
    std::vector<Chain*> free_chains ABSL_GUARDED_BY(mu);
    // Creating a chain when the map holds this many sweeps the shard first.
    std::size_t sweep_mark ABSL_GUARDED_BY(mu) = kShardSweepMark;
    // Relaxed gauge, written under mu, read by stats without it.
    Atomic<std::int64_t> live{0};
  };
  struct HintSlot {
    Atomic<std::uint32_t> pins{0};
    // 32 bits of the hash of the token whose chain this way holds (or held): a
    // filter, relaxed; written under the shard lock with the chain (T2).
    Atomic<std::uint32_t> tag{0};
    Atomic<Chain*> chain{nullptr};
  };
  struct alignas(kCacheLine) HintBucket {
    HintSlot way[kHintWays];
  };
  static constexpr std::size_t kHintBuckets = kHintSlots / kHintWays;

  static KeyRef Ref(const TokenKey& k) {
    return KeyRef{k.kind, absl::string_view(k.bytes.data(), k.bytes.size()), k.hash};
  }
  Shard& ShardOf(std::uint64_t hash) { return shards_[hash & (kTokenShards - 1)]; }
  HintBucket& BucketOf(std::uint64_t hash) { return buckets_[hash & (kHintBuckets - 1)]; }
  static std::uint32_t TagOf(std::uint64_t hash) { return static_cast<std::uint32_t>(hash >> 32); }

  bool PushLocked(Shard& s, HintBucket& b, const TokenKey& key, Operation* op)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  // Runner: tries to empty the chain whose last node is x (T3). True if emptied.
  static bool TryEmpty(Chain* c, Operation* x);
  // Counts c out of the shard and keeps it for reuse, or frees it.
  void RecycleLocked(Shard& s, Chain* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  std::size_t SweepIdleLocked(Shard& s, bool spare_recent = false,
                              std::size_t* spared = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  // T5 (b): true once every way of b shows no pin.
  static bool DrainPins(HintBucket& b);

  std::unique_ptr<Shard[]> shards_;
  std::unique_ptr<HintBucket[]> buckets_;
  // The shard a parking round resumes at (SweepIdleStep); 0 when none is under
  // way. Relaxed: a cursor that publishes no data. Callers run one step at a
  // time and order the steps themselves (EngineImpl::sweeping_): two steps at
  // once could sweep one shard twice in a round, retiring what the first
  // sweep spared.
  Atomic<std::size_t> sweep_next_{0};
};

}  // namespace ordo::internal

#endif  // ORDO_CORE_SRC_TOKEN_MAP_H_
