// ordo/recurrence.h: recurrence rules, a subset of iCalendar RRULE (RFC 5545 3.3.10).
//
// Offers
//   Frequency                     the FREQ of a rule.
//   RecurrenceRule::Parse         validate and parse rule text such as "FREQ=DAILY;INTERVAL=3;".
//   RecurrenceRule::NextAfter     the first occurrence of a series strictly after an instant,
//                                 with its index in the series (the start is index 0).
//   RecurrenceRule::ToString      the normalized text; Parse(r.ToString()) == r.
//
// Who may call: any thread, concurrently. A RecurrenceRule is an immutable value
// after Parse; it holds no pointers and copies are cheap (under 200 bytes).
//
// Supported parts: FREQ (MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY, YEARLY; required),
// INTERVAL, COUNT, UNTIL, BYMONTH, BYMONTHDAY, BYDAY, BYHOUR, BYMINUTE; and WKST
// where it changes nothing: weeks start on Monday, so any WKST is accepted except
// with FREQ=WEEKLY and an INTERVAL above 1, where only WKST=MO is (WKST is not
// kept: ToString leaves it out). Anything else (BYSECOND, BYSETPOS, BYYEARDAY,
// BYWEEKNO, ...) is rejected, never ignored.
//
// How a series expands (RFC 5545's table, restricted to these parts):
//   - Every occurrence has the start's second and sub-second part; the minute and hour
//     come from BYMINUTE / BYHOUR where given, else from the start (for the FREQs
//     coarser than them); the FREQ grid fixes the rest.
//   - BYMONTH limits for every FREQ (for YEARLY it picks the months).
//   - BYMONTHDAY and BYDAY pick days for MONTHLY/YEARLY; with neither, the day is the
//     start's day of the month (YEARLY: the start's month too, unless BYMONTH is given).
//     When both are given a day must satisfy both (RFC: BYDAY limits BYMONTHDAY), e.g.
//     "BYMONTHDAY=13;BYDAY=FR" is every Friday the 13th. An ordinal BYDAY (1MO, -1FR)
//     counts weekdays within the month; for YEARLY without BYMONTH, within the year.
//   - WEEKLY: BYDAY picks weekdays of each week (weeks start on Monday, RFC's default
//     WKST); without it, the start's weekday. BYMONTHDAY is rejected with WEEKLY.
//   - DAILY, HOURLY, MINUTELY: BYMONTHDAY and BYDAY (no ordinals) limit; BYHOUR limits
//     HOURLY and MINUTELY, BYMINUTE limits MINUTELY.
//   - INTERVAL counts FREQ periods (years, months, Monday-based weeks, days, hours,
//     minutes) from the period that holds the start: occurrences sit on a fixed grid
//     and never drift.
//   - Dates that do not exist (the 31st of a 30-day month, 29 February outside leap
//     years, BYMONTHDAY=-31 in April) are skipped, not moved.
//   - The start is always occurrence 0, whether or not it matches the BY parts and
//     even if it lies after UNTIL; COUNT counts it (COUNT=1 is the start alone).
//   - UNTIL is inclusive. A date-only UNTIL (yyyymmdd) includes that whole UTC day.
//     One past the end of Clock's range (e.g. 99991231, "no end") is held at that
//     end; one before its beginning (1677-09-21T00:12:45Z) is refused.
//   - All calendar arithmetic is in UTC (absl civil time); there are no time zones.
// Not promised: occurrences beyond Clock::time_point's range (after 2262-04-11) do
// not exist; a series that would continue past it ends there.
#ifndef ORDO_RECURRENCE_H_
#define ORDO_RECURRENCE_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "ordo/clock.h"

namespace ordo {

namespace internal {
class RecurrenceExpander;  // core/src/recurrence.cc: expands one series
}  // namespace internal

// The FREQ part of a rule: the size of the period that INTERVAL counts.
enum class Frequency : std::uint8_t { kMinutely, kHourly, kDaily, kWeekly, kMonthly, kYearly };

// A parsed, validated recurrence rule. A value type: compare with ==, copy freely.
class RecurrenceRule {
 public:
  // Parses an RRULE subset: parts NAME=VALUE separated by ';', an optional leading
  // "RRULE:", one optional trailing ';' (Dynamics writes "FREQ=DAILY;INTERVAL=3;"),
  // names and values case-insensitive, blanks around parts, '=' and ',' ignored.
  //   FREQ        required; MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY
  //   INTERVAL    1..2147483647, default 1
  //   COUNT       >= 1 (occurrences in all, the start included)
  //   UNTIL       yyyymmddThhmmssZ or yyyymmdd, UTC, inclusive; not with COUNT
  //   BYMONTH     1..12, comma-separated list (as are all BY parts)
  //   BYMONTHDAY  1..31 or -31..-1 (-1 is the last day); not with WEEKLY
  //   BYDAY       MO TU WE TH FR SA SU; with MONTHLY/YEARLY also with an ordinal
  //               (1MO, -1FR): -5..5 within a month, -53..53 for YEARLY without BYMONTH
  //   BYHOUR      0..23
  //   BYMINUTE    0..59
  // Errors: absl::InvalidArgumentError naming the bad part and what it accepts, e.g.
  // "recurrence: INTERVAL=0 is out of range; INTERVAL takes an integer >= 1". Also for
  // a missing FREQ, duplicate, unknown or empty parts, COUNT with UNTIL.
  static absl::StatusOr<RecurrenceRule> Parse(std::string_view text);

  // One occurrence of a series: when, and its position (0 is the start).
  struct Occurrence {
    Clock::time_point time;
    std::int64_t index;
    friend bool operator==(const Occurrence&, const Occurrence&) = default;
  };

  // The first occurrence strictly after `after` of the series that starts at `start`,
  // or nullopt if the series has ended by then: COUNT reached (occurrences at or before
  // `after` are counted too), past UNTIL, or past the end of Clock's range. If `after`
  // is before `start`, that is {start, 0}.
  // Cost: jumps to the period holding `after` arithmetically, then scans forward by
  // months (skipping whole months and years that cannot match); a rule that can never
  // match again (BYMONTH=2;BYMONTHDAY=31) answers nullopt after scanning to the end of
  // Clock's range, a few milliseconds at worst. The index costs O(1) for rules whose
  // periods all hold the same number of occurrences (MINUTELY, HOURLY, DAILY or WEEKLY
  // with FREQ and INTERVAL alone, WEEKLY with BYDAY, DAILY with BYHOUR, ...), else a
  // count since `start` (by months, MONTHLY and YEARLY always; by days and hours for
  // HOURLY and MINUTELY with BY parts), which stops early at COUNT and grows with the
  // series' age.
  std::optional<Occurrence> NextAfter(Clock::time_point start, Clock::time_point after) const;
  // NextAfter's time alone: with no COUNT, the index is not counted (what the engine
  // uses for a series' next occurrence, however old the series).
  std::optional<Clock::time_point> NextTimeAfter(Clock::time_point start,
                                                 Clock::time_point after) const;

  // The normalized rule text: parts in the order FREQ, INTERVAL (omitted when 1), COUNT,
  // UNTIL, BYMONTH, BYMONTHDAY, BYDAY, BYHOUR, BYMINUTE; lists in a fixed order
  // (numbers ascending, but BYMONTHDAY's days from the end, -1 to -31, after 1 to
  // 31; BYDAY by weekday from MO, each plain, then 1MO.., then -1MO..), duplicates
  // dropped; no trailing ';'. E.g. "FREQ=DAILY;INTERVAL=3".
  std::string ToString() const;

  // FREQ.
  Frequency frequency() const { return frequency_; }
  // INTERVAL (1 when not given).
  int interval() const { return interval_; }
  // COUNT, if given.
  std::optional<std::int64_t> count() const { return count_; }
  // The last instant UNTIL admits, if given (inclusive). For a date-only UNTIL this is
  // the last nanosecond of that UTC day.
  std::optional<Clock::time_point> until() const { return until_; }

  friend bool operator==(const RecurrenceRule&, const RecurrenceRule&) = default;

 private:
  RecurrenceRule() = default;

  Frequency frequency_ = Frequency::kDaily;
  int interval_ = 1;
  std::optional<std::int64_t> count_;
  std::optional<Clock::time_point> until_;
  bool until_is_date_ = false;  // UNTIL was written yyyymmdd; ToString writes it so again
  // Bit m (1..12) set: month m is listed.
  std::uint16_t by_month_ = 0;
  // Bit d (1..31) set: BYMONTHDAY=d, resp. BYMONTHDAY=-d, is listed.
  std::uint32_t by_month_day_pos_ = 0;
  std::uint32_t by_month_day_neg_ = 0;
  // Bit w (0 = Monday .. 6 = Sunday): the plain weekday is listed.
  std::uint8_t by_weekday_ = 0;
  // by_weekday_nth_[w] bit n (1..53): nMO.. is listed; by_weekday_last_[w] bit n: -nMO...
  std::array<std::uint64_t, 7> by_weekday_nth_ = {};
  std::array<std::uint64_t, 7> by_weekday_last_ = {};
  bool has_by_day_ = false;  // any BYDAY entry, plain or ordinal
  // Bit h (0..23), bit m (0..59).
  std::uint32_t by_hour_ = 0;
  std::uint64_t by_minute_ = 0;

  friend class internal::RecurrenceExpander;
};

}  // namespace ordo

#endif  // ORDO_RECURRENCE_H_
