// recurrence.cc: parsing and expansion of RRULE subsets (see ordo/recurrence.h).
//
// Expansion model. Every occurrence of a series has the start's second and
// sub-second part, so an occurrence is identified by its *minute index* (whole minutes
// since 1970-01-01T00:00Z; the instant is index * 60 s + the start's offset within
// its minute). A minute belongs to the series iff it is after the start and
//   1. its FREQ period (year, month, Monday-based week, day, hour, minute) is a whole
//      number of INTERVALs after the start's period (the grid);
//   2. its month passes BYMONTH (YEARLY without BYMONTH, BYMONTHDAY and BYDAY: the
//      start's month);
//   3. its day passes BYMONTHDAY and BYDAY (both must hold when both are given); with
//      neither, MONTHLY/YEARLY take the start's day of the month and WEEKLY the start's
//      weekday;
//   4. its hour is in BYHOUR, else (DAILY and coarser) the start's hour;
//   5. its minute is in BYMINUTE, else (HOURLY and coarser) the start's minute.
// This single membership test is RFC 5545's expand/limit table for these parts: a BY
// part "expands" where the FREQ default would otherwise pin the field to the start's,
// and "limits" where the FREQ grid already ranges over it.
//
// Search. FirstAtOrAfter walks months from the one holding the lower bound; a month
// that fails (1)/(2) is skipped whole (YEARLY jumps to the next grid year), a passing
// month yields a bit mask of its days passing (1)/(3), and each such day is searched
// with hour and minute bit masks, so the cost is per month and per candidate day,
// never per minute. There is no "empty periods" cut-off: the walk ends at the first
// occurrence, at UNTIL, or at the end of Clock's range (2262), and the worst never-
// matching rule (MINUTELY with a BYMINUTE its grid never reaches) costs ~24 mask
// operations per day until then, a few milliseconds.
//
// Counting (the index). "Uniform" rules -- MINUTELY, HOURLY, DAILY, WEEKLY whose every
// period holds the same set of offsets (no BY part limits them) -- count in O(1) by
// arithmetic on the period length. Others count month by month from the start (the
// same masks, popcounts for whole days), stopping early at COUNT.
#include "ordo/recurrence.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdio>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"

namespace ordo {
namespace internal {
namespace {

constexpr std::int64_t kNsPerMinute = 60'000'000'000;
constexpr std::int64_t kMinutesPerDay = 1440;
constexpr std::uint32_t kAllHours = (1u << 24) - 1;
constexpr std::uint64_t kAllMinutes = (std::uint64_t{1} << 60) - 1;
constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

// Division rounding toward negative infinity, and its non-negative remainder (b > 0).
std::int64_t FloorDiv(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  if (a % b != 0 && a < 0) --q;
  return q;
}
std::int64_t FloorMod(std::int64_t a, std::int64_t b) {
  std::int64_t r = a % b;
  return r < 0 ? r + b : r;
}

absl::CivilDay EpochDay() { return absl::CivilDay(1970, 1, 1); }

// Days since 1970-01-01 of a civil day.
std::int64_t DayIndex(absl::CivilDay d) { return d - EpochDay(); }

// 0 = Monday .. 6 = Sunday; day 0 (1970-01-01) was a Thursday.
int WeekdayOf(std::int64_t day) { return static_cast<int>(FloorMod(day + 3, 7)); }

// The Monday-based week holding `day`: week 0 starts on Monday 1969-12-29 (day -3).
std::int64_t WeekOf(std::int64_t day) { return FloorDiv(day + 3, 7); }

bool IsLeap(std::int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

// Messages. absl::StrCat does not take std::string_view in this Abseil (its
// string_view is its own type), so a small concatenation of views and integers.
void AppendPiece(std::string* out, std::string_view s) { out->append(s); }
template <typename T>
  requires std::is_integral_v<T>
void AppendPiece(std::string* out, T v) {
  out->append(std::to_string(v));
}
template <typename... Pieces>
void Append(std::string* out, const Pieces&... pieces) {
  (AppendPiece(out, pieces), ...);
}
template <typename... Pieces>
std::string Cat(const Pieces&... pieces) {
  std::string out;
  Append(&out, pieces...);
  return out;
}

// Bits lo..hi of a 32-bit mask (0 <= lo, hi <= 31); empty when lo > hi.
std::uint32_t BitRange32(int lo, int hi) {
  if (lo > hi) return 0;
  const std::uint32_t upto_hi = hi >= 31 ? ~0u : ((1u << (hi + 1)) - 1);
  return upto_hi & ~((1u << lo) - 1);
}

// Minutes lo..hi of an hour (0 <= lo <= hi <= 59).
std::uint64_t MinuteRange(int lo, int hi) {
  return ((std::uint64_t{2} << hi) - 1) & ~((std::uint64_t{1} << lo) - 1);
}

}  // namespace

// Expands one series: a rule and a start. Built per NextAfter call (cheap: a few
// integer fields derived from the start).
class RecurrenceExpander {
 public:
  RecurrenceExpander(const RecurrenceRule& rule, Clock::time_point start);

  // `with_index` false: the index is left 0 unless COUNT needs it counted.
  std::optional<RecurrenceRule::Occurrence> NextAfter(Clock::time_point after,
                                                      bool with_index = true) const;

 private:
  struct Month {
    std::int64_t index;      // year * 12 + month - 1
    std::int64_t year;
    int month;               // 1..12
    std::int64_t first_day;  // day index of the 1st
    int days;                // 28..31
    int first_weekday;       // weekday of the 1st, 0 = Monday
    int first_yearday;       // day of the year of the 1st, 1-based
    int year_days;           // 365 or 366
  };

  static Month MonthAt(std::int64_t index);
  Month MonthOfDay(std::int64_t day) const;

  // (1) and (2) at month level; and the next month index worth trying after `m` fails.
  bool MonthPasses(const Month& m) const;
  std::int64_t NextMonthToTry(const Month& m) const;
  // Bit d (1..31): day d of `m` passes (1) at day level and (3).
  std::uint32_t DayMask(const Month& m) const;
  std::uint32_t WeekdayBits(const Month& m, std::uint8_t weekdays) const;

  // Hours of `day` that may hold occurrences, and the minutes of one hour that do.
  std::uint32_t HoursOf(std::int64_t day) const;
  std::uint64_t MinutesOf(std::int64_t day, int hour) const;
  // First occurrence minute-of-day >= x on a day that passed DayMask; -1 if none.
  int FirstSlot(std::int64_t day, int x) const;
  // Occurrences on a passing day with minute-of-day in [x, y].
  std::int64_t CountSlots(std::int64_t day, int x, int y) const;

  // The first occurrence (minute index) in [lo, hi], if any; and how many occurrences
  // lie in [a, b], or some number >= limit when at least `limit` do.
  std::optional<std::int64_t> FirstAtOrAfter(std::int64_t lo, std::int64_t hi) const;
  std::int64_t Count(std::int64_t a, std::int64_t b, std::int64_t limit) const;

  // Uniform rules: the offsets (minutes from a period's start) every period holds.
  int FirstOffsetAtOrAfter(std::int64_t r) const;
  std::int64_t OffsetsUpTo(std::int64_t r) const;
  std::int64_t UniformUpTo(std::int64_t x) const;  // occurrences (any k) at minute <= x

  const RecurrenceRule& rule_;
  const Frequency freq_;
  const std::int64_t interval_;
  std::int64_t start_ns_ = 0;
  std::int64_t sub_minute_ns_ = 0;  // the start's offset within its minute, [0, 60 s)
  std::int64_t start_minute_ = 0;   // minute index of the start
  std::int64_t start_hour_ = 0;     // hour index (hours since epoch)
  std::int64_t start_day_ = 0;
  std::int64_t start_week_ = 0;
  std::int64_t start_month_index_ = 0;
  std::int64_t start_year_ = 0;
  int start_month_ = 1;
  int start_month_day_ = 1;
  int start_weekday_ = 0;
  std::int64_t max_minute_ = 0;  // last minute index whose instant fits Clock's range

  bool has_month_day_ = false;
  bool year_scope_ordinals_ = false;  // YEARLY without BYMONTH: nMO counts in the year
  std::uint32_t hours_ = 0;           // BYHOUR, or the default (see HoursOf)
  std::uint64_t minutes_ = 0;         // BYMINUTE, or the default (see MinutesOf)
  std::uint32_t hour_pattern_ = 0;    // HOURLY, INTERVAL < 24: hours 0, I, 2I, ...
  std::uint64_t minute_pattern_ = 0;  // MINUTELY, INTERVAL < 60: minutes 0, I, 2I, ...

  bool uniform_ = false;
  std::int64_t period_start_ = 0;    // minute index where the start's period begins
  std::int64_t period_minutes_ = 0;  // INTERVAL periods, in minutes
  std::int64_t unit_minutes_ = 0;    // one period, in minutes
  std::int64_t offsets_per_period_ = 0;
  std::uint8_t week_days_ = 0;       // WEEKLY: weekdays of a week that hold occurrences
};

RecurrenceExpander::RecurrenceExpander(const RecurrenceRule& rule, Clock::time_point start)
    : rule_(rule), freq_(rule.frequency_), interval_(rule.interval_) {
  start_ns_ = start.time_since_epoch().count();
  sub_minute_ns_ = FloorMod(start_ns_, kNsPerMinute);
  start_minute_ = FloorDiv(start_ns_, kNsPerMinute);
  start_hour_ = FloorDiv(start_minute_, 60);
  start_day_ = FloorDiv(start_minute_, kMinutesPerDay);
  start_week_ = WeekOf(start_day_);
  const absl::CivilDay civil = EpochDay() + start_day_;
  start_year_ = civil.year();
  start_month_ = civil.month();
  start_month_day_ = civil.day();
  start_month_index_ = start_year_ * 12 + start_month_ - 1;
  start_weekday_ = WeekdayOf(start_day_);
  max_minute_ = (kInt64Max - sub_minute_ns_) / kNsPerMinute;

  has_month_day_ = rule.by_month_day_pos_ != 0 || rule.by_month_day_neg_ != 0;
  year_scope_ordinals_ = freq_ == Frequency::kYearly && rule.by_month_ == 0;
  const int start_hour_of_day = static_cast<int>(FloorMod(start_minute_, kMinutesPerDay) / 60);
  const int start_minute_of_hour = static_cast<int>(FloorMod(start_minute_, 60));
  const bool fine_hours = freq_ == Frequency::kHourly || freq_ == Frequency::kMinutely;
  hours_ = rule.by_hour_ != 0 ? rule.by_hour_
           : fine_hours       ? kAllHours
                              : (1u << start_hour_of_day);
  minutes_ = rule.by_minute_ != 0               ? rule.by_minute_
             : freq_ == Frequency::kMinutely ? kAllMinutes
                                             : (std::uint64_t{1} << start_minute_of_hour);
  if (freq_ == Frequency::kHourly && interval_ < 24) {
    for (std::int64_t h = 0; h < 24; h += interval_) hour_pattern_ |= 1u << h;
  }
  if (freq_ == Frequency::kMinutely && interval_ < 60) {
    for (std::int64_t m = 0; m < 60; m += interval_) minute_pattern_ |= std::uint64_t{1} << m;
  }
  week_days_ = rule.has_by_day_ ? rule.by_weekday_ : static_cast<std::uint8_t>(1u << start_weekday_);

  const int slots_per_day = std::popcount(hours_) * std::popcount(minutes_);
  const bool day_limited = rule.by_month_ != 0 || has_month_day_ ||
                           (rule.has_by_day_ && freq_ != Frequency::kWeekly);
  switch (freq_) {
    case Frequency::kMinutely:
      uniform_ = !day_limited && rule.by_hour_ == 0 && rule.by_minute_ == 0;
      period_start_ = start_minute_;
      unit_minutes_ = 1;
      offsets_per_period_ = 1;
      break;
    case Frequency::kHourly:
      uniform_ = !day_limited && rule.by_hour_ == 0;
      period_start_ = start_hour_ * 60;
      unit_minutes_ = 60;
      offsets_per_period_ = std::popcount(minutes_);
      break;
    case Frequency::kDaily:
      uniform_ = !day_limited;
      period_start_ = start_day_ * kMinutesPerDay;
      unit_minutes_ = kMinutesPerDay;
      offsets_per_period_ = slots_per_day;
      break;
    case Frequency::kWeekly:
      uniform_ = !day_limited;
      period_start_ = (start_week_ * 7 - 3) * kMinutesPerDay;
      unit_minutes_ = 7 * kMinutesPerDay;
      offsets_per_period_ = std::popcount(week_days_) * std::int64_t{slots_per_day};
      break;
    case Frequency::kMonthly:
    case Frequency::kYearly:
      uniform_ = false;
      break;
  }
  period_minutes_ = unit_minutes_ * interval_;
}

RecurrenceExpander::Month RecurrenceExpander::MonthAt(std::int64_t index) {
  Month m;
  m.index = index;
  m.year = FloorDiv(index, 12);
  m.month = static_cast<int>(FloorMod(index, 12)) + 1;
  const absl::CivilDay first(m.year, m.month, 1);
  const absl::CivilDay next(absl::CivilMonth(first) + 1);
  m.first_day = DayIndex(first);
  m.days = static_cast<int>(next - first);
  m.first_weekday = WeekdayOf(m.first_day);
  m.first_yearday = absl::GetYearDay(first);
  m.year_days = IsLeap(m.year) ? 366 : 365;
  return m;
}

RecurrenceExpander::Month RecurrenceExpander::MonthOfDay(std::int64_t day) const {
  const absl::CivilDay civil = EpochDay() + day;
  return MonthAt(civil.year() * 12 + civil.month() - 1);
}

bool RecurrenceExpander::MonthPasses(const Month& m) const {
  if (freq_ == Frequency::kYearly && FloorMod(m.year - start_year_, interval_) != 0) return false;
  if (freq_ == Frequency::kMonthly &&
      FloorMod(m.index - start_month_index_, interval_) != 0) {
    return false;
  }
  if (rule_.by_month_ != 0) return (rule_.by_month_ >> m.month) & 1;
  if (freq_ == Frequency::kYearly && !has_month_day_ && !rule_.has_by_day_) {
    return m.month == start_month_;
  }
  return true;
}

std::int64_t RecurrenceExpander::NextMonthToTry(const Month& m) const {
  if (freq_ == Frequency::kYearly) {
    const std::int64_t behind = FloorMod(m.year - start_year_, interval_);
    // Off the grid: the next grid year's January. On it: the next month.
    if (behind != 0) return (m.year + interval_ - behind) * 12;
  } else if (freq_ == Frequency::kMonthly) {
    const std::int64_t behind = FloorMod(m.index - start_month_index_, interval_);
    if (behind != 0) return m.index + interval_ - behind;
  }
  return m.index + 1;
}

std::uint32_t RecurrenceExpander::WeekdayBits(const Month& m, std::uint8_t weekdays) const {
  std::uint32_t bits = 0;
  for (int w = 0; w < 7; ++w) {
    if (((weekdays >> w) & 1) == 0) continue;
    for (int d = 1 + static_cast<int>(FloorMod(w - m.first_weekday, 7)); d <= m.days; d += 7) {
      bits |= 1u << d;
    }
  }
  return bits;
}

std::uint32_t RecurrenceExpander::DayMask(const Month& m) const {
  std::uint32_t mask = BitRange32(1, m.days);
  if (has_month_day_) {
    std::uint32_t days = rule_.by_month_day_pos_;
    for (std::uint32_t neg = rule_.by_month_day_neg_; neg != 0; neg &= neg - 1) {
      const int from_end = std::countr_zero(neg);  // -from_end: day days + 1 - from_end
      if (from_end <= m.days) days |= 1u << (m.days + 1 - from_end);
    }
    mask &= days;
  }
  if (rule_.has_by_day_) {
    std::uint32_t days = WeekdayBits(m, rule_.by_weekday_);
    for (int w = 0; w < 7; ++w) {
      const std::uint64_t nth = rule_.by_weekday_nth_[w];
      const std::uint64_t last = rule_.by_weekday_last_[w];
      if ((nth | last) == 0) continue;
      for (int d = 1 + static_cast<int>(FloorMod(w - m.first_weekday, 7)); d <= m.days; d += 7) {
        int n, n_from_end;
        if (year_scope_ordinals_) {
          const int yearday = m.first_yearday + d - 1;
          n = (yearday - 1) / 7 + 1;
          n_from_end = (m.year_days - yearday) / 7 + 1;
        } else {
          n = (d - 1) / 7 + 1;
          n_from_end = (m.days - d) / 7 + 1;
        }
        if (((nth >> n) & 1) != 0 || ((last >> n_from_end) & 1) != 0) days |= 1u << d;
      }
    }
    mask &= days;
  }
  if (!has_month_day_ && !rule_.has_by_day_) {
    if (freq_ == Frequency::kYearly || freq_ == Frequency::kMonthly) {
      mask &= 1u << start_month_day_;  // empty when the month is too short: skipped
    } else if (freq_ == Frequency::kWeekly) {
      mask &= WeekdayBits(m, week_days_);
    }
  }
  if (freq_ == Frequency::kDaily) {
    std::uint32_t aligned = 0;
    for (std::int64_t d = 1 + FloorMod(start_day_ - m.first_day, interval_); d <= m.days;
         d += interval_) {
      aligned |= 1u << d;
    }
    mask &= aligned;
  } else if (freq_ == Frequency::kWeekly) {
    std::uint32_t aligned = 0;
    const std::int64_t last_day = m.first_day + m.days - 1;
    for (std::int64_t week = WeekOf(m.first_day); week <= WeekOf(last_day); ++week) {
      if (FloorMod(week - start_week_, interval_) != 0) continue;
      const std::int64_t monday = week * 7 - 3;
      const int lo = static_cast<int>(std::max<std::int64_t>(1, monday - m.first_day + 1));
      const int hi = static_cast<int>(std::min<std::int64_t>(m.days, monday - m.first_day + 7));
      aligned |= BitRange32(lo, hi);
    }
    mask &= aligned;
  }
  return mask;
}

std::uint32_t RecurrenceExpander::HoursOf(std::int64_t day) const {
  if (freq_ != Frequency::kHourly) return hours_;
  // Hours h of `day` on the grid: (day * 24 + h - start_hour_) % INTERVAL == 0.
  const std::int64_t first = FloorMod(start_hour_ - day * 24, interval_);
  if (interval_ >= 24) return first < 24 ? hours_ & (1u << first) : 0;
  return hours_ & ((hour_pattern_ << first) & kAllHours);
}

std::uint64_t RecurrenceExpander::MinutesOf(std::int64_t day, int hour) const {
  if (freq_ != Frequency::kMinutely) return minutes_;
  const std::int64_t base = (day * 24 + hour) * 60;
  const std::int64_t first = FloorMod(start_minute_ - base, interval_);
  if (interval_ >= 60) return first < 60 ? minutes_ & (std::uint64_t{1} << first) : 0;
  return minutes_ & ((minute_pattern_ << first) & kAllMinutes);
}

int RecurrenceExpander::FirstSlot(std::int64_t day, int x) const {
  const int hour = x / 60;
  for (std::uint32_t hs = HoursOf(day) & BitRange32(hour, 23); hs != 0; hs &= hs - 1) {
    const int h = std::countr_zero(hs);
    std::uint64_t ms = MinutesOf(day, h);
    if (h == hour) ms &= ~((std::uint64_t{1} << (x % 60)) - 1);
    if (ms != 0) return h * 60 + std::countr_zero(ms);
  }
  return -1;
}

std::int64_t RecurrenceExpander::CountSlots(std::int64_t day, int x, int y) const {
  if (x > y) return 0;
  const int hx = x / 60, hy = y / 60;
  std::int64_t n = 0;
  for (std::uint32_t hs = HoursOf(day) & BitRange32(hx, hy); hs != 0; hs &= hs - 1) {
    const int h = std::countr_zero(hs);
    std::uint64_t ms = MinutesOf(day, h);
    ms &= MinuteRange(h == hx ? x % 60 : 0, h == hy ? y % 60 : 59);
    n += std::popcount(ms);
  }
  return n;
}

int RecurrenceExpander::FirstOffsetAtOrAfter(std::int64_t r) const {
  if (r >= unit_minutes_) return -1;
  switch (freq_) {
    case Frequency::kMinutely:
      return r == 0 ? 0 : -1;
    case Frequency::kHourly: {
      const std::uint64_t ms = minutes_ & ~((std::uint64_t{1} << r) - 1);
      return ms != 0 ? std::countr_zero(ms) : -1;
    }
    case Frequency::kDaily:
      return FirstSlot(0, static_cast<int>(r));
    case Frequency::kWeekly: {
      const int weekday = static_cast<int>(r / kMinutesPerDay);
      for (int w = weekday; w < 7; ++w) {
        if (((week_days_ >> w) & 1) == 0) continue;
        const int slot = FirstSlot(0, w == weekday ? static_cast<int>(r % kMinutesPerDay) : 0);
        if (slot >= 0) return static_cast<int>(w * kMinutesPerDay) + slot;
      }
      return -1;
    }
    case Frequency::kMonthly:
    case Frequency::kYearly:
      break;
  }
  return -1;
}

std::int64_t RecurrenceExpander::OffsetsUpTo(std::int64_t r) const {
  if (r >= unit_minutes_) return offsets_per_period_;
  switch (freq_) {
    case Frequency::kMinutely:
      return 1;
    case Frequency::kHourly:
      return std::popcount(minutes_ & MinuteRange(0, static_cast<int>(r)));
    case Frequency::kDaily:
      return CountSlots(0, 0, static_cast<int>(r));
    case Frequency::kWeekly: {
      const int weekday = static_cast<int>(r / kMinutesPerDay);
      std::int64_t n = std::popcount(static_cast<std::uint8_t>(week_days_ & ((1u << weekday) - 1))) *
                       CountSlots(0, 0, kMinutesPerDay - 1);
      if (((week_days_ >> weekday) & 1) != 0) {
        n += CountSlots(0, 0, static_cast<int>(r % kMinutesPerDay));
      }
      return n;
    }
    case Frequency::kMonthly:
    case Frequency::kYearly:
      break;
  }
  return 0;
}

std::int64_t RecurrenceExpander::UniformUpTo(std::int64_t x) const {
  const std::int64_t k = FloorDiv(x - period_start_, period_minutes_);
  return k * offsets_per_period_ + OffsetsUpTo(x - period_start_ - k * period_minutes_);
}

std::optional<std::int64_t> RecurrenceExpander::FirstAtOrAfter(std::int64_t lo,
                                                               std::int64_t hi) const {
  if (lo > hi) return std::nullopt;
  if (uniform_) {
    std::int64_t k = FloorDiv(lo - period_start_, period_minutes_);
    int offset = FirstOffsetAtOrAfter(lo - period_start_ - k * period_minutes_);
    if (offset < 0) {
      ++k;
      offset = FirstOffsetAtOrAfter(0);
    }
    // k * period_minutes_ cannot overflow: k is at most ~1.6e8 / period + 1.
    const std::int64_t t = period_start_ + k * period_minutes_ + offset;
    if (t > hi) return std::nullopt;
    return t;
  }
  const std::int64_t day_lo = FloorDiv(lo, kMinutesPerDay);
  const std::int64_t day_hi = FloorDiv(hi, kMinutesPerDay);
  std::int64_t index = MonthOfDay(day_lo).index;
  for (;;) {
    const Month m = MonthAt(index);
    if (m.first_day > day_hi) return std::nullopt;
    if (!MonthPasses(m)) {
      index = NextMonthToTry(m);
      continue;
    }
    std::uint32_t days = DayMask(m);
    if (day_lo >= m.first_day) days &= BitRange32(static_cast<int>(day_lo - m.first_day + 1), 31);
    for (; days != 0; days &= days - 1) {
      const std::int64_t day = m.first_day + std::countr_zero(days) - 1;
      if (day > day_hi) return std::nullopt;
      const int x = day == day_lo ? static_cast<int>(lo - day_lo * kMinutesPerDay) : 0;
      const int slot = FirstSlot(day, x);
      if (slot < 0) continue;
      const std::int64_t t = day * kMinutesPerDay + slot;
      if (t > hi) return std::nullopt;
      return t;
    }
    ++index;
  }
}

std::int64_t RecurrenceExpander::Count(std::int64_t a, std::int64_t b, std::int64_t limit) const {
  if (a > b) return 0;
  if (uniform_) return UniformUpTo(b) - UniformUpTo(a - 1);
  const std::int64_t day_a = FloorDiv(a, kMinutesPerDay);
  const std::int64_t day_b = FloorDiv(b, kMinutesPerDay);
  const int x_a = static_cast<int>(a - day_a * kMinutesPerDay);
  const int y_b = static_cast<int>(b - day_b * kMinutesPerDay);
  // DAILY and coarser: every passing day holds the same slots.
  const bool same_slots_each_day = freq_ != Frequency::kHourly && freq_ != Frequency::kMinutely;
  const std::int64_t per_day = same_slots_each_day ? CountSlots(0, 0, kMinutesPerDay - 1) : 0;
  std::int64_t n = 0;
  std::int64_t index = MonthOfDay(day_a).index;
  for (;;) {
    const Month m = MonthAt(index);
    if (m.first_day > day_b) return n;
    if (!MonthPasses(m)) {
      index = NextMonthToTry(m);
      continue;
    }
    std::uint32_t days = DayMask(m);
    const int lo = static_cast<int>(std::max<std::int64_t>(1, day_a - m.first_day + 1));
    const int hi = static_cast<int>(std::min<std::int64_t>(m.days, day_b - m.first_day + 1));
    days &= BitRange32(lo, hi);
    if (same_slots_each_day) {
      // Whole days by popcount; the first and last day of [a, b] slot by slot.
      for (const std::int64_t edge : {day_a, day_b}) {
        const std::int64_t bit = edge - m.first_day + 1;
        if (bit < 1 || bit > m.days || ((days >> bit) & 1) == 0) continue;
        days &= ~(1u << bit);
        n += CountSlots(edge, edge == day_a ? x_a : 0,
                        edge == day_b ? y_b : static_cast<int>(kMinutesPerDay - 1));
      }
      n += std::popcount(days) * per_day;
    } else {
      for (; days != 0; days &= days - 1) {
        const std::int64_t day = m.first_day + std::countr_zero(days) - 1;
        n += CountSlots(day, day == day_a ? x_a : 0,
                        day == day_b ? y_b : static_cast<int>(kMinutesPerDay - 1));
      }
    }
    if (n >= limit) return n;
    ++index;
  }
}

std::optional<RecurrenceRule::Occurrence> RecurrenceExpander::NextAfter(
    Clock::time_point after, bool with_index) const {
  const std::int64_t after_ns = after.time_since_epoch().count();
  if (after_ns < start_ns_) return RecurrenceRule::Occurrence{Clock::time_point(Clock::duration(start_ns_)), 0};
  // The first minute index whose instant (index * 1 min + sub_minute_ns_) is > after.
  const std::int64_t after_minute = FloorDiv(after_ns, kNsPerMinute);
  std::int64_t lo = FloorMod(after_ns, kNsPerMinute) < sub_minute_ns_ ? after_minute : after_minute + 1;
  lo = std::max(lo, start_minute_ + 1);
  std::int64_t hi = max_minute_;
  if (rule_.until_.has_value()) {
    const std::int64_t until_ns = rule_.until_->time_since_epoch().count();
    const std::int64_t until_minute = FloorDiv(until_ns, kNsPerMinute);
    hi = std::min(hi, FloorMod(until_ns, kNsPerMinute) >= sub_minute_ns_ ? until_minute
                                                                          : until_minute - 1);
  }
  const std::optional<std::int64_t> t = FirstAtOrAfter(lo, hi);
  if (!t.has_value()) return std::nullopt;
  std::int64_t index;
  if (rule_.count_.has_value()) {
    const std::int64_t before = Count(start_minute_ + 1, *t - 1, *rule_.count_ - 1);
    if (before >= *rule_.count_ - 1) return std::nullopt;
    index = before + 1;
  } else if (with_index) {
    index = Count(start_minute_ + 1, *t - 1, kInt64Max) + 1;
  } else {
    index = 0;  // not asked for (NextTimeAfter)
  }
  // No overflow: start_minute_ < *t <= max_minute_ (see the constructor).
  const std::int64_t ns = *t * kNsPerMinute + sub_minute_ns_;
  return RecurrenceRule::Occurrence{Clock::time_point(Clock::duration(ns)), index};
}

namespace {

// ---- Parsing ----------------------------------------------------------------------

constexpr std::string_view kFreqAccepts =
    "FREQ takes MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY";
constexpr std::string_view kSupportedParts =
    "supported parts are FREQ, INTERVAL, COUNT, UNTIL, BYMONTH, BYMONTHDAY, BYDAY, BYHOUR, "
    "BYMINUTE, and WKST where it changes nothing";
constexpr std::string_view kWeekdayNames[7] = {"MO", "TU", "WE", "TH", "FR", "SA", "SU"};
constexpr std::string_view kFreqNames[6] = {"MINUTELY", "HOURLY",  "DAILY",
                                            "WEEKLY",   "MONTHLY", "YEARLY"};

bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsBlank(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsBlank(s.back())) s.remove_suffix(1);
  return s;
}

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const std::size_t at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

enum class IntResult { kOk, kNotInteger, kOutOfRange };

// An optionally signed decimal integer, nothing else.
IntResult ParseInt(std::string_view s, std::int64_t* out) {
  bool negative = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return IntResult::kNotInteger;
  for (char c : s) {
    if (c < '0' || c > '9') return IntResult::kNotInteger;
  }
  std::uint64_t magnitude = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), magnitude);
  if (ec != std::errc() || end != s.data() + s.size()) return IntResult::kOutOfRange;
  const std::uint64_t max = std::numeric_limits<std::int64_t>::max();
  if (magnitude > max) return IntResult::kOutOfRange;  // also drops INT64_MIN: no part needs it
  *out = negative ? -static_cast<std::int64_t>(magnitude) : static_cast<std::int64_t>(magnitude);
  return IntResult::kOk;
}

absl::Status Bad(std::string_view what, std::string_view accepts) {
  return absl::InvalidArgumentError(Cat("recurrence: ", what, "; ", accepts));
}

// "BYHOUR=25" for a lone value, "25 in BYHOUR=9,25" for one item of a list.
std::string Quote(std::string_view name, std::string_view value, std::string_view item) {
  if (item.size() == value.size()) return Cat(name, "=", value);
  return Cat(item, " in ", name, "=", value);
}

// A comma-separated list of integers in [lo, hi] (0 excluded when skip_zero), as bits
// of a mask via `set`.
template <typename Set>
absl::Status ParseIntList(std::string_view name, std::string_view value, std::int64_t lo,
                          std::int64_t hi, bool skip_zero, std::string_view accepts, Set set) {
  for (std::string_view item : Split(value, ',')) {
    item = Trim(item);
    if (item.empty()) return Bad(Cat(name, "=", value, " has an empty item"), accepts);
    std::int64_t v = 0;
    switch (ParseInt(item, &v)) {
      case IntResult::kNotInteger:
        return Bad(Cat(Quote(name, value, item), " is not an integer"), accepts);
      case IntResult::kOutOfRange:
        return Bad(Cat(Quote(name, value, item), " is out of range"), accepts);
      case IntResult::kOk:
        break;
    }
    if (v < lo || v > hi || (skip_zero && v == 0)) {
      return Bad(Cat(Quote(name, value, item), " is out of range"), accepts);
    }
    set(v);
  }
  return absl::OkStatus();
}

// A positive integer bounded by max (INTERVAL, COUNT).
absl::StatusOr<std::int64_t> ParsePositive(std::string_view name, std::string_view value,
                                           std::int64_t max) {
  const std::string accepts = Cat(name, " takes an integer >= 1");
  std::int64_t v = 0;
  switch (ParseInt(value, &v)) {
    case IntResult::kNotInteger:
      return Bad(Cat(name, "=", value, " is not an integer"), accepts);
    case IntResult::kOutOfRange:
      return Bad(Cat(name, "=", value, " is out of range"),
                 Cat(accepts, " and <= ", max));
    case IntResult::kOk:
      break;
  }
  if (v < 1) return Bad(Cat(name, "=", value, " is out of range"), accepts);
  if (v > max) {
    return Bad(Cat(name, "=", value, " is out of range"),
               Cat(accepts, " and <= ", max));
  }
  return v;
}

bool AllDigits(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int Digits(std::string_view s, std::size_t at, std::size_t n) {
  int v = 0;
  for (std::size_t i = at; i < at + n; ++i) v = v * 10 + (s[i] - '0');
  return v;
}

struct Until {
  Clock::time_point last;  // the last instant admitted
  bool is_date;
};

// yyyymmdd (the whole UTC day) or yyyymmddThhmmssZ.
absl::StatusOr<Until> ParseUntil(std::string_view value, std::string_view upper) {
  constexpr std::string_view kAccepts =
      "UNTIL takes a UTC date-time yyyymmddThhmmssZ or a date yyyymmdd";
  const bool is_date = upper.size() == 8 && AllDigits(upper);
  const bool is_local_time = upper.size() == 15 && upper[8] == 'T' &&
                             AllDigits(upper.substr(0, 8)) && AllDigits(upper.substr(9, 6));
  const bool is_utc_time =
      upper.size() == 16 && upper[15] == 'Z' && upper[8] == 'T' && AllDigits(upper.substr(0, 8)) &&
      AllDigits(upper.substr(9, 6));
  if (is_local_time) {
    return Bad(Cat("UNTIL=", value, " has no time zone (no trailing Z)"), kAccepts);
  }
  if (!is_date && !is_utc_time) return Bad(Cat("UNTIL=", value, " is not valid"), kAccepts);
  const int year = Digits(upper, 0, 4), month = Digits(upper, 4, 2), day = Digits(upper, 6, 2);
  const int hour = is_date ? 0 : Digits(upper, 9, 2);
  const int minute = is_date ? 0 : Digits(upper, 11, 2);
  const int second = is_date ? 0 : Digits(upper, 13, 2);
  const absl::CivilSecond civil(year, month, day, hour, minute, second);
  // CivilSecond normalizes (Feb 30 -> Mar 2); a field that changed was out of range.
  if (civil.year() != year || civil.month() != month || civil.day() != day ||
      civil.hour() != hour || civil.minute() != minute || civil.second() != second) {
    return Bad(Cat("UNTIL=", value, " is not a valid date or time"), kAccepts);
  }
  // The last admitted second: the given one, or a date's last second.
  const std::int64_t seconds =
      (civil - absl::CivilSecond(1970, 1, 1, 0, 0, 0)) + (is_date ? 86'399 : 0);
  const std::int64_t max_seconds = std::numeric_limits<std::int64_t>::max() / 1'000'000'000 - 1;
  const std::int64_t min_seconds = std::numeric_limits<std::int64_t>::min() / 1'000'000'000 + 1;
  // Past the end of Clock's range (2262-04-11T23:47:16Z): held at that end,
  // which means the same series (some iCalendar writers put a far UNTIL for
  // "no end"; a series ends at the range's end anyway); ToString then writes
  // that end, which parses back to it.
  if (seconds > max_seconds) return Until{Clock::time_point::max(), is_date};
  if (seconds < min_seconds) {
    return Bad(Cat("UNTIL=", value, " is out of range"),
               "UNTIL must not be before 1677-09-21T00:12:45Z, where Clock's range begins");
  }
  const std::int64_t ns = seconds * 1'000'000'000 + (is_date ? 999'999'999 : 0);
  return Until{Clock::time_point(Clock::duration(ns)), is_date};
}

}  // namespace
}  // namespace internal

absl::StatusOr<RecurrenceRule> RecurrenceRule::Parse(std::string_view text) {
  using internal::Bad;
  using internal::Trim;
  using internal::Upper;
  constexpr std::string_view kExample = "a rule reads e.g. FREQ=DAILY;INTERVAL=3";
  std::string_view rest = Trim(text);
  if (rest.size() >= 6 && Upper(rest.substr(0, 6)) == "RRULE:") rest = Trim(rest.substr(6));
  if (rest.empty()) return Bad("the rule is empty", kExample);

  std::vector<std::string_view> parts = internal::Split(rest, ';');
  if (parts.size() > 1 && Trim(parts.back()).empty()) parts.pop_back();  // "FREQ=DAILY;"

  RecurrenceRule rule;
  bool has_freq = false;
  std::vector<std::string> seen;
  struct DayEntry {
    int ordinal;  // 0: plain
    int weekday;
    std::string text;
  };
  std::vector<DayEntry> days;
  int week_start = 0;  // WKST, an index into kWeekdayNames: Monday unless given

  for (std::size_t i = 0; i < parts.size(); ++i) {
    const std::string_view part = Trim(parts[i]);
    if (part.empty()) {
      // StrCat: a bad_alloc inside Debian's StrFormat ends the process
      // (engine_impl.cc, Refusal), and Submit parses rules.
      return Bad(absl::StrCat("part ", i + 1, " of '", std::string(text), "' is empty"),
                 "parts are NAME=VALUE separated by ';' (one trailing ';' is allowed)");
    }
    const std::size_t eq = part.find('=');
    if (eq == std::string_view::npos) {
      return Bad(internal::Cat("part '", part, "' has no '='"),
                 "parts are NAME=VALUE separated by ';'");
    }
    const std::string name = Upper(Trim(part.substr(0, eq)));
    const std::string_view value = Trim(part.substr(eq + 1));
    const std::string upper = Upper(value);
    static constexpr std::string_view kKnown[] = {"FREQ",   "INTERVAL", "COUNT",      "UNTIL",
                                                  "BYMONTH", "BYMONTHDAY", "BYDAY", "BYHOUR",
                                                  "BYMINUTE", "WKST"};
    if (std::find(std::begin(kKnown), std::end(kKnown), name) == std::end(kKnown)) {
      if (name.empty()) return Bad(internal::Cat("part '", part, "' has no name"), internal::kSupportedParts);
      return Bad(internal::Cat(name, " is not supported"), internal::kSupportedParts);
    }
    if (std::find(seen.begin(), seen.end(), name) != seen.end()) {
      return Bad(internal::Cat(name, " appears more than once"), "each part may appear once");
    }
    seen.push_back(name);
    if (value.empty()) {
      return Bad(internal::Cat(name, " has an empty value"),
                 internal::Cat("write ", name, "=<value> or leave the part out"));
    }

    if (name == "FREQ") {
      const auto* it = std::find(std::begin(internal::kFreqNames), std::end(internal::kFreqNames), upper);
      if (it == std::end(internal::kFreqNames)) {
        return Bad(internal::Cat("FREQ=", value, " is not supported"), internal::kFreqAccepts);
      }
      rule.frequency_ = static_cast<Frequency>(it - std::begin(internal::kFreqNames));
      has_freq = true;
    } else if (name == "INTERVAL") {
      absl::StatusOr<std::int64_t> v =
          internal::ParsePositive("INTERVAL", value, std::numeric_limits<int>::max());
      if (!v.ok()) return v.status();
      rule.interval_ = static_cast<int>(*v);
    } else if (name == "COUNT") {
      absl::StatusOr<std::int64_t> v =
          internal::ParsePositive("COUNT", value, std::numeric_limits<std::int64_t>::max());
      if (!v.ok()) return v.status();
      rule.count_ = *v;
    } else if (name == "UNTIL") {
      absl::StatusOr<internal::Until> until = internal::ParseUntil(value, upper);
      if (!until.ok()) return until.status();
      rule.until_ = until->last;
      rule.until_is_date_ = until->is_date;
    } else if (name == "BYMONTH") {
      absl::Status s = internal::ParseIntList(
          name, value, 1, 12, false, "BYMONTH takes integers from 1 to 12",
          [&](std::int64_t v) { rule.by_month_ |= static_cast<std::uint16_t>(1u << v); });
      if (!s.ok()) return s;
    } else if (name == "BYMONTHDAY") {
      absl::Status s = internal::ParseIntList(
          name, value, -31, 31, true, "BYMONTHDAY takes integers from 1 to 31 or -31 to -1",
          [&](std::int64_t v) {
            if (v > 0) rule.by_month_day_pos_ |= 1u << v;
            else rule.by_month_day_neg_ |= 1u << -v;
          });
      if (!s.ok()) return s;
    } else if (name == "BYHOUR") {
      absl::Status s = internal::ParseIntList(
          name, value, 0, 23, false, "BYHOUR takes integers from 0 to 23",
          [&](std::int64_t v) { rule.by_hour_ |= 1u << v; });
      if (!s.ok()) return s;
    } else if (name == "WKST") {
      const auto* it =
          std::find(std::begin(internal::kWeekdayNames), std::end(internal::kWeekdayNames), upper);
      if (it == std::end(internal::kWeekdayNames)) {
        return Bad(internal::Cat("WKST=", value, " is not a day"),
                   "WKST takes MO, TU, WE, TH, FR, SA or SU");
      }
      week_start = static_cast<int>(it - std::begin(internal::kWeekdayNames));
    } else if (name == "BYMINUTE") {
      absl::Status s = internal::ParseIntList(
          name, value, 0, 59, false, "BYMINUTE takes integers from 0 to 59",
          [&](std::int64_t v) { rule.by_minute_ |= std::uint64_t{1} << v; });
      if (!s.ok()) return s;
    } else {  // BYDAY
      constexpr std::string_view kAccepts =
          "BYDAY takes MO, TU, WE, TH, FR, SA or SU, with FREQ=MONTHLY or YEARLY optionally "
          "preceded by an ordinal such as 1MO or -1FR";
      for (std::string_view item : internal::Split(upper, ',')) {
        item = Trim(item);
        if (item.empty()) return Bad(internal::Cat("BYDAY=", value, " has an empty item"), kAccepts);
        const std::string quoted = internal::Quote("BYDAY", value, item);
        const std::string_view code = item.size() >= 2 ? item.substr(item.size() - 2) : item;
        const auto* it =
            std::find(std::begin(internal::kWeekdayNames), std::end(internal::kWeekdayNames), code);
        if (it == std::end(internal::kWeekdayNames)) {
          return Bad(internal::Cat(quoted, " is not a day"), kAccepts);
        }
        std::int64_t ordinal = 0;
        const std::string_view prefix = item.substr(0, item.size() - 2);
        if (!prefix.empty()) {
          const internal::IntResult r = internal::ParseInt(prefix, &ordinal);
          if (r == internal::IntResult::kNotInteger) {
            return Bad(internal::Cat(quoted, " has an ordinal that is not an integer"), kAccepts);
          }
          if (r == internal::IntResult::kOutOfRange || ordinal == 0 || ordinal > 53 ||
              ordinal < -53) {
            return Bad(internal::Cat(quoted, " is out of range"),
                       "a BYDAY ordinal is -53..-1 or 1..53 (-5..5 within a month)");
          }
        }
        days.push_back({static_cast<int>(ordinal),
                        static_cast<int>(it - std::begin(internal::kWeekdayNames)),
                        quoted});
      }
    }
  }

  if (!has_freq) {
    return Bad("FREQ is missing",
               "a rule needs FREQ=MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY");
  }
  if (rule.count_.has_value() && rule.until_.has_value()) {
    return Bad("COUNT and UNTIL are both given", "a rule may end by COUNT or by UNTIL, not both");
  }
  const std::string freq_text(internal::kFreqNames[static_cast<int>(rule.frequency_)]);
  // WKST (the first day of the week) changes which weeks a WEEKLY rule with an
  // INTERVAL above 1 picks, and nothing else here (BYWEEKNO is not supported).
  // Weeks start on Monday: any WKST is accepted where it changes nothing, and
  // not kept (ToString leaves it out); WKST=MO always.
  if (week_start > 0 && rule.frequency_ == Frequency::kWeekly && rule.interval_ > 1) {
    return Bad(internal::Cat("WKST=", internal::kWeekdayNames[week_start], " with FREQ=WEEKLY;INTERVAL=",
                             rule.interval_, " is not supported"),
               "weeks start on Monday here (WKST=MO), and with an INTERVAL above 1 another "
               "first day picks other weeks; remove WKST, or use WKST=MO");
  }
  if (rule.frequency_ == Frequency::kWeekly &&
      (rule.by_month_day_pos_ != 0 || rule.by_month_day_neg_ != 0)) {
    return Bad("BYMONTHDAY is not allowed with FREQ=WEEKLY (RFC 5545)",
               "use BYDAY to pick days of the week, or FREQ=MONTHLY with BYMONTHDAY");
  }
  const bool ordinals_allowed =
      rule.frequency_ == Frequency::kMonthly || rule.frequency_ == Frequency::kYearly;
  const bool within_month = rule.frequency_ == Frequency::kMonthly || rule.by_month_ != 0;
  for (const DayEntry& d : days) {
    if (d.ordinal == 0) {
      rule.by_weekday_ |= static_cast<std::uint8_t>(1u << d.weekday);
    } else if (!ordinals_allowed) {
      return Bad(internal::Cat(d.text, " has an ordinal, which FREQ=", freq_text, " does not take"),
                 "ordinals (1MO, -1FR) need FREQ=MONTHLY or YEARLY; use plain days MO..SU");
    } else if (within_month && (d.ordinal > 5 || d.ordinal < -5)) {
      return Bad(internal::Cat(d.text, " is out of range within a month"),
                 "with FREQ=MONTHLY, or YEARLY with BYMONTH, a BYDAY ordinal is -5..-1 or 1..5");
    } else if (d.ordinal > 0) {
      rule.by_weekday_nth_[d.weekday] |= std::uint64_t{1} << d.ordinal;
    } else {
      rule.by_weekday_last_[d.weekday] |= std::uint64_t{1} << -d.ordinal;
    }
    rule.has_by_day_ = true;
  }
  return rule;
}

std::optional<RecurrenceRule::Occurrence> RecurrenceRule::NextAfter(Clock::time_point start,
                                                                    Clock::time_point after) const {
  return internal::RecurrenceExpander(*this, start).NextAfter(after);
}

std::optional<Clock::time_point> RecurrenceRule::NextTimeAfter(Clock::time_point start,
                                                               Clock::time_point after) const {
  const std::optional<Occurrence> next =
      internal::RecurrenceExpander(*this, start).NextAfter(after, /*with_index=*/false);
  if (!next.has_value()) return std::nullopt;
  return next->time;
}

std::string RecurrenceRule::ToString() const {
  std::string out = internal::Cat("FREQ=", internal::kFreqNames[static_cast<int>(frequency_)]);
  if (interval_ != 1) internal::Append(&out, ";INTERVAL=", interval_);
  if (count_.has_value()) internal::Append(&out, ";COUNT=", *count_);
  if (until_.has_value()) {
    const std::int64_t ns = until_->time_since_epoch().count();
    const absl::CivilSecond civil =
        absl::CivilSecond(1970, 1, 1, 0, 0, 0) + internal::FloorDiv(ns, 1'000'000'000);
    // Formatted on the stack, not by StrFormat: a bad_alloc inside Debian's
    // StrFormat ends the process, and this runs inside Submit, which throws
    // with nothing changed.
    char text[48];
    if (until_is_date_) {
      std::snprintf(text, sizeof text, ";UNTIL=%04lld%02d%02d",
                    static_cast<long long>(civil.year()), civil.month(), civil.day());
    } else {
      std::snprintf(text, sizeof text, ";UNTIL=%04lld%02d%02dT%02d%02d%02dZ",
                    static_cast<long long>(civil.year()), civil.month(), civil.day(),
                    civil.hour(), civil.minute(), civil.second());
    }
    internal::Append(&out, std::string_view(text));
  }
  // Writes ";NAME=" and the set bits of `bits` (values lo..hi), if any.
  const auto append_list = [&out](std::string_view name, std::uint64_t bits, int lo, int hi) {
    if (bits == 0) return;
    internal::Append(&out, ";", name, "=");
    const char* sep = "";
    for (int v = lo; v <= hi; ++v) {
      if (((bits >> v) & 1) == 0) continue;
      internal::Append(&out, sep, v);
      sep = ",";
    }
  };
  append_list("BYMONTH", by_month_, 1, 12);
  if (by_month_day_pos_ != 0 || by_month_day_neg_ != 0) {
    internal::Append(&out, ";BYMONTHDAY=");
    const char* sep = "";
    for (int v = 1; v <= 31; ++v) {
      if (((by_month_day_pos_ >> v) & 1) == 0) continue;
      internal::Append(&out, sep, v);
      sep = ",";
    }
    for (int v = 1; v <= 31; ++v) {
      if (((by_month_day_neg_ >> v) & 1) == 0) continue;
      internal::Append(&out, sep, -v);
      sep = ",";
    }
  }
  if (has_by_day_) {
    internal::Append(&out, ";BYDAY=");
    const char* sep = "";
    for (int w = 0; w < 7; ++w) {  // per weekday: plain, then 1.., then -1..
      const std::string_view day = internal::kWeekdayNames[w];
      if (((by_weekday_ >> w) & 1) != 0) {
        internal::Append(&out, sep, day);
        sep = ",";
      }
      for (int n = 1; n <= 53; ++n) {
        if (((by_weekday_nth_[w] >> n) & 1) == 0) continue;
        internal::Append(&out, sep, n, day);
        sep = ",";
      }
      for (int n = 1; n <= 53; ++n) {
        if (((by_weekday_last_[w] >> n) & 1) == 0) continue;
        internal::Append(&out, sep, -n, day);
        sep = ",";
      }
    }
  }
  append_list("BYHOUR", by_hour_, 0, 23);
  append_list("BYMINUTE", by_minute_, 0, 59);
  return out;
}

}  // namespace ordo
