// run_log_test.cc: the benchmarks' record of which operations ran
// (bench/peers/run_log.h). ordo_compare's exactly-once check rests on it, so it
// is tested as code, not trusted as a harness: records from many threads are
// all counted, and a duplicate, a missing id and an unknown one are each seen.
#include "peers/run_log.h"

#include <gtest/gtest.h>

#include "peers/common.h"

#include <cstdint>
#include <thread>
#include <vector>

namespace ordo_bench {
namespace {

TEST(RunLogTest, RecordsFromManyThreadsAreCountedExactlyOnce) {
  RunLog log;
  constexpr long kOps = 200'000;
  constexpr int kThreads = 8;
  log.Reset(kOps);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&log, t] {
      for (long id = t; id < kOps; id += kThreads) log.Record(static_cast<std::uint32_t>(id));
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(log.done(), kOps);
  const RunLog::Tally tally = log.Count();
  EXPECT_TRUE(tally.exact());
  EXPECT_EQ(tally.recorded, kOps);
}

TEST(RunLogTest, ADuplicateAMissingAndAnUnknownIdAreEachSeen) {
  RunLog log;
  log.Reset(10);
  for (std::uint32_t id : {0u, 1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u}) log.Record(id);  // 9 missing
  log.Record(3);   // twice
  log.Record(42);  // not an operation of this run
  const RunLog::Tally tally = log.Count();
  EXPECT_FALSE(tally.exact());
  EXPECT_EQ(tally.lost, 1);
  EXPECT_EQ(tally.duplicated, 1);
  EXPECT_EQ(tally.unknown, 1);
  EXPECT_EQ(tally.recorded, 11);
}

// A Reset starts a new run: what a thread recorded before it is gone, and the
// thread's cursor does not write into the new log's chunks as if they were its
// old one (it takes a fresh chunk).
TEST(RunLogTest, AResetForgetsThePreviousRunAndEveryThreadStartsAfresh) {
  RunLog log;
  log.Reset(4);
  for (std::uint32_t id : {0u, 1u, 2u, 3u}) log.Record(id);
  ASSERT_TRUE(log.Count().exact());
  log.Reset(4);
  EXPECT_EQ(log.done(), 0);
  log.Record(2);
  const RunLog::Tally tally = log.Count();
  EXPECT_EQ(tally.recorded, 1);
  EXPECT_EQ(tally.lost, 3);
}

// More threads than the spare chunks: the records past them go to the
// overflow, and are counted all the same.
TEST(RunLogTest, RecordsPastTheSpareChunksOverflowAndAreStillCounted) {
  RunLog log;
  constexpr int kThreads = 300;  // more than kSpareChunks (256), one record each
  log.Reset(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&log, t] { log.Record(static_cast<std::uint32_t>(t)); });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(log.done(), kThreads);
  const RunLog::Tally tally = log.Count();
  EXPECT_TRUE(tally.exact());
  EXPECT_EQ(tally.recorded, kThreads);
}

}  // namespace
}  // namespace ordo_bench

// The oracle every engine's bodies run through (bench/peers/common.h): a run in
// order passes; a token's operations run out of order, or one started while
// another of its token still runs (an engine that ran one token on two threads
// at once), and each is named in the failure.
namespace ordo_compare {
namespace {

TEST(OracleTest, ARunInOrderPasses) {
  Oracle oracle;
  oracle.Reset(4, 2);
  oracle.Ran(0, 0);
  oracle.Ran(1, 1);
  oracle.Ran(2, 0);
  oracle.Ran(3, -1);
  EXPECT_EQ(oracle.Check(), "");
}

TEST(OracleTest, ATokensOperationsOutOfOrderAreSeen) {
  Oracle oracle;
  oracle.Reset(3, 1);
  oracle.Ran(0, 0);
  oracle.Ran(2, 0);
  oracle.Ran(1, 0);  // after 2, on the same token
  const std::string failure = oracle.Check();
  EXPECT_NE(failure.find("reordered=1"), std::string::npos) << failure;
  EXPECT_NE(failure.find("overlapped=0"), std::string::npos) << failure;
}

TEST(OracleTest, TwoOperationsOfATokenRunningAtOnceAreSeen) {
  Oracle oracle;
  oracle.Reset(2, 1);
  oracle.Enter(0, 0);
  oracle.Enter(1, 0);  // while 0 still runs: in order, but overlapping
  oracle.Leave(1, 0);
  oracle.Leave(0, 0);
  const std::string failure = oracle.Check();
  EXPECT_NE(failure.find("overlapped=1"), std::string::npos) << failure;
  EXPECT_NE(failure.find("reordered=0"), std::string::npos) << failure;
}

}  // namespace
}  // namespace ordo_compare
