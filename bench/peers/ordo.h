// bench/peers/ordo.h: Ordo itself, through its public API only.
// Independent work: Submit(body). Per-token work: Submit(body, {.token = name}).
// The body captures 16 bytes (oracle pointer, id, token index), so it is stored
// inside the operation's node. Completion: Engine::WaitIdle.
#ifndef ORDO_BENCH_PEERS_ORDO_H_
#define ORDO_BENCH_PEERS_ORDO_H_

#include <string>
#include <vector>

#include "ordo/engine.h"
#include "peers/common.h"

namespace ordo_compare {

class OrdoPeer {
 public:
  static constexpr const char* kName = "ordo";
  static Support Supports(bool /*tokens*/) { return {}; }

  explicit OrdoPeer(int workers) : engine_({.workers = workers}) {}

  // Untimed: the tokens are built once, as a user keeps its keys.
  void Prepare(const Plan& plan) {
    tokens_.clear();
    tokens_.reserve(plan.names.size());
    for (const std::string& n : plan.names) tokens_.emplace_back(n);
  }
  void Settle() {}

  std::string Run(const Plan& plan, Oracle& oracle) {
    long refused = 0;
    const long ops = plan.ops();
    for (long i = 0; i < ops; ++i) {
      const int t = plan.token[i];
      auto body = [o = &oracle, id = static_cast<std::uint32_t>(i), t] { o->Ran(id, t); };
      absl::StatusOr<ordo::Handle> h = t < 0 ? engine_.Submit(body)
                                             : engine_.Submit(body, {.token = tokens_[t]});
      if (!h.ok()) ++refused;
    }
    if (absl::Status s = engine_.WaitIdle(); !s.ok()) return "WaitIdle: " + s.ToString();
    if (refused != 0) return "refused=" + std::to_string(refused);
    return {};
  }

 private:
  ordo::Engine engine_;
  std::vector<ordo::Token> tokens_;
};

}  // namespace ordo_compare

#endif  // ORDO_BENCH_PEERS_ORDO_H_
