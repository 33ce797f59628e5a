// bench/peers/asio.h: standalone Asio. An io_context run by N threads (kept alive by
// a work guard); independent work is asio::post(io_context, body); per-token work is
// asio::post(strand, body) with one asio::strand per token, created lazily in an
// unordered_map keyed by the token string that the single producer owns (so it
// needs no lock). Strands stay in the map between runs, as a long-lived service
// would keep them.
#ifndef ORDO_BENCH_PEERS_ASIO_H_
#define ORDO_BENCH_PEERS_ASIO_H_

#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "asio.hpp"
#include "peers/common.h"

namespace ordo_compare {

class AsioPeer {
 public:
  static constexpr const char* kName = "asio";
  static Support Supports(bool /*tokens*/) { return {}; }

  explicit AsioPeer(int workers) : io_(workers), guard_(asio::make_work_guard(io_)) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { io_.run(); });
  }
  ~AsioPeer() {
    guard_.reset();
    for (std::thread& t : threads_) t.join();
  }
  AsioPeer(const AsioPeer&) = delete;
  AsioPeer& operator=(const AsioPeer&) = delete;

  void Prepare(const Plan&) {}
  void Settle() {}

  std::string Run(const Plan& plan, Oracle& oracle) {
    const long ops = plan.ops();
    for (long i = 0; i < ops; ++i) {
      const int t = plan.token[i];
      auto body = [o = &oracle, id = static_cast<std::uint32_t>(i), t] { o->Ran(id, t); };
      if (t < 0) {
        asio::post(io_, body);
      } else {
        auto it = strands_.find(plan.names[t]);
        if (it == strands_.end()) {
          it = strands_.emplace(plan.names[t], asio::make_strand(io_)).first;
        }
        asio::post(it->second, body);
      }
    }
    if (!oracle.WaitDone(std::chrono::seconds(60) + std::chrono::microseconds(20) * ops)) {
      return "timed out";
    }
    return {};
  }

 private:
  using Strand = asio::strand<asio::io_context::executor_type>;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::unordered_map<std::string, Strand> strands_;
  std::vector<std::thread> threads_;
};

}  // namespace ordo_compare

#endif  // ORDO_BENCH_PEERS_ASIO_H_
