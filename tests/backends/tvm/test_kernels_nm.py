"""The N:M kernels against numpy: the x86 lane permute for several N:M and odd cases, what runs
where it does not apply (dense, with the reason), and the CUDA build."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TVM_NUM_THREADS", "2")
tvm = pytest.importorskip("tvm")

from sparsecc.backends.tvm.kernels.nm import make_nm_kernel, nm_tile_space, pack_permute  # noqa: E402
from sparsecc.backends.tvm.kernels.rules import make_kernel  # noqa: E402
from sparsecc.backends.tvm.target import resolve_target  # noqa: E402
from sparsecc.ops import NmWeight  # noqa: E402
from tests.backends.tvm.kernel_checks import AVX512_TARGET  # noqa: E402

CPU = resolve_target("cpu")
AVX512 = resolve_target(AVX512_TARGET)  # built and read only: this host may lack AVX-512
RNG = np.random.default_rng(5)


def nm_dense(out: int, inp: int, n: int, m: int) -> np.ndarray:
    """A random weight with exactly the n largest of every m inputs kept."""
    w = RNG.standard_normal((out, inp)).astype(np.float32)
    groups = np.abs(w).reshape(out, inp // m, m)
    keep = np.argsort(-groups, axis=2)[:, :, :n]
    mask = np.zeros_like(groups, bool)
    np.put_along_axis(mask, keep, True, axis=2)
    return w * mask.reshape(out, inp)


def run(weight: NmWeight, bias, x: np.ndarray, tiles=None, target=CPU) -> np.ndarray:
    kernel = make_kernel(weight, bias, x.shape[0], target, tiles)
    module = tvm.compile(kernel.prim_func, target=target.target)
    dev = tvm.cpu()
    y = np.full((x.shape[0], weight.shape[0]), np.nan, np.float32)
    args = [tvm.runtime.tensor(a, dev) for a in (x, *kernel.constants, y)]
    module(*args)
    return args[-1].numpy()


def check(
    dense: np.ndarray, n: int, m: int, rows: int = 7, with_bias: bool = True, tiles=None, target=CPU
) -> None:
    out, inp = dense.shape
    x = RNG.standard_normal((rows, inp)).astype(np.float32)
    bias = RNG.standard_normal(out).astype(np.float32) if with_bias else None
    want = x.astype(np.float64) @ dense.T.astype(np.float64) + (0.0 if bias is None else bias)
    got = run(NmWeight.from_dense(dense, n, m), bias, x, tiles, target)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("n,m", [(1, 4), (2, 4), (2, 8), (4, 8)])
@pytest.mark.parametrize("rows", [1, 9, 130])
def test_patterns_any_m(n, m, rows):
    check(nm_dense(48, 64, n, m), n, m, rows=rows)


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8)])
def test_without_bias(n, m):
    check(nm_dense(32, 48, n, m), n, m, with_bias=False)


def test_groups_with_fewer_than_n_non_zeros_and_zero_rows():
    dense = nm_dense(48, 64, 2, 4)
    dense[3] = 0  # a row with nothing
    dense[10, :32] = 0  # half a row of empty groups
    dense[20, 1::4] = 0  # groups with one non-zero left
    check(dense, 2, 4)
    check(np.zeros((48, 64), np.float32), 2, 4)


def test_dense_weight_as_m_of_m():
    check(RNG.standard_normal((24, 32)).astype(np.float32), 4, 4, rows=17)


@pytest.mark.parametrize(
    "tiles",
    [
        {"PERM": 1, "OB": 1, "TB": 1},  # one token, one output vector per task
        {"PERM": 1, "OB": 3, "TB": 7},  # token tail: 20 = 2 * 7 + 6
        {"PERM": 1, "OB": 1, "TB": 20},  # one token tile
        {"PERM": 1, "OB": 3, "TB": 4, "U8": 1},  # uint8 lanes, widened in the kernel
    ],
)
def test_tiles_are_tunable_without_changing_the_result(tiles):
    dense = nm_dense(48, 64, 2, 4)
    kernel = make_nm_kernel(NmWeight.from_dense(dense, 2, 4), None, 20, CPU, tiles)
    assert {k: kernel.tiles[k] for k in tiles} == tiles
    check(dense, 2, 4, rows=20, tiles=tiles)


def test_bad_tiles_are_refused():
    weight = NmWeight.from_dense(nm_dense(48, 64, 2, 4), 2, 4)
    with pytest.raises(ValueError, match="OB"):
        make_nm_kernel(weight, None, 4, AVX512, {"OB": 2})  # 48 outputs are 3 vectors of 16


def test_leading_batch_folds_into_m():
    dense = nm_dense(24, 32, 2, 4)
    x = RNG.standard_normal((2, 3, 32)).astype(np.float32)
    got = run(NmWeight.from_dense(dense, 2, 4), None, x.reshape(6, 32)).reshape(2, 3, 24)
    np.testing.assert_allclose(got, x @ dense.T, rtol=1e-5, atol=1e-4)


def test_shapes_the_permute_schedule_does_not_fit_run_dense_and_say_why():
    check(nm_dense(37, 16, 2, 4), 2, 4, rows=5)  # 16 does not divide out
    check(nm_dense(32, 24, 2, 4), 2, 4, rows=5)  # 16 does not divide in
    check(nm_dense(32, 36, 1, 3), 1, 3, rows=5)  # M does not divide 16
    kernel = make_kernel(NmWeight.from_dense(nm_dense(37, 16, 2, 4), 2, 4), None, 5, CPU)
    assert kernel.runs == "dense" and kernel.name.startswith("dense_")
    assert "no N:M 2:4 kernel here" in kernel.reason and "37x16" in kernel.reason
    with pytest.raises(ValueError, match="does not fit"):
        make_nm_kernel(NmWeight.from_dense(nm_dense(37, 16, 2, 4), 2, 4), None, 5, CPU)


def test_permute_schedule_is_the_avx512_default_and_uses_vpermps():
    weight = NmWeight.from_dense(nm_dense(96, 64, 2, 4), 2, 4)
    kernel = make_nm_kernel(weight, None, 3, AVX512)
    assert kernel.tiles == {"PERM": 1, "W": 16, "OB": 3, "TB": 3, "U8": 0}  # TB clipped to the 3 tokens
    asm = tvm.compile(kernel.prim_func, target=AVX512.target).mod.inspect_source("asm")
    assert "vpermps" in asm and "vfmadd" in asm


@pytest.mark.parametrize("n,m", [(2, 4), (2, 8), (1, 4)])
def test_avx2_permute_schedule(n, m):
    avx2 = resolve_target("x86_64")  # haswell: 8-lane vpermps; this host runs AVX2 code
    kernel = make_nm_kernel(NmWeight.from_dense(nm_dense(48, 64, n, m), n, m), None, 5, avx2)
    assert kernel.tiles["W"] == 8 and kernel.tiles["PERM"] == 1
    check(nm_dense(48, 64, n, m), n, m, rows=11, target=avx2)
    check(nm_dense(48, 64, 4, 16), 4, 16, rows=3, target=avx2)  # M > W: dense


def test_pack_permute_puts_each_entry_in_its_window_lane():
    dense = np.zeros((16, 16), np.float32)
    dense[:, 1] = np.arange(1, 17)  # group 0 keeps positions 1 and 2
    dense[:, 2] = 100
    dense[5, 14] = 7  # row 5, group 3: position 2, plus padding at the lowest free position 0
    values, lanes = pack_permute(NmWeight.from_dense(dense, 2, 4), ob=1)
    assert values.shape == lanes.shape == (1, 1, 8, 1, 16)
    assert lanes[0, 0, :2, 0, 0].tolist() == [1, 2]
    assert values[0, 0, :2, 0, 4].tolist() == [5, 100]
    assert lanes[0, 0, 6:, 0, 5].tolist() == [12, 14] and values[0, 0, 7, 0, 5] == 7


def test_kernel_reports_flops_and_name():
    weight = NmWeight.from_dense(nm_dense(48, 64, 2, 4), 2, 4)
    kernel = make_nm_kernel(weight, None, 10, CPU)
    assert kernel.flops == 2 * 10 * 48 * 32
    assert kernel.name == "nm_2_4_x86"


def test_aarch64_runs_dense_and_says_why():
    target = resolve_target("aarch64")
    kernel = make_kernel(NmWeight.from_dense(nm_dense(48, 64, 2, 4), 2, 4), None, 9, target)
    assert kernel.name == "dense_gemm_aarch64" and kernel.runs == "dense"
    assert "needs an x86 lane permute" in kernel.reason
    module = tvm.compile(kernel.prim_func, target=target.target)
    assert "fmla" in module.mod.inspect_source("asm")


@pytest.mark.requires_tool("nvcc", reason="needs nvcc (the CUDA toolkit) on PATH")
def test_cuda_build_emits_ptx(monkeypatch):
    monkeypatch.setenv("TVM_CUDA_COMPILE_MODE", "nvcc")
    target = resolve_target("cuda:sm_90")
    kernel = make_nm_kernel(NmWeight.from_dense(nm_dense(48, 64, 2, 4), 2, 4), None, 5, target)
    assert kernel.constants[0].shape == (32, 48)  # [kept, out]: a warp reads consecutive outputs
    module = tvm.compile(kernel.prim_func, target=target.target)
    source = module.mod.imports[0].inspect_source("cuda")
    assert "__shared__" in source
    with target.target:
        ptx = tvm.support.nvcc.compile_cuda(source, target_format="ptx", arch="sm_90", compiler="nvcc")
    ptx = bytes(ptx).decode() if not isinstance(ptx, str) else ptx
    assert ".target sm_90" in ptx and "fma.rn" in ptx


def test_every_tile_candidate_builds_and_is_correct():
    dense = nm_dense(96, 64, 2, 4)
    space = nm_tile_space(NmWeight.from_dense(dense, 2, 4), 10, CPU)
    assert space[0] == make_nm_kernel(NmWeight.from_dense(dense, 2, 4), None, 10, CPU).tiles
    assert len(space) > 1 and {tiles["PERM"] for tiles in space} == {1}
    for tiles in space:
        check(dense, 2, 4, rows=10, tiles=tiles)


def test_unknown_tiles_are_refused():
    with pytest.raises(ValueError, match="unknown N:M tiles"):
        make_nm_kernel(NmWeight.from_dense(nm_dense(48, 64, 2, 4), 2, 4), None, 4, CPU, {"mt": 16})
