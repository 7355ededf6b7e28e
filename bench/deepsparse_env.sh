#!/usr/bin/env bash
# DeepSparse 1.8.0 (the last release; 1.9 does not build) in its own virtualenv, .venv-deepsparse:
# its pins (onnx, numpy) clash with sparsecc's. The benchmarks drive it through
# bench/deepsparse_worker.py in that interpreter. Needs Python 3.11 (DeepSparse ships cp311 wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv-deepsparse/bin/python ]; then
  "$PYTHON" -m venv .venv-deepsparse
fi
if ! .venv-deepsparse/bin/python -c "import deepsparse" 2>/dev/null; then
  .venv-deepsparse/bin/python -m pip install --quiet --upgrade pip
  .venv-deepsparse/bin/python -m pip install --quiet "deepsparse==1.8.0"
fi
.venv-deepsparse/bin/python -c "import deepsparse; print('deepsparse', deepsparse.__version__)"
