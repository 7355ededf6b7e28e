"""Helpers for the bf16-weight kernel tests: run a kernel against the float32 numpy reference."""

from __future__ import annotations

import dataclasses

import numpy as np

from sparsecc.backends.tvm.kernels.rules import make_kernel
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.ops.precision import TOLERANCE, within_tolerance
from tests.backends.tvm.kernel_checks import run_built
from tests.weights import split

CPU = resolve_target("cpu")
# The same host without AVX512-BF16: the widening (shift + float32 FMA) path.
NO_BF16_DOT = dataclasses.replace(CPU, target_dict={**CPU.target_dict, "mattr": ["-avx512bf16"]})


def check_bf16(weight, target, m, rng, bias=True, tiles=None):
    """The bf16 kernel's Y against x @ W.T + b in float64 with the float32 weights (not rounded):
    within TOLERANCE["bfloat16"] of max |Y|. Returns the kernel."""
    weight, dense = split(weight)
    out, inp = dense.shape
    x = rng.standard_normal((m, inp)).astype(np.float32)
    b = rng.standard_normal(out).astype(np.float32) if bias else None
    want = x.astype(np.float64) @ dense.T.astype(np.float64) + (0.0 if b is None else b)
    kernel = make_kernel(weight, b, m, target, tiles, dtype="bfloat16")
    got = run_built(kernel, x, target)
    assert not np.isnan(got).any(), "an output was never written"
    ok, relative = within_tolerance(got, want, "bfloat16")
    assert ok, f"{kernel.name}: error {relative:.2e} of max |Y| > {TOLERANCE['bfloat16']}"
    return kernel
