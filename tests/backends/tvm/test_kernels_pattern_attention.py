"""The PatternAttention CPU kernel: key plans exact against the masks, outputs against numpy."""

import re

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from sparsecc.backends.tvm.kernels.pattern_attention_cpu import (  # noqa: E402
    GROUP_ROWS,
    PatternShape,
    padded_key_columns,
    pattern_attention_kernel,
    pattern_tiles,
    plan_keys,
)
from sparsecc.backends.tvm.target import resolve_target  # noqa: E402
from sparsecc.sparsity.attention_patterns import (  # noqa: E402
    HeadPattern,
    TokenLayout,
    masked_attention,
    pattern_mask,
)
from tests.backends.tvm.kernel_checks import AVX512_TARGET  # noqa: E402

CPU = resolve_target("cpu")
# odd sizes: 10 tokens a frame and 5 text tokens, so query tiles (of 4 to 6 rows) straddle frames and text
LAYOUTS = {"text_first": TokenLayout(3, 10, 5, True), "text_last": TokenLayout(3, 10, 5, False)}


def random_blocks(layout: TokenLayout, block_size=(8, 6), keep=0.4, seed=3) -> HeadPattern:
    bq, bk = block_size
    rows, cols = -(-layout.tokens // bq), -(-layout.tokens // bk)
    grid = np.random.default_rng(seed).random((rows, cols)) < keep
    grid[1] = False  # a query block that keeps only the text columns
    ptr = np.concatenate([[0], np.cumsum(grid.sum(axis=1))])
    return HeadPattern(
        "blocks", block_size=block_size, block_ptr=tuple(ptr), block_cols=tuple(np.nonzero(grid)[1])
    )


PATTERNS = {
    "diag": lambda layout: HeadPattern("diag"),
    "diag_window1": lambda layout: HeadPattern("diag", window=1),
    "mdiag": lambda layout: HeadPattern("mdiag"),
    "mdiag_radius2": lambda layout: HeadPattern("mdiag", radius=2),
    "vstripe": lambda layout: HeadPattern("vstripe", stripes=(0, 7, 8, 23, 29)),
    "blocks": random_blocks,
}


def plan_for(pattern, layout, target=CPU, d=16, dv=16):
    shape = PatternShape(2, 3, layout.tokens, d, dv, 0.3)
    tiles = pattern_tiles(shape, target.lanes, target.vector_registers)
    return shape, tiles, plan_keys(pattern, layout, tiles["TQ"], tiles["TK"], tiles["KR"])


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
@pytest.mark.parametrize("mode", PATTERNS, ids=list(PATTERNS))
def test_plan_keeps_exactly_the_mask(mode, layout):
    layout = LAYOUTS[layout]
    pattern = PATTERNS[mode](layout)
    _, tiles, plan = plan_for(pattern, layout)
    n, tq = layout.tokens, plan.tq
    assert sorted(plan.key_order) == list(range(n))
    kept = np.zeros((plan.query_tiles * tq, n), dtype=bool)
    for t in range(plan.query_tiles):
        for s in range(plan.seg_ptr[t], plan.seg_ptr[t + 1]):
            start, length = plan.seg_start[s], plan.seg_len[s]
            assert 0 < length <= tiles["TK"] and start + length <= n
            for q in range(tq):
                assert plan.seg_hi[s, q] in (0, length)
                keys = plan.key_order[start : start + plan.seg_hi[s, q]]
                assert not kept[t * tq + q, keys].any()  # no key twice
                kept[t * tq + q, keys] = True
    want = pattern_mask(pattern, layout)[plan.query_order]
    np.testing.assert_array_equal(kept, want)
    assert plan.kept == pattern_mask(pattern, layout).sum() <= plan.computed


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
@pytest.mark.parametrize("mode", PATTERNS, ids=list(PATTERNS))
def test_groups_are_runs_of_tiles_over_the_same_key_ranges(mode, layout):
    layout = LAYOUTS[layout]
    _, _, plan = plan_for(PATTERNS[mode](layout), layout)
    ptr = plan.seg_ptr
    assert plan.group_ptr[0] == 0 and plan.group_ptr[-1] == plan.query_tiles
    assert np.all(np.diff(plan.group_ptr) >= 1) and np.all(np.diff(plan.group_ptr) * plan.tq <= GROUP_ROWS)

    def ranges(t):
        return plan.seg_start[ptr[t] : ptr[t + 1]].tolist(), plan.seg_len[ptr[t] : ptr[t + 1]].tolist()

    for first, end in zip(plan.group_ptr[:-1], plan.group_ptr[1:]):
        assert all(ranges(t) == ranges(first) for t in range(first, end))


def run(pattern, layout, q, k, v, target=CPU, group_rows=GROUP_ROWS):
    (b, h, n, d), dv = q.shape, v.shape[3]
    shape = PatternShape(b, h, n, d, dv, 0.3)
    tiles = pattern_tiles(shape, target.lanes, target.vector_registers)
    plan = plan_keys(pattern, layout, tiles["TQ"], tiles["TK"], tiles["KR"], group_rows)
    kt = np.zeros((b, h, d, padded_key_columns(n, tiles)), np.float32)
    kt[..., :n] = k[:, :, plan.key_order].transpose(0, 1, 3, 2)
    y = np.full((b, h, n, dv), np.nan, np.float32)
    args = [v[:, :, plan.key_order], *plan.constants(), y]
    args = [tvm.runtime.tensor(np.ascontiguousarray(a), tvm.cpu()) for a in (q, kt, *args)]
    tvm.compile(pattern_attention_kernel(shape, plan, target.lanes, tiles), target=target.target)(*args)
    return args[-1].numpy()


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
@pytest.mark.parametrize("mode", PATTERNS, ids=list(PATTERNS))
def test_kernel_matches_numpy_masked_attention(mode, layout):
    layout = LAYOUTS[layout]
    pattern = PATTERNS[mode](layout)
    rng = np.random.default_rng(5)
    q, k = (2 * rng.standard_normal((2, 3, layout.tokens, 24)).astype(np.float32) for _ in range(2))
    v = rng.standard_normal((2, 3, layout.tokens, CPU.lanes)).astype(np.float32)
    got = run(pattern, layout, q, k, v)
    want = masked_attention(q.astype(np.float64), k, v, pattern_mask(pattern, layout), 0.3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("group_rows", [1, 16])
def test_groups_of_one_tile_and_of_several_give_the_same(group_rows):
    layout = LAYOUTS["text_last"]
    pattern = PATTERNS["blocks"](layout)
    rng = np.random.default_rng(7)
    q, k = (rng.standard_normal((1, 2, layout.tokens, 16)).astype(np.float32) for _ in range(2))
    v = rng.standard_normal((1, 2, layout.tokens, CPU.lanes)).astype(np.float32)
    got = run(pattern, layout, q, k, v, group_rows=group_rows)
    want = masked_attention(q.astype(np.float64), k, v, pattern_mask(pattern, layout), 0.3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_long_segments_split_and_rescale():
    """Frames longer than a segment (TK keys): the online softmax runs over several segments."""
    layout = TokenLayout(2, 300, 7, False)
    pattern = HeadPattern("diag")
    rng = np.random.default_rng(6)
    q, k = (rng.standard_normal((1, 2, layout.tokens, 16)).astype(np.float32) for _ in range(2))
    v = rng.standard_normal((1, 2, layout.tokens, 2 * CPU.lanes)).astype(np.float32)
    _, tiles, plan = plan_for(pattern, layout, d=16, dv=2 * CPU.lanes)
    assert plan.seg_len.max() == tiles["TK"] and plan.seg_ptr[1] >= 4  # 300 keys in >= 3 segments, + text
    want = masked_attention(q.astype(np.float64), k, v, pattern_mask(pattern, layout), 0.3)
    got = run(pattern, layout, q, k, v)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_avx512_and_neon_builds_use_their_vectors():
    layout = LAYOUTS["text_last"]
    for target, register in (
        (resolve_target(AVX512_TARGET), r"zmm\d+"),
        (resolve_target("aarch64"), r"v\d+\.4s"),
    ):
        shape, tiles, plan = plan_for(HeadPattern("mdiag"), layout, target, d=32, dv=32)
        func = pattern_attention_kernel(shape, plan, target.lanes, tiles)
        asm = tvm.compile(func, target=target.target).mod.inspect_source("asm")
        assert re.search(register, asm) and ("vfmadd" in asm or "fmla" in asm)


def test_tiles_that_do_not_match_the_plan_are_refused():
    shape, tiles, plan = plan_for(HeadPattern("diag"), LAYOUTS["text_last"])
    with pytest.raises(ValueError, match="pattern attention tiles"):
        pattern_attention_kernel(shape, plan, CPU.lanes, {**tiles, "TQ": tiles["TQ"] + 1})
