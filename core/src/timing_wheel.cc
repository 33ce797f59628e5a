// timing_wheel.cc: see timing_wheel.h for the levels, invariants W1..W10 and the
// Advance algorithm. Checks here abort through WheelCheck rather than ORDO_CHECK so
// that the wheel and its tests build alone, without sync.cc.
#include "timing_wheel.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ordo::internal {
namespace {

constexpr std::int64_t kMaxNs = std::numeric_limits<std::int64_t>::max();
// How far ahead the cascade's loop fetches nodes (AdvanceToTick).
constexpr std::size_t kRegroupAhead = 8;
constexpr std::int64_t kMinNs = std::numeric_limits<std::int64_t>::min();

[[noreturn]] void WheelCheckFailed(const std::string& what) {
  std::fprintf(stderr, "timing wheel: invariant broken: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

inline void WheelCheck(bool ok, const char* what) {
  if (__builtin_expect(!ok, 0)) WheelCheckFailed(what);
}

// Release order: (deadline_ns, seq).
bool EarlierThan(const TimerNode* a, const TimerNode* b) {
  if (a->deadline() != b->deadline()) return a->deadline() < b->deadline();
  return a->sequence() < b->sequence();
}

std::int64_t FloorDiv(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  if ((a % b) < 0) --q;  // b > 0: truncation rounded a negative quotient up
  return q;
}

// t >> shift as a floor division, and back: multiplication instead of a left shift of
// a possibly negative value, so that no sanitizer has anything to say.
std::int64_t Pow2(int shift) { return std::int64_t{1} << shift; }

}  // namespace

TimingWheel::TimingWheel(std::int64_t tick_ns, std::int64_t now_ns, std::size_t max_timers)
    : tick_ns_(tick_ns),
      max_timers_(max_timers),
      min_tick_(tick_ns > 0 ? FloorDiv(kMinNs, tick_ns) : 0),
      now_ns_(now_ns),
      now_tick_(tick_ns > 0 ? FloorDiv(now_ns, tick_ns) : 0) {
  WheelCheck(tick_ns > 0, "tick_ns must be positive");
}

std::int64_t TimingWheel::TickOf(std::int64_t ns) const { return FloorDiv(ns, tick_ns_); }

std::int64_t TimingWheel::TickStartNs(std::int64_t tick) const {
  // tick * tick_ns_ <= kMaxNs for any tick at or before a node's tick; below, only
  // min_tick_ itself can fall under kMinNs.
  return tick <= min_tick_ ? kMinNs : tick * tick_ns_;
}

std::uint64_t TimingWheel::RotateRight(std::uint64_t word, int by) {
  if constexpr (kSlots == 64) {
    return std::rotr(word, by);
  } else {
    constexpr std::uint64_t kAll = ~std::uint64_t{0} >> (64 - kSlots);
    return ((word >> by) | (word << (static_cast<int>(kSlots) - by))) & kAll;
  }
}

TimingWheel::Placement TimingWheel::PlacementOf(const TimerNode& node) {
  Placement p;
  const std::uint32_t list = node.slot_index;
  if (list == kNotInWheel) return p;
  if (list < kLevelSlotCount) {
    p.kind = Placement::kLevel;
    p.level = static_cast<int>(list / kSlots);
  } else if (list == kCurrentTickList) {
    p.kind = Placement::kCurrentTick;
  } else if (list == kLateList) {
    p.kind = Placement::kLate;
  } else if (list == kOverflowList) {
    p.kind = Placement::kOverflow;
  }
  return p;
}

// ---- list primitives ---------------------------------------------------------------

bool TimingWheel::WaysEmpty(TimerNode* const* heads, std::uint32_t ways) {
  for (std::uint32_t w = 0; w < ways; ++w) {
    if (heads[w] != nullptr) return false;
  }
  return true;
}

template <typename Visit>
void TimingWheel::TakeWays(TimerNode** heads, std::uint32_t ways, Visit visit) {
  // The non-empty ways, packed: a sparse slot (a timer or two) costs one pass.
  TimerNode* cur[kWays];
  std::size_t live = 0;
  for (std::uint32_t w = 0; w < ways; ++w) {
    if (heads[w] == nullptr) continue;
    cur[live++] = heads[w];
    heads[w] = nullptr;
  }
  WalkSideBySide(cur, live, visit);
}

bool TimingWheel::ListEmpty(std::uint32_t list) const {
  return WaysEmpty(&Head(list), WaysOf(list));
}

template <typename Visit>
void TimingWheel::TakeList(std::uint32_t list, Visit visit) {
  TakeWays(&Head(list), WaysOf(list), visit);
}

void TimingWheel::LinkAtHead(TimerNode*& head, TimerNode* node, std::uint32_t list,
                             std::uint32_t way) {
  node->prev = nullptr;
  node->next = head;
  if (head != nullptr) head->prev = node;
  head = node;
  node->slot_index = list;
  node->way = static_cast<std::uint8_t>(way);
}

void TimingWheel::PushFront(std::uint32_t list, TimerNode* node) {
  const std::uint32_t way = list < kLevelSlotCount ? next_way_++ & (kWays - 1) : 0;
  LinkAtHead(Head(list, way), node, list, way);
  if (list < kLevelSlotCount) occupied_[list / kSlots] |= std::uint64_t{1} << (list % kSlots);
}

bool TimingWheel::StageListEmpty(std::uint32_t j) const {
  return WaysEmpty(&StageHead(j, 0), kWays);
}

bool TimingWheel::InStage(const TimerNode* node) const {
  // W10: a staged node's tick is at or after the base; a level-0 node's before it.
  return stage_occupied_ != 0 && node->slot_index < kSlots &&
         TickOf(node->deadline()) >= stage_base_tick_;
}

template <typename Visit>
void TimingWheel::TakeStageList(std::uint32_t j, Visit visit) {
  TakeWays(&StageHead(j, 0), kWays, visit);
}

void TimingWheel::Unlink(TimerNode* node) {
  const std::uint32_t list = node->slot_index;
  WheelCheck(list < kListCount, "Cancel of a node with a corrupt slot_index (W1)");
  WheelCheck(node->way < WaysOf(list), "Cancel of a node with a corrupt way (W1)");
  const bool staged = InStage(node);
  if (node->prev != nullptr) {
    node->prev->next = node->next;
  } else {
    TimerNode*& head = staged ? StageHead(list, node->way) : Head(list, node->way);
    WheelCheck(head == node, "node is not where its slot_index says (W1)");
    head = node->next;
  }
  if (node->next != nullptr) node->next->prev = node->prev;
  if (node->prev == nullptr && node->next == nullptr) {  // it was alone in its way
    if (staged) {
      if (StageListEmpty(list)) stage_occupied_ &= ~(std::uint64_t{1} << list);  // W10
    } else if (list < kLevelSlotCount && ListEmpty(list)) {
      occupied_[list / kSlots] &= ~(std::uint64_t{1} << (list % kSlots));  // W2
    }
  }
  Forget(node);
}

void TimingWheel::PushUnsorted(std::uint32_t list, MinCache* min, TimerNode* node) {
  if (Head(list) == nullptr) {
    *min = MinCache{node->deadline(), false};
  } else {
    min->deadline_ns = std::min(min->deadline_ns, node->deadline());  // stays a bound
  }
  PushFront(list, node);
}

// W3..W5: the region is chosen by the highest base-S digit in which tick and T differ.
void TimingWheel::Place(TimerNode* node, std::int64_t tick) {
  const std::uint64_t diff =
      static_cast<std::uint64_t>(tick) ^ static_cast<std::uint64_t>(now_tick_);
  if ((diff >> kTopShift) == 0) {  // same top index: a digit-aligned level
    const int level = (std::bit_width(diff) - 1) / kSlotBits;
    const std::uint64_t slot =
        (static_cast<std::uint64_t>(tick) >> (level * kSlotBits)) & kSlotMask;
    PushFront(static_cast<std::uint32_t>(level * kSlots + slot), node);
    return;
  }
  const std::int64_t top_ahead = (tick >> kTopShift) - (now_tick_ >> kTopShift);
  if (top_ahead < static_cast<std::int64_t>(kSlots)) {  // W4: the ring
    const std::uint64_t slot = static_cast<std::uint64_t>(tick >> kTopShift) & kSlotMask;
    PushFront(static_cast<std::uint32_t>((kLevels - 1) * kSlots + slot), node);
    return;
  }
  PushUnsorted(kOverflowList, &overflow_min_, node);  // W5
}

void TimingWheel::File(TimerNode* node) {
  const std::int64_t tick = TickOf(node->deadline());
  if (tick <= now_tick_) {
    PushUnsorted(kLateList, &late_min_, node);  // W7
  } else {
    Place(node, tick);
  }
}

void TimingWheel::Forget(TimerNode* node) {
  node->prev = nullptr;
  node->next = nullptr;
  node->slot_index = kNotInWheel;
  node->way = 0;
}

void TimingWheel::ReleaseNode(TimerNode* node, std::vector<TimerNode*>* due) {
  Forget(node);
  --size_;
  due->push_back(node);
}

void TimingWheel::ReleaseList(std::uint32_t list, std::vector<TimerNode*>* due) {
  TakeList(list, [&](TimerNode* node) { ReleaseNode(node, due); });
}

void TimingWheel::DetachList(std::uint32_t list, std::vector<TimerNode*>* out) {
  if (list < kLevelSlotCount) occupied_[list / kSlots] &= ~(std::uint64_t{1} << (list % kSlots));
  TakeList(list, [&](TimerNode* node) {
    Forget(node);  // still counted in size_: re-placed or released by the caller
    out->push_back(node);
  });
}

void TimingWheel::ReleaseLevelSlots(std::size_t level, std::uint64_t slot_bits,
                                    std::vector<TimerNode*>* due) {
  occupied_[level] &= ~slot_bits;
  while (slot_bits != 0) {
    const int slot = std::countr_zero(slot_bits);
    slot_bits &= slot_bits - 1;
    ReleaseList(static_cast<std::uint32_t>(level * kSlots + slot), due);
  }
}

std::int64_t TimingWheel::RefreshMin(std::uint32_t list, MinCache* min) const {
  if (min->stale) {
    std::int64_t lowest = kMaxNs;
    for (const TimerNode* n = Head(list); n != nullptr; n = n->next) {
      lowest = std::min(lowest, n->deadline());
    }
    *min = MinCache{lowest, false};
  }
  return min->deadline_ns;
}

// ---- operations --------------------------------------------------------------------

absl::Status TimingWheel::Insert(TimerNode* node, std::int64_t deadline_ns, std::uint64_t seq) {
  WheelCheck(node != nullptr, "Insert of a null node");
  if (node->linked()) {
    // StrCat, not StrFormat: a bad_alloc inside Debian's StrFormat terminates
    // the process (engine_impl.cc, Refusal); StrCat lets it reach the caller.
    return absl::FailedPreconditionError(absl::StrCat(
        "timing wheel: node already pending (deadline ", node->deadline(), " ns, seq ",
        node->sequence(), "); Cancel it before inserting it again"));
  }
  if (size_ >= max_timers_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "timing wheel: ", max_timers_,
        " timers pending (Options::max_timers); let some come due, cancel some, or raise "
        "Options::max_timers"));
  }
  // Relaxed (TimerNode): under the owner's lock, as everything here; the only
  // readers outside it (an engine's Handle and diagnostics) order nothing by
  // these values, and for an engine's node they are the values already there.
  node->deadline_ns.store(deadline_ns, std::memory_order_relaxed);
  node->seq.store(seq, std::memory_order_relaxed);
  File(node);
  ++size_;
  return absl::OkStatus();
}

bool TimingWheel::Cancel(TimerNode* node) {
  if (node == nullptr || !node->linked()) return false;
  const std::uint32_t list = node->slot_index;
  const std::int64_t deadline_ns = node->deadline();
  Unlink(node);
  --size_;
  // W9: the cached minimum stays a lower bound; mark it stale if we took it away.
  MinCache* min = list == kLateList ? &late_min_ : list == kOverflowList ? &overflow_min_ : nullptr;
  if (min != nullptr) {
    if (Head(list) == nullptr) {
      *min = MinCache{};
    } else if (deadline_ns == min->deadline_ns) {
      min->stale = true;
    }
  }
  return true;
}

void TimingWheel::Advance(std::int64_t now_ns, std::vector<TimerNode*>* due) {
  WheelCheck(due != nullptr, "Advance needs an output vector");
  const std::size_t first_released = due->size();
  if (now_ns < now_ns_) {
    // The caller's clock stepped back ("A clock stepped back"). No overflow in
    // the + 1: now_ns < now_ns_, so its tick is below INT64_MAX.
    if (TickOf(now_ns) + 1 < now_tick_) {
      StepBack(now_ns);  // then released as within the tick, below
    } else {
      // A reading in tick T or T-1: time stays, and nothing comes out before the
      // caller's reading: only late nodes (W7) can be due by it (every other node
      // is due after now_ns_), and those due by the wheel's time but not yet by
      // the clock's wait for the clock (NextDeadline names the earliest exactly).
      // Once this released what the wheel's time made due: a clock stepped back
      // ran new postponements early.
      ReleaseLateUpTo(now_ns, due);
      SortNodes(due->data() + first_released, due->data() + due->size());
      return;
    }
  }
  const std::int64_t new_tick = TickOf(now_ns);
  if (size_ == 0) {
    now_ns_ = now_ns;
    now_tick_ = new_tick;
    return;
  }
  if (new_tick == now_tick_) {
    AdvanceWithinTick(now_ns, due);
  } else {
    AdvanceToTick(new_tick, now_ns, due);
  }
  SortNodes(due->data() + first_released, due->data() + due->size());
}

// Sorts [begin, end) by (deadline_ns, seq): what Advance released, and a new current
// tick. A release mostly begins with the current tick's list, in that order
// already (W6), and a release within a tick is often nothing else: the sorted run
// at the front is found (its nodes were just unlinked, so the look is in cache)
// and only what follows it is sorted, then merged in (perf of W4-rel had a
// quarter of the timekeeper's time in sorting, most of it re-sorting that list).
void TimingWheel::SortNodes(TimerNode** begin, TimerNode** end) {
  if (end - begin < 2) return;
  TimerNode** run = begin + 1;
  while (run != end && !EarlierThan(*run, run[-1])) ++run;
  if (run == end) return;
  if ((run - begin) * 4 < end - begin) {  // a short run (a new current tick's usual
    SortRange(begin, end);                // case: nodes in slot order): not worth a merge
    return;
  }
  SortRange(run, end);
  if (!EarlierThan(*run, run[-1])) return;  // all of the rest after the run
  // Merged from the back, the rest (usually the shorter part) copied aside: the
  // run's nodes before the rest's first keep their places.
  merge_.assign(run, end);
  TimerNode** out = end;
  TimerNode** a = run;
  std::size_t b = merge_.size();
  while (b > 0) {
    if (a != begin && EarlierThan(merge_[b - 1], a[-1])) {
      *--out = *--a;
    } else {
      *--out = merge_[--b];
    }
  }
  merge_.clear();
}

// A large range is sorted on copied keys: comparing through the node pointers
// misses the cache on every comparison (bench, one burst of 65536: 131 -> 99 ns
// per timer; 1024: 31 -> 18). And by bucket first: the keys are scattered by
// deadline into about as many buckets as there are keys (a counting sort on the
// deadline's high bits within the range's span), then each bucket is sorted on
// its own. Deadlines spread over a tick (a new current tick) leave a key or two
// per bucket, so the sort is linear; deadlines bunched together (equal ones)
// share a bucket and fall back to the comparison sort, no worse than before.
void TimingWheel::SortRange(TimerNode** begin, TimerNode** end) {
  const auto count = static_cast<std::size_t>(end - begin);
  if (count <= kSortOnNodesMax) {
    std::sort(begin, end, EarlierThan);
    return;
  }
  const auto earlier = [](const SortKey& a, const SortKey& b) {
    return a.deadline_ns != b.deadline_ns ? a.deadline_ns < b.deadline_ns : a.seq < b.seq;
  };
  sort_keys_.clear();
  std::int64_t lo = kMaxNs;
  std::int64_t hi = kMinNs;
  for (TimerNode** it = begin; it != end; ++it) {
    const std::int64_t d = (*it)->deadline();
    lo = std::min(lo, d);
    hi = std::max(hi, d);
    sort_keys_.push_back(SortKey{d, (*it)->sequence(), *it});
  }
  // Unsigned: the span of two int64 deadlines fits 64 bits, not 63.
  const std::uint64_t span = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo);
  const int bucket_bits = std::min(static_cast<int>(std::bit_width(count)), kMaxBucketBits);
  const int shift = std::max(0, static_cast<int>(std::bit_width(span)) - bucket_bits);
  const auto bucket_of = [lo, shift](const SortKey& k) {
    return static_cast<std::size_t>(
        (static_cast<std::uint64_t>(k.deadline_ns) - static_cast<std::uint64_t>(lo)) >> shift);
  };
  // bucket_ends_[b + 1] counts bucket b, then (summed) is where bucket b ends.
  bucket_ends_.assign(static_cast<std::size_t>(span >> shift) + 2, 0);
  for (const SortKey& k : sort_keys_) ++bucket_ends_[bucket_of(k) + 1];
  for (std::size_t b = 1; b < bucket_ends_.size(); ++b) bucket_ends_[b] += bucket_ends_[b - 1];
  bucketed_.resize(count);
  for (const SortKey& k : sort_keys_) bucketed_[bucket_ends_[bucket_of(k)]++] = k;
  // Now bucket_ends_[b] is where bucket b ends (and b + 1 begins).
  std::size_t from = 0;
  for (std::size_t b = 0; from < count; ++b) {
    const std::size_t to = bucket_ends_[b];
    if (to - from > 1) std::sort(bucketed_.begin() + from, bucketed_.begin() + to, earlier);
    from = to;
  }
  for (const SortKey& key : bucketed_) *begin++ = key.node;
  sort_keys_.clear();
  bucketed_.clear();
}

void TimingWheel::AdvanceWithinTick(std::int64_t now_ns, std::vector<TimerNode*>* due) {
  now_ns_ = now_ns;
  // W6: the current-tick list is sorted, so the due nodes are a prefix.
  while (Head(kCurrentTickList) != nullptr && Head(kCurrentTickList)->deadline() <= now_ns) {
    TimerNode* node = Head(kCurrentTickList);
    Unlink(node);
    --size_;
    due->push_back(node);
  }
  ReleaseLateUpTo(now_ns, due);
}

void TimingWheel::ReleaseLateUpTo(std::int64_t up_to_ns, std::vector<TimerNode*>* due) {
  if (Head(kLateList) == nullptr) return;
  // Nothing due (W9: the cached minimum is at most the list's): no walk. A clock
  // stepped back keeps nodes here past Advances only while its reading is in tick T
  // or T-1 (StepBack), so the list holds at most about two ticks' worth of inserts.
  if (late_min_.deadline_ns > up_to_ns) return;
  std::int64_t lowest = kMaxNs;
  for (TimerNode* node = Head(kLateList); node != nullptr;) {
    TimerNode* next = node->next;
    if (node->deadline() <= up_to_ns) {
      Unlink(node);
      --size_;
      due->push_back(node);
    } else {
      lowest = std::min(lowest, node->deadline());
    }
    node = next;
  }
  late_min_ = MinCache{lowest, false};
}

void TimingWheel::StepBack(std::int64_t now_ns) {
  // Every node out (still counted in size_), from every list and the stage; then
  // each placed as Insert would place it at the new time. O(size + slots).
  regroup_.clear();
  const auto take = [&](TimerNode* node) {
    Forget(node);
    regroup_.push_back(node);
  };
  for (std::uint32_t list = 0; list < kListCount; ++list) TakeList(list, take);
  for (std::uint32_t j = 0; j < kSlots; ++j) TakeStageList(j, take);
  for (std::uint64_t& word : occupied_) word = 0;  // W2: every slot is empty
  stage_occupied_ = 0;                            // W10: the stage is empty
  late_min_ = MinCache{};
  overflow_min_ = MinCache{};
  now_ns_ = now_ns;
  now_tick_ = TickOf(now_ns);  // W8
  for (TimerNode* node : regroup_) File(node);
  regroup_.clear();
}

void TimingWheel::AdvanceToTick(std::int64_t new_tick, std::int64_t now_ns,
                                std::vector<TimerNode*>* due) {
  const std::int64_t old_tick = now_tick_;
  // Everything at or before the old tick is due now: new_tick > old_tick.
  ReleaseList(kCurrentTickList, due);
  ReleaseList(kLateList, due);
  late_min_ = MinCache{};

  regroup_.clear();
  bool top_may_move = true;  // false once a level shares T's slot: so do all above
  for (std::size_t level = 0; level + 1 < kLevels; ++level) {
    const int shift = static_cast<int>(level) * kSlotBits;
    if ((old_tick >> shift) == (new_tick >> shift)) {  // same slot here and above
      top_may_move = false;
      break;
    }
    const std::uint64_t occupied = occupied_[level];
    if (occupied == 0) continue;
    if ((old_tick >> (shift + kSlotBits)) != (new_tick >> (shift + kSlotBits))) {
      ReleaseLevelSlots(level, occupied, due);  // left this level's window: all passed
      continue;
    }
    const int new_slot =
        static_cast<int>(static_cast<std::uint64_t>(new_tick >> shift) & kSlotMask);
    ReleaseLevelSlots(level, occupied & ((std::uint64_t{1} << new_slot) - 1), due);
    if ((occupied >> new_slot) & 1) {
      DetachList(static_cast<std::uint32_t>(level * kSlots + new_slot), &regroup_);
    }
  }
  // The stage, once T' reaches its base: level 0 has just been emptied (T' left
  // its window), so the stage's lists can become its lists.
  if (stage_occupied_ != 0 && new_tick >= stage_base_tick_) EnterStagedRotation(new_tick, due);
  if (top_may_move && (old_tick >> kTopShift) != (new_tick >> kTopShift)) {
    const std::int64_t old_top = old_tick >> kTopShift;
    const std::int64_t new_top = new_tick >> kTopShift;
    const std::int64_t ahead = new_top - old_top;
    const std::size_t level = kLevels - 1;
    const std::uint64_t occupied = occupied_[level];
    if (ahead >= static_cast<std::int64_t>(kSlots)) {
      ReleaseLevelSlots(level, occupied, due);  // W4: every ring slot is behind
    } else if (occupied != 0) {
      // Bit i of `relative` is the ring slot i top indices after old_top.
      const int old_slot = static_cast<int>(static_cast<std::uint64_t>(old_top) & kSlotMask);
      const std::uint64_t relative = RotateRight(occupied, old_slot);
      std::uint64_t passed = relative & ((std::uint64_t{1} << ahead) - 1);
      while (passed != 0) {
        const int i = std::countr_zero(passed);
        passed &= passed - 1;
        const std::uint64_t slot = (static_cast<std::uint64_t>(old_slot) + i) & kSlotMask;
        occupied_[level] &= ~(std::uint64_t{1} << slot);
        ReleaseList(static_cast<std::uint32_t>(level * kSlots + slot), due);
      }
      if ((relative >> ahead) & 1) {
        const std::uint64_t slot = static_cast<std::uint64_t>(new_top) & kSlotMask;
        DetachList(static_cast<std::uint32_t>(level * kSlots + slot), &regroup_);
      }
    }
    // Overflow nodes re-enter once their top index is within the new ring (W5). The
    // cached minimum is a lower bound, so a stale one costs a scan, never a miss.
    if (Head(kOverflowList) != nullptr && (TickOf(overflow_min_.deadline_ns) >> kTopShift) <
                                                new_top + static_cast<std::int64_t>(kSlots)) {
      std::int64_t lowest = kMaxNs;
      for (TimerNode* node = Head(kOverflowList); node != nullptr;) {
        TimerNode* next = node->next;
        if ((TickOf(node->deadline()) >> kTopShift) <
            new_top + static_cast<std::int64_t>(kSlots)) {
          Unlink(node);
          regroup_.push_back(node);
        } else {
          lowest = std::min(lowest, node->deadline());
        }
        node = next;
      }
      overflow_min_ = MinCache{lowest, false};
    }
  }

  now_tick_ = new_tick;
  now_ns_ = now_ns;
  // Cascade: re-place relative to the new tick (every node here has tick >= the start
  // of the slot containing new_tick, so it lands lower, or is due).
  current_tick_.clear();
  for (std::size_t i = 0; i < regroup_.size(); ++i) {
    // A large cascade (a level-1 slot of a burst) outgrows the caches between the
    // detach and this loop: fetch a few nodes ahead, for the links Place writes.
    if (i + kRegroupAhead < regroup_.size()) PrefetchForWrite(regroup_[i + kRegroupAhead]);
    TimerNode* node = regroup_[i];
    if (node->deadline() <= now_ns) {
      --size_;  // already unlinked by DetachList or Unlink
      due->push_back(node);
      continue;
    }
    const std::int64_t tick = TickOf(node->deadline());
    if (tick == new_tick) {
      current_tick_.push_back(node);
    } else {
      Place(node, tick);
    }
  }
  regroup_.clear();
  // W6: build the current-tick list in (deadline_ns, seq) order.
  SortNodes(current_tick_.data(), current_tick_.data() + current_tick_.size());
  for (auto it = current_tick_.rbegin(); it != current_tick_.rend(); ++it) {
    PushFront(kCurrentTickList, *it);
  }
  current_tick_.clear();
}

bool TimingWheel::CanCascadeAhead() const {
  if constexpr (kLevels < 3) {
    return false;  // level 1 is the ring: no digit-aligned next slot
  } else {
    const std::uint64_t digit1 = static_cast<std::uint64_t>(now_tick_ >> kSlotBits) & kSlotMask;
    // At S-1 the next rotation comes from level 2: nothing to do ahead.
    return digit1 != kSlotMask && ((occupied_[1] >> (digit1 + 1)) & 1) != 0;
  }
}

std::int64_t TimingWheel::NextRotationTick() const {
  return ((now_tick_ >> kSlotBits) + 1) * static_cast<std::int64_t>(kSlots);
}

bool TimingWheel::CascadeAhead(std::size_t budget) {
  if (!CanCascadeAhead()) return false;
  const std::uint64_t next =
      (static_cast<std::uint64_t>(now_tick_ >> kSlotBits) & kSlotMask) + 1;
  const std::int64_t base = NextRotationTick();
  WheelCheck(stage_occupied_ == 0 || stage_base_tick_ == base,
             "W10: the stage belongs to another rotation");
  stage_base_tick_ = base;
  const auto list = static_cast<std::uint32_t>(kSlots + next);
  // One node of each way per round, so that the ways' misses overlap (as
  // WalkSideBySide), each way's next node fetched as its head is taken.
  std::size_t moved = 0;
  for (bool any = true; any && moved < budget;) {
    any = false;
    for (std::uint32_t way = 0; way < kWays && moved < budget; ++way) {
      TimerNode*& head = Head(list, way);
      TimerNode* node = head;
      if (node == nullptr) continue;
      any = true;
      head = node->next;
      if (head != nullptr) {
        PrefetchForWrite(head);
        head->prev = nullptr;
      }
      // W3: its tick is base + j, j its digit 0. Pushed as PushFront would
      // push it onto level-0 slot j (the list it will be in), but in the stage.
      const auto j = static_cast<std::uint32_t>(
          static_cast<std::uint64_t>(TickOf(node->deadline())) & kSlotMask);
      const std::uint32_t stage_way = next_way_++ & (kWays - 1);
      LinkAtHead(StageHead(j, stage_way), node, j, stage_way);
      stage_occupied_ |= std::uint64_t{1} << j;
      ++moved;
    }
  }
  if (ListEmpty(list)) {
    occupied_[1] &= ~(std::uint64_t{1} << next);  // W2
    return false;
  }
  return true;
}

void TimingWheel::EnterStagedRotation(std::int64_t new_tick, std::vector<TimerNode*>* due) {
  // Ticks of the staged rotation now passed: its lists before `into` are due
  // (tick < T'), list `into` is the new current tick (re-placed with the
  // cascade's nodes), the later ones become level 0's lists as they are (W3
  // relative to T': same digits above 0, digit 0 == j > digit 0 of T').
  // Unsigned: new_tick >= the base, and the difference may not fit an int64.
  const std::uint64_t into =
      static_cast<std::uint64_t>(new_tick) - static_cast<std::uint64_t>(stage_base_tick_);
  std::uint64_t bits = stage_occupied_;
  while (bits != 0) {
    const auto j = static_cast<std::uint32_t>(std::countr_zero(bits));
    bits &= bits - 1;
    if (into >= kSlots || j < into) {
      TakeStageList(j, [&](TimerNode* node) { ReleaseNode(node, due); });
    } else if (j == into) {
      TakeStageList(j, [&](TimerNode* node) {
        Forget(node);  // as DetachList: still counted in size_
        regroup_.push_back(node);
      });
    } else {
      for (std::uint32_t w = 0; w < kWays; ++w) {
        WheelCheck(Head(j, w) == nullptr, "W10: level 0 is not empty on entering the stage");
        Head(j, w) = StageHead(j, w);
        StageHead(j, w) = nullptr;
      }
      occupied_[0] |= std::uint64_t{1} << j;  // W2
    }
  }
  stage_occupied_ = 0;
}

std::optional<std::int64_t> TimingWheel::NextDeadline() const {
  if (size_ == 0) return std::nullopt;
  // O1: the earliest deadline is in the lowest non-empty region.
  std::optional<std::int64_t> nearest;
  if (Head(kLateList) != nullptr) nearest = RefreshMin(kLateList, &late_min_);
  if (Head(kCurrentTickList) != nullptr) {
    const std::int64_t head = Head(kCurrentTickList)->deadline();  // W6: the minimum
    nearest = nearest ? std::min(*nearest, head) : head;
  }
  if (nearest) return nearest;
  for (std::size_t level = 0; level + 1 < kLevels; ++level) {
    // W10: the stage lies between levels 0 and 1; level 1's first slot, if it is
    // the one being staged, starts at the base, which is no later.
    const bool stage_here = level == 1 && stage_occupied_ != 0;
    if (occupied_[level] == 0) {
      if (stage_here) {
        return TickStartNs(stage_base_tick_ + std::countr_zero(stage_occupied_));
      }
      continue;
    }
    const int shift = static_cast<int>(level) * kSlotBits;
    const std::int64_t window = now_tick_ >> (shift + kSlotBits);  // W3: shared digits
    const std::int64_t slot = std::countr_zero(occupied_[level]);
    const std::int64_t start = TickStartNs(window * Pow2(shift + kSlotBits) + slot * Pow2(shift));
    if (stage_here) {
      return std::min(start, TickStartNs(stage_base_tick_ + std::countr_zero(stage_occupied_)));
    }
    return start;
  }
  if (const std::uint64_t ring = occupied_[kLevels - 1]; ring != 0) {
    const std::int64_t top = now_tick_ >> kTopShift;
    const int top_slot = static_cast<int>(static_cast<std::uint64_t>(top) & kSlotMask);
    const int ahead = std::countr_zero(RotateRight(ring, top_slot));  // W4: >= 1
    return TickStartNs((top + ahead) * Pow2(kTopShift));
  }
  return RefreshMin(kOverflowList, &overflow_min_);
}

// ---- invariants --------------------------------------------------------------------

void TimingWheel::CheckInvariants() const {
  auto fail = [](const std::string& what) { WheelCheckFailed(what); };
  if (TickOf(now_ns_) != now_tick_) fail("W8: now_tick_ != floor(now_ns_ / tick_ns_)");
  std::size_t counted = 0;
  const std::int64_t top = now_tick_ >> kTopShift;
  for (std::uint32_t list = 0; list < kListCount; ++list) {
    std::int64_t lowest = kMaxNs;
    for (std::uint32_t way = 0; way < WaysOf(list); ++way) {
      const TimerNode* prev = nullptr;
      for (const TimerNode* n = Head(list, way); n != nullptr; prev = n, n = n->next) {
        ++counted;
        if (counted > size_) fail(absl::StrFormat("W1: more nodes linked than size() = %d", size_));
        if (n->slot_index != list || n->way != way || n->prev != prev) {
          fail(
              absl::StrFormat("W1: node (deadline %d ns, seq %d) in list %d way %d says list %d "
                              "way %d, or its prev link is wrong",
                              n->deadline(), n->sequence(), list, way, n->slot_index, n->way));
        }
        lowest = std::min(lowest, n->deadline());
        const std::int64_t tick = TickOf(n->deadline());
        const std::string where =
            absl::StrFormat("node (deadline %d ns, tick %d, seq %d) in list %d at tick %d",
                            n->deadline(), tick, n->sequence(), list, now_tick_);
        if (list < kLevelSlotCount) {
          const std::size_t level = list / kSlots;
          const std::uint64_t slot = list % kSlots;
          if (level + 1 < kLevels) {
            const std::uint64_t diff =
                static_cast<std::uint64_t>(tick) ^ static_cast<std::uint64_t>(now_tick_);
            const int shift = static_cast<int>(level) * kSlotBits;
            if (tick <= now_tick_ || (diff >> (shift + kSlotBits)) != 0 || (diff >> shift) == 0 ||
                ((static_cast<std::uint64_t>(tick) >> shift) & kSlotMask) != slot) {
              fail("W3: misplaced " + where);
            }
          } else {
            const std::int64_t ahead = (tick >> kTopShift) - top;
            if (ahead < 1 || ahead >= static_cast<std::int64_t>(kSlots) ||
                (static_cast<std::uint64_t>(tick >> kTopShift) & kSlotMask) != slot) {
              fail("W4: misplaced " + where);
            }
          }
        } else if (list == kCurrentTickList) {
          if (tick != now_tick_ || n->deadline() <= now_ns_) fail("W6: misplaced " + where);
          if (prev != nullptr && EarlierThan(n, prev)) fail("W6: out of order " + where);
        } else if (list == kLateList) {
          if (tick > now_tick_) fail("W7: misplaced " + where);
        } else if (list == kOverflowList) {
          if ((tick >> kTopShift) - top < static_cast<std::int64_t>(kSlots)) {
            fail("W5: misplaced " + where);
          }
        }
      }
    }
    if (list < kLevelSlotCount) {
      const bool bit = (occupied_[list / kSlots] >> (list % kSlots)) & 1;
      if (bit != !ListEmpty(list)) {
        fail(absl::StrFormat("W2: occupancy bit of level %d slot %d is %d but the slot is %s",
                             list / kSlots, list % kSlots, bit ? 1 : 0,
                             ListEmpty(list) ? "empty" : "non-empty"));
      }
    }
    const MinCache* min = list == kLateList       ? &late_min_
                          : list == kOverflowList ? &overflow_min_
                                                  : nullptr;
    if (min != nullptr &&
        (min->deadline_ns > lowest || (!min->stale && min->deadline_ns != lowest))) {
      fail(absl::StrFormat("W9: cached minimum %d (stale %d) of list %d, true minimum %d",
                           min->deadline_ns, min->stale ? 1 : 0, list, lowest));
    }
  }
  // W10: the stage.
  if (stage_occupied_ != 0) {
    if (stage_base_tick_ != NextRotationTick() ||
        (static_cast<std::uint64_t>(now_tick_ >> kSlotBits) & kSlotMask) == kSlotMask) {
      fail(absl::StrFormat("W10: stage base %d at tick %d", stage_base_tick_, now_tick_));
    }
  }
  for (std::uint32_t j = 0; j < kSlots; ++j) {
    for (std::uint32_t way = 0; way < kWays; ++way) {
      const TimerNode* prev = nullptr;
      for (const TimerNode* n = StageHead(j, way); n != nullptr; prev = n, n = n->next) {
        ++counted;
        if (counted > size_) fail(absl::StrFormat("W1: more nodes linked than size() = %d", size_));
        if (n->slot_index != j || n->way != way || n->prev != prev ||
            TickOf(n->deadline()) != stage_base_tick_ + static_cast<std::int64_t>(j)) {
          fail(absl::StrFormat("W10: node (deadline %d ns, seq %d) in stage list %d way %d says "
                               "list %d way %d, or its tick or prev link is wrong",
                               n->deadline(), n->sequence(), j, way, n->slot_index, n->way));
        }
      }
    }
    if (((stage_occupied_ >> j) & 1) != (StageListEmpty(j) ? 0u : 1u)) {
      fail(absl::StrFormat("W10: stage occupancy bit %d disagrees with its list", j));
    }
  }
  if (counted != size_) fail(absl::StrFormat("W1: %d nodes linked, size() = %d", counted, size_));
}

}  // namespace ordo::internal
