#!/usr/bin/env bash
# The main job: installs what is missing, builds a release, and runs the stress and
# throughput driver on its defaults (per-token order and exactly-once are verified;
# throughput is printed per workload). Extra arguments go to the driver.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
ordo_ensure_deps
cmake --preset release >/dev/null
cmake --build --preset release --target ordo_driver
exec build/release/tools/ordo_driver "$@"
