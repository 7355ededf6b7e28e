"""The cache-tiled block-sparse kernel against numpy, and which layers it takes."""

import numpy as np
import pytest

pytest.importorskip("tvm")

from sparsecc.backends.tvm.kernels.blocks import as_blocks
from sparsecc.backends.tvm.kernels.rules import make_kernel, plan
from sparsecc.backends.tvm.kernels.tiled_cpu import (
    TiledCpu,
    chunk_offsets,
    make_tiled_kernel,
    sorted_columns,
    tiled_tile_space,
)
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.ops import BsrFormat, BsrWeight, CsrFormat, CsrWeight
from sparsecc.sparsity.masks import block_mask, unstructured_mask
from tests.backends.tvm.kernel_checks import run_built
from tests.weights import Encoded, encode, split

CPU = resolve_target("cpu")
RNG = np.random.default_rng(23)


def check(weight, m, tiles=None, bias=True):
    """Against x @ W.T + b with W the masked array the test built (`weight` is an Encoded pair)."""
    weight, dense = split(weight)
    b = RNG.standard_normal(weight.shape[0]).astype(np.float32) if bias else None
    kernel = make_tiled_kernel(as_blocks(weight), b, m, CPU.lanes, CPU.vector_registers, 2, "t", tiles)
    x = RNG.standard_normal((m, weight.shape[1])).astype(np.float32)
    want = x.astype(np.float64) @ dense.T.astype(np.float64) + (0 if b is None else b)
    got = run_built(kernel, x, CPU)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))
    return kernel


def unstructured(out, inp, sparsity):
    w = RNG.standard_normal((out, inp)).astype(np.float32)
    return encode(CsrWeight, w * unstructured_mask(w, sparsity))


def blocks(out, inp, block, sparsity):
    w = RNG.standard_normal((out, inp)).astype(np.float32)
    return encode(BsrWeight, w * block_mask(w, block, sparsity), block)


@pytest.mark.parametrize("m", [1, 5, 37, 128])
def test_csr_any_token_count(m):
    check(unstructured(48, 600, 0.8), m)


def test_an_awkward_token_count_keeps_a_wide_token_tile():
    """65 tokens (a ViT's patches + class token): the tile pads to 80, not down to one vector."""
    kernel = check(unstructured(64, 256, 0.8), 65)
    assert kernel.tiles["MT"] >= 2 * CPU.lanes and kernel.tiles["ST"] % kernel.tiles["MT"] == 0
    for tiles in tiled_tile_space(
        as_blocks(unstructured(64, 256, 0.8).weight), 65, CPU.lanes, CPU.vector_registers, 2
    ):
        check(unstructured(64, 256, 0.8), 65, tiles, bias=False)


def test_chunks_that_do_not_divide_the_inputs_and_rows_without_nonzeros():
    dense = unstructured(40, 300, 0.9).dense
    dense[::3] = 0  # empty rows still get their bias
    check(encode(CsrWeight, dense), 19, {"KC": 7})
    check(encode(CsrWeight, dense), 19, {"KC": 7, "IL": 2})  # two accumulator sets, odd block counts


@pytest.mark.parametrize("block", [(1, 16), (4, 4), (2, 8), (16, 1), (3, 5)])
def test_block_shapes(block):
    check(blocks(block[0] * 8, block[1] * 20, block, 0.7), 24)


def test_more_groups_than_rows_and_every_tile_in_the_grid():
    weight = unstructured(8, 96, 0.5)
    check(weight, 16, {"G": 64})
    for tiles in tiled_tile_space(as_blocks(weight.weight), 16, CPU.lanes, CPU.vector_registers, 2):
        check(weight, 16, tiles, bias=False)


def test_columns_need_not_come_sorted():
    encoded = blocks(16, 64, (4, 4), 0.5)
    weight = encoded.weight
    shuffled = [
        np.arange(weight.row_ptr[i], weight.row_ptr[i + 1])[::-1] for i in range(weight.row_ptr.size - 1)
    ]
    order = np.concatenate(shuffled)
    unsorted = BsrWeight(
        weight.values[order], weight.col_indices[order], weight.row_ptr, weight.shape, weight.block
    )
    np.testing.assert_array_equal(sorted_columns(unsorted).to_dense(), encoded.dense)
    check(Encoded(unsorted, encoded.dense), 8)


def test_chunk_offsets_mark_where_each_chunk_of_a_row_starts():
    weight = CsrWeight(
        np.ones(5, np.float32), np.array([0, 3, 4, 9, 2], np.int32), np.array([0, 4, 5], np.int32), (2, 10)
    )
    offsets = chunk_offsets(as_blocks(weight), 4)  # chunks [0, 4), [4, 8), [8, 12)
    np.testing.assert_array_equal(offsets, [[0, 2, 3, 4], [4, 5, 5, 5]])


def test_which_layers_it_takes():
    rule = TiledCpu()
    assert rule.declines(CsrFormat(), (768, 768), 128, CPU) is None
    assert rule.declines(BsrFormat((1, 16)), (768, 768), 128, CPU) is None
    assert "within L2" in rule.declines(BsrFormat((4, 4)), (768, 768), 128, CPU)
    assert rule.declines(BsrFormat((4, 4)), (768, 3072), 128, CPU) is None  # X^T 1.5 MB
    assert "one token" in rule.declines(CsrFormat(), (768, 768), 1, CPU)
    assert plan(BsrFormat((16, 1)), (3072, 768), 128, CPU).rule.name == "blocked_cpu"
    kernel = make_kernel(blocks(64, 3072, (16, 1), 0.9).weight, None, 128, CPU)
    assert kernel.name == "bsr_16x1_tiled_x86" and kernel.constants[0].shape[1:] == (1, 4)  # 4-row stacks
