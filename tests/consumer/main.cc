// Uses the installed (or added) Ordo: one chained and one independent operation.
#include <ordo/engine.h>

#include <cstdio>

int main() {
  ordo::Engine engine({.workers = 2});
  int seen = 0;
  auto a = engine.Submit([&seen] { seen = seen * 10 + 1; }, {.token = "t"});
  auto b = engine.Submit([&seen] { seen = seen * 10 + 2; }, {.token = "t"});
  auto c = engine.Submit([] {});
  if (!a.ok() || !b.ok() || !c.ok()) return 1;
  if (!engine.WaitIdle().ok()) return 1;
  std::printf("consumer: chain ran in order: %s\n", seen == 12 ? "yes" : "no");
  return seen == 12 && c->state() == ordo::State::kSucceeded ? 0 : 1;
}
