// expect: std::move a move-only callable
#include <memory>

#include "ordo/engine.h"

void Use(ordo::Engine& engine) {
  auto job = [p = std::make_unique<int>(1)] { (void)*p; };
  (void)engine.Post(job);  // an lvalue is copied: a move-only one must be moved in
}
