#include "sync.h"

#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <thread>

namespace ordo::internal {

void CheckFailed(const char* file, int line, const char* cond, const char* msg,
                 std::uint64_t op_id) {
  std::fprintf(stderr, "ORDO_CHECK failed at %s:%d: %s (%s)", file, line, cond, msg);
  if (op_id != 0) std::fprintf(stderr, " [op %llu]", static_cast<unsigned long long>(op_id));
  std::fprintf(stderr, "\n");
  std::abort();
}

namespace {
#if defined(__SANITIZE_THREAD__)
constexpr bool kSanitizingThreads = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool kSanitizingThreads = true;
#else
constexpr bool kSanitizingThreads = false;
#endif
#else
constexpr bool kSanitizingThreads = false;
#endif
}  // namespace

bool AsymmetricFencesAvailable() {
  static const bool available = [] {
    if (kSanitizingThreads) return false;
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0) {
      return false;
    }
    // One trial, so that a later HeavyFence cannot fail where this did not.
    return syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
  }();
  return available;
}

void HeavyFence() {
  const long r = syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
  ORDO_CHECK(r == 0, "membarrier failed after a successful registration");
}

#ifdef ORDO_TEST_POINTS
namespace {
Atomic<TestHook> g_test_hook{nullptr};
}  // namespace
void SetTestHook(TestHook hook) {
  // Release: pairs with TestPoint's acquire; the hook sees what its test set up.
  g_test_hook.store(hook, std::memory_order_release);
}
void TestPoint(TestPointId point, const void* op) {
  // Acquire: pairs with SetTestHook's release.
  if (TestHook hook = g_test_hook.load(std::memory_order_acquire)) hook(point, op);
}
#endif

#ifdef ORDO_CHAOS
void ChaosPoint() {
  thread_local std::minstd_rand rng(std::random_device{}());
  if (rng() % 16 == 0) std::this_thread::yield();
}
#endif

static_assert(sizeof(Atomic<std::uint32_t>) == sizeof(std::uint32_t),
              "the futex word is the atomic's storage");

void FutexWait(Atomic<std::uint32_t>* word, std::uint32_t expected,
               std::chrono::nanoseconds timeout) {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout.count() >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
    tsp = &ts;
  }
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, tsp,
          nullptr, 0);
}

void FutexWaitUntilRealtime(Atomic<std::uint32_t>* word, std::uint32_t expected,
                            std::int64_t deadline_ns) {
  if (deadline_ns < 0) deadline_ns = 0;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(deadline_ns / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(deadline_ns % 1'000'000'000);
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word),
          FUTEX_WAIT_BITSET_PRIVATE | FUTEX_CLOCK_REALTIME, expected, &ts, nullptr,
          FUTEX_BITSET_MATCH_ANY);
}

void FutexWakeAll(Atomic<std::uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT32_MAX,
          nullptr, nullptr, 0);
}

void FutexWakeOne(Atomic<std::uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE_PRIVATE, 1, nullptr,
          nullptr, 0);
}

void NameThread(std::thread& thread, const char* name) {
  (void)pthread_setname_np(thread.native_handle(), name);  // ERANGE if too long: unnamed
}

}  // namespace ordo::internal
