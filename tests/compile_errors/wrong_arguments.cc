// expect: take a callable invocable as f\(ordo::Context&\) or f\(\)
#include <string>

#include "ordo/engine.h"

void Use(ordo::Engine& engine) {
  ordo::Batch batch(engine);
  (void)batch.Add([](const std::string& s) { (void)s; });
}
