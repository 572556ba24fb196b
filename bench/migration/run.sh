#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench/migration/run.sh - one cell of the migration benchmark, end to end, on an emulated link.
#
#   run.sh [--size S] [--rate RATE] [--rtt-ms MS] [--pattern uniform|zipf|phase]
#          [--dirty FRACTION] [--hot PAGES] [--pinned PAGES|S|P%] [--seed N]
#          [--drop-at SECONDS] [--max-downtime MS] [--phase-ms MS] [--no-defer]
#          [--policy NAME] [--timeout SECONDS] [--keep DIR] [--dt PATH] [--relay PATH]
#   run.sh --quick       one tiny cell (64 MiB, 1gbit, 2 ms RTT, uniform 0.3 x link)
#
# 1. netns.sh setup RATE: namespaces dt-src / dt-dst, a veth pair, tbf at RATE on both ends.
# 2. In dt-dst: `dirtytrack migrate --listen tcp:127.0.0.1:0 --json`, and, when the RTT is
#    more than 0, delay_relay on 10.77.0.2 forwarding to it with RTT/2 each way (this kernel
#    has no netem); with RTT 0 the destination listens on 10.77.0.2 itself.
# 3. With --drop-at T: T seconds after the source starts, the rate drops to half (set-rate).
# 4. In dt-src: `dirtytrack migrate --to tcp:10.77.0.2:PORT --json` with the workload: the
#    writer at FRACTION x the link rate in pages per second, the pattern, the pinned ring,
#    and the policy (`--policy`: ours, or another engine's rule; docs/migration-bench.md).
# 5. One JSON line on stdout: the cell's parameters, then the engine's results (from the
#    source's final object; "verified": the destination's digest equals the source's), then
#    the source's whole final object under "source". --keep DIR keeps every process's output
#    (src.out holds one JSON line per round).
#
# Needs root. Exit status: 0 the cell ran and the migration verified, 1 otherwise (the JSON
# line is printed either way when the source printed its final object), 2 bad usage.
# Everything it starts is stopped and the namespaces are removed on exit (trap).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh" # ROOT, NETNS, usage, die, is_num, set_opt, stop_all, cleanup
USAGE=4,10 # usage: lines 4 to 10 of the comment above

SIZE=256M
RATE=1gbit
RTT_MS=2
PATTERN=uniform
DIRTY=0.3
HOT=
PINNED=0
SEED=1
DROP_AT=
MAX_DOWNTIME=300
PHASE_MS=1000
NO_DEFER=
POLICY=ours
TIMEOUT=300
KEEP=
DT=
RELAY=

while [ $# -gt 0 ]; do
	case $1 in
	--quick)
		SIZE=64M RATE=1gbit RTT_MS=2 PATTERN=uniform DIRTY=0.3 PINNED=16 TIMEOUT=120
		shift
		continue
		;;
	--no-defer)
		NO_DEFER=--no-defer
		shift
		continue
		;;
	-h | --help) usage ;;
	esac
	[ $# -ge 2 ] || usage
	set_opt "size rate rtt-ms pattern dirty hot pinned seed drop-at max-downtime phase-ms policy \
		timeout keep dt relay" "$1" "$2"
	shift 2
done

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces and tc); run it as root"
is_num "$RTT_MS" || die "--rtt-ms: expected milliseconds, not '$RTT_MS'"
is_num "$DIRTY" || die "--dirty: expected a fraction of the link rate, not '$DIRTY'"
[ -z "$DROP_AT" ] || is_num "$DROP_AT" || die "--drop-at: expected seconds, not '$DROP_AT'"
case $PATTERN in uniform | zipf | phase) ;; *) die "--pattern: uniform, zipf or phase" ;; esac

# The programs: the build directory's, unless given.
if [ -z "$DT" ]; then
	for d in "$ROOT/build-release" "$ROOT/build"; do
		if [ -x "$d/tools/dirtytrack" ]; then
			DT="$d/tools/dirtytrack"
			break
		fi
	done
fi
if [ -z "$DT" ] || [ ! -x "$DT" ]; then
	die "no dirtytrack executable (build it, or give --dt PATH)"
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/dt-mig-cell.XXXXXX")
PIDS=""
trap 'cleanup "out err"' EXIT
trap 'exit 1' INT TERM HUP

if [ -z "$RELAY" ]; then
	for d in "$ROOT/build-release" "$ROOT/build"; do
		if [ -x "$d/bench/migration/delay_relay" ]; then
			RELAY="$d/bench/migration/delay_relay"
			break
		fi
	done
fi
if [ -z "$RELAY" ] && [ "$RTT_MS" != 0 ]; then
	# Not built by meson (yet): build it here.
	RELAY="$T/delay_relay"
	${CC:-cc} -std=gnu11 -O2 -Wall -Wextra -pthread -o "$RELAY" "$HERE/delay_relay.c" ||
		die "cannot build delay_relay"
fi

# wait_line FILE REGEX PID WHAT: until FILE has a line matching REGEX (10 s at most).
wait_line() {
	n=0
	until grep -Eq "$2" "$1" 2>/dev/null; do
		kill -0 "$3" 2>/dev/null || die "$4 exited early: $(tail -n 3 "$1" 2>/dev/null)"
		n=$((n + 1))
		[ $n -lt 100 ] || die "$4: no '$2' line in 10 s"
		sleep 0.1
	done
}

# field KEY FILE: the value of "KEY" in the last line of FILE (the final JSON object).
field() {
	tail -n 1 "$2" | sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p"
}

RATE_BPS=$("$NETNS" rate-bps "$RATE" 2>/dev/null || true)
[ -n "$RATE_BPS" ] || die "--rate: bad rate '$RATE' (tc syntax: 1gbit, 10gbit, 500mbit)"
PPS=$(awk -v f="$DIRTY" -v b="$RATE_BPS" 'BEGIN { printf "%.0f", f * b / 8 / 4096 }')
HALF=$(awk -v b="$RATE_BPS" 'BEGIN { printf "%.0fbit", b / 2 }')
DELAY_US=$(awk -v r="$RTT_MS" 'BEGIN { printf "%.0f", r * 1000 / 2 }')

"$NETNS" setup "$RATE"

# The destination (and the relay in front of it).
if [ "$DELAY_US" -gt 0 ]; then
	DEP=tcp:127.0.0.1:0
else
	DEP=tcp:10.77.0.2:0
fi
"$NETNS" run dst "$DT" migrate --listen "$DEP" --json >"$T/dst.out" 2>"$T/dst.err" &
DPID=$!
PIDS="$PIDS $DPID"
wait_line "$T/dst.err" '^listening tcp ' "$DPID" "the destination"
DPORT=$(sed -n 's/^listening tcp .*:\([0-9][0-9]*\)$/\1/p' "$T/dst.err")
PORT=$DPORT
if [ "$DELAY_US" -gt 0 ]; then
	"$NETNS" run dst "$RELAY" --listen 10.77.0.2:0 --connect "127.0.0.1:$DPORT" \
		--delay-us "$DELAY_US" --once >"$T/relay.out" 2>"$T/relay.err" &
	RPID=$!
	PIDS="$PIDS $RPID"
	wait_line "$T/relay.err" '^listening ' "$RPID" "delay_relay"
	PORT=$(sed -n 's/^listening .*:\([0-9][0-9]*\)$/\1/p' "$T/relay.err")
fi

# The source, and the rate drop.
set -- --size "$SIZE" --seed "$SEED" --dirty-rate "$PPS" --pattern "$PATTERN" \
	--phase-ms "$PHASE_MS" --max-downtime "$MAX_DOWNTIME" --json
[ "$PINNED" = 0 ] || set -- "$@" --pinned "$PINNED"
[ -z "$HOT" ] || set -- "$@" --hot "$HOT"
[ -z "$NO_DEFER" ] || set -- "$@" --no-defer
[ "$POLICY" = ours ] || set -- "$@" --policy "$POLICY"
if [ -n "$DROP_AT" ]; then
	(
		sleep "$DROP_AT"
		"$NETNS" set-rate "$HALF" && echo "rate dropped to $HALF at $DROP_AT s" >&2
	) 2>"$T/drop.err" &
	PIDS="$PIDS $!"
fi
set +e
timeout -k 5 "$TIMEOUT" "$NETNS" run src "$DT" migrate --to "tcp:10.77.0.2:$PORT" "$@" \
	>"$T/src.out" 2>"$T/src.err"
SRC_RC=$?
# The destination ends with the stream; after a failed source it may wait for data forever.
n=0
[ "$SRC_RC" -eq 0 ] || n=280
while kill -0 "$DPID" 2>/dev/null && [ $n -lt 300 ]; do
	n=$((n + 1))
	sleep 0.1
done
kill -9 "$DPID" 2>/dev/null
wait "$DPID"
DST_RC=$?
set -e

last=$(tail -n 1 "$T/src.out" 2>/dev/null || true)
case $last in
'{"status":'*) ;;
*)
	# Killed by --timeout (exit 124) or crashed: still one line, for the tables.
	# shellcheck disable=SC1003 # tr -d removes quotes and backslashes
	why=$(tail -n 1 "$T/src.err" 2>/dev/null | tr -d '"\\' | cut -c 1-200)
	[ "$SRC_RC" -ne 124 ] || why="no result within --timeout $TIMEOUT s"
	last="{\"status\":\"no-result\",\"exit\":$SRC_RC,\"message\":\"$why\"}"
	echo "$last" >>"$T/src.out"
	;;
esac
sd=$(field digest "$T/src.out")
dd=$(field digest "$T/dst.out")
VERIFIED=false
[ "$SRC_RC" -eq 0 ] && [ "$DST_RC" -eq 0 ] && [ -n "$sd" ] && [ "$sd" = "$dd" ] && VERIFIED=true
bw=$(grep '^{"round"' "$T/src.out" | sed -n 's/.*"bandwidth_mbps":\([0-9.]*\).*/\1/p' |
	tr '\n' ',' | sed 's/,$//')

num() { # a JSON number or null
	v=$(field "$1" "$T/src.out")
	case $v in '' | null) echo null ;; *) echo "$v" ;; esac
}
printf '{"size":"%s","rate":"%s","rate_bps":%s,"rtt_ms":%s,"relay_delay_us":%s,' \
	"$SIZE" "$RATE" "$RATE_BPS" "$RTT_MS" "$DELAY_US"
printf '"pattern":"%s","dirty_fraction":%s,"dirty_rate_pps":%s,"pinned":"%s","seed":%s,' \
	"$PATTERN" "$DIRTY" "$PPS" "$PINNED" "$SEED"
printf '"drop_at_s":%s,"max_downtime_ms":%s,"no_defer":%s,"policy":"%s",' "${DROP_AT:-null}" \
	"$MAX_DOWNTIME" "$([ -n "$NO_DEFER" ] && echo true || echo false)" "$POLICY"
printf '"status":"%s","verified":%s,"actual_downtime_ms":%s,"predicted_downtime_ms":%s,' \
	"$(field status "$T/src.out")" "$VERIFIED" "$(num actual_downtime_ms)" \
	"$(num predicted_downtime_ms)"
printf '"total_ms":%s,"rounds":%s,"bytes_sent":%s,"pinned_sent_precopy":%s,' \
	"$(num total_ms)" "$(num rounds)" "$(num bytes_sent)" "$(num pinned_sent_precopy)"
printf '"pinned_sent_final":%s,"verdict":"%s","decision":"%s","bandwidth_mbps":[%s],' \
	"$(num pinned_sent_final)" "$(field verdict "$T/src.out")" \
	"$(field decision "$T/src.out")" "$bw"
printf '"source":%s}\n' "$last"
[ "$VERIFIED" = true ]
