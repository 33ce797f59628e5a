#!/usr/bin/env bash
# Builds tests/consumer against Ordo installed to a temporary prefix, and again
# with Ordo added as a subdirectory; runs both. Used by tools/test.sh.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build/consumer}
rm -rf "$build" && mkdir -p "$build"
cmake -S "$src" -B "$build/ordo" -G Ninja -DCMAKE_BUILD_TYPE=Release -DORDO_BUILD_TESTS=OFF \
  -DORDO_BUILD_BENCH=OFF -DORDO_BUILD_TOOLS=OFF -DCMAKE_INSTALL_PREFIX="$build/prefix" >/dev/null
cmake --build "$build/ordo"  # output kept: a compiler error must show
cmake --install "$build/ordo" >/dev/null
cmake -S "$src/tests/consumer" -B "$build/installed" -G Ninja \
  -DCMAKE_PREFIX_PATH="$build/prefix" >/dev/null
cmake --build "$build/installed"  # output kept: a compiler error must show
"$build/installed/consumer"
cmake -S "$src/tests/consumer" -B "$build/subdir" -G Ninja -DORDO_CONSUME_SUBDIR="$src" >/dev/null
cmake --build "$build/subdir"  # output kept: a compiler error must show
"$build/subdir/consumer"
echo "consumer: find_package and add_subdirectory both work"
