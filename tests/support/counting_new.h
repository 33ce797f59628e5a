// counting_new.h: test support. Replaces the global operator new and delete to
// count allocations and to fail chosen ones (out of memory). Include it in one
// source file of a test binary only (these are the program's replacements), and
// not in a sanitizer build, whose runtime replaces them itself.
#ifndef ORDO_TESTS_SUPPORT_COUNTING_NEW_H_
#define ORDO_TESTS_SUPPORT_COUNTING_NEW_H_

#include <atomic>
#include <cstdlib>
#include <new>

namespace ordo::testing {
// Every allocation through operator new, on every thread.
inline std::atomic<long> g_allocations{0};
// While set, every allocation on the thread that set it fails.
inline thread_local bool t_fail_allocations = false;
// When not negative, the allocations this thread may still make before one
// fails; that one fails alone (the count goes back to -1 as it throws).
inline thread_local int t_allocations_before_failure = -1;
}  // namespace ordo::testing

void* operator new(std::size_t n) {
  using namespace ordo::testing;
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (t_fail_allocations) throw std::bad_alloc();
  if (t_allocations_before_failure >= 0 && t_allocations_before_failure-- == 0) {
    throw std::bad_alloc();
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
// These replace the global pair, so free() is the match for the malloc() above;
// g++ cannot see that once it inlines a replaced operator new into a caller.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

#endif  // ORDO_TESTS_SUPPORT_COUNTING_NEW_H_
