#!/bin/sh
# SPDX-License-Identifier: MIT
# The full-size runs behind docs/performance.md: every configuration RUNS times (default 3),
# one after the other (run nothing else meanwhile: two cores, memory-bound figures), then the
# tables. Usage: bench/run_full.sh [build dir] [output dir]
set -eu
BUILD=${1:-build-bench}
OUT=${2:-bench-results}
RUNS=${RUNS:-3}
mkdir -p "$OUT"

# Wait (at most 5 minutes) until the machine is idle for a second: other processes on a
# two-core machine skew memory-bound figures by several times. Logs what it saw.
busy_pct() {
	a=$(awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat)
	sleep 1
	b=$(awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat)
	echo "$a $b" | awk '{busy=$3-$1; idle=$4-$2; print int(100*busy/(busy+idle+1))}'
}
wait_quiet() {
	for _ in $(seq 300); do
		b=$(busy_pct)
		[ "$b" -le 5 ] && break
	done
	echo "$(date +%T) $1: machine busy ${b} % before start" >> "$OUT/quiet.log"
}
git rev-parse HEAD > "$OUT/commit" 2>/dev/null || true
for i in $(seq "$RUNS"); do
	wait_quiet "report1 $i"
	"$BUILD/bench/bench_report" --reps 9 > "$OUT/report1_$i.jsonl" 2> "$OUT/report1_$i.txt"
	wait_quiet "report64 $i"
	"$BUILD/bench/bench_report" --reps 9 --mappings 64 > "$OUT/report64_$i.jsonl" \
		2> "$OUT/report64_$i.txt"
	wait_quiet "report1_nothp $i"
	"$BUILD/bench/bench_report" --reps 9 --no-thp > "$OUT/report1_nothp_$i.jsonl" \
		2> "$OUT/report1_nothp_$i.txt"
	wait_quiet "mark256 $i"
	"$BUILD/bench/bench_mark" --reps 7 > "$OUT/mark256_$i.jsonl" 2> "$OUT/mark256_$i.txt"
	wait_quiet "mark16G $i"
	"$BUILD/bench/bench_mark" --reps 7 --total-gib 16 > "$OUT/mark16G_$i.jsonl" \
		2> "$OUT/mark16G_$i.txt"
	wait_quiet "mark_1x1T $i"
	"$BUILD/bench/bench_mark" --reps 5 --mappings 1 --map-mib 1048576 \
		> "$OUT/mark_1x1T_$i.jsonl" 2> "$OUT/mark_1x1T_$i.txt"
	wait_quiet "mark_64x16G $i"
	"$BUILD/bench/bench_mark" --reps 5 --mappings 64 --map-mib 16384 \
		> "$OUT/mark_64x16G_$i.jsonl" 2> "$OUT/mark_64x16G_$i.txt"
	# A vIOMMU's small mappings: 4 KiB and 1 MiB each.
	wait_quiet "mark4K $i"
	"$BUILD/bench/bench_mark" --reps 5 --map-kib 4 > "$OUT/mark4K_$i.jsonl" \
		2> "$OUT/mark4K_$i.txt"
	wait_quiet "mark1M $i"
	"$BUILD/bench/bench_mark" --reps 5 --map-kib 1024 > "$OUT/mark1M_$i.jsonl" \
		2> "$OUT/mark1M_$i.txt"
	# Trackers: each source over 1 GiB, then the dirty set over 8 GiB (which writes all
	# 8 GiB at its 100 % level: 8 GiB of RAM until it ends, and ~15 minutes here).
	wait_quiet "track_sources $i"
	"$BUILD/bench/bench_track" --no-set --reps 5 > "$OUT/track_sources_$i.jsonl" \
		2> "$OUT/track_sources_$i.txt"
	wait_quiet "track_sources_untouched $i"
	"$BUILD/bench/bench_track" --no-set --reps 5 --untouched \
		> "$OUT/track_sources_untouched_$i.jsonl" 2> "$OUT/track_sources_untouched_$i.txt"
	wait_quiet "track_set $i"
	"$BUILD/bench/bench_track" --no-sources --reps 3 > "$OUT/track_set_$i.jsonl" \
		2> "$OUT/track_set_$i.txt"
done
# Migration over TCP loopback: one run, which repeats inside (3 repetitions of the throughput
# cases, 3 writer seeds per dirty rate) and prints its own table of medians; ~6 minutes.
wait_quiet "migrate"
"$BUILD/bench/bench_migrate" > "$OUT/migrate.jsonl" 2> "$OUT/migrate.txt"
here=$(dirname "$0")
for set in report1 report64 report1_nothp mark256 mark16G mark_1x1T mark_64x16G; do
	echo "## $set"
	python3 "$here/summarize.py" "$OUT/${set}"_[0-9]*.jsonl
	echo
done

# bench_track's lines, folded as summarize.py folds the others: median of the runs' medians,
# range over the runs in parentheses, ratios from the medians.
track_tables() {
	python3 - "$@" <<'PY'
import json, os, statistics, sys

paths = [p for p in sys.argv[1:] if os.path.exists(p)]
runs = [[json.loads(l) for l in open(p) if l.startswith("{")] for p in paths]
objs = [o for run in runs for o in run]


def cell(os_, key, scale, digits):
    v = [o[key] / scale for o in os_]
    return f"{statistics.median(v):.{digits}f} ({min(v):.{digits}f}–{max(v):.{digits}f})"


def med(os_, key):
    return statistics.median(o[key] for o in os_)


src = [o for o in objs if o["bench"] == "track_source" and not o.get("skipped")]
if src:
    print(f"{src[0]['size_mib']} MiB per source "
          f"({'resident' if src[0]['resident'] else 'never touched'}), {len(runs)} runs, "
          f"{src[0]['reps']} repetitions each\n")
    print("| source | dirty | pages reported | harvest ms | ns/GiB | GB/s | naive ms "
          "| naive / harvest | pagemap read ms | memcpy bitmap µs | harvest / memcpy "
          "| memcpy PTEs ms | harvest / memcpy PTEs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    keys = sorted(dict.fromkeys((o["source"], o["dirty_pct"]) for o in src),
                  key=lambda k: ([o["source"] for o in src].index(k[0]), k[1]))
    for name, pct in keys:
        os_ = [o for o in src if o["source"] == name and o["dirty_pct"] == pct]
        h = med(os_, "harvest_ns")
        naive = (f"{cell(os_, 'naive_ns', 1e6, 3)} | {med(os_, 'naive_ns') / h:.1f}"
                 if "naive_ns" in os_[0] else "- | -")
        pm = cell(os_, "pagemap_read_ns", 1e6, 3) if "pagemap_read_ns" in os_[0] else "-"
        print(f"| {name} | {pct:g} % | {os_[0]['reported_pages']} "
              f"| {cell(os_, 'harvest_ns', 1e6, 3)} | {med(os_, 'ns_per_gib'):.0f} "
              f"| {med(os_, 'gb_per_s'):.1f} | {naive} | {pm} "
              f"| {cell(os_, 'memcpy_ns', 1e3, 2)} | {h / med(os_, 'memcpy_ns'):.0f} "
              f"| {cell(os_, 'memcpy_pte_ns', 1e6, 3)} | {h / med(os_, 'memcpy_pte_ns'):.1f} |")
    for o in {o["source"]: o for o in objs if o.get("skipped")}.values():
        print(f"| {o['source']} | skipped: {o['reason']} |")
    print()
st = [o for o in objs if o["bench"] == "track_set"]
if st:
    print(f"dirty set over {st[0]['size_mib']} MiB, CPU source {st[0]['cpu_source']}, "
          f"{st[0]['pinned_pages']} pinned pages, {len(runs)} runs, {st[0]['reps']} "
          "repetitions each\n")
    print("| dirty | cpu | vmm | pinned | total | harvest ms | ns/GiB | GB/s | naive ms "
          "| naive: uffd-wp ms | naive: container ms | naive: merge ms | memcpy µs "
          "| naive / harvest | harvest / memcpy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for pct in sorted({o["dirty_pct"] for o in st}):
        os_ = [o for o in st if o["dirty_pct"] == pct]
        h = med(os_, "harvest_ns")
        print(f"| {pct:g} % | {os_[0]['cpu_pages']} | {os_[0]['vmm_pages']} "
              f"| {os_[0]['pinned_pages']} | {os_[0]['total_pages']} "
              f"| {cell(os_, 'harvest_ns', 1e6, 2)} | {med(os_, 'ns_per_gib'):.0f} "
              f"| {med(os_, 'gb_per_s'):.1f} | {cell(os_, 'naive_ns', 1e6, 2)} "
              f"| {cell(os_, 'naive_cpu_source_ns', 1e6, 2)} "
              f"| {cell(os_, 'naive_container_ns', 1e6, 3)} "
              f"| {cell(os_, 'naive_merge_ns', 1e6, 3)} | {cell(os_, 'memcpy_ns', 1e3, 1)} "
              f"| {med(os_, 'naive_ns') / h:.2f} | {h / med(os_, 'memcpy_ns'):.0f} |")
if not objs:
    sys.exit("no results")
faults = sum(o.get("timed_faults", 0) for o in objs)
loads = [o["loadavg_1min"] for o in objs if o["bench"] == "track_env"]
print(f"\nPage faults in timed sections: {faults}. 1-minute load average when each run "
      f"started: {loads}")
PY
}
for set in track_sources track_sources_untouched track_set; do
	echo "## $set"
	track_tables "$OUT/${set}"_[0-9]*.jsonl || true
	echo
done
echo "## migrate"
cat "$OUT/migrate.txt"
