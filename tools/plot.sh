#!/usr/bin/env bash
# tools/plot.sh: SVG charts from ordo_compare's JSON output.
#
#   build/release/bench/ordo_compare --workloads=all --format=json > bench/results/compare.json
#   tools/plot.sh bench/results/compare.json [out_dir]      # out_dir: bench/results
#
# Writes, for whatever the JSON holds (a chart without data is not written):
#   throughput.svg   ns/op by workload (W1, W2, W3, W2z, -1us, W1-fan, -batch) and peer; log scale
#   scaling.svg      ns/op of W1/W2-scaling by producers x workers and peer; log scale
#   latency.svg      W5 / W5-tok submit-to-start latency p50, p99, p99.9 by peer; log scale
#   lateness.svg     W4 and W4-rel lateness p50, p99, max by peer; log scale
#   memory.svg       heap bytes per pending operation / per idle token by peer
#   cpu.svg          engine CPU cores in W5 / W5-tok and while idle, by peer
# Failed and skipped rows are left out (a gap in their group). Needs python3 and
# gnuplot (Debian: gnuplot-nox); as root with apt it installs gnuplot-nox itself.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 || "$1" == -h || "$1" == --help ]]; then
  awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"
  exit 2
fi
json=$1
root=$(cd "$(dirname "$0")/.." && pwd)
out=${2:-$root/bench/results}
[[ -r "$json" ]] || { echo "plot.sh: cannot read $json" >&2; exit 1; }
command -v python3 >/dev/null || { echo "plot.sh: python3 is needed" >&2; exit 1; }

if ! command -v gnuplot >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "plot.sh: installing gnuplot-nox" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q gnuplot-nox >/dev/null ||
      { apt-get update -q >/dev/null && apt-get install -y -q gnuplot-nox >/dev/null; }
  else
    echo "plot.sh: gnuplot is missing; install it with: sudo apt-get install gnuplot-nox" >&2
    exit 1
  fi
fi

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# JSON -> one data file and one gnuplot script per chart (python3 writes both).
python3 - "$json" "$work" "$out" <<'PY'
import json, math, os, sys

src, work, out = sys.argv[1], sys.argv[2], sys.argv[3]
with open(src) as f:
    rows = json.load(f)
rows = [r for r in rows if isinstance(r, dict)]
peer_order = []
for r in rows:
    p = r.get("peer")
    if p and p != "*" and p not in peer_order:
        peer_order.append(p)
# One colour per peer, the same in every chart.
palette = ["#1f77b4", "#7f7f7f", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
colour = {p: palette[i % len(palette)] for i, p in enumerate(peer_order)}

def good(r, key):
    v = r.get(key)
    if r.get("skipped") or not r.get("ok", False) or v is None:
        return None
    return float(v)

def chart(name, title, ylabel, groups, log):
    """groups: list of (label, {peer: value}); writes <name>.dat and <name>.gp."""
    groups = [(g, vals) for g, vals in groups if any(v is not None for v in vals.values())]
    if not groups:
        return
    peers = [p for p in peer_order if any(vals.get(p) is not None for _, vals in groups)]
    dat = os.path.join(work, name + ".dat")
    with open(dat, "w") as f:
        f.write("group " + " ".join(peers) + "\n")
        for g, vals in groups:
            cells = []
            for p in peers:
                v = vals.get(p)
                ok = v is not None and not math.isnan(v) and (v > 0 or not log)
                cells.append("%.6g" % v if ok else "?")
            f.write('"%s" %s\n' % (g, " ".join(cells)))
    plots = ", ".join(
        "'%s' using %d:xtic(1) title columnheader(%d) lc rgb '%s'" % (dat, i + 2, i + 2, colour[p])
        for i, p in enumerate(peers))
    width = max(640, 90 + len(groups) * (18 * len(peers) + 30))
    with open(os.path.join(work, name + ".gp"), "w") as f:
        f.write("""set terminal svg size %d,420 dynamic font 'sans,11' background '#ffffff'
set output '%s'
set title "%s"
set ylabel "%s"
set datafile missing '?'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside top center horizontal
set grid ytics
set bmargin 3
set xtics nomirror
set yrange [%s:*]
%s
plot %s
""" % (width, os.path.join(out, name + ".svg"), title, ylabel,
       "*" if log else "0", "set logscale y" if log else "unset logscale y", plots))

def first(key, default=""):
    for r in rows:
        if key in r and not r.get("skipped"):
            return r[key]
    return default

# (a) throughput: one group per plain workload, in the JSON's order.
tp = {}
order = []
for r in rows:
    w = r.get("workload", "")
    if w.endswith("-scaling") or "ns_per_op" not in r and not r.get("skipped"):
        continue
    if not (w.startswith("W1") or w.startswith("W2") or w.startswith("W3")):
        continue
    if w not in tp:
        tp[w] = {}
        order.append(w)
    tp[w][r["peer"]] = good(r, "ns_per_op")
chart("throughput", "Throughput: ns per operation (lower is better; %s ops, %s workers, 1 producer)"
      % (first("ops"), first("workers")), "ns/op (log)", [(w, tp[w]) for w in order], True)

# Scaling: one group per (workload, producers, workers).
sc, sorder = {}, []
for r in rows:
    w = r.get("workload", "")
    if not w.endswith("-scaling") or r.get("skipped"):
        continue
    g = "%s %sp/%sw" % (w[:-8], r.get("producers", "?"), r.get("workers", "?"))
    if g not in sc:
        sc[g] = {}
        sorder.append(g)
    sc[g][r["peer"]] = good(r, "ns_per_op")
chart("scaling", "Producer scaling: ns per operation (producers p / workers w; lower is better)",
      "ns/op (log)", [(g, sc[g]) for g in sorder], True)

# (b) latency: W5 percentiles, and W4 lateness.
def percentiles(workloads, keys):
    """Groups "workload label" -> {peer: value}, for each workload and (key, label)."""
    groups = []
    for w in workloads:
        for key, label in keys:
            vals = {r["peer"]: good(r, key) for r in rows if r.get("workload") == w}
            if vals:
                groups.append(("%s %s" % (w, label), vals))
    return groups

lat = percentiles(("W5", "W5-tok"), (("latency_p50_us", "p50"), ("latency_p99_us", "p99"),
                                     ("latency_p999_us", "p99.9")))
chart("latency", "W5 paced: submit-to-start latency (lower is better)", "microseconds (log)",
      lat, True)
late = percentiles(("W4", "W4-rel"), (("lateness_p50_us", "p50"), ("lateness_p99_us", "p99"),
                                      ("lateness_max_us", "max")))
chart("lateness", "W4 postponed bursts: lateness, body start - due time (lower is better)",
      "microseconds (log)", late, True)

# Memory and CPU.
mem = []
for w in ("mem-independent", "mem-chained", "mem-postponed", "mem-idle-token"):
    key = "bytes_per_token" if w == "mem-idle-token" else "bytes_per_op"
    vals = {r["peer"]: good(r, key) for r in rows if r.get("workload") == w}
    if vals:
        mem.append((w[4:] + (" (per token)" if w == "mem-idle-token" else " (per op)"), vals))
chart("memory", "Heap bytes per pending operation (32-byte capture) and per idle token",
      "bytes (heap, mallinfo2)", mem, False)
cpu = []
for w in ("W5", "W5-tok", "idle"):
    vals = {r["peer"]: good(r, "cpu_cores") for r in rows if r.get("workload") == w}
    if vals:
        cpu.append((w, vals))
chart("cpu", "Engine CPU (cores): paced W5 load and idle", "cores", cpu, False)
PY

shopt -s nullglob
made=0
for gp in "$work"/*.gp; do
  gnuplot "$gp"
  echo "$out/$(basename "${gp%.gp}").svg"
  made=$((made + 1))
done
if [[ $made -eq 0 ]]; then
  echo "plot.sh: nothing to plot in $json" >&2
  exit 1
fi
