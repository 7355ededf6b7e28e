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

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel, loop_kind
from sparsecc.backends.tvm.kernels.conv_cpu import ConvGeometry, Epilogue, activation_of

BLOCK_VECTORS = (2, 1)  # output-channel vectors per register tile, the first that divides O / L
TILE_PIXELS = (7, 6, 4)  # output pixels per register tile, the first that fits the registers


def blocked_shape(shape: tuple[int, ...], lanes: int) -> tuple[int, ...]:
    """[N, C, H, W] -> [N, ceil(C / L), H, W, L]: the blocked tensor holding an NCHW one."""
    n, c, h, w = shape
    return (n, -(-c // lanes), h, w, lanes)


def channel_blocked_tiles(geometry: ConvGeometry, lanes: int, registers: int) -> tuple[int, int] | None:
    """(OB, PX) when a dense Conv of this shape runs channel-blocked, else None (grouped Convs, and
    output channels that are not whole vectors, run in NCHW)."""
    g = geometry
    if g.groups != 1 or g.o % lanes:
        return None
    ob = next(b for b in BLOCK_VECTORS if (g.o // lanes) % b == 0)
    for px in TILE_PIXELS:
        # OB x PX accumulators, OB weight vectors and a broadcast pixel in registers; the
        # accumulators under 1 KiB, or they leave the stack for heap workspace (docs/tvm-notes.md)
        if ob * px + ob + 1 <= registers and ob * px * lanes * 4 < 1024:
            return ob, min(px, g.out_w)
    return None


def blocked_conv_func(
    g: ConvGeometry, lanes: int, ob: int, px: int, epilogue: Epilogue, input_blocked: bool, cores: int
):
    """PrimFunc (X, Wt[O/L, kh, kw, C, L], bias[O], residual, Y[N, O/L, OH, OW, L]).

    X is [N, C/L, H, W, L] when `input_blocked`, else NCHW; the residual has Y's shape."""
    from tvm import tirx
    from tvm.script import tirx as T

    n_img, c_in, h_in, w_in, o_out = g.n, g.c, g.h, g.w, g.o
    oh_out, ow_out, kh, kw = g.out_h, g.out_w, g.kh, g.kw
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = g.strides, g.dilations, g.pads
    in_blocks, blocks = -(-c_in // lanes), o_out // lanes
    unrolled = lanes if c_in % lanes == 0 else 1
    copy = not input_blocked or any(g.pads)  # else X is read in place
    hp, wp = (h_in + pt + pb, w_in + pl + pr) if copy else (1, 1)
    column_tiles = -(-ow_out // px)
    half_a = -(-ob // 2)
    half_b = ob - half_a
    tasks = blocks // ob * oh_out * column_tiles
    outer = loop_kind(g.flops // 2 // max(n_img, 1))
    copy_loop = loop_kind(in_blocks * hp * wp * lanes)
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

    def result(value, rz, n, out_block, task, p, lane):
        if use_residual:
            return act(value + rz[n, out_block, row(task), column(task, p), lane])
        return act(value)

    def inside(hh, ww):
        return tirx.all(hh >= pt, hh < pt + h_in, ww >= pl, ww < pl + w_in)

    def clamp(v, size):
        return T.min(T.max(v, 0), size - 1)

    def source(x, n, cb, lane, hh, ww):  # the padded copy's element, from X in its own layout
        if input_blocked:
            return x[n, cb, clamp(hh - pt, h_in), clamp(ww - pl, w_in), lane]
        return x[n, T.min(cb * lanes + lane, c_in - 1), clamp(hh - pt, h_in), clamp(ww - pl, w_in)]

    def real(cb, lane, hh, ww):
        if input_blocked:
            return inside(hh, ww)
        return tirx.all(inside(hh, ww), cb * lanes + lane < c_in)

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
            if copy:  # zero-padded, blocked
                for job in copy_loop(in_blocks * hp):
                    for ww in T.serial(wp):
                        for lane in T.vectorized(lanes) if input_blocked else T.serial(lanes):
                            XP[job // hp, job % hp, ww, lane] = T.if_then_else(
                                real(job // hp, lane, job % hp, ww),
                                source(X, n, job // hp, lane, job % hp, ww),
                                T.float32(0),
                            )
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
    tiles: tuple[int, int],
    input_blocked: bool,
    cores: int,
    label: str,
) -> Kernel:
    """The channel-blocked kernel for a dense W[O, C * kh * kw]; its output is blocked."""
    g = geometry
    ob, px = tiles
    packed = np.ascontiguousarray(
        np.asarray(w, np.float32).reshape(g.o // lanes, lanes, g.c, g.kh, g.kw).transpose(0, 3, 4, 2, 1)
    )
    bias = np.zeros(g.o, np.float32) if bias is None else np.asarray(bias, np.float32)
    func = blocked_conv_func(g, lanes, ob, px, epilogue, input_blocked, cores)
    return Kernel(label, func, [packed, bias], {"OB": ob, "PX": px}, g.flops)
