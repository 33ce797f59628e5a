#!/usr/bin/env bash
# tools/bundle.sh [DIR]: packs Ordo's benchmark and test binaries, with every shared
# library they load and the dynamic loader itself, into DIR (default .bundle in the
# repository), so that they run on another x86-64 Linux machine that has none of
# Ordo's dependencies: a many-core machine lent for a few minutes, say. There:
#   DIR/run.sh scaling   side by side with the peers at 1..N workers (ordo_compare
#                        W1-scaling, W2-scaling), Ordo alone (ordo_driver; also with
#                        batches of 64 and with 1 us jobs), the peers on every core
#                        (W1-W3, W1-fan and their batch forms, W5), then the burst
#   DIR/run.sh burst     the postponed burst (W4, W4-batch) on every core and at 1..N
#                        workers (run.sh scaling ends with it)
#   DIR/run.sh tests     every release test; the stress tests widened to the machine
#                        (ORDO_STRESS_WORKERS/PRODUCERS) in each sanitizer build present
#   DIR/run.sh stress    only those widened stress tests
# Output goes to $OUT (default DIR/out): one log per step, and summary.txt. DIR.tgz is
# the same bundle compressed (about a third): carry that where the transfer is
# limited, and unpack it there with `tar xzf`.
#
# The binaries are the presets' builds (release always; tsan, asan-ubsan and
# small-world where this checkout has configured them), rebuilt first, and stripped of
# debug information: the addresses stay those of build/*/, so TSan logs from a
# machine with no llvm-symbolizer can be read here with tools/tsan_classify.py.
# The benchmarks and the release tests start through the carried loader, on the
# carried glibc, except the death tests, which re-execute themselves and so start
# directly, as do the sanitizer builds (their runtimes map memory at fixed places):
# those need a glibc at least as new as the build machine's. The fifth session's
# 16-core runs carried the same files by hand (bench/HISTORY.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/.bundle}
dir=$(realpath -m "$dir")  # absolute, no trailing slash, before any cd
case $dir in
  / | "$HOME" | "$root" | "$root"/build* | "$root"/core* | "$root"/tests* | "$root"/tools*)
    echo "bundle.sh: refusing to replace $dir" >&2; exit 2 ;;
esac
# Only a bundle this script made is replaced: an existing directory without its
# run.sh and bin/ is somebody else's.
if [[ -e $dir && ! ( -f $dir/run.sh && -d $dir/bin ) ]]; then
  echo "bundle.sh: $dir exists and is not a bundle; give a new directory" >&2
  exit 2
fi
cd "$root"
# Build output is kept: a compiler error must show.
cmake --preset release >/dev/null
cmake --build --preset release
builds=(release)
for b in tsan asan-ubsan small-world; do
  if [[ -f build/$b/CMakeCache.txt ]]; then
    cmake --build "build/$b"
    builds+=("$b")
  fi
done

rm -rf "$dir" "$dir.tgz"
mkdir -p "$dir/lib" "$dir/lib-own-glibc" "$dir/bin"
strip_to() { mkdir -p "$(dirname "$2")"; strip --strip-debug -o "$2" "$1"; }
strip_to build/release/tools/ordo_driver "$dir/bin/ordo_driver"
strip_to build/release/bench/ordo_compare "$dir/bin/ordo_compare"
for b in "${builds[@]}"; do
  for t in build/"$b"/tests/*_test; do
    if [[ -x $t ]]; then strip_to "$t" "$dir/tests/$b/$(basename "$t")"; fi
  done
done
cp tests/tsan.supp "$dir/"
# Every library any of them loads (ldd), the loader, and oneTBB's allocator, which
# libtbb opens at run time (ldd cannot see it).
{
  find "$dir/bin" "$dir/tests" -type f -print0 | xargs -0 -n1 ldd 2>/dev/null |
    awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}'
  ldconfig -p | awk '/libtbbmalloc(_proxy)?\.so\.[0-9]+ /{print $NF}'
} | sort -u | while read -r lib; do cp -L "$lib" "$dir/lib/"; done
# The same without glibc, for what starts on the machine's own.
for f in "$dir"/lib/*; do
  case $(basename "$f") in
    ld-linux* | libc.so* | libm.so* | libmvec.so* | libpthread.so* | libdl.so* | librt.so* | \
      libresolv.so* | libutil.so*) ;;
    *) cp "$f" "$dir/lib-own-glibc/" ;;
  esac
done

cat >"$dir/run.sh" <<'EOF'
#!/usr/bin/env bash
# run.sh scaling|burst|tests|stress: see tools/bundle.sh in the Ordo repository. Exits 1 if a step
# failed; TSan's reports are not counted there (no symbolizer may be at hand to apply
# tests/tsan.supp): they go to $OUT/tsan_*.tsan.*, for tools/tsan_classify.py.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}
if [[ $here == *:* ]]; then
  # LD_LIBRARY_PATH and the loader's --library-path split at colons: reach the
  # bundle through a link whose path has none.
  tmp=$(TMPDIR=/tmp mktemp -d) || exit 1
  trap 'rm -rf "$tmp"' EXIT
  ln -s "$here" "$tmp/bundle" || exit 1
  here=$tmp/bundle
fi
mkdir -p "$out"
: >"$out/summary.txt"
loader=$(ls "$here"/lib/ld-linux*.so* | head -1)
carried=("$loader" --library-path "$here/lib")  # run a binary on the carried glibc
own=(env LD_LIBRARY_PATH="$here/lib-own-glibc")   # run one on the machine's glibc
cores=$(nproc)
failed=0
step() {  # step NAME SECONDS COMMAND...: one logged, time-limited step
  local name=$1 limit=$2; shift 2
  echo "== $name: $*" | tee -a "$out/summary.txt"
  timeout "$limit" "$@" >"$out/$name.txt" 2>&1
  local rc=$?
  echo "rc=$rc" | tee -a "$out/summary.txt"
  [[ $rc -eq 0 ]] || failed=1
  { grep -E "PASSED|FAILED|Failure|ERROR|runtime error" "$out/$name.txt" || true; } |
    tee -a "$out/summary.txt"
}
widths="1"; for w in 2 4 8 16 32 64 128; do if [[ $w -le $cores ]]; then widths="$widths,$w"; fi; done
case ${1:-} in
  scaling)
    step compare_scaling 600 "${carried[@]}" "$here/bin/ordo_compare" \
      --workloads=W1-scaling,W2-scaling --scaling_workers="$widths" --scaling_producers=1,4 \
      --repeat=3 --ops=200000 --warmup=20000 --format=json
    step driver_p1 300 "${carried[@]}" "$here/bin/ordo_driver" --scaling="$widths" --producers=1 \
      --workloads=W1,W2,W3,W2z --ops=1000000 --repeat=3
    step driver_p4 300 "${carried[@]}" "$here/bin/ordo_driver" --scaling="$widths" --producers=4 \
      --workloads=W1,W2,W3,W2z --ops=2000000 --repeat=3
    step driver_p4_batch 300 "${carried[@]}" "$here/bin/ordo_driver" --scaling="$widths" --producers=4 \
      --workloads=W1,W2,W3 --ops=2000000 --repeat=3 --batch=64
    step driver_body1us 300 "${carried[@]}" "$here/bin/ordo_driver" --scaling="$widths" \
      --producers=4 --workloads=W1,W2 --body_ns=1000 --ops=400000
    step compare_all_cores 300 "${carried[@]}" "$here/bin/ordo_compare" --workers="$cores" \
      --workloads=W1,W1-batch,W2,W2-batch,W3,W1-fan,W1-fan-batch,W5 --repeat=3 --ops=300000
    ;&  # and the postponed burst:
  burst)
    step burst_all_cores 180 "${carried[@]}" "$here/bin/ordo_compare" --workers="$cores" \
      --workloads=W4,W4-batch --repeat=3
    step burst_driver 120 "${carried[@]}" "$here/bin/ordo_driver" --scaling="$widths" \
      --workloads=W4 --repeat=3
    step burst_driver_batch 120 "${carried[@]}" "$here/bin/ordo_driver" --scaling="$widths" \
      --workloads=W4 --repeat=3 --batch=64
    ;;
  tests | stress)
    for t in "$here"/tests/release/*_test; do
      [[ $1 == tests ]] || break
      [[ -x $t ]] || continue
      step "release_$(basename "$t")" 120 "${carried[@]}" "$t" --gtest_brief=1 \
        '--gtest_filter=-*DeathTest*'
      # grep -c reads the whole list (grep -q could exit first and, with pipefail,
      # SIGPIPE the binary: the death tests would be skipped without a word).
      if [[ $("${carried[@]}" "$t" --gtest_list_tests '--gtest_filter=*DeathTest*' |
              grep -c '^  ') -gt 0 ]]; then
        step "release_$(basename "$t")_death" 60 "${own[@]}" "$t" --gtest_brief=1 \
          '--gtest_filter=*DeathTest*'
      fi
    done
    # Half the cores as workers and a third as producers, never fewer than the tests' 2.
    sw=$((cores / 2)); sp=$((cores / 3))
    wide=(ORDO_STRESS_WORKERS=$((sw > 2 ? sw : 2)) ORDO_STRESS_PRODUCERS=$((sp > 2 ? sp : 2)))
    if [[ -x $here/tests/release/stress_test ]]; then
      step release_stress_wide 300 env "${wide[@]}" ORDO_STRESS_SCALE=3 "${carried[@]}" \
        "$here/tests/release/stress_test" --gtest_brief=1
    fi
    if [[ -x $here/tests/small-world/stress_test ]]; then
      step small_world_stress_wide 300 "${own[@]}" "${wide[@]}" \
        "$here/tests/small-world/stress_test" --gtest_brief=1
    fi
    if [[ -x $here/tests/asan-ubsan/stress_test ]]; then
      step asan_stress_wide 300 "${own[@]}" "${wide[@]}" ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$here/tests/asan-ubsan/stress_test" --gtest_brief=1
    fi
    for t in "$here"/tests/tsan/*_test; do
      [[ -x $t ]] || continue
      [[ $1 == tests || $(basename "$t") == stress_test ]] || continue
      name=tsan_$(basename "$t")
      width=()
      if [[ $(basename "$t") == stress_test ]]; then width=("${wide[@]}"); fi
      step "$name" 300 "${own[@]}" ${width[@]+"${width[@]}"} \
        TSAN_OPTIONS="halt_on_error=0:exitcode=0:suppressions='$here/tsan.supp':log_path='$out/$name.tsan'" \
        "$t" --gtest_brief=1
      echo "   TSan reports: $(cat "$out/$name".tsan.* 2>/dev/null | grep -c 'WARNING: ThreadSanitizer')" |
        tee -a "$out/summary.txt"
    done
    ;;
  *) echo "usage: $0 scaling|burst|tests|stress" >&2; exit 2 ;;
esac
exit $failed
EOF
chmod +x "$dir/run.sh"
tar czf "$dir.tgz" -C "$(dirname "$dir")" "$(basename "$dir")"
du -sh "$dir" "$dir.tgz"
