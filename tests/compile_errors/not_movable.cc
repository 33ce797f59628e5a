// expect: std::move a move-only callable
#include "ordo/engine.h"

struct NotMovable {
  NotMovable() = default;
  NotMovable(NotMovable&&) = delete;
  void operator()() const {}
};

void Use(ordo::Engine& engine) { (void)engine.Post(NotMovable{}); }
