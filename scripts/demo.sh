#!/usr/bin/env bash
# The demo: sparsify the bundled BERT-style model, check it with onnxruntime, show the gains.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TVM_NUM_THREADS=${TVM_NUM_THREADS:-$(nproc)}
exec .venv/bin/sparsecc demo "$@"
