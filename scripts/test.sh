#!/usr/bin/env bash
# The test suite. Installs what the tests need (the aarch64 cross compiler when root), checks the
# import layers, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v aarch64-linux-gnu-g++ >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      gcc-aarch64-linux-gnu g++-aarch64-linux-gnu >/dev/null) || echo "warning: could not install the aarch64 cross compiler"
fi
bash scripts/setup.sh
if [ "$(id -u)" = 0 ]; then  # qemu + arm64 python for the test that runs aarch64 artifacts (~10 s, once)
  bash scripts/aarch64_sysroot.sh || echo "warning: could not provision the aarch64 sysroot"
fi
export TVM_NUM_THREADS=${TVM_NUM_THREADS:-$(nproc)}
.venv/bin/lint-imports --no-cache  # the layers contract in pyproject.toml: imports only go down, no cycles
exec .venv/bin/python -m pytest -q "$@"
