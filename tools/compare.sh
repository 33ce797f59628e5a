#!/usr/bin/env bash
# tools/compare.sh: the whole comparison of Ordo with its peers, in one command.
#
#   tools/compare.sh [ordo_compare flags...]     # e.g. --ops=200000 --repeat=3
#
# Installs what it needs (tools/deps.sh, with python3 and gnuplot for the tables and
# charts), brings the release build up to date, runs `ordo_compare --workloads=all
# --format=json` (default --ops=500000 --repeat=5; flags given here are passed on
# and win), and writes to bench/results/:
#   compare.json   the raw figures, one object per workload and peer
#   compare.md     the tables of bench/RESULTS.md (absolute figures and ratios)
#   *.svg          the charts (tools/plot.sh)
# and prints compare.md. Takes about 5 minutes on the 2-core development VM. If a
# check failed (a FAILED row), the tables are still written, and the exit status
# is ordo_compare's (1).
#
#   tools/compare.sh --tables-only               # compare.md and charts again,
#                                                # from the compare.json there is
set -euo pipefail
rc=0  # ordo_compare's exit status: 1 when a run's check failed

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=bench/results
mkdir -p "$out"
if [[ "${1:-}" == "--tables-only" ]]; then
  [[ -f "$out/compare.json" ]] || { echo "no $out/compare.json to make tables from" >&2; exit 1; }
else
  # shellcheck source=tools/deps.sh
  source tools/deps.sh
  ordo_ensure_deps python3 gnuplot-nox
  cmake --preset release >/dev/null
  cmake --build --preset release --target ordo_compare  # a no-op when up to date
  build/release/bench/ordo_compare --workloads=all --ops=500000 --repeat=5 --format=json "$@" \
    >"$out/compare.json.tmp" || rc=$?
  mv "$out/compare.json.tmp" "$out/compare.json"
fi

python3 - "$out/compare.json" >"$out/compare.md" <<'PY'
import json, sys

rows = [r for r in json.load(open(sys.argv[1])) if isinstance(r, dict)]
peers = []
for r in rows:
    if r.get("peer") not in (None, "*") and r["peer"] not in peers:
        peers.append(r["peer"])

def by(workload):
    return [r for r in rows if r.get("workload") == workload]

def cell(r, key, fmt="{:,.0f}", ratio_key="peer_over_ordo"):
    if r is None:
        return "–"
    if "skipped" in r:
        return "n/a"
    if not r.get("ok", True):
        return "FAILED"
    v = r.get(key)
    if v is None:
        return "–"
    s = fmt.format(v)
    lo, hi = r.get("min_" + key), r.get("max_" + key)
    if lo is not None and hi is not None:
        s += f" [{fmt.format(lo)}–{fmt.format(hi)}]"
    if r["peer"] != "ordo" and ratio_key and r.get(ratio_key):
        s += f" ({r[ratio_key]:.2f}×)"
    return s

def table(header, lines):
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for line in lines:
        print("| " + " | ".join(line) + " |")
    print()

first = next((r for r in rows if "ops" in r), {})
print(f"Operations per throughput run: {first.get('ops', '?')}; workers: "
      f"{first.get('workers', '?')}; repetitions: {first.get('repeat', '?')} "
      "(medians; in brackets the lowest and highest repetition). In parentheses: "
      "peer / Ordo (> 1: Ordo is better).\n")

print(f"**Throughput** (ns per operation, median; 1 producer, "
      f"{first.get('workers', '?')} workers)\n")
lines = []
for w in ["W1", "W1-fan", "W1-batch", "W1-fan-batch", "W2", "W2-batch", "W2z", "W3", "W1-1us",
          "W2-1us"]:
    rs = {r["peer"]: r for r in by(w)}
    if rs:
        lines.append([w] + [cell(rs.get(p), "ns_per_op") for p in peers])
table(["workload"] + peers, lines)

for w in ["W1-scaling", "W2-scaling"]:
    rs = by(w)
    if not rs:
        continue
    print(f"**{w}** (ns per operation, all producers together)\n")
    groups, skipped = {}, {}
    for r in rs:
        if "skipped" in r:
            skipped[r["peer"]] = r
            continue
        key = (r.get("producers", 1), r.get("workers", 0))
        groups.setdefault(key, {})[r["peer"]] = r
    lines = [[f"{p} producer(s), {wk} worker(s)"] +
             [cell(g.get(q, skipped.get(q)), "ns_per_op") for q in peers]
             for (p, wk), g in sorted(groups.items())]
    table(["producers × workers"] + peers, lines)

for w4 in ["W4", "W4-batch", "W4-rel"]:
  rs = {r["peer"]: r for r in by(w4)}
  if rs:
    print(f"**{w4}** postponed burst (insert ns per op under load; lateness in µs; early starts)\n")
    lines = []
    for p in peers:
        r = rs.get(p)
        if r is None or "skipped" in r:
            continue
        lines.append([p, cell(r, "insert_ns_per_op", ratio_key="insert_peer_over_ordo"),
                      cell(r, "lateness_p50_us", ratio_key=None),
                      cell(r, "lateness_p99_us", ratio_key="lateness_p99_peer_over_ordo"),
                      cell(r, "lateness_max_us", ratio_key=None),
                      str(r.get("early", "–")), str(r.get("due_at_submit", "–")),
                      cell(r, "lateness_after_submit_p99_us", ratio_key=None),
                      cell(r, "lateness_after_submit_max_us", ratio_key=None)])
    table(["peer", "insert ns", "lateness p50", "p99", "max", "early", "due before submit",
           "p99 of those due after the submission", "their max"],
          lines)

for w in ["W5", "W5-tok"]:
    rs = {r["peer"]: r for r in by(w)}
    if not rs:
        continue
    print(f"**{w}** paced at {next(iter(rs.values())).get('rate', '?')} ops/s "
          "(submit-to-start latency in µs; engine CPU in cores, producer excluded; "
          "the whole process's, with the ratio)\n")
    lines = []
    for p in peers:
        r = rs.get(p)
        if r is None or "skipped" in r:
            continue
        lines.append([p, cell(r, "latency_p50_us", "{:,.1f}", None),
                      cell(r, "latency_p99_us", "{:,.1f}", "latency_p99_peer_over_ordo"),
                      cell(r, "latency_p999_us", "{:,.1f}", None),
                      cell(r, "cpu_cores", "{:.2f}", None),
                      cell(r, "process_cpu_cores", "{:.2f}", "cpu_peer_over_ordo")])
    table(["peer", "p50", "p99", "p99.9", "engine cores", "process cores"], lines)

rs = {r["peer"]: r for r in by("idle")}
if rs:
    print("**Idle** (CPU of an idle engine, % of one core)\n")
    table(["peer"] + [p for p in peers if p in rs and "skipped" not in rs[p]],
          [["idle"] + [f"{100 * rs[p]['cpu_cores']:.2f} %"
                       if rs[p].get("ok", True) and rs[p].get("cpu_cores") is not None
                       else "FAILED" for p in peers if p in rs and "skipped" not in rs[p]]])

mems = ["mem-independent", "mem-chained", "mem-postponed", "mem-idle-token"]
if any(by(m) for m in mems):
    print("**Memory** (heap bytes per pending operation with a 32-byte capture, and per "
          "idle token; RSS where the peer allocates outside malloc)\n")
    lines = []
    for m in mems:
        rs = {r["peer"]: r for r in by(m)}
        key = "bytes_per_token" if m == "mem-idle-token" else "bytes_per_op"
        # No ratio for idle tokens: Ordo's figure is 0.
        ratio = None if m == "mem-idle-token" else "peer_over_ordo"
        lines.append([m] + [cell(rs.get(p), key, "{:,.0f}", ratio) for p in peers])
    table(["probe"] + peers, lines)
peak = by("peak_rss")
if peak:
    print(f"Peak RSS of the comparison run: {peak[0].get('peak_rss_kib', 0) / 1024:.0f} MiB.\n")
PY

tools/plot.sh "$out/compare.json" "$out" >/dev/null
cat "$out/compare.md"
echo "(written: $out/compare.json, $out/compare.md, $out/*.svg)" >&2
exit "$rc"
