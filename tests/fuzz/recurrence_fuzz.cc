// recurrence_fuzz.cc: libFuzzer target for ordo::RecurrenceRule (ordo/recurrence.h),
// the one parser in Ordo that takes text a user may pass straight through.
//
// Input: the rule text, then optionally a line with the series' start and a line
// with an instant `after`, each in decimal nanoseconds since the epoch (any int64:
// the series' arithmetic must hold at the ends of Clock's range too). The whole
// input, newlines and all, is also parsed as a rule text (P1, P2):
//   FREQ=MONTHLY;BYDAY=-1FR
//   1767225600000000000
//   1767225599999999999
// Defaults: start 2026-01-01T00:00:00Z, after one nanosecond before it.
//
// What every input must satisfy (each a promise of recurrence.h):
//   P1 Parse never crashes; a refusal is InvalidArgument with a "recurrence: " message.
//   P2 An accepted rule round-trips: Parse(r.ToString()) == r, and that text is a
//      fixed point of ToString; it parses the same in lower case and after "RRULE:".
//   P3 NextAfter(start, after) with after < start is {start, 0}; otherwise it is later
//      than `after`, later than the start, and has index >= 1.
//   P4 Walking the series from `after`, each occurrence is later than the one before
//      and has the next index; none reaches COUNT, none but the start passes UNTIL.
//   P5 Each occurrence found by the walk is found again by a fresh NextAfter from just
//      before it (the arithmetic jump and the index count agree with the walk).
//   P6 Every occurrence has the start's second and sub-second part.
//   P7 A rule with no BY part and a fixed period (MINUTELY, HOURLY, DAILY, WEEKLY: no
//      month lengths) is the grid start + i * INTERVAL * period, exactly: the first
//      occurrence after `after` is that grid's, unless COUNT, UNTIL or the end of
//      Clock's range has ended the series.
#include <cctype>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "ordo/recurrence.h"

namespace {

using ordo::Clock;
using ordo::RecurrenceRule;
using Occurrence = RecurrenceRule::Occurrence;

constexpr std::int64_t kDefaultStartNs = 1'767'225'600'000'000'000;  // 2026-01-01Z
constexpr int kWalkSteps = 12;
constexpr std::int64_t kMinuteNs = 60'000'000'000;
constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

std::int64_t FloorMod(std::int64_t a, std::int64_t b) {
  const std::int64_t r = a % b;
  return r < 0 ? r + b : r;
}

// P7's period in ns, for a rule whose series is a plain grid; 0 for any other.
std::int64_t GridPeriodNs(const RecurrenceRule& rule, const std::string& canonical) {
  if (canonical.find("BY") != std::string::npos) return 0;
  switch (rule.frequency()) {
    case ordo::Frequency::kMinutely: return kMinuteNs;
    case ordo::Frequency::kHourly: return 60 * kMinuteNs;
    case ordo::Frequency::kDaily: return 24 * 60 * kMinuteNs;
    case ordo::Frequency::kWeekly: return 7 * 24 * 60 * kMinuteNs;
    default: return 0;  // months and years differ in length
  }
}

std::int64_t Ns(Clock::time_point t) { return t.time_since_epoch().count(); }
Clock::time_point At(std::int64_t ns) { return Clock::time_point(Clock::duration(ns)); }

// The next line of `rest` as an int64, if it is one; `rest` moves past the line.
std::optional<std::int64_t> TakeNumberLine(std::string_view* rest) {
  if (rest->empty()) return std::nullopt;
  const std::size_t eol = rest->find('\n');
  const std::string_view line = rest->substr(0, eol);
  *rest = eol == std::string_view::npos ? std::string_view() : rest->substr(eol + 1);
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), v);
  if (ec != std::errc() || end != line.data() + line.size()) return std::nullopt;
  return v;
}

void CheckSeries(const RecurrenceRule& rule, const std::string& canonical, std::int64_t start,
                 std::int64_t after) {
  const std::optional<Occurrence> first = rule.NextAfter(At(start), At(after));
  if (const std::int64_t period = GridPeriodNs(rule, canonical); period != 0 && after >= start) {
    // P7, in 128 bits: the grid's first point after `after`, and whether it exists.
    const __int128 step = static_cast<__int128>(period) * rule.interval();
    const __int128 i = (static_cast<__int128>(after) - start) / step + 1;
    const __int128 t = start + i * step;
    const bool exists = t <= kInt64Max && (!rule.count().has_value() || i < *rule.count()) &&
                        (!rule.until().has_value() || t <= Ns(*rule.until()));
    FUZZ_CHECK(first.has_value() == exists, "NextAfter(", start, ", ", after, ") of \"", canonical,
               "\" is ", first.has_value() ? "an occurrence" : "none", "; the grid says ",
               exists ? "one" : "none");
    if (exists) {
      FUZZ_CHECK(Ns(first->time) == static_cast<std::int64_t>(t) &&
                     first->index == static_cast<std::int64_t>(i),
                 "NextAfter(", start, ", ", after, ") of \"", canonical, "\" = {",
                 Ns(first->time), ", ", first->index, "}, the grid's is {",
                 static_cast<std::int64_t>(t), ", ", static_cast<std::int64_t>(i), "}");
    }
  }
  if (after < start) {  // P3
    FUZZ_CHECK(first.has_value() && Ns(first->time) == start && first->index == 0,
               "NextAfter before the start must be {start, 0}; start=", start, " after=", after);
  } else if (first.has_value()) {
    FUZZ_CHECK(Ns(first->time) > after && Ns(first->time) > start && first->index >= 1,
               "NextAfter(", start, ", ", after, ") = {", Ns(first->time), ", ", first->index,
               "}: not after both, or index < 1");
  }
  std::vector<Occurrence> walk;
  for (std::optional<Occurrence> o = first; o.has_value() && walk.size() < kWalkSteps;
       o = rule.NextAfter(At(start), o->time)) {
    if (!walk.empty()) {  // P4
      FUZZ_CHECK(o->time > walk.back().time && o->index == walk.back().index + 1,
                 "the walk went from {", Ns(walk.back().time), ", ", walk.back().index, "} to {",
                 Ns(o->time), ", ", o->index, "}");
    }
    if (rule.count().has_value()) {
      FUZZ_CHECK(o->index < *rule.count(), "index ", o->index, " reached COUNT=", *rule.count());
    }
    FUZZ_CHECK(FloorMod(Ns(o->time), kMinuteNs) == FloorMod(start, kMinuteNs),  // P6
               "occurrence ", Ns(o->time), " is not on the start's second (start ", start, ")");
    if (rule.until().has_value() && o->index > 0) {
      FUZZ_CHECK(o->time <= *rule.until(), "occurrence ", Ns(o->time), " after UNTIL ",
                 Ns(*rule.until()));
    }
    walk.push_back(*o);
  }
  for (const Occurrence& o : walk) {  // P5
    if (Ns(o.time) == std::numeric_limits<std::int64_t>::min()) continue;
    const std::optional<Occurrence> again = rule.NextAfter(At(start), o.time - Clock::duration(1));
    FUZZ_CHECK(again.has_value() && *again == o, "occurrence {", Ns(o.time), ", ", o.index,
               "} not found again from one ns before it (start=", start, ")");
  }
}

// P1 and P2 for one text; the rule if accepted, and its canonical text.
std::optional<RecurrenceRule> CheckParse(std::string_view text, std::string* canonical) {
  const absl::StatusOr<RecurrenceRule> parsed = RecurrenceRule::Parse(text);
  if (!parsed.ok()) {  // P1
    FUZZ_CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument &&
                   parsed.status().message().substr(0, 12) == "recurrence: ",
               "a refusal must be InvalidArgument(\"recurrence: ...\"): ", parsed.status());
    return std::nullopt;
  }
  *canonical = parsed->ToString();  // P2
  const absl::StatusOr<RecurrenceRule> again = RecurrenceRule::Parse(*canonical);
  FUZZ_CHECK(again.ok(), "ToString() = \"", *canonical, "\" does not parse: ", again.status());
  FUZZ_CHECK(*again == *parsed, "Parse(ToString()) differs from the rule; text \"", *canonical,
             "\"");
  FUZZ_CHECK(again->ToString() == *canonical, "ToString is not a fixed point: \"", *canonical,
             "\" then \"", again->ToString(), "\"");
  std::string lower = *canonical;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const absl::StatusOr<RecurrenceRule> lowered = RecurrenceRule::Parse(lower);
  FUZZ_CHECK(lowered.ok() && *lowered == *parsed, "\"", lower, "\" parses differently from \"",
             *canonical, "\"");
  const absl::StatusOr<RecurrenceRule> prefixed = RecurrenceRule::Parse("RRULE:" + *canonical);
  FUZZ_CHECK(prefixed.ok() && *prefixed == *parsed, "\"RRULE:", *canonical,
             "\" parses differently from \"", *canonical, "\"");
  return *parsed;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t eol = input.find('\n');
  const std::string_view text = input.substr(0, eol);
  std::string_view rest = eol == std::string_view::npos ? std::string_view() : input.substr(eol + 1);
  const std::int64_t start = TakeNumberLine(&rest).value_or(kDefaultStartNs);
  const std::int64_t after =
      TakeNumberLine(&rest).value_or(start == std::numeric_limits<std::int64_t>::min() ? start
                                                                                      : start - 1);
  std::string canonical;
  if (text.size() != input.size()) CheckParse(input, &canonical);  // the newlines too
  const std::optional<RecurrenceRule> rule = CheckParse(text, &canonical);
  if (!rule.has_value()) return 0;
  CheckSeries(*rule, canonical, start, after);
  return 0;
}
