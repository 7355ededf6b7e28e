#!/usr/bin/env bash
# Provisions what running aarch64 artifacts under qemu-user needs (the aarch64 qemu test):
#   DIR/root  Debian arm64 python3.11 and the libraries it loads (extracted .debs, no install)
#   DIR/site  aarch64 wheels of apache-tvm, apache-tvm-ffi, numpy (the runtime `sparsecc.load` needs)
# plus the Debian packages qemu-user and g++-aarch64-linux-gnu. Needs root for apt (as in CI).
# Idempotent: a stamp file holding the pins makes a second run instant (and a changed pin re-provisions).
# Usage: bash scripts/aarch64_sysroot.sh [DIR]  (default .cache/aarch64)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.cache/aarch64}
STAMP="$DIR/.provisioned-v1"
WHEELS="apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post0 numpy==2.4.6 typing_extensions==4.16.0"
PACKAGES="python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libgcc-s1 libstdc++6
  libexpat1 zlib1g libffi8 libbz2-1.0 liblzma5 libssl3 libuuid1 libncursesw6 libtinfo6 libsqlite3-0
  libreadline8 libcrypt1 libnsl2 libtirpc3 libdb5.3"
PINS=$(echo $WHEELS $PACKAGES)
if [ "$(cat "$STAMP" 2>/dev/null)" = "$PINS" ] && command -v qemu-aarch64 >/dev/null; then
  exit 0
fi
fail() { echo "aarch64 sysroot: $*" >&2; exit 1; }
command -v apt-get >/dev/null || fail "needs apt-get (Debian/Ubuntu) to fetch qemu-user and arm64 python"
[ "$(id -u)" = 0 ] || fail "needs root for apt-get (run: sudo bash scripts/aarch64_sysroot.sh)"
PY=.venv/bin/python
[ -x "$PY" ] || fail "run scripts/setup.sh first (pip is taken from .venv)"

echo "aarch64 sysroot: qemu-user, the cross compiler and the arm64 package lists"
export DEBIAN_FRONTEND=noninteractive
UPDATED=""
update() { [ -n "$UPDATED" ] || { apt-get update -qq || fail "apt-get update failed"; UPDATED=1; }; }
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
apt-cache show libc6:arm64 >/dev/null 2>&1 || update  # lists are fresh enough unless arm64 is new
TOOLS=""
command -v qemu-aarch64 >/dev/null || TOOLS="qemu-user"
command -v aarch64-linux-gnu-g++ >/dev/null || TOOLS="$TOOLS g++-aarch64-linux-gnu"
install_tools() { apt-get install -y -qq $TOOLS >/dev/null 2>&1; }
[ -z "$TOOLS" ] || install_tools || { update && install_tools; } || fail "cannot install$TOOLS"

# Only the folders this script owns are replaced: DIR itself may be anything the caller chose.
rm -rf "$DIR/debs" "$DIR/root" "$DIR/wheels" "$DIR/site" "$STAMP"
mkdir -p "$DIR/debs" "$DIR/root" "$DIR/wheels"
echo "aarch64 sysroot: arm64 python3.11 into $DIR/root"
download() { (cd "$DIR/debs" && apt-get download -qq $(printf '%s:arm64 ' $PACKAGES) 2>/dev/null); }
download || { [ -z "$UPDATED" ] && update && download; } \
  || fail "apt-get download of the arm64 python3.11 packages failed (no arm64 in the apt sources?)"
for deb in "$DIR"/debs/*.deb; do dpkg-deb -x "$deb" "$DIR/root"; done
rm -rf "$DIR/debs"

echo "aarch64 sysroot: aarch64 wheels into $DIR/site ($WHEELS)"
PLATFORM="--only-binary=:all: --platform manylinux_2_28_aarch64 --python-version 3.11"
"$PY" -m pip download -q --no-deps $PLATFORM -d "$DIR/wheels" $WHEELS || fail "cannot download the aarch64 wheels"
"$PY" -m pip install -q --no-deps $PLATFORM --target "$DIR/site" "$DIR"/wheels/*.whl || fail "cannot unpack the wheels"
rm -rf "$DIR/wheels"
echo "$PINS" >"$STAMP"
echo "aarch64 sysroot: ready in $DIR"
