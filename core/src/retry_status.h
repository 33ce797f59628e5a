// retry_status.h: the payload that makes an absl::Status a retry request
// (ordo::RetryStatus); read by the worker after a callable returns.
#ifndef ORDO_CORE_SRC_RETRY_STATUS_H_
#define ORDO_CORE_SRC_RETRY_STATUS_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"

namespace ordo::internal {

inline constexpr char kRetryPayloadUrl[] = "type.ordo.dev/retry-after-ns";

// The delay a RetryStatus carries, or nullopt for any other status.
std::optional<std::int64_t> RetryDelayOf(const absl::Status& status);

}  // namespace ordo::internal

#endif  // ORDO_CORE_SRC_RETRY_STATUS_H_
