// wheel_oracle.h: arithmetic the timing wheel's tests check it against, written by
// division rather than by the wheel's bit tricks (timing_wheel_test.cc, and the
// fuzz target tests/fuzz/timing_wheel_fuzz.cc). Needs core/src on the include path.
#ifndef ORDO_TESTS_SUPPORT_WHEEL_ORACLE_H_
#define ORDO_TESTS_SUPPORT_WHEEL_ORACLE_H_

#include <cstdint>

#include "config.h"

namespace ordo::internal::wheel_oracle {

inline constexpr std::int64_t kS = static_cast<std::int64_t>(kWheelSlotsPerLevel);
inline constexpr int kL = static_cast<int>(kWheelLevels);

constexpr std::int64_t IntPow(std::int64_t base, int exp) {
  std::int64_t r = 1;
  for (int i = 0; i < exp; ++i) r *= base;
  return r;
}

inline std::int64_t FloorDiv(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  return (a % b < 0) ? q - 1 : q;
}

// The granularity bound of TimingWheel::NextDeadline for the earliest pending deadline:
// 0 where the wheel promises that deadline exactly (at or before the current tick, or
// overflow), else tick * S^k for the level k it belongs to. tick_ns * S^L must fit an
// int64 (1 ms ticks with the default 64 slots and 7 levels do).
inline std::int64_t GranularityNs(std::int64_t tick_ns, std::int64_t now_ns,
                                  std::int64_t deadline_ns) {
  const std::int64_t t = FloorDiv(deadline_ns, tick_ns);
  const std::int64_t now_tick = FloorDiv(now_ns, tick_ns);
  if (t <= now_tick) return 0;
  const std::int64_t top = IntPow(kS, kL - 1);
  if (FloorDiv(t, top) == FloorDiv(now_tick, top)) {
    for (int k = kL - 2; k >= 0; --k) {
      if (FloorDiv(t, IntPow(kS, k)) != FloorDiv(now_tick, IntPow(kS, k))) {
        return tick_ns * IntPow(kS, k);
      }
    }
  }
  if (FloorDiv(t, top) - FloorDiv(now_tick, top) < kS) return tick_ns * top;
  return 0;  // overflow: exact
}

// The wheel's time after Advance(reading) from `now_ns` (timing_wheel.h, "A clock
// stepped back"): the reading if later, or if in a tick before the previous one;
// else unchanged.
inline std::int64_t ExpectedNowAfter(std::int64_t tick_ns, std::int64_t now_ns,
                                     std::int64_t reading_ns) {
  if (reading_ns >= now_ns) return reading_ns;
  return FloorDiv(reading_ns, tick_ns) + 1 < FloorDiv(now_ns, tick_ns) ? reading_ns : now_ns;
}

}  // namespace ordo::internal::wheel_oracle

#endif  // ORDO_TESTS_SUPPORT_WHEEL_ORACLE_H_
