#!/usr/bin/env bash
# Provisions what running aarch64 artifacts under qemu-user needs (the aarch64 qemu test):
#   DIR/root  Debian arm64 python3.11 and the libraries it loads (extracted .debs, no install)
#   DIR/site  aarch64 wheels of apache-tvm, apache-tvm-ffi, numpy (the runtime `sparsecc.load` needs)
# plus the qemu-user Debian package. Needs root for apt (as in CI). Idempotent: a stamp file
# makes a second run instant. Usage: bash scripts/aarch64_sysroot.sh [DIR]  (default .cache/aarch64)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.cache/aarch64}
STAMP="$DIR/.provisioned-v1"
[ -f "$STAMP" ] && exit 0
fail() { echo "aarch64 sysroot: $*" >&2; exit 1; }
command -v apt-get >/dev/null || fail "needs apt-get (Debian/Ubuntu) to fetch qemu-user and arm64 python"
[ "$(id -u)" = 0 ] || fail "needs root for apt-get (run: sudo bash scripts/aarch64_sysroot.sh)"
PY=.venv/bin/python
[ -x "$PY" ] || fail "run scripts/setup.sh first (pip is taken from .venv)"

echo "aarch64 sysroot: qemu-user and the arm64 package lists"
export DEBIAN_FRONTEND=noninteractive
command -v qemu-aarch64 >/dev/null || apt-get install -y -qq qemu-user >/dev/null 2>&1 \
  || (apt-get update -qq && apt-get install -y -qq qemu-user >/dev/null) || fail "cannot install qemu-user"
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
apt-get update -qq || fail "apt-get update failed"

rm -rf "$DIR" && mkdir -p "$DIR/debs" "$DIR/root" "$DIR/wheels"
echo "aarch64 sysroot: arm64 python3.11 into $DIR/root"
PACKAGES="python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libgcc-s1 libstdc++6
  libexpat1 zlib1g libffi8 libbz2-1.0 liblzma5 libssl3 libuuid1 libncursesw6 libtinfo6 libsqlite3-0
  libreadline8 libcrypt1 libnsl2 libtirpc3 libdb5.3"
(cd "$DIR/debs" && apt-get download -qq $(printf '%s:arm64 ' $PACKAGES) 2>/dev/null) || fail "cannot download the arm64 packages"
for deb in "$DIR"/debs/*.deb; do dpkg-deb -x "$deb" "$DIR/root"; done
rm -rf "$DIR/debs"

echo "aarch64 sysroot: aarch64 wheels into $DIR/site"
PLATFORM="--only-binary=:all: --platform manylinux_2_28_aarch64 --python-version 3.11"
"$PY" -m pip download -q --no-deps $PLATFORM -d "$DIR/wheels" \
  apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post0 numpy==2.4.6 typing_extensions==4.16.0 \
  || fail "cannot download the aarch64 wheels"
"$PY" -m pip install -q --no-deps $PLATFORM --target "$DIR/site" "$DIR"/wheels/*.whl || fail "cannot unpack the wheels"
rm -rf "$DIR/wheels"
touch "$STAMP"
echo "aarch64 sysroot: ready in $DIR"
