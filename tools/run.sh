#!/usr/bin/env bash
# The main job: installs what is missing, builds a release, runs the stress and
# throughput driver on its defaults (per-token order and exactly-once are verified;
# throughput is printed per workload), then a short side-by-side comparison with the
# peers (Asio, oneTBB, a mutex pool, the raw queue hand-off). Extra arguments go to
# the driver.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
ordo_ensure_deps
cmake --preset release >/dev/null
cmake --build --preset release --target ordo_driver ordo_compare
build/release/tools/ordo_driver "$@"
echo
build/release/bench/ordo_compare --ops=300000 --repeat=3
