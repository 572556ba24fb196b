#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench/migration/qemu_side.sh - the same guest, the same memory, the same link, migrated by a
# real QEMU and by dirtytrack (`dirtytrack vm migrate-out`), side by side.
#
#   qemu_side.sh [--size MIB] [--rate RATE] [--rtt-ms MS] [--workloads "idle light ..."]
#                [--reps N] [--warmup S] [--timeout S] [--engines "qemu ours"]
#                [--accel kvm|tcg] [--max-downtime MS] [--out FILE] [--keep DIR]
#                [--dt PATH] [--relay PATH] [--image PATH]
#
# Workloads (the payload's mailbox parameters; the guest runs unpaced on both sides, since a
# PC has no tick exit to pace it: --iter-rate 0 for the micro-VM):
#   idle      hot=1 sweep=0: one page and the mailbox rewritten (the micro-VM's destination
#             wants at least one stamped page for the guest's self-check)
#   light     hot=1024 sweep=64: 4 MiB rewritten every iteration, 64 new pages each
#   moderate  hot=4096 sweep=256: 16 MiB rewritten every iteration, 256 new pages each
#   heavy     hot=0 sweep=256: a sweep as fast as the guest writes (several x a 1 Gbit link)
#   H:S       hot=H sweep=S
#
# 1. Installs qemu-system-x86 with apt-get if qemu-system-x86_64 is missing; checks that
#    QEMU starts with -accel kvm (else tcg, and says why on stderr; --accel forces one).
# 2. DT_NETNS=dtq netns.sh setup RATE (namespaces dtq-src / dtq-dst, apart from run.sh's
#    dt-*; tbf at RATE on both veth ends); with --rtt-ms > 0 a delay_relay in dtq-dst in
#    front of either destination.
# 3. Per workload x repetition (the engines' order reversed every other one): QEMU (the
#    Multiboot image build-release/vmm/guest/guest-mb.bin, -m MIB, destination -incoming -S
#    in dtq-dst, source in dtq-src, qemu_migrate.py drives both over QMP: downtime-limit
#    MAX_DOWNTIME, max-bandwidth = the link), then dirtytrack (`vm migrate-in` in dtq-dst,
#    `vm migrate-out` in dtq-src, --devices none).
# 4. One JSON line per run on stdout (and appended to --out), then qemu_side_table.py's table.
#
# Needs root. Everything it starts is killed and the namespaces are removed on exit (trap).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh" # ROOT, NETNS, usage, die, is_num, set_opt, stop_all, cleanup
USAGE=4,20 # usage: lines 4 to 20 of the comment above
# Our own namespaces (dtq-src, dtq-dst): run.sh and sweep.sh use dt-*, and a setup or teardown
# of one harness must not cut the other's link.
DT_NETNS=${DT_NETNS:-dtq}
export DT_NETNS

SIZE=1024
RATE=1gbit
RTT_MS=0
WORKLOADS="idle moderate"
REPS=2
WARMUP=3
TIMEOUT=120
ENGINES="qemu ours"
ACCEL=
MAX_DOWNTIME=300
OUT=
KEEP=
DT=
RELAY=
IMAGE=

while [ $# -gt 0 ]; do
	case $1 in -h | --help) usage ;; esac
	[ $# -ge 2 ] || usage
	set_opt "size rate rtt-ms workloads reps warmup timeout engines accel max-downtime out keep \
		dt relay image" "$1" "$2"
	shift 2
done

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, tc, apt-get); run it as root"
is_num "$SIZE" || die "--size: expected MiB, not '$SIZE'"
is_num "$RTT_MS" || die "--rtt-ms: expected milliseconds, not '$RTT_MS'"
is_num "$REPS" || die "--reps: expected a count, not '$REPS'"
for e in $ENGINES; do
	case $e in qemu | ours) ;; *) die "--engines: qemu and/or ours, not '$e'" ;; esac
done

# workload NAME: sets HOT and SWEEP.
workload() {
	case $1 in
	idle) HOT=1 SWEEP=0 ;;
	light) HOT=1024 SWEEP=64 ;;
	moderate) HOT=4096 SWEEP=256 ;;
	heavy) HOT=0 SWEEP=256 ;;
	*:*)
		HOT=${1%%:*} SWEEP=${1#*:}
		if ! is_num "$HOT" || ! is_num "$SWEEP"; then
			die "workload '$1': expected HOT:SWEEP pages"
		fi
		;;
	*) die "unknown workload '$1' (idle, moderate, heavy or HOT:SWEEP)" ;;
	esac
}
for w in $WORKLOADS; do workload "$w"; done

for d in "$ROOT/build-release" "$ROOT/build"; do
	[ -n "$DT" ] || [ ! -x "$d/tools/dirtytrack" ] || DT="$d/tools/dirtytrack"
	[ -n "$IMAGE" ] || [ ! -f "$d/vmm/guest/guest-mb.bin" ] || IMAGE="$d/vmm/guest/guest-mb.bin"
	[ -n "$RELAY" ] || [ ! -x "$d/bench/migration/delay_relay" ] ||
		RELAY="$d/bench/migration/delay_relay"
done
if [ -z "$DT" ] || [ ! -x "$DT" ]; then
	die "no dirtytrack executable (build it, or give --dt PATH)"
fi
if [ -z "$IMAGE" ] || [ ! -f "$IMAGE" ]; then
	die "no guest-mb.bin (ninja -C build-release builds vmm/guest/guest-mb.bin, or --image)"
fi
[ "$RTT_MS" = 0 ] || [ -x "$RELAY" ] || die "no delay_relay (build it, or give --relay)"

# QEMU: install it if missing (Debian's package), then find out whether KVM works for it.
QEMU=qemu-system-x86_64
if ! command -v $QEMU >/dev/null 2>&1; then
	echo "qemu_side.sh: installing qemu-system-x86" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-system-x86 >&2 ||
		{ apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y \
			qemu-system-x86 >&2; } || die "cannot install qemu-system-x86"
fi
QEMU_VERSION=$($QEMU --version | sed -n '1s/^QEMU emulator version \([^ ]*\).*/\1/p')

T=$(mktemp -d "${TMPDIR:-/tmp}/dt-qemu-side.XXXXXX")
# The two memory dumps of a QEMU run go to tmpfs: written to disk, their writeback would
# still be running during the next run.
SHM=$T
[ ! -d /dev/shm ] || SHM=$(mktemp -d /dev/shm/dt-qemu-side.XXXXXX)
PIDS=""
trap 'cleanup "out err dc" "$SHM"' EXIT
trap 'exit 1' INT TERM HUP

if [ -z "$ACCEL" ]; then
	if echo quit | timeout 20 $QEMU -accel kvm -machine pc -m 64 -nodefaults -display none \
		-S -monitor stdio >"$T/probe.out" 2>"$T/probe.err"; then
		ACCEL=kvm
	else
		ACCEL=tcg
		echo "qemu_side.sh: QEMU cannot use KVM here, using tcg: $(tail -n 1 "$T/probe.err")" >&2
	fi
fi

RATE_BPS=$("$NETNS" rate-bps "$RATE")
LINK_BYTES=$((RATE_BPS / 8))
DELAY_US=$(awk -v r="$RTT_MS" 'BEGIN { printf "%.0f", r * 1000 / 2 }')
"$NETNS" setup "$RATE"

# listen_port FILE PREFIX PID WHAT: the port of FILE's "PREFIX... HOST:PORT" line, once the
# line is whole (its newline written: the digits may come in more than one write).
listen_port() {
	n=0
	until grep -Eq "^$2.*:[0-9]+\$" "$1" 2>/dev/null && tail -c 1 "$1" | od -An -tx1 | grep -q 0a
	do
		kill -0 "$3" 2>/dev/null || die "$4 exited early: $(tail -n 3 "$1" 2>/dev/null)"
		n=$((n + 1))
		[ $n -lt 100 ] || die "$4: no '$2' line in 10 s"
		sleep 0.1
	done
	sed -n "s/^$2.*:\([0-9][0-9]*\)\$/\1/p" "$1" | head -n 1
}

# relay_to PORT NAME: a delay_relay in dtq-dst on 10.77.0.2 forwarding to 127.0.0.1:PORT;
# sets PORT to the relay's.
relay_to() {
	"$NETNS" run dst "$RELAY" --listen 10.77.0.2:0 --connect "127.0.0.1:$1" \
		--delay-us "$DELAY_US" --once >"$T/$2-relay.out" 2>"$T/$2-relay.err" &
	rpid=$!
	PIDS="$PIDS $rpid"
	PORT=$(listen_port "$T/$2-relay.err" 'listening ' "$rpid" delay_relay)
	[ -n "$PORT" ] || die "no port from delay_relay"
}

emit() {
	echo "$1"
	echo "$1" >>"$T/runs.jsonl"
	[ -z "$OUT" ] || echo "$1" >>"$OUT"
}

meta() { # the run's parameters as JSON members
	printf '"size_mib":%s,"rate":"%s","rate_bps":%s,"rtt_ms":%s,"workload":"%s",' \
		"$SIZE" "$RATE" "$RATE_BPS" "$RTT_MS" "$1"
	printf '"hot":%s,"sweep":%s,"rep":%s,"max_downtime_ms":%s,"warmup_s":%s,' \
		"$HOT" "$SWEEP" "$2" "$MAX_DOWNTIME" "$WARMUP"
	# the machine's load when the run ended: other work on the two cores shows up here
	printf '"loadavg_1m":%s' "$(cut -d ' ' -f 1 /proc/loadavg)"
}

run_qemu() { # WORKLOAD REP
	rm -f "$T/src.qmp" "$T/dst.qmp"
	set -- "$1" "$2" $QEMU -accel "$ACCEL" -machine pc -m "$SIZE" -nodefaults -display none \
		-kernel "$IMAGE" -append "hot=$HOT sweep=$SWEEP mem=$SIZE"
	w=$1 rep=$2
	shift 2
	if [ "$DELAY_US" -gt 0 ]; then
		inc=tcp:127.0.0.1:4444
	else
		inc=tcp:10.77.0.2:4444
	fi
	"$NETNS" run dst "$@" -S -incoming "$inc" -debugcon "file:$T/qemu-dst.dc" \
		-qmp "unix:$T/dst.qmp,server=on,wait=off" >"$T/qemu-dst.out" 2>"$T/qemu-dst.err" &
	PIDS="$PIDS $!"
	PORT=4444
	[ "$DELAY_US" -eq 0 ] || relay_to 4444 qemu
	"$NETNS" run src "$@" -debugcon "file:$T/qemu-src.dc" \
		-qmp "unix:$T/src.qmp,server=on,wait=off" >"$T/qemu-src.out" 2>"$T/qemu-src.err" &
	PIDS="$PIDS $!"
	set +e
	line=$(timeout -k 5 $((TIMEOUT + 120)) python3 "$HERE/qemu_migrate.py" --src "$T/src.qmp" \
		--dst "$T/dst.qmp" --uri "tcp:10.77.0.2:$PORT" --mem-mib "$SIZE" --hot "$HOT" \
		--sweep "$SWEEP" --bandwidth "$LINK_BYTES" --downtime-ms "$MAX_DOWNTIME" \
		--warmup "$WARMUP" --timeout "$TIMEOUT" --dump-dir "$SHM" 2>"$T/qemu-migrate.err")
	set -e
	stop_all
	rm -f "$SHM/src.mem" "$SHM/dst.mem"
	case $line in
	'{'*) ;;
	*) line="{\"engine\":\"qemu\",\"status\":\"no-result\",\"converged\":false,\"verified\":false}" ;;
	esac
	emit "$(printf '{%s,"accel":"%s","qemu_version":"%s",%s' "$(meta "$w" "$rep")" "$ACCEL" \
		"$QEMU_VERSION" "${line#\{}")"
}

run_ours() { # WORKLOAD REP
	w=$1 rep=$2
	set -- --mem-mib "$SIZE" --hot "$HOT" --sweep "$SWEEP" --iter-rate 0 --devices none --json
	if [ "$DELAY_US" -gt 0 ]; then
		lst=tcp:127.0.0.1:0
	else
		lst=tcp:10.77.0.2:0
	fi
	"$NETNS" run dst "$DT" vm migrate-in --listen "$lst" "$@" >"$T/ours-dst.out" \
		2>"$T/ours-dst.err" &
	dpid=$!
	PIDS="$PIDS $dpid"
	PORT=$(listen_port "$T/ours-dst.err" 'listening tcp ' "$dpid" "the destination")
	[ -n "$PORT" ] || die "no port from the destination"
	[ "$DELAY_US" -eq 0 ] || relay_to "$PORT" ours
	set +e
	timeout -k 5 "$TIMEOUT" "$NETNS" run src "$DT" vm migrate-out --to "tcp:10.77.0.2:$PORT" \
		"$@" --warmup "$WARMUP" --max-downtime "$MAX_DOWNTIME" >"$T/ours-src.out" \
		2>"$T/ours-src.err"
	n=0
	while kill -0 "$dpid" 2>/dev/null && [ $n -lt 300 ]; do
		n=$((n + 1))
		sleep 0.1
	done
	set -e
	stop_all
	emit "$(python3 "$HERE/qemu_side_table.py" ours --src "$T/ours-src.out" \
		--dst "$T/ours-dst.out" --meta "{$(meta "$w" "$rep")}")"
}

for w in $WORKLOADS; do
	workload "$w"
	rep=1
	while [ "$rep" -le "$REPS" ]; do
		# odd repetitions in the order given, even ones reversed: neither engine always
		# runs right after the other
		order=$ENGINES
		[ $((rep % 2)) -eq 1 ] ||
			order=$(echo "$ENGINES" | awk '{ for (i = NF; i; i--) printf "%s ", $i }')
		for e in $order; do
			sleep 1
			echo "qemu_side.sh: $e, $w (hot $HOT, sweep $SWEEP), ${SIZE} MiB, $RATE, rep $rep" >&2
			"run_$e" "$w" "$rep"
			[ -z "$KEEP" ] || { mkdir -p "$KEEP/$w-$rep" && cp "$T"/*.out "$T"/*.err \
				"$T"/*.dc "$KEEP/$w-$rep/" 2>/dev/null; } || true
		done
		rep=$((rep + 1))
	done
done
python3 "$HERE/qemu_side_table.py" table "$T/runs.jsonl" >&2
