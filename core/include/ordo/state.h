// ordo/state.h: the lifecycle states of an operation, named as Dynamics 365 names
// them, and the mapping onto Dynamics' StateCode / StatusCode.
//
//   Waiting     ready, or waiting for its chain (StateCode Ready,  StatusCode 0 WaitingForResources)
//   Postponed   waiting for its postpone-until time (Suspended, 10 Waiting)
//   Suspended   held until resumed or canceled      (Suspended, 10 Waiting; Dynamics has no
//                                                    separate code for a held operation)
//   InProgress  its callable is running             (Locked,    20 InProgress)
//   Succeeded   terminal                            (Completed, 30 Succeeded)
//   Failed      terminal, message kept              (Completed, 31 Failed)
//   Canceled    terminal, body did not run or gave up (Completed, 32 Canceled)
#ifndef ORDO_STATE_H_
#define ORDO_STATE_H_

#include <cstdint>
#include <string_view>

namespace ordo {

enum class State : std::uint8_t {
  kWaiting = 0,
  kPostponed = 1,
  kSuspended = 2,
  kInProgress = 3,
  kSucceeded = 4,
  kFailed = 5,
  kCanceled = 6,
};

constexpr bool IsTerminal(State s) { return s >= State::kSucceeded; }

std::string_view StateName(State s);

// Dynamics 365 AsyncOperation codes.
enum class DynamicsStateCode : int { kReady = 0, kSuspended = 1, kLocked = 2, kCompleted = 3 };
struct DynamicsCodes {
  DynamicsStateCode state_code;
  int status_code;  // 0 WaitingForResources, 10 Waiting, 20 InProgress, 30 Succeeded,
                    // 31 Failed, 32 Canceled
};
DynamicsCodes ToDynamics(State s);

// The outcome of Engine::Cancel when it is not an error.
enum class CancelOutcome : std::uint8_t {
  kCanceled,         // it had not started: it is Canceled and its body never runs
  // It was running when the request reached it: Context::cancel_requested()
  // answers true, and it makes no further attempt (Engine::Cancel).
  kCancelRequested,
};

}  // namespace ordo

#endif  // ORDO_STATE_H_
