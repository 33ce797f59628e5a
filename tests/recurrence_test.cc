// recurrence_test.cc: RecurrenceRule parsing, expansion and limits.
//
// Worked examples come from RFC 5545 section 3.3.10 (its DTSTARTs, read as UTC), for
// the parts Ordo supports; properties are checked against a brute-force, minute-by-
// minute reference and against random `after` points.
#include "ordo/recurrence.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"
#include "gtest/gtest.h"
#include "support/thread_cpu.h"

namespace ordo {
namespace {

using std::chrono::nanoseconds;

const absl::CivilSecond kEpoch(1970, 1, 1, 0, 0, 0);

Clock::time_point At(absl::CivilSecond c) {
  return Clock::time_point(std::chrono::seconds(c - kEpoch));
}
Clock::time_point At(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
  return At(absl::CivilSecond(y, mo, d, h, mi, s));
}

std::int64_t FloorDiv(std::int64_t a, std::int64_t b) {
  return a / b - ((a % b != 0 && a < 0) ? 1 : 0);
}

absl::CivilSecond CivilOf(Clock::time_point t) {
  return kEpoch + FloorDiv(t.time_since_epoch().count(), 1'000'000'000);
}

// "1997-09-02 09:00", with ":ss" and ".nnnnnnnnn" when they are not zero.
std::string Fmt(Clock::time_point t) {
  const std::int64_t ns = t.time_since_epoch().count();
  const std::int64_t frac = ns - FloorDiv(ns, 1'000'000'000) * 1'000'000'000;
  const absl::CivilSecond c = CivilOf(t);
  std::string s = absl::StrFormat("%04d-%02d-%02d %02d:%02d", c.year(), c.month(), c.day(),
                                  c.hour(), c.minute());
  if (c.second() != 0 || frac != 0) s += absl::StrFormat(":%02d", c.second());
  if (frac != 0) s += absl::StrFormat(".%09d", frac);
  return s;
}

RecurrenceRule MustParse(std::string_view text) {
  absl::StatusOr<RecurrenceRule> rule = RecurrenceRule::Parse(text);
  if (!rule.ok()) {
    ADD_FAILURE() << "Parse(\"" << text << "\"): " << rule.status();
    return *RecurrenceRule::Parse("FREQ=YEARLY;COUNT=1");
  }
  return *rule;
}

// The first `n` occurrences (fewer if the series ends), each found by NextAfter from
// the previous one; checks that the indexes run 0, 1, 2, ...
std::vector<Clock::time_point> FirstTimes(const RecurrenceRule& rule, Clock::time_point start,
                                          int n) {
  std::vector<Clock::time_point> out;
  Clock::time_point after = start - nanoseconds(1);
  while (static_cast<int>(out.size()) < n) {
    const std::optional<RecurrenceRule::Occurrence> next = rule.NextAfter(start, after);
    if (!next.has_value()) break;
    EXPECT_EQ(next->index, static_cast<std::int64_t>(out.size()))
        << rule.ToString() << " at " << Fmt(next->time);
    EXPECT_GT(next->time, after);
    out.push_back(next->time);
    after = next->time;
  }
  return out;
}

std::vector<std::string> First(std::string_view text, Clock::time_point start, int n) {
  std::vector<std::string> out;
  for (Clock::time_point t : FirstTimes(MustParse(text), start, n)) out.push_back(Fmt(t));
  return out;
}

// Like First, for all of a finite series (at most `n`, to stop a runaway).
std::vector<std::string> All(std::string_view text, Clock::time_point start, int n = 1000) {
  std::vector<std::string> out = First(text, start, n + 1);
  EXPECT_LE(static_cast<int>(out.size()), n) << text << " did not end";
  return out;
}

std::string ErrorOf(std::string_view text) {
  absl::StatusOr<RecurrenceRule> rule = RecurrenceRule::Parse(text);
  if (rule.ok()) return "accepted as " + rule->ToString();
  EXPECT_EQ(rule.status().code(), absl::StatusCode::kInvalidArgument) << text;
  return std::string(rule.status().message());
}

// ---- RFC 5545 examples ----------------------------------------------------------

TEST(RecurrenceRfcTest, DailyForTenOccurrences) {
  EXPECT_EQ(All("FREQ=DAILY;COUNT=10", At(1997, 9, 2, 9)),
            (std::vector<std::string>{"1997-09-02 09:00", "1997-09-03 09:00", "1997-09-04 09:00",
                                      "1997-09-05 09:00", "1997-09-06 09:00", "1997-09-07 09:00",
                                      "1997-09-08 09:00", "1997-09-09 09:00", "1997-09-10 09:00",
                                      "1997-09-11 09:00"}));
}

TEST(RecurrenceRfcTest, DailyUntilDecember24) {
  const std::vector<std::string> all =
      All("FREQ=DAILY;UNTIL=19971224T000000Z", At(1997, 9, 2, 9));
  ASSERT_EQ(all.size(), 113u);
  EXPECT_EQ(all.front(), "1997-09-02 09:00");
  EXPECT_EQ(all.back(), "1997-12-23 09:00");
}

TEST(RecurrenceRfcTest, EveryOtherDayForever) {
  EXPECT_EQ(First("FREQ=DAILY;INTERVAL=2", At(1997, 9, 2, 9), 4),
            (std::vector<std::string>{"1997-09-02 09:00", "1997-09-04 09:00", "1997-09-06 09:00",
                                      "1997-09-08 09:00"}));
}

TEST(RecurrenceRfcTest, EveryTenDaysFiveOccurrences) {
  EXPECT_EQ(All("FREQ=DAILY;INTERVAL=10;COUNT=5", At(1997, 9, 2, 9)),
            (std::vector<std::string>{"1997-09-02 09:00", "1997-09-12 09:00", "1997-09-22 09:00",
                                      "1997-10-02 09:00", "1997-10-12 09:00"}));
}

TEST(RecurrenceRfcTest, EveryDayInJanuaryForThreeYearsDailyAndYearlyAgree) {
  const Clock::time_point start = At(1998, 1, 1, 9);
  const std::vector<std::string> daily =
      All("FREQ=DAILY;UNTIL=20000131T140000Z;BYMONTH=1", start);
  ASSERT_EQ(daily.size(), 93u);
  EXPECT_EQ(daily[30], "1998-01-31 09:00");
  EXPECT_EQ(daily[31], "1999-01-01 09:00");
  EXPECT_EQ(daily.back(), "2000-01-31 09:00");
  EXPECT_EQ(All("FREQ=YEARLY;UNTIL=20000131T140000Z;BYMONTH=1;BYDAY=SU,MO,TU,WE,TH,FR,SA", start),
            daily);
}

TEST(RecurrenceRfcTest, WeeklyForTenOccurrences) {
  const std::vector<std::string> all = All("FREQ=WEEKLY;COUNT=10", At(1997, 9, 2, 9));
  ASSERT_EQ(all.size(), 10u);
  EXPECT_EQ(all[1], "1997-09-09 09:00");
  EXPECT_EQ(all.back(), "1997-11-04 09:00");
}

TEST(RecurrenceRfcTest, WeeklyOnTuesdayAndThursdayForFiveWeeks) {
  EXPECT_EQ(All("FREQ=WEEKLY;COUNT=10;BYDAY=TU,TH", At(1997, 9, 2, 9)),
            (std::vector<std::string>{"1997-09-02 09:00", "1997-09-04 09:00", "1997-09-09 09:00",
                                      "1997-09-11 09:00", "1997-09-16 09:00", "1997-09-18 09:00",
                                      "1997-09-23 09:00", "1997-09-25 09:00", "1997-09-30 09:00",
                                      "1997-10-02 09:00"}));
}

TEST(RecurrenceRfcTest, EveryOtherWeekOnMondayWednesdayFridayUntilDecember24) {
  EXPECT_EQ(
      All("FREQ=WEEKLY;INTERVAL=2;UNTIL=19971224T000000Z;BYDAY=MO,WE,FR", At(1997, 9, 1, 9)),
      (std::vector<std::string>{
          "1997-09-01 09:00", "1997-09-03 09:00", "1997-09-05 09:00", "1997-09-15 09:00",
          "1997-09-17 09:00", "1997-09-19 09:00", "1997-09-29 09:00", "1997-10-01 09:00",
          "1997-10-03 09:00", "1997-10-13 09:00", "1997-10-15 09:00", "1997-10-17 09:00",
          "1997-10-27 09:00", "1997-10-29 09:00", "1997-10-31 09:00", "1997-11-10 09:00",
          "1997-11-12 09:00", "1997-11-14 09:00", "1997-11-24 09:00", "1997-11-26 09:00",
          "1997-11-28 09:00", "1997-12-08 09:00", "1997-12-10 09:00", "1997-12-12 09:00",
          "1997-12-22 09:00"}));
}

TEST(RecurrenceRfcTest, EveryOtherWeekOnTuesdayAndThursdayForEightOccurrences) {
  EXPECT_EQ(All("FREQ=WEEKLY;INTERVAL=2;COUNT=8;BYDAY=TU,TH", At(1997, 9, 2, 9)),
            (std::vector<std::string>{"1997-09-02 09:00", "1997-09-04 09:00", "1997-09-16 09:00",
                                      "1997-09-18 09:00", "1997-09-30 09:00", "1997-10-02 09:00",
                                      "1997-10-14 09:00", "1997-10-16 09:00"}));
}

TEST(RecurrenceRfcTest, MonthlyOnTheFirstFriday) {
  EXPECT_EQ(All("FREQ=MONTHLY;COUNT=10;BYDAY=1FR", At(1997, 9, 5, 9)),
            (std::vector<std::string>{"1997-09-05 09:00", "1997-10-03 09:00", "1997-11-07 09:00",
                                      "1997-12-05 09:00", "1998-01-02 09:00", "1998-02-06 09:00",
                                      "1998-03-06 09:00", "1998-04-03 09:00", "1998-05-01 09:00",
                                      "1998-06-05 09:00"}));
}

TEST(RecurrenceRfcTest, EveryOtherMonthOnTheFirstAndLastSunday) {
  EXPECT_EQ(All("FREQ=MONTHLY;INTERVAL=2;COUNT=10;BYDAY=1SU,-1SU", At(1997, 9, 7, 9)),
            (std::vector<std::string>{"1997-09-07 09:00", "1997-09-28 09:00", "1997-11-02 09:00",
                                      "1997-11-30 09:00", "1998-01-04 09:00", "1998-01-25 09:00",
                                      "1998-03-01 09:00", "1998-03-29 09:00", "1998-05-03 09:00",
                                      "1998-05-31 09:00"}));
}

TEST(RecurrenceRfcTest, MonthlyOnTheSecondToLastMonday) {
  EXPECT_EQ(All("FREQ=MONTHLY;COUNT=6;BYDAY=-2MO", At(1997, 9, 22, 9)),
            (std::vector<std::string>{"1997-09-22 09:00", "1997-10-20 09:00", "1997-11-17 09:00",
                                      "1997-12-22 09:00", "1998-01-19 09:00",
                                      "1998-02-16 09:00"}));
}

TEST(RecurrenceRfcTest, MonthlyOnTheThirdToLastDay) {
  EXPECT_EQ(First("FREQ=MONTHLY;BYMONTHDAY=-3", At(1997, 9, 28, 9), 6),
            (std::vector<std::string>{"1997-09-28 09:00", "1997-10-29 09:00", "1997-11-28 09:00",
                                      "1997-12-29 09:00", "1998-01-29 09:00",
                                      "1998-02-26 09:00"}));
}

TEST(RecurrenceRfcTest, MonthlyOnTheSecondAndFifteenth) {
  EXPECT_EQ(All("FREQ=MONTHLY;COUNT=10;BYMONTHDAY=2,15", At(1997, 9, 2, 9)),
            (std::vector<std::string>{"1997-09-02 09:00", "1997-09-15 09:00", "1997-10-02 09:00",
                                      "1997-10-15 09:00", "1997-11-02 09:00", "1997-11-15 09:00",
                                      "1997-12-02 09:00", "1997-12-15 09:00", "1998-01-02 09:00",
                                      "1998-01-15 09:00"}));
}

TEST(RecurrenceRfcTest, MonthlyOnTheFirstAndLastDay) {
  EXPECT_EQ(All("FREQ=MONTHLY;COUNT=10;BYMONTHDAY=1,-1", At(1997, 9, 30, 9)),
            (std::vector<std::string>{"1997-09-30 09:00", "1997-10-01 09:00", "1997-10-31 09:00",
                                      "1997-11-01 09:00", "1997-11-30 09:00", "1997-12-01 09:00",
                                      "1997-12-31 09:00", "1998-01-01 09:00", "1998-01-31 09:00",
                                      "1998-02-01 09:00"}));
}

TEST(RecurrenceRfcTest, MonthlyOnTheLastDayViaMinusOne) {
  EXPECT_EQ(First("FREQ=MONTHLY;BYMONTHDAY=-1", At(2024, 1, 31, 12), 5),
            (std::vector<std::string>{"2024-01-31 12:00", "2024-02-29 12:00", "2024-03-31 12:00",
                                      "2024-04-30 12:00", "2024-05-31 12:00"}));
}

TEST(RecurrenceRfcTest, EveryEighteenMonthsOnTheTenthThroughFifteenth) {
  EXPECT_EQ(All("FREQ=MONTHLY;INTERVAL=18;COUNT=10;BYMONTHDAY=10,11,12,13,14,15",
                At(1997, 9, 10, 9)),
            (std::vector<std::string>{"1997-09-10 09:00", "1997-09-11 09:00", "1997-09-12 09:00",
                                      "1997-09-13 09:00", "1997-09-14 09:00", "1997-09-15 09:00",
                                      "1999-03-10 09:00", "1999-03-11 09:00", "1999-03-12 09:00",
                                      "1999-03-13 09:00"}));
}

TEST(RecurrenceRfcTest, EveryTuesdayEveryOtherMonth) {
  EXPECT_EQ(First("FREQ=MONTHLY;INTERVAL=2;BYDAY=TU", At(1997, 9, 2, 9), 14),
            (std::vector<std::string>{"1997-09-02 09:00", "1997-09-09 09:00", "1997-09-16 09:00",
                                      "1997-09-23 09:00", "1997-09-30 09:00", "1997-11-04 09:00",
                                      "1997-11-11 09:00", "1997-11-18 09:00", "1997-11-25 09:00",
                                      "1998-01-06 09:00", "1998-01-13 09:00", "1998-01-20 09:00",
                                      "1998-01-27 09:00", "1998-03-03 09:00"}));
}

TEST(RecurrenceRfcTest, YearlyInJuneAndJuly) {
  EXPECT_EQ(All("FREQ=YEARLY;COUNT=10;BYMONTH=6,7", At(1997, 6, 10, 9)),
            (std::vector<std::string>{"1997-06-10 09:00", "1997-07-10 09:00", "1998-06-10 09:00",
                                      "1998-07-10 09:00", "1999-06-10 09:00", "1999-07-10 09:00",
                                      "2000-06-10 09:00", "2000-07-10 09:00", "2001-06-10 09:00",
                                      "2001-07-10 09:00"}));
}

TEST(RecurrenceRfcTest, EveryOtherYearInJanuaryFebruaryMarch) {
  EXPECT_EQ(All("FREQ=YEARLY;INTERVAL=2;COUNT=10;BYMONTH=1,2,3", At(1997, 3, 10, 9)),
            (std::vector<std::string>{"1997-03-10 09:00", "1999-01-10 09:00", "1999-02-10 09:00",
                                      "1999-03-10 09:00", "2001-01-10 09:00", "2001-02-10 09:00",
                                      "2001-03-10 09:00", "2003-01-10 09:00", "2003-02-10 09:00",
                                      "2003-03-10 09:00"}));
}

TEST(RecurrenceRfcTest, TwentiethMondayOfTheYear) {
  EXPECT_EQ(First("FREQ=YEARLY;BYDAY=20MO", At(1997, 5, 19, 9), 3),
            (std::vector<std::string>{"1997-05-19 09:00", "1998-05-18 09:00",
                                      "1999-05-17 09:00"}));
}

TEST(RecurrenceRfcTest, EveryThursdayInMarch) {
  EXPECT_EQ(First("FREQ=YEARLY;BYMONTH=3;BYDAY=TH", At(1997, 3, 13, 9), 11),
            (std::vector<std::string>{"1997-03-13 09:00", "1997-03-20 09:00", "1997-03-27 09:00",
                                      "1998-03-05 09:00", "1998-03-12 09:00", "1998-03-19 09:00",
                                      "1998-03-26 09:00", "1999-03-04 09:00", "1999-03-11 09:00",
                                      "1999-03-18 09:00", "1999-03-25 09:00"}));
}

TEST(RecurrenceRfcTest, EveryThursdayInJuneJulyAndAugust) {
  const std::vector<std::string> first =
      First("FREQ=YEARLY;BYDAY=TH;BYMONTH=6,7,8", At(1997, 6, 5, 9), 14);
  EXPECT_EQ(first, (std::vector<std::string>{
                       "1997-06-05 09:00", "1997-06-12 09:00", "1997-06-19 09:00",
                       "1997-06-26 09:00", "1997-07-03 09:00", "1997-07-10 09:00",
                       "1997-07-17 09:00", "1997-07-24 09:00", "1997-07-31 09:00",
                       "1997-08-07 09:00", "1997-08-14 09:00", "1997-08-21 09:00",
                       "1997-08-28 09:00", "1998-06-04 09:00"}));
}

TEST(RecurrenceRfcTest, EveryFridayTheThirteenthIntersectsBydayAndBymonthday) {
  // RFC excludes the start with EXDATE; here the start is occurrence 0 regardless.
  EXPECT_EQ(First("FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13", At(1997, 9, 2, 9), 6),
            (std::vector<std::string>{"1997-09-02 09:00", "1998-02-13 09:00", "1998-03-13 09:00",
                                      "1998-11-13 09:00", "1999-08-13 09:00",
                                      "2000-10-13 09:00"}));
}

TEST(RecurrenceRfcTest, FirstSaturdayAfterTheFirstSunday) {
  EXPECT_EQ(First("FREQ=MONTHLY;BYDAY=SA;BYMONTHDAY=7,8,9,10,11,12,13", At(1997, 9, 13, 9), 10),
            (std::vector<std::string>{"1997-09-13 09:00", "1997-10-11 09:00", "1997-11-08 09:00",
                                      "1997-12-13 09:00", "1998-01-10 09:00", "1998-02-07 09:00",
                                      "1998-03-07 09:00", "1998-04-11 09:00", "1998-05-09 09:00",
                                      "1998-06-13 09:00"}));
}

TEST(RecurrenceRfcTest, UsPresidentialElectionDay) {
  EXPECT_EQ(First("FREQ=YEARLY;INTERVAL=4;BYMONTH=11;BYDAY=TU;BYMONTHDAY=2,3,4,5,6,7,8",
                  At(1996, 11, 5, 9), 3),
            (std::vector<std::string>{"1996-11-05 09:00", "2000-11-07 09:00",
                                      "2004-11-02 09:00"}));
}

TEST(RecurrenceRfcTest, EveryThreeHoursFromNineToFive) {
  EXPECT_EQ(All("FREQ=HOURLY;INTERVAL=3;UNTIL=19970902T170000Z", At(1997, 9, 2, 9)),
            (std::vector<std::string>{"1997-09-02 09:00", "1997-09-02 12:00",
                                      "1997-09-02 15:00"}));
}

TEST(RecurrenceRfcTest, EveryFifteenMinutesForSixOccurrences) {
  EXPECT_EQ(All("FREQ=MINUTELY;INTERVAL=15;COUNT=6", At(1997, 9, 2, 9)),
            (std::vector<std::string>{"1997-09-02 09:00", "1997-09-02 09:15", "1997-09-02 09:30",
                                      "1997-09-02 09:45", "1997-09-02 10:00",
                                      "1997-09-02 10:15"}));
}

TEST(RecurrenceRfcTest, EveryHourAndAHalfForFourOccurrences) {
  EXPECT_EQ(All("FREQ=MINUTELY;INTERVAL=90;COUNT=4", At(1997, 9, 2, 9)),
            (std::vector<std::string>{"1997-09-02 09:00", "1997-09-02 10:30", "1997-09-02 12:00",
                                      "1997-09-02 13:30"}));
}

TEST(RecurrenceRfcTest, EveryTwentyMinutesFromNineToFiveDailyAndMinutelyAgree) {
  const Clock::time_point start = At(1997, 9, 2, 9);
  const std::vector<std::string> daily =
      First("FREQ=DAILY;BYHOUR=9,10,11,12,13,14,15,16;BYMINUTE=0,20,40", start, 50);
  ASSERT_EQ(daily.size(), 50u);
  EXPECT_EQ(daily[1], "1997-09-02 09:20");
  EXPECT_EQ(daily[23], "1997-09-02 16:40");
  EXPECT_EQ(daily[24], "1997-09-03 09:00");
  EXPECT_EQ(First("FREQ=MINUTELY;INTERVAL=20;BYHOUR=9,10,11,12,13,14,15,16", start, 50), daily);
}

TEST(RecurrenceRfcTest, InvalidDatesAreIgnoredNotMoved) {
  EXPECT_EQ(All("FREQ=MONTHLY;BYMONTHDAY=15,30;COUNT=5", At(2007, 1, 15, 9)),
            (std::vector<std::string>{"2007-01-15 09:00", "2007-01-30 09:00", "2007-02-15 09:00",
                                      "2007-03-15 09:00", "2007-03-30 09:00"}));
}

// ---- Dynamics, calendar edges, limits -------------------------------------------

TEST(RecurrenceTest, DynamicsDailyIntervalWithTrailingSemicolonStaysOnGrid) {
  EXPECT_EQ(First("FREQ=DAILY;INTERVAL=3;", At(2026, 1, 1, 9, 30), 4),
            (std::vector<std::string>{"2026-01-01 09:30", "2026-01-04 09:30", "2026-01-07 09:30",
                                      "2026-01-10 09:30"}));
}

TEST(RecurrenceTest, MonthlyOnTheThirtyFirstSkipsShortMonths) {
  const std::vector<std::string> expected = {"2026-01-31 08:00", "2026-03-31 08:00",
                                             "2026-05-31 08:00", "2026-07-31 08:00",
                                             "2026-08-31 08:00", "2026-10-31 08:00",
                                             "2026-12-31 08:00", "2027-01-31 08:00"};
  EXPECT_EQ(First("FREQ=MONTHLY", At(2026, 1, 31, 8), 8), expected);
  EXPECT_EQ(First("FREQ=MONTHLY;BYMONTHDAY=31", At(2026, 1, 31, 8), 8), expected);
}

TEST(RecurrenceTest, MonthlyOnTheThirtyFirstCountsOnlyExistingDates) {
  // COUNT counts occurrences, not months: the fourth is in July.
  EXPECT_EQ(All("FREQ=MONTHLY;COUNT=4", At(2026, 1, 31, 8)),
            (std::vector<std::string>{"2026-01-31 08:00", "2026-03-31 08:00", "2026-05-31 08:00",
                                      "2026-07-31 08:00"}));
}

TEST(RecurrenceTest, YearlyOnFebruaryTwentyNinthOnlyInLeapYears) {
  EXPECT_EQ(First("FREQ=YEARLY", At(2024, 2, 29, 7), 3),
            (std::vector<std::string>{"2024-02-29 07:00", "2028-02-29 07:00",
                                      "2032-02-29 07:00"}));
  // 2100 is not a leap year: an eight-year gap.
  EXPECT_EQ(First("FREQ=YEARLY", At(2096, 2, 29, 7), 2),
            (std::vector<std::string>{"2096-02-29 07:00", "2104-02-29 07:00"}));
  EXPECT_EQ(First("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", At(2023, 1, 1), 3),
            (std::vector<std::string>{"2023-01-01 00:00", "2024-02-29 00:00",
                                      "2028-02-29 00:00"}));
}

TEST(RecurrenceTest, DailyOnFebruaryTwentyNinthFindsTheNextLeapDay) {
  EXPECT_EQ(First("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=29", At(2096, 3, 1), 2),
            (std::vector<std::string>{"2096-03-01 00:00", "2104-02-29 00:00"}));
}

TEST(RecurrenceTest, StartIsOccurrenceZeroEvenIfItDoesNotMatch) {
  // 2026-01-07 is a Wednesday; the rule picks Mondays.
  EXPECT_EQ(All("FREQ=WEEKLY;BYDAY=MO;COUNT=3", At(2026, 1, 7, 10)),
            (std::vector<std::string>{"2026-01-07 10:00", "2026-01-12 10:00",
                                      "2026-01-19 10:00"}));
  EXPECT_EQ(All("FREQ=DAILY;BYHOUR=9;COUNT=2", At(2026, 1, 7, 10)),
            (std::vector<std::string>{"2026-01-07 10:00", "2026-01-08 09:00"}));
}

TEST(RecurrenceTest, StartThatMatchesIsCountedOnce) {
  EXPECT_EQ(All("FREQ=WEEKLY;BYDAY=WE,FR;COUNT=3", At(2026, 1, 7, 10)),
            (std::vector<std::string>{"2026-01-07 10:00", "2026-01-09 10:00",
                                      "2026-01-14 10:00"}));
}

TEST(RecurrenceTest, OccurrencesBeforeTheStartInItsPeriodAreNotPartOfTheSeries) {
  // Monday of the start's week, and 08:00 of the start's day, lie before the start.
  EXPECT_EQ(First("FREQ=WEEKLY;BYDAY=MO,WE", At(2026, 1, 7, 10), 3),
            (std::vector<std::string>{"2026-01-07 10:00", "2026-01-12 10:00",
                                      "2026-01-14 10:00"}));
  EXPECT_EQ(First("FREQ=DAILY;BYHOUR=8,12", At(2026, 1, 7, 10), 3),
            (std::vector<std::string>{"2026-01-07 10:00", "2026-01-07 12:00",
                                      "2026-01-08 08:00"}));
}

TEST(RecurrenceTest, CountOneIsTheStartAlone) {
  EXPECT_EQ(All("FREQ=DAILY;COUNT=1", At(2026, 1, 1)),
            (std::vector<std::string>{"2026-01-01 00:00"}));
}

TEST(RecurrenceTest, CountIncludesOccurrencesAtOrBeforeAfter) {
  const RecurrenceRule rule = MustParse("FREQ=DAILY;COUNT=5");
  const Clock::time_point start = At(2026, 1, 1, 9);
  const std::optional<RecurrenceRule::Occurrence> fourth = rule.NextAfter(start, At(2026, 1, 3, 9));
  ASSERT_TRUE(fourth.has_value());
  EXPECT_EQ(Fmt(fourth->time), "2026-01-04 09:00");
  EXPECT_EQ(fourth->index, 3);
  EXPECT_EQ(rule.NextAfter(start, At(2026, 1, 5, 8))->index, 4);
  EXPECT_FALSE(rule.NextAfter(start, At(2026, 1, 5, 9)).has_value());
  EXPECT_FALSE(rule.NextAfter(start, At(2030, 1, 1)).has_value());
}

TEST(RecurrenceTest, CountWithByPartsCountsEveryEarlierOccurrence) {
  // Second Tuesday and last Friday: months have 2 each, so the 7th is in April.
  const RecurrenceRule rule = MustParse("FREQ=MONTHLY;BYDAY=2TU,-1FR;COUNT=7");
  const Clock::time_point start = At(2026, 1, 13, 9);  // the second Tuesday of January
  EXPECT_EQ(rule.NextAfter(start, At(2026, 4, 1))->index, 6);
  EXPECT_EQ(Fmt(rule.NextAfter(start, At(2026, 4, 1))->time), "2026-04-14 09:00");
  EXPECT_FALSE(rule.NextAfter(start, At(2026, 4, 15)).has_value());
}

TEST(RecurrenceTest, UntilIsInclusive) {
  const Clock::time_point start = At(2026, 1, 1, 9, 30);
  EXPECT_EQ(All("FREQ=DAILY;UNTIL=20260103T093000Z", start),
            (std::vector<std::string>{"2026-01-01 09:30", "2026-01-02 09:30",
                                      "2026-01-03 09:30"}));
  EXPECT_EQ(All("FREQ=DAILY;UNTIL=20260103T092959Z", start),
            (std::vector<std::string>{"2026-01-01 09:30", "2026-01-02 09:30"}));
}

TEST(RecurrenceTest, DateOnlyUntilIncludesTheWholeDay) {
  EXPECT_EQ(All("FREQ=DAILY;UNTIL=20260103", At(2026, 1, 1, 23, 59, 59)),
            (std::vector<std::string>{"2026-01-01 23:59:59", "2026-01-02 23:59:59",
                                      "2026-01-03 23:59:59"}));
  const RecurrenceRule rule = MustParse("FREQ=DAILY;UNTIL=20260103");
  ASSERT_TRUE(rule.until().has_value());
  EXPECT_EQ(*rule.until(), At(2026, 1, 4) - nanoseconds(1));
}

TEST(RecurrenceTest, UntilBeforeStartLeavesOnlyTheStart) {
  EXPECT_EQ(All("FREQ=DAILY;UNTIL=20250101", At(2026, 1, 1)),
            (std::vector<std::string>{"2026-01-01 00:00"}));
}

TEST(RecurrenceTest, AfterBeforeStartGivesTheStart) {
  const RecurrenceRule rule = MustParse("FREQ=HOURLY");
  const Clock::time_point start = At(2026, 1, 1, 9);
  EXPECT_EQ(rule.NextAfter(start, At(2000, 1, 1)),
            (RecurrenceRule::Occurrence{start, 0}));
  EXPECT_EQ(rule.NextAfter(start, start - nanoseconds(1)),
            (RecurrenceRule::Occurrence{start, 0}));
  EXPECT_EQ(rule.NextAfter(start, start),
            (RecurrenceRule::Occurrence{At(2026, 1, 1, 10), 1}));
}

TEST(RecurrenceTest, SubSecondPartOfStartIsKeptOnEveryOccurrence) {
  const Clock::time_point start = At(2026, 1, 1, 9, 30, 15) + nanoseconds(123456789);
  EXPECT_EQ(First("FREQ=MINUTELY;INTERVAL=45", start, 3),
            (std::vector<std::string>{"2026-01-01 09:30:15.123456789",
                                      "2026-01-01 10:15:15.123456789",
                                      "2026-01-01 11:00:15.123456789"}));
  EXPECT_EQ(First("FREQ=MONTHLY;BYDAY=-1SU;BYHOUR=6", start, 2),
            (std::vector<std::string>{"2026-01-01 09:30:15.123456789",
                                      "2026-01-25 06:30:15.123456789"}));
  // Strictly after: an instant 1 ns before an occurrence gives it, the occurrence the next.
  const RecurrenceRule rule = MustParse("FREQ=MINUTELY;INTERVAL=45");
  const Clock::time_point second = start + std::chrono::minutes(45);
  EXPECT_EQ(rule.NextAfter(start, second - nanoseconds(1))->time, second);
  EXPECT_EQ(rule.NextAfter(start, second)->time, second + std::chrono::minutes(45));
}

TEST(RecurrenceTest, UnsetTimeFieldsComeFromTheStart) {
  // HOURLY keeps the start's minute; DAILY with BYHOUR keeps it too.
  EXPECT_EQ(First("FREQ=HOURLY;INTERVAL=5", At(2026, 1, 1, 22, 17), 3),
            (std::vector<std::string>{"2026-01-01 22:17", "2026-01-02 03:17",
                                      "2026-01-02 08:17"}));
  EXPECT_EQ(First("FREQ=DAILY;BYHOUR=6,18", At(2026, 1, 1, 7, 45), 3),
            (std::vector<std::string>{"2026-01-01 07:45", "2026-01-01 18:45",
                                      "2026-01-02 06:45"}));
  EXPECT_EQ(First("FREQ=HOURLY;BYMINUTE=0,30", At(2026, 1, 1, 7, 45), 3),
            (std::vector<std::string>{"2026-01-01 07:45", "2026-01-01 08:00",
                                      "2026-01-01 08:30"}));
}

TEST(RecurrenceTest, WeeklyIntervalCountsMondayBasedWeeks) {
  // Start on a Sunday: its week began the Monday before, so MO of the next grid week
  // is two weeks after that Monday.
  EXPECT_EQ(First("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,SU", At(2026, 1, 4, 12), 4),
            (std::vector<std::string>{"2026-01-04 12:00", "2026-01-12 12:00", "2026-01-18 12:00",
                                      "2026-01-26 12:00"}));
}

TEST(RecurrenceTest, YearlyOrdinalsCountWithinTheYearWithoutBymonthAndWithinTheMonthWithIt) {
  // Last Sunday of the year, and of December.
  EXPECT_EQ(First("FREQ=YEARLY;BYDAY=-1SU", At(2026, 1, 1), 3),
            (std::vector<std::string>{"2026-01-01 00:00", "2026-12-27 00:00",
                                      "2027-12-26 00:00"}));
  EXPECT_EQ(First("FREQ=YEARLY;BYDAY=1MO", At(2026, 1, 1), 3),
            (std::vector<std::string>{"2026-01-01 00:00", "2026-01-05 00:00",
                                      "2027-01-04 00:00"}));
  EXPECT_EQ(First("FREQ=YEARLY;BYMONTH=5;BYDAY=-1MO", At(2026, 1, 1), 3),
            (std::vector<std::string>{"2026-01-01 00:00", "2026-05-25 00:00",
                                      "2027-05-31 00:00"}));
}

TEST(RecurrenceTest, FarFutureAfterJumpsToTheGridQuickly) {
  const RecurrenceRule rule = MustParse("FREQ=DAILY;INTERVAL=3;");
  const Clock::time_point start = At(2026, 1, 1, 9, 30);
  const absl::CivilDay start_day(2026, 1, 1);
  const auto began = ordo::test_support::ThreadCpuTime();  // CPU, not wall (thread_cpu.h)
  for (int year = 2030; year < 2250; ++year) {
    const Clock::time_point after = At(year, 6, 15, 12);
    const std::optional<RecurrenceRule::Occurrence> next = rule.NextAfter(start, after);
    ASSERT_TRUE(next.has_value()) << year;
    const absl::CivilSecond c = CivilOf(next->time);
    const std::int64_t days = absl::CivilDay(c) - start_day;
    EXPECT_EQ(days % 3, 0) << Fmt(next->time);
    EXPECT_EQ(c.hour(), 9);
    EXPECT_EQ(c.minute(), 30);
    EXPECT_GT(next->time, after);
    EXPECT_LE(next->time - after, std::chrono::hours(72));
    EXPECT_EQ(next->index, days / 3);
  }
  EXPECT_LT(ordo::test_support::ThreadCpuTime() - began, std::chrono::seconds(2));
}

TEST(RecurrenceTest, FarFutureAfterWithByPartsAndCountIsQuickAndExact) {
  const Clock::time_point start = At(2026, 1, 1, 0, 0, 7);
  // Minutely with a COUNT that is never reached: the index is arithmetic.
  const RecurrenceRule minutely = MustParse("FREQ=MINUTELY;INTERVAL=7;COUNT=900000000");
  const std::optional<RecurrenceRule::Occurrence> m = minutely.NextAfter(start, At(2200, 1, 1));
  ASSERT_TRUE(m.has_value());
  const std::int64_t minutes = (At(2200, 1, 1) - At(2026, 1, 1)) / std::chrono::minutes(1);
  EXPECT_EQ(m->index, (minutes + 6) / 7);  // the first k with 7k min + 7 s > minutes
  EXPECT_EQ(Fmt(m->time), Fmt(start + std::chrono::minutes(7 * m->index)));
  // Weekdays at 9 and 17 for 150 years: counted month by month, not minute by minute.
  const RecurrenceRule workdays = MustParse("FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9,17;BYMINUTE=0");
  const auto began = ordo::test_support::ThreadCpuTime();  // CPU, not wall (thread_cpu.h)
  const std::optional<RecurrenceRule::Occurrence> w = workdays.NextAfter(start, At(2176, 1, 1));
  EXPECT_LT(ordo::test_support::ThreadCpuTime() - began, std::chrono::milliseconds(500));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(Fmt(w->time), "2176-01-01 09:00:07");  // a Monday
  // Occurrence 1 is 2026-01-01 09:00 (Thursday); weekdays in [2026-01-01, 2176-01-01)
  // each hold 2, and the start (00:00:07) adds index 0.
  std::int64_t weekdays = 0;
  for (absl::CivilDay d(2026, 1, 1); d < absl::CivilDay(2176, 1, 1); ++d) {
    const absl::Weekday wd = absl::GetWeekday(d);
    weekdays += wd != absl::Weekday::saturday && wd != absl::Weekday::sunday;
  }
  EXPECT_EQ(w->index, 2 * weekdays + 1);
}

// NextTimeAfter (what the engine asks for a series' next occurrence) is
// NextAfter's time, with or without COUNT (with it, the count still ends the
// series), for rules whose index is a count since the start.
TEST(RecurrenceTest, NextTimeAfterIsNextAftersTime) {
  const Clock::time_point start = At(2026, 1, 1, 9, 30, 7);
  for (std::string_view text :
       {"FREQ=MINUTELY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9,10", "FREQ=HOURLY;BYMONTHDAY=1,15",
        "FREQ=MONTHLY;BYDAY=-1FR", "FREQ=DAILY;INTERVAL=3;COUNT=40",
        "FREQ=MINUTELY;INTERVAL=7;BYDAY=SA;COUNT=100", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29"}) {
    SCOPED_TRACE(text);
    const RecurrenceRule rule = MustParse(text);
    for (const Clock::time_point after :
         {start - std::chrono::hours(1), start, At(2026, 2, 3, 10, 0), At(2027, 6, 1),
          At(2031, 12, 31, 23, 59)}) {
      const std::optional<RecurrenceRule::Occurrence> full = rule.NextAfter(start, after);
      const std::optional<Clock::time_point> time = rule.NextTimeAfter(start, after);
      ASSERT_EQ(full.has_value(), time.has_value()) << Fmt(after);
      if (full.has_value()) {
        EXPECT_EQ(Fmt(full->time), Fmt(*time)) << Fmt(after);
      }
    }
  }
  // COUNT reached: no next, either way.
  const RecurrenceRule three = MustParse("FREQ=DAILY;COUNT=3");
  EXPECT_FALSE(three.NextAfter(start, At(2026, 1, 5)).has_value());
  EXPECT_FALSE(three.NextTimeAfter(start, At(2026, 1, 5)).has_value());
}

TEST(RecurrenceTest, RulesThatCanNeverMatchEndQuickly) {
  const Clock::time_point start = At(2026, 1, 1, 9);
  const auto began = ordo::test_support::ThreadCpuTime();  // CPU, not wall (thread_cpu.h)
  for (std::string_view text :
       {"FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=2", "FREQ=YEARLY;BYMONTHDAY=30;BYMONTH=2",
        "FREQ=DAILY;BYMONTHDAY=31;BYMONTH=4,6,9,11", "FREQ=HOURLY;BYMONTHDAY=-30;BYMONTH=2",
        "FREQ=MINUTELY;BYMONTHDAY=31;BYMONTH=2",
        // The grid (even minutes from an even start) never reaches minute 1.
        "FREQ=MINUTELY;INTERVAL=2;BYMINUTE=1",
        // Every 24 hours from 09:00 never reaches 10:00.
        "FREQ=HOURLY;INTERVAL=24;BYHOUR=10",
        // Every 12 months from January never reaches June.
        "FREQ=MONTHLY;INTERVAL=12;BYMONTH=6"}) {
    EXPECT_FALSE(MustParse(text).NextAfter(start, start).has_value()) << text;
  }
  EXPECT_LT(ordo::test_support::ThreadCpuTime() - began, std::chrono::seconds(2));
}

TEST(RecurrenceTest, SeriesEndsAtTheEndOfClockRange) {
  EXPECT_EQ(All("FREQ=YEARLY", At(2259, 1, 1)),
            (std::vector<std::string>{"2259-01-01 00:00", "2260-01-01 00:00", "2261-01-01 00:00",
                                      "2262-01-01 00:00"}));
  // The last representable minute, 2262-04-11T23:47:16.854775807Z, is reached.
  const std::vector<std::string> last =
      All("FREQ=MINUTELY", Clock::time_point::max() - std::chrono::minutes(2));
  EXPECT_EQ(last.size(), 3u);
  EXPECT_EQ(last.back(), "2262-04-11 23:47:16.854775807");
}

TEST(RecurrenceTest, StartBeforeTheEpochWorks) {
  EXPECT_EQ(First("FREQ=MONTHLY;BYDAY=-1FR", At(1969, 11, 30, 23, 59, 59) + nanoseconds(5), 3),
            (std::vector<std::string>{"1969-11-30 23:59:59.000000005",
                                      "1969-12-26 23:59:59.000000005",
                                      "1970-01-30 23:59:59.000000005"}));
  EXPECT_EQ(First("FREQ=DAILY;INTERVAL=2", At(1969, 12, 31, 12), 3),
            (std::vector<std::string>{"1969-12-31 12:00", "1970-01-02 12:00",
                                      "1970-01-04 12:00"}));
}

TEST(RecurrenceTest, StartAtTheBeginningOfClockRangeWorks) {
  const Clock::time_point start = Clock::time_point::min();  // 1677-09-21T00:12:43.145224192Z
  const RecurrenceRule rule = MustParse("FREQ=DAILY;BYHOUR=0,12");
  // (FirstTimes would start from start - 1 ns, which does not exist here.)
  const std::optional<RecurrenceRule::Occurrence> second = rule.NextAfter(start, start);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(Fmt(second->time), "1677-09-21 12:12:43.145224192");
  EXPECT_EQ(second->index, 1);
  const std::optional<RecurrenceRule::Occurrence> third = rule.NextAfter(start, second->time);
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(Fmt(third->time), "1677-09-22 00:12:43.145224192");
  EXPECT_EQ(third->index, 2);
}

// ---- Properties against a brute-force reference -----------------------------------

struct ReferenceCase {
  std::string rule;
  absl::CivilSecond start;
  int days;  // how far to compare
  // Whether a civil minute (after the start) belongs to the series, written from the
  // RFC's definition directly.
  std::function<bool(absl::CivilMinute)> match;
};

bool In(int v, std::initializer_list<int> set) {
  for (int x : set) {
    if (x == v) return true;
  }
  return false;
}
int DaysIn(absl::CivilMonth m) { return static_cast<int>(absl::CivilDay(m + 1) - absl::CivilDay(m)); }

TEST(RecurrencePropertyTest, MatchesMinuteByMinuteReference) {
  const absl::CivilSecond s1(2026, 1, 7, 9, 14, 30);  // a Wednesday
  const absl::CivilMinute m1(s1);
  const std::vector<ReferenceCase> cases = {
      {"FREQ=MINUTELY;INTERVAL=7;BYHOUR=9,10;BYDAY=MO,FR", s1, 40,
       [&](absl::CivilMinute m) {
         return (m - m1) % 7 == 0 && In(m.hour(), {9, 10}) &&
                In(static_cast<int>(absl::GetWeekday(m)), {0, 4});
       }},
      {"FREQ=HOURLY;INTERVAL=5;BYMINUTE=0,30;BYMONTHDAY=1,-1", s1, 200,
       [&](absl::CivilMinute m) {
         const absl::CivilHour h(m);
         return (h - absl::CivilHour(m1)) % 5 == 0 && In(m.minute(), {0, 30}) &&
                (m.day() == 1 || m.day() == DaysIn(absl::CivilMonth(m)));
       }},
      {"FREQ=HOURLY;INTERVAL=7;BYHOUR=1,2,3,22", s1, 60,
       [&](absl::CivilMinute m) {
         return (absl::CivilHour(m) - absl::CivilHour(m1)) % 7 == 0 &&
                In(m.hour(), {1, 2, 3, 22}) && m.minute() == 14;
       }},
      {"FREQ=DAILY;INTERVAL=4;BYMONTH=2,3;BYHOUR=8,20", s1, 800,
       [&](absl::CivilMinute m) {
         return (absl::CivilDay(m) - absl::CivilDay(m1)) % 4 == 0 && In(m.month(), {2, 3}) &&
                In(m.hour(), {8, 20}) && m.minute() == 14;
       }},
      {"FREQ=WEEKLY;INTERVAL=3;BYDAY=SU,WE;BYMONTH=1,2,3,12;BYMINUTE=5,55", s1, 800,
       [&](absl::CivilMinute m) {
         const absl::CivilDay d(m);
         const absl::CivilDay monday = absl::PrevWeekday(d + 1, absl::Weekday::monday);
         const absl::CivilDay monday1 =
             absl::PrevWeekday(absl::CivilDay(m1) + 1, absl::Weekday::monday);
         return ((monday - monday1) / 7) % 3 == 0 &&
                In(static_cast<int>(absl::GetWeekday(d)), {2, 6}) &&
                In(m.month(), {1, 2, 3, 12}) && m.hour() == 9 && In(m.minute(), {5, 55});
       }},
      {"FREQ=MONTHLY;INTERVAL=2;BYDAY=-1FR,2MO;BYMINUTE=15,45", s1, 800,
       [&](absl::CivilMinute m) {
         const absl::CivilMonth month(m);
         const int dim = DaysIn(month);
         const int wd = static_cast<int>(absl::GetWeekday(absl::CivilDay(m)));
         const bool last_friday = wd == 4 && m.day() + 7 > dim;
         const bool second_monday = wd == 0 && m.day() > 7 && m.day() <= 14;
         return (month - absl::CivilMonth(m1)) % 2 == 0 && (last_friday || second_monday) &&
                m.hour() == 9 && In(m.minute(), {15, 45});
       }},
      {"FREQ=MONTHLY;BYMONTHDAY=5,-5;BYDAY=MO,TU,WE,TH,FR", s1, 800,
       [&](absl::CivilMinute m) {
         const int dim = DaysIn(absl::CivilMonth(m));
         const int wd = static_cast<int>(absl::GetWeekday(absl::CivilDay(m)));
         return (m.day() == 5 || m.day() == dim - 4) && wd < 5 && m.hour() == 9 &&
                m.minute() == 14;
       }},
      {"FREQ=YEARLY;BYDAY=1MO,-1SU,10WE", s1, 1500,
       [&](absl::CivilMinute m) {
         const absl::CivilDay d(m);
         const int yday = absl::GetYearDay(d);
         const int ydays = static_cast<int>(absl::CivilDay(absl::CivilYear(m) + 1) -
                                            absl::CivilDay(absl::CivilYear(m)));
         const int wd = static_cast<int>(absl::GetWeekday(d));
         return ((wd == 0 && yday <= 7) || (wd == 6 && yday + 7 > ydays) ||
                 (wd == 2 && (yday - 1) / 7 == 9)) &&
                m.hour() == 9 && m.minute() == 14;
       }},
      {"FREQ=YEARLY;INTERVAL=3;BYMONTHDAY=31", s1, 2200,
       [&](absl::CivilMinute m) {
         return (m.year() - m1.year()) % 3 == 0 && m.day() == 31 && m.hour() == 9 &&
                m.minute() == 14;
       }},
  };
  for (const ReferenceCase& c : cases) {
    SCOPED_TRACE(c.rule);
    const Clock::time_point start = At(c.start);
    const absl::CivilMinute first(c.start);
    const absl::CivilMinute end = absl::CivilMinute(absl::CivilDay(c.start) + c.days);
    std::vector<std::string> expected = {Fmt(start)};
    for (absl::CivilMinute m = first + 1; m < end; ++m) {
      if (c.match(m)) expected.push_back(Fmt(start + std::chrono::minutes(m - first)));
    }
    ASSERT_GT(expected.size(), 3u);
    std::vector<std::string> got;
    const RecurrenceRule rule = MustParse(c.rule);
    for (Clock::time_point t : FirstTimes(rule, start, static_cast<int>(expected.size()) + 1)) {
      if (t >= At(absl::CivilSecond(end))) break;
      got.push_back(Fmt(t));
    }
    EXPECT_EQ(got, expected);
  }
}

TEST(RecurrencePropertyTest, NextAfterFromAnyPointAgreesWithSequentialEnumeration) {
  const Clock::time_point start = At(2026, 3, 29, 1, 30, 5) + nanoseconds(250);
  std::mt19937_64 random(20260101);
  for (std::string_view text :
       {"FREQ=MINUTELY;INTERVAL=13", "FREQ=MINUTELY;INTERVAL=11;BYHOUR=0,12;BYMINUTE=1,2,3,59",
        "FREQ=HOURLY;INTERVAL=7;BYMINUTE=0,29", "FREQ=HOURLY;BYDAY=SA,SU;BYHOUR=3",
        "FREQ=DAILY;INTERVAL=9;BYHOUR=1,13;BYMINUTE=30",
        "FREQ=DAILY;BYMONTHDAY=1,15,-1;BYHOUR=6", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,SU",
        "FREQ=WEEKLY;BYMONTH=4,5", "FREQ=MONTHLY;BYMONTHDAY=31;COUNT=40",
        "FREQ=MONTHLY;INTERVAL=5;BYDAY=3TH,-2SA", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=28,29",
        "FREQ=YEARLY;BYDAY=-1MO;BYHOUR=0,23", "FREQ=DAILY;UNTIL=20300101T013005Z"}) {
    SCOPED_TRACE(text);
    const RecurrenceRule rule = MustParse(text);
    const std::vector<Clock::time_point> times = FirstTimes(rule, start, 120);
    ASSERT_GE(times.size(), 40u);
    const std::int64_t span = (times.back() - start).count();
    for (int i = 0; i < 300; ++i) {
      const Clock::time_point after =
          start + nanoseconds(static_cast<std::int64_t>(random() % static_cast<std::uint64_t>(span)));
      std::size_t k = 0;
      while (times[k] <= after) ++k;
      const std::optional<RecurrenceRule::Occurrence> next = rule.NextAfter(start, after);
      ASSERT_TRUE(next.has_value()) << Fmt(after);
      EXPECT_EQ(Fmt(next->time), Fmt(times[k])) << "after " << Fmt(after);
      EXPECT_EQ(next->index, static_cast<std::int64_t>(k)) << "after " << Fmt(after);
    }
  }
}

// ---- Parsing ---------------------------------------------------------------------

TEST(RecurrenceParseTest, AcceptsDynamicsTrailingSemicolonPrefixCaseAndBlanks) {
  for (std::string_view text :
       {"FREQ=DAILY;INTERVAL=3;", "FREQ=DAILY;INTERVAL=3", "rrule:freq=daily;interval=3",
        "RRULE:FREQ=DAILY;INTERVAL=3;", " INTERVAL = 3 ; Freq=Daily ; \n"}) {
    SCOPED_TRACE(text);
    const RecurrenceRule rule = MustParse(text);
    EXPECT_EQ(rule.frequency(), Frequency::kDaily);
    EXPECT_EQ(rule.interval(), 3);
    EXPECT_FALSE(rule.count().has_value());
    EXPECT_FALSE(rule.until().has_value());
    EXPECT_EQ(rule.ToString(), "FREQ=DAILY;INTERVAL=3");
  }
}

TEST(RecurrenceParseTest, AccessorsReportTheParts) {
  const RecurrenceRule a = MustParse("FREQ=MINUTELY;COUNT=12");
  EXPECT_EQ(a.frequency(), Frequency::kMinutely);
  EXPECT_EQ(a.interval(), 1);
  EXPECT_EQ(a.count(), 12);
  const RecurrenceRule b = MustParse("FREQ=YEARLY;UNTIL=20300102T030405Z");
  EXPECT_EQ(b.frequency(), Frequency::kYearly);
  EXPECT_EQ(b.until(), At(2030, 1, 2, 3, 4, 5));
  EXPECT_EQ(MustParse("FREQ=HOURLY").frequency(), Frequency::kHourly);
  EXPECT_EQ(MustParse("FREQ=WEEKLY").frequency(), Frequency::kWeekly);
  EXPECT_EQ(MustParse("FREQ=MONTHLY").frequency(), Frequency::kMonthly);
}

TEST(RecurrenceParseTest, ToStringIsNormalizedAndRoundTrips) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"FREQ=WEEKLY;BYDAY=FR,MO,MO;INTERVAL=1", "FREQ=WEEKLY;BYDAY=MO,FR"},
      {"BYMINUTE=30,0;BYHOUR=17,9;FREQ=DAILY;COUNT=20",
       "FREQ=DAILY;COUNT=20;BYHOUR=9,17;BYMINUTE=0,30"},
      {"FREQ=MONTHLY;BYDAY=-1FR,1MO,FR;BYMONTHDAY=-1,1,15",
       "FREQ=MONTHLY;BYMONTHDAY=1,15,-1;BYDAY=1MO,FR,-1FR"},
      {"freq=yearly;until=20300101;bymonth=12,1", "FREQ=YEARLY;UNTIL=20300101;BYMONTH=1,12"},
      {"FREQ=HOURLY;UNTIL=20300101T235959z;INTERVAL=8",
       "FREQ=HOURLY;INTERVAL=8;UNTIL=20300101T235959Z"},
      {"FREQ=YEARLY;BYDAY=+20MO,-53SU", "FREQ=YEARLY;BYDAY=20MO,-53SU"},
      // An UNTIL past the clock's range is held at its end (2262-04-11T23:47:16Z).
      {"FREQ=DAILY;UNTIL=99991231", "FREQ=DAILY;UNTIL=22620411"},
      {"FREQ=DAILY;UNTIL=30000101T000000Z", "FREQ=DAILY;UNTIL=22620411T234716Z"},
      // WKST where it changes nothing (weeks start on Monday), left out.
      {"FREQ=WEEKLY;BYDAY=TU,TH;WKST=SU", "FREQ=WEEKLY;BYDAY=TU,TH"},
      {"FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;WKST=mo", "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU"},
      {"FREQ=MONTHLY;INTERVAL=3;BYDAY=-1FR;WKST=SU", "FREQ=MONTHLY;INTERVAL=3;BYDAY=-1FR"},
  };
  for (const auto& [text, normalized] : cases) {
    const RecurrenceRule rule = MustParse(text);
    EXPECT_EQ(rule.ToString(), normalized) << text;
    EXPECT_TRUE(MustParse(rule.ToString()) == rule) << text;
  }
}

TEST(RecurrenceParseTest, RejectionsNameThePartAndWhatIsAccepted) {
  EXPECT_EQ(ErrorOf("FREQ=DAILY;INTERVAL=0"),
            "recurrence: INTERVAL=0 is out of range; INTERVAL takes an integer >= 1");
  const std::pair<std::string_view, std::vector<std::string_view>> cases[] = {
      {"", {"rule is empty", "FREQ=DAILY"}},
      {"RRULE:", {"rule is empty"}},
      {"INTERVAL=2", {"FREQ is missing", "MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY"}},
      {"FREQ=SECONDLY", {"FREQ=SECONDLY is not supported", "FREQ takes MINUTELY"}},
      {"FREQ=", {"FREQ has an empty value"}},
      {"FREQ=DAILY;INTERVAL=-3", {"INTERVAL=-3 is out of range", "INTERVAL takes an integer >= 1"}},
      {"FREQ=DAILY;INTERVAL=x", {"INTERVAL=x is not an integer", "INTERVAL takes"}},
      {"FREQ=DAILY;INTERVAL=2.5", {"INTERVAL=2.5 is not an integer"}},
      {"FREQ=DAILY;INTERVAL=2147483648", {"INTERVAL=2147483648 is out of range", "2147483647"}},
      {"FREQ=DAILY;INTERVAL=99999999999999999999999", {"INTERVAL=", "out of range"}},
      {"FREQ=DAILY;INTERVAL=", {"INTERVAL has an empty value"}},
      {"FREQ=DAILY;COUNT=0", {"COUNT=0 is out of range", "COUNT takes an integer >= 1"}},
      {"FREQ=DAILY;COUNT=3;UNTIL=20260101", {"COUNT and UNTIL are both given"}},
      {"FREQ=DAILY;FREQ=WEEKLY", {"FREQ appears more than once"}},
      {"FREQ=DAILY;INTERVAL=2;interval=3", {"INTERVAL appears more than once"}},
      {"FREQ=DAILY;BYSECOND=5", {"BYSECOND is not supported", "supported parts are FREQ"}},
      {"FREQ=MONTHLY;BYDAY=MO;BYSETPOS=-1", {"BYSETPOS is not supported"}},
      {"FREQ=WEEKLY;INTERVAL=2;WKST=SU",
       {"WKST=SU with FREQ=WEEKLY;INTERVAL=2 is not supported", "weeks start on Monday"}},
      {"FREQ=WEEKLY;WKST=XX", {"WKST=XX is not a day", "WKST takes MO"}},
      {"FREQ=YEARLY;BYYEARDAY=100", {"BYYEARDAY is not supported"}},
      {"FREQ=DAILY;;INTERVAL=2", {"part 2", "is empty", "NAME=VALUE"}},
      {"FREQ=DAILY;;", {"part 2", "is empty"}},
      {";FREQ=DAILY", {"part 1", "is empty"}},
      {"FREQ=DAILY;INTERVAL", {"part 'INTERVAL' has no '='"}},
      {"FREQ=DAILY;=3", {"has no name"}},
      {"FREQ=YEARLY;BYMONTH=13", {"BYMONTH=13 is out of range", "BYMONTH takes integers from 1 to 12"}},
      {"FREQ=YEARLY;BYMONTH=0", {"BYMONTH=0 is out of range"}},
      {"FREQ=YEARLY;BYMONTH=1,,2", {"BYMONTH=1,,2 has an empty item"}},
      {"FREQ=MONTHLY;BYMONTHDAY=0", {"BYMONTHDAY=0 is out of range", "1 to 31 or -31 to -1"}},
      {"FREQ=MONTHLY;BYMONTHDAY=32", {"BYMONTHDAY=32 is out of range"}},
      {"FREQ=MONTHLY;BYMONTHDAY=1,-32", {"-32 in BYMONTHDAY=1,-32 is out of range"}},
      {"FREQ=DAILY;BYHOUR=24", {"BYHOUR=24 is out of range", "BYHOUR takes integers from 0 to 23"}},
      {"FREQ=DAILY;BYHOUR=9,25", {"25 in BYHOUR=9,25 is out of range"}},
      {"FREQ=DAILY;BYHOUR=nine", {"BYHOUR=nine is not an integer"}},
      {"FREQ=DAILY;BYMINUTE=60", {"BYMINUTE=60 is out of range", "from 0 to 59"}},
      {"FREQ=DAILY;BYMINUTE=-1", {"BYMINUTE=-1 is out of range"}},
      {"FREQ=WEEKLY;BYDAY=XX", {"BYDAY=XX is not a day", "MO, TU, WE, TH, FR, SA or SU"}},
      {"FREQ=WEEKLY;BYDAY=MO,,TU", {"BYDAY=MO,,TU has an empty item"}},
      {"FREQ=WEEKLY;BYDAY=M", {"BYDAY=M is not a day"}},
      {"FREQ=MONTHLY;BYDAY=XMO", {"BYDAY=XMO has an ordinal that is not an integer"}},
      {"FREQ=WEEKLY;BYDAY=1MO", {"BYDAY=1MO has an ordinal", "FREQ=WEEKLY", "MONTHLY or YEARLY"}},
      {"FREQ=DAILY;BYDAY=-1FR", {"BYDAY=-1FR has an ordinal", "FREQ=DAILY"}},
      {"FREQ=MONTHLY;BYDAY=6MO", {"BYDAY=6MO is out of range within a month", "-5..-1 or 1..5"}},
      {"FREQ=YEARLY;BYMONTH=3;BYDAY=-6MO", {"BYDAY=-6MO is out of range within a month"}},
      {"FREQ=YEARLY;BYDAY=54MO", {"BYDAY=54MO is out of range", "-53..-1 or 1..53"}},
      {"FREQ=YEARLY;BYDAY=0MO", {"BYDAY=0MO is out of range"}},
      {"FREQ=WEEKLY;BYMONTHDAY=1", {"BYMONTHDAY is not allowed with FREQ=WEEKLY", "BYDAY"}},
      {"FREQ=DAILY;UNTIL=2026", {"UNTIL=2026 is not valid", "yyyymmddThhmmssZ or a date yyyymmdd"}},
      {"FREQ=DAILY;UNTIL=20260230", {"UNTIL=20260230 is not a valid date or time"}},
      {"FREQ=DAILY;UNTIL=20260101T246000Z", {"UNTIL=20260101T246000Z is not a valid date"}},
      {"FREQ=DAILY;UNTIL=20260101T000000", {"UNTIL=20260101T000000 has no time zone", "UTC"}},
      {"FREQ=DAILY;UNTIL=16000101", {"UNTIL=16000101 is out of range", "1677-09-21"}},
  };
  for (const auto& [text, needles] : cases) {
    const std::string error = ErrorOf(text);
    EXPECT_EQ(error.rfind("recurrence: ", 0), 0u) << text << " -> " << error;
    for (std::string_view needle : needles) {
      EXPECT_NE(error.find(needle), std::string::npos)
          << "Parse(\"" << text << "\") -> \"" << error << "\" lacks \"" << needle << "\"";
    }
  }
}

TEST(RecurrenceParseTest, AcceptsOrdinalsWhereTheRfcAllowsThem) {
  EXPECT_TRUE(RecurrenceRule::Parse("FREQ=YEARLY;BYDAY=53MO").ok());
  EXPECT_TRUE(RecurrenceRule::Parse("FREQ=YEARLY;BYMONTH=3;BYDAY=5MO,-5FR").ok());
  EXPECT_TRUE(RecurrenceRule::Parse("FREQ=MONTHLY;BYDAY=5SU,-1MO,TU").ok());
}

}  // namespace
}  // namespace ordo
