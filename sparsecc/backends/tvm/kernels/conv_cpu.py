"""The CPU convolution kernel: NCHW, a GEMM over shifted rows of the padded input, dense or sparse.

For stride 1 the input is zero-padded once and flattened per channel; an output position
p = oh * Wp + ow (Wp the padded width) then reads tap (c, i, j) at
`XB[c * plane + i * dh * Wp + j * dw + p]`: every tap is one contiguous row of XB shifted by
a constant offset, and the convolution is a GEMM `Y'[o, p] = sum_k W[o, k] * XB[offset[k] + p]`
with no im2col (the Wp - OW columns past each row's end are computed and dropped). A stride s
is the same after splitting the padded input into its s x s phases (space to depth), so every
Conv is one kernel. Positions are vectorised; a register tile holds MR outputs x NV vectors of
positions, and per k the kernel does NV loads of XB, MR broadcasts of W and MR x NV FMAs.

Sparse weights run through the same loop: W is stored as blocks of R outputs x 1 tap
(R = MR for dense, 1 for CSR, the block's height for BSR), each with the XB offset of its tap,
so a block row visits only its non-zero taps.

Epilogue fused into the output copy: bias (in the accumulators), an optional residual input
(`Add` after the Conv) and ReLU / Clip: a ResNet block's Conv -> Add -> Relu is one kernel.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel, loop_kind
from sparsecc.backends.tvm.kernels.blocks import as_blocks, split_rows
from sparsecc.ops import BsrWeight, SparseWeight


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """One Conv's static shape: NCHW input, O outputs, kernel, strides, pads (t, l, b, r), dilations, groups."""

    n: int
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilations: tuple[int, int] = (1, 1)
    groups: int = 1

    @property
    def out_h(self) -> int:
        return (self.h + self.pads[0] + self.pads[2] - self.dilations[0] * (self.kh - 1) - 1) // self.strides[
            0
        ] + 1

    @property
    def out_w(self) -> int:
        return (self.w + self.pads[1] + self.pads[3] - self.dilations[1] * (self.kw - 1) - 1) // self.strides[
            1
        ] + 1

    @property
    def taps(self) -> int:
        """K: inputs of one output, C/groups x kh x kw (a Conv weight's flattened row)."""
        return self.c // self.groups * self.kh * self.kw

    @property
    def direct(self) -> bool:
        """1x1, stride 1, no padding: XB is X itself."""
        return (self.kh, self.kw, self.strides, self.pads) == (1, 1, (1, 1), (0, 0, 0, 0))

    @property
    def phase_shape(self) -> tuple[int, int]:
        """Rows and columns of one phase of the padded input (the padded input when stride 1)."""
        sh, sw = self.strides
        hp, wp = self.h + self.pads[0] + self.pads[2], self.w + self.pads[1] + self.pads[3]
        return -(-hp // sh), -(-wp // sw)

    @property
    def row(self) -> int:
        """Positions per output row in the GEMM: the phase width (OW plus dropped columns)."""
        return self.phase_shape[1]

    @property
    def positions(self) -> int:
        return self.out_h * self.row

    @property
    def flops(self) -> int:
        return 2 * self.n * self.o * self.taps * self.out_h * self.out_w

    def tap_offsets(self) -> np.ndarray:
        """offset[g * K + k]: where tap k of group g starts in XB (the phases of the padded input)."""
        sh, sw = self.strides
        dh, dw = self.dilations
        ph, pw = self.phase_shape
        plane = ph * pw
        cg = self.c // self.groups
        c, i, j = np.meshgrid(np.arange(self.c), np.arange(self.kh), np.arange(self.kw), indexing="ij")
        phase = (i * dh % sh) * sw + j * dw % sw
        offsets = ((phase * self.c + c) * plane + (i * dh // sh) * pw + j * dw // sw).astype(np.int64)
        # c runs over all channels: group g's taps are channels g*cg .. (g+1)*cg - 1, in W's order
        return offsets.reshape(self.groups, cg * self.kh * self.kw).reshape(-1)


ACTIVATIONS = ("none", "relu", "clip")


@dataclasses.dataclass(frozen=True)
class Epilogue:
    """What the kernel applies after the bias: `+ residual` (an input of Y's shape), then an activation."""

    residual: bool = False
    activation: str = "none"  # one of ACTIVATIONS
    clip: tuple[float, float] = (0.0, 6.0)

    def describe(self) -> str:
        parts = (["+ residual"] if self.residual else []) + (
            [] if self.activation == "none" else [self.activation]
        )
        return ", ".join(parts) or "bias only"


@dataclasses.dataclass(frozen=True)
class ConvTiles:
    mr: int  # output rows per register tile (the block height R)
    nv: int  # vectors of positions per register tile


def positions_padded(positions: int, nr: int) -> int:
    return -(-positions // nr) * nr


MAX_ROWS = 14  # per register tile: with 2 vectors of positions, 14 x 2 + 3 registers of AVX-512's 32
VECTORS = (4, 3, 2, 1)  # vectors of positions per register tile, the candidates
# A CSR row (one output) on a 1x1 Conv of this many input channels or more runs one vector of
# positions per tile; else 2 or 4 (measured 2026-12-03, Xeon AVX-512, 2 threads, 90% random
# weights, /tmp/exp/ab_csr.py: 1x1 512->128 at 28x28 in 0.21 ms with one vector, 0.31 with two
# and 0.36 with four; 1x1 256->64 at 56x56 0.36 / 0.25 / 0.24; 3x3 256->256 at 14x14 0.73 /
# 0.57 / 0.60): one vector keeps the tile's strip (C x L floats) in L1 for wide inputs.
CSR_ONE_VECTOR_CHANNELS = 512
# cycles before an FMA's result feeds the next: a tile of fewer than 2 x this many accumulators
# waits on its own chain (a CSR row is one output: 1 x NV accumulators)
FMA_LATENCY = 4


def default_tiles(geometry: ConvGeometry, rows: int | None, lanes: int, registers: int) -> ConvTiles:
    """The (MR, NV) with the least estimated cycles: padded positions x issue slots per FMA, plus
    the copy of X when a 1x1 Conv's positions do not fill whole tiles (otherwise it reads X in place).

    Per tap a tile issues NV loads and MR broadcasts (memory operands) for MR x NV FMAs, two of
    each per cycle, and waits for the last tap's FMAs (FMA_LATENCY), so a tile costs
    max(MR x NV, MR + NV, 2 x FMA_LATENCY) / (MR x NV) per useful FMA; positions are padded to
    whole tiles. MR divides the group's outputs (or is `rows`, a block height).
    The accumulators take two buffers of under 1 KiB each (a larger stack buffer lands on the
    heap; docs/tvm-notes.md) and MR x NV + NV + 1 registers.
    """
    per_group = geometry.o // geometry.groups
    fmas_per_position = geometry.o * geometry.taps / lanes / 2  # cycles of one position's FMAs, 2 per cycle
    best = None
    candidates = VECTORS
    if rows == 1:
        wide = geometry.kh * geometry.kw == 1 and geometry.c // geometry.groups >= CSR_ONE_VECTOR_CHANNELS
        candidates = (1,) if wide else (4, 2)
    for nv in candidates:
        padded = positions_padded(geometry.positions, nv * lanes)
        limit = min((registers - nv - 1) // nv, 2 * (1020 // (nv * lanes * 4)), MAX_ROWS)
        heights = [rows] if rows is not None else [m for m in range(limit, 0, -1) if per_group % m == 0]
        for mr in (m for m in heights if m <= limit):
            slots = max(mr * nv, mr + nv, 2 * FMA_LATENCY)
            cost = padded * slots / (mr * nv) * (1 + 1 / (mr * nv)) * fmas_per_position
            if geometry.direct and padded != geometry.positions:
                cost += geometry.c * geometry.h * geometry.w / lanes  # X copied to XB, not used in place
            if best is None or cost < best[0]:
                best = (cost, ConvTiles(mr, nv))
    if best is None:
        raise ValueError(f"no conv register tile fits blocks of {rows} rows with {lanes} lanes")
    return best[1]


@dataclasses.dataclass
class ConvOperands:
    """The weight as blocks of R outputs x 1 tap: values[nnzb, R], strip_rows[nnzb], row_ptr."""

    values: np.ndarray
    strip_rows: np.ndarray  # per block, its tap's row in the strip (group * K + tap); dense: unused
    row_ptr: np.ndarray
    rows: int
    dense: bool


def column_blocks(weight: BsrWeight) -> BsrWeight:
    """R x C blocks as R x 1 blocks (one tap each, so each has its own XB offset); all-zero ones dropped."""
    r, c = weight.block
    values = weight.values.transpose(0, 2, 1).reshape(-1, r)  # [nnzb * C, R]
    cols = (weight.col_indices[:, None].astype(np.int64) * c + np.arange(c)[None, :]).reshape(-1)
    block_row = np.repeat(np.arange(weight.row_ptr.size - 1), np.diff(weight.row_ptr))
    keep = np.any(values != 0, axis=1)
    counts = np.bincount(np.repeat(block_row, c)[keep], minlength=weight.row_ptr.size - 1)
    row_ptr = np.zeros(weight.row_ptr.size, np.int32)
    np.cumsum(counts, out=row_ptr[1:])
    return BsrWeight(
        values[keep].reshape(-1, r, 1), cols[keep].astype(np.int32), row_ptr, weight.shape, (r, 1)
    )


def sparse_rows(weight: SparseWeight, limit: int) -> int:
    """The block height the kernel runs a sparse weight with: its own, split to fit `limit`."""
    r = as_blocks(weight).block[0]
    return next(h for h in range(min(r, limit), 0, -1) if r % h == 0)


def conv_operands(weight, geometry: ConvGeometry, rows: int) -> ConvOperands:
    """Pack a dense W[O, K] in tiles of `rows` outputs, or a sparse W (CSR, BSR) as rows x 1 blocks."""
    taps = geometry.taps
    if isinstance(weight, np.ndarray):
        o = weight.shape[0]
        values = weight.reshape(o // rows, rows, taps).transpose(0, 2, 1).reshape(-1, rows)
        row_ptr = np.arange(o // rows + 1, dtype=np.int64) * taps
        return ConvOperands(
            np.ascontiguousarray(values, np.float32),
            np.zeros(1, np.int32),
            row_ptr.astype(np.int32),
            rows,
            True,
        )
    blocks = as_blocks(weight)
    if blocks.block[0] != rows:
        blocks = split_rows(blocks, rows)
    blocks = column_blocks(blocks)
    block_row = np.repeat(np.arange(blocks.row_ptr.size - 1), np.diff(blocks.row_ptr))
    group = block_row // (geometry.o // geometry.groups // rows)
    values, found = blocks.values.reshape(-1, rows), group * taps + blocks.col_indices
    if values.shape[0] == 0:  # a buffer cannot be empty: one unused zero block
        values, found = np.zeros((1, rows), np.float32), np.zeros(1, np.int64)
    return ConvOperands(
        np.ascontiguousarray(values, np.float32),
        found.astype(np.int32),
        blocks.row_ptr.astype(np.int32),
        rows,
        False,
    )


def activation_of(epilogue: Epilogue):
    from tvm.script import tirx as T

    if epilogue.activation == "relu":
        return lambda v: T.max(v, T.float32(0))
    if epilogue.activation == "clip":
        low, high = epilogue.clip
        return lambda v: T.min(T.max(v, T.float32(low)), T.float32(high))
    return lambda v: v


# Tasks per core to aim for when the positions give few tiles (a 7x7 map is one): chunks of outputs.
TASKS_PER_CORE = 8
# floats zeroed per parallel iteration when padding XB (a serial zeroing loop took 0.4 of 2.0 ms of
# a 3x3 Conv 64->64 at 56x56; 2026-12-02, Xeon AVX-512, /tmp/exp/standalone.py)
ZERO_RUN = 1024


def conv_func(
    geometry: ConvGeometry,
    operands: ConvOperands,
    tiles: ConvTiles,
    lanes: int,
    epilogue: Epilogue,
    cores: int,
):
    """PrimFunc (X[N, C, H, W], values, strip_rows, row_ptr, tap_offsets, bias[O], residual, Y[N, O, OH, OW]).

    Per task (a tile of positions x a chunk of block rows) the taps' rows of XB for the tile are
    packed into a contiguous strip XS[tap, position] first: read in place, each tap is a stream
    of its own (hundreds at once), which the prefetchers do not follow.
    """
    from tvm import tirx
    from tvm.script import tirx as T

    g = geometry
    n_img, c_in, h_in, w_in, o_out = g.n, g.c, g.h, g.w, g.o
    oh_out, ow_out, row, positions = g.out_h, g.out_w, g.row, g.positions
    taps, rows, nv = g.taps, operands.rows, tiles.nv
    all_taps = taps * g.groups
    nr = nv * lanes
    padded = positions_padded(positions, nr)
    block_rows = o_out // rows
    per_group = block_rows // g.groups
    ph, pw = g.phase_shape
    plane = ph * pw
    sh, sw = g.strides
    pt, pl = g.pads[0], g.pads[1]
    image = c_in * h_in * w_in
    alias_x = g.direct and padded == positions  # XB is X: no copy at all
    copy_flat = g.direct and not alias_x  # XB is X with zeros past its end
    # a 1x1 Conv reads one phase: only it is written (a strided 1x1 Conv subsamples X)
    one_phase = g.kh == g.kw == 1
    written = c_in * plane if one_phase else sh * sw * c_in * plane
    xb_len = image if alias_x else max(written, int(g.tap_offsets().max()) + padded)
    nnzb, dense = operands.values.shape[0], operands.dense
    n_strip_rows = operands.strip_rows.shape[0]
    half_a = -(-rows // 2)
    half_b = rows - half_a
    pairs = rows == 1  # one FMA chain per vector is latency-bound: two, over alternate non-zeros
    tiles_p = padded // nr
    chunks = min(block_rows, max(1, -(-TASKS_PER_CORE * cores // tiles_p)))
    per_chunk = -(-block_rows // chunks)
    chunks = -(-block_rows // per_chunk)
    # with chunks of outputs sharing a tile, each would pack the same strip: pack every tile's once
    # (a 7x7 map is one tile: 16 tasks packed 1.2 MB each for a 3x3 Conv of 512 channels)
    shared = chunks > 1 and g.groups == 1
    outer = loop_kind(g.flops // 2 // max(n_img, 1) if dense else nnzb * rows * positions)
    residual_shape = (n_img, o_out, oh_out, ow_out) if epilogue.residual else (1,)
    act = activation_of(epilogue)
    use_residual = epilogue.residual

    def p0(task):  # consecutive tasks share a tile of positions (its strip stays in cache)
        return task // chunks * nr

    def chunk(task):
        return task % chunks

    def br(task, b):  # the block row
        return chunk(task) * per_chunk + b

    def chunk_rows(task):
        return T.min(per_chunk, block_rows - chunk(task) * per_chunk)

    def first_tap(task):  # the strip rows this chunk's groups use
        return chunk(task) * per_chunk // per_group * taps

    def last_tap(task):
        return ((chunk(task) * per_chunk + chunk_rows(task) - 1) // per_group + 1) * taps

    def strip(xs, xsg, task, tap, column):  # the task's strip: its own, or its tile's in the shared one
        if shared:
            return xsg[task // chunks * all_taps + tap, column]
        return xs[tap, column]

    def first(row_ptr, task, b):
        return row_ptr[br(task, b)]

    def count(row_ptr, task, b):
        return row_ptr[br(task, b) + 1] - row_ptr[br(task, b)]

    def strip_row(strip_rows, row_ptr, task, b, e):
        if dense:
            return br(task, b) // per_group * taps + e
        return strip_rows[first(row_ptr, task, b) + e]

    def position(task, v):  # the first position of vector v of the task's tile
        return p0(task) + v * lanes

    def whole(task, v):  # the vector's lanes are real outputs, contiguous in Y
        if row == ow_out:  # no dropped columns (1x1 Convs): Y is the positions in order
            return position(task, v) + lanes <= positions
        return tirx.all(position(task, v) % row + lanes <= ow_out, position(task, v) + lanes <= positions)

    def real(task, v, t):
        return tirx.all((position(task, v) + t) % row < ow_out, position(task, v) + t < positions)

    def dest(n, task, b, r, p):  # Y's flat index of output row r of block row b at position p
        return ((n * o_out + br(task, b) * rows + r) * oh_out + p // row) * ow_out + p % row

    def result(value, rz, index):
        return act(value + rz[index] if use_residual else value)

    @T.prim_func
    def kernel(
        X: T.Buffer((n_img, c_in, h_in, w_in), "float32"),
        values: T.Buffer((nnzb, rows), "float32"),
        strip_rows: T.Buffer((n_strip_rows,), "int32"),
        row_ptr: T.Buffer((block_rows + 1,), "int32"),
        tap_offsets: T.Buffer((all_taps,), "int32"),
        bias: T.Buffer((o_out,), "float32"),
        RZ: T.Buffer(residual_shape, "float32"),
        Y: T.Buffer((n_img, o_out, oh_out, ow_out), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": "main", "tirx.is_scheduled": True})
        XF = T.decl_buffer((n_img * image,), "float32", data=X.data)
        YF = T.decl_buffer((n_img * o_out * oh_out * ow_out,), "float32", data=Y.data)
        RF = T.decl_buffer((n_img * o_out * oh_out * ow_out,), "float32", data=RZ.data)
        XB = T.alloc_buffer((1 if alias_x else xb_len,), "float32")
        XSG = T.alloc_buffer((tiles_p * all_taps if shared else 1, nr), "float32")
        for n in T.serial(n_img):
            if copy_flat:  # X itself, then zeros to the last tile's end: copied in parallel runs
                for e0 in outer(image // ZERO_RUN):
                    for e1 in T.vectorized(ZERO_RUN):
                        XB[e0 * ZERO_RUN + e1] = XF[n * image + e0 * ZERO_RUN + e1]
                for e in T.serial(xb_len - image // ZERO_RUN * ZERO_RUN):
                    XB[image // ZERO_RUN * ZERO_RUN + e] = T.if_then_else(
                        image // ZERO_RUN * ZERO_RUN + e < image,
                        XF[n * image + T.min(image // ZERO_RUN * ZERO_RUN + e, image - 1)],
                        T.float32(0),
                    )
            elif not alias_x:
                for e0 in outer(xb_len // ZERO_RUN):  # the padding: zeroed in parallel runs
                    for e1 in T.vectorized(ZERO_RUN):
                        XB[e0 * ZERO_RUN + e1] = T.float32(0)
                for e in T.serial(xb_len % ZERO_RUN):
                    XB[xb_len - xb_len % ZERO_RUN + e] = T.float32(0)
                for c in outer(c_in):
                    for h in T.serial(ph if one_phase else h_in):
                        for w in T.serial(pw if one_phase else w_in):
                            if one_phase:
                                if (
                                    h * sh - pt >= 0
                                    and h * sh - pt < h_in
                                    and w * sw - pl >= 0
                                    and w * sw - pl < w_in
                                ):
                                    XB[c * plane + h * pw + w] = X[n, c, h * sh - pt, w * sw - pl]
                            else:
                                XB[
                                    (((h + pt) % sh * sw + (w + pl) % sw) * c_in + c) * plane
                                    + (h + pt) // sh * pw
                                    + (w + pl) // sw
                                ] = X[n, c, h, w]
            if shared:  # every tile's strip once, read by all chunks of its outputs
                for job in outer(tiles_p * all_taps):
                    for v in T.unroll(nv):
                        for t in T.vectorized(lanes):
                            if alias_x:
                                XSG[job, v * lanes + t] = XF[
                                    n * image
                                    + tap_offsets[job % all_taps]
                                    + job // all_taps * nr
                                    + v * lanes
                                    + t
                                ]
                            else:
                                XSG[job, v * lanes + t] = XB[
                                    tap_offsets[job % all_taps] + job // all_taps * nr + v * lanes + t
                                ]
            for task in outer(tiles_p * chunks):
                XS = T.alloc_buffer((1 if shared else all_taps, nr), "float32")
                for k in T.serial(0 if shared else last_tap(task) - first_tap(task)):
                    for v in T.unroll(nv):
                        for t in T.vectorized(lanes):
                            if alias_x:
                                XS[first_tap(task) + k, v * lanes + t] = XF[
                                    n * image + tap_offsets[first_tap(task) + k] + position(task, v) + t
                                ]
                            else:
                                XS[first_tap(task) + k, v * lanes + t] = XB[
                                    tap_offsets[first_tap(task) + k] + position(task, v) + t
                                ]
                for b in T.serial(chunk_rows(task)):
                    acc_a = T.alloc_buffer((half_a, nr), "float32")
                    acc_b = T.alloc_buffer((max(half_b, 1), nr), "float32")
                    for r in T.unroll(half_a):
                        for v in T.unroll(nv):
                            for t in T.vectorized(lanes):
                                acc_a[r, v * lanes + t] = bias[br(task, b) * rows + r]
                    for r in T.unroll(half_b):
                        for v in T.unroll(nv):
                            for t in T.vectorized(lanes):
                                acc_b[r, v * lanes + t] = bias[br(task, b) * rows + half_a + r]
                    if pairs:  # one output row: odd non-zeros into acc_b, a second FMA chain
                        for v in T.unroll(nv):
                            for t in T.vectorized(lanes):
                                acc_b[0, v * lanes + t] = T.float32(0)
                        for e in T.serial(count(row_ptr, task, b) // 2):
                            for v in T.unroll(nv):
                                for t in T.vectorized(lanes):
                                    acc_a[0, v * lanes + t] = acc_a[0, v * lanes + t] + values[
                                        first(row_ptr, task, b) + 2 * e, 0
                                    ] * strip(
                                        XS,
                                        XSG,
                                        task,
                                        strip_row(strip_rows, row_ptr, task, b, 2 * e),
                                        v * lanes + t,
                                    )
                            for v in T.unroll(nv):
                                for t in T.vectorized(lanes):
                                    acc_b[0, v * lanes + t] = acc_b[0, v * lanes + t] + values[
                                        first(row_ptr, task, b) + 2 * e + 1, 0
                                    ] * strip(
                                        XS,
                                        XSG,
                                        task,
                                        strip_row(strip_rows, row_ptr, task, b, 2 * e + 1),
                                        v * lanes + t,
                                    )
                        for v in T.unroll(nv):
                            for t in T.vectorized(lanes):
                                if count(row_ptr, task, b) % 2 == 1:
                                    acc_b[0, v * lanes + t] = acc_b[0, v * lanes + t] + values[
                                        first(row_ptr, task, b) + count(row_ptr, task, b) - 1, 0
                                    ] * strip(
                                        XS,
                                        XSG,
                                        task,
                                        strip_row(strip_rows, row_ptr, task, b, count(row_ptr, task, b) - 1),
                                        v * lanes + t,
                                    )
                                acc_a[0, v * lanes + t] = acc_a[0, v * lanes + t] + acc_b[0, v * lanes + t]
                    for e in T.serial(0 if pairs else count(row_ptr, task, b)):
                        for r in T.unroll(half_a):
                            for v in T.unroll(nv):
                                for t in T.vectorized(lanes):
                                    acc_a[r, v * lanes + t] = acc_a[r, v * lanes + t] + values[
                                        first(row_ptr, task, b) + e, r
                                    ] * strip(
                                        XS,
                                        XSG,
                                        task,
                                        strip_row(strip_rows, row_ptr, task, b, e),
                                        v * lanes + t,
                                    )
                        for r in T.unroll(half_b):
                            for v in T.unroll(nv):
                                for t in T.vectorized(lanes):
                                    acc_b[r, v * lanes + t] = acc_b[r, v * lanes + t] + values[
                                        first(row_ptr, task, b) + e, half_a + r
                                    ] * strip(
                                        XS,
                                        XSG,
                                        task,
                                        strip_row(strip_rows, row_ptr, task, b, e),
                                        v * lanes + t,
                                    )
                    for r in T.unroll(half_a):
                        for v in T.unroll(nv):
                            if whole(task, v):
                                for t in T.vectorized(lanes):
                                    YF[dest(n, task, b, 0 + r, position(task, v)) + t] = result(
                                        acc_a[r, v * lanes + t],
                                        RF,
                                        dest(n, task, b, 0 + r, position(task, v)) + t,
                                    )
                            else:
                                edge = T.alloc_buffer((lanes,), "float32")
                                for t in T.vectorized(lanes):
                                    edge[t] = acc_a[r, v * lanes + t]
                                for t in T.serial(lanes):
                                    if real(task, v, t):
                                        YF[dest(n, task, b, 0 + r, position(task, v) + t)] = result(
                                            edge[t], RF, dest(n, task, b, 0 + r, position(task, v) + t)
                                        )
                    for r in T.unroll(half_b):
                        for v in T.unroll(nv):
                            if whole(task, v):
                                for t in T.vectorized(lanes):
                                    YF[dest(n, task, b, half_a + r, position(task, v)) + t] = result(
                                        acc_b[r, v * lanes + t],
                                        RF,
                                        dest(n, task, b, half_a + r, position(task, v)) + t,
                                    )
                            else:
                                edge = T.alloc_buffer((lanes,), "float32")
                                for t in T.vectorized(lanes):
                                    edge[t] = acc_b[r, v * lanes + t]
                                for t in T.serial(lanes):
                                    if real(task, v, t):
                                        YF[dest(n, task, b, half_a + r, position(task, v) + t)] = result(
                                            edge[t], RF, dest(n, task, b, half_a + r, position(task, v) + t)
                                        )

    return kernel


def make_conv_kernel(
    weight,
    bias: np.ndarray | None,
    geometry: ConvGeometry,
    epilogue: Epilogue,
    lanes: int,
    registers: int,
    cores: int,
    label: str,
    tiles: ConvTiles | None = None,
) -> Kernel:
    """The kernel for one Conv; `weight` is a dense W[O, K] or a SparseWeight over it."""
    rows = None
    if not isinstance(weight, np.ndarray):
        rows = sparse_rows(weight, 8)
    tiles = tiles or default_tiles(geometry, rows, lanes, registers)
    operands = conv_operands(weight, geometry, tiles.mr)
    func = conv_func(geometry, operands, tiles, lanes, epilogue, cores)
    bias = np.zeros(geometry.o, np.float32) if bias is None else np.asarray(bias, np.float32)
    useful = (
        geometry.flops
        if operands.dense
        else 2 * operands.values.size * geometry.out_h * geometry.out_w * geometry.n
    )
    return Kernel(
        label,
        func,
        [
            operands.values,
            operands.strip_rows,
            operands.row_ptr,
            geometry.tap_offsets().astype(np.int32),
            bias,
        ],
        {"MR": tiles.mr, "NV": tiles.nv},
        useful,
    )
