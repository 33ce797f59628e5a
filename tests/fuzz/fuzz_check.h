// fuzz_check.h: the failure report of Ordo's fuzz targets (tests/fuzz).
//
// FUZZ_CHECK(cond, msg...) prints where and what (the message's parts streamed) and
// aborts, which libFuzzer turns into a saved reproducer and the replay driver
// (replay_main.cc) into a failed test. Not assert(): it stays in release builds.
#ifndef ORDO_TESTS_FUZZ_FUZZ_CHECK_H_
#define ORDO_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdlib>
#include <iostream>
#include <sstream>

#define FUZZ_CHECK(cond, ...)                                                      \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      std::ostringstream fuzz_check_message;                                       \
      ::ordo::fuzz::Stream(fuzz_check_message, __VA_ARGS__);                       \
      std::cerr << __FILE__ << ":" << __LINE__ << ": FUZZ_CHECK(" #cond ") failed: " \
                << fuzz_check_message.str() << std::endl;                          \
      std::abort();                                                                \
    }                                                                              \
  } while (0)

namespace ordo::fuzz {
template <typename... Parts>
void Stream(std::ostream& out, const Parts&... parts) {
  (out << ... << parts);
}
}  // namespace ordo::fuzz

#endif  // ORDO_TESTS_FUZZ_FUZZ_CHECK_H_
