// sync.h: the atomics vocabulary of core/src, cache-line helpers, checks, and the
// futex wait/wake the parker and Handle::Wait share.
#ifndef ORDO_CORE_SRC_SYNC_H_
#define ORDO_CORE_SRC_SYNC_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>

#include "absl/base/thread_annotations.h"

namespace ordo::internal {

// core/src spells every atomic Atomic<T>. The chaos build (ORDO_CHAOS) adds
// ChaosPoint() calls at protocol steps, which sometimes yield to widen windows.
template <typename T>
using Atomic = std::atomic<T>;

#ifdef ORDO_CHAOS
void ChaosPoint();
#else
inline void ChaosPoint() {}
#endif

// Test points (ORDO_TEST_POINTS: the debug, small-world and sanitizer presets,
// never a release build): places between two steps of a protocol where a test
// may hold a thread, to make a race's window certain rather than likely
// (tests/race_test.cc). The test's hook is called with the point and the
// operation there; without ORDO_TEST_POINTS a test point is nothing.
enum class TestPointId : int {
  // worker.cc, RunItem: the runner has read op's references (its sole-run
  // decision, U1) and not yet its state word.
  kRunItemRead,
  // worker.cc, RunItem: the runner has let go of an independent op (it may be
  // freed: the hook must not read it, only compare its address).
  kRunItemReleased,
  // engine_impl.cc, the Shutdown sweep of the wheel: op canceled (or found
  // started), the sweep's reference still held.
  kShutdownSweepCanceled,
  // engine_impl.cc, RequestCancel: the cancel request stored (the timer lock
  // held), op's state not yet read again.
  kCancelRequested,
  // engine_impl.cc, Explain: the walk of op's chain done (no lock held), op's
  // state not yet read again.
  kExplainWalked,
  // engine_impl.cc, SpawnNextOccurrence: op's next occurrence made and
  // published (armed or queued; no lock held), not yet op's successor (S2).
  kSeriesNextMade,
  // engine_impl.cc, PlaceCallable: a submit's callable constructed in its node
  // (the user's constructor has run); here the argument is the submit's
  // Stripe, not an operation.
  kCallablePlaced,
  // chain.h, Chain::Push: op is the chain's tail (exchanged), not yet linked
  // from its predecessor (C3).
  kChainLinkPending,
  // token_map.cc, TokenMap::Advance: the runner of x found no link and could
  // not empty the chain; it waits for a producer's link (C3). Called on every
  // turn of the wait.
  kAdvanceWaitsForLink,
  // token_map.cc, TokenMap::Push: op's producer has pinned its hint slot and
  // found its chain there (op->chain set), not yet pushed (T4, T5).
  kTokenPushPinned,
  // worker.cc, BecomePrivateHead: op, which activated its idle chain, has its
  // head and owner bits stored, and its chain's head_ does not name it yet
  // (operation.h H6).
  kPrivateHeadBitsStored,
  // engine_impl.cc, ForEachInChain: the token's chain is active but has no
  // head yet (a producer between its push and its head, or a runner emptying
  // it); the walker waits. The argument is the Chain, not an operation.
  // Called on every turn of the wait.
  kWalkerAwaitsHead,
};
using TestHook = void (*)(TestPointId point, const void* op);
#ifdef ORDO_TEST_POINTS
void SetTestHook(TestHook hook);  // null: none
void TestPoint(TestPointId point, const void* op);
#else
inline void TestPoint(TestPointId, const void*) {}
#endif

inline constexpr std::size_t kCacheLine = 64;

template <typename T>
struct alignas(kCacheLine) CacheAligned {
  T value{};
};

[[noreturn]] void CheckFailed(const char* file, int line, const char* cond, const char* msg,
                              std::uint64_t op_id);

// Asymmetric fences, for a Dekker pair where one side is hot and the other rare
// (Submit against Shutdown; a submit against a worker going to sleep, parker.h
// P1). The hot side writes its flag, calls LightFence (a
// compiler barrier only) and reads the other's flag; the rare side writes its
// flag, calls HeavyFence and reads the hot side's flag. HeavyFence is
// membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED): every thread of the process that
// is running executes a full barrier before it returns, and one that is not
// running passes one when it is switched back in. So either the hot side's write
// is visible to the rare side's read, or the hot side's read sees the rare side's
// write, as with seq_cst on both sides, without a locked instruction on the hot
// path. AsymmetricFencesAvailable() is false when the kernel refuses the
// registration (before Linux 4.14, or a seccomp filter) and under
// ThreadSanitizer, which does not model membarrier; both sides then use a seq_cst
// RMW or fence.
bool AsymmetricFencesAvailable();  // registers the process on first call
inline void LightFence() { std::atomic_signal_fence(std::memory_order_seq_cst); }
void HeavyFence();  // only after AsymmetricFencesAvailable() returned true

}  // namespace ordo::internal

// Stays on in release: for states only a broken protocol or corrupted node produces.
#define ORDO_CHECK(cond, msg)                                                        \
  do {                                                                               \
    if (__builtin_expect(!(cond), 0))                                                \
      ::ordo::internal::CheckFailed(__FILE__, __LINE__, #cond, (msg), 0);            \
  } while (0)
#define ORDO_CHECK_OP(cond, msg, id)                                                 \
  do {                                                                               \
    if (__builtin_expect(!(cond), 0))                                                \
      ::ordo::internal::CheckFailed(__FILE__, __LINE__, #cond, (msg), (id));         \
  } while (0)
#ifndef NDEBUG
#define ORDO_DCHECK(cond, msg) ORDO_CHECK(cond, msg)
#else
#define ORDO_DCHECK(cond, msg) \
  do {                         \
  } while (0)
#endif

namespace ordo::internal {

// A std::mutex the thread-safety analysis understands (libstdc++'s is not
// annotated). std::mutex rather than absl::Mutex: Debian's libabsl is not built for
// ThreadSanitizer and draws false reports (TOOLCHAIN.md).
class ABSL_LOCKABLE Mutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* mu_;
};

// Futex wait on a 32-bit atomic: sleeps while *word == expected, until woken, the
// timeout (relative, measured on CLOCK_MONOTONIC by the kernel; negative =
// forever) passes, or spuriously.
// Callers re-check their condition in a loop.
void FutexWait(Atomic<std::uint32_t>* word, std::uint32_t expected,
               std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1));
// As FutexWait, but until an absolute CLOCK_REALTIME instant (ns since the
// epoch): the kernel re-arms the wait when the wall clock is set, so a jump of the
// wall clock moves the wake-up with it.
void FutexWaitUntilRealtime(Atomic<std::uint32_t>* word, std::uint32_t expected,
                            std::int64_t deadline_ns);
// Names a thread of ours (at most 15 characters) for top -H, perf and gdb, and
// for tools that tell the timekeeper from the workers. Best effort.
void NameThread(std::thread& thread, const char* name);

void FutexWakeAll(Atomic<std::uint32_t>* word);
void FutexWakeOne(Atomic<std::uint32_t>* word);

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Fetches the line holding p in a state this core may write (a hint; never
// faults). __builtin_prefetch(p, 1, 3) asks for that, but without -mprfchw (not
// in the x86-64 baseline) g++ and clang emit PREFETCHT0, a read prefetch: a line
// another core wrote last then arrives shared, and the first store to it pays a
// second round trip to invalidate that copy, which the next locked instruction
// waits for. PREFETCHW (0F 0D /1) is in every AMD64 processor and in Intel's
// since Broadwell; older Intel cores decode it as a no-op.
inline void PrefetchForWrite(const void* p) {
#if defined(__x86_64__)
  // The address in a register, not a memory operand: a memory operand would
  // tell the compiler that *p is read, and p may be null or stale here.
  asm volatile("prefetchw (%0)" : : "r"(p));
#else
  __builtin_prefetch(p, 1, 3);
#endif
}

}  // namespace ordo::internal

#endif  // ORDO_CORE_SRC_SYNC_H_
