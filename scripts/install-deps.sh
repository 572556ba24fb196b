#!/bin/sh
# Install the Debian packages the build and the tests need, when missing (needs root).
set -e
need="meson ninja-build pkg-config libcmocka-dev clang libclang-rt-14-dev libxxhash-dev libzstd-dev libjson-c-dev"
missing=""
for p in $need; do
	dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "missing packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
	exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq $missing >/dev/null
