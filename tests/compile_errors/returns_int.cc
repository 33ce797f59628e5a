// expect: take a callable that returns void or absl::Status
#include "ordo/engine.h"

void Use(ordo::Engine& engine) { (void)engine.Post([] { return 7; }); }
