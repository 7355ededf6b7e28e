"""DeepSparse 1.8.0 as a benchmark candidate, run in its own virtualenv (bench/deepsparse_env.sh).

DeepSparse reads ONNX opset <= 17 and IR version <= 8, so it gets a copy of the model
converted down with onnx's version converter. `available()` says whether the virtualenv
is there; `DeepSparse(path, feeds)` starts a worker process, compiles the model in it and
then answers `median_ms(runs)` (timed inside the worker) and `outputs()`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv-deepsparse" / "bin" / "python"
WORKER = Path(__file__).resolve().parent / "deepsparse_worker.py"
OPSET, IR_VERSION = 17, 8


def available() -> bool:
    return PYTHON.exists()


def downgrade(path: str, out: str) -> None:
    """A copy DeepSparse reads: opset 17, IR version 8."""
    from onnx import version_converter

    model = onnx.load(path)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset > OPSET:
        try:
            model = version_converter.convert_version(model, OPSET)
        except RuntimeError as error:  # e.g. no adapter for Split from 18 to 17
            raise RuntimeError(
                f"cannot convert opset {opset} to {OPSET}: {str(error).splitlines()[-1]}"
            ) from None
    model.ir_version = min(model.ir_version, IR_VERSION)
    onnx.save(model, out)


class DeepSparse:
    def __init__(self, path: str, feeds: dict[str, np.ndarray], threads: int = 2):
        self.work = tempfile.mkdtemp(prefix="deepsparse-")
        model = os.path.join(self.work, "model17.onnx")
        downgrade(path, model)
        inputs = os.path.join(self.work, "inputs.npz")
        np.savez(inputs, **feeds)
        env = dict(os.environ, PYTHONPATH="", NM_NUM_THREADS=str(threads))
        self.process = subprocess.Popen(
            [str(PYTHON), str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        try:
            self.compile_seconds = self._ask({"load": model, "inputs": inputs, "threads": threads})["seconds"]
        except RuntimeError:
            self.close()
            raise

    def _ask(self, command: dict) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"DeepSparse worker exited (code {self.process.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"DeepSparse: {answer['error']}")
        return answer

    def median_ms(self, runs: int) -> float:
        return self._ask({"time": runs})["ms"]

    def outputs(self) -> list[np.ndarray]:
        out = os.path.join(self.work, "outputs.npz")
        self._ask({"run": out})
        with np.load(out) as data:
            return [data[key] for key in sorted(data.files, key=lambda k: int(k.split("_")[1]))]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)
        shutil.rmtree(self.work, ignore_errors=True)
