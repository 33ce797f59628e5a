// injector_test.cc: the global submission queue's pop lease (injector.h, J1-J4):
// one popper at a time, a loser takes nothing and is not made to wait, the lease
// hides nothing from size_approx, a hold that outlasts kPopLeasePatience looks is
// popped around, and under racing poppers every operation leaves exactly once,
// each producer's in its order.
#include "injector.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "support/compact_ops.h"

namespace ordo::internal {
namespace {

using ::ordo::testing::MakeCompactOps;

// A queue holding n compact nodes in push order, and one popper's token and memory.
struct Filled {
  explicit Filled(std::size_t n) : ops(MakeCompactOps(n)), token(q.MakeConsumerToken()) {
    for (auto& op : ops) q.Push(op.get());
  }
  Injector q;
  std::vector<std::unique_ptr<Operation>> ops;
  Injector::ConsumerToken token;
  Injector::PopLeaseMemory memory;
};

TEST(InjectorTest, ALoserOfThePopLeaseTakesNothingAndTheQueueStillShowsItsItems) {
  Filled f(5);
  auto& [q, ops, token, memory] = f;
  Operation* out[8];

  ASSERT_TRUE(q.TryAcquirePopLease());  // another worker is popping
  EXPECT_FALSE(q.TryAcquirePopLease());  // one holder at a time
  EXPECT_EQ(q.PopBulkIfFree(token, out, 8, memory), 0u);
  EXPECT_EQ(q.size_approx(), 5u);  // J2: seen, though not taken
  q.ReleasePopLease();

  ASSERT_EQ(q.PopBulkIfFree(token, out, 8, memory), 5u);
  for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(out[i], ops[i].get()) << i;  // FIFO
  EXPECT_EQ(q.size_approx(), 0u);
  // J1: the pop released the lease.
  EXPECT_TRUE(q.TryAcquirePopLease());
  q.ReleasePopLease();
}

TEST(InjectorTest, AHoldThatOutlastsThePatienceIsPoppedAround) {
  Filled f(4);
  auto& [q, ops, token, memory] = f;
  Operation* out[1];

  ASSERT_TRUE(q.TryAcquirePopLease());  // a holder that stops running
  for (unsigned look = 1; look < kPopLeasePatience; ++look) {
    EXPECT_EQ(q.PopBulkIfFree(token, out, 1, memory), 0u) << "look " << look;
  }
  // J4: the same hold on the kPopLeasePatience-th look in a row: popped around,
  // in order, and so again on every later look at that hold.
  ASSERT_EQ(q.PopBulkIfFree(token, out, 1, memory), 1u);
  EXPECT_EQ(out[0], ops[0].get());
  ASSERT_EQ(q.PopBulkIfFree(token, out, 1, memory), 1u);
  EXPECT_EQ(out[0], ops[1].get());
  q.ReleasePopLease();

  // A new hold starts the count again.
  ASSERT_TRUE(q.TryAcquirePopLease());
  for (unsigned look = 1; look < kPopLeasePatience; ++look) {
    EXPECT_EQ(q.PopBulkIfFree(token, out, 1, memory), 0u) << "look " << look;
  }
  ASSERT_EQ(q.PopBulkIfFree(token, out, 1, memory), 1u);
  EXPECT_EQ(out[0], ops[2].get());
  q.ReleasePopLease();

  // A free lease: taken, and the memory of lost holds forgotten.
  ASSERT_EQ(q.PopBulkIfFree(token, out, 1, memory), 1u);
  EXPECT_EQ(out[0], ops[3].get());
  EXPECT_EQ(memory.misses, 0u);
}

TEST(InjectorTest, RacingAcquirersHoldTheLeaseOneAtATime) {
  // J1's exclusion under threads: whoever acquires is alone until it releases.
  constexpr int kThreads = 4;
  constexpr int kHoldsEach = 20000;
  Injector q;
  std::atomic<int> inside{0};
  std::atomic<long> overlaps{0};
  std::atomic<long> holds{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int got = 0; got < kHoldsEach;) {
        if (!q.TryAcquirePopLease()) continue;  // J1: a loser is not made to wait
        if (inside.fetch_add(1, std::memory_order_relaxed) != 0) {
          overlaps.fetch_add(1, std::memory_order_relaxed);
        }
        for (int i = 0; i < 16; ++i) CpuRelax();  // a hold that lasts a little
        inside.fetch_sub(1, std::memory_order_relaxed);
        q.ReleasePopLease();
        holds.fetch_add(1, std::memory_order_relaxed);
        ++got;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(holds.load(), long{kThreads} * kHoldsEach);
  EXPECT_TRUE(q.TryAcquirePopLease());
  q.ReleasePopLease();
}

TEST(InjectorTest, RacingPoppersTakeEveryOperationOnceInEachProducersOrder) {
  constexpr int kProducers = 2;
  constexpr int kPoppers = 3;
  constexpr std::size_t kPerProducer = 20000;
  Injector q;
  std::vector<std::vector<std::unique_ptr<Operation>>> ops;
  for (int p = 0; p < kProducers; ++p) ops.push_back(MakeCompactOps(kPerProducer));
  // Which producer and index each node is (read-only while the threads run).
  std::unordered_map<const Operation*, std::pair<int, std::size_t>> origin;
  for (int p = 0; p < kProducers; ++p) {
    for (std::size_t i = 0; i < kPerProducer; ++i) origin[ops[p][i].get()] = {p, i};
  }

  std::vector<std::atomic<int>> taken(kProducers * kPerProducer);
  std::atomic<std::size_t> total{0};
  std::atomic<long> reorders{0};
  std::atomic<long> strangers{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      auto token = q.MakeProducerToken();
      for (auto& op : ops[p]) q.Push(*token, op.get());
    });
  }
  for (int c = 0; c < kPoppers; ++c) {
    threads.emplace_back([&] {
      auto token = q.MakeConsumerToken();
      Injector::PopLeaseMemory memory;
      // Per producer, the last index this popper took: each popper's takings
      // from one producer come in that producer's order (moodycamel's per-producer
      // FIFO, which the lease must not break).
      std::vector<long> last(kProducers, -1);
      Operation* out[7];
      // A guard, not a wait: should the queue never drain, fail instead of hang.
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (total.load(std::memory_order_relaxed) < kProducers * kPerProducer &&
             std::chrono::steady_clock::now() < give_up) {
        const std::size_t n = q.PopBulkIfFree(token, out, 7, memory);
        if (n == 0) continue;  // lost the race, or empty: J1, nothing to wait for
        for (std::size_t i = 0; i < n; ++i) {
          const auto it = origin.find(out[i]);
          if (it == origin.end()) {
            strangers.fetch_add(1, std::memory_order_relaxed);
            continue;
          }
          const auto [p, idx] = it->second;
          taken[p * kPerProducer + idx].fetch_add(1, std::memory_order_relaxed);
          if (static_cast<long>(idx) <= last[p]) reorders.fetch_add(1, std::memory_order_relaxed);
          last[p] = static_cast<long>(idx);
        }
        total.fetch_add(n, std::memory_order_relaxed);
      }
    });
  }
  for (auto& t : threads) t.join();

  EXPECT_EQ(total.load(), kProducers * kPerProducer);
  EXPECT_EQ(strangers.load(), 0);
  EXPECT_EQ(reorders.load(), 0);
  long missing = 0, repeated = 0;
  for (auto& t : taken) {
    missing += t.load() == 0;
    repeated += t.load() > 1;
  }
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(repeated, 0);
  EXPECT_EQ(q.size_approx(), 0u);
  EXPECT_TRUE(q.TryAcquirePopLease());  // J1: left free
  q.ReleasePopLease();
}

}  // namespace
}  // namespace ordo::internal
