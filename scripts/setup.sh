#!/usr/bin/env bash
# Creates ./.venv (once) with sparsecc and everything its demo and tests need.
# torch is pinned to the CPU build (a looser pin pulls a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.sparsecc-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".[torch,tvm,test]"
  # apache-tvm pulls the newest apache-tvm-ffi, whose save_json segfaults: pin it last.
  .venv/bin/python -m pip install --quiet "apache-tvm-ffi==0.1.14.post0"
  touch "$stamp"
fi
