// timing_wheel_fuzz.cc: libFuzzer target for the timing wheel (core/src/timing_wheel.h),
// beside a std::multimap oracle keyed by (deadline, seq), as timing_wheel_test.cc's
// Harness, but with the operations, their order and every instant chosen by the input:
// any int64 origin, deadline and reading (the ends of the range included), readings
// that step back, a cap, re-inserts, cascades ahead at any point.
//
// Input: a byte string read as a header (tick, origin, cap) and then up to 4,096
// operations of a few bytes each; a short input just runs out (missing bytes read 0).
// What every input must satisfy (each a promise of timing_wheel.h):
//   Q1 Insert succeeds unless the node is linked (FailedPrecondition, checked first) or
//      max_timers are pending (ResourceExhausted), and a refusal changes nothing.
//   Q2 Cancel answers whether the node was pending and always leaves it unlinked.
//   Q3 Advance(r) releases exactly the pending nodes with deadline <= r (also when r is
//      behind the wheel's time), ordered by (deadline, seq), unlinked with their links
//      cleared, after what the output vector held already; time becomes r if later,
//      or if r is in a tick before T-1 (a clock stepped back: every node placed
//      again), else stays.
//   Q4 NextDeadline: nullopt iff nothing is pending; never later than the earliest
//      deadline m; exactly m for the late, current and overflow lists, else less than
//      one granularity early; after now_ns() when m is.
//   Q5 CascadeAhead changes no result and answers whether the next level-1 slot still
//      holds nodes to move (as CanCascadeAhead does after it), and W1..W10 hold after
//      every operation (CheckInvariants aborts naming the broken one).
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "fuzz_check.h"
#include "support/wheel_oracle.h"
#include "timing_wheel.h"

namespace {

using ordo::internal::TimerNode;
using ordo::internal::TimingWheel;
namespace oracle = ordo::internal::wheel_oracle;

constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
constexpr std::size_t kNodes = 48;
constexpr int kMaxOps = 4096;
// Offset's widest scale (case 3) for the widest tick (1 ms) must fit an int64, as must
// the oracle's tick * S^L (GranularityNs).
static_assert(1'000'000 * oracle::IntPow(oracle::kS, oracle::kL - 1) <=
                  std::numeric_limits<std::int64_t>::max() / (oracle::kS + 1),
              "the harness's offsets and the oracle's granularity overflow for these capacities");

// The input, read front to back; past its end every read is 0.
class Bytes {
 public:
  Bytes(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}
  bool empty() const { return n_ == 0; }
  std::uint8_t U8() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  std::uint64_t U64() {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | U8();
    return v;
  }
  std::int64_t I64() { return static_cast<std::int64_t>(U64()); }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
};

std::int64_t SatAdd(std::int64_t a, std::int64_t b) {
  std::int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? kMax : kMin;
  return r;
}

// An offset from "now" at one of several scales: inside a tick, inside a level, up to
// the ring, anywhere, or into the past.
std::int64_t Offset(Bytes& in, std::int64_t tick) {
  const std::uint8_t scale = in.U8();
  const std::uint64_t raw = in.U64();
  const std::int64_t s = oracle::kS;
  switch (scale % 6) {
    case 0: return static_cast<std::int64_t>(raw % static_cast<std::uint64_t>(tick + 1));
    case 1: return static_cast<std::int64_t>(raw % static_cast<std::uint64_t>(tick * s * 2));
    case 2: return static_cast<std::int64_t>(raw % static_cast<std::uint64_t>(tick * s * s * s * 2));
    case 3: {
      const std::int64_t top = tick * oracle::IntPow(s, oracle::kL - 1);
      return static_cast<std::int64_t>(raw % static_cast<std::uint64_t>(top)) * (s + 1);
    }
    case 4: return static_cast<std::int64_t>(raw);  // anywhere, either way
    default: return -static_cast<std::int64_t>(raw % static_cast<std::uint64_t>(tick * s * 4));
  }
}

class Run {
 public:
  Run(std::int64_t tick, std::int64_t origin, std::size_t cap)
      : wheel_(tick, origin, cap), tick_(tick), cap_(cap) {}

  void Insert(std::size_t id, std::int64_t deadline) {
    TimerNode& n = nodes_[id];
    const bool was_linked = n.linked();
    const std::size_t size_before = wheel_.size();
    const std::uint64_t seq = (next_seq_++) * 0x9E3779B97F4A7C15ULL + 17;  // unique, unordered
    const absl::Status s = wheel_.Insert(&n, deadline, seq);
    if (was_linked) {  // Q1
      FUZZ_CHECK(s.code() == absl::StatusCode::kFailedPrecondition, "insert of a linked node: ", s);
    } else if (size_before >= cap_) {
      FUZZ_CHECK(s.code() == absl::StatusCode::kResourceExhausted, "insert past the cap: ", s);
      FUZZ_CHECK(!n.linked(), "a refused insert linked the node");
    } else {
      FUZZ_CHECK(s.ok(), "insert refused: ", s, " (size ", size_before, ", cap ", cap_, ")");
      FUZZ_CHECK(n.linked(), "an accepted insert left the node unlinked");
      oracle_.emplace(std::make_pair(deadline, seq), id);
    }
    FUZZ_CHECK(wheel_.size() == oracle_.size(), "size ", wheel_.size(), " != ", oracle_.size());
  }

  void Cancel(std::size_t id) {
    TimerNode& n = nodes_[id];
    const bool was_linked = n.linked();
    if (was_linked) {
      const auto it = oracle_.find({n.deadline(), n.sequence()});
      FUZZ_CHECK(it != oracle_.end() && it->second == id, "a linked node the oracle lacks");
      oracle_.erase(it);
    }
    FUZZ_CHECK(wheel_.Cancel(&n) == was_linked, "Cancel's answer differs from linked()");  // Q2
    FUZZ_CHECK(!n.linked() && n.prev == nullptr && n.next == nullptr, "Cancel left links");
    FUZZ_CHECK(wheel_.size() == oracle_.size(), "size ", wheel_.size(), " != ", oracle_.size());
  }

  void Advance(std::int64_t reading) {
    const std::int64_t expected_now = oracle::ExpectedNowAfter(tick_, wheel_.now_ns(), reading);
    TimerNode sentinel;  // what the output held before: left as it was
    std::vector<TimerNode*> out = {&sentinel};
    wheel_.Advance(reading, &out);
    FUZZ_CHECK(wheel_.now_ns() == expected_now, "now ", wheel_.now_ns(), " after Advance(",
               reading, "), expected ", expected_now);
    FUZZ_CHECK(out[0] == &sentinel, "Advance changed what its output vector held");
    out.erase(out.begin());
    std::size_t i = 0;  // Q3: exactly the oracle's due prefix, in its order
    while (!oracle_.empty() && oracle_.begin()->first.first <= reading) {
      FUZZ_CHECK(i < out.size(), "Advance(", reading, ") missed a node due at ",
                 oracle_.begin()->first.first);
      const std::size_t got = static_cast<std::size_t>(out[i] - nodes_.data());
      FUZZ_CHECK(got == oracle_.begin()->second, "Advance(", reading, ") released node ", got,
                 " (deadline ", out[i]->deadline(), ") where the oracle has node ",
                 oracle_.begin()->second, " (deadline ", oracle_.begin()->first.first, ")");
      FUZZ_CHECK(!out[i]->linked() && out[i]->prev == nullptr && out[i]->next == nullptr,
                 "a released node is still linked, or keeps its links");
      oracle_.erase(oracle_.begin());
      ++i;
    }
    FUZZ_CHECK(i == out.size(), "Advance(", reading, ") released ", out.size() - i,
               " more than were due; first extra deadline ", out[i]->deadline());
    FUZZ_CHECK(wheel_.size() == oracle_.size(), "size ", wheel_.size(), " != ", oracle_.size());
  }

  void CheckNextDeadline() {  // Q4
    const std::optional<std::int64_t> x = wheel_.NextDeadline();
    if (oracle_.empty()) {
      FUZZ_CHECK(!x.has_value(), "NextDeadline ", *x, " with nothing pending");
      return;
    }
    FUZZ_CHECK(x.has_value(), "NextDeadline nullopt with ", oracle_.size(), " pending");
    const std::int64_t m = oracle_.begin()->first.first;
    FUZZ_CHECK(*x <= m, "NextDeadline ", *x, " later than the earliest deadline ", m);
    const std::int64_t g = oracle::GranularityNs(tick_, wheel_.now_ns(), m);
    const std::uint64_t early = static_cast<std::uint64_t>(m) - static_cast<std::uint64_t>(*x);
    if (g == 0) {
      FUZZ_CHECK(*x == m, "NextDeadline ", *x, " not exactly ", m, " (now ", wheel_.now_ns(), ")");
    } else {
      FUZZ_CHECK(early < static_cast<std::uint64_t>(g), "NextDeadline ", *x, " more than ", g,
                 " ns before ", m, " (now ", wheel_.now_ns(), ")");
    }
    if (m > wheel_.now_ns()) {
      FUZZ_CHECK(*x > wheel_.now_ns(), "NextDeadline ", *x, " not after now ", wheel_.now_ns(),
                 " though nothing is due");
    }
  }

  TimingWheel& wheel() { return wheel_; }
  std::int64_t tick() const { return tick_; }
  std::int64_t last_deadline = 0;

 private:
  TimingWheel wheel_;
  std::array<TimerNode, kNodes> nodes_{};
  std::multimap<std::pair<std::int64_t, std::uint64_t>, std::size_t> oracle_;
  const std::int64_t tick_;
  const std::size_t cap_;
  std::uint64_t next_seq_ = 1;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Bytes in(data, size);
  // Ticks up to 1 ms, so that the oracle's tick * S^L fits an int64.
  static constexpr std::array<std::int64_t, 6> kTicks = {1, 7, 1'000, 999'983, 1'000'000, 64};
  const std::int64_t tick = kTicks[in.U8() % kTicks.size()];
  std::int64_t origin = 0;
  switch (in.U8() % 4) {
    case 0: origin = 0; break;
    case 1: origin = 1'767'225'600'000'000'000; break;  // 2026
    case 2: origin = -static_cast<std::int64_t>(in.U64() >> 2); break;
    default: origin = in.I64(); break;
  }
  const std::uint8_t cap_byte = in.U8();
  const std::size_t cap = cap_byte % 4 == 0 ? 1 + cap_byte / 4 % 16 : std::size_t{1} << 40;
  Run run(tick, origin, cap);
  for (int op = 0; op < kMaxOps && !in.empty(); ++op) {
    const std::uint8_t code = in.U8();
    switch (code % 8) {
      case 0:
      case 1: {
        const std::size_t id = in.U8() % kNodes;
        // One in four re-uses the last deadline: ties come out in seq order.
        const std::int64_t d = code / 8 % 4 == 0 ? run.last_deadline
                                                 : SatAdd(run.wheel().now_ns(), Offset(in, tick));
        run.last_deadline = d;
        run.Insert(id, d);
        break;
      }
      case 2: run.Cancel(in.U8() % kNodes); break;
      case 3:
      case 4: {
        const std::int64_t off = Offset(in, tick);
        const std::int64_t forward = off >= 0 ? off : off == kMin ? kMax : -off;
        run.Advance(SatAdd(run.wheel().now_ns(), forward));
        break;
      }
      case 5:  // a reading behind the wheel's time: a clock stepped back
        run.Advance(SatAdd(run.wheel().now_ns(), -static_cast<std::int64_t>(in.U8()) * tick / 3 - 1));
        break;
      case 6: {
        const bool more = run.wheel().CascadeAhead(1 + in.U8() % 8);
        FUZZ_CHECK(more == run.wheel().CanCascadeAhead(),
                   "CascadeAhead answered ", more, ", CanCascadeAhead after it the opposite");
        break;
      }
      default: run.CheckNextDeadline(); break;
    }
    run.wheel().CheckInvariants();  // Q5
  }
  run.CheckNextDeadline();
  return 0;
}
