#include "token_map.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <thread>

#include "absl/hash/hash.h"

namespace ordo::internal {

namespace {
// A 64-bit finalizer (murmur3's fmix64) so integer keys spread over slots.
std::uint64_t Mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}
// How long a sweeper waits for a slot's pins to drain before leaving the chain (T5).
constexpr int kDrainSpins = 2000;
}  // namespace

std::uint64_t TokenTextHash(std::string_view text) {
  return absl::Hash<absl::string_view>{}(absl::string_view(text.data(), text.size()));
}

std::uint64_t TokenIntegerHash(std::uint64_t key) { return Mix(key ^ 0x9e3779b97f4a7c15ULL); }

std::uint64_t TokenHash(std::uint8_t kind, std::string_view bytes) {
  if (kind == static_cast<std::uint8_t>(Token::Kind::kInteger)) {
    std::uint64_t v;
    std::memcpy(&v, bytes.data(), sizeof(v));
    return TokenIntegerHash(v);
  }
  return TokenTextHash(bytes);
}

struct TokenAccess {
  static std::uint64_t Hash(const Token& t) { return t.hash_; }
};

TokenKey MakeTokenKey(const Token& token, char (&scratch)[8]) {
  TokenKey k;
  k.kind = static_cast<std::uint8_t>(token.kind());
  if (token.kind() == Token::Kind::kInteger) {
    const std::uint64_t v = token.integer();
    std::memcpy(scratch, &v, sizeof(v));
    k.bytes = std::string_view(scratch, sizeof(v));
  } else {
    k.bytes = token.text();
  }
  // The Token's own, computed when its key was set (token.h); 0 when it does
  // not know it (or when that is the hash: then computed again, the same).
  k.hash = TokenAccess::Hash(token);
  if (k.hash == 0) k.hash = TokenHash(k.kind, k.bytes);
  return k;
}

TokenMap::TokenMap()
    : shards_(new Shard[kTokenShards]), buckets_(new HintBucket[kHintBuckets]) {
  // Room for every chain a shard keeps for reuse, so that a sweep (which may
  // run where nothing could handle an exception: a parking worker, WaitIdle, the
  // destructor) never allocates to retire one.
  for (std::size_t i = 0; i < kTokenShards; ++i) {
    MutexLock lock(&shards_[i].mu);
    shards_[i].free_chains.reserve(kShardChainCache);
  }
}

TokenMap::~TokenMap() {
  for (std::size_t i = 0; i < kTokenShards; ++i) {
    Shard& s = shards_[i];
    MutexLock lock(&s.mu);
    for (auto& [key, chain] : s.map) delete chain;
    for (Chain* c : s.free_chains) delete c;
  }
}

bool TokenMap::Push(const TokenKey& key, Operation* op) {
  HintBucket& b = BucketOf(key.hash);
  const std::uint32_t tag = TagOf(key.hash);
  for (HintSlot& slot : b.way) {
    // Relaxed: the tag is a filter (token_map.h); the chain's key decides.
    if (slot.tag.load(std::memory_order_relaxed) != tag) continue;
    // seq_cst: T4's producer half (pin, then load the way); pairs with the
    // store-then-load in TokenMap::SweepIdleLocked.
    slot.pins.fetch_add(1, std::memory_order_seq_cst);
    ChaosPoint();
    // seq_cst for T4; its acquire half also makes the chain's key fields, written
    // before the locked publish in PushLocked, visible here.
    Chain* c = slot.chain.load(std::memory_order_seq_cst);
    if (c != nullptr && c->Matches(key)) {
      op->chain = c;
      ChaosPoint();  // pinned with c loaded: a sweeper must wait for us (T4, T5)
      TestPoint(TestPointId::kTokenPushPinned, op);
      bool activated = c->Push(op);
      // Release: our push happens-before a sweeper that reads the dropped count
      // (its seq_cst load in DrainPins), so its load of tail_ sees our node (T4).
      slot.pins.fetch_sub(1, std::memory_order_release);
      return activated;
    }
    // Release as above (nothing was pushed; keeps the pairing uniform).
    slot.pins.fetch_sub(1, std::memory_order_release);
    break;  // the way with our tag holds another chain, or none: take the lock
  }
  Shard& s = ShardOf(key.hash);
  MutexLock lock(&s.mu);
  return PushLocked(s, b, key, op);
}

bool TokenMap::PushLocked(Shard& s, HintBucket& b, const TokenKey& key, Operation* op) {
  auto it = s.map.find(Ref(key));
  Chain* c;
  if (it != s.map.end()) {
    c = it->second;
  } else {
    if (s.map.size() >= s.sweep_mark) {
      // Amortised: the next sweep waits until the shard doubles again.
      SweepIdleLocked(s);
      s.sweep_mark = std::max(kShardSweepMark, 2 * s.map.size());
    }
    if (!s.free_chains.empty()) {
      c = s.free_chains.back();
      s.free_chains.pop_back();
    } else {
      c = new Chain();
    }
    c->token_.assign(key.bytes.data(), key.bytes.size());
    c->hash_ = key.hash;
    c->kind_ = key.kind;
    // Relaxed: the chain is private until the locked insert and the release
    // publish below.
    c->tail_.store(nullptr, std::memory_order_relaxed);
    c->head_.store(nullptr, std::memory_order_relaxed);
    // Relaxed: a walker withdraws its hazard before it lets the shard lock go
    // (Chain::PinHead), and a retired chain is found again only under it.
    ORDO_DCHECK(c->hazard_.load(std::memory_order_relaxed) == nullptr,
                "a chain retired with a walker's hazard still named");
    c->halted_at_ = nullptr;
    c->recent_.store(false, std::memory_order_relaxed);  // private until published
    s.map.emplace(Ref(c->key()), c);
    // Relaxed gauge.
    s.live.store(s.live.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  // Into the bucket, once (T2): the way that holds c already, else an empty way,
  // else one picked by the node's address (cheap, and no way is always the victim).
  // Relaxed loads: every slot write is under s.mu, which we hold.
  HintSlot* into = nullptr;
  HintSlot* empty = nullptr;
  for (HintSlot& slot : b.way) {
    Chain* held = slot.chain.load(std::memory_order_relaxed);
    if (held == c) {
      into = &slot;
      break;
    }
    if (held == nullptr && empty == nullptr) empty = &slot;
  }
  if (into == nullptr) {
    into = empty != nullptr
               ? empty
               : &b.way[(reinterpret_cast<std::uintptr_t>(op) / kCacheLine) & (kHintWays - 1)];
    // Tag first (relaxed, a filter), then the chain. seq_cst: its release half
    // publishes the chain's key fields to lock-free readers (their seq_cst load in
    // Push); seq_cst itself because an eviction is a removal too (T4): the
    // sweeper's pin loads must be ordered after a producer's pin of this way
    // whenever that producer loaded the chain evicted here. Rare, under the lock.
    // Evicts whatever chain sat there; it stays in the map.
    into->tag.store(TagOf(key.hash), std::memory_order_relaxed);
    into->chain.store(c, std::memory_order_seq_cst);
  }
  op->chain = c;
  return c->Push(op);
}

Operation* TokenMap::Advance(Operation* x) {
  // Acquire: pairs with the release link in Chain::Push, so the next node's
  // fields (and its producer's writes before Submit) are visible.
  Operation* next = x->chain_next.load(std::memory_order_acquire);
  if (next != nullptr) return next;
  if (TryEmpty(x->chain, x)) return nullptr;
  // A producer exchanged tail_ after x and is about to link (Chain C3): its next
  // step is the store we wait for.
  for (int spins = 0;; ++spins) {
    next = x->chain_next.load(std::memory_order_acquire);  // as above
    if (next != nullptr) return next;
    TestPoint(TestPointId::kAdvanceWaitsForLink, x);
    if (spins < 64) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
}

bool TokenMap::TryEmpty(Chain* c, Operation* x) {
  // T3 (a), seq_cst: the runner's half of the hazard protocol (store head_, then
  // load hazard_); pairs with the walker's store of hazard_ then load of head_ in
  // Chain::PinHead. No producer writes head_ meanwhile: only the one that
  // activates an empty chain does, and the chain is not empty yet.
  c->head_.store(nullptr, std::memory_order_seq_cst);
  // Relaxed: a hint for parking sweeps, set before (c), after which we must not
  // touch the chain (T3).
  c->recent_.store(true, std::memory_order_relaxed);
  // T3 (b), seq_cst as above: a walker that named x before our store finishes
  // its walk (it holds the shard lock, and waits on nothing a runner holds).
  while (c->hazard_.load(std::memory_order_seq_cst) == x) std::this_thread::yield();
  ChaosPoint();
  Operation* expected = x;
  // T3 (c), seq_cst: the emptying CAS that releases the activation (Chain C1).
  // Its release half pairs with the acquire of the exchange in Chain::Push, so
  // what x did happens-before the next activation; seq_cst orders it with a
  // sweeper's load of tail_ (T5). If it fails, a producer pushed behind x: the
  // caller waits for the link and stores the next head.
  return c->tail_.compare_exchange_strong(expected, nullptr, std::memory_order_seq_cst);
}

bool TokenMap::DrainPins(HintBucket& b) {
  for (int i = 0; i < kDrainSpins; ++i) {
    // seq_cst: T4's sweeper half (after the way's store); acquire half pairs with
    // the producers' release unpin in Push. Every way (T4).
    bool pinned = false;
    for (HintSlot& slot : b.way) pinned |= slot.pins.load(std::memory_order_seq_cst) != 0;
    if (!pinned) return true;
    if (i < 64) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
  return false;
}

void TokenMap::RecycleLocked(Shard& s, Chain* c) {
  s.live.store(s.live.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  if (s.free_chains.size() < kShardChainCache) {
    s.free_chains.push_back(c);  // reserved (TokenMap::TokenMap): allocates nothing
  } else {
    delete c;
  }
}

std::size_t TokenMap::SweepIdleLocked(Shard& s, bool spare_recent, std::size_t* spared) {
  std::size_t retired = 0;
  // Erasing through the iterator keeps the others valid (no rehash on erase).
  for (auto it = s.map.begin(); it != s.map.end();) {
    Chain* c = it->second;
    // Relaxed: a first filter; the decision is the seq_cst load below.
    if (c->tail_.load(std::memory_order_relaxed) != nullptr) {
      ++it;
      continue;
    }
    // Relaxed: a hint (Chain::recent_); safety is T5's, below, when we retire.
    if (spare_recent && c->recent_.load(std::memory_order_relaxed)) {
      c->recent_.store(false, std::memory_order_relaxed);
      if (spared != nullptr) ++*spared;
      ++it;
      continue;
    }
    HintBucket& b = BucketOf(c->hash_);
    // T5 (a). Relaxed reads: slots are written only under s.mu (T2), which we
    // hold. seq_cst store: T4's sweeper half (store, then load pins).
    for (HintSlot& slot : b.way) {
      if (slot.chain.load(std::memory_order_relaxed) == c) {
        slot.chain.store(nullptr, std::memory_order_seq_cst);
        break;  // in one way at most (T2)
      }
    }
    ChaosPoint();
    // T5 (b), then (c), seq_cst: ordered after the drain. Pins drained after the
    // bucket lost c, so no producer can reach c but through the lock we hold;
    // an empty tail now means idle for good, and its runner is done with it (T3).
    // Undrained pins: c stays, valid, for a later sweep.
    if (DrainPins(b) && c->tail_.load(std::memory_order_seq_cst) == nullptr) {
      s.map.erase(it++);
      RecycleLocked(s, c);
      ++retired;
    } else {
      ++it;
    }
  }
  // An idle token costs no memory: shrink a map that emptied out. Into a new
  // map, swapped in. Debian's absl is not safe against a failed allocation as
  // a table grows (rehash, reserve and a growing insert record the new
  // capacity first, and the map is then broken, its destructor included), so
  // the new table is allocated by its constructor alone, whose throw leaves no
  // object behind, and sized so that the inserts never grow it (a table of
  // capacity c holds 7c/8 before growing; 2n + 16 is still under half the old
  // one). Out of memory keeps the larger map as it was: shrinking is optional,
  // and a later sweep tries again.
  if (s.map.capacity() > 256 && s.map.size() * 8 < s.map.capacity()) {
    try {
      decltype(s.map) smaller(2 * s.map.size() + 16);
      smaller.insert(s.map.begin(), s.map.end());  // room made: allocates nothing
      s.map.swap(smaller);
    } catch (const std::bad_alloc&) {
    }
  }
  return retired;
}

std::size_t TokenMap::SweepIdle(bool spare_recent, std::size_t* spared) {
  std::size_t retired = 0;
  for (std::size_t i = 0; i < kTokenShards; ++i) {
    Shard& s = shards_[i];
    if (s.live.load(std::memory_order_relaxed) == 0) continue;  // relaxed gauge: a hint
    MutexLock lock(&s.mu);
    retired += SweepIdleLocked(s, spare_recent, spared);
    s.sweep_mark = kShardSweepMark;
  }
  return retired;
}

bool TokenMap::SweepIdleStep(absl::FunctionRef<bool()> yield, std::size_t* spared) {
  bool swept_one = false;
  for (std::size_t i = sweep_next_.load(std::memory_order_relaxed); i < kTokenShards; ++i) {
    Shard& s = shards_[i];
    if (s.live.load(std::memory_order_relaxed) == 0) continue;  // relaxed gauge: a hint
    if (swept_one && yield()) {
      sweep_next_.store(i, std::memory_order_relaxed);  // a cursor (above)
      return false;
    }
    MutexLock lock(&s.mu);
    SweepIdleLocked(s, /*spare_recent=*/true, spared);
    s.sweep_mark = kShardSweepMark;
    swept_one = true;
  }
  sweep_next_.store(0, std::memory_order_relaxed);  // the round is done
  return true;
}

void TokenMap::WithChainLocked(const TokenKey& key, absl::FunctionRef<void(Chain*)> fn) {
  Shard& s = ShardOf(key.hash);
  MutexLock lock(&s.mu);
  auto it = s.map.find(Ref(key));
  fn(it == s.map.end() ? nullptr : it->second);
}

std::size_t TokenMap::active_chains() const {
  std::int64_t n = 0;
  for (std::size_t i = 0; i < kTokenShards; ++i) {
    n += shards_[i].live.load(std::memory_order_relaxed);  // relaxed gauge
  }
  return n < 0 ? 0 : static_cast<std::size_t>(n);
}

void TokenMap::CheckInvariants() const {
  for (std::size_t i = 0; i < kTokenShards; ++i) {
    Shard& s = shards_[i];
    MutexLock lock(&s.mu);
    ORDO_CHECK(static_cast<std::int64_t>(s.map.size()) == s.live.load(std::memory_order_relaxed),
               "shard live count differs from its map");
    for (const auto& [key, c] : s.map) {
      ORDO_CHECK(c->Matches(TokenKey{key.kind, std::string_view(key.bytes.data(), key.bytes.size()),
                                     key.hash}),
                 "map key differs from its chain's token");
      ORDO_CHECK((c->hash_ & (kTokenShards - 1)) == i, "chain in the wrong shard");
    }
  }
  for (std::size_t j = 0; j < kHintBuckets; ++j) {
    for (std::size_t k = 0; k < kHintWays; ++k) {
      const HintSlot& slot = buckets_[j].way[k];
      Chain* c = slot.chain.load(std::memory_order_acquire);
      ORDO_CHECK(slot.pins.load(std::memory_order_acquire) == 0, "a pin outlived its push");
      if (c == nullptr) continue;
      ORDO_CHECK((c->hash_ & (kHintBuckets - 1)) == j, "T2: a chain hinted in another bucket");
      for (std::size_t o = k + 1; o < kHintWays; ++o) {
        ORDO_CHECK(buckets_[j].way[o].chain.load(std::memory_order_acquire) != c,
                   "T2: a chain in two ways of its bucket");
      }
      Shard& s = shards_[c->hash_ & (kTokenShards - 1)];
      MutexLock lock(&s.mu);
      auto it = s.map.find(Ref(c->key()));
      ORDO_CHECK(it != s.map.end() && it->second == c, "T2: a hinted chain is not in the map");
    }
  }
}

}  // namespace ordo::internal
