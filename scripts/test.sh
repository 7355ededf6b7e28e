#!/usr/bin/env bash
# The test suite. Installs what the tests need (the aarch64 cross compiler when root), checks the
# import layers, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# Under CI=true a tool that cannot be provisioned fails the run (its tests would fail too, see
# require_tool in tests/conftest.py); on a developer's machine it is a warning and those tests skip.
provisioning_failed() {
  if [ "${CI:-}" = true ]; then echo "error: $1 (CI=true)" >&2; exit 1; fi
  echo "warning: $1" >&2
}
if { ! command -v aarch64-linux-gnu-g++ || ! command -v chromium; } >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      gcc-aarch64-linux-gnu g++-aarch64-linux-gnu chromium >/dev/null) || provisioning_failed "could not install the aarch64 cross compiler or chromium"
fi
bash scripts/setup.sh
if [ "$(id -u)" = 0 ]; then  # qemu + arm64 python for the test that runs aarch64 artifacts (~10 s, once)
  bash scripts/aarch64_sysroot.sh || provisioning_failed "could not provision the aarch64 sysroot"
fi
if [ "${CI:-}" = true ]; then  # fail here, before the suite, rather than in each test that needs one
  for tool in aarch64-linux-gnu-g++ qemu-aarch64 nvcc; do
    command -v "$tool" >/dev/null || provisioning_failed "$tool is not on PATH (the cross-target tests need it)"
  done
fi
export TVM_NUM_THREADS=${TVM_NUM_THREADS:-$(nproc)}
.venv/bin/lint-imports --no-cache  # the layers contract in pyproject.toml: imports only go down, no cycles
exec .venv/bin/python -m pytest -q "$@"
