#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench/migration/plot_rounds.sh - dirty pages per round, one line per policy, one workload.
#
#   plot_rounds.sh KEEP_DIR CELL_PREFIX OUT.svg [SEED]
#
# KEEP_DIR is what `sweep.sh --keep KEEP_DIR` wrote: one directory per run, named
# CELL-sSEED, each with src.out (one JSON line per round). Every run whose cell name starts
# with CELL_PREFIX and ends in "-POLICY" (the cells of `sweep.sh --compare`) gives one line:
# dirty_pages (what the round sends) against the round number, for seed SEED (default 1).
# Rounds with pinned pages deferred count without them, as the engine sends them. Writes an
# SVG with gnuplot (Debian: gnuplot-nox; installed here when missing and run as root).
#
# Example:
#   sudo bench/migration/sweep.sh --compare --keep /tmp/keep
#   bench/migration/plot_rounds.sh /tmp/keep 256M-1gbit-rtt2-uniform1.2-pin16M \
#       docs/img/rounds-uniform1.2.svg
set -eu

[ $# -ge 3 ] || {
	sed -n '4,18p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
KEEP=$1
PREFIX=$2
OUT=$3
SEED=${4:-1}

if ! command -v gnuplot >/dev/null 2>&1; then
	if [ "$(id -u)" -eq 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null ||
			{ apt-get update -qq && apt-get install -y -qq gnuplot-nox >/dev/null; }
	fi
	command -v gnuplot >/dev/null 2>&1 || {
		echo "plot_rounds.sh: no gnuplot (apt-get install gnuplot-nox)" >&2
		exit 1
	}
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/dt-plot.XXXXXX")
trap 'rm -rf "$T"' EXIT

plot=""
for d in "$KEEP/$PREFIX"-*-s"$SEED"; do
	[ -f "$d/src.out" ] || continue
	name=$(basename "$d")
	policy=${name#"$PREFIX"-}
	policy=${policy%-s"$SEED"}
	grep '^{"round"' "$d/src.out" |
		sed -n 's/^{"round":\([0-9]*\),.*"dirty_pages":\([0-9]*\),.*/\1 \2/p' >"$T/$policy.dat"
	[ -s "$T/$policy.dat" ] || continue
	plot="$plot${plot:+, }'$T/$policy.dat' using 1:2 with linespoints title '$policy'"
done
[ -n "$plot" ] || {
	echo "plot_rounds.sh: no runs $KEEP/$PREFIX-*-s$SEED/src.out" >&2
	exit 1
}

gnuplot <<EOF
set terminal svg size 900,540 dynamic font 'sans,12'
set output '$OUT'
set title "Dirty pages per round: $PREFIX (seed $SEED)" noenhanced
set xlabel 'round (0: the full pass)'
set ylabel 'pages sent in the round (4 KiB)'
set logscale y
set grid
set key outside right top noenhanced
plot $plot
EOF
echo "plot_rounds.sh: wrote $OUT" >&2
