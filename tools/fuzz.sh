#!/usr/bin/env bash
# tools/fuzz.sh [SECONDS] [--update]: fuzzes Ordo's fuzz targets (tests/fuzz), each for
# SECONDS (default 60), with clang's libFuzzer under AddressSanitizer + UBSan: the
# recurrence parser and the timing wheel in the fuzz preset (build/fuzz), and the
# wheel again in fuzz-small-world (4 slots, 3 levels: cascades, the ring and the
# overflow list within a few ticks). Each starts from its checked-in corpus,
# tests/fuzz/corpus/NAME.hex (one input per line, in hexadecimal), unpacked into
# build/PRESET/corpus/NAME. A failed check, a crash, a leak or a hang (10 s for one
# input) stops the run: the input is saved as build/PRESET/artifacts/NAME-crash-...
# (-leak-..., -timeout-...) and the script says how to replay it. With --update, the
# inputs found that add coverage are added to tests/fuzz/corpus/NAME.hex (none of
# those there is dropped), after every input of it has been run again in both
# geometries, so that they become regression tests (every preset's ctest replays
# them: fuzz_replay.NAME). Not part of tools/test.sh: a soak, run it on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60
update=0
for arg in "$@"; do
  case $arg in
    --update) update=1 ;;
    '' | *[!0-9]* | 0*) echo "usage: tools/fuzz.sh [SECONDS >= 1] [--update]" >&2; exit 2 ;;
    *) seconds=$arg ;;
  esac
done
source tools/deps.sh
ordo_ensure_deps
for preset in fuzz fuzz-small-world; do
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
done

unpack() {  # unpack PACKED DIR: one file per input line
  local n=0 line
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    [[ -z $line || $line == '#'* ]] && continue
    n=$((n + 1))
    printf '%b' "$(sed 's/../\\x&/g' <<<"$line")" >"$2/input$(printf '%05d' "$n")"
  done <"$1"
}
pack() {  # pack DIR PACKED: the inversion of unpack, inputs in name order
  local f
  {
    echo "# tests/fuzz corpus, one input per line in hexadecimal: written by tools/fuzz.sh --update"
    for f in "$1"/*; do
      [[ -s $f ]] || continue
      od -An -v -tx1 "$f" | tr -d ' \n'
      echo
    done
  } >"$2"
}

for run in fuzz:recurrence fuzz:timing_wheel fuzz-small-world:timing_wheel; do
  preset=${run%%:*} name=${run#*:}
  packed=tests/fuzz/corpus/$name.hex
  out=build/$preset
  corpus=$out/corpus/$name
  rm -rf "$corpus"
  mkdir -p "$corpus" "$out/artifacts"
  unpack "$packed" "$corpus"
  echo "=== $preset $name: $(ls "$corpus" | wc -l) inputs from $packed, fuzzing for ${seconds} s"
  if ! "$out/tests/${name}_fuzzer" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$out/artifacts/$name-" "$corpus" >"$out/$name.log" 2>&1; then
    grep -E "FUZZ_CHECK|ERROR|SUMMARY|Test unit written" "$out/$name.log" || tail -20 "$out/$name.log"
    echo "=== $preset $name: FAILED (log $out/$name.log); replay the saved input with"
    echo "    $out/tests/${name}_fuzzer FILE"
    exit 1
  fi
  grep -E "^stat::number_of_executed_units|^Done" "$out/$name.log" || true
done
if [[ $update == 1 ]]; then
  # Onto the checked-in inputs (kept, all of them): what each geometry's corpus adds
  # to the coverage, judged by that build; then every input of the result once more
  # in both builds (-runs=0), so that nothing fails that ctest would replay.
  for name in recurrence timing_wheel; do
    merged=build/fuzz/corpus/$name.min
    rm -rf "$merged"
    mkdir -p "$merged"
    unpack "tests/fuzz/corpus/$name.hex" "$merged"
    for preset in fuzz fuzz-small-world; do
      [[ -d build/$preset/corpus/$name ]] || continue
      if ! "build/$preset/tests/${name}_fuzzer" -merge=1 "$merged" "build/$preset/corpus/$name" \
          >"build/$preset/$name.merge.log" 2>&1; then
        echo "=== $preset $name: the merge failed (log build/$preset/$name.merge.log)"
        exit 1
      fi
    done
    for preset in fuzz fuzz-small-world; do
      [[ -x build/$preset/tests/${name}_fuzzer ]] || continue
      if ! "build/$preset/tests/${name}_fuzzer" -runs=0 "$merged" >"build/$preset/$name.check.log" 2>&1; then
        echo "=== $preset $name: an input of the merged corpus fails (log build/$preset/$name.check.log)"
        exit 1
      fi
    done
    pack "$merged" "tests/fuzz/corpus/$name.hex"
    echo "=== $name: $(grep -vc '^#' "tests/fuzz/corpus/$name.hex") inputs packed into tests/fuzz/corpus/$name.hex"
  done
fi
echo "=== fuzzing passed"
