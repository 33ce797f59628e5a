// bench/peers/pool.h: the hand-written pool users write. One std::mutex, one
// condition_variable, a std::deque of ready work (a std::function<void()> and its
// token's chain, if any), an std::unordered_map<std::string, chain> of chains
// (each a std::deque<std::function<void()>>), a priority queue of postponed work
// and a timer thread. A token has a chain entry while one of its operations is
// ready or running, holding the operations queued behind it; when that operation
// finishes, the worker moves the token's next operation to the ready deque with a
// pointer to the chain (no new wrapper, no second hash), or erases the entry. The
// timer thread sleeps on a second condition variable (same mutex) until the
// earliest due time on the steady clock, then moves every due operation to the
// ready deque. N worker threads.
// Postponed work is independent only (W4 and the memory probe need no more).
#ifndef ORDO_BENCH_PEERS_POOL_H_
#define ORDO_BENCH_PEERS_POOL_H_

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
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
  using TimeClock = std::chrono::steady_clock;

  explicit MutexPool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { Work(); });
    timer_thread_ = std::thread([this] { Time(); });
  }
  ~MutexPool() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
    }
    cv_.notify_all();
    timer_cv_.notify_all();
    timer_thread_.join();
    for (std::thread& t : threads_) t.join();
    // Timers still pending are dropped with timers_.
  }
  MutexPool(const MutexPool&) = delete;
  MutexPool& operator=(const MutexPool&) = delete;

  // Independent when `token` is empty; else after the token's previous operation.
  void Submit(const std::string& token, std::function<void()> f) {
    bool runnable;
    {
      std::lock_guard<std::mutex> l(m_);
      runnable = EnqueueLocked(token.empty() ? nullptr : &token, std::move(f));
    }
    if (runnable) cv_.notify_one();
  }

  // A group of operations (token, or nullptr: independent), all under one lock:
  // what a user of this pool does with a group in hand. Then wakes the workers.
  using Group = std::vector<std::pair<const std::string*, std::function<void()>>>;
  void SubmitMany(Group& fs) {
    std::size_t runnable = 0;
    {
      std::lock_guard<std::mutex> l(m_);
      for (auto& [token, f] : fs) runnable += EnqueueLocked(token, std::move(f));
    }
    if (runnable == 1) {
      cv_.notify_one();
    } else if (runnable > 1) {
      cv_.notify_all();
    }
    fs.clear();
  }

  // Independent, not before `due`.
  void SubmitAt(TimeClock::time_point due, std::function<void()> f) {
    bool earliest;
    {
      std::lock_guard<std::mutex> l(m_);
      earliest = AddTimerLocked(due, std::move(f));
    }
    if (earliest) timer_cv_.notify_one();  // the timer thread sleeps too long otherwise
  }

  // A group of postponed operations under one lock, and one wake of the timer
  // thread if one of them is now the earliest.
  template <typename F>
  void SubmitAtMany(std::vector<std::pair<TimeClock::time_point, F>>& group) {
    bool earliest = false;
    {
      std::lock_guard<std::mutex> l(m_);
      for (auto& [due, f] : group) earliest |= AddTimerLocked(due, std::move(f));
    }
    group.clear();
    if (earliest) timer_cv_.notify_one();
  }

 private:
  // Under m_: f joins the ready queue (independent, or its token idle) or waits
  // behind its token's chain; true when it is runnable now.
  bool EnqueueLocked(const std::string* token, std::function<void()> f) {
    if (token == nullptr) {
      ready_.push_back(Ready{nullptr, std::move(f)});
      return true;
    }
    auto [it, idle] = chains_.try_emplace(*token);
    if (!idle) {  // the token is busy: wait behind it
      it->second.waiting.push_back(std::move(f));
      return false;
    }
    it->second.key = &it->first;  // map nodes do not move: the pointers stay good
    ready_.push_back(Ready{&it->second, std::move(f)});
    return true;
  }
  // Under m_: a timer for f at `due`; true when it is now the earliest.
  bool AddTimerLocked(TimeClock::time_point due, std::function<void()> f) {
    const std::uint64_t seq = next_seq_++;
    timers_.push_back(Timer{due, seq, std::move(f)});
    std::push_heap(timers_.begin(), timers_.end(), Later);
    return timers_.front().seq == seq;
  }

  struct Timer {
    TimeClock::time_point due;
    std::uint64_t seq;  // ties in due time release in submission order
    std::function<void()> f;
  };
  // Heap order: the earliest due (then the lowest seq) at the front.
  static bool Later(const Timer& a, const Timer& b) {
    return a.due != b.due ? a.due > b.due : a.seq > b.seq;
  }

  struct Chain {
    std::deque<std::function<void()>> waiting;  // behind the one ready or running
    const std::string* key = nullptr;           // its key in chains_
  };
  struct Ready {
    Chain* chain;  // null: independent
    std::function<void()> f;
  };

  // The token's operation finished: release its next one, or retire the chain.
  void Next(Chain* chain) {
    {
      std::lock_guard<std::mutex> l(m_);
      if (chain->waiting.empty()) {
        chains_.erase(chains_.find(*chain->key));
        return;
      }
      ready_.push_back(Ready{chain, std::move(chain->waiting.front())});
      chain->waiting.pop_front();
    }
    cv_.notify_one();
  }

  void Work() {
    for (;;) {
      Ready r;
      {
        std::unique_lock<std::mutex> l(m_);
        cv_.wait(l, [&] { return stop_ || !ready_.empty(); });
        if (ready_.empty()) return;  // stop_ and nothing left
        r = std::move(ready_.front());
        ready_.pop_front();
      }
      r.f();
      if (r.chain != nullptr) Next(r.chain);
    }
  }

  void Time() {
    std::unique_lock<std::mutex> l(m_);
    while (!stop_) {
      if (timers_.empty()) {
        timer_cv_.wait(l);
        continue;
      }
      const TimeClock::time_point now = TimeClock::now();
      if (now < timers_.front().due) {
        const TimeClock::time_point due = timers_.front().due;
        timer_cv_.wait_until(l, due);
        continue;
      }
      int released = 0;
      while (!timers_.empty() && timers_.front().due <= now) {
        std::pop_heap(timers_.begin(), timers_.end(), Later);
        ready_.push_back(Ready{nullptr, std::move(timers_.back().f)});
        timers_.pop_back();
        ++released;
      }
      if (released == 1) {
        cv_.notify_one();
      } else {
        cv_.notify_all();
      }
    }
  }

  std::mutex m_;
  std::condition_variable cv_;        // workers: ready_ has work, or stop_
  std::condition_variable timer_cv_;  // timer thread: an earlier timer, or stop_
  std::deque<Ready> ready_;
  std::unordered_map<std::string, Chain> chains_;
  std::vector<Timer> timers_;  // a binary heap by Later (std::priority_queue cannot move out)
  std::uint64_t next_seq_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
  std::thread timer_thread_;
};

class PoolPeer : public FinishesByOracle {
 public:
  static constexpr const char* kName = "pool";
  using DueClock = MutexPool::TimeClock;
  static Support Supports(Feature /*f*/, bool /*tokens*/) { return {}; }

  explicit PoolPeer(int workers) : pool_(workers) {}

  void Prepare(const Plan& plan) { names_ = &plan.names; }
  void Settle() {}

  std::string Produce(const Plan& plan, int p, Oracle& oracle) {
    static const std::string kNone;
    const long end = plan.end(p);
    if (plan.batch > 0) {
      MutexPool::Group group;
      group.reserve(plan.batch);
      for (long i = plan.begin(p); i < end; ++i) {
        const int t = plan.token[i];
        group.emplace_back(t < 0 ? nullptr : &plan.names[t],
                           [o = &oracle, id = static_cast<std::uint32_t>(i), t] { o->Ran(id, t); });
        if (static_cast<int>(group.size()) == plan.batch) pool_.SubmitMany(group);
      }
      if (!group.empty()) pool_.SubmitMany(group);
      return {};
    }
    for (long i = plan.begin(p); i < end; ++i) {
      const int t = plan.token[i];
      pool_.Submit(t < 0 ? kNone : plan.names[t],
                   [o = &oracle, id = static_cast<std::uint32_t>(i), t] { o->Ran(id, t); });
    }
    return {};
  }

  std::string Fan(const Plan& plan, Oracle& oracle) {
    static const std::string kNone;
    const int fan = plan.fan;
    const int batch = plan.batch;
    for (long r = 0; r < plan.ops(); r += fan) {
      pool_.Submit(kNone, [this, o = &oracle, id = static_cast<std::uint32_t>(r), fan, batch] {
        o->Ran(id, -1);
        if (batch > 0) {
          MutexPool::Group group;
          group.reserve(batch);
          for (int k = 1; k < fan; ++k) {
            group.emplace_back(nullptr, [o, c = id + k] { o->Ran(c, -1); });
            if (static_cast<int>(group.size()) == batch) pool_.SubmitMany(group);
          }
          if (!group.empty()) pool_.SubmitMany(group);
          return;
        }
        for (int k = 1; k < fan; ++k) pool_.Submit(kNone, [o, c = id + k] { o->Ran(c, -1); });
      });
    }
    return {};
  }

  template <typename F>
  bool Post(F&& f) {
    static const std::string kNone;
    pool_.Submit(kNone, std::forward<F>(f));
    return true;
  }
  template <typename F>
  bool PostToken(int t, F&& f) {
    pool_.Submit((*names_)[t], std::forward<F>(f));
    return true;
  }
  template <typename F>
  bool PostAt(DueClock::time_point due, F&& f) {
    pool_.SubmitAt(due, std::forward<F>(f));
    return true;
  }
  template <typename F>
  bool PostAtBatch(std::vector<std::pair<DueClock::time_point, F>>& group) {
    pool_.SubmitAtMany(group);
    return true;
  }

 private:
  MutexPool pool_;
  const std::vector<std::string>* names_ = nullptr;
};

}  // namespace ordo_compare

#endif  // ORDO_BENCH_PEERS_POOL_H_
