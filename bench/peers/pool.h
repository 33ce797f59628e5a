// bench/peers/pool.h: the hand-written pool users write. One std::mutex, one
// condition_variable, a std::deque<std::function<void()>> of ready work, and an
// std::unordered_map<std::string, std::deque<std::function<void()>>> of chains: a
// token has an entry while one of its operations is ready or running, holding the
// operations queued behind it; when that operation finishes, the worker moves the
// token's next operation to the ready deque (or erases the entry). N worker threads.
#ifndef ORDO_BENCH_PEERS_POOL_H_
#define ORDO_BENCH_PEERS_POOL_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "peers/common.h"

namespace ordo_compare {

class MutexPool {
 public:
  explicit MutexPool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { Work(); });
  }
  ~MutexPool() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  MutexPool(const MutexPool&) = delete;
  MutexPool& operator=(const MutexPool&) = delete;

  // Independent when `token` is empty; else after the token's previous operation.
  void Submit(const std::string& token, std::function<void()> f) {
    {
      std::lock_guard<std::mutex> l(m_);
      if (token.empty()) {
        ready_.push_back(std::move(f));
      } else {
        auto [it, idle] = chains_.try_emplace(token);
        if (!idle) {  // the token is busy: wait behind it
          it->second.push_back(std::move(f));
          return;
        }
        ready_.push_back(Chained(token, std::move(f)));
      }
    }
    cv_.notify_one();
  }

 private:
  std::function<void()> Chained(std::string token, std::function<void()> f) {
    return [this, token = std::move(token), f = std::move(f)] {
      f();
      Next(token);
    };
  }

  // The token's operation finished: release its next one, or retire the chain.
  void Next(const std::string& token) {
    {
      std::lock_guard<std::mutex> l(m_);
      auto it = chains_.find(token);
      if (it->second.empty()) {
        chains_.erase(it);
        return;
      }
      ready_.push_back(Chained(token, std::move(it->second.front())));
      it->second.pop_front();
    }
    cv_.notify_one();
  }

  void Work() {
    for (;;) {
      std::function<void()> f;
      {
        std::unique_lock<std::mutex> l(m_);
        cv_.wait(l, [&] { return stop_ || !ready_.empty(); });
        if (ready_.empty()) return;  // stop_ and nothing left
        f = std::move(ready_.front());
        ready_.pop_front();
      }
      f();
    }
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> ready_;
  std::unordered_map<std::string, std::deque<std::function<void()>>> chains_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

class PoolPeer {
 public:
  static constexpr const char* kName = "pool";
  static Support Supports(bool /*tokens*/) { return {}; }

  explicit PoolPeer(int workers) : pool_(workers) {}

  void Prepare(const Plan&) {}
  void Settle() {}

  std::string Run(const Plan& plan, Oracle& oracle) {
    static const std::string kNone;
    const long ops = plan.ops();
    for (long i = 0; i < ops; ++i) {
      const int t = plan.token[i];
      pool_.Submit(t < 0 ? kNone : plan.names[t],
                   [o = &oracle, id = static_cast<std::uint32_t>(i), t] { o->Ran(id, t); });
    }
    if (!oracle.WaitDone(std::chrono::seconds(60) + std::chrono::microseconds(20) * ops)) {
      return "timed out";
    }
    return {};
  }

 private:
  MutexPool pool_;
};

}  // namespace ordo_compare

#endif  // ORDO_BENCH_PEERS_POOL_H_
