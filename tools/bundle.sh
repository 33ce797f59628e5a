#!/usr/bin/env bash
# tools/bundle.sh [DIR]: packs Ordo's benchmark and test binaries, with every shared
# library they load and the dynamic loader itself, into DIR (default .bundle), so that
# they run on another x86-64 Linux machine that has none of Ordo's dependencies: a
# many-core machine lent for a few minutes, say. There:
#   DIR/run.sh scaling   Ordo alone at 1..N workers (ordo_driver), then side by side
#                        with the peers (ordo_compare W1-scaling, W2-scaling)
#   DIR/run.sh tests     every release test; the stress tests widened to the machine
#                        (ORDO_STRESS_WORKERS/PRODUCERS) in each sanitizer build present
# Output goes to $OUT (default DIR/out): one log per step and summary.txt. DIR.tgz is
# the same bundle compressed (about 32 MB with all four builds, against 94).
#
# The binaries are the presets' builds (release always; tsan, asan-ubsan and small-world
# where this checkout has built them), stripped of debug information: the addresses
# stay those of build/*/, so TSan logs from a machine with no llvm-symbolizer can be
# read here with tools/tsan_classify.py. The release suite's binaries start through the
# carried loader, with the carried glibc; the sanitizer builds start directly, with
# the carried libraries but the machine's own glibc (their runtimes map memory at
# fixed places). Used for the fifth session's 16-core runs (bench/RESULTS.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/.bundle}
cd "$root"
cmake --preset release >/dev/null
cmake --build --preset release >/dev/null

rm -rf "$dir"
mkdir -p "$dir/lib" "$dir/bin"
strip_to() { mkdir -p "$(dirname "$2")"; strip --strip-debug -o "$2" "$1"; }
strip_to build/release/tools/ordo_driver "$dir/bin/ordo_driver"
strip_to build/release/bench/ordo_compare "$dir/bin/ordo_compare"
for build in release tsan asan-ubsan small-world; do
  [[ -d build/$build/tests ]] || continue
  for t in build/"$build"/tests/*_test; do
    [[ -x $t ]] && strip_to "$t" "$dir/tests/$build/$(basename "$t")"
  done
done
cp tests/tsan.supp "$dir/"
# Every library any of them loads (ldd), and the loader.
find "$dir/bin" "$dir/tests" -type f -print0 | xargs -0 -n1 ldd 2>/dev/null |
  awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}' | sort -u |
  while read -r lib; do cp -L "$lib" "$dir/lib/"; done

cat >"$dir/run.sh" <<'EOF'
#!/usr/bin/env bash
# run.sh scaling|tests: see tools/bundle.sh in the Ordo repository.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
loader=$(ls "$here"/lib/ld-linux*.so* | head -1)
carried=("$loader" --library-path "$here/lib")  # run a binary on the carried glibc
# The carried libraries without glibc, for binaries started with the machine's own.
mkdir -p /tmp/ordo-bundle-lib
for f in "$here"/lib/*; do
  case $(basename "$f") in libc.so*|libm.so*|ld-linux*) ;; *) cp "$f" /tmp/ordo-bundle-lib/ ;; esac
done
cores=$(nproc)
step() {  # step NAME SECONDS COMMAND...: one logged, time-limited step
  local name=$1 limit=$2; shift 2
  echo "== $name: $*" | tee -a "$out/summary.txt"
  timeout "$limit" "$@" >"$out/$name.txt" 2>&1
  local rc=$?
  echo "rc=$rc" | tee -a "$out/summary.txt"
  [[ $rc -eq 0 ]] || failed=1
  { grep -E "PASSED|FAILED|Failure|ERROR|runtime error|WARNING: ThreadSanitizer" \
      "$out/$name.txt" || true; } | sort | uniq -c | head -5 | tee -a "$out/summary.txt"
}
failed=0
widths="1"; for w in 2 4 8 16 32 64; do [[ $w -le $cores ]] && widths="$widths,$w"; done
case ${1:-} in
  scaling)
    step driver_p1 120 "${carried[@]}" "$here/bin/ordo_driver" --scaling="$widths" --producers=1 \
      --workloads=W1,W2,W3,W2z --ops=1000000 --repeat=3
    step driver_p4 120 "${carried[@]}" "$here/bin/ordo_driver" --scaling="$widths" --producers=4 \
      --workloads=W1,W2,W3,W2z --ops=2000000 --repeat=3
    step compare_scaling 400 "${carried[@]}" "$here/bin/ordo_compare" \
      --workloads=W1-scaling,W2-scaling --scaling_workers="$widths" --scaling_producers=1,4 \
      --repeat=3 --ops=200000 --warmup=20000 --format=json
    ;;
  tests)
    for t in "$here"/tests/release/*_test; do
      step "release_$(basename "$t")" 120 env LD_LIBRARY_PATH=/tmp/ordo-bundle-lib "$t" --gtest_brief=1
    done
    # Half the cores as workers and a third as producers, never fewer than the tests' 2.
    sw=$((cores / 2)); sp=$((cores / 3 + 1))
    wide=(ORDO_STRESS_WORKERS=$((sw > 2 ? sw : 2)) ORDO_STRESS_PRODUCERS=$((sp > 2 ? sp : 2)))
    [[ -x $here/tests/release/stress_test ]] &&
      step release_stress_wide 300 env "${wide[@]}" ORDO_STRESS_SCALE=3 \
        LD_LIBRARY_PATH=/tmp/ordo-bundle-lib "$here/tests/release/stress_test" --gtest_brief=1
    [[ -x $here/tests/small-world/stress_test ]] &&
      step small_world_stress_wide 300 env "${wide[@]}" \
        LD_LIBRARY_PATH=/tmp/ordo-bundle-lib "$here/tests/small-world/stress_test" --gtest_brief=1
    [[ -x $here/tests/asan-ubsan/stress_test ]] &&
      step asan_stress_wide 300 env "${wide[@]}" ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        LD_LIBRARY_PATH=/tmp/ordo-bundle-lib "$here/tests/asan-ubsan/stress_test" --gtest_brief=1
    # TSan: no halting, every report to a log (tests/tsan.supp needs symbols, which a
    # machine without llvm-symbolizer cannot give; read the logs with tsan_classify.py).
    for t in "$here"/tests/tsan/*_test; do
      name=tsan_$(basename "$t")
      extra=()
      [[ $(basename "$t") == stress_test ]] && extra=("${wide[@]}")
      step "$name" 300 env "${extra[@]}" \
        TSAN_OPTIONS="halt_on_error=0:suppressions=$here/tsan.supp:log_path=$out/$name.tsan" \
        LD_LIBRARY_PATH=/tmp/ordo-bundle-lib "$t" --gtest_brief=1
    done
    ;;
  *) echo "usage: $0 scaling|tests" >&2; exit 2 ;;
esac
exit $failed  # 1 if any step failed (TSan's exit status 66 counts: read its logs)
EOF
chmod +x "$dir/run.sh"
# The same, compressed (about a third): for a machine reached through a size-limited
# transfer, carry DIR.tgz and unpack it there with `tar xzf`.
tar czf "$dir.tgz" -C "$(dirname "$dir")" "$(basename "$dir")"
du -sh "$dir" "$dir.tgz"
