"""The bf16-weight dense kernel (dense_bf16_cpu.py): both inner products, odd shapes, the code."""

import numpy as np
import pytest

pytest.importorskip("tvm")

import tvm

from sparsecc.backends.tvm.kernels.rules import make_kernel
from tests.backends.tvm.bf16_checks import CPU, NO_BF16_DOT, check_bf16

RNG = np.random.default_rng(13)


def dense(out, inp):
    return RNG.standard_normal((out, inp)).astype(np.float32)


@pytest.mark.parametrize(("out", "inp", "m"), [(16, 1, 1), (48, 37, 13), (32, 64, 9), (64, 33, 130)])
@pytest.mark.parametrize("target", [CPU, NO_BF16_DOT], ids=["host", "no_bf16_dot"])
def test_odd_shapes(out, inp, m, target):
    kernel = check_bf16(dense(out, inp), target, m, RNG)
    assert kernel.name.endswith("_dot" if target.bf16_dot else "_widen")


def test_layer_shape_and_no_bias():
    check_bf16(dense(768, 768), CPU, 128, RNG)
    check_bf16(dense(64, 96), CPU, 5, RNG, bias=False, tiles={"MR": 4, "NV": 4})


def test_dot_path_emits_vdpbf16ps_and_stores_half_the_bytes():
    w = dense(64, 40)
    kernel = make_kernel(w, None, 8, CPU, dtype="bfloat16")
    fp32 = make_kernel(w, None, 8, CPU)
    assert kernel.constants[0].nbytes * 2 == fp32.constants[0].nbytes
    if CPU.bf16_dot:
        asm = tvm.compile(kernel.prim_func, target=CPU.target).mod.inspect_source("asm")
        assert "vdpbf16ps" in asm
    assert "bfloat16 weights" in kernel.reason


def test_rules_without_a_bf16_kernel_compute_the_rounded_weights_in_float32():
    w = dense(16, 64)
    kernel = check_bf16(w, CPU, 2, RNG)  # 1-4 tokens: the GEMV rule, float32 only
    assert "rounded to bfloat16" in kernel.reason
    assert kernel.constants[0].dtype == np.float32
