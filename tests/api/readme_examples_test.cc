// readme_examples_test.cc: the README's code examples, compiled with -Wall -Wextra
// -Werror (g++ warns on designated initializers that leave members out unless
// every member has a default initializer) and run.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "ordo/engine.h"

namespace {

using namespace std::chrono_literals;

TEST(ReadmeExamplesTest, UsingIt) {
  ordo::Engine engine(ordo::Options{.workers = 4});
  absl::StatusOr<ordo::Handle> h = engine.Submit(
      [](ordo::Context& ctx) { (void)ctx.cancel_requested(); },
      {.token = "account-42", .postpone_until = ordo::Clock::now() + 1h});
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->state(), ordo::State::kPostponed);
  auto outcome = engine.Cancel(*h);
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome, ordo::CancelOutcome::kCanceled);
  int posted = 0;
  absl::Status s = engine.Post([&posted] { ++posted; }, {.token = "account-42"});
  EXPECT_TRUE(s.ok());
  EXPECT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(posted, 1);  // WaitIdle: everything runnable has run
  EXPECT_TRUE(engine.Shutdown(ordo::ShutdownMode::kDrainReady).ok());
  EXPECT_FALSE(engine.stats().ToPrometheus().empty());
  std::chrono::nanoseconds p99 = engine.stats().queue_wait.Quantile(0.99);  // sampled
  (void)p99;  // the README's line, compiled as it is written
}

// The README's backpressure loop: a refused Post leaves the task with the
// caller, so it runs once, with its captures, when there is room.
TEST(ReadmeExamplesTest, TryingAgainAfterResourceExhausted) {
  ordo::Engine engine(ordo::Options{.workers = 1, .max_pending = 1});
  std::promise<void> release;
  ASSERT_TRUE(engine.Post([f = release.get_future()] { f.wait(); }).ok());  // fills it
  std::atomic<int> seen{0};
  auto task = [p = std::make_unique<int>(7), &seen] { seen = *p; };
  EXPECT_EQ(engine.Post(std::move(task)).code(), absl::StatusCode::kResourceExhausted);
  release.set_value();
  while (engine.Post(std::move(task)).code() == absl::StatusCode::kResourceExhausted)
    (void)engine.WaitIdle();
  EXPECT_TRUE(engine.WaitIdle().ok());
  EXPECT_EQ(seen.load(), 7);
}

struct Order {
  std::string account;
  int amount = 0;
};

TEST(ReadmeExamplesTest, Batches) {
  ordo::Engine engine(ordo::Options{.workers = 4});
  std::vector<Order> orders;
  for (int i = 0; i < 64; ++i) orders.push_back({"account-" + std::to_string(i % 4), i});
  std::vector<std::vector<int>> settled(4);  // per account: written in its chain
  auto Settle = [&settled](const Order& o) {
    settled[o.account.back() - '0'].push_back(o.amount);
  };
  ordo::Batch batch(engine);  // keep one per producer thread: it reuses its storage
  for (Order& o : orders) {  // Add refuses an empty callable, a bad token, or a full batch
    batch.Add([&o, &Settle] { Settle(o); }, ordo::Token(o.account)).IgnoreError();
  }
  absl::Status posted = engine.PostBatch(batch);  // all of them, or none (batch kept)
  ASSERT_TRUE(posted.ok());
  EXPECT_TRUE(batch.empty());
  ASSERT_TRUE(engine.WaitIdle().ok());
  for (int a = 0; a < 4; ++a) {
    ASSERT_EQ(settled[a].size(), 16u);
    for (int k = 0; k < 16; ++k) EXPECT_EQ(settled[a][k], a + 4 * k);  // in Add order
  }
}

TEST(ReadmeExamplesTest, TimeAndControl) {
  int order = 0, a_at = 0, b_at = 0, c_at = 0;
  auto step_a = [&] { a_at = ++order; };
  auto step_b = [&] { b_at = ++order; };
  auto step_c = [&] { c_at = ++order; };
  ordo::ManualClock clock;
  ordo::Engine engine({.workers = 2, .clock = &clock});
  auto a = engine.Submit(step_a, {.token = "t"});
  auto b = engine.Submit(step_b, {.token = "t", .postpone_until = clock.now() + 10ms});
  auto c = engine.Submit(step_c, {.token = "t"});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  // Before b runs: its time changed, and not yet come at the first time set.
  ASSERT_TRUE(engine.Postpone(*b, clock.now() + 20ms).ok());
  clock.Advance(10ms);
  EXPECT_EQ(b->state(), ordo::State::kPostponed);
  clock.Advance(10ms);
  EXPECT_EQ(c->Wait(), ordo::State::kSucceeded);
  EXPECT_EQ(a_at, 1);
  EXPECT_EQ(b_at, 2);
  EXPECT_EQ(c_at, 3);

  auto h = engine.Submit([] {}, {.token = "u", .suspended = true});
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(engine.Resume(*h).ok());
  EXPECT_EQ(h->Wait(), ordo::State::kSucceeded);

  bool ready = false;
  auto r = engine.Submit(
      [&ready](ordo::Context& ctx) {
        if (!ready) ctx.RetryAfter(100ms, "backend not ready");
        ready = true;
      },
      {.token = "t", .max_retries = 5,
       .backoff = {.kind = ordo::Backoff::Kind::kExponential, .max_delay = 10s}});
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(engine.WaitIdle().ok());
  clock.Advance(100ms);
  EXPECT_EQ(r->Wait(), ordo::State::kSucceeded);
  EXPECT_EQ(r->retry_count(), 1);

  EXPECT_TRUE(engine.SetFailurePolicy("orders", ordo::FailurePolicy::kHalt).ok());
  auto f = engine.Submit([] {}, {.token = "orders",
                                 .failure_policy = ordo::FailurePolicy::kCancelRest});
  ASSERT_TRUE(f.ok());

  auto first = engine.Submit([] {}, {.token = "daily-report",
                                     .postpone_until = clock.now() + 1h,
                                     .recurrence = "FREQ=DAILY;INTERVAL=3;"});
  ASSERT_TRUE(first.ok());
  clock.Advance(1h);
  ASSERT_EQ(first->Wait(), ordo::State::kSucceeded);
  ordo::Handle next = first->next_occurrence();
  ASSERT_TRUE(next.valid());
  EXPECT_TRUE(engine.Cancel(next).ok());
}

}  // namespace
