"""The block-sparse kernel (blocked_cpu.py) with bf16 values, and formats without a bf16 kernel."""

import numpy as np
import pytest

pytest.importorskip("tvm")

from sparsecc.backends.tvm.kernels.rules import make_kernel
from sparsecc.ops import BsrWeight, CsrWeight, NmWeight
from tests.backends.tvm.bf16_checks import CPU, check_bf16
from tests.weights import encode

RNG = np.random.default_rng(17)


def masked_blocks(out, inp, block, keep=0.4):
    w = RNG.standard_normal((out, inp)).astype(np.float32)
    r, c = block
    mask = RNG.random((out // r, inp // c)) < keep
    mask[0] = False  # an empty block row: its outputs must still get the bias
    return w * np.kron(mask, np.ones(block, np.float32))


@pytest.mark.parametrize(
    ("out", "inp", "block", "m", "native"),
    [(48, 36, (4, 4), 13, True), (64, 40, (16, 1), 7, True), (32, 80, (1, 16), 21, False)],
)
def test_bsr_odd_shapes(out, inp, block, m, native):
    kernel = check_bf16(encode(BsrWeight, masked_blocks(out, inp, block), block), CPU, m, RNG)
    if native:  # the blocked kernel: bf16 values
        assert kernel.constants[0].dtype == np.uint16 and kernel.name.endswith("_bf16")
    else:  # 1xC blocks take the cache-tiled kernel, float32 only
        assert kernel.constants[0].dtype == np.float32 and "rounded to bfloat16" in kernel.reason


def test_csr_as_1x1_blocks():
    w = RNG.standard_normal((24, 19)).astype(np.float32) * (RNG.random((24, 19)) < 0.3)
    check_bf16(encode(CsrWeight, w), CPU, 17, RNG)


def test_nm_runs_float32_on_rounded_values():
    w = RNG.standard_normal((32, 64)).astype(np.float32)
    groups = w.reshape(32, 16, 4)
    order = np.argsort(-np.abs(groups), axis=2, kind="stable")
    mask = np.zeros_like(groups)
    np.put_along_axis(mask, order[:, :, :2], 1.0, axis=2)
    masked = (groups * mask).reshape(32, 64)
    kernel = check_bf16(encode(NmWeight, masked, 2, 4), CPU, 9, RNG)
    assert "rounded to bfloat16" in kernel.reason


def test_rounding_happens_once():
    w = masked_blocks(32, 32, (4, 4))
    weight = BsrWeight.from_dense(w, (4, 4))
    kernel = make_kernel(weight, None, 8, CPU, dtype="bfloat16")
    again = make_kernel(weight, None, 8, CPU, dtype="bfloat16")
    np.testing.assert_array_equal(kernel.constants[0], again.constants[0])
