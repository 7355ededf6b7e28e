"""2:4 on sparse tensor cores (`kernels/nm_cuda.py`, `kernels/cuda/sparse_mma.cu`).

Without a GPU: the weight packing decodes back to W through a numpy model of `mma.sp` (the PTX ISA's
fragment and metadata layouts), and nvcc builds PTX that uses `mma.sp`. With one (`requires_gpu`):
the kernel against numpy on odd shapes.
"""

import numpy as np
import pytest

from sparsecc.backends.tvm.kernels import nm_cuda
from sparsecc.errors import SparseccError
from sparsecc.ops import NmWeight
from sparsecc.ops.precision import TOLERANCE

SHAPES = [  # (out, in, tokens): one tile; rows, K and tokens off every tile boundary; both CTA tiles
    (16, 32, 8),
    (40, 72, 5),
    (3, 12, 1),
    (64, 128, 17),
]


def two_four(out: int, inp: int, seed: int = 0) -> np.ndarray:
    """A random W with the 2 largest of each 4 inputs kept, some groups with fewer (all-zero rows too)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((out, inp)).astype(np.float32)
    groups = w.reshape(out, inp // 4, 4)
    drop = np.argsort(-np.abs(groups), axis=2)[:, :, 2:]
    np.put_along_axis(groups, drop, 0.0, axis=2)
    groups[0, :1] = 0.0  # an empty group: padded with positions (0, 1)
    groups[-1, -1, :3] = 0.0  # a group with one value left
    return groups.reshape(out, inp)


def rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    return nm_cuda.from_bits(nm_cuda.to_bits(a, dtype), dtype).astype(np.float64)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_packing_decodes_to_w_through_the_mma_sp_model(shape, dtype):
    out, inp, m = shape
    w = two_four(out, inp)
    packed = nm_cuda.pack_2to4(NmWeight.from_dense(w, 2, 4), dtype)
    assert packed.values.shape[2:] == (32, 8) and packed.meta.dtype == np.uint32
    x = np.random.default_rng(1).standard_normal((m, inp)).astype(np.float32)
    bias = np.linspace(-1, 1, out)
    y = nm_cuda.emulate_linear(packed, x, bias)
    want = rounded(x, dtype) @ rounded(w, dtype).T + bias
    # Same products of the same rounded operands, float64 sums in another order: near-exact.
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


def test_metadata_nibbles_are_ordered_and_valid():
    """`::ordered_metadata`: every nibble lists two distinct positions, the smaller in its low bits."""
    packed = nm_cuda.pack_2to4(NmWeight.from_dense(two_four(48, 96), 2, 4), "float16")
    used = packed.meta[:, :, (np.arange(32) & 3) < 2]  # selector 0: lanes t = 0, 1
    nibbles = (used[..., None] >> (4 * np.arange(8, dtype=np.uint32))) & 0xF
    assert set(np.unique(nibbles).tolist()) <= {0b0100, 0b1000, 0b1001, 0b1100, 0b1101, 0b1110}


def test_a_wrong_metadata_layout_is_caught():
    """The model is strict enough to fail a plausible mistake: rows g and g + 8 swapped in the word."""
    w = two_four(16, 32)
    packed = nm_cuda.pack_2to4(NmWeight.from_dense(w, 2, 4), "float16")
    swapped = (packed.meta >> np.uint32(16)) | (packed.meta << np.uint32(16))
    wrong = nm_cuda.Packed2to4(packed.values, swapped, packed.shape, packed.dtype)
    x = np.eye(32, dtype=np.float32)[:8]
    assert not np.allclose(nm_cuda.emulate_linear(wrong, x), nm_cuda.emulate_linear(packed, x))


def test_only_2_4_and_half_precision():
    weight = NmWeight.from_dense(np.zeros((16, 32), np.float32), 1, 4)
    with pytest.raises(SparseccError, match="2:4"):
        nm_cuda.pack_2to4(weight)
    with pytest.raises(SparseccError, match="float16, bfloat16"):
        nm_cuda.entry("float32", "float32", 8)
    assert nm_cuda.entry("bfloat16", "bfloat16", 16) == ("sp24_bf16_bf16_small", 8)
    assert nm_cuda.entry("float16", "float32", 17) == ("sp24_f16_f32_big", 64)


@pytest.mark.requires_tool("nvcc", reason="needs nvcc (the CUDA toolkit, 12.5 or newer) on PATH")
def test_nvcc_builds_ptx_with_sparse_mma(tmp_path):
    ptx = nm_cuda.build("sm_90a", "ptx", tmp_path).read_text()
    for dtype in ("f16", "bf16"):
        assert f"mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.{dtype}.{dtype}.f32" in ptx
    entries = {
        line.split()[2].split("(")[0] for line in ptx.splitlines() if line.startswith(".visible .entry")
    }
    assert entries == {
        f"sp24_{i}_{o}_{t}"
        for i, o in (("f16", "f32"), ("f16", "f16"), ("bf16", "f32"), ("bf16", "bf16"))
        for t in ("big", "small")
    }
    assert nm_cuda.build("sm_90a", "ptx", tmp_path).read_text() == ptx  # cached


@pytest.mark.requires_gpu
@pytest.mark.parametrize("out_dtype", ["float32", "same"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(
    "shape", [*SHAPES, (768, 768, 128), (3072, 768, 33)], ids=lambda s: "x".join(map(str, s))
)
def test_kernel_matches_numpy_on_the_gpu(shape, dtype, out_dtype):
    import cupy

    out, inp, m = shape
    w = two_four(out, inp)
    bias = np.linspace(-1, 1, out).astype(np.float32)
    linear = nm_cuda.CupyLinear(nm_cuda.pack_2to4(NmWeight.from_dense(w, 2, 4), dtype), bias)
    x = np.random.default_rng(1).standard_normal((m, inp)).astype(np.float32)
    y = cupy.asnumpy(
        linear(
            cupy.asarray(nm_cuda.to_bits(x, dtype)).view(cupy.float16 if dtype == "float16" else cupy.uint16),
            out_dtype,
        )
    )
    y = y.astype(np.float32) if y.dtype != np.uint16 else nm_cuda.from_bits(y, dtype)
    want = rounded(x, dtype) @ rounded(w, dtype).T + bias
    tolerance = TOLERANCE[dtype] if out_dtype == "same" else TOLERANCE["float32"]
    assert np.abs(y - want).max() <= tolerance * np.abs(want).max()
