"""The CSR (unstructured) kernels against numpy: CPU numerics on odd cases, aarch64 and CUDA builds."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest

os.environ.setdefault("TVM_NUM_THREADS", "2")
tvm = pytest.importorskip("tvm")

from sparsecc.backends.tvm.kernels.csr import csr_tile_space, make_csr_kernel, pack_chunks  # noqa: E402
from sparsecc.backends.tvm.target import resolve_target  # noqa: E402
from sparsecc.ops.formats import CsrWeight  # noqa: E402

CPU = resolve_target("cpu")
RNG = np.random.default_rng(7)


def run(weight: CsrWeight, bias, x: np.ndarray, tiles=None) -> np.ndarray:
    kernel = make_csr_kernel(weight, bias, x.shape[0], CPU, tiles)
    module = tvm.compile(kernel.prim_func, target=CPU.target)
    dev = tvm.cpu()
    y = np.full((x.shape[0], weight.shape[0]), np.nan, np.float32)
    args = [tvm.runtime.tensor(a, dev) for a in (x, *kernel.constants, y)]
    module(*args)
    return args[-1].numpy()


def check(dense: np.ndarray, m: int = 7, with_bias: bool = True, tiles=None) -> None:
    out, inp = dense.shape
    x = RNG.standard_normal((m, inp)).astype(np.float32)
    bias = RNG.standard_normal(out).astype(np.float32) if with_bias else None
    want = x.astype(np.float64) @ dense.T.astype(np.float64) + (0.0 if bias is None else bias)
    got = run(CsrWeight.from_dense(dense), bias, x, tiles)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def sparse(out: int = 40, inp: int = 72, density: float = 0.1) -> np.ndarray:
    w = RNG.standard_normal((out, inp)).astype(np.float32)
    return w * (RNG.random((out, inp)) < density)


@pytest.mark.parametrize("m", [1, 7, 64, 130])
@pytest.mark.parametrize("with_bias", [True, False])
def test_random_sparse_any_m(m, with_bias):
    check(sparse(), m=m, with_bias=with_bias)


def test_rows_without_non_zeros_only_get_the_bias():
    dense = sparse(density=0.3)
    dense[[0, 5, 6, 39]] = 0
    check(dense)


def test_all_zero_weight_one_non_zero_and_fully_dense():
    check(np.zeros((40, 72), np.float32))
    check(np.zeros((40, 72), np.float32), with_bias=False)
    one = np.zeros((40, 72), np.float32)
    one[17, 71] = -2.5
    check(one, m=3, with_bias=False)
    check(RNG.standard_normal((40, 72)).astype(np.float32), m=33)


@pytest.mark.parametrize(
    "tiles",
    [
        {"MT": 16, "KC": 32, "RB": 8},  # three chunks, the last one partial (72 = 32 + 32 + 8)
        {"MT": 32, "KC": 72, "RB": 40},  # one chunk, one task
        {"MT": 16, "KC": 16, "RB": 1},  # a chunk per vector, a task per row
    ],
)
def test_tiles_are_tunable_without_changing_the_result(tiles):
    kernel = make_csr_kernel(CsrWeight.from_dense(sparse()), None, 20, CPU, tiles)
    assert {k: kernel.tiles[k] for k in tiles} == tiles
    check(sparse(density=0.4), m=20, tiles=tiles)


def test_leading_batch_folds_into_m():
    dense = sparse(out=24, inp=48, density=0.2)
    x = RNG.standard_normal((3, 5, 48)).astype(np.float32)
    got = run(CsrWeight.from_dense(dense), None, x.reshape(15, 48)).reshape(3, 5, 24)
    np.testing.assert_allclose(got, x @ dense.T, rtol=1e-5, atol=1e-4)


def test_odd_out_features_and_bad_row_block():
    check(sparse(out=37, inp=50), m=9)
    with pytest.raises(ValueError, match="RB"):
        make_csr_kernel(CsrWeight.from_dense(sparse(out=37)), None, 4, CPU, {"RB": 8})


def test_pack_chunks_orders_non_zeros_by_chunk_then_row():
    dense = np.zeros((2, 8), np.float32)
    dense[0, [1, 6]] = [1, 2]
    dense[1, [0, 5]] = [3, 4]
    values, columns, ptr = pack_chunks(CsrWeight.from_dense(dense), kc=4)
    assert values.tolist() == [1, 3, 2, 4]
    assert columns.tolist() == [1, 0, 6, 5]
    assert ptr.tolist() == [0, 1, 2, 3, 4]


def test_kernel_reports_flops_and_name():
    weight = CsrWeight.from_dense(sparse())
    kernel = make_csr_kernel(weight, None, 10, CPU)
    assert kernel.flops == 2 * 10 * weight.nnz
    assert kernel.name == "csr_x86"


def test_aarch64_neon_build():
    target = resolve_target("aarch64")
    kernel = make_csr_kernel(CsrWeight.from_dense(sparse()), None, 9, target)
    assert kernel.tiles["MT"] % 4 == 0 and kernel.tiles["MT"] <= 16
    module = tvm.compile(kernel.prim_func, target=target.target)
    asm = module.mod.inspect_source("asm")
    assert re.search(r"fmla\s+v\d+\.4s", asm)  # 128-bit NEON FMAs over 4 tokens


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
def test_cuda_build_emits_ptx(monkeypatch):
    monkeypatch.setenv("TVM_CUDA_COMPILE_MODE", "nvcc")
    target = resolve_target("cuda:sm_90")
    kernel = make_csr_kernel(CsrWeight.from_dense(sparse()), None, 5, target)
    module = tvm.compile(kernel.prim_func, target=target.target)
    cuda = module.mod.imports[0]
    source = cuda.inspect_source("cuda")
    assert "__shared__" in source and "__syncthreads" in source
    with target.target:
        ptx = tvm.support.nvcc.compile_cuda(source, target_format="ptx", arch="sm_90", compiler="nvcc")
    ptx = bytes(ptx).decode() if not isinstance(ptx, str) else ptx
    assert ".target sm_90" in ptx and "fma.rn" in ptx


def test_every_tile_candidate_builds_and_is_correct():
    dense = sparse(out=32, inp=48, density=0.3)
    space = csr_tile_space(CsrWeight.from_dense(dense), 20, CPU)
    assert space[0] == make_csr_kernel(CsrWeight.from_dense(dense), None, 20, CPU).tiles
    assert len(space) == len({tuple(sorted(t.items())) for t in space}) > 3
    for tiles in space:
        check(dense, m=20, tiles=tiles)


def test_segments_are_padded_to_the_unroll_factor_with_zeros():
    dense = np.zeros((2, 8), np.float32)
    dense[0, [1, 2, 6]] = [1, 2, 3]
    dense[1, 5] = 4
    values, columns, ptr = pack_chunks(CsrWeight.from_dense(dense), kc=8, unroll=2)
    assert ptr.tolist() == [0, 4, 6]
    assert values.tolist() == [1, 2, 3, 0, 4, 0]
    assert columns.tolist() == [1, 2, 6, 0, 5, 0]


def test_unknown_tiles_are_refused():
    with pytest.raises(ValueError, match="unknown CSR tiles"):
        make_csr_kernel(CsrWeight.from_dense(sparse()), None, 4, CPU, {"kc": 64})
