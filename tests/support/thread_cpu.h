// thread_cpu.h: test support. The CPU time the calling thread has used, for the
// tests that bound the work an algorithm does ("a ten-year jump does not tick
// through every slot"). Not wall time: a test preempted on a loaded machine,
// or waiting for the other test jobs, uses no CPU meanwhile, so the bound
// measures the algorithm and not the machine's load (a sanitizer's slowdown,
// 5-15x, still counts: the bounds leave room for it).
#ifndef ORDO_TESTS_SUPPORT_THREAD_CPU_H_
#define ORDO_TESTS_SUPPORT_THREAD_CPU_H_

#include <time.h>

#include <chrono>

namespace ordo::test_support {

inline std::chrono::nanoseconds ThreadCpuTime() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

}  // namespace ordo::test_support

#endif  // ORDO_TESTS_SUPPORT_THREAD_CPU_H_
