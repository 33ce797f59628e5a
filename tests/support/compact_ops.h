// compact_ops.h: stand-alone compact operation nodes for the tests of the run
// queues (work_deque_test, injector_test), which move nodes and never run them.
#ifndef ORDO_TESTS_SUPPORT_COMPACT_OPS_H_
#define ORDO_TESTS_SUPPORT_COMPACT_OPS_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <vector>

#include "operation.h"

namespace ordo::testing {

// n compact nodes with ids 1..n, owned by the returned vector.
inline std::vector<std::unique_ptr<internal::Operation>> MakeCompactOps(std::size_t n) {
  std::vector<std::unique_ptr<internal::Operation>> ops;
  for (std::size_t i = 0; i < n; ++i) {
    ops.push_back(std::make_unique<internal::Operation>());
    ops.back()->word.store(internal::kCompactBit, std::memory_order_relaxed);
    internal::SetCompactId(ops.back().get(), i + 1);
  }
  return ops;
}

}  // namespace ordo::testing

#endif  // ORDO_TESTS_SUPPORT_COMPACT_OPS_H_
