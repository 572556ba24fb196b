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
	wait_quiet "mark_1x1T $i"
	"$BUILD/bench/bench_mark" --reps 5 --mappings 1 --map-mib 1048576 \
		> "$OUT/mark_1x1T_$i.jsonl" 2> "$OUT/mark_1x1T_$i.txt"
	wait_quiet "mark_64x16G $i"
	"$BUILD/bench/bench_mark" --reps 5 --mappings 64 --map-mib 16384 \
		> "$OUT/mark_64x16G_$i.jsonl" 2> "$OUT/mark_64x16G_$i.txt"
done
here=$(dirname "$0")
for set in report1 report64 report1_nothp mark256 mark_1x1T mark_64x16G; do
	echo "## $set"
	python3 "$here/summarize.py" "$OUT/${set}"_[0-9]*.jsonl
	echo
done
