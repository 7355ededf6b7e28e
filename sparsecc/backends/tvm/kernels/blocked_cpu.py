"""The CPU linear kernel: block-sparse rows, vectorised over the tokens (M).

One micro-kernel serves BSR (its own blocks), CSR (1x1 blocks) and dense weights
(every block present): a block of R outputs x C inputs updates an accumulator tile
`acc[R, MT]` with `acc[r, :] += XT[col, tile] * value`, one vector load of X^T shared
by R broadcast-FMAs. The weight is a compile-time constant, so nnzb is static and the
values are pre-packed as [nnzb, C, R].

The kernel is written as schedulable TIR (sblocks; docs/tvm-notes.md, "Block-sparse TIR") and
`schedule_blocked` turns it into the micro-kernel. The token tile MT is its tunable:
fixed here from the register budget, or sampled by MetaSchedule (`design_space`).
Data flow: X -> X^T (zero-padded to a multiple of the vector width, tiled transpose)
-> Y^T[out, M] tiles written with full vector stores -> Y (tiled transpose). Writing Y
rows directly strides by out*4 bytes and made 8x1/4x4/1x16 kernels 2-2.5x slower.
"""

from __future__ import annotations

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel, KernelRule, bf16, runs_parallel
from sparsecc.backends.tvm.kernels.blocks import (
    RUN_ROWS,
    as_blocks,
    family_label,
    operands,
    split_rows,
    transpose_tile,
)
from sparsecc.ops import BsrFormat, BsrWeight, CsrFormat
from sparsecc.ops.precision import bf16_bits

MAX_VECTORS_PER_TILE = 8  # MT <= 8 vectors: the accumulator must stay in registers


def padded_tokens(m: int, lanes: int) -> int:
    return -(-m // lanes) * lanes


def token_tile_choices(m: int, lanes: int, slab: int | None = None) -> list[int]:
    """Valid MT values: whole vectors per tile that divide the slab (default: all padded tokens)."""
    vectors = (slab or padded_tokens(m, lanes)) // lanes
    return [v * lanes for v in range(1, MAX_VECTORS_PER_TILE + 1) if vectors % v == 0]


# X^T bytes one slab of tokens may take, so that it stays in L2 while every row walks over it:
# K=3072 x 128 tokens (1.5 MB) went to L3 on every nonzero and made 80% CSR at (768, 3072) no
# faster than dense (2026-12-02, AVX2 EPYC, 512 KiB L2 per core).
SLAB_BYTES = 384 * 1024


def slab_tokens(m: int, inp: int, lanes: int) -> int:
    """ST: tokens per slab, a divisor of the padded tokens in whole vectors, X^T within SLAB_BYTES."""
    padded = padded_tokens(m, lanes)
    fitting = [
        v * lanes
        for v in range(1, padded // lanes + 1)
        if padded % (v * lanes) == 0 and inp * v * lanes * 4 <= SLAB_BYTES
    ]
    return max(fitting) if fitting else lanes


# The tile's accumulators (R rows x V = MT/lanes vectors) take as many registers as fit: measured
# (2026-12-01, Xeon with AVX-512, 2 threads, M=128, /tmp/i8/mt.py): 4x4 at 80% ran 0.60-0.19 ms
# with 4 vectors per row (16 accumulators) against 0.79-0.22 ms with one (4 accumulators); 8x1
# gained 5-25% from 2 vectors. Per block column the kernel also holds V vectors of X^T and one
# broadcast value, and the tile must stay an alloca (1 KiB), or LLVM spills.
ALLOCA_BYTES = 1024


def fits_registers(rows: int, vectors: int, lanes: int, registers: int) -> bool:
    return rows * vectors + vectors + 1 <= registers and rows * vectors * lanes * 4 <= ALLOCA_BYTES


def default_tiles(
    block: tuple[int, int], m: int, lanes: int, registers: int = 32, inp: int | None = None
) -> dict[str, int]:
    """ST from the cache budget, then MT: the most vectors of tokens in the slab whose R x V
    accumulators fit the registers (at least one)."""
    rows = max(block[0], 1)
    slab = slab_tokens(m, inp, lanes) if inp else padded_tokens(m, lanes)
    fitting = [
        mt for mt in token_tile_choices(m, lanes, slab) if fits_registers(rows, mt // lanes, lanes, registers)
    ]
    return {"MT": max(fitting) if fitting else lanes, "ST": slab}


def blocked_linear(m: int, weight: BsrWeight, lanes: int, slab: int | None = None, dtype: str = "float32"):
    """Unscheduled PrimFunc (X[m, in], values[nnzb, C, R], col[nnzb], row_ptr[out/R+1], bias[out], Y[m, out]).

    Tokens go in slabs of `slab` (default: all), the outer loop: every row walks one slab's
    X^T before the next slab. `dtype` "bfloat16": values are uint16 bf16 bits, each widened to
    float32 by a shift where it is broadcast (X^T and the accumulators stay float32).
    """
    from tvm.script import tirx as T

    out, inp = weight.shape
    r_size, c_size = weight.block
    nnzb, n_block_rows = max(weight.nnz_blocks, 1), out // r_size
    m_padded = padded_tokens(m, lanes)
    slab = slab or m_padded
    value_dtype = "uint16" if dtype == "bfloat16" else "float32"

    def value(v):
        return bf16.widen(v, 1) if dtype == "bfloat16" else v

    @T.prim_func(s_tir=True)
    def kernel(
        X: T.Buffer((m, inp), "float32"),
        data: T.Buffer((nnzb, c_size, r_size), value_dtype),
        indices: T.Buffer((nnzb,), "int32"),
        indptr: T.Buffer((n_block_rows + 1,), "int32"),
        bias: T.Buffer((out,), "float32"),
        Y: T.Buffer((m, out), "float32"),
    ):
        T.func_attr({"tirx.noalias": True})
        XT = T.sblock_alloc_buffer((inp, m_padded), "float32")
        YT = T.sblock_alloc_buffer((out, m_padded), "float32")
        for k, t in T.grid(inp, m_padded):
            with T.sblock("XT"):
                vk, vt = T.axis.remap("SS", [k, t])
                XT[vk, vt] = T.if_then_else(vt < m, X[T.min(vt, m - 1), vk], T.float32(0))
        for s, i in T.grid(m_padded // slab, n_block_rows):
            with T.sblock("row"):
                vs, vi = T.axis.remap("SS", [s, i])
                # the block count is data-dependent but refers only to the outer block var,
                # which keeps the inner bindings affine (schedulable)
                for t, r, e, c in T.grid(slab, r_size, indptr[vi + 1] - indptr[vi], c_size):
                    with T.sblock("bsr"):
                        vt = T.axis.spatial(m_padded, vs * slab + t)
                        vr = T.axis.spatial(r_size, r)
                        ve = T.axis.reduce(indptr[vi + 1] - indptr[vi], e)
                        vc = T.axis.reduce(c_size, c)
                        with T.init():
                            YT[vi * r_size + vr, vt] = bias[vi * r_size + vr]
                        YT[vi * r_size + vr, vt] = YT[vi * r_size + vr, vt] + XT[
                            indices[indptr[vi] + ve] * c_size + vc, vt
                        ] * value(data[indptr[vi] + ve, vc, vr])
        for t, o in T.grid(m, out):
            with T.sblock("Y"):
                vt, vo = T.axis.remap("SS", [t, o])
                Y[vt, vo] = YT[vo, vt]

    return kernel


def _with_dtype(constants: list[np.ndarray], dtype: str) -> list[np.ndarray]:
    """The values (first constant) as bf16 bits for a bfloat16 kernel."""
    if dtype == "bfloat16":
        return [bf16_bits(constants[0]), *constants[1:]]
    return constants


def schedule_blocked(
    sch, m: int, weight_shape: tuple[int, int], lanes: int, mt: int | None = None, parallel: bool = True
) -> None:
    """The micro-kernel schedule. `mt=None` lets MetaSchedule sample the token tile (within the
    slab); `parallel=False` keeps a small layer on one thread (`kernels.runs_parallel`)."""
    (out, inp), m_padded = weight_shape, padded_tokens(m, lanes)

    xt = sch.get_sblock("XT")
    k, t = sch.get_loops(xt)
    tb = transpose_tile(inp, m_padded)
    k0, k1 = sch.split(k, [None, tb])
    t0, t1 = sch.split(t, [None, tb])
    sch.reorder(k0, t0, k1, t1)
    if parallel:
        sch.parallel(k0)
    sch.vectorize(t1)

    block = sch.get_sblock("bsr")
    t, r, e, c = sch.get_loops(block)
    vectors, lane = sch.split(t, [None, lanes])
    if mt is None:
        factors = sch.sample_perfect_tile(vectors, n=2, max_innermost_factor=MAX_VECTORS_PER_TILE)
    else:
        factors = [None, mt // lanes]
    tile, per_tile = sch.split(vectors, factors)
    sch.reorder(tile, e, c, r, per_tile, lane)
    acc = sch.cache_write(block, 0, "global")  # under 1 KiB "global" becomes an alloca kept in registers
    sch.reverse_compute_at(acc, tile, preserve_unit_loops=True)  # same loop count for every sample
    sch.vectorize(sch.fuse(per_tile, lane))
    sch.unroll(r)
    sch.unroll(c)
    init = sch.decompose_reduction(block, e)  # rows without blocks still get their bias
    for stage in (init, acc):
        loops = sch.get_loops(stage)
        sch.vectorize(loops[-1])
        sch.unroll(loops[-2])

    y = sch.get_sblock("Y")
    t, o = sch.get_loops(y)
    o0, o1 = sch.split(o, [None, transpose_tile(out)])
    sch.reorder(o0, t, o1)
    if parallel:
        sch.parallel(o0)
    sch.vectorize(o1)
    slabs, row = sch.get_loops(sch.get_sblock("row"))
    rows = sch.fuse(slabs, row)  # outer-block loops last (docs/tvm-notes.md, "Schedule primitives": COW bug)
    if parallel:
        sch.parallel(rows)


def design_space(m: int, weight_shape: tuple[int, int], lanes: int, parallel: bool = True):
    """MetaSchedule's space: the fixed schedule with the token tile sampled (the slab is in the TIR)."""

    def space(sch) -> None:
        schedule_blocked(sch, m, weight_shape, lanes, parallel=parallel)

    return space


def tiles_of_trace(trace, lanes: int) -> dict[str, int]:
    """The tiles a tuned trace chose (its one SamplePerfectTile decision)."""
    for inst in trace.insts:
        if inst.kind.name == "SamplePerfectTile":
            return {"MT": int(trace.decisions[inst][1]) * lanes}
    raise ValueError("trace has no token-tile decision")


def make_blocked_kernel(
    weight: BsrWeight,
    bias: np.ndarray | None,
    m: int,
    lanes: int,
    label: str,
    tiles: dict | None = None,
    registers: int = 32,
    dtype: str = "float32",
) -> Kernel:
    import tvm

    tiles = {**default_tiles(weight.block, m, lanes, registers, weight.shape[1]), **(tiles or {})}
    slab = tiles["ST"]
    if set(tiles) != {"MT", "ST"} or slab % lanes or padded_tokens(m, lanes) % slab:
        raise ValueError(f"blocked kernel tiles {tiles} invalid for m={m}: ST must divide the padded tokens")
    if tiles["MT"] not in token_tile_choices(m, lanes, slab):
        raise ValueError(
            f"blocked kernel tiles {tiles} invalid for m={m}: MT must be one of {token_tile_choices(m, lanes, slab)}"
        )
    base = blocked_linear(m, weight, lanes, slab, dtype)
    sch = tvm.s_tir.Schedule(base)
    parallel = runs_parallel(m * weight.values.size)
    schedule_blocked(sch, m, weight.shape, lanes, tiles["MT"], parallel)
    func = sch.mod["main"].with_attr("tirx.is_scheduled", True)
    flops = 2 * m * weight.values.size
    return Kernel(
        label,
        func,
        _with_dtype(operands(weight, bias), dtype),
        tiles,
        flops,
        base_func=base,
        design_space=design_space(m, weight.shape, lanes, parallel),
        tiles_of_trace=lambda trace: {**tiles_of_trace(trace, lanes), "ST": slab},
        space_size=len(token_tile_choices(m, lanes, slab)),
    )


# Rows per block -> useful FLOP rate against the dense kernel (the GEMM micro-kernel, about as fast
# as onnxruntime's MatMul). Measured 2026-12-01 (Xeon, AVX-512, 2 threads, M=128,
# `python bench/bench_layers.py --sparsities 0.8,0.9 --shapes 768x768,3072x768,768x3072`), rounded
# down so estimates err towards dense: 16x1 at 90% 0.23-0.46 by shape, 8x1 0.3-0.5, 4x4 at 80%
# 0.39-0.69, 1x16 at 90% 0.30-0.37, CSR at 80% 0.30-0.41 (the long rows of (768, 3072) are the slow end).
ROWS_EFFICIENCY = ((4, 0.4), (2, 0.3))
CSR_EFFICIENCY = 0.3
# 1-4 tokens: the dense layer runs the GEMV kernel, which the token-vectorised kernel (M padded
# to a vector) cannot match: 16x1 and 4x4 at 90% measured 1.4-2.1x the GEMV (one thread), 0.14-0.21.
FEW_TOKENS_EFFICIENCY = 0.15


def _one_row(fmt) -> bool:
    return isinstance(fmt, CsrFormat) or (isinstance(fmt, BsrFormat) and fmt.block[0] == 1)


class BlockedCpu(KernelRule):
    """BSR with its own blocks, CSR as 1x1 blocks and dense W as full blocks, on CPUs."""

    name = "blocked_cpu"
    formats = (BsrFormat, CsrFormat, None)
    dtypes = ("bfloat16",)  # bf16 values, widened where broadcast
    summary = "block-sparse micro-kernel vectorised over tokens (blocks taller than 4 rows as stacks of 4)"

    def declines(self, fmt, shape, m, target) -> str | None:
        if target.family == "cuda":
            return "runs on CPUs only"
        if m == 1 and _one_row(fmt):
            # the kernel pads tokens to a vector: with one token and 1-row blocks it uses 1 lane in
            # `lanes` and measured 0.5-0.9x the dense GEMV at 90% sparsity (one thread, 768x768)
            return f"one token: 1-row blocks would fill 1 of {target.lanes} vector lanes"
        return None

    def efficiency(self, fmt, shape, m, target) -> float:
        if fmt is None:
            return 1.0
        if isinstance(fmt, CsrFormat):
            return CSR_EFFICIENCY
        rows, cols = fmt.block
        if rows > RUN_ROWS and rows % RUN_ROWS == 0:
            rows = RUN_ROWS  # run as stacks of RUN_ROWS-row blocks
        if m is not None and m <= 4 and rows > 1:
            return FEW_TOKENS_EFFICIENCY
        for min_rows, efficiency in ROWS_EFFICIENCY:
            if rows >= min_rows:
                return efficiency
        return CSR_EFFICIENCY + (0.02 if cols >= 4 else 0.0)  # 1x16: measured 0.30-0.37

    def label(self, fmt, shape, target) -> str:
        return f"{family_label(fmt, shape[0])}_{target.family}"

    def build(self, weight, bias, m, target, tiles=None, dtype="float32") -> Kernel:
        fmt = None if isinstance(weight, np.ndarray) else weight.format
        label = self.label(fmt, weight.shape, target) + ("_bf16" if dtype == "bfloat16" else "")
        blocks = as_blocks(weight)
        if isinstance(fmt, BsrFormat) and fmt.block[0] > RUN_ROWS and fmt.block[0] % RUN_ROWS == 0:
            blocks = split_rows(blocks, RUN_ROWS)
        return make_blocked_kernel(
            blocks, bias, m, target.lanes, label, tiles, target.vector_registers, dtype
        )
