# shellcheck shell=sh
# SPDX-License-Identifier: MIT
#
# bench/migration/lib.sh - what run.sh and qemu_side.sh share; sourced (`. "$HERE/lib.sh"`)
# after `set -eu`. The script sets USAGE (the lines of its opening comment that are the usage:
# FIRST,LAST) and PIDS, and has set HERE (this folder).

# shellcheck disable=SC2034 # ROOT and NETNS: for the scripts
ROOT=$(cd "$HERE/../.." && pwd)
NETNS="$HERE/netns.sh"

# usage: the usage on stderr, then exit 2.
usage() {
	sed -n "${USAGE}p" "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# die MESSAGE: the script's name and MESSAGE on stderr, then exit 1.
die() {
	echo "${0##*/}: $*" >&2
	exit 1
}

# is_num VALUE: VALUE is a decimal number (digits, maybe a fraction).
is_num() { echo "$1" | grep -Eq '^[0-9]+(\.[0-9]+)?$'; }

# set_opt "NAME ..." --NAME VALUE: when NAME is one of the list, sets the variable of the same
# name in capitals, - as _, to VALUE (--rtt-ms 2: RTT_MS=2); else usage.
set_opt() {
	for o in $1; do
		if [ "--$o" = "$2" ]; then
			eval "$(echo "$o" | tr 'a-z-' 'A-Z_')=\$3"
			return
		fi
	done
	usage
}

# stop_all: kill every process in PIDS, reap them, and empty PIDS.
stop_all() {
	for p in $PIDS; do
		kill -9 "$p" 2>/dev/null || true
	done
	for p in $PIDS; do
		wait "$p" 2>/dev/null || true
	done
	PIDS=""
}

# cleanup "EXT ..." [DIR ...]: the EXIT trap. Stops PIDS, removes the namespaces, copies the
# files *.EXT of T into KEEP when given, removes T and the DIRs, exits with the script's status.
cleanup() {
	rc=$?
	trap - EXIT INT TERM HUP
	stop_all
	"$NETNS" teardown || true
	if [ -n "$KEEP" ] && mkdir -p "$KEEP"; then
		for e in $1; do
			cp "$T"/*."$e" "$KEEP"/ 2>/dev/null || true
		done
	fi
	shift
	rm -rf "$T" "$@"
	exit $rc
}
