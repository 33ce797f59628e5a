// bench/peers/asio.h: standalone Asio. An io_context run by N threads (kept alive by
// a work guard); independent work is asio::post(io_context, body); per-token work is
// asio::post(strand, body) with one asio::strand per token, kept in an unordered_map
// keyed by the token string. With one producer the map is the producer's own and
// strands are created lazily, as a service would on first use (they stay in the map
// between runs, as a long-lived service would keep them); with several producers
// Prepare creates every strand first, untimed, so the producers only read the map.
// Postponed work: one asio::steady_timer per operation (make_shared), whose
// async_wait handler runs the body; due times are on the steady clock. Fan-out: a
// body calls asio::post. The destructor stops the io_context, so timers still
// pending (the memory probe's hour-ahead operations) are dropped, not waited for.
#ifndef ORDO_BENCH_PEERS_ASIO_H_
#define ORDO_BENCH_PEERS_ASIO_H_

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "asio.hpp"
#include "peers/common.h"

namespace ordo_compare {

class AsioPeer : public FinishesByOracle {
 public:
  static constexpr const char* kName = "asio";
  using DueClock = std::chrono::steady_clock;
  static Support Supports(Feature f, bool /*tokens*/) {
    if (f == Feature::kBatch) {
      return {false, "Asio has no batch post (handlers go one post() each: see W1, W1-fan)"};
    }
    return {};
  }

  explicit AsioPeer(int workers) : io_(workers), guard_(asio::make_work_guard(io_)) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { io_.run(); });
  }
  ~AsioPeer() {
    guard_.reset();
    io_.stop();  // every measured operation already ran; drop what is left (timers)
    for (std::thread& t : threads_) t.join();
  }
  AsioPeer(const AsioPeer&) = delete;
  AsioPeer& operator=(const AsioPeer&) = delete;

  void Prepare(const Plan& plan) {
    names_ = &plan.names;
    if (plan.producers > 1) {
      for (const std::string& n : plan.names) strands_.try_emplace(n, asio::make_strand(io_));
    }
  }
  void Settle() {}

  std::string Produce(const Plan& plan, int p, Oracle& oracle) {
    const long end = plan.end(p);
    for (long i = plan.begin(p); i < end; ++i) {
      const int t = plan.token[i];
      auto body = [o = &oracle, id = static_cast<std::uint32_t>(i), t] { o->Ran(id, t); };
      if (t < 0) {
        asio::post(io_, body);
      } else {
        asio::post(StrandOf(plan.names[t]), body);
      }
    }
    return {};
  }

  std::string Fan(const Plan& plan, Oracle& oracle) {
    const int fan = plan.fan;
    for (long r = 0; r < plan.ops(); r += fan) {
      asio::post(io_, [this, o = &oracle, id = static_cast<std::uint32_t>(r), fan] {
        o->Ran(id, -1);
        for (int k = 1; k < fan; ++k) asio::post(io_, [o, c = id + k] { o->Ran(c, -1); });
      });
    }
    return {};
  }

  template <typename F>
  bool Post(F&& f) {
    asio::post(io_, std::forward<F>(f));
    return true;
  }
  // One producer only, unless Prepare created the strands.
  template <typename F>
  bool PostToken(int t, F&& f) {
    asio::post(StrandOf((*names_)[t]), std::forward<F>(f));
    return true;
  }
  template <typename F>
  bool PostAt(DueClock::time_point due, F&& f) {
    auto timer = std::make_shared<asio::steady_timer>(io_, due);
    timer->async_wait([timer, f = std::forward<F>(f)](const asio::error_code& ec) mutable {
      if (!ec) f();
    });
    return true;
  }

 private:
  using Strand = asio::strand<asio::io_context::executor_type>;

  Strand& StrandOf(const std::string& name) {
    auto it = strands_.find(name);
    if (it == strands_.end()) it = strands_.emplace(name, asio::make_strand(io_)).first;
    return it->second;
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::unordered_map<std::string, Strand> strands_;
  const std::vector<std::string>* names_ = nullptr;
  std::vector<std::thread> threads_;
};

}  // namespace ordo_compare

#endif  // ORDO_BENCH_PEERS_ASIO_H_
