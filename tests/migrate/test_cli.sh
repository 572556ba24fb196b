#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tests/migrate/test_cli.sh - `dirtytrack migrate` between two processes.
#
# 1. TCP over loopback, 1 GiB: a destination in the background (port 0, the port read from
#    its "listening tcp 127.0.0.1:PORT" line), a source whose writer dirties a hot set while
#    its fake EMULATED device writes a pinned ring of 64 pages; both dump their final memory,
#    the dumps must be equal byte for byte, and the --json output must show the ring sent
#    once (pinned_sent_precopy 0, pinned_sent_final 64) and the same digest on both sides.
# 2. The same over a UNIX socket with --no-defer (256 MiB, uniform writes): the ring goes in
#    every pre-copy round (pinned_sent_precopy > 0) and again at the end.
# 2b. The writer's other patterns, 64 MiB over TCP: Zipf-hot pages with a pinned ring given as
#    a size (--pinned 1M: 256 pages), and a phase change (--phase-ms 50) with a ring given as a
#    percentage (--pinned 5%: 819 pages); dumps equal and the ring sent once, as in 1.
# 2c. --policy cloud-hypervisor: exactly 6 rounds (the full pass and 5 more), the ring sent in
#    every round; --policy with an unknown name exits 2 naming it.
# 3. The destination killed (kill -9) after the source's first round line: the source exits
#    1 with a message naming the broken stream, writes no dump, and no process is left.
#
# 1 GiB as the issue asks. With the ASan+UBSan build on the 2-core machine, shared with other
# jobs, case 1 takes 15 to 21 s (both sides fault in ~800 MB, and page faults are expensive in
# this PVM guest), the whole script 26 to 37 s; meson's timeout is 300 s.
#
# Usage: test_cli.sh PATH/TO/dirtytrack (meson passes the built executable).
set -u

DT=${1:?usage: test_cli.sh PATH/TO/dirtytrack}
T=$(mktemp -d "${TMPDIR:-/tmp}/dt-migrate-cli.XXXXXX") || exit 1
PIDS=""

cleanup() {
	for p in $PIDS; do
		kill -9 "$p" 2>/dev/null
	done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

now() { date +%s.%N; }
elapsed() { echo "$(now) $1" | awk '{ printf "%.1f", $1 - $2 }'; }

fail() {
	echo "FAIL: $*"
	for f in "$T"/*.out "$T"/*.err; do
		[ -s "$f" ] || continue
		echo "--- $f (last lines)"
		tail -n 12 "$f" | cut -c 1-400
	done
	exit 1
}

# start_dest NAME ENDPOINT [ARGS...]: a destination in the background. Sets DPID, and PORT
# for tcp:127.0.0.1:0.
start_dest() {
	name=$1
	ep=$2
	shift 2
	"$DT" migrate --listen "$ep" "$@" >"$T/$name.dst.out" 2>"$T/$name.dst.err" &
	DPID=$!
	PIDS="$PIDS $DPID"
	n=0
	until grep -q '^listening ' "$T/$name.dst.err"; do
		kill -0 "$DPID" 2>/dev/null || fail "$name: the destination exited before listening"
		n=$((n + 1))
		[ $n -lt 100 ] || fail "$name: no 'listening' line from the destination in 10 s"
		sleep 0.1
	done
	PORT=$(sed -n 's/^listening tcp 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/$name.dst.err")
}

# wait_exit PID SECONDS: returns the exit status of PID; fails if it runs longer.
wait_exit() {
	n=0
	while kill -0 "$1" 2>/dev/null; do
		n=$((n + 1))
		[ $n -le $(($2 * 10)) ] || fail "process $1 still running after $2 s"
		sleep 0.1
	done
	wait "$1"
}

# field KEY FILE: the value of "KEY":... in the last line of FILE (the final JSON object).
field() {
	tail -n 1 "$2" | sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p"
}

expect() { # expect WHAT ACTUAL OP EXPECTED (test(1) operators)
	test "$2" "$3" "$4" 2>/dev/null || fail "$1: expected $3 $4, got '$2'"
}

# A successful migration: NAME ENDPOINT-TO-LISTEN then the source's arguments.
migrate_ok() {
	name=$1
	ep=$2
	shift 2
	start_dest "$name" "$ep" --dump "$T/$name.dst.bin" --json
	to=$ep
	[ -n "$PORT" ] && to="tcp:127.0.0.1:$PORT"
	t0=$(now)
	timeout -k 5 200 "$DT" migrate --to "$to" --dump "$T/$name.src.bin" --json "$@" \
		>"$T/$name.src.out" 2>"$T/$name.src.err"
	rc=$?
	if [ $rc -ne 0 ] && [ "$(field source "$T/$name.src.out")" != uffd-wp ] &&
		[ "$(field status "$T/$name.src.out")" = failed ]; then
		echo "SKIP: no userfaultfd write-protect here (the workload fell back to" \
			"$(field source "$T/$name.src.out"), which cannot converge)"
		exit 77
	fi
	[ $rc -eq 0 ] || fail "$name: the source exited $rc"
	wait_exit "$DPID" 60
	rc=$?
	[ $rc -eq 0 ] || fail "$name: the destination exited $rc"
	echo "$name: migrated in $(elapsed "$t0") s: $(tail -n 1 "$T/$name.src.out" | cut -c 1-300)"
	expect "$name: status" "$(field status "$T/$name.src.out")" = ok
	expect "$name: destination status" "$(field status "$T/$name.dst.out")" = ok
	expect "$name: digest at the destination" "$(field digest "$T/$name.dst.out")" = \
		"$(field digest "$T/$name.src.out")"
	grep -q '^{"round":0,' "$T/$name.src.out" || fail "$name: no JSON line for round 0"
	expect "$name: pages the writer dirtied" "$(field writes "$T/$name.src.out")" -gt 0
	expect "$name: ring writes by the device" "$(field device_writes "$T/$name.src.out")" -gt 0
	t0=$(now)
	cmp "$T/$name.src.bin" "$T/$name.dst.bin" || fail "$name: the dumps differ"
	echo "$name: dumps equal ($(wc -c <"$T/$name.src.bin") bytes, cmp $(elapsed "$t0") s)"
	rm -f "$T/$name.src.bin" "$T/$name.dst.bin"
}

# ---- 1. TCP, 1 GiB, pinned pages deferred ---------------------------------------------------
# Correctness, not timing: the downtime limit is generous, because the source's whole-memory
# digest of 1 GiB alone costs ~100-200 ms on a loaded, sanitized build.
migrate_ok tcp tcp:127.0.0.1:0 --size 1G --seed 7 --dirty-rate 5000 --hot 16384 --pinned 64 \
	--max-downtime 3000
expect "tcp: pinned_sent_precopy" "$(field pinned_sent_precopy "$T/tcp.src.out")" -eq 0
expect "tcp: pinned_sent_final" "$(field pinned_sent_final "$T/tcp.src.out")" -eq 64
expect "tcp: size" "$(field size "$T/tcp.dst.out")" -eq 1073741824

# ---- 2. UNIX socket, no deferral ----------------------------------------------------------
PORT=
migrate_ok unix "unix:$T/sock" --size 256M --seed 8 --dirty-rate 5000 --pinned 64 --no-defer \
	--max-downtime 3000
expect "unix: pinned_sent_precopy" "$(field pinned_sent_precopy "$T/unix.src.out")" -gt 0
expect "unix: pinned_sent_final" "$(field pinned_sent_final "$T/unix.src.out")" -eq 64

# ---- 2b. the writer's patterns, --pinned as a size and as a percentage -------------------
migrate_ok zipf tcp:127.0.0.1:0 --size 64M --seed 9 --dirty-rate 20000 --pattern zipf \
	--pinned 1M --max-downtime 3000
expect "zipf: pinned_sent_final" "$(field pinned_sent_final "$T/zipf.src.out")" -eq 256
migrate_ok phase tcp:127.0.0.1:0 --size 64M --seed 10 --dirty-rate 20000 --pattern phase \
	--phase-ms 50 --pinned 5% --max-downtime 3000
expect "phase: pinned_sent_final" "$(field pinned_sent_final "$T/phase.src.out")" -eq 819

# ---- 2c. another engine's policy (--policy) ------------------------------------------------
# Cloud Hypervisor's rule: 5 copy passes after the full one, whatever the counts, with the
# pinned ring in every pass (no deferral). A name that is no policy is a usage error.
migrate_ok ch tcp:127.0.0.1:0 --size 64M --seed 11 --dirty-rate 20000 --pinned 64 \
	--policy cloud-hypervisor --max-downtime 3000
expect "ch: rounds" "$(field rounds "$T/ch.src.out")" -eq 6
expect "ch: pinned_sent_precopy" "$(field pinned_sent_precopy "$T/ch.src.out")" -gt 0
expect "ch: pinned_sent_final" "$(field pinned_sent_final "$T/ch.src.out")" -eq 64
"$DT" migrate --to tcp:127.0.0.1:1 --size 1M --policy nosuch >/dev/null 2>"$T/policy.err"
expect "--policy nosuch: exit status" $? -eq 2
grep -q "no policy 'nosuch'" "$T/policy.err" || fail "--policy nosuch: no message naming it"

# ---- 3. the destination killed mid-migration ----------------------------------------------
# Paced to 4 MiB/s with a hot set twice that size, so every round lasts about 2 s and the
# migration cannot finish before the kill.
start_dest kill tcp:127.0.0.1:0 --dump "$T/kill.dst.bin"
t0=$(now)
timeout -k 5 120 "$DT" migrate --to "tcp:127.0.0.1:$PORT" --size 16M --dirty-rate 10000 \
	--hot 2048 --pinned 64 --max-bandwidth 4M --dump "$T/kill.src.bin" \
	>"$T/kill.src.out" 2>"$T/kill.src.err" &
SPID=$!
PIDS="$PIDS $SPID"
n=0
until grep -q '^round ' "$T/kill.src.out"; do
	kill -0 "$SPID" 2>/dev/null || fail "kill: the source ended before its first round line"
	n=$((n + 1))
	[ $n -lt 300 ] || fail "kill: no round line from the source in 30 s"
	sleep 0.1
done
kill -9 "$DPID"
wait_exit "$DPID" 10
wait_exit "$SPID" 30
rc=$?
echo "kill: the source exited $rc $(elapsed "$t0") s after it started: $(grep 'migration failed' "$T/kill.src.err")"
expect "kill: the source's exit status" $rc -eq 1
grep -q 'dirtytrack migrate: migration failed after [0-9]* rounds: .*(-[0-9]*)' \
	"$T/kill.src.err" || fail "kill: no 'migration failed' message from the source"
grep -Eq 'Broken pipe|Connection reset' "$T/kill.src.err" ||
	fail "kill: the message does not name the broken stream"
[ ! -e "$T/kill.src.bin" ] || fail "kill: the source wrote a dump of a failed migration"
for p in /proc/[0-9]*; do
	if grep -q "$T" "$p/cmdline" 2>/dev/null; then
		fail "kill: a process is left: $(tr '\0' ' ' <"$p/cmdline")"
	fi
done
echo "PASS"
