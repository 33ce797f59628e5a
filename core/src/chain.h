// chain.h: the per-token queue of operations, an intrusive MPSC list.
//
// Roles: producers are any threads submitting with this token; the runner is the
// one thread holding the chain's activation (a worker, or the party that makes a
// held head runnable again).
// Invariants
//   C1  tail_ == nullptr  <=>  the chain is idle and nobody holds the activation.
//   C2  The producer whose exchange returns nullptr takes the activation: it makes
//       its operation the head; nobody else may.
//   C3  A node is not recycled while it is tail_ or its chain_next is unset and
//       a producer exchanged it out of tail_ (the runner waits for that link).
//   C4  The runner moves to node N+1 only after node N is terminal; so at most one
//       operation of the chain is in progress, and they start in push order.
//   C5  The push order is the modification order of tail_: if Push(A)
//       happens-before Push(B), A's exchange precedes B's, so A is ahead of B.
// Algorithm: Vyukov's intrusive MPSC queue, without a stub node: the empty state is
// tail_ == nullptr, and the CAS that empties it (TokenMap::Advance) is the runner's
// release of the activation.
// Rejected: a mutex per chain (a preempted holder stalls every producer of a hot
// token); a chain object per token kept forever (an idle token must cost 0 bytes:
// idle chains are swept, see token_map.h).
#ifndef ORDO_CORE_SRC_CHAIN_H_
#define ORDO_CORE_SRC_CHAIN_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "operation.h"
#include "ordo/engine.h"
#include "sync.h"

namespace ordo::internal {

// A token as the map sees it: kind, bytes (the text, or the integer's 8 bytes)
// and a well-mixed 64-bit hash whose low bits pick the hint slot and shard.
struct TokenKey {
  std::uint8_t kind = 0;  // Token::Kind
  std::string_view bytes;
  std::uint64_t hash = 0;
};

// Builds the key of `token`; `scratch` holds an integer's bytes.
TokenKey MakeTokenKey(const Token& token, char (&scratch)[8]);
// The hash MakeTokenKey gives a key of this kind and these bytes (an integer's
// 8 bytes, or the text).
std::uint64_t TokenHash(std::uint8_t kind, std::string_view bytes);

// Line-aligned: a producer's push reads the key fields (Matches), exchanges
// tail_ and stores head_, all in the first 64 bytes, so one line per push. At
// malloc's 16-byte alignment those fields straddled two lines for most chains:
// W2 (10,000 tokens) was 109-112 ns against 104-106 aligned, in 6 of 6 paired
// runs (bench/HISTORY.md, twenty-second session).
class alignas(kCacheLine) Chain {
 public:
  // Producer: appends `op` (C5). True if the chain was idle and the caller took
  // the activation (C2).
  bool Push(Operation* op) {
    ChaosPoint();
    // Relaxed: published by the exchange below (release half).
    op->chain_next.store(nullptr, std::memory_order_relaxed);
    // acq_rel, pairing with this same exchange in neighbouring producers and with
    // the runner's emptying CAS in TokenMap::TryEmpty:
    //   release: our reset above is ordered before a later producer links onto op;
    //   acquire: when prev == nullptr, everything the last runner did (the previous
    //   operation's writes) happens-before our activation of op.
    Operation* prev = tail_.exchange(op, std::memory_order_acq_rel);
    if (prev == nullptr) return true;
    ChaosPoint();
    TestPoint(TestPointId::kChainLinkPending, op);
    // Release: publishes *op to the runner; pairs with the acquire load of
    // chain_next in TokenMap::Advance.
    prev->chain_next.store(op, std::memory_order_release);
    return false;
  }

  bool Matches(const TokenKey& key) const {
    return hash_ == key.hash && kind_ == key.kind && token_ == key.bytes;
  }
  TokenKey key() const { return TokenKey{kind_, token_, hash_}; }

  // --- fixed while the chain is reachable (set under the shard lock before it
  // is published) ---
  std::string token_;
  std::uint64_t hash_ = 0;
  std::uint8_t kind_ = 0;

  // The tail of the list (C1). See Push and TokenMap::TryEmpty.
  Atomic<Operation*> tail_{nullptr};
  // The current head, for diagnostics (Explain, TokenInfo). Release on store by
  // whoever makes a node head; acquire on load.
  Atomic<Operation*> head_{nullptr};
  // FailurePolicy::kHalt: the failed head the chain is held at, until
  // ResumeToken or Shutdown schedules it again (a worker then moves the chain
  // on). Under the shard lock, set and cleared with its held-registry entry
  // (EngineImpl, R2).
  Operation* halted_at_ = nullptr;
  // ResumeTokens so far (F1 in worker.cc): bumped by ResumeToken under the shard
  // lock; a runner that read it before publishing a failure halts the chain only
  // if no ResumeToken came since. Relaxed everywhere: the lock orders the bump
  // and HaltChain's read, and coherence the runner's earlier read (F1).
  Atomic<std::uint32_t> resume_epoch_{0};
  // The head a token control is walking from (hazard pointer, one per chain).
  // Protocol (seq_cst on both sides): the walker stores hazard_ = h, then re-reads
  // head_ == h; the runner stores head_ = next (nullptr when it empties the
  // chain), then reads hazard_ and does not release its old head, nor empty the
  // chain, while hazard_ names it. Walkers hold the shard lock, so one hazard
  // slot suffices. See PinHead below (the walkers: ForEachInChain, Explain),
  // EngineImpl::ReleaseChainNode, and TokenMap::TryEmpty (T3). The producer
  // that activates an idle chain stores its head with release only: no walker
  // can hold a hazard on an idle chain, and that store happens-before the
  // runner's next seq_cst store (EngineImpl::BecomeHead).
  Atomic<Operation*> hazard_{nullptr};

  // The walker's half of the hazard protocol (above), under the shard lock:
  // names the head in hazard_ and returns it once head_ still names it, so its
  // runner neither releases it nor moves the chain past it until
  // WithdrawHazard. Returns nullptr, with no hazard left named, when the chain
  // has no head now (its producer has not made it yet, or its runner is
  // emptying the chain). Every return of a head must be followed by
  // WithdrawHazard (a HazardHold) before the shard lock is let go: a hazard
  // left behind stalls the runner for ever (Explain once returned with one when
  // it found the head had moved on to its own operation).
  Operation* PinHead() {
    for (;;) {
      // seq_cst, all three: the walker's store hazard_ then re-read head_,
      // against the runner's store head_ then load hazard_ (ReleaseChainNode,
      // TokenMap T3); one of the two sees the other's store.
      Operation* h = head_.load(std::memory_order_seq_cst);
      if (h == nullptr) return nullptr;
      hazard_.store(h, std::memory_order_seq_cst);
      ChaosPoint();  // the runner may move the head on between our two looks
      if (head_.load(std::memory_order_seq_cst) == h) return h;
      // The head moved on (or its runner is emptying the chain and waits for
      // the hazard to leave h): withdrawn before looking again, or that runner
      // would wait for us while we wait for it.
      WithdrawHazard();
    }
  }
  // seq_cst, as the store in PinHead: the runner's seq_cst load of hazard_ must
  // see the withdrawal.
  void WithdrawHazard() { hazard_.store(nullptr, std::memory_order_seq_cst); }
  // Withdraws a pinned head's hazard as it goes out of scope, on every way out
  // of the walk: one that threw (an allocation failing in a token control's
  // walk) once left the hazard named, and the runner waited for it for ever.
  class HazardHold {
   public:
    explicit HazardHold(Chain* c) : c_(c) {}
    HazardHold(const HazardHold&) = delete;
    HazardHold& operator=(const HazardHold&) = delete;
    ~HazardHold() { c_->WithdrawHazard(); }

   private:
    Chain* const c_;
  };
  // Emptied since the last parking sweep (token_map.h, "Lazy retirement"): set by
  // the runner before its emptying CAS (T3), cleared by a parking sweep that
  // spares the chain. Relaxed on both sides: it decides only how soon an idle
  // chain is retired, never whether retiring it is safe (T5 decides that).
  Atomic<bool> recent_{false};
};
static_assert(offsetof(Chain, head_) + sizeof(Chain::head_) <= kCacheLine,
              "a push touches one line of its chain: the key, tail_ and head_");

}  // namespace ordo::internal

#endif  // ORDO_CORE_SRC_CHAIN_H_
