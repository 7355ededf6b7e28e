"""Helpers shared by the BSR and dense kernel tests: build, run against numpy, cross builds."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import tvm

from sparsecc.backends.tvm.kernels.rules import make_kernel
from tests.weights import split

EM_AARCH64 = 183
# An AVX-512 x86 target for tests that only build and read the code: hosts differ (AVX2 or AVX-512).
AVX512_TARGET = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "icelake-server", "num-cores": 2}


def run_kernel(weight, bias, x, target, tiles=None) -> np.ndarray:
    """Y from the kernel; Y starts as NaN so an output the kernel never writes fails the check."""
    return run_built(make_kernel(weight, bias, x.shape[0], target, tiles), x, target)


def run_built(kernel, x, target) -> np.ndarray:
    module = tvm.compile(kernel.prim_func, target=target.target)
    dev = tvm.cpu()
    out = kernel.constants[-1].shape[0]  # every kernel's last constant is the bias [out]
    y = np.full((x.shape[0], out), np.nan, np.float32)
    args = [tvm.runtime.tensor(a, dev) for a in (x, *kernel.constants, y)]
    module(*args)
    return args[-1].numpy()


def check_kernel(kernel, weight, bias, m, target=None) -> None:
    """A built Kernel object (e.g. a tuned one) against numpy, same tolerance as `check`.

    `weight` is the test's dense (masked) array or an `Encoded` pair (tests/weights.py)."""
    from sparsecc.backends.tvm.target import resolve_target

    _, dense = split(weight)
    x = np.random.default_rng(1).standard_normal((m, dense.shape[1])).astype(np.float32)
    want = x.astype(np.float64) @ dense.T.astype(np.float64) + bias
    got = run_built(kernel, x, target or resolve_target("cpu"))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def check(weight, target, m=7, bias=True, rng=None, tiles=None) -> None:
    """Kernel output == x @ W.T + b, rtol 1e-4 and atol 1e-4 scaled by the output's magnitude.

    W is the test's masked array: `weight` is a dense array or an `Encoded` pair (tests/weights.py)."""
    rng = rng or np.random.default_rng(0)
    weight, dense = split(weight)
    out, inp = dense.shape
    x = rng.standard_normal((m, inp)).astype(np.float32)
    b = rng.standard_normal(out).astype(np.float32) if bias else None
    want = x.astype(np.float64) @ dense.T.astype(np.float64) + (0.0 if b is None else b)
    got = run_kernel(weight, b, x, target, tiles)
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)


def cuda_ptx(weight, bias, m, target) -> str:
    """Build for CUDA and compile the generated source to PTX with nvcc (no GPU needed)."""
    from tvm.support import nvcc

    kernel = make_kernel(weight, bias, m, target)
    module = tvm.compile(kernel.prim_func, target=target.target)
    (device,) = [mod for mod in module.mod.imports if mod.kind == "cuda"]
    source = device.inspect_source("cuda")
    with target.target:
        ptx = nvcc.compile_cuda(source, target_format="ptx", arch=target.target_dict["arch"], compiler="nvcc")
    return bytes(ptx).decode() if not isinstance(ptx, str) else ptx


def aarch64_build(weight, m, target, tmp_path) -> tuple[str, bytes | None]:
    """NEON assembly of the kernel, and its shared object when the cross compiler exists."""
    from sparsecc.backends.tvm.export import export_library

    kernel = make_kernel(weight, None, m, target)
    module = tvm.compile(kernel.prim_func, target=target.target)
    asm = module.mod.inspect_source("asm")
    if shutil.which("aarch64-linux-gnu-g++") is None:
        return asm, None
    path = tmp_path / "kernel.so"
    export_library(module, path, "aarch64")
    return asm, path.read_bytes()


def elf_machine(library: bytes) -> int:
    assert library[:4] == b"\x7fELF" and library[4] == 2  # 64-bit ELF
    return struct.unpack_from("<H", library, 18)[0]
