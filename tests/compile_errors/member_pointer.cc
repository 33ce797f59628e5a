// expect: take a callable invocable as f\(ordo::Context&\) or f\(\)
// A member function pointer names no object to call it on.
#include "ordo/engine.h"

struct Job {
  void Run() {}
};

void Use(ordo::Engine& engine) { (void)engine.Post(&Job::Run); }
