// expect: take a callable invocable as f\(ordo::Context&\) or f\(\)
#include "ordo/engine.h"

void Use(ordo::Engine& engine) { (void)engine.Submit(42); }
