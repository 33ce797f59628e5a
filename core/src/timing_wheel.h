// timing_wheel.h: the hierarchical timing wheel that holds postponed operations
// until they are due (DESIGN.md "Postponement" and "Timing wheel").
//
// Role and threading. One owner: the engine, under its timer mutex. Nothing here is
// thread-safe, not even the const members (NextDeadline refreshes a cache). The
// wheel owns only the links of the nodes it holds; the node's owner (an Operation)
// owns the memory, and may free it as soon as Cancel returns or Advance hands it out.
//
// Time. Every instant is int64 ns since the clock's epoch. The wheel's current tick
// is T = floor(now_ns / tick_ns) (floor also before the epoch). A node with deadline d
// sits in tick t = floor(d / tick_ns) and is due when now_ns >= d: the comparison is
// exact, in ns, so a node never comes out early; its lateness is bounded by how often
// the caller calls Advance (NextDeadline says when to call it).
//
// Levels, for the default tick (1 ms) and 64 slots per level (ORDO_SMALL_WORLD: 4
// slots, 3 levels, so cascades and overflow happen within a few ticks):
//   level  slots  granularity (one slot)   span (all slots)
//   -----  -----  -----------------------  ------------------------------------------
//   cur     1+1   exact ns (sorted list)   tick T, and "late" inserts at or before T
//   0       64    1 ms                     64 ms
//   1       64    64 ms                    4.096 s
//   2       64    4.096 s                  262 s (4 min 22 s)
//   3       64    262 s                    16 777 s (4 h 40 min)
//   4       64    4 h 40 min               12.4 days
//   5       64    12.4 days                795 days (2.18 years)
//   6 ring  64    2.18 years               139.4 years; 63 slots ahead usable
//   ovfl    list  exact ns (min cached)    beyond: top-level index >= 64 ahead of T's
// Every deadline less than 63 * 64^6 ticks ahead (137.2 years at 1 ms, whatever T is)
// stays out of the overflow list, so the engine's 10-year horizon never touches it.
// With a 1 us tick the same table reads 64 us ... 50.9 days ring span (50.1 usable).
//
// Placement. Write a tick in base S (S = slots per level): digit k is (t >> kB*k) & (S-1).
//   Levels 0..L-2 are digit-aligned: a node with t > T goes to the level of the highest
//   digit in which t and T differ, if that digit is below L-1, in slot digit_k(t).
//   Level L-1 is a ring: a node whose top index t >> kB*(L-1) is 1..S-1 ahead of T's
//   goes to slot (top index mod S). Further ahead: the overflow list.
//   Why the ring on top: with digit alignment all the way up, a deadline one tick
//   after a top-window boundary would overflow (T = 2^42 - 1, t = 2^42); the ring makes
//   the no-overflow horizon independent of where T falls.
//
// Ways. A level slot is kWheelSlotWays lists (ways), not one: inserts take the ways
// in turn, and a slot is walked (released or cascaded) in all its ways side by side,
// one node of each per round. The walk is the wheel's main cost once the timers
// outgrow the caches: every node is a miss, and in one list each miss waits for the
// one before it (the next pointer is in the node). With 8 ways the processor has
// 8 independent misses in flight. bench/timing_wheel_bench.cc BM_FireSpreadOverTicks
// (262,144 timers in 128-byte records, due over 200 ms, advanced tick by tick):
// 287-538 ns per timer with one list per slot, 128-163 with 8 ways (with the
// cascade fetching nodes ahead and the current tick sorted on copied keys, which
// the ways make worth doing); with 4,096 timers, in cache, 10-15 ns per timer
// more (a line of heads per slot, and the rounds), which is the price.
// Order within a slot never mattered (released nodes are sorted, cascaded ones
// re-placed), so the ways change no result. The other three lists keep one way.
//
// Invariants (CheckInvariants verifies each; T = now_tick_, t = tick of a node)
//   W1  size_ == number of linked nodes; a linked node's slot_index names the list that
//       holds it (and `way` which of a level slot's lists; 0 elsewhere), and prev/next
//       are consistent; an unlinked node has slot_index == kNotInWheel and null links
//       (the wheel clears them when it lets go).
//   W2  bit j of occupied_[k] is set  <=>  slot j of level k is non-empty (in any way).
//   W3  level k < L-1, slot j: t > T, the highest differing base-S digit of t and T is k,
//       and digit_k(t) == j (so j > digit_k(T)).
//   W4  level L-1 (ring), slot j: top(t) - top(T) in [1, S-1], and j == top(t) mod S.
//   W5  overflow list: top(t) - top(T) >= S.
//   W6  current-tick list: t == T, d > now_ns_, sorted by (deadline_ns, seq).
//   W7  late list: t <= T (inserted at or before the current tick; may be due
//       already). A node leaves it at the first Advance whose reading reaches its
//       deadline (kept across Advances within the tick, and while the reading is in
//       tick T or T-1, behind the wheel's time), or when a reading in an earlier
//       tick takes time back and places it again ("A clock stepped back").
//   W8  T == floor(now_ns_ / tick_ns).
//   W9  each cached minimum (late, overflow) is <= its list's minimum deadline, and
//       equal to it unless marked stale (a Cancel removed the minimum).
// Consequence O1: by tick, late/current <= level 0 < level 1 < ... < level L-1 <
// overflow. So the earliest deadline is in the lowest non-empty region, and
// NextDeadline looks at one occupancy word per level, never at a slot's list.
//
// A clock stepped back. A reading in tick T or T-1 (a clock a little behind, or one
// read before another thread's) moves nothing and releases only the late nodes due
// by it (W7). A reading R further back takes the wheel back to it: every node is
// taken out and placed again relative to R's tick (those at or before it in the
// late list), as if inserted then, O(size) once. Time kept at the later instant
// would put every postponement due before it (for a clock stepped back an hour, an
// hour of them) in the late list, unsorted, and every release until the clock
// caught up would walk that whole list: O(n) per release, O(n^2) in all
// (bench/timing_wheel_bench.cc BM_ClockSteppedBack).
//
// Advance(now) from T to T' > T. No loop over ticks: per level, with bit
// operations on the occupancy word,
//   - a slot whose whole range lies before T' is released entirely (its nodes are due:
//     t < T' implies d < T' * tick <= now);
//   - the one slot containing T' is detached, and its nodes re-placed relative to T'
//     (cascade): due ones released, tick-T' ones into the current-tick list (sorted),
//     later ones into a lower level;
//   - slots after T' stay: their placement relative to T' is unchanged (W3, W4);
//   - levels in which T and T' share the slot are untouched (and all above them), so a
//     one-tick Advance touches level k once every S^k ticks.
// Overflow nodes are scanned (one pass over the list) only when T' brings the cached
// minimum's top index within the ring. Output: released nodes are appended, then that
// range is sorted by (deadline_ns, seq). Cost of one Advance: O(levels touched + slots
// passed + nodes released or moved + sort of the released); each node moves at most
// L+1 times (between steps back of the clock). When T' == T (Advance within a tick)
// it pops the due prefix of the sorted current-tick list and scans the late list when
// its cached minimum is due.
//
// NextDeadline guarantee. Let m be the earliest pending deadline; NextDeadline returns
// nullopt iff nothing is pending, else x with
//   x <= m                                          (never late), and
//   x == m            if m's node is in the late, current-tick or overflow list,
//   m - G < x <= m    if it is in level k, where G = tick_ns * S^k (x is that slot's
//                     start: the earliest instant at which that slot can hold a due node).
// And x > now_ns() unless a node is already due. So the engine parks until x, calls
// Advance(x), and asks again: each node costs at most L+1 wake-ups (between steps back
// of the clock), and a timekeeper driven this way releases every node exactly at its
// deadline. It never needs periodic ticks while nothing is due.
//
// Cascading ahead. The cascade of a level-1 slot happens when T enters it, and it
// walks every node of the slot before any of them can be released: with a burst
// of postponed operations (W4-rel: 1,000 timers a millisecond), the slot holds
// 64,000, the walk took 2-3 ms, and the operations due just after each 64 ms
// boundary started that late (lateness by due time showed the spikes 64 ms
// apart). CascadeAhead does that walk earlier, in turns of a bounded number of
// nodes: while T is in the rotation before the next level-1 slot (its digit 1 is
// below S-1, so that slot is level 1's digit(T)+1; at S-1 the next rotation comes
// down from level 2 and nothing is done), it moves that slot's nodes into the
// stage: S lists (with ways), one per tick of the coming rotation. A staged node
// already carries the slot_index and way of the level-0 list it will be in, so
// when Advance enters the rotation the stage's lists become level 0's by moving
// their heads (S * ways pointers): the staged nodes of ticks already passed are
// released, those of the new tick re-placed as a cascade would, and nothing else
// is walked. Nodes inserted into the slot after a turn stay in level 1 and are
// cascaded as before (or staged by the next turn). A staged node is told from a
// level-0 node by its tick, at or after the stage's base (level-0 ticks are
// before it: W3), which is how Unlink finds its list.
//   W10 the stage is empty, or: its base B == (floor(T / S) + 1) * S, digit 1 of
//       T is below S-1, and stage list j holds only nodes of tick B + j, each
//       with slot_index j (level 0, slot j); bit j of stage_occupied_ <=> list j
//       is non-empty. By tick, level 0 < stage <= level 1 < ... (O1 holds with
//       the stage between levels 0 and 1).
//
// Rejected: a binary heap (O(log n) insert and cancel, and cancel needs an index); a
// single-level wheel plus rounds counter (scans every slot each revolution); the Linux
// wheel without cascading (it fires late by up to a level's granularity, and we
// promise exact ns); stepping tick by tick through empty ticks (a manual clock advanced
// a year would loop 3e10 times).
#ifndef ORDO_CORE_SRC_TIMING_WHEEL_H_
#define ORDO_CORE_SRC_TIMING_WHEEL_H_

#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "config.h"
#include "sync.h"

namespace ordo::internal {

// kWheelSlotsPerLevel and kWheelLevels live in config.h with the other capacities.
static_assert(std::has_single_bit(kWheelSlotsPerLevel), "slot digits are masked from ticks");
static_assert(kWheelSlotsPerLevel >= 2 && kWheelSlotsPerLevel <= 64,
              "a level's occupancy is one 64-bit word");
static_assert(kWheelLevels >= 2, "levels 0..L-2 are digit-aligned, level L-1 is the ring");
static_assert(std::has_single_bit(kWheelSlotWays) && kWheelSlotWays <= 256,
              "ways are taken in turn by masking a counter, and named in a byte");
static_assert(std::countr_zero(kWheelSlotsPerLevel) * kWheelLevels <= 56,
              "tick digits must fit an int64 with room for the ring's top index");

inline constexpr std::int64_t kDefaultWheelTickNs = 1'000'000;  // 1 ms

// How far the time `t` (ns) is ahead of `now`, 0 if it is not. In uint64, where
// the distance is exact: between a clock reading before 1970 and a due time far
// ahead it does not fit an int64 (the subtraction overflowed there).
inline constexpr std::uint64_t NsAhead(std::int64_t t, std::int64_t now) {
  return t <= now ? 0 : static_cast<std::uint64_t>(t) - static_cast<std::uint64_t>(now);
}
inline constexpr std::uint32_t kNotInWheel = std::numeric_limits<std::uint32_t>::max();

// Embedded in the engine's Operation. The wheel writes every field while the node is
// linked (W1) and clears the links when it lets go; never copy a linked node.
struct TimerNode {
  TimerNode* prev = nullptr;
  TimerNode* next = nullptr;
  // Atomic, relaxed everywhere: the engine keeps an operation's due time and id
  // in these two (operation.h, OpFacts), where a Handle reads them without the
  // wheel's lock; they order nothing. Insert stores the values it is given (for
  // the engine's nodes, the ones already there), and nothing else here writes them.
  Atomic<std::int64_t> deadline_ns{0};
  Atomic<std::uint64_t> seq{0};            // tie-break among equal deadlines: creation order
  std::uint32_t slot_index = kNotInWheel;  // the list holding it, for O(1) Cancel
  std::uint8_t way = 0;                    // which of a level slot's lists (W1)
  bool linked() const { return slot_index != kNotInWheel; }
  std::int64_t deadline() const { return deadline_ns.load(std::memory_order_relaxed); }
  std::uint64_t sequence() const { return seq.load(std::memory_order_relaxed); }
};

// Walks the lists whose heads are cur[0..live) (timers linked through next) side
// by side, one node of each per round ("Ways" above): the loads of the lists'
// next pointers do not wait for each other. Reads a node's next before calling
// visit(node), so visit may relink it. A list that ends is replaced by the last
// one; cur is scratch and left consumed.
template <typename Visit>
void WalkSideBySide(TimerNode** cur, std::size_t live, Visit visit) {
  while (live > 1) {
    for (std::size_t w = 0; w < live;) {
      TimerNode* node = cur[w];
      cur[w] = node->next;
      visit(node);
      if (cur[w] == nullptr) {
        cur[w] = cur[--live];
      } else {
        ++w;
      }
    }
  }
  // One list left (a sparse slot's usual case): a plain walk.
  for (TimerNode* node = live == 1 ? cur[0] : nullptr; node != nullptr;) {
    TimerNode* next = node->next;
    visit(node);
    node = next;
  }
}

class TimingWheel {
 public:
  static constexpr std::size_t kSlots = kWheelSlotsPerLevel;
  static constexpr std::size_t kLevels = kWheelLevels;
  static constexpr int kSlotBits = std::countr_zero(kWheelSlotsPerLevel);

  // TimerNode::slot_index values: level k slot j is k * kSlots + j, then three lists.
  static constexpr std::uint32_t kLevelSlotCount = kLevels * kSlots;
  static constexpr std::uint32_t kCurrentTickList = kLevelSlotCount;
  static constexpr std::uint32_t kLateList = kLevelSlotCount + 1;
  static constexpr std::uint32_t kOverflowList = kLevelSlotCount + 2;
  static constexpr std::uint32_t kListCount = kLevelSlotCount + 3;
  static constexpr std::size_t kWays = kWheelSlotWays;

  // Where a node sits, for tests and diagnostics ("Postponed, in level 3").
  struct Placement {
    enum Kind { kNone, kLate, kCurrentTick, kLevel, kOverflow };
    Kind kind = kNone;
    int level = -1;  // for kLevel only
  };

  // tick_ns > 0 (checked); now_ns is the origin; Insert fails beyond max_timers.
  TimingWheel(std::int64_t tick_ns, std::int64_t now_ns, std::size_t max_timers);
  TimingWheel(const TimingWheel&) = delete;
  TimingWheel& operator=(const TimingWheel&) = delete;

  // O(1). Makes `node` pending with this deadline and seq. A deadline in the
  // current tick or earlier goes to the late list: the first Advance whose reading
  // has reached it releases it (in order with the others).
  // Errors, each changing nothing: FailedPrecondition when the node is already linked
  // (Cancel it first; checked first); ResourceExhausted when max_timers are pending.
  [[nodiscard]] absl::Status Insert(TimerNode* node, std::int64_t deadline_ns, std::uint64_t seq);

  // O(1). True if `node` was pending in this wheel (it is unlinked at once, and the
  // caller may free it); false if it was not linked. `node` must not be linked in
  // another wheel.
  bool Cancel(TimerNode* node);

  // Moves time to now_ns and appends to *due every node whose deadline is <= now_ns,
  // ordered by (deadline_ns, seq); they are unlinked. Nodes already in *due are left
  // as they are. A reading behind now_ns() (a clock stepped back) releases nothing
  // before it reads the deadline; one in the current or the previous tick leaves
  // time where it is, one further back takes the wheel back to it, re-placing every
  // node (O(size), once per such step: see "A clock stepped back").
  void Advance(std::int64_t now_ns, std::vector<TimerNode*>* due);

  // When to call Advance next; see "NextDeadline guarantee" above. O(levels), plus a
  // scan of the late or overflow list once after a Cancel removed its minimum.
  std::optional<std::int64_t> NextDeadline() const;

  // Moves up to `budget` nodes of the next level-1 slot into the stage ("Cascading
  // ahead"). True if that slot still holds nodes: call again (after releasing what
  // is due) to finish it before T reaches it. Changes no result of Advance or
  // Cancel; NextDeadline may answer later than before (the first staged tick
  // instead of the slot's start), within its guarantee.
  bool CascadeAhead(std::size_t budget);
  // True if CascadeAhead has nodes to move now. O(1).
  bool CanCascadeAhead() const;

  std::int64_t now_ns() const { return now_ns_; }
  std::int64_t tick_ns() const { return tick_ns_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::size_t max_timers() const { return max_timers_; }

  // (A staged node shows as level 0, the list it will be in.)
  static Placement PlacementOf(const TimerNode& node);

  // Checks W1..W10, O(size + slots); aborts with a message naming the broken one.
  void CheckInvariants() const;

 private:
  // A list whose minimum is kept as a lower bound: exact after inserts and scans,
  // stale (still a lower bound) after a Cancel removed the minimum (W9).
  struct MinCache {
    std::int64_t deadline_ns = std::numeric_limits<std::int64_t>::max();
    bool stale = false;
  };

  static constexpr int kTopShift = kSlotBits * static_cast<int>(kLevels - 1);
  static constexpr std::uint64_t kSlotMask = kSlots - 1;

  std::int64_t TickOf(std::int64_t ns) const;                    // floor(ns / tick_ns_)
  std::int64_t TickStartNs(std::int64_t tick) const;             // tick * tick_ns_, saturated
  static std::uint64_t RotateRight(std::uint64_t word, int by);  // within kSlots bits

  // Heads: a level slot's kWays side by side (one line for 8), then the three
  // lists of one way.
  static constexpr std::size_t kHeadCount = kLevelSlotCount * kWays + 3;
  static constexpr std::uint32_t WaysOf(std::uint32_t list) {
    return list < kLevelSlotCount ? static_cast<std::uint32_t>(kWays) : 1;
  }
  TimerNode*& Head(std::uint32_t list, std::uint32_t way = 0) {
    return heads_[list < kLevelSlotCount ? list * kWays + way
                                         : kLevelSlotCount * kWays + (list - kLevelSlotCount)];
  }
  TimerNode* const& Head(std::uint32_t list, std::uint32_t way = 0) const {
    return const_cast<TimingWheel*>(this)->Head(list, way);
  }
  // A list's ways are `ways` heads side by side (a level slot's, or a stage list's).
  static bool WaysEmpty(TimerNode* const* heads, std::uint32_t ways);
  // Empties the ways and calls visit(node) for each of their nodes
  // (WalkSideBySide).
  template <typename Visit>
  static void TakeWays(TimerNode** heads, std::uint32_t ways, Visit visit);
  bool ListEmpty(std::uint32_t list) const;  // every way of it
  // The stage (W10): list j's heads, one per way.
  TimerNode*& StageHead(std::uint32_t j, std::uint32_t way) { return stage_heads_[j * kWays + way]; }
  TimerNode* const& StageHead(std::uint32_t j, std::uint32_t way) const {
    return stage_heads_[j * kWays + way];
  }
  bool StageListEmpty(std::uint32_t j) const;
  // True if `node` (linked) is in the stage, not in level 0 (W10).
  bool InStage(const TimerNode* node) const;
  // Empties stage list j and calls visit(node) for each of its nodes.
  template <typename Visit>
  void TakeStageList(std::uint32_t j, Visit visit);
  // The first tick of the rotation after T's: the stage's base (W10).
  std::int64_t NextRotationTick() const;
  // Advance's part for a reading more than a tick behind T ("A clock stepped back"):
  // time goes back to now_ns, every node is placed again relative to it.
  void StepBack(std::int64_t now_ns);
  // AdvanceToTick's part: T' has reached the stage's base (W10).
  void EnterStagedRotation(std::int64_t new_tick, std::vector<TimerNode*>* due);
  // Empties `list` and calls visit(node) for each of its nodes (WalkSideBySide
  // over its ways).
  template <typename Visit>
  void TakeList(std::uint32_t list, Visit visit);

  // Links `node` first in the list whose head is `head`, naming it list/way (W1).
  static void LinkAtHead(TimerNode*& head, TimerNode* node, std::uint32_t list,
                         std::uint32_t way);
  void PushFront(std::uint32_t list, TimerNode* node);
  void Unlink(TimerNode* node);                    // keeps occupied_ (W2)
  void Place(TimerNode* node, std::int64_t tick);  // tick > now_tick_
  // Links an unlinked node by its deadline relative to T: the late list at or
  // before T (W7), else Place. What Insert and StepBack do with each node.
  void File(TimerNode* node);
  void PushUnsorted(std::uint32_t list, MinCache* min, TimerNode* node);
  void ReleaseList(std::uint32_t list, std::vector<TimerNode*>* due);
  void DetachList(std::uint32_t list, std::vector<TimerNode*>* out);
  // Clears a node's links and place: the wheel lets go of it.
  static void Forget(TimerNode* node);
  void ReleaseNode(TimerNode* node, std::vector<TimerNode*>* due);
  void ReleaseLevelSlots(std::size_t level, std::uint64_t slot_bits, std::vector<TimerNode*>* due);
  std::int64_t RefreshMin(std::uint32_t list, MinCache* min) const;
  void AdvanceWithinTick(std::int64_t now_ns, std::vector<TimerNode*>* due);
  // Releases the late list's nodes due at up_to_ns (W7); refreshes late_min_.
  void ReleaseLateUpTo(std::int64_t up_to_ns, std::vector<TimerNode*>* due);
  void AdvanceToTick(std::int64_t new_tick, std::int64_t now_ns, std::vector<TimerNode*>* due);
  // Sorts [begin, end) by (deadline_ns, seq): only what follows the sorted run
  // at its front, merged in, when that run is at least a quarter of the range.
  void SortNodes(TimerNode** begin, TimerNode** end);
  // Sorts [begin, end) by (deadline_ns, seq); a large range on copied keys.
  void SortRange(TimerNode** begin, TimerNode** end);

  struct SortKey {
    std::int64_t deadline_ns;
    std::uint64_t seq;
    TimerNode* node;
  };
  static constexpr std::size_t kSortOnNodesMax = 64;  // below: sort the pointers in place
  static constexpr int kMaxBucketBits = 16;  // SortRange: at most 2^16 buckets

  const std::int64_t tick_ns_;
  const std::size_t max_timers_;
  const std::int64_t min_tick_;  // TickOf(INT64_MIN): TickStartNs saturates at it
  std::int64_t now_ns_;
  std::int64_t now_tick_;  // T (W8)
  std::size_t size_ = 0;
  std::uint64_t occupied_[kLevels] = {};  // W2
  std::uint32_t next_way_ = 0;            // the way the next level-slot insert takes
  alignas(kCacheLine) TimerNode* heads_[kHeadCount] = {};
  TimerNode* stage_heads_[kSlots * kWays] = {};  // W10
  std::uint64_t stage_occupied_ = 0;            // W10
  std::int64_t stage_base_tick_ = 0;            // W10: B, while the stage is non-empty
  mutable MinCache late_min_;  // refreshed by NextDeadline (const) when stale
  mutable MinCache overflow_min_;
  std::vector<TimerNode*> regroup_;       // Advance scratch: nodes being re-placed
  std::vector<TimerNode*> current_tick_;  // Advance scratch: the new current tick
  std::vector<SortKey> sort_keys_;        // Advance scratch: SortRange of a large range
  std::vector<SortKey> bucketed_;         // Advance scratch: SortRange's keys by bucket
  std::vector<std::size_t> bucket_ends_;  // Advance scratch: SortRange's bucket bounds
  std::vector<TimerNode*> merge_;         // Advance scratch: SortNodes' merge
};

}  // namespace ordo::internal

#endif  // ORDO_CORE_SRC_TIMING_WHEEL_H_
