#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench/migration/netns.sh - two "hosts" on one machine for the migration benchmark.
#
#   netns.sh setup RATE      namespaces dt-src (10.77.0.1/24) and dt-dst (10.77.0.2/24) joined
#                            by a veth pair, each end rate-limited by tbf to RATE (tc syntax:
#                            1gbit, 10gbit, 500mbit); replaces whatever a previous run left
#   netns.sh set-rate RATE   change the rate on both ends (the mid-run drop by half)
#   netns.sh teardown        remove both namespaces (and so the veth pair); idempotent
#   netns.sh run NS CMD...   CMD inside NS (src, dst, or the full name: dt-src, dt-dst)
#   netns.sh status          the namespaces, addresses and qdiscs
#   netns.sh rate-bps RATE   RATE in bits per second (for scripts)
#
# Delay: this kernel has no sch_netem ("Specified qdisc kind is unknown"), so tc cannot add
# any; the RTT comes from delay_relay (a userspace TCP relay, see run.sh). The link here has
# rate only, with a queue of 20 ms at that rate.
#
# Needs root (ip netns, tc). A failed setup removes what it created.
#
# DT_NETNS=NAME (default dt) names everything NAME-src, NAME-dst, NAME-veth-s, NAME-veth-d, so
# that two harnesses on one machine do not tear down each other's link (qemu_side.sh uses dtq).
set -eu

P=${DT_NETNS:-dt}
echo "$P" | grep -Eq '^[a-z][a-z0-9]{0,7}$' || {
	echo "netns.sh: DT_NETNS: 1-8 lowercase letters and digits, not '$P'" >&2
	exit 2
}
SRC=$P-src
DST=$P-dst
VSRC=$P-veth-s # the end in $SRC
VDST=$P-veth-d # the end in $DST

die() {
	echo "netns.sh: $*" >&2
	exit 1
}

need_root() {
	[ "$(id -u)" -eq 0 ] ||
		die "needs root (it creates network namespaces and tc qdiscs); run it as root"
	command -v ip >/dev/null 2>&1 || die "no 'ip' command (iproute2)"
	command -v tc >/dev/null 2>&1 || die "no 'tc' command (iproute2)"
}

# rate_bps RATE: bits per second of a tc rate (bit, kbit, mbit, gbit; bps, kbps, mbps,
# gbps are bytes). Fails on anything else.
rate_bps() {
	echo "$1" | awk '
		match($0, /^[0-9]+(\.[0-9]+)?/) {
			v = substr($0, 1, RLENGTH); u = tolower(substr($0, RLENGTH + 1))
			m["bit"] = 1; m["kbit"] = 1e3; m["mbit"] = 1e6; m["gbit"] = 1e9; m["tbit"] = 1e12
			m["bps"] = 8; m["kbps"] = 8e3; m["mbps"] = 8e6; m["gbps"] = 8e9
			if (u in m && v > 0) { printf "%.0f\n", v * m[u]; ok = 1 }
		}
		END { exit !ok }' || die "bad rate '$1' (expected e.g. 1gbit, 10gbit, 500mbit)"
}

# shape NS DEV RATE: tbf on DEV, burst 1 ms at the rate (at least 64 KiB: a GSO segment),
# queue 20 ms.
shape() {
	bps=$(rate_bps "$3")
	burst=$(awk -v b="$bps" 'BEGIN { x = b / 8 / 1000; if (x < 262144) x = 262144; printf "%d", x }')
	ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate "$3" burst "$burst" latency 20ms
}

teardown() {
	for ns in "$SRC" "$DST"; do
		if ip netns list 2>/dev/null | grep -qw "^$ns"; then
			ip netns del "$ns" 2>/dev/null || true
		fi
	done
	# A veth end left in the root namespace by an interrupted setup.
	ip link del "$VSRC" 2>/dev/null || true
	ip link del "$VDST" 2>/dev/null || true
}

setup() {
	rate_bps "$1" >/dev/null
	teardown
	trap 'teardown' EXIT
	trap 'exit 1' INT TERM HUP
	ip netns add "$SRC"
	ip netns add "$DST"
	ip link add "$VSRC" type veth peer name "$VDST"
	ip link set "$VSRC" netns "$SRC"
	ip link set "$VDST" netns "$DST"
	ip -n "$SRC" addr add 10.77.0.1/24 dev "$VSRC"
	ip -n "$DST" addr add 10.77.0.2/24 dev "$VDST"
	for ns in "$SRC" "$DST"; do
		ip -n "$ns" link set lo up
	done
	ip -n "$SRC" link set "$VSRC" up
	ip -n "$DST" link set "$VDST" up
	shape "$SRC" "$VSRC" "$1"
	shape "$DST" "$VDST" "$1"
	if command -v ping >/dev/null 2>&1; then
		ip netns exec "$SRC" ping -c 1 -W 2 10.77.0.2 >/dev/null 2>&1 ||
			die "setup: $SRC cannot reach 10.77.0.2"
	fi
	trap - EXIT INT TERM HUP
}

set_rate() {
	rate_bps "$1" >/dev/null
	ip netns list | grep -qw "^$SRC" || die "set-rate: no namespace $SRC (run setup first)"
	shape "$SRC" "$VSRC" "$1"
	shape "$DST" "$VDST" "$1"
}

ns_name() {
	case $1 in
	src | "$SRC") echo "$SRC" ;;
	dst | "$DST") echo "$DST" ;;
	*) die "run: unknown namespace '$1' (src or dst)" ;;
	esac
}

usage() {
	echo "usage: netns.sh setup RATE | set-rate RATE | teardown | run src|dst CMD... | status | rate-bps RATE" >&2
	exit 2
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
setup)
	[ $# -eq 1 ] || usage
	need_root
	setup "$1"
	;;
set-rate)
	[ $# -eq 1 ] || usage
	need_root
	set_rate "$1"
	;;
teardown)
	[ $# -eq 0 ] || usage
	need_root
	teardown
	;;
run)
	[ $# -ge 2 ] || usage
	need_root
	ns=$(ns_name "$1")
	shift
	exec ip netns exec "$ns" "$@"
	;;
rate-bps)
	[ $# -eq 1 ] || usage
	rate_bps "$1"
	;;
status)
	need_root
	for ns in "$SRC" "$DST"; do
		echo "== $ns"
		ip -n "$ns" -br addr 2>/dev/null || echo "(absent)"
		ip netns exec "$ns" tc qdisc show 2>/dev/null | grep tbf || true
	done
	;;
*) usage ;;
esac
