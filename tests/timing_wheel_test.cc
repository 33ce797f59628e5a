// timing_wheel_test.cc: the properties the engine relies on (timing_wheel.h states
// them): never early, released at the first Advance that reaches the deadline, in
// (deadline, seq) order across every list and level, O(1) cancel anywhere, the cap,
// far jumps without ticking, and the NextDeadline bounds. Every test passes with the
// default capacities and with -DORDO_SMALL_WORLD (4 slots, 3 levels), where cascades
// and overflow happen within a few ticks.
#include "timing_wheel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "support/thread_cpu.h"
#include "support/wheel_oracle.h"

namespace ordo::internal {
namespace {

using Rng = std::mt19937_64;
using Placement = TimingWheel::Placement;

constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kYearNs = 365LL * 24 * 3600 * 1'000'000'000LL + 6LL * 3600 * 1'000'000'000LL;
// kS, kL, and the oracle's arithmetic (FloorDiv, IntPow, GranularityNs): support/wheel_oracle.h.
using wheel_oracle::ExpectedNowAfter;
using wheel_oracle::FloorDiv;
using wheel_oracle::GranularityNs;
using wheel_oracle::IntPow;
using wheel_oracle::kL;
using wheel_oracle::kS;
constexpr std::size_t kNoCap = std::size_t{1} << 40;
constexpr std::int64_t kMaxNs = std::numeric_limits<std::int64_t>::max();
// Random walks keep "now" below this, so that now + any offset fits an int64.
constexpr std::int64_t kWalkLimitNs = std::int64_t{1} << 62;

std::int64_t StepFrom(std::int64_t now, std::int64_t step) {
  return step < 0 ? now : now + std::min(step, std::max<std::int64_t>(0, kWalkLimitNs - now));
}

// Ticks ahead of the current tick that a deadline may be and still never overflow.
constexpr std::int64_t NoOverflowHorizonTicks() {
  std::int64_t top = 1;
  for (int i = 0; i + 1 < kL; ++i) top *= kS;
  return (kS - 1) * top;
}

// A bijection on uint64: seq values unique but not in insertion order.
std::uint64_t ScrambledSeq(std::uint64_t i) { return i * 0x9E3779B97F4A7C15ULL + 17; }

bool InReleaseOrder(const std::vector<TimerNode*>& v) {
  return std::is_sorted(v.begin(), v.end(), [](const TimerNode* a, const TimerNode* b) {
    return a->deadline_ns != b->deadline_ns ? a->deadline_ns < b->deadline_ns : a->seq < b->seq;
  });
}

// The wheel next to a std::multimap oracle keyed by (deadline, seq). Every Advance
// checks the released ids against the oracle's due prefix, in order.
class Harness {
 public:
  Harness(std::int64_t tick_ns, std::int64_t origin_ns, std::size_t node_count,
          std::size_t max_timers = kNoCap)
      : wheel_(tick_ns, origin_ns, max_timers), nodes_(node_count), tick_ns_(tick_ns) {}

  TimingWheel& wheel() { return wheel_; }
  TimerNode& node(std::size_t id) { return nodes_[id]; }
  std::size_t pending() const { return oracle_.size(); }
  const std::vector<std::size_t>& last_released() const { return last_released_; }

  void Insert(std::size_t id, std::int64_t deadline_ns, std::uint64_t seq) {
    ASSERT_FALSE(nodes_[id].linked());
    ASSERT_TRUE(wheel_.Insert(&nodes_[id], deadline_ns, seq).ok());
    oracle_.emplace(std::make_pair(deadline_ns, seq), id);
    ASSERT_TRUE(nodes_[id].linked());
    ASSERT_EQ(wheel_.size(), oracle_.size());
  }
  void Insert(std::size_t id, std::int64_t deadline_ns) {
    Insert(id, deadline_ns, ScrambledSeq(next_seq_++));
  }

  void Cancel(std::size_t id) {
    const bool was_linked = nodes_[id].linked();
    if (was_linked) {
      auto it = oracle_.find({nodes_[id].deadline_ns, nodes_[id].seq});
      ASSERT_NE(it, oracle_.end());
      oracle_.erase(it);
    }
    ASSERT_EQ(wheel_.Cancel(&nodes_[id]), was_linked);
    ASSERT_FALSE(nodes_[id].linked());
    ASSERT_EQ(nodes_[id].prev, nullptr);
    ASSERT_EQ(nodes_[id].next, nullptr);
    ASSERT_EQ(wheel_.size(), oracle_.size());
  }

  void AdvanceTo(std::int64_t now_ns) {
    const std::int64_t effective = ExpectedNowAfter(tick_ns_, wheel_.now_ns(), now_ns);
    std::vector<TimerNode*> out;
    wheel_.Advance(now_ns, &out);
    ASSERT_EQ(wheel_.now_ns(), effective)
        << "time moves forward, and back only to a reading two or more ticks behind";
    // Released: everything due at the caller's reading, also when that reading
    // is earlier than the wheel's time (a clock stepped back), and no more.
    std::vector<std::size_t> expected;
    while (!oracle_.empty() && oracle_.begin()->first.first <= now_ns) {
      expected.push_back(oracle_.begin()->second);
      oracle_.erase(oracle_.begin());
    }
    last_released_.clear();
    for (TimerNode* n : out) {
      ASSERT_FALSE(n->linked());
      ASSERT_LE(n->deadline_ns, now_ns) << "released early";
      last_released_.push_back(static_cast<std::size_t>(n - nodes_.data()));
    }
    ASSERT_EQ(last_released_, expected) << "released set or order differs at now=" << now_ns;
    ASSERT_TRUE(InReleaseOrder(out));
    ASSERT_EQ(wheel_.size(), oracle_.size());
    if (!oracle_.empty()) {
      ASSERT_GT(oracle_.begin()->first.first, now_ns);
    }
  }

  // The NextDeadline guarantee of timing_wheel.h, against the oracle.
  void CheckNextDeadline() {
    const std::optional<std::int64_t> x = wheel_.NextDeadline();
    if (oracle_.empty()) {
      ASSERT_FALSE(x.has_value());
      return;
    }
    ASSERT_TRUE(x.has_value());
    const std::int64_t m = oracle_.begin()->first.first;
    ASSERT_LE(*x, m) << "NextDeadline later than the earliest deadline";
    const std::int64_t g = GranularityNs(tick_ns_, wheel_.now_ns(), m);
    const std::uint64_t early = static_cast<std::uint64_t>(m) - static_cast<std::uint64_t>(*x);
    if (g == 0) {
      ASSERT_EQ(*x, m) << "exact for the current tick, late inserts and overflow";
    } else {
      ASSERT_LT(early, static_cast<std::uint64_t>(g)) << "more than one granularity early";
    }
    if (m > wheel_.now_ns()) {
      ASSERT_GT(*x, wheel_.now_ns()) << "nothing due: must park";
    }
  }

 private:
  TimingWheel wheel_;
  std::vector<TimerNode> nodes_;
  std::multimap<std::pair<std::int64_t, std::uint64_t>, std::size_t> oracle_;
  std::vector<std::size_t> last_released_;
  std::uint64_t next_seq_ = 1;
  std::int64_t tick_ns_;
};

// An offset from now in ns spread over every scale: the past, the current tick, and
// log-uniform over ticks up to 2^max_bits (capped so that nothing overflows int64).
std::int64_t RandomOffsetNs(Rng& rng, std::int64_t tick_ns, int max_bits) {
  const int cap_bits = 61 - std::bit_width(static_cast<std::uint64_t>(tick_ns));
  max_bits = std::min(max_bits, cap_bits);
  switch (rng() % 10) {
    case 0:
      return -static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(3 * tick_ns + 1));
    case 1:
      return static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(tick_ns));
    default: {
      const int bits = static_cast<int>(rng() % static_cast<std::uint64_t>(max_bits + 1));
      const std::uint64_t ticks = bits == 0 ? 0 : rng() & ((std::uint64_t{1} << bits) - 1);
      return static_cast<std::int64_t>(ticks) * tick_ns +
             static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(tick_ns));
    }
  }
}

int WheelBits() { return TimingWheel::kSlotBits * kL + 2; }  // reaches overflow

struct TickCase {
  std::int64_t tick_ns;
  std::int64_t origin_ns;
};
std::vector<TickCase> TickCases() {
  return {{kMs, 1'700'000'000'000'000'000LL},  // default tick, a real epoch time
          {1, 0},
          {7, -123'456'789},  // odd tick, before the epoch
          {1000, 5}};
}

// ---- properties ----------------------------------------------------------------------

TEST(TimingWheelTest, NeverEarlyAndReleasedAtTheFirstAdvanceWhereDue) {
  for (const TickCase& c : TickCases()) {
    for (std::uint64_t seed = 1; seed <= 3; ++seed) {
      SCOPED_TRACE(testing::Message() << "tick " << c.tick_ns << " seed " << seed);
      Rng rng(seed);
      constexpr std::size_t kNodes = 3000;
      Harness h(c.tick_ns, c.origin_ns, kNodes);
      std::size_t inserted = 0;
      std::int64_t now = c.origin_ns;
      for (int round = 0; round < 2000; ++round) {
        for (int i = 0; i < 20 && inserted < kNodes; ++i) {
          h.Insert(inserted++, now + RandomOffsetNs(rng, c.tick_ns, WheelBits()));
        }
        // Steps of every size, sometimes huge (StepFrom takes a negative step as
        // none: readings behind the wheel have tests of their own below).
        std::int64_t step = 0;
        switch (rng() % 8) {
          case 0:
            step = 0;
            break;
          case 1:
            step = 1;
            break;
          case 2:
            step = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(c.tick_ns));
            break;
          case 3:
            step = c.tick_ns;
            break;
          case 4:
            step = -static_cast<std::int64_t>(rng() % 1000);
            break;
          default:
            step = RandomOffsetNs(rng, c.tick_ns, WheelBits() - 2);
            break;
        }
        ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(StepFrom(now, step)));  // exact, ordered, never early
        now = h.wheel().now_ns();
        h.wheel().CheckInvariants();
      }
      ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(kMaxNs));  // the rest, still checked
      EXPECT_EQ(inserted, kNodes);
      EXPECT_TRUE(h.wheel().empty());
    }
  }
}

TEST(TimingWheelTest, EqualDeadlinesComeOutInSeqOrder) {
  const std::int64_t tick = kMs;
  const std::int64_t origin = 42 * kMs + 17;
  // One deadline, far enough to start in a high level, with an odd ns part.
  const std::int64_t deadline = origin + NoOverflowHorizonTicks() / 2 * tick + 123;
  constexpr int kPerBatch = 40;
  TimingWheel wheel(tick, origin, kNoCap);
  std::vector<TimerNode> nodes(4 * kPerBatch);
  std::vector<std::uint64_t> seqs(nodes.size());
  std::iota(seqs.begin(), seqs.end(), 1000);
  Rng rng(7);
  std::shuffle(seqs.begin(), seqs.end(), rng);
  std::vector<TimerNode*> out;
  auto insert_batch = [&](int batch) {
    for (int i = 0; i < kPerBatch; ++i) {
      const std::size_t id = static_cast<std::size_t>(batch * kPerBatch + i);
      ASSERT_TRUE(wheel.Insert(&nodes[id], deadline, seqs[id]).ok());
    }
  };
  insert_batch(0);  // a high level
  wheel.Advance(deadline - 3 * tick, &out);
  ASSERT_TRUE(out.empty());
  insert_batch(1);                      // level 0 (cascaded companions sit beside it)
  wheel.Advance(deadline - 123, &out);  // the deadline's tick, not yet due
  ASSERT_TRUE(out.empty());
  insert_batch(2);  // late list: same tick as now
  EXPECT_EQ(TimingWheel::PlacementOf(nodes[0]).kind, Placement::kCurrentTick);
  EXPECT_EQ(TimingWheel::PlacementOf(nodes[2 * kPerBatch]).kind, Placement::kLate);
  wheel.CheckInvariants();
  wheel.Advance(deadline - 1, &out);
  ASSERT_TRUE(out.empty()) << "one ns before the deadline: nothing";
  wheel.Advance(deadline, &out);
  ASSERT_EQ(out.size(), 3u * kPerBatch);
  for (std::size_t i = 1; i < out.size(); ++i) {
    ASSERT_EQ(out[i]->deadline_ns, deadline);
    ASSERT_LT(out[i - 1]->seq, out[i]->seq) << "equal deadlines must come out by seq";
  }
  // Inserted after the deadline passed, with that deadline: next Advance, by seq.
  out.clear();
  insert_batch(3);
  wheel.Advance(deadline, &out);
  ASSERT_EQ(out.size(), static_cast<std::size_t>(kPerBatch));
  EXPECT_TRUE(InReleaseOrder(out));
  EXPECT_TRUE(wheel.empty());
  wheel.CheckInvariants();
}

// One node in every region; returns their ids by region name. Uses deadlines chosen
// from the current tick so that each lands where intended (checked).
struct RegionNodes {
  std::vector<std::pair<std::string, std::size_t>> ids;
};
RegionNodes FillEveryRegion(Harness& h, std::size_t first_id) {
  RegionNodes r;
  TimingWheel& w = h.wheel();
  const std::int64_t tick = w.tick_ns();
  const std::int64_t now = w.now_ns();
  const std::int64_t now_tick = FloorDiv(now, tick);
  std::size_t id = first_id;
  auto add = [&](const std::string& name, std::int64_t deadline, Placement::Kind kind, int level) {
    h.Insert(id, deadline);
    const Placement p = TimingWheel::PlacementOf(h.node(id));
    EXPECT_EQ(p.kind, kind) << name;
    EXPECT_EQ(p.level, level) << name;
    r.ids.emplace_back(name, id++);
  };
  add("late (past)", now - 5 * tick - 3, Placement::kLate, -1);
  if (FloorDiv(now + 1, tick) == now_tick) add("late (this tick)", now + 1, Placement::kLate, -1);
  // Level k: the next level-k slot boundary after now, plus a little; its highest
  // differing digit from now_tick is k as long as it stays within the top slot.
  for (int k = 0; k < kL; ++k) {
    const std::int64_t unit = IntPow(kS, k);
    const std::int64_t boundary = (FloorDiv(now_tick, unit) + 1) * unit;  // next slot start
    const std::int64_t t = k == 0 ? now_tick + 1 : boundary + (unit > 1 ? unit / 2 : 0);
    // Level k unless that crosses into a higher digit: then level is what the
    // oracle says; only level L-1 (ring) is guaranteed to be reachable this way.
    const std::int64_t g = GranularityNs(tick, now, t * tick + 1);
    const int level = [&] {
      for (int j = 0; j < kL; ++j) {
        if (g == tick * IntPow(kS, j)) return j;
      }
      return -1;
    }();
    if (level == k) add("level " + std::to_string(k), t * tick + 1, Placement::kLevel, k);
  }
  add("overflow", now + (NoOverflowHorizonTicks() + 2 * IntPow(kS, kL - 1)) * tick + 9,
      Placement::kOverflow, -1);
  return r;
}

TEST(TimingWheelTest, ReleasedNodesAreOrderedByDeadlineAcrossLevels) {
  for (const TickCase& c : TickCases()) {
    SCOPED_TRACE(testing::Message() << "tick " << c.tick_ns);
    Harness h(c.tick_ns, c.origin_ns, 4000);
    // Several nodes per region, at shuffled positions within each region.
    Rng rng(11);
    std::size_t id = 0;
    for (int round = 0; round < 8; ++round) {
      const RegionNodes r = FillEveryRegion(h, id);
      id += r.ids.size();
    }
    for (int i = 0; i < 2000; ++i) {
      h.Insert(id++, c.origin_ns + RandomOffsetNs(rng, c.tick_ns, WheelBits()));
    }
    h.wheel().CheckInvariants();
    // One Advance releasing from every region at once: must be one sorted run.
    ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(kMaxNs));
    EXPECT_GT(h.last_released().size(), 1000u);
    h.wheel().CheckInvariants();
  }
}

TEST(TimingWheelTest, CancelWorksInEveryLevelTheCurrentTickLateAndOverflow) {
  for (const TickCase& c : TickCases()) {
    SCOPED_TRACE(testing::Message() << "tick " << c.tick_ns);
    Harness h(c.tick_ns, c.origin_ns, 200);
    // A node in the current-tick list: cascade one into the tick, not yet due (a
    // tick of 1 ns has no "not yet due" within it).
    const std::int64_t next_tick_start = (FloorDiv(c.origin_ns, c.tick_ns) + 1) * c.tick_ns;
    const bool has_current = c.tick_ns > 1;
    if (has_current) {
      h.Insert(0, next_tick_start + c.tick_ns - 1);
      h.AdvanceTo(next_tick_start);
      ASSERT_EQ(TimingWheel::PlacementOf(h.node(0)).kind, Placement::kCurrentTick);
    }
    const RegionNodes keep = FillEveryRegion(h, 100);  // survivors, to see they stay intact
    const RegionNodes gone = FillEveryRegion(h, 1);
    ASSERT_GE(gone.ids.size(), 4u);  // late, at least levels 0 and L-1, overflow
    h.wheel().CheckInvariants();
    if (has_current) {
      ASSERT_NO_FATAL_FAILURE(h.Cancel(0));
    }
    for (const auto& [name, cancel_id] : gone.ids) {
      SCOPED_TRACE(name);
      const std::size_t before = h.wheel().size();
      ASSERT_NO_FATAL_FAILURE(h.Cancel(cancel_id));  // true, unlinked, size - 1
      EXPECT_EQ(h.wheel().size(), before - 1);
      ASSERT_NO_FATAL_FAILURE(h.Cancel(cancel_id));  // again: false, nothing changes
      EXPECT_EQ(h.wheel().size(), before - 1);
      h.wheel().CheckInvariants();
      ASSERT_NO_FATAL_FAILURE(h.CheckNextDeadline());
    }
    // Far ahead: exactly the survivors come out, in order.
    ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(kMaxNs));
    EXPECT_EQ(h.last_released().size(), keep.ids.size());
    EXPECT_TRUE(h.wheel().empty());
    h.wheel().CheckInvariants();
  }
}

// A level slot is kWheelSlotWays lists ("Ways"). The slot stays occupied (W2) while
// any of its ways holds a node, whichever order they are canceled in, and a slot
// whose ways hold different numbers of nodes releases all of them, in order.
TEST(TimingWheelTest, ASlotStaysOccupiedUntilTheLastNodeOfAnyOfItsWaysIsCanceled) {
  constexpr std::int64_t kTick = 1000;
  const std::int64_t origin = 0;
  const std::size_t per_slot = 3 * TimingWheel::kWays + 1;  // uneven: one way holds 4
  Harness h(kTick, origin, 2 * per_slot);
  // Both groups in one level-0 slot: the tick after the next (tick 1 would be the
  // next Advance's), each at its own ns within it.
  const std::int64_t slot_start = 2 * kTick;
  for (std::size_t i = 0; i < per_slot; ++i) {
    h.Insert(i, slot_start + static_cast<std::int64_t>(per_slot - i));  // reverse order
    ASSERT_EQ(TimingWheel::PlacementOf(h.node(i)).kind, Placement::kLevel);
  }
  for (std::size_t i = 0; i < per_slot; ++i) {
    ASSERT_EQ(h.node(i).way, i % TimingWheel::kWays) << "inserts take the ways in turn";
  }
  // Cancel way by way, the way of the earliest node last: NextDeadline must keep
  // naming the slot's start (W2) until the very last node is gone.
  std::vector<std::size_t> order(per_slot);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return h.node(a).way > h.node(b).way;
  });
  for (std::size_t k = 0; k < order.size(); ++k) {
    ASSERT_NO_FATAL_FAILURE(h.Cancel(order[k]));
    h.wheel().CheckInvariants();
    if (k + 1 < order.size()) {
      ASSERT_EQ(h.wheel().NextDeadline(), std::optional<std::int64_t>(slot_start))
          << "the slot looked empty with " << order.size() - k - 1 << " nodes left";
    }
  }
  EXPECT_FALSE(h.wheel().NextDeadline().has_value());
  // Refill with the second group, cancel every third, and release the rest: every
  // survivor, in (deadline, seq) order, with one Advance (Harness checks both).
  for (std::size_t i = 0; i < per_slot; ++i) {
    h.Insert(per_slot + i, slot_start + static_cast<std::int64_t>((i * 3) % per_slot));
  }
  for (std::size_t i = 0; i < per_slot; i += 3) ASSERT_NO_FATAL_FAILURE(h.Cancel(per_slot + i));
  h.wheel().CheckInvariants();
  ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(slot_start + kTick));
  EXPECT_EQ(h.last_released().size(), per_slot - (per_slot + 2) / 3);
  EXPECT_TRUE(h.wheel().empty());
}

TEST(TimingWheelTest, CancelThenReinsertUsesTheNewDeadlineOnly) {
  Harness h(kMs, 0, 4);
  h.Insert(0, 500 * kMs);
  h.Insert(1, 20 * kMs);
  h.Cancel(0);
  h.Insert(0, 10 * kMs + 5);  // earlier than before, and before node 1
  h.wheel().CheckInvariants();
  h.CheckNextDeadline();
  h.AdvanceTo(10 * kMs + 4);
  EXPECT_TRUE(h.last_released().empty());
  h.AdvanceTo(10 * kMs + 5);
  EXPECT_EQ(h.last_released(), std::vector<std::size_t>{0});
  h.Cancel(1);
  h.Insert(1, 3 * kMs);  // now in the past: the next Advance releases it
  h.AdvanceTo(10 * kMs + 5);  // the same reading
  EXPECT_EQ(h.last_released(), std::vector<std::size_t>{1});
  h.AdvanceTo(600 * kMs);
  EXPECT_TRUE(h.last_released().empty()) << "the old deadline is forgotten";
  h.wheel().CheckInvariants();
}

TEST(TimingWheelTest, CapIsEnforcedWithResourceExhaustedAndChangesNothing) {
  TimingWheel wheel(kMs, 0, 3);
  TimerNode nodes[5];
  ASSERT_TRUE(wheel.Insert(&nodes[0], 5 * kMs, 1).ok());
  ASSERT_TRUE(wheel.Insert(&nodes[1], 70 * kMs, 2).ok());
  ASSERT_TRUE(wheel.Insert(&nodes[2], -1, 3).ok());
  const std::optional<std::int64_t> next = wheel.NextDeadline();
  nodes[3].deadline_ns = 777;
  nodes[3].seq = 9;
  const absl::Status s = wheel.Insert(&nodes[3], 1 * kMs, 4);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("3 timers pending (Options::max_timers)"), absl::string_view::npos)
      << s.message();
  EXPECT_FALSE(nodes[3].linked());
  EXPECT_EQ(nodes[3].deadline_ns, 777) << "a refused node is not touched";
  EXPECT_EQ(nodes[3].seq, 9u);
  EXPECT_EQ(wheel.size(), 3u);
  EXPECT_EQ(wheel.NextDeadline(), next);
  wheel.CheckInvariants();
  // Room again after a cancel, and after a release.
  EXPECT_TRUE(wheel.Cancel(&nodes[1]));
  EXPECT_TRUE(wheel.Insert(&nodes[3], 1 * kMs, 4).ok());
  EXPECT_EQ(wheel.Insert(&nodes[4], 1 * kMs, 5).code(), absl::StatusCode::kResourceExhausted);
  std::vector<TimerNode*> out;
  wheel.Advance(1 * kMs, &out);
  ASSERT_EQ(out.size(), 2u);  // -1 and 1 ms
  EXPECT_TRUE(wheel.Insert(&nodes[4], 1 * kMs, 5).ok());
  wheel.CheckInvariants();
}

TEST(TimingWheelTest, DefaultCapMessageNamesTheOption) {
  TimingWheel wheel(kMs, 0, 0);
  TimerNode node;
  const absl::Status s = wheel.Insert(&node, 1, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("timing wheel: 0 timers pending (Options::max_timers); "),
            absl::string_view::npos)
      << s.message();
}

TEST(TimingWheelTest, InsertOfALinkedNodeFailsAndChangesNothing) {
  TimingWheel wheel(kMs, 0, 10);
  TimerNode node;
  ASSERT_TRUE(wheel.Insert(&node, 100 * kMs, 1).ok());
  const absl::Status s = wheel.Insert(&node, 5 * kMs, 2);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(node.deadline_ns, 100 * kMs);
  EXPECT_EQ(node.seq, 1u);
  EXPECT_EQ(wheel.size(), 1u);
  wheel.CheckInvariants();
}

// A reading in the wheel's tick or the one before it (a clock read a moment before
// another thread's, or stepped back a little): time stays, and nothing comes out
// before the reading, in (deadline, seq) order among what is due by it. Two ticks
// back, time goes back with the reading.
TEST(TimingWheelTest, AReadingATickBehindLeavesTimeAndNothingComesOutBeforeIt) {
  const std::int64_t wheel_now = 100 * kMs + kMs / 2;
  Harness h(kMs, wheel_now, 8);
  h.AdvanceTo(99 * kMs);  // the previous tick: the wheel stays
  EXPECT_EQ(h.wheel().now_ns(), wheel_now);
  h.Insert(0, wheel_now, 10);           // due exactly at the wheel's time
  h.Insert(1, 99 * kMs + 50, 20);       // due by a reading still behind the wheel
  h.Insert(2, wheel_now + 1, 30);       // 1 ns ahead, same tick: not due
  h.Insert(3, 99 * kMs + 50, 40);       // same deadline as 1, later seq
  h.CheckNextDeadline();
  EXPECT_EQ(h.wheel().NextDeadline(), 99 * kMs + 50);
  h.AdvanceTo(99 * kMs + 49);  // before every deadline: nothing
  EXPECT_TRUE(h.last_released().empty());
  EXPECT_EQ(h.wheel().now_ns(), wheel_now);
  h.AdvanceTo(99 * kMs + 50);  // still behind the wheel: what is due by it, in order
  EXPECT_EQ(h.last_released(), (std::vector<std::size_t>{1, 3}));
  EXPECT_EQ(h.wheel().NextDeadline(), wheel_now);
  h.AdvanceTo(wheel_now);
  EXPECT_EQ(h.last_released(), std::vector<std::size_t>{0});
  EXPECT_EQ(h.wheel().NextDeadline(), wheel_now + 1);
  h.AdvanceTo(wheel_now + 1);
  EXPECT_EQ(h.last_released(), std::vector<std::size_t>{2});
  h.wheel().CheckInvariants();
  h.AdvanceTo(99 * kMs + kMs - 1);  // the last ns of the tick before: stays
  EXPECT_EQ(h.wheel().now_ns(), wheel_now + 1);
  h.AdvanceTo(99 * kMs - 1);  // the last ns of the tick before that: back to it
  EXPECT_EQ(h.wheel().now_ns(), 99 * kMs - 1);
  h.wheel().CheckInvariants();
}

// A clock stepped back an hour, with timers in every level, in the overflow list, in
// the late list and in the stage of the next level-1 slot: the wheel goes back with
// it and places every node again, so that what is postponed from the earlier time
// sits in the levels (not in the late list, walked whole by every release), and
// everything due within an hour of the later time comes out exactly at its
// deadline, driven by NextDeadline; the rest stays placed (CheckInvariants).
TEST(TimingWheelTest, AClockSteppedBackTakesTheWheelBackAndPlacesEveryNodeAgain) {
  constexpr std::int64_t kHourNs = 3'600'000 * kMs;
  constexpr std::size_t kOld = 300, kNew = 300, kStaged = 20;
  const std::int64_t later = 2 * kHourNs;
  Harness h(kMs, later, kOld + kNew + 1 + kStaged);
  Rng rng(21);
  for (std::size_t i = 0; i < kOld; ++i) {  // after `later`: levels 0 .. L-1, overflow
    const int bits = 1 + static_cast<int>(rng() % 62);
    h.Insert(i, later + 1 + static_cast<std::int64_t>(rng() & ((std::uint64_t{1} << bits) - 1)));
  }
  h.Insert(kOld + kNew, later - 10 * kMs);  // the late list: due by `later`, not by the clock
  // And the stage ("Cascading ahead"): nodes of the next level-1 slot, moved ahead.
  const std::int64_t next_slot_ms = (FloorDiv(later / kMs, kS) + 1) * kS;
  for (std::size_t i = kOld + kNew + 1; i < kOld + kNew + 1 + kStaged; ++i) {
    h.Insert(i, (next_slot_ms + static_cast<std::int64_t>(i % kS)) * kMs + 7);
  }
  ASSERT_TRUE(h.wheel().CanCascadeAhead());
  while (h.wheel().CascadeAhead(kStaged)) {
  }
  EXPECT_EQ(TimingWheel::PlacementOf(h.node(kOld + kNew + 1)).level, 0) << "staged";
  h.wheel().CheckInvariants();
  const std::int64_t stepped = later - kHourNs;
  ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(stepped));
  EXPECT_EQ(h.wheel().now_ns(), stepped);
  EXPECT_TRUE(h.last_released().empty());
  h.wheel().CheckInvariants();
  EXPECT_NE(TimingWheel::PlacementOf(h.node(kOld + kNew)).kind, Placement::kLate)
      << "re-placed relative to the earlier time";
  for (std::size_t i = kOld; i < kOld + kNew; ++i) {  // postponed from the earlier time
    h.Insert(i, stepped + kMs + static_cast<std::int64_t>(rng() % kHourNs));
    EXPECT_NE(TimingWheel::PlacementOf(h.node(i)).kind, Placement::kLate);
  }
  h.wheel().CheckInvariants();
  // Everything from the earlier time on, each Advance at NextDeadline: the harness
  // checks every release against its oracle.
  std::size_t advances = 0;
  while (h.pending() > 0 && h.wheel().now_ns() < later + kHourNs) {
    ASSERT_NO_FATAL_FAILURE(h.CheckNextDeadline());
    ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(*h.wheel().NextDeadline()));
    ++advances;
  }
  EXPECT_LE(advances, (kL + 1) * (kOld + kNew + 1 + kStaged))
      << "at most L+1 wake-ups per node";
  h.wheel().CheckInvariants();
}

// A clock behind the wheel for many steps, with inserts made relative to that clock,
// some due before the wheel's time and some after: each comes out at the first
// Advance whose reading has reached it, in order (the harness checks every release
// against its oracle, and the wheel's time after each Advance), until the clock
// passes the wheel. Stepped back 90 ms, the wheel goes back with the clock at its
// first reading; stepped back 1.5 ticks (readings in the tick before the wheel's),
// it keeps its time, and what was inserted due before it waits in the late list,
// across Advances, for the clock.
TEST(TimingWheelTest, AClockBehindTheWheelReleasesEachNodeOnlyWhenItsReadingReachesIt) {
  constexpr std::size_t kNodes = 2000;
  struct Case {
    std::int64_t wheel_ns, clock_ns, max_step_ns, span_ns;
  };
  for (const Case c : {Case{100 * kMs, 10 * kMs, kMs / 2, 50 * kMs},
                       Case{100 * kMs + 900'000, 99 * kMs + 400'000, 20'000, 3 * kMs}}) {
    SCOPED_TRACE(c.wheel_ns - c.clock_ns);
    Harness h(kMs, c.wheel_ns, kNodes);
    Rng rng(5);
    std::int64_t clock = c.clock_ns;
    std::size_t inserted = 0;
    while (clock < c.wheel_ns + 100 * kMs) {
      for (int i = 0; i < 10 && inserted < kNodes; ++i) {
        const auto offset = rng() % static_cast<std::uint64_t>(c.span_ns);
        h.Insert(inserted++, clock + static_cast<std::int64_t>(offset));
      }
      clock += static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(c.max_step_ns));
      ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(clock));
      if (inserted % 200 == 0) h.wheel().CheckInvariants();
    }
    EXPECT_EQ(h.wheel().now_ns(), clock);
    ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(c.wheel_ns + 300 * kMs));
    EXPECT_EQ(h.wheel().size(), 0u);
  }
}

TEST(TimingWheelTest, AdvanceWithinATickReleasesOnlyTheDuePrefix) {
  Harness h(kMs, 0, 100);
  // 50 deadlines inside tick 3, at distinct and repeated ns offsets.
  for (std::size_t i = 0; i < 50; ++i) {
    h.Insert(i, 3 * kMs + static_cast<std::int64_t>((i * 7919) % 20) * 1000);
  }
  h.AdvanceTo(3 * kMs - 1);
  EXPECT_TRUE(h.last_released().empty());
  for (std::int64_t ns = 3 * kMs; ns < 4 * kMs; ns += 500) {
    ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(ns));
    ASSERT_NO_FATAL_FAILURE(h.CheckNextDeadline());
  }
  EXPECT_TRUE(h.wheel().empty());
}

TEST(TimingWheelTest, TenYearHorizonNeverOverflowsWhereverNowFalls) {
  // The ring top level makes the horizon independent of now's position, even one
  // tick before a top-window boundary.
  const std::int64_t horizon = NoOverflowHorizonTicks();
  if constexpr (kWheelSlotsPerLevel == 64 && kWheelLevels == 7) {
    EXPECT_GE(NoOverflowHorizonTicks() * kMs, 10 * kYearNs) << "10 years at 1 ms";
  }
  const std::int64_t top = IntPow(kS, kL - 1);
  for (std::int64_t now_tick :
       {std::int64_t{0}, kS * top - 1, 5 * kS * top + top / 2, std::int64_t{-1}, -kS * top + 1}) {
    SCOPED_TRACE(now_tick);
    TimingWheel wheel(1, now_tick, kNoCap);
    TimerNode in_range[3];
    TimerNode beyond;
    ASSERT_TRUE(wheel.Insert(&in_range[0], now_tick + horizon, 1).ok());
    ASSERT_TRUE(wheel.Insert(&in_range[1], now_tick + horizon / 2, 2).ok());
    ASSERT_TRUE(wheel.Insert(&in_range[2], now_tick + 1, 3).ok());
    ASSERT_TRUE(wheel.Insert(&beyond, now_tick + horizon + 2 * top, 4).ok());
    for (const TimerNode& n : in_range) {
      EXPECT_EQ(TimingWheel::PlacementOf(n).kind, Placement::kLevel);
    }
    EXPECT_EQ(TimingWheel::PlacementOf(beyond).kind, Placement::kOverflow);
    wheel.CheckInvariants();
  }
  if constexpr (kWheelSlotsPerLevel == 64 && kWheelLevels == 7) {
    TimingWheel wheel(kMs, 1'700'000'000'000'000'000LL, kNoCap);
    TimerNode node;
    ASSERT_TRUE(wheel.Insert(&node, wheel.now_ns() + 10 * kYearNs, 1).ok());
    EXPECT_EQ(TimingWheel::PlacementOf(node).kind, Placement::kLevel);
    EXPECT_EQ(TimingWheel::PlacementOf(node).level, 6);
  }
}

TEST(TimingWheelTest, BigJumpOfTenYearsIsFastAndCorrect) {
  for (const std::int64_t tick : {kMs, std::int64_t{1}}) {
    SCOPED_TRACE(testing::Message() << "tick " << tick);
    constexpr std::size_t kNodes = 100'000;
    const std::int64_t origin = 1'700'000'000'000'000'000LL;
    Harness h(tick, origin, kNodes + 1);
    Rng rng(3);
    // Uniform over 11 years (about a tenth stays pending), and log-uniform near now.
    for (std::size_t i = 0; i < kNodes; ++i) {
      const std::int64_t offset =
          (i % 2 == 0)
              ? static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(11 * kYearNs))
              : static_cast<std::int64_t>(rng() & ((std::uint64_t{1} << (rng() % 59)) - 1));
      h.Insert(i, origin + offset);
    }
    h.wheel().CheckInvariants();
    const auto start = ordo::test_support::ThreadCpuTime();  // CPU, not wall (thread_cpu.h)
    std::vector<TimerNode*> out;
    out.reserve(kNodes);
    h.wheel().Advance(origin + 10 * kYearNs, &out);
    const auto elapsed = ordo::test_support::ThreadCpuTime() - start;
    // Generous for sanitizer builds: ticking would take 3e11 (or 3e17) iterations.
    EXPECT_LT(elapsed, std::chrono::seconds(3));
    EXPECT_TRUE(InReleaseOrder(out));
    std::size_t expected_out = 0;
    for (std::size_t i = 0; i < kNodes; ++i) {
      const bool due = h.node(i).deadline_ns <= origin + 10 * kYearNs;
      expected_out += due;
      EXPECT_EQ(h.node(i).linked(), !due);
    }
    EXPECT_EQ(out.size(), expected_out);
    EXPECT_GT(h.wheel().size(), 3000u);
    h.wheel().CheckInvariants();
    // One empty-of-due step more and then the rest, still exact.
    std::vector<TimerNode*> rest;
    h.wheel().Advance(origin + 12 * kYearNs, &rest);
    EXPECT_EQ(rest.size() + out.size(), kNodes);
    EXPECT_TRUE(InReleaseOrder(rest));
    EXPECT_TRUE(h.wheel().empty());
  }
}

TEST(TimingWheelTest, YearsOfSparseStepsDoNotTick) {
  // A manual clock moved by hours, over 10 years, with a few timers far apart: cost is
  // per call, not per tick (3e11 ticks of 1 ms in total).
  Harness h(kMs, 0, 64);
  for (std::size_t i = 0; i < 64; ++i) {
    h.Insert(i, static_cast<std::int64_t>(i) * (10 * kYearNs / 64) + 12345);
  }
  const auto start = ordo::test_support::ThreadCpuTime();  // CPU, not wall (thread_cpu.h)
  std::size_t released = 0;
  for (std::int64_t now = 0; now <= 10 * kYearNs; now += 3600LL * 1'000'000'000) {
    ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(now));
    released += h.last_released().size();
  }
  EXPECT_LT(ordo::test_support::ThreadCpuTime() - start, std::chrono::seconds(3));
  EXPECT_EQ(released, 64u);
}

TEST(TimingWheelTest, NextDeadlineIsNeverLateAndAtMostOneGranularityEarly) {
  for (const TickCase& c : TickCases()) {
    SCOPED_TRACE(testing::Message() << "tick " << c.tick_ns);
    Rng rng(5);
    Rng budgets(6);  // CascadeAhead's turns, apart from the operations' sequence
    constexpr std::size_t kNodes = 2000;
    Harness h(c.tick_ns, c.origin_ns, kNodes);
    ASSERT_NO_FATAL_FAILURE(h.CheckNextDeadline());  // empty: nullopt
    std::int64_t now = c.origin_ns;
    for (int op = 0; op < 20'000; ++op) {
      const std::size_t id = rng() % kNodes;
      const int kind = static_cast<int>(rng() % 10);
      if (kind < 5) {
        if (!h.node(id).linked()) h.Insert(id, now + RandomOffsetNs(rng, c.tick_ns, WheelBits()));
      } else if (kind < 7) {
        h.Cancel(id);
      } else if (kind < 9) {
        // Often exactly to NextDeadline, as the engine's timekeeper does.
        const std::optional<std::int64_t> x = h.wheel().NextDeadline();
        now = (x && rng() % 2 == 0)
                  ? std::max(now, *x)
                  : StepFrom(now, RandomOffsetNs(rng, c.tick_ns, WheelBits() - 4));
        ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(now));
        now = h.wheel().now_ns();
      } else {
        // As the engine's timekeeper between releases: a turn of cascading ahead
        // (a small one, or the whole next slot), which must change no result.
        h.wheel().CascadeAhead(budgets() % 4 == 0 ? SIZE_MAX : budgets() % 8);
        h.wheel().CheckInvariants();
      }
      ASSERT_NO_FATAL_FAILURE(h.CheckNextDeadline());
    }
  }
}

TEST(TimingWheelTest, TimekeeperDrivenByNextDeadlineReleasesEachNodeAtExactlyItsDeadline) {
  for (const TickCase& c : TickCases()) {
    for (std::size_t ahead : {std::size_t{0}, std::size_t{5}, SIZE_MAX}) {  // CascadeAhead's budget
      SCOPED_TRACE(testing::Message() << "tick " << c.tick_ns << ", cascading ahead " << ahead);
      Rng rng(9);
      constexpr std::size_t kNodes = 3000;
      TimingWheel wheel(c.tick_ns, c.origin_ns, kNodes);
      std::vector<TimerNode> nodes(kNodes);
      for (std::size_t i = 0; i < kNodes; ++i) {
        const std::int64_t offset = 1 + std::abs(RandomOffsetNs(rng, c.tick_ns, WheelBits()));
        ASSERT_TRUE(wheel.Insert(&nodes[i], c.origin_ns + offset, i).ok());
      }
      std::size_t advances = 0;
      std::size_t released = 0;
      std::vector<TimerNode*> out;
      while (std::optional<std::int64_t> x = wheel.NextDeadline()) {
        ASSERT_GT(*x, wheel.now_ns()) << "parks only until something can be due";
        out.clear();
        wheel.Advance(*x, &out);
        ++advances;
        for (const TimerNode* n : out) ASSERT_EQ(n->deadline_ns, *x) << "lateness is zero";
        released += out.size();
        if (ahead > 0) wheel.CascadeAhead(ahead);
      }
      EXPECT_EQ(released, kNodes);
      // Each wake-up releases a node or cascades a slot; a node cascades at most L times.
      EXPECT_LE(advances, (kWheelLevels + 1) * kNodes);
      wheel.CheckInvariants();
    }
  }
}

// Cascading ahead (timing_wheel.h): the next level-1 slot is staged in turns,
// staged nodes can be canceled, NextDeadline sees them, and entering their
// rotation releases each at its time, in order, as without the stage.
TEST(TimingWheelTest, CascadingAheadStagesTheNextSlotAndItsNodesComeOutAsWithout) {
  constexpr std::int64_t kTick = kMs;
  const std::int64_t slots = static_cast<std::int64_t>(TimingWheel::kSlots);
  Rng rng(17);
  constexpr std::size_t kNodes = 3000;
  Harness h(kTick, 0, kNodes);
  // All in the next level-1 slot: ticks [S, 2S).
  for (std::size_t i = 0; i < kNodes; ++i) {
    h.Insert(i, slots * kTick + static_cast<std::int64_t>(rng() % (slots * kTick)));
  }
  ASSERT_EQ(TimingWheel::PlacementOf(h.node(0)).kind, Placement::kLevel);
  ASSERT_EQ(TimingWheel::PlacementOf(h.node(0)).level, 1);
  ASSERT_NO_FATAL_FAILURE(h.CheckNextDeadline());
  // A turn with a budget below the slot's size leaves it unfinished.
  EXPECT_TRUE(h.wheel().CascadeAhead(kNodes / 3));
  h.wheel().CheckInvariants();
  ASSERT_NO_FATAL_FAILURE(h.CheckNextDeadline());
  for (std::size_t i = 0; i < kNodes; i += 7) h.Cancel(i);  // staged or not
  h.wheel().CheckInvariants();
  EXPECT_FALSE(h.wheel().CascadeAhead(SIZE_MAX));  // the rest
  h.wheel().CheckInvariants();
  ASSERT_NO_FATAL_FAILURE(h.CheckNextDeadline());
  std::size_t staged = 0;
  for (std::size_t i = 0; i < kNodes; ++i) {
    if (!h.node(i).linked()) continue;
    const Placement p = TimingWheel::PlacementOf(h.node(i));
    staged += p.kind == Placement::kLevel && p.level == 0;
  }
  EXPECT_EQ(staged, h.pending());  // every one staged (shown as the level-0 list it will be in)
  // Inserted after the last turn: stays in level 1 and is cascaded on entry.
  h.Insert(7, slots * kTick + 3 * kTick + 5);  // 7 was canceled above
  EXPECT_EQ(TimingWheel::PlacementOf(h.node(7)).level, 1);
  for (std::size_t i = 3; i < kNodes; i += 11) h.Cancel(i);
  h.wheel().CheckInvariants();
  // Enter the rotation a few ticks in, then walk through it: each Advance
  // releases exactly what the oracle says, in order.
  ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(slots * kTick + 2 * kTick + kTick / 2));
  h.wheel().CheckInvariants();
  while (h.pending() > 0) {
    ASSERT_NO_FATAL_FAILURE(h.CheckNextDeadline());
    const std::optional<std::int64_t> x = h.wheel().NextDeadline();
    ASSERT_TRUE(x.has_value());
    ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(*x));
    h.wheel().CheckInvariants();
  }
  // A jump over the whole staged rotation releases it all at once. Now is the
  // last tick of a rotation: the next rotation's ticks are the next level-1 slot.
  const std::int64_t next_base = (h.wheel().now_ns() / kTick / slots + 1) * slots * kTick;
  for (std::size_t i = 0; i < 100; ++i) {
    h.Insert(i, next_base + static_cast<std::int64_t>(rng() % (slots * kTick)));
  }
  EXPECT_FALSE(h.wheel().CascadeAhead(SIZE_MAX));
  for (std::size_t i = 0; i < 100; ++i) {
    ASSERT_EQ(TimingWheel::PlacementOf(h.node(i)).level, 0) << "staged";
  }
  h.wheel().CheckInvariants();
  ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(h.wheel().now_ns() + 10 * slots * kTick));
  EXPECT_EQ(h.pending(), 0u);
  h.wheel().CheckInvariants();
}

TEST(TimingWheelTest, MatchesAMultimapOracleOver100000RandomOperations) {
  for (const TickCase& c : TickCases()) {
    SCOPED_TRACE(testing::Message() << "tick " << c.tick_ns);
    Rng rng(c.tick_ns * 31 + 1);
    Rng budgets(c.tick_ns * 31 + 2);  // CascadeAhead's turns, apart from the operations
    constexpr std::size_t kNodes = 5000;
    Harness h(c.tick_ns, c.origin_ns, kNodes);
    std::int64_t now = c.origin_ns;
    std::vector<std::int64_t> recent_deadlines{now};
    for (int op = 0; op < 100'000; ++op) {
      const std::size_t id = rng() % kNodes;
      const int kind = static_cast<int>(rng() % 20);
      if (kind < 9) {  // insert (or cancel and re-insert), often on a shared deadline
        if (h.node(id).linked()) h.Cancel(id);
        const std::int64_t deadline = rng() % 4 == 0
                                          ? recent_deadlines[rng() % recent_deadlines.size()]
                                          : now + RandomOffsetNs(rng, c.tick_ns, WheelBits());
        h.Insert(id, deadline);
        if (recent_deadlines.size() < 64) {
          recent_deadlines.push_back(deadline);
        } else {
          recent_deadlines[rng() % 64] = deadline;
        }
      } else if (kind < 13) {
        h.Cancel(id);  // linked or not
      } else if (kind < 19) {
        std::int64_t step;
        switch (rng() % 5) {
          case 0:
            step = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(c.tick_ns));
            break;
          case 1:
            step = c.tick_ns;
            break;
          case 2:
            step = -5;
            break;
          default:
            step = RandomOffsetNs(rng, c.tick_ns, WheelBits() - 6);
            break;
        }
        ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(StepFrom(now, step)));
        now = h.wheel().now_ns();
      } else {
        ASSERT_NO_FATAL_FAILURE(h.CheckNextDeadline());
        // Changes no result. Its own generator: the operations' sequence is the
        // one this test always ran.
        h.wheel().CascadeAhead(budgets() % 3 == 0 ? SIZE_MAX : budgets() % 16);
      }
      if (op % 1000 == 0) h.wheel().CheckInvariants();
      ASSERT_FALSE(testing::Test::HasFatalFailure()) << "op " << op;
    }
    h.wheel().CheckInvariants();
    ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(std::numeric_limits<std::int64_t>::max()));
    EXPECT_EQ(h.wheel().size(), 0u);
  }
}

TEST(TimingWheelTest, ExtremeDeadlinesAtTheEndsOfInt64) {
  constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  for (const std::int64_t tick : {std::int64_t{7}, kMs}) {
    Harness h(tick, kMin + 5, 8);
    h.Insert(0, kMax);
    h.Insert(1, kMin);  // due
    h.Insert(2, kMin + 3 * tick + 1);
    h.Insert(3, kMax - 1);
    h.Insert(4, 0);
    h.wheel().CheckInvariants();
    h.CheckNextDeadline();
    h.AdvanceTo(kMin + 5);
    EXPECT_EQ(h.last_released(), std::vector<std::size_t>{1});
    while (std::optional<std::int64_t> x = h.wheel().NextDeadline()) {
      ASSERT_NO_FATAL_FAILURE(h.CheckNextDeadline());
      ASSERT_NO_FATAL_FAILURE(h.AdvanceTo(*x));
      h.wheel().CheckInvariants();
    }
    EXPECT_EQ(h.wheel().now_ns(), kMax);
  }
}

// The distance the timekeeper sleeps and the horizon measures: exact across the
// whole of int64 (an int64 difference overflowed from a reading before 1970 to a
// due time far ahead, and the timekeeper spun instead of sleeping).
TEST(TimingWheelTest, NsAheadIsExactAcrossTheWholeOfInt64) {
  constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  EXPECT_EQ(NsAhead(kMax, kMin), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(NsAhead(kMax / 2 + kMax / 4, -(kMax / 2 + kMax / 4)),
            2 * static_cast<std::uint64_t>(kMax / 2 + kMax / 4));
  EXPECT_EQ(NsAhead(5, -7), 12u);
  EXPECT_EQ(NsAhead(-7, 5), 0u);    // behind: not ahead
  EXPECT_EQ(NsAhead(kMin, kMax), 0u);
  EXPECT_EQ(NsAhead(3, 3), 0u);
}

// A large release is sorted by bucket (SortRange) and, after a sorted run at its
// front, merged (SortNodes): both must give exactly the (deadline, seq) order,
// whatever the deadlines' span (here the whole of int64, so the bucket shift is
// at its widest), with runs of equal deadlines in one bucket, and with the
// current tick's sorted list followed by late inserts that interleave with it.
TEST(TimingWheelTest, LargeReleasesComeOutInOrderWhateverTheSpanAndTies) {
  constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  constexpr std::size_t kNodes = 3000;
  Rng rng(99);
  {
    Harness h(kMs, kMin + 5, kNodes);
    for (std::size_t id = 0; id < kNodes; ++id) {
      std::int64_t d;
      switch (id % 4) {
        case 0: d = static_cast<std::int64_t>(rng()); break;   // anywhere
        case 1: d = kMax - static_cast<std::int64_t>(rng() % 50); break;  // ties at the top
        case 2: d = kMin + 5 + static_cast<std::int64_t>(rng() % 50); break;  // at the bottom
        default: d = 12'345; break;  // one deadline shared by 750
      }
      h.Insert(id, d);
    }
    h.AdvanceTo(kMax);  // one release of everything not due at the start: checked in order
    EXPECT_EQ(h.wheel().size(), 0u);
  }
  {
    // The current tick's list (sorted), then late inserts of the same tick,
    // released together by one Advance within the tick.
    const std::int64_t origin = 1'000 * kMs;
    Harness h(kMs, origin, kNodes);
    for (std::size_t id = 0; id < kNodes / 2; ++id) {
      h.Insert(id, origin + kMs + 1 + static_cast<std::int64_t>(rng() % (kMs - 2)));
    }
    h.AdvanceTo(origin + kMs);  // enters their tick: they become the current tick's list
    ASSERT_EQ(TimingWheel::PlacementOf(h.node(0)).kind, Placement::kCurrentTick);
    for (std::size_t id = kNodes / 2; id < kNodes; ++id) {
      h.Insert(id, origin + kMs + static_cast<std::int64_t>(rng() % kMs));  // late list
    }
    ASSERT_EQ(TimingWheel::PlacementOf(h.node(kNodes - 1)).kind, Placement::kLate);
    h.AdvanceTo(origin + kMs + kMs / 2);  // half of each, interleaved: checked in order
    h.AdvanceTo(origin + 2 * kMs);
    EXPECT_EQ(h.wheel().size(), 0u);
  }
}

TEST(TimingWheelDeathTest, CheckInvariantsAbortsOnAMisplacedNode) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TimingWheel wheel(kMs, 0, 10);
  TimerNode node;
  ASSERT_TRUE(wheel.Insert(&node, 3 * kMs, 1).ok());
  wheel.CheckInvariants();
  node.deadline_ns = 2 * kMs;  // now in the wrong slot
  EXPECT_DEATH(wheel.CheckInvariants(), "W3: misplaced");
  node.deadline_ns = 3 * kMs;
  EXPECT_TRUE(wheel.Cancel(&node));
  wheel.CheckInvariants();
}

}  // namespace
}  // namespace ordo::internal
