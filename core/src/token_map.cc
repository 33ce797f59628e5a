#include "token_map.h"

#include <cstring>
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
// How long a retirer waits for a slot's pins to drain before deferring (T5).
constexpr int kDrainSpins = 2000;
}  // namespace

TokenKey MakeTokenKey(const Token& token, char (&scratch)[8]) {
  TokenKey k;
  k.kind = static_cast<std::uint8_t>(token.kind());
  if (token.kind() == Token::Kind::kInteger) {
    std::uint64_t v = token.integer();
    std::memcpy(scratch, &v, sizeof(v));
    k.bytes = std::string_view(scratch, sizeof(v));
    k.hash = Mix(v ^ 0x9e3779b97f4a7c15ULL);
  } else {
    k.bytes = token.text();
    k.hash = absl::Hash<absl::string_view>{}(absl::string_view(k.bytes.data(), k.bytes.size()));
  }
  return k;
}

TokenMap::TokenMap()
    : shards_(new Shard[kTokenShards]), slots_(new HintSlot[kHintSlots]) {}

TokenMap::~TokenMap() {
  for (std::size_t i = 0; i < kTokenShards; ++i) {
    Shard& s = shards_[i];
    MutexLock lock(&s.mu);
    for (auto& [key, chain] : s.map) delete chain;
    for (Chain* c : s.free_chains) delete c;
  }
}

bool TokenMap::Push(const TokenKey& key, Operation* op) {
  HintSlot& slot = SlotOf(key.hash);
  // seq_cst: T4's producer half (pin, then load the slot); pairs with the
  // store-then-load in TokenMap::TryRetire and TokenMap::SweepDeferredLocked.
  slot.pins.fetch_add(1, std::memory_order_seq_cst);
  ChaosPoint();
  // seq_cst for T4; its acquire half also makes the chain's key fields, written
  // before the locked publish in PushLocked, visible here.
  Chain* c = slot.chain.load(std::memory_order_seq_cst);
  if (c != nullptr && c->Matches(key)) {
    op->chain = c;
    bool activated = c->Push(op);
    // Release: our push happens-before a retirer that reads the dropped count
    // (its seq_cst load in DrainPins), so its CAS of tail_ sees our node (T4).
    slot.pins.fetch_sub(1, std::memory_order_release);
    return activated;
  }
  // Release as above (nothing was pushed; keeps the pairing uniform).
  slot.pins.fetch_sub(1, std::memory_order_release);
  Shard& s = ShardOf(key.hash);
  MutexLock lock(&s.mu);
  return PushLocked(s, slot, key, op);
}

bool TokenMap::PushLocked(Shard& s, HintSlot& slot, const TokenKey& key, Operation* op) {
  if (!s.deferred.empty()) SweepDeferredLocked(s);
  auto it = s.map.find(Ref(key));
  Chain* c;
  if (it != s.map.end()) {
    c = it->second;
  } else {
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
    c->policy_.store(static_cast<std::uint8_t>(FailurePolicy::kContinue),
                     std::memory_order_relaxed);
    c->halted_at_ = nullptr;
    c->deferred_ = false;
    s.map.emplace(Ref(c->key()), c);
    // Relaxed gauge.
    s.live.store(s.live.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  // Release: publishes the chain's key fields to lock-free readers (their
  // seq_cst load in Push). Evicts whatever chain sat there; it stays in the map.
  slot.chain.store(c, std::memory_order_release);
  op->chain = c;
  return c->Push(op);
}

Operation* TokenMap::Advance(Operation* x) {
  // Acquire: pairs with the release link in Chain::Push, so the next node's
  // fields (and its producer's writes before Submit) are visible.
  Operation* next = x->chain_next.load(std::memory_order_acquire);
  if (next != nullptr) return next;
  if (TryRetire(x->chain, x)) return nullptr;
  // A producer exchanged tail_ after x and is about to link (Chain C3): its next
  // step is the store we wait for.
  for (int spins = 0;; ++spins) {
    next = x->chain_next.load(std::memory_order_acquire);  // as above
    if (next != nullptr) return next;
    if (spins < 64) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
}

bool TokenMap::DrainPins(HintSlot& slot) {
  for (int i = 0; i < kDrainSpins; ++i) {
    // seq_cst: T4's retirer half (after the slot store); acquire half pairs with
    // the producers' release unpin in Push.
    if (slot.pins.load(std::memory_order_seq_cst) == 0) return true;
    if (i < 64) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
  return false;
}

bool TokenMap::TryRetire(Chain* c, Operation* x) {
  Shard& s = ShardOf(c->hash_);
  HintSlot& slot = SlotOf(c->hash_);
  MutexLock lock(&s.mu);
  // Relaxed read: the slot is written only under s.mu (T2), which we hold.
  const bool owned = slot.chain.load(std::memory_order_relaxed) == c;
  // seq_cst: T4's retirer half (store, then load pins in DrainPins).
  if (owned) slot.chain.store(nullptr, std::memory_order_seq_cst);
  ChaosPoint();
  const bool drained = DrainPins(slot);
  Operation* expected = x;
  // seq_cst: the emptying CAS that releases the activation (Chain C1). Its
  // release half pairs with the acquire of the exchange in Chain::Push, so what
  // x did happens-before the next activation; ordered after DrainPins for T4.
  if (!c->tail_.compare_exchange_strong(expected, nullptr, std::memory_order_seq_cst)) {
    // A producer pushed after x: keep running. Re-publish for the fast path.
    if (owned) slot.chain.store(c, std::memory_order_release);  // as in PushLocked
    return false;
  }
  c->head_.store(nullptr, std::memory_order_release);  // diagnostics only
  if (drained) {
    RetireLocked(s, c);
  } else if (!c->deferred_) {
    c->deferred_ = true;
    s.deferred.insert(c);
  }
  return true;
}

void TokenMap::RetireLocked(Shard& s, Chain* c) {
  s.map.erase(Ref(c->key()));
  if (c->deferred_) {
    s.deferred.erase(c);
    c->deferred_ = false;
  }
  s.live.store(s.live.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  // An idle token costs no memory: shrink a map that emptied out.
  if (s.map.capacity() > 256 && s.map.size() * 8 < s.map.capacity()) s.map.rehash(0);
  if (s.free_chains.size() < kShardChainCache) {
    s.free_chains.push_back(c);
  } else {
    delete c;
  }
}

void TokenMap::SweepDeferredLocked(Shard& s) {
  std::vector<Chain*> idle;
  for (Chain* c : s.deferred) idle.push_back(c);
  for (Chain* c : idle) {
    // seq_cst: ordered with the producers' exchange; a non-null tail means the
    // chain runs again and its runner will try to retire it.
    if (c->tail_.load(std::memory_order_seq_cst) != nullptr) {
      s.deferred.erase(c);
      c->deferred_ = false;
      continue;
    }
    HintSlot& slot = SlotOf(c->hash_);
    if (slot.chain.load(std::memory_order_relaxed) == c) {  // relaxed: under s.mu (T2)
      slot.chain.store(nullptr, std::memory_order_seq_cst);  // T4, as in TryRetire
    }
    if (!DrainPins(slot)) continue;
    // Pins drained after the slot was emptied: no producer can reach c but
    // through the lock we hold. An empty tail now means idle for good.
    if (c->tail_.load(std::memory_order_seq_cst) == nullptr) {
      RetireLocked(s, c);
    } else {
      s.deferred.erase(c);
      c->deferred_ = false;
    }
  }
}

void TokenMap::SweepDeferred() {
  for (std::size_t i = 0; i < kTokenShards; ++i) {
    Shard& s = shards_[i];
    MutexLock lock(&s.mu);
    if (!s.deferred.empty()) SweepDeferredLocked(s);
  }
}

void TokenMap::WithChainLocked(const TokenKey& key, const std::function<void(Chain*)>& fn) {
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
  for (std::size_t j = 0; j < kHintSlots; ++j) {
    Chain* c = slots_[j].chain.load(std::memory_order_acquire);
    ORDO_CHECK(slots_[j].pins.load(std::memory_order_acquire) == 0, "a pin outlived its push");
    if (c == nullptr) continue;
    Shard& s = shards_[c->hash_ & (kTokenShards - 1)];
    MutexLock lock(&s.mu);
    auto it = s.map.find(Ref(c->key()));
    ORDO_CHECK(it != s.map.end() && it->second == c, "T2: a hinted chain is not in the map");
  }
}

}  // namespace ordo::internal
