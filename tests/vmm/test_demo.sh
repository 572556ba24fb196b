#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tests/vmm/test_demo.sh - `dirtytrack demo` and `dirtytrack vm` as a user runs them.
#
# 1. demo: exit 0, a line per round, the three checks PASS, pinned pages only in
#    stop-and-copy.
# 2. demo --no-device-tracking: exit 1, check 1 FAIL naming stale pages of the devices, the
#    guest's own check PASS (the README promises exactly this).
# 3. vm migrate-in / migrate-out by hand over TCP with --json: both sides agree on the digest
#    and the destination says ok.
# 4. demo without KVM (DIRTYTRACK_DEMO_NO_KVM=1): says so and migrates a process workload.
# 5. demo --vfio-user: the logging device in its own process on each side; the three checks
#    PASS; with --no-device-tracking check 1 fails naming the remote device's stale pages;
#    no device server is left running.
# 6. dirtytrack vfio-user-device by hand: vm migrate-out/in --device vfio-user:PATH.
#
# Exits 77 without /dev/kvm. Small VMs (128 MiB) keep it to a few seconds.
set -u

DT=${1:?usage: test_demo.sh PATH/TO/dirtytrack}
[ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo "no /dev/kvm; skipped"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/dt-demo.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
fail=0

listen_port() { # FILE: the port of its "listening tcp 127.0.0.1:PORT" line (10 s at most)
	for _ in $(seq 100); do
		p=$(sed -n 's/^listening tcp 127.0.0.1:\([0-9]*\)$/\1/p' "$1")
		[ -n "$p" ] && break
		sleep 0.1
	done
	echo "$p"
}

expect_grep() { # what pattern file
	if grep -q -- "$2" "$3"; then
		echo "ok: $1"
	else
		echo "FAIL: $1: no line matches '$2' in:"
		cat "$3"
		fail=1
	fi
}

"$DT" demo --mem-mib 128 >"$T/demo.out" 2>&1
rc=$?
[ $rc -eq 0 ] || { echo "FAIL: demo exited $rc"; fail=1; }
expect_grep "demo: round lines" "^round 1 .*downtime" "$T/demo.out"
expect_grep "demo: check 1" "^check 1, memory at switchover: PASS" "$T/demo.out"
expect_grep "demo: check 2" "^check 2, guest self-check on the destination: PASS" "$T/demo.out"
expect_grep "demo: check 3" "^check 3, devices resumed: PASS (4 of 4 states loaded, 4 writing" \
	"$T/demo.out"
expect_grep "demo: deferral" "pinned pages: 0 before the pause, 32 in stop-and-copy" "$T/demo.out"

"$DT" demo --mem-mib 128 --no-device-tracking >"$T/neg.out" 2>&1
rc=$?
[ $rc -eq 1 ] || { echo "FAIL: demo --no-device-tracking exited $rc, not 1"; fail=1; }
expect_grep "negative: check 1 fails" "^check 1, memory at switchover: FAIL" "$T/neg.out"
expect_grep "negative: stale pages named" "^  device emulated: [1-9][0-9]* stale pages, first at gpa 0x" \
	"$T/neg.out"
expect_grep "negative: guest intact" "^check 2, guest self-check on the destination: PASS" \
	"$T/neg.out"

"$DT" vm migrate-in --listen tcp:127.0.0.1:0 --mem-mib 128 --json >"$T/in.out" 2>"$T/in.err" &
in_pid=$!
port=$(listen_port "$T/in.err")
if [ -z "$port" ]; then
	echo "FAIL: vm migrate-in did not say where it listens"
	cat "$T/in.err"
	kill -9 $in_pid 2>/dev/null
	fail=1
else
	"$DT" vm migrate-out --to "tcp:127.0.0.1:$port" --mem-mib 128 --json >"$T/out.out" 2>&1
	rc=$?
	wait $in_pid
	rc_in=$?
	[ $rc -eq 0 ] && [ $rc_in -eq 0 ] || { echo "FAIL: vm sides exited $rc, $rc_in"; fail=1; }
	d_out=$(sed -n 's/.*"source":.*"digest":"\([0-9a-f]*\)".*/\1/p' "$T/out.out")
	d_in=$(sed -n 's/.*"destination":.*"digest":"\([0-9a-f]*\)".*/\1/p' "$T/in.out")
	if [ -n "$d_out" ] && [ "$d_out" = "$d_in" ]; then
		echo "ok: vm by hand: digest $d_out on both sides"
	else
		echo "FAIL: vm by hand: digests '$d_out' and '$d_in'"
		fail=1
	fi
	expect_grep "vm by hand: destination ok" '"ok":true' "$T/in.out"
fi

# 5. Across a process boundary (vfio-user), only when built with it.
if "$DT" vfio-user-device --help >/dev/null 2>&1; then
	"$DT" demo --vfio-user --mem-mib 128 >"$T/vfu.out" 2>&1
	rc=$?
	[ $rc -eq 0 ] || { echo "FAIL: demo --vfio-user exited $rc"; cat "$T/vfu.out"; fail=1; }
	expect_grep "vfio-user: servers" "^device servers: logging device in pid" "$T/vfu.out"
	expect_grep "vfio-user: remote device" "devices: emulated logging (vfio-user)" "$T/vfu.out"
	expect_grep "vfio-user: check 1" "^check 1, memory at switchover: PASS" "$T/vfu.out"
	expect_grep "vfio-user: check 3" "^check 3, devices resumed: PASS (4 of 4" "$T/vfu.out"
	"$DT" demo --vfio-user --mem-mib 128 --no-device-tracking --devices none \
		>"$T/vfuneg.out" 2>&1
	rc=$?
	[ $rc -eq 1 ] || { echo "FAIL: demo --vfio-user --no-device-tracking exited $rc"; fail=1; }
	expect_grep "vfio-user negative: stale pages of the remote device" \
		"^  device logging: [1-9][0-9]* stale pages, first at gpa 0x" "$T/vfuneg.out"
	sleep 0.5
	if pgrep -f "dirtytrack-demo-.*sock" >/dev/null; then
		echo "FAIL: a device server of the demo is left running"
		fail=1
	fi
	# 6. By hand: a server per side, the VM with --device.
	"$DT" vfio-user-device --socket "$T/s.sock" --once 2>"$T/s.err" &
	s_pid=$!
	"$DT" vfio-user-device --socket "$T/d.sock" --once 2>"$T/d.err" &
	d_pid=$!
	for _ in $(seq 100); do
		[ -S "$T/s.sock" ] && [ -S "$T/d.sock" ] && break
		sleep 0.1
	done
	"$DT" vm migrate-in --listen tcp:127.0.0.1:0 --mem-mib 128 --devices none \
		--device "vfio-user:$T/d.sock" --json >"$T/vin.out" 2>"$T/vin.err" &
	in_pid=$!
	port=$(listen_port "$T/vin.err")
	"$DT" vm migrate-out --to "tcp:127.0.0.1:${port:-1}" --mem-mib 128 --devices none \
		--device "vfio-user:$T/s.sock" --json >"$T/vout.out" 2>&1
	rc=$?
	wait $in_pid
	rc_in=$?
	[ $rc -eq 0 ] && [ $rc_in -eq 0 ] || { echo "FAIL: vm --device sides exited $rc, $rc_in"; fail=1; }
	expect_grep "vm --device vfio-user: destination ok" '"devices_loaded":1,"devices_running":1,"ok":true' \
		"$T/vin.out"
	wait $s_pid
	rc=$?
	wait $d_pid
	rc_in=$?
	[ $rc -eq 0 ] && [ $rc_in -eq 0 ] || { echo "FAIL: device servers exited $rc, $rc_in"; fail=1; }
	"$DT" vm run --mem-mib 128 --device "vfio-user:$T/none.sock" >"$T/nosock.out" 2>&1
	rc=$?
	[ $rc -ne 0 ] || { echo "FAIL: vm run with no server at the path exited 0"; fail=1; }
	expect_grep "vm --device: no server named" "vfio-user device at $T/none.sock" "$T/nosock.out"
fi

DIRTYTRACK_DEMO_NO_KVM=1 "$DT" demo >"$T/nokvm.out" 2>&1
rc=$?
[ $rc -eq 0 ] || { echo "FAIL: demo without KVM exited $rc"; fail=1; }
expect_grep "no KVM: says so" "^no usable /dev/kvm" "$T/nokvm.out"
expect_grep "no KVM: migrated" "verified by the destination" "$T/nokvm.out"
exit $fail
