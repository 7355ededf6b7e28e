"""The fused CPU attention kernel against numpy: masks, GQA, causal, odd lengths, several key tiles."""

import re

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from sparsecc.backends.tvm.kernels.attention_cpu import (  # noqa: E402
    AttentionShape,
    attention_kernel,
    default_tiles,
    fits,
    key_tile,
    pack_keys,
    padded_keys,
    query_block,
    tile_space,
)
from sparsecc.backends.tvm.target import resolve_target  # noqa: E402
from tests.backends.tvm.kernel_checks import AVX512_TARGET  # noqa: E402

CPU = resolve_target("cpu")
AVX2 = resolve_target("x86_64")  # generic AVX2: runs on every x86 host that runs these tests
RNG = np.random.default_rng(11)


def reference(q, k, v, mask, scale, causal):
    """softmax(scale Q K^T + mask) V in float64; a row masked everywhere gives 0."""
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    s = (q.astype(np.float64) @ k.transpose(0, 1, 3, 2)) * scale
    if mask is not None:
        s = s + mask
    if causal:
        sq, skv = s.shape[-2:]
        s = s + np.triu(np.full((sq, skv), -np.inf), k=1 + skv - sq)
    top = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isinf(top), 0, top))
    total = e.sum(-1, keepdims=True)
    return np.where(total > 0, (e / np.where(total > 0, total, 1)) @ v, 0)


def run(shape: AttentionShape, q, k, v, mask, target=None, tiles=None):
    # value columns must fill whole vectors: AVX-512's 16 lanes do not divide Dv=24, AVX2's 8 do
    target = target or (CPU if fits(shape, CPU.lanes) else AVX2)
    tiles = tiles or default_tiles(shape, target.lanes, target.vector_registers)
    keys = padded_keys(shape, tiles)
    if mask is None:
        mask = np.zeros((1, 1, 1, 1), np.float32)
    elif mask.shape[3] > 1:
        mask = np.pad(mask, [(0, 0), (0, 0), (0, 0), (0, keys - shape.kv_len)])
    out = np.full((shape.batch, shape.heads, shape.q_len, shape.value_dim), np.nan, np.float32)
    args = [
        tvm.runtime.tensor(np.ascontiguousarray(a), tvm.cpu())
        for a in (q, pack_keys(k, tiles["TK"]), v, mask, out)
    ]
    tvm.compile(attention_kernel(shape, target.lanes, tiles), target=target.target)(*args)
    return args[-1].numpy()


CASES = [  # (B, H, Hkv, Sq, Skv, D, Dv, mask shape, causal)
    (1, 4, 4, 32, 32, 32, 32, (1, 1, 1, 32), False),  # padding mask over keys
    (2, 4, 2, 13, 21, 16, 24, None, True),  # GQA, causal, nothing divides the tiles
    (1, 2, 2, 37, 37, 32, 32, (1, 1, 37, 37), False),  # a full mask, odd length
    (2, 3, 3, 5, 300, 16, 16, (2, 3, 5, 300), False),  # three key tiles: online softmax rescales
    (1, 2, 1, 1, 50, 64, 64, None, False),  # one query (a decoder step)
    (1, 2, 2, 24, 24, 8, 8, (1, 1, 24, 1), False),  # a mask broadcast over keys
]


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_matches_numpy(case):
    b, h, hk, sq, skv, d, dv, mask_shape, causal = case
    shape = AttentionShape(b, h, hk, sq, skv, d, dv, mask_shape, causal, scale=0.3)
    q = RNG.standard_normal((b, h, sq, d)).astype(np.float32)
    k = RNG.standard_normal((b, hk, skv, d)).astype(np.float32)
    v = RNG.standard_normal((b, hk, skv, dv)).astype(np.float32)
    mask = None if mask_shape is None else (2 * RNG.standard_normal(mask_shape)).astype(np.float32)
    if mask is not None and mask_shape[3] > 1:
        mask[..., -3:] = np.float32(-3.4e38)  # padding, as transformers writes it
    got = run(shape, q, k, v, mask)
    want = reference(q, k, v, mask, 0.3, causal)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_query_blocks_micro_tiles_and_key_tiles_all_partial():
    """Several query blocks (the last of one row), micro-tiles not dividing a block's rows, key
    tiles not dividing the keys, with a full mask and the causal cut: each step's state carries."""
    b, h, sq, skv, d = 1, 2, 37, 150, 16
    shape = AttentionShape(b, h, h, sq, skv, d, d, (b, h, sq, skv), True, scale=0.3)
    q = RNG.standard_normal((b, h, sq, d)).astype(np.float32)
    k, v = (RNG.standard_normal((b, h, skv, d)).astype(np.float32) for _ in range(2))
    mask = RNG.standard_normal(shape.mask_shape).astype(np.float32)
    tiles = {"TQ": 4, "QB": 12, "TK": 64, "KR": 32, "DV": 16}
    got = run(shape, q, k, v, mask, target=CPU, tiles=tiles)
    want = reference(q, k, v, mask, 0.3, True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_query_blocks_are_whole_micro_tiles_of_about_128_rows():
    assert query_block(4322, 6) == 132 and query_block(128, 6) == 132 and query_block(384, 6) == 132
    assert query_block(5, 5) == 5 and query_block(200, 4) == 100


def test_tiles_recorded_before_query_blocks_still_build():
    shape = AttentionShape(1, 2, 2, 20, 20, 16, 16, None)
    q, k, v = (RNG.standard_normal((1, 2, 20, 16)).astype(np.float32) for _ in range(3))
    got = run(shape, q, k, v, None, target=CPU, tiles={"TQ": 4, "TK": 32, "KR": 32, "DV": 16})
    np.testing.assert_allclose(got, reference(q, k, v, None, 0.25, False), rtol=1e-5, atol=1e-5)


def test_packed_keys_are_whole_tiles_of_k_transposed():
    k = RNG.standard_normal((1, 2, 5, 3)).astype(np.float32)
    packed = pack_keys(k, 4)
    assert packed.shape == (1, 2, 2, 3, 4)
    np.testing.assert_array_equal(packed[0, 1, 1, :, 0], k[0, 1, 4])
    np.testing.assert_array_equal(packed[..., 1, :, 1:], 0)


def test_every_tile_candidate_makes_a_kernel():
    shape = AttentionShape(1, 12, 12, 384, 384, 64, 64, (1, 1, 1, 384))
    space = tile_space(shape, CPU.lanes, CPU.vector_registers)
    assert space[0] == default_tiles(shape, CPU.lanes, CPU.vector_registers) and len(space) > 4
    for tiles in space:
        assert tiles["QB"] % tiles["TQ"] == 0
        attention_kernel(shape, CPU.lanes, tiles)


def test_rows_masked_everywhere_give_zero_not_nan():
    shape = AttentionShape(1, 1, 1, 4, 16, 8, 8, (1, 1, 4, 16))
    q, k, v = (RNG.standard_normal((1, 1, n, 8)).astype(np.float32) for n in (4, 16, 16))
    mask = np.zeros((1, 1, 4, 16), np.float32)
    mask[0, 0, 1, :] = -np.inf
    got = run(shape, q, k, v, mask)
    assert np.all(got[0, 0, 1] == 0) and np.isfinite(got).all()
    np.testing.assert_allclose(
        got, reference(q, k, v, mask, shape.softmax_scale, False), rtol=1e-5, atol=1e-5
    )


def test_key_tiles_cover_the_keys_in_whole_vectors_with_little_padding():
    assert key_tile(128, 8) == 128 and key_tile(197, 8) == 104 and key_tile(50, 16) == 64
    assert key_tile(1000, 16) == 128 and key_tile(7, 4) == 8


def test_tiles_that_are_not_whole_vectors_are_refused():
    shape = AttentionShape(1, 1, 1, 8, 32, 8, 8, None)
    with pytest.raises(ValueError, match="attention tiles"):
        attention_kernel(shape, 8, {"TQ": 4, "QB": 8, "TK": 32, "KR": 12, "DV": 8})
    with pytest.raises(ValueError, match="attention tiles"):
        attention_kernel(shape, 8, {"TQ": 4, "QB": 6, "TK": 32, "KR": 8, "DV": 8})


def test_avx512_and_neon_builds_use_their_vectors():
    shape = AttentionShape(1, 12, 12, 128, 128, 64, 64, (1, 1, 1, 128))
    for target, register in (
        (resolve_target(AVX512_TARGET), r"zmm\d+"),
        (resolve_target("aarch64"), r"v\d+\.4s"),
    ):
        func = attention_kernel(
            shape, target.lanes, default_tiles(shape, target.lanes, target.vector_registers)
        )
        asm = tvm.compile(func, target=target.target).mod.inspect_source("asm")
        assert re.search(register, asm) and ("vfmadd" in asm or "fmla" in asm)
