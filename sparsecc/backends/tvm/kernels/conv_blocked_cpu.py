"""Dense Convs on channel-blocked activations (NCHWc: [N, C/L, H, W, L], L = the vector lanes).

Vectorised over output channels: a register tile holds OB vectors of L output channels x PX
output pixels of one row; per (tap, input channel) it loads OB weight vectors and broadcasts
PX input pixels, for OB x PX FMAs. Every Conv shape fits this loop (1x1 and kxk, any stride,
dilation and padding), nothing is padded to whole tiles (the last tile of a row overlaps the
one before it), and the output is stored by whole vectors into the next Conv's layout: a
chain of Convs never goes back to NCHW (`layouts.py` says where the graph converts).

The input is read in place when it arrives blocked and the Conv has no padding; otherwise
it is first copied into a zero-padded blocked buffer (from NCHW: the model's first Conv).

Measured against the NCHW position-vectorised kernel (`conv_cpu.py`) on ResNet-50's shapes:
see `channel_blocked_tiles` and docs/architecture.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel, loop_kind
from sparsecc.backends.tvm.kernels.conv_cpu import ConvGeometry, Epilogue, activation_of

BLOCK_VECTORS = (2, 1)  # output-channel vectors per register tile, the first that divides O / L
TILE_PIXELS = (7, 6, 4)  # output pixels per register tile, the first that fits the registers
# Chunked walk of the weight (measured 2026-12-03, Xeon AVX-512, 2 threads, ResNet-50 dense,
# /tmp/exp/ab_model.py, one interleaved run: 55.3 / 61.2 ms against 61.7 / 64.5 ms unchunked;
# chunking from 8 KiB of weight per tile instead of 32 KiB lost: 64.3 ms)
CHUNK_WEIGHT_BYTES = 32 * 1024
CHUNK_SUMS_BYTES = 32 * 1024
CHUNK_BLOCKS = 8
DEPTHWISE_PIXELS = 8  # output pixels per register tile of a depthwise Conv (one vector each)


def blocked_shape(shape: tuple[int, ...], lanes: int) -> tuple[int, ...]:
    """[N, C, H, W] -> [N, ceil(C / L), H, W, L]: the blocked tensor holding an NCHW one."""
    n, c, h, w = shape
    return (n, -(-c // lanes), h, w, lanes)


@dataclasses.dataclass(frozen=True)
class BlockedTiles:
    ob: int  # vectors of output channels per register tile
    px: int  # output pixels per register tile (of one row)
    rows_per_task: int = 0  # > 0: tasks of OB blocks x this many rows, the weight walked in chunks
    chunk_blocks: int = 1  # blocks of input channels per chunk (of one tap)
    depthwise: bool = False  # one input channel per output channel (groups = C = O)


def channel_blocked_tiles(geometry: ConvGeometry, lanes: int, registers: int) -> BlockedTiles | None:
    """The tiles when a dense Conv of this shape runs channel-blocked, else None (grouped Convs
    other than depthwise ones, output channels that are not whole vectors and inputs of fewer
    channels than a vector run in NCHW: ResNet-50's 7x7 stem on the RGB image took 2.1 ms
    blocked, 1.3 ms in NCHW; the whole model 60.8 against 62.4 ms, /tmp/exp/ab_model.py).

    A tile of PX pixels reads its OB blocks' whole weight (taps x C x OB vectors); past
    CHUNK_WEIGHT_BYTES (out of L1) the task takes rows of the output (partial sums within
    CHUNK_SUMS_BYTES) and walks the weight in chunks of CHUNK_BLOCKS blocks of input channels."""
    g = geometry
    if g.c < lanes:  # an image (RGB): the NCHW kernel reads it faster, the next Conv blocks it
        return None
    if g.groups == g.c == g.o and g.c % lanes == 0:
        return BlockedTiles(1, min(DEPTHWISE_PIXELS, g.out_w), depthwise=True)
    if g.groups != 1 or g.o % lanes:
        return None
    ob = next(b for b in BLOCK_VECTORS if (g.o // lanes) % b == 0)
    for px in TILE_PIXELS:
        # OB x PX accumulators, OB weight vectors and a broadcast pixel in registers; the
        # accumulators under 1 KiB, or they leave the stack for heap workspace (docs/tvm-notes.md)
        if ob * px + ob + 1 <= registers and ob * px * lanes * 4 < 1024:
            px = min(px, g.out_w)
            vector = lanes * 4
            if g.out_w % px or g.c % lanes or g.taps * ob * vector <= CHUNK_WEIGHT_BYTES:
                return BlockedTiles(ob, px)
            rows = max(1, min(g.out_h, CHUNK_SUMS_BYTES // (ob * g.out_w * vector)))
            chunk = next(v for v in (CHUNK_BLOCKS, 4, 2, 1) if (g.c // lanes) % v == 0)
            return BlockedTiles(ob, px, rows, chunk)
    return None


def blocked_conv_func(
    g: ConvGeometry, lanes: int, tiles: BlockedTiles, epilogue: Epilogue, input_blocked: bool, cores: int
):
    """PrimFunc (X, Wt[O/L, kh, kw, C, L], bias[O], residual, Y[N, O/L, OH, OW, L]).

    X is [N, C/L, H, W, L] when `input_blocked`, else NCHW; the residual has Y's shape.
    `tiles.rows_per_task` > 0 (OW a multiple of PX): a task is OB blocks x that many output rows,
    and walks the weight in chunks of one tap x `tiles.chunk_blocks` blocks of input channels over
    all its pixels, partial sums in a buffer: the chunk stays in L1, where otherwise each tile of
    PX pixels streams its blocks' whole weight from L2."""
    from tvm import tirx
    from tvm.script import tirx as T

    n_img, c_in, h_in, w_in, o_out = g.n, g.c, g.h, g.w, g.o
    oh_out, ow_out, kh, kw = g.out_h, g.out_w, g.kh, g.kw
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = g.strides, g.dilations, g.pads
    in_blocks, blocks = -(-c_in // lanes), o_out // lanes
    # channels per unrolled step: a whole block (constant offsets), or all of a few (an RGB input)
    unrolled = lanes if c_in % lanes == 0 else (c_in if c_in < lanes else 1)
    copy = not input_blocked or any(g.pads)  # else X is read in place
    hp, wp = (h_in + pt + pb, w_in + pl + pr) if copy else (1, 1)
    ob, px, rt, cbs = tiles.ob, tiles.px, tiles.rows_per_task, tiles.chunk_blocks
    column_tiles = -(-ow_out // px)
    half_a = -(-ob // 2)
    half_b = ob - half_a
    tasks = blocks // ob * oh_out * column_tiles
    row_groups = -(-oh_out // rt) if rt > 0 else 1
    chunks = c_in // unrolled // cbs if rt > 0 else 1
    outer = loop_kind(g.flops // 2 // max(n_img, 1))
    copy_loop = loop_kind(c_in * hp * wp)
    act, use_residual = activation_of(epilogue), epilogue.residual
    x_shape = (n_img, in_blocks, h_in, w_in, lanes) if input_blocked else (n_img, c_in, h_in, w_in)
    y_shape = (n_img, blocks, oh_out, ow_out, lanes)
    residual_shape = y_shape if use_residual else (1,)
    del cores  # one task per (OB blocks, row, tile of columns): hundreds, enough for any core count

    def block(task, b):  # consecutive tasks share a block of weights (in L1) and move along pixels
        return task // (column_tiles * oh_out) * ob + b

    def row(task):
        return task // column_tiles % oh_out

    def column(task, p):  # the last tile of a row overlaps the one before it: no partial tiles
        return T.min(task % column_tiles * px, ow_out - px) + p

    def pixel(x, xp, n, c, task, p, i, j):  # input channel c under tap (i, j) of output pixel p
        hh, ww = row(task) * sh + i * dh, column(task, p) * sw + j * dw
        if copy:
            return xp[c // lanes, hh, ww, c % lanes]
        return x[n, c // lanes, hh, ww, c % lanes]

    def group_pixel(x, xp, n, c, task, r, col, i, j):  # `pixel`, for row r of a task's rows
        hh, ww = (task % row_groups * rt + r) * sh + i * dh, col * sw + j * dw
        if copy:
            return xp[c // lanes, hh, ww, c % lanes]
        return x[n, c // lanes, hh, ww, c % lanes]

    def group_result(value, rz, n, out_block, oh, ow, lane):
        if use_residual:
            return act(value + rz[n, out_block, oh, ow, lane])
        return act(value)

    def result(value, rz, n, out_block, task, p, lane):
        if use_residual:
            return act(value + rz[n, out_block, row(task), column(task, p), lane])
        return act(value)

    def inside(hh, ww):
        return tirx.all(hh >= pt, hh < pt + h_in, ww >= pl, ww < pl + w_in)

    def clamp(v, size):
        return T.min(T.max(v, 0), size - 1)

    @T.prim_func
    def kernel(
        X: T.Buffer(x_shape, "float32"),
        Wt: T.Buffer((blocks, kh, kw, c_in, lanes), "float32"),
        bias: T.Buffer((o_out,), "float32"),
        RZ: T.Buffer(residual_shape, "float32"),
        Y: T.Buffer(y_shape, "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": "main", "tirx.is_scheduled": True})
        XP = T.alloc_buffer((in_blocks if copy else 1, hp, wp, lanes), "float32")
        for n in T.serial(n_img):
            if copy and input_blocked:  # zero-padded
                for job in copy_loop(in_blocks * hp):
                    for ww in T.serial(wp):
                        for lane in T.vectorized(lanes):
                            XP[job // hp, job % hp, ww, lane] = T.if_then_else(
                                inside(job % hp, ww),
                                X[n, job // hp, clamp(job % hp - pt, h_in), clamp(ww - pl, w_in), lane],
                                T.float32(0),
                            )
            elif copy:  # from NCHW, zero-padded; only real channels (the kernel reads no other lane)
                for job in copy_loop(c_in * hp):
                    for ww in T.serial(wp):
                        XP[job // hp // lanes, job % hp, ww, job // hp % lanes] = T.if_then_else(
                            inside(job % hp, ww),
                            X[n, job // hp, clamp(job % hp - pt, h_in), clamp(ww - pl, w_in)],
                            T.float32(0),
                        )
            if rt > 0:
                for task in outer(blocks // ob * row_groups):
                    ACC = T.alloc_buffer((ob, rt, ow_out, lanes), "float32")
                    for b, r, col in T.grid(ob, rt, ow_out):
                        for lane in T.vectorized(lanes):
                            ACC[b, r, col, lane] = bias[(task // row_groups * ob + b) * lanes + lane]
                    for i, j, k in T.grid(kh, kw, chunks):
                        for r, ct in T.grid(T.min(rt, oh_out - task % row_groups * rt), column_tiles):
                            acc_a = T.alloc_buffer((half_a, px, lanes), "float32")
                            acc_b = T.alloc_buffer((max(half_b, 1), px, lanes), "float32")
                            for b in T.unroll(half_a):
                                for p in T.unroll(px):
                                    for lane in T.vectorized(lanes):
                                        acc_a[b, p, lane] = ACC[b, r, ct * px + p, lane]
                            for b in T.unroll(half_b):
                                for p in T.unroll(px):
                                    for lane in T.vectorized(lanes):
                                        acc_b[b, p, lane] = ACC[half_a + b, r, ct * px + p, lane]
                            for cb in T.serial(cbs):
                                for cu in T.unroll(unrolled):
                                    for b in T.unroll(half_a):
                                        for p in T.unroll(px):
                                            for lane in T.vectorized(lanes):
                                                acc_a[b, p, lane] = (
                                                    acc_a[b, p, lane]
                                                    + group_pixel(
                                                        X,
                                                        XP,
                                                        n,
                                                        (k * cbs + cb) * unrolled + cu,
                                                        task,
                                                        r,
                                                        ct * px + p,
                                                        i,
                                                        j,
                                                    )
                                                    * Wt[
                                                        task // row_groups * ob + b,
                                                        i,
                                                        j,
                                                        (k * cbs + cb) * unrolled + cu,
                                                        lane,
                                                    ]
                                                )
                                    for b in T.unroll(half_b):
                                        for p in T.unroll(px):
                                            for lane in T.vectorized(lanes):
                                                acc_b[b, p, lane] = (
                                                    acc_b[b, p, lane]
                                                    + group_pixel(
                                                        X,
                                                        XP,
                                                        n,
                                                        (k * cbs + cb) * unrolled + cu,
                                                        task,
                                                        r,
                                                        ct * px + p,
                                                        i,
                                                        j,
                                                    )
                                                    * Wt[
                                                        task // row_groups * ob + half_a + b,
                                                        i,
                                                        j,
                                                        (k * cbs + cb) * unrolled + cu,
                                                        lane,
                                                    ]
                                                )
                            for b in T.unroll(half_a):
                                for p in T.unroll(px):
                                    for lane in T.vectorized(lanes):
                                        ACC[b, r, ct * px + p, lane] = acc_a[b, p, lane]
                            for b in T.unroll(half_b):
                                for p in T.unroll(px):
                                    for lane in T.vectorized(lanes):
                                        ACC[half_a + b, r, ct * px + p, lane] = acc_b[b, p, lane]
                    for b, r, col in T.grid(ob, T.min(rt, oh_out - task % row_groups * rt), ow_out):
                        for lane in T.vectorized(lanes):
                            Y[n, task // row_groups * ob + b, task % row_groups * rt + r, col, lane] = (
                                group_result(
                                    ACC[b, r, col, lane],
                                    RZ,
                                    n,
                                    task // row_groups * ob + b,
                                    task % row_groups * rt + r,
                                    col,
                                    lane,
                                )
                            )
            else:
                for task in outer(tasks):
                    # two accumulator buffers, each under 1 KiB, or they leave the stack (and registers)
                    acc_a = T.alloc_buffer((half_a, px, lanes), "float32")
                    acc_b = T.alloc_buffer((max(half_b, 1), px, lanes), "float32")
                    for b in T.unroll(half_a):
                        for p in T.unroll(px):
                            for lane in T.vectorized(lanes):
                                acc_a[b, p, lane] = bias[block(task, b) * lanes + lane]
                    for b in T.unroll(half_b):
                        for p in T.unroll(px):
                            for lane in T.vectorized(lanes):
                                acc_b[b, p, lane] = bias[block(task, half_a + b) * lanes + lane]
                    # taps outer, channels inner; a whole block of channels unrolled (constant offsets)
                    for i, j, cb in T.grid(kh, kw, c_in // unrolled):
                        for cu in T.unroll(unrolled):
                            for b in T.unroll(half_a):
                                for p in T.unroll(px):
                                    for lane in T.vectorized(lanes):
                                        acc_a[b, p, lane] = (
                                            acc_a[b, p, lane]
                                            + pixel(X, XP, n, cb * unrolled + cu, task, p, i, j)
                                            * Wt[block(task, b), i, j, cb * unrolled + cu, lane]
                                        )
                            for b in T.unroll(half_b):
                                for p in T.unroll(px):
                                    for lane in T.vectorized(lanes):
                                        acc_b[b, p, lane] = (
                                            acc_b[b, p, lane]
                                            + pixel(X, XP, n, cb * unrolled + cu, task, p, i, j)
                                            * Wt[block(task, half_a + b), i, j, cb * unrolled + cu, lane]
                                        )
                    for b in T.unroll(half_a):
                        for p in T.unroll(px):
                            for lane in T.vectorized(lanes):
                                Y[n, block(task, b), row(task), column(task, p), lane] = result(
                                    acc_a[b, p, lane], RZ, n, block(task, b), task, p, lane
                                )
                    for b in T.unroll(half_b):
                        for p in T.unroll(px):
                            for lane in T.vectorized(lanes):
                                Y[n, block(task, half_a + b), row(task), column(task, p), lane] = result(
                                    acc_b[b, p, lane], RZ, n, block(task, half_a + b), task, p, lane
                                )

    return kernel


def make_blocked_conv_kernel(
    w: np.ndarray,
    bias,
    geometry: ConvGeometry,
    epilogue: Epilogue,
    lanes: int,
    tiles: BlockedTiles,
    input_blocked: bool,
    cores: int,
    label: str,
) -> Kernel:
    """The channel-blocked kernel for a dense W[O, C/groups * kh * kw]; its output is blocked."""
    g = geometry
    if tiles.depthwise:
        packed = np.ascontiguousarray(
            np.asarray(w, np.float32).reshape(g.o // lanes, lanes, g.kh, g.kw).transpose(0, 2, 3, 1)
        )
        bias = np.zeros(g.o, np.float32) if bias is None else np.asarray(bias, np.float32)
        func = depthwise_blocked_func(g, lanes, tiles.px, epilogue, input_blocked)
        return Kernel(label, func, [packed, bias], {"PX": tiles.px}, g.flops)
    packed = np.ascontiguousarray(
        np.asarray(w, np.float32).reshape(g.o // lanes, lanes, g.c, g.kh, g.kw).transpose(0, 3, 4, 2, 1)
    )
    bias = np.zeros(g.o, np.float32) if bias is None else np.asarray(bias, np.float32)
    func = blocked_conv_func(g, lanes, tiles, epilogue, input_blocked, cores)
    return Kernel(
        label,
        func,
        [packed, bias],
        {"OB": tiles.ob, "PX": tiles.px, "RT": tiles.rows_per_task, "CB": tiles.chunk_blocks},
        g.flops,
    )


def depthwise_blocked_func(g: ConvGeometry, lanes: int, px: int, epilogue: Epilogue, input_blocked: bool):
    """PrimFunc (X, Wt[C/L, kh, kw, L], bias[C], residual, Y[N, C/L, OH, OW, L]) of a depthwise Conv:
    each lane is a channel, so a tile of PX pixels loads (not broadcasts) its inputs and one weight
    vector per tap."""
    from tvm import tirx
    from tvm.script import tirx as T

    n_img, c_in, h_in, w_in = g.n, g.c, g.h, g.w
    oh_out, ow_out, kh, kw = g.out_h, g.out_w, g.kh, g.kw
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = g.strides, g.dilations, g.pads
    blocks = c_in // lanes
    copy = not input_blocked or any(g.pads)
    hp, wp = (h_in + pt + pb, w_in + pl + pr) if copy else (1, 1)
    column_tiles = -(-ow_out // px)
    outer = loop_kind(g.flops // 2 // max(n_img, 1))
    copy_loop = loop_kind(c_in * hp * wp)
    act, use_residual = activation_of(epilogue), epilogue.residual
    x_shape = (n_img, blocks, h_in, w_in, lanes) if input_blocked else (n_img, c_in, h_in, w_in)
    y_shape = (n_img, blocks, oh_out, ow_out, lanes)
    residual_shape = y_shape if use_residual else (1,)

    def column(job, ct, p):  # the last tile of a row overlaps the one before it
        return T.min(ct * px, ow_out - px) + p

    def pixel(x, xp, n, cb, hh, ww, lane):
        if copy:
            return xp[cb, hh, ww, lane]
        return x[n, cb, hh, ww, lane]

    def inside(hh, ww):
        return tirx.all(hh >= pt, hh < pt + h_in, ww >= pl, ww < pl + w_in)

    def clamp(v, size):
        return T.min(T.max(v, 0), size - 1)

    def result(value, rz, n, cb, oh, ow, lane):
        if use_residual:
            return act(value + rz[n, cb, oh, ow, lane])
        return act(value)

    @T.prim_func
    def kernel(
        X: T.Buffer(x_shape, "float32"),
        Wt: T.Buffer((blocks, kh, kw, lanes), "float32"),
        bias: T.Buffer((c_in,), "float32"),
        RZ: T.Buffer(residual_shape, "float32"),
        Y: T.Buffer(y_shape, "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": "main", "tirx.is_scheduled": True})
        XP = T.alloc_buffer((blocks if copy else 1, hp, wp, lanes), "float32")
        for n in T.serial(n_img):
            if copy and input_blocked:
                for job in copy_loop(blocks * hp):
                    for ww in T.serial(wp):
                        for lane in T.vectorized(lanes):
                            XP[job // hp, job % hp, ww, lane] = T.if_then_else(
                                inside(job % hp, ww),
                                X[n, job // hp, clamp(job % hp - pt, h_in), clamp(ww - pl, w_in), lane],
                                T.float32(0),
                            )
            elif copy:
                for job in copy_loop(c_in * hp):
                    for ww in T.serial(wp):
                        XP[job // hp // lanes, job % hp, ww, job // hp % lanes] = T.if_then_else(
                            inside(job % hp, ww),
                            X[n, job // hp, clamp(job % hp - pt, h_in), clamp(ww - pl, w_in)],
                            T.float32(0),
                        )
            for job in outer(blocks * oh_out):
                for ct in T.serial(column_tiles):
                    acc = T.alloc_buffer((px, lanes), "float32")
                    for p in T.unroll(px):
                        for lane in T.vectorized(lanes):
                            acc[p, lane] = bias[job // oh_out * lanes + lane]
                    for i, j in T.grid(kh, kw):
                        for p in T.unroll(px):
                            for lane in T.vectorized(lanes):
                                acc[p, lane] = (
                                    acc[p, lane]
                                    + pixel(
                                        X,
                                        XP,
                                        n,
                                        job // oh_out,
                                        job % oh_out * sh + i * dh,
                                        column(job, ct, p) * sw + j * dw,
                                        lane,
                                    )
                                    * Wt[job // oh_out, i, j, lane]
                                )
                    for p in T.unroll(px):
                        for lane in T.vectorized(lanes):
                            Y[n, job // oh_out, job % oh_out, column(job, ct, p), lane] = result(
                                acc[p, lane], RZ, n, job // oh_out, job % oh_out, column(job, ct, p), lane
                            )

    return kernel
