// expect: whose destructor does not throw
#include "ordo/engine.h"

struct Loud {
  ~Loud() noexcept(false) {}
  void operator()() const {}
};

void Use(ordo::Engine& engine) { (void)engine.Submit(Loud{}, {}); }
