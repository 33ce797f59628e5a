// config.h: compile-time capacities. A test build (ORDO_SMALL_WORLD) makes them
// tiny so that wrap-around, overflow, cascade and steal races happen within a few
// operations.
#ifndef ORDO_CORE_SRC_CONFIG_H_
#define ORDO_CORE_SRC_CONFIG_H_

#include <bit>
#include <chrono>
#include <cstddef>

namespace ordo::internal {

#ifdef ORDO_SMALL_WORLD
inline constexpr std::size_t kDequeCapacity = 4;
inline constexpr std::size_t kTokenShards = 2;
inline constexpr std::size_t kHintSlots = 4;
inline constexpr std::size_t kHintWays = 2;
inline constexpr std::size_t kInjectorBatch = 2;
inline constexpr std::size_t kWakeBacklog = 2;
inline constexpr unsigned kPopLeasePatience = 2;
inline constexpr int kPopLeaseMinWorkers = 1;  // always, for the tests' sake
inline constexpr std::size_t kPoolCacheNodes = 4;
inline constexpr std::size_t kShardChainCache = 1;
inline constexpr std::size_t kShardSweepMark = 2;
inline constexpr std::size_t kWheelSlotsPerLevel = 4;
inline constexpr std::size_t kWheelLevels = 3;
inline constexpr std::size_t kWheelSlotWays = 2;
inline constexpr std::size_t kTimerInboxWays = 2;
inline constexpr std::size_t kCascadeAheadBudget = 2;
#else
// A child posted by a running job waits behind everything in its worker's
// deque (the owner end is FIFO too, work_deque.h), so a deeper deque lets its
// node leave the cache before it runs: W1-fan ran 123-139 ns/op at 256, 110-115
// at 128, 104-110 at 64 and 146-148 at 32 (it spills); W1-W3 did not move.
// 128, not 64: W1-fan posts 64 per root, and a capacity tuned to the benchmark
// would flatter it.
inline constexpr std::size_t kDequeCapacity = 128;
inline constexpr std::size_t kTokenShards = 64;
inline constexpr std::size_t kHintSlots = 32768;  // 512 KiB
// Hint slots form buckets of kHintWays in one cache line (token_map.h): a token
// may sit in any way of its bucket. Direct-mapped (one way), 10,000 tokens in
// 32,768 slots collided often enough that 13 % of W2's pushes evicted another
// token's chain and took the shard lock (21 % took it in all, with sweeps).
inline constexpr std::size_t kHintWays = 4;
inline constexpr std::size_t kInjectorBatch = 32;
// A worker that finds work while searching wakes a sleeper for what is left
// when at least this much is visible, or when some sleeper sleeps long (no
// timeout, or over kStrandCheck: Parker P2); otherwise a short sleeper comes
// for it within kStrandCheck.
inline constexpr std::size_t kWakeBacklog = 8;
// A worker that finds the injector's pop lease held by the same hold this many
// looks in a row pops without it (injector.h, J4). A hold is one dequeue (a walk
// over the queue's producers, with their cache misses: up to microseconds), and a
// look comes after a steal attempt or a spin round, so 8 looks should mean a
// holder that is not running; if one still running is passed by, only the
// contention the lease saves comes back (J3). Not measured on a many-core machine.
inline constexpr unsigned kPopLeasePatience = 8;
// Engines with fewer workers pop the injector without the lease: with two there is
// at most one other popper. On the 2-core VM (2 workers and the producer on 2
// cores) the lease made W1 6 % and 10 % slower in two sets of 10 paired runs
// (bench/results/vm_pop_lease_ab.txt); on the 16-core machine, where nothing was
// oversubscribed, it helped 2 workers with one producer (120 -> 94 ns) and was
// neutral with four (80 -> 83).
inline constexpr int kPopLeaseMinWorkers = 3;
inline constexpr std::size_t kPoolCacheNodes = 64;
inline constexpr std::size_t kShardChainCache = 64;
// A shard sweeps its idle chains before it grows past this many (then twice
// its size after the sweep).
inline constexpr std::size_t kShardSweepMark = 256;
// Timing wheel: 64 slots per level, 7 levels: 1 ms ticks reach 139 years
// (table in timing_wheel.h).
inline constexpr std::size_t kWheelSlotsPerLevel = 64;
inline constexpr std::size_t kWheelLevels = 7;
// Lists per wheel slot, walked side by side (timing_wheel.h, "Ways"): one line
// of heads per slot.
inline constexpr std::size_t kWheelSlotWays = 8;
// Treiber stacks of the timer inbox, drained side by side (timers.cc).
inline constexpr std::size_t kTimerInboxWays = 8;
// Nodes the timekeeper moves per turn when it cascades the next level-1 slot
// ahead (timing_wheel.h, "Cascading ahead"): about 40 us of work, the most a
// release waits behind it.
inline constexpr std::size_t kCascadeAheadBudget = 1024;
#endif
static_assert(kCascadeAheadBudget > 0, "a turn of cascading ahead must make progress");
// How long a worker parks while another worker is awake (Parker P2): the most a
// few operations left behind a long one wait for a second worker.
inline constexpr std::chrono::microseconds kStrandCheck{1000};
// A worker about to park sweeps idle chains at most this often (token_map.h).
inline constexpr std::chrono::milliseconds kIdleSweepInterval{100};
// Options::max_pending and max_timers above this are taken as this: their
// counts are int64, and SIZE_MAX ("no limit") would read as negative.
inline constexpr std::size_t kNoLimit = std::size_t{1} << 62;
// Counter stripes for threads outside the engine (workers own one each). A thread
// that submits leases one of its own while any is free (EngineImpl::ExternalStripe)
// and counts there without locked instructions; beyond that, threads share the
// first kSharedStripes.
inline constexpr std::size_t kExternalStripes = 64;
inline constexpr std::size_t kSharedStripes = 4;
// How often (in operations) a worker looks at the injector before its own deque,
// so that outside submissions are not starved by a busy local deque.
inline constexpr unsigned kInjectorCheckInterval = 61;

static_assert(std::has_single_bit(kDequeCapacity), "deque indices are masked");
static_assert(std::has_single_bit(kTokenShards), "shard index is masked from the hash");
static_assert(std::has_single_bit(kHintSlots), "slot index is masked from the hash");
static_assert(std::has_single_bit(kHintWays) && kHintSlots % kHintWays == 0,
              "hint slots come in power-of-two buckets");
static_assert((kHintSlots / kHintWays) % kTokenShards == 0,
              "a hint bucket must belong to exactly one shard (bucket bits include shard bits)");

}  // namespace ordo::internal

#endif  // ORDO_CORE_SRC_CONFIG_H_
