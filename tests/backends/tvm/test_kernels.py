"""Every CPU kernel against numpy on odd cases (x86, this host)."""

import numpy as np
import pytest

from sparsecc.backends.tvm.kernels.rules import make_kernel
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.ops import BsrWeight, CsrWeight, NmWeight
from sparsecc.sparsity.masks import block_mask, nm_mask, unstructured_mask
from tests.weights import encode, split

tvm = pytest.importorskip("tvm")
RNG = np.random.default_rng(11)
TARGET = resolve_target("cpu")


def run_kernel(weight, bias, x):
    kernel = make_kernel(weight, bias, x.shape[0], TARGET)
    module = tvm.compile(kernel.prim_func, target=TARGET.target)
    out = weight.shape[0]
    dev = tvm.cpu()
    args = [
        tvm.runtime.tensor(a, dev)
        for a in (x, *kernel.constants, np.full((x.shape[0], out), np.nan, np.float32))
    ]
    module(*args)
    return args[-1].numpy()


def check(weight, m=7, with_bias=True):
    """Kernel output == x @ W.T + b, with W the masked array the test built (tests/weights.py)."""
    weight, dense = split(weight)
    out, inp = weight.shape
    x = RNG.standard_normal((m, inp)).astype(np.float32)
    bias = RNG.standard_normal(out).astype(np.float32) if with_bias else None
    want = x @ dense.T + (0 if bias is None else bias)
    got = run_kernel(weight, bias, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def w(out=48, inp=64):
    return RNG.standard_normal((out, inp)).astype(np.float32)


@pytest.mark.parametrize("block", [(16, 1), (8, 1), (4, 4), (1, 16), (2, 8)])
@pytest.mark.parametrize("m", [1, 7, 33, 128])
def test_bsr(block, m):
    dense = w()
    check(encode(BsrWeight, dense * block_mask(dense, block, 0.75), block), m=m)


def test_bsr_rows_without_blocks_one_block_all_blocks_and_zero():
    dense = w()
    dense *= block_mask(dense, (8, 1), 0.5)
    dense[:16] = 0  # block rows with no blocks: only the bias
    check(encode(BsrWeight, dense, (8, 1)))
    one = np.zeros((48, 64), np.float32)
    one[8:12, 4:8] = 2.0
    check(encode(BsrWeight, one, (4, 4)), with_bias=False)
    check(encode(BsrWeight, w(), (4, 4)))  # every block present
    check(encode(BsrWeight, np.zeros((48, 64), np.float32), (16, 1)))  # nnzb = 0


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("m", [1, 20])
def test_csr(sparsity, m):
    dense = w()
    check(encode(CsrWeight, dense * unstructured_mask(dense, sparsity)), m=m)


def test_csr_edge_cases():
    dense = w() * unstructured_mask(w(), 0.8)
    dense[5] = 0
    dense[-1] = 0
    check(encode(CsrWeight, dense))
    check(encode(CsrWeight, np.zeros((48, 64), np.float32)))
    single = np.zeros((48, 64), np.float32)
    single[3, 17] = 1.5
    check(encode(CsrWeight, single), with_bias=False)
    check(encode(CsrWeight, w()))  # fully dense


@pytest.mark.parametrize(("n", "m_group"), [(1, 4), (2, 4), (2, 8), (4, 8)])
@pytest.mark.parametrize("m", [1, 9, 128])
def test_nm(n, m_group, m):
    dense = w()
    check(encode(NmWeight, dense * nm_mask(dense, n, m_group), n, m_group), m=m)


def test_nm_groups_with_fewer_nonzeros_and_odd_rows():
    dense = w(out=50)  # 50 rows: row tiles of 2
    dense *= nm_mask(dense, 2, 4)
    dense[:, :16] = 0
    check(encode(NmWeight, dense, 2, 4))


@pytest.mark.parametrize(("out", "inp", "m"), [(48, 64, 7), (50, 33, 3), (7, 5, 1), (768, 768, 128)])
def test_dense(out, inp, m):
    check(w(out, inp), m=m)


def test_leading_batch_dimensions_fold_into_m():
    dense = w()
    dense *= block_mask(dense, (4, 4), 0.5)
    weight = BsrWeight.from_dense(dense, (4, 4))
    x = RNG.standard_normal((2, 3, 64)).astype(np.float32)
    got = run_kernel(weight, None, x.reshape(6, 64)).reshape(2, 3, 48)
    np.testing.assert_allclose(got, x @ dense.T, rtol=1e-4, atol=1e-4)
