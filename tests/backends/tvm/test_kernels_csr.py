"""The CUDA CSR kernel (built to PTX here), and which kernel CSR gets on CPUs."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

os.environ.setdefault("TVM_NUM_THREADS", "2")
tvm = pytest.importorskip("tvm")

from sparsecc.backends.tvm.kernels.csr import make_csr_kernel  # noqa: E402
from sparsecc.backends.tvm.kernels.rules import make_kernel  # noqa: E402
from sparsecc.backends.tvm.target import resolve_target  # noqa: E402
from sparsecc.ops import CsrWeight  # noqa: E402

RNG = np.random.default_rng(7)


def sparse(out: int = 40, inp: int = 72, density: float = 0.1) -> np.ndarray:
    w = RNG.standard_normal((out, inp)).astype(np.float32)
    return w * (RNG.random((out, inp)) < density)


def test_cpu_runs_the_cache_tiled_kernel_with_1x1_blocks():
    kernel = make_kernel(CsrWeight.from_dense(sparse()), None, 10, resolve_target("cpu"))
    assert kernel.name == "csr_tiled_x86" and kernel.runs == "CSR" and kernel.reason.startswith("cache-tiled")


def test_aarch64_neon_build():
    target = resolve_target("aarch64")
    kernel = make_kernel(CsrWeight.from_dense(sparse()), None, 9, target)
    assert kernel.name == "csr_tiled_aarch64"
    asm = tvm.compile(kernel.prim_func, target=target.target).mod.inspect_source("asm")
    assert re.search(r"fmla\s+v\d+\.4s", asm)  # 128-bit NEON FMAs over 4 tokens


@pytest.mark.requires_tool("nvcc", reason="needs nvcc (the CUDA toolkit) on PATH")
def test_cuda_build_emits_ptx(monkeypatch):
    monkeypatch.setenv("TVM_CUDA_COMPILE_MODE", "nvcc")
    target = resolve_target("cuda:sm_90")
    weight = CsrWeight.from_dense(sparse())
    kernel = make_kernel(weight, None, 5, target)
    assert kernel.name == "csr_cuda" and kernel.flops == 2 * 5 * weight.nnz
    module = tvm.compile(kernel.prim_func, target=target.target)
    cuda = module.mod.imports[0]
    source = cuda.inspect_source("cuda")
    assert "__shared__" in source and "__syncthreads" in source
    with target.target:
        ptx = tvm.support.nvcc.compile_cuda(source, target_format="ptx", arch="sm_90", compiler="nvcc")
    ptx = bytes(ptx).decode() if not isinstance(ptx, str) else ptx
    assert ".target sm_90" in ptx and "fma.rn" in ptx


def test_unknown_tiles_are_refused():
    with pytest.raises(ValueError, match="unknown CSR tiles"):
        make_csr_kernel(CsrWeight.from_dense(sparse()), None, 4, resolve_target("cuda"), {"kc": 64})
