#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench/migration/sweep.sh - many cells of the migration benchmark, several seeds each.
#
#   sweep.sh --small|--compare|--medium|--full [--out FILE] [--seeds N] [--dt PATH] [--keep DIR]
#            [--dry-run]
#
#   --small   what `make bench` can run in under 10 minutes: 256 MiB, 1 Gbit/s, RTT 0.2 and
#             2 ms, uniform at 0.1, 0.3, 0.6 and 1.2 x the link, pinned 0 and 16 MiB, 2 seeds
#             (32 runs, about 5 minutes on the reference machine)
#   --compare every policy on the same cells: ours, ours-nodefer, qemu, qemu-auto-converge,
#             xen, cloud-hypervisor (bench/migration/policies.c, run by the real engine
#             through `dirtytrack migrate --policy`), 256 MiB, 1 Gbit/s, RTT 2 ms, pinned
#             16 MiB, uniform at 0.3 and 1.2 x and Zipf at 0.6 x the link, 2 seeds (36 runs,
#             about 7 minutes)
#   --medium  every dimension of the full matrix, one at a time around a base cell (1 GiB,
#             1 Gbit/s, RTT 2 ms, uniform 0.3 x link, no pinned pages): idle; 4 GiB; 10 Gbit/s;
#             RTT 0.2 ms; uniform 0.1, 0.6, 0.9, 1.2; Zipf 0.3, 1.2; phase 0.6; pinned
#             64 MiB, 25 %; the rate halved 1 s in; 2 seeds (30 runs, about 8 minutes)
#   --full    issue 6's matrix: 1 GiB and 4 GiB, 1 and 10 Gbit/s, RTT 0.2 and 2 ms, idle,
#             uniform at 0.1-1.2 x, Zipf and phase, pinned 0, 64 MiB and 25 %, the mid-run
#             drop by half, 3 seeds (288 cells, 864 runs: hours)
#   --out     the JSON lines file, appended to (default results/sweep-MODE-DATE.jsonl here)
#   --seeds   seeds per cell (1..N), overriding the mode's count
#   --dt      the dirtytrack executable (default build-release/tools/dirtytrack)
#   --keep    keep each run's process output under DIR/CELL-sN (src.out: one line per round)
#   --dry-run print the run.sh command lines only
#
# Each run is one `run.sh` cell; its JSON line is appended to the output with two extra
# fields: "cell" (the cell's name, the same for every seed) and "stall_round" (the first
# round whose verdict was "stalled" or "diverging", from the per-round lines, or null). Then
# summarize_runs.py prints one markdown table row per cell. A run that fails or does not
# verify does not stop the sweep. Needs root; the namespaces are removed on exit (trap).
set -eu
set -f # the cell arguments are split on spaces, never globbed

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUN="$HERE/run.sh"
NETNS="$HERE/netns.sh"

MODE=
OUT=
SEEDS=
DT="$ROOT/build-release/tools/dirtytrack"
KEEP=
DRY=

usage() {
	sed -n '4,29p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--small | --compare | --medium | --full)
		MODE=${1#--}
		shift
		continue
		;;
	--dry-run)
		DRY=1
		shift
		continue
		;;
	-h | --help) usage ;;
	esac
	[ $# -ge 2 ] || usage
	case $1 in
	--out) OUT=$2 ;;
	--seeds) SEEDS=$2 ;;
	--dt) DT=$2 ;;
	--keep) KEEP=$2 ;;
	*) usage ;;
	esac
	shift 2
done
[ -n "$MODE" ] || usage
if [ -n "$SEEDS" ]; then
	echo "$SEEDS" | grep -Eq '^[1-9][0-9]*$' || {
		echo "sweep.sh: --seeds: expected a positive count, not '$SEEDS'" >&2
		exit 2
	}
fi

if [ -z "$DRY" ]; then
	[ "$(id -u)" -eq 0 ] || {
		echo "sweep.sh: needs root (run.sh creates network namespaces)" >&2
		exit 1
	}
	[ -x "$DT" ] || {
		echo "sweep.sh: no dirtytrack at $DT (meson setup build-release --buildtype=release -Dtests=false; ninja -C build-release), or give --dt" >&2
		exit 1
	}
fi
[ -n "$OUT" ] || OUT="$HERE/results/sweep-$MODE-$(date +%Y%m%d-%H%M%S).jsonl"

T=$(mktemp -d "${TMPDIR:-/tmp}/dt-sweep.XXXXXX")
cleanup() {
	rc=$?
	trap - EXIT INT TERM HUP
	[ -n "$DRY" ] || "$NETNS" teardown >/dev/null 2>&1 || true
	rm -rf "$T"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# The cell list: one line per cell, "name|run.sh arguments" (no seed).
cells() {
	case $MODE in
	small)
		for rtt in 0.2 2; do
			for f in 0.1 0.3 0.6 1.2; do
				for p in 0 16M; do
					echo "256M-1gbit-rtt$rtt-uniform$f-pin$p|--size 256M --rate 1gbit --rtt-ms $rtt --pattern uniform --dirty $f --pinned $p --timeout 120"
				done
			done
		done
		;;
	compare)
		c="--size 256M --rate 1gbit --rtt-ms 2 --pinned 16M --timeout 150"
		for w in uniform0.3 uniform1.2 zipf0.6; do
			pat=${w%%[0-9]*}
			f=${w#"$pat"}
			for pol in ours ours-nodefer qemu qemu-auto-converge xen cloud-hypervisor; do
				echo "256M-1gbit-rtt2-$w-pin16M-$pol|$c --pattern $pat --dirty $f --policy $pol"
			done
		done
		;;
	medium)
		b="--rtt-ms 2 --timeout 600"
		echo "1G-1gbit-rtt2-uniform0.3-pin0|--size 1G --rate 1gbit $b --pattern uniform --dirty 0.3"
		# idle: 0.1 % of the memory hot (262 pages), rewritten ~6 times a second
		echo "1G-1gbit-rtt2-idle-pin0|--size 1G --rate 1gbit $b --pattern uniform --dirty 0.05 --hot 262"
		echo "4G-1gbit-rtt2-uniform0.3-pin0|--size 4G --rate 1gbit $b --pattern uniform --dirty 0.3"
		echo "1G-10gbit-rtt2-uniform0.3-pin0|--size 1G --rate 10gbit $b --pattern uniform --dirty 0.3"
		echo "1G-1gbit-rtt0.2-uniform0.3-pin0|--size 1G --rate 1gbit --rtt-ms 0.2 --timeout 600 --pattern uniform --dirty 0.3"
		for f in 0.1 0.6 0.9 1.2; do
			echo "1G-1gbit-rtt2-uniform$f-pin0|--size 1G --rate 1gbit $b --pattern uniform --dirty $f"
		done
		for f in 0.3 1.2; do
			echo "1G-1gbit-rtt2-zipf$f-pin0|--size 1G --rate 1gbit $b --pattern zipf --dirty $f"
		done
		echo "1G-1gbit-rtt2-phase0.6-pin0|--size 1G --rate 1gbit $b --pattern phase --dirty 0.6"
		echo "1G-1gbit-rtt2-uniform0.3-pin64M|--size 1G --rate 1gbit $b --pattern uniform --dirty 0.3 --pinned 64M"
		echo "1G-1gbit-rtt2-uniform0.3-pin25pct|--size 1G --rate 1gbit $b --pattern uniform --dirty 0.3 --pinned 25%"
		echo "1G-1gbit-rtt2-uniform0.3-pin0-drop1s|--size 1G --rate 1gbit $b --pattern uniform --dirty 0.3 --drop-at 1"
		;;
	full)
		for size in 1G 4G; do
			to=600
			[ "$size" = 1G ] || to=1800
			for rate in 1gbit 10gbit; do
				for rtt in 0.2 2; do
					for p in 0 64M 25%; do
						pn=$(echo "$p" | tr -d '%')
						[ "$p" = 25% ] && pn=25pct
						c="--size $size --rate $rate --rtt-ms $rtt --pinned $p --timeout $to"
						n="$size-$rate-rtt$rtt"
						# idle: 0.1 % of the memory hot
						hot=262
						[ "$size" = 1G ] || hot=1049
						echo "$n-idle-pin$pn|$c --pattern uniform --dirty 0.05 --hot $hot"
						for f in 0.1 0.3 0.6 0.9 1.2; do
							echo "$n-uniform$f-pin$pn|$c --pattern uniform --dirty $f"
						done
						for f in 0.3 1.2; do
							echo "$n-zipf$f-pin$pn|$c --pattern zipf --dirty $f"
						done
						echo "$n-phase0.6-pin$pn|$c --pattern phase --dirty 0.6"
						# The rate halved one second in.
						for f in 0.1 0.3; do
							echo "$n-uniform$f-pin$pn-drop1s|$c --pattern uniform --dirty $f --drop-at 1"
						done
						echo "$n-zipf0.3-pin$pn-drop1s|$c --pattern zipf --dirty 0.3 --drop-at 1"
					done
				done
			done
		done
		;;
	esac
}

if [ -z "$SEEDS" ]; then
	SEEDS=2
	[ "$MODE" != full ] || SEEDS=3
fi

cells >"$T/cells"
ncells=$(wc -l <"$T/cells")
total=$((ncells * SEEDS))
if [ -z "$DRY" ]; then
	mkdir -p "$(dirname "$OUT")"
	echo "sweep.sh: $MODE: $ncells cells x $SEEDS seeds = $total runs -> $OUT" >&2
fi

i=0
start=$(date +%s)
while IFS='|' read -r name args; do
	s=1
	while [ "$s" -le "$SEEDS" ]; do
		i=$((i + 1))
		if [ -n "$DRY" ]; then
			echo "$RUN $args --seed $s --dt $DT"
			s=$((s + 1))
			continue
		fi
		kd="$T/keep"
		[ -z "$KEEP" ] || kd="$KEEP/$name-s$s"
		rm -rf "$T/keep"
		set +e
		# shellcheck disable=SC2086 # $args is a word list by design (set -f: no globbing)
		"$RUN" $args --seed "$s" --dt "$DT" --keep "$kd" >"$T/line" 2>"$T/err"
		rc=$?
		set -e
		line=$(tail -n 1 "$T/line")
		case $line in
		'{'*) ;;
		*)
			# shellcheck disable=SC1003 # tr -d removes quotes and backslashes
			why=$(tail -n 1 "$T/err" | tr -d '"\\' | cut -c 1-200)
			line="{\"status\":\"harness-error\",\"exit\":$rc,\"message\":\"$why\",\"verified\":false}"
			;;
		esac
		sr=$(grep '^{"round"' "$kd/src.out" 2>/dev/null | grep -E '"verdict":"(stalled|diverging)"' |
			head -n 1 | sed -n 's/^{"round":\([0-9]*\),.*/\1/p' || true)
		printf '{"cell":"%s","stall_round":%s,%s\n' "$name" "${sr:-null}" "${line#\{}" >>"$OUT"
		st=$(echo "$line" | sed -n 's/^[^}]*"status":"\([^"]*\)".*/\1/p')
		echo "sweep.sh: [$i/$total] $name seed $s: ${st:-?} ($(($(date +%s) - start)) s)" >&2
		s=$((s + 1))
	done
done <"$T/cells"

[ -n "$DRY" ] || python3 "$HERE/summarize_runs.py" "$OUT"
