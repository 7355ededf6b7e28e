"""Suite-wide settings: verify the IR after every pass, failing schedule rules fail, two TVM threads.

Also `require_tool`: a test that needs an external tool (nvcc, the aarch64 cross compiler, qemu)
skips where the tool is missing on a developer's machine, but FAILS under `CI=true`, where
scripts/test.sh provisions every tool: a CI run that silently skipped them would prove nothing.
"""

from __future__ import annotations

import os
import shutil

import pytest

pytest_plugins = ("tests.decoders",)  # the decoder fixtures (`decoder`, `exported`)

os.environ.setdefault("TVM_NUM_THREADS", "2")


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def require(ok: bool, reason: str) -> None:
    """Skip (locally) or fail (under CI=true) unless `ok`; `reason` says what is missing and how to get it."""
    if ok:
        return
    if in_ci():
        pytest.fail(
            f"{reason} (CI=true: scripts/test.sh provisions it, so a missing tool fails)", pytrace=False
        )
    pytest.skip(reason)


def require_tool(name: str, reason: str | None = None) -> str:
    """The path of executable `name`; skips locally and fails under CI=true when it is not on PATH."""
    path = shutil.which(name)
    require(path is not None, reason or f"needs {name} on PATH")
    return path


def gpu_missing() -> str | None:
    """Why no CUDA GPU is usable here (None: one is): the GPU tests drive kernels with CuPy."""
    try:
        import cupy
    except ImportError:
        return "needs an NVIDIA GPU and CuPy (CI has none; bench/gpu_check.py runs these checks on one)"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as error:
        return f"no CUDA device: {error}"
    return None if count else "no CUDA device"


def pytest_runtest_setup(item):
    """`@pytest.mark.requires_tool("nvcc", reason=...)`: require_tool before the test runs.

    `@pytest.mark.requires_gpu`: skips (also under CI=true, which has no GPU) unless a GPU is present.
    """
    for marker in item.iter_markers("requires_tool"):
        require_tool(*marker.args, **marker.kwargs)
    if item.get_closest_marker("requires_gpu") is not None:
        missing = gpu_missing()
        if missing:
            pytest.skip(missing)


@pytest.fixture(autouse=True)
def verify_ir_after_every_pass(monkeypatch):
    """Like TVM's well-formedness instrument: every pipeline run checks the IR after each pass."""
    monkeypatch.setenv("SPARSECC_VERIFY_EACH", "1")


@pytest.fixture(autouse=True)
def schedule_rules_fail_loudly(monkeypatch):
    """A schedule rule that raises fails the build instead of being logged and skipped (as --debug)."""
    monkeypatch.setenv("SPARSECC_DEBUG", "1")
