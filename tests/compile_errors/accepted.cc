// expect: 
// The control case: every shape Submit, Post and Batch take compiles, so a failure
// of the cases beside it is the static_assert's, not a broken include path or flag.
#include "absl/status/status.h"
#include "ordo/engine.h"

namespace {
void Plain() {}
absl::Status WithContext(ordo::Context&) { return absl::OkStatus(); }
}  // namespace

void Use(ordo::Engine& engine) {
  (void)engine.Post(Plain);
  (void)engine.Post(&WithContext);
  (void)engine.Submit([](ordo::Context&) {}, {});
  (void)engine.Post([] { return absl::OkStatus(); }, {});
  ordo::Batch batch(engine);
  (void)batch.Add([] {});
}
