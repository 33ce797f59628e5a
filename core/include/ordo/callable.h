// ordo/callable.h: how Engine::Submit stores a callable. Part of the public
// headers only because Submit is a template; embedders need not use it.
//
// A callable of at most kInlineCallableBytes (and no stricter alignment than
// kInlineCallableAlign) that is nothrow-movable lives inside the operation's node:
// no allocation. A larger one is moved to the heap, one allocation per operation.
#ifndef ORDO_CALLABLE_H_
#define ORDO_CALLABLE_H_

#include <concepts>
#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "ordo/context.h"

namespace ordo {

// 32: with the state word, links and ops it fills the node's first cache line,
// the only line a worker and a submitter pass between them (operation.h).
inline constexpr std::size_t kInlineCallableBytes = 32;
inline constexpr std::size_t kInlineCallableAlign = alignof(std::max_align_t);

namespace detail {

// Invocation and destruction of a stored callable. invoke returns the callable's
// status (OK for a void callable); exceptions propagate to the engine, which
// turns them into Failed.
struct CallableOps {
  absl::Status (*invoke)(void* storage, Context& ctx);
  void (*destroy)(void* storage);
  // Moves the callable from one storage to another (a recurrence's next
  // occurrence), leaving `from` destroyed.
  void (*relocate)(void* from, void* to);
};

template <typename Fn>
concept TakesContext = std::invocable<Fn&, Context&>;
template <typename Fn>
concept TakesNothing = std::invocable<Fn&>;

// What Fn's call returns (void for a Fn that is not a callable Submit takes).
template <typename Fn>
auto CallResult() {
  if constexpr (TakesContext<Fn>) {
    return std::type_identity<std::invoke_result_t<Fn&, Context&>>{};
  } else if constexpr (TakesNothing<Fn>) {
    return std::type_identity<std::invoke_result_t<Fn&>>{};
  } else {
    return std::type_identity<void>{};
  }
}
template <typename Fn>
using CallResultT = typename decltype(CallResult<Fn>())::type;
template <typename Fn>
inline constexpr bool kReturnsVoidOrStatus =
    std::is_void_v<CallResultT<Fn>> || std::is_convertible_v<CallResultT<Fn>, absl::Status>;

template <typename Fn>
absl::Status InvokeFn(Fn& fn, Context& ctx) {
  if constexpr (TakesContext<Fn>) {
    using R = std::invoke_result_t<Fn&, Context&>;
    if constexpr (std::is_void_v<R>) {
      fn(ctx);
      return absl::OkStatus();
    } else if constexpr (std::is_convertible_v<R, absl::Status>) {
      return absl::Status(fn(ctx));
    } else {
      return absl::OkStatus();  // not reached: refused by Submit's static_assert
    }
  } else if constexpr (TakesNothing<Fn>) {
    using R = std::invoke_result_t<Fn&>;
    if constexpr (std::is_void_v<R>) {
      fn();
      return absl::OkStatus();
    } else if constexpr (std::is_convertible_v<R, absl::Status>) {
      return absl::Status(fn());
    } else {
      return absl::OkStatus();  // not reached: refused by Submit's static_assert
    }
  } else {
    // Not reached: Submit's static_assert has refused Fn (a member pointer, say)
    // with a message that says why, and this branch adds no error after it.
    return absl::OkStatus();
  }
}

template <typename Fn>
inline constexpr bool kFitsInline = sizeof(Fn) <= kInlineCallableBytes &&
                                    alignof(Fn) <= kInlineCallableAlign &&
                                    std::is_nothrow_move_constructible_v<Fn>;

template <typename Fn>
struct InlineOps {
  static absl::Status Invoke(void* s, Context& ctx) {
    return InvokeFn(*std::launder(static_cast<Fn*>(s)), ctx);
  }
  static void Destroy(void* s) { std::launder(static_cast<Fn*>(s))->~Fn(); }
  static void Relocate(void* from, void* to) {
    Fn* f = std::launder(static_cast<Fn*>(from));
    ::new (to) Fn(std::move(*f));
    f->~Fn();
  }
  static constexpr CallableOps kOps{&Invoke, &Destroy, &Relocate};
};

// The storage holds a Fn* made by placement new: laundered to read it, as
// InlineOps' Fn (the storage is an unsigned char array).
template <typename Fn>
struct HeapOps {
  static Fn*& Ptr(void* s) { return *std::launder(static_cast<Fn**>(s)); }
  static absl::Status Invoke(void* s, Context& ctx) { return InvokeFn(*Ptr(s), ctx); }
  static void Destroy(void* s) { delete Ptr(s); }
  static void Relocate(void* from, void* to) { ::new (to) Fn*(Ptr(from)); }
  static constexpr CallableOps kOps{&Invoke, &Destroy, &Relocate};
};

// Nullable callables (function pointers, std::function, absl::AnyInvocable, ...)
// are checked for emptiness at submit; lambdas cannot be empty.
template <typename Fn>
bool IsEmptyCallable(const Fn& fn) {
  if constexpr (std::is_pointer_v<Fn>) {
    return fn == nullptr;
  } else if constexpr (requires { fn.operator bool(); }) {
    return !static_cast<bool>(fn);
  } else {
    return false;
  }
}

// Places `f` into `storage` (kInlineCallableBytes, suitably aligned) and returns
// the ops that run and destroy it.
template <typename F>
const CallableOps* Emplace(void* storage, F&& f) {
  using Fn = std::decay_t<F>;
  static_assert(std::is_constructible_v<Fn, F&&>,
                "Submit, Post and Batch::Add copy an lvalue callable and move an rvalue "
                "one: std::move a move-only callable into them (one that can be neither "
                "copied nor moved cannot be submitted)");
  if constexpr (!std::is_constructible_v<Fn, F&&>) {
    return nullptr;  // not reached: the static_assert above says why
  } else if constexpr (kFitsInline<Fn>) {
    ::new (storage) Fn(std::forward<F>(f));
    return &InlineOps<Fn>::kOps;
  } else {
    ::new (storage) Fn*(new Fn(std::forward<F>(f)));
    return &HeapOps<Fn>::kOps;
  }
}

// A callable not yet in its node: Submit's and Post's argument, which the
// engine moves (or copies, for an lvalue) into the node only once the
// submission is admitted, so a refused one is left with the caller as it was.
// `f` is the argument's address; Place forwards it as F (its value category).
struct PendingCallable {
  void* f;
  const CallableOps* (*place)(void* storage, void* f);

  const CallableOps* Place(void* storage) const { return place(storage, f); }

  template <typename F>
  static PendingCallable Of(F& f) {
    return {const_cast<void*>(static_cast<const void*>(std::addressof(f))),
            [](void* storage, void* p) {
              return Emplace(storage, std::forward<F>(*static_cast<std::remove_reference_t<F>*>(p)));
            }};
  }
};

}  // namespace detail
}  // namespace ordo

#endif  // ORDO_CALLABLE_H_
