#!/usr/bin/env bash
# Builds and runs every test: the release build (unit, API, stress, benchmark smoke
# tests, the fuzz corpus replayed: fuzz_replay.*), a consumer project using Ordo installed and as a subdirectory, then the
# same suites under ThreadSanitizer and under AddressSanitizer + UBSan. ORDO_SANITIZERS=0 skips the sanitizer builds (a quick local run).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
ordo_ensure_deps

run_preset() {
  local preset=$1
  echo "=== ${preset}: configure, build, test"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  ctest --preset "$preset"
}

run_preset release
# Tiny capacities and chaos yields: wrap-around, overflow, steal and protocol
# races within a few operations (it found the walker/emptying deadlock).
run_preset small-world
echo "=== consumer: Ordo through find_package and add_subdirectory"
bash tests/consumer/check.sh
if [ "${ORDO_SANITIZERS:-1}" != "0" ]; then
  run_preset tsan
  run_preset asan-ubsan
fi
echo "=== all tests passed"
