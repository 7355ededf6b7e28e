"""N:M structured linear kernels: Y[m, out] = X[m, in] @ W.T (+ bias), W known at compile time.

Stored entry j of row o sits in column (j // n) * m + indices[o, j], so every row has
the same static trip count and the kernel is a dense gather-FMA loop.

x86 schedule ("permute", the default where it applies): vectorise over W outputs
(W = 16 with AVX-512, 8 with AVX2) instead of over tokens. A W-input window of one
token's X row holds every input that W outputs can pick there (M divides W), so one
`vpermps` with a compile-time lane vector places each output's input in its lane,
and one FMA with the W packed values finishes the slot. No gather, no index
arithmetic, no X transpose, and Y is written with contiguous vector stores. A
register tile is TB tokens x OB output vectors; values and lanes are packed
[out/(W*OB), in/W, slots, OB, W], lanes as int32 (or uint8, tile U8, default at M=1). Measured on Zen 4 (2:4, 3072x768, M=128, 1 thread)
it runs in ~4.1 ms against ~6.4 ms for the token-vectorised schedule below, whose
per-entry index extraction (vpmovzx + shift + vpextrd) costs a third of its time.

Token-vectorised schedule (aarch64 NEON, and shapes the permute one does not fit;
tile PERM=0 forces it on x86): as in the CSR kernel, X is transposed into XT and each
entry becomes a broadcast-FMA over MT tokens. R rows form a register tile
acc[R, MT]; they walk the M-groups together, so the R*n entries of one group read
at most M distinct XT rows (all in L1). The groups are split into chunks of GC
groups whose XT slice (GC*M x MT floats) fits L1; a row block of RB rows passes
over one chunk before the next, with partial sums parked in a small buffer.
Values and positions are pre-packed at compile time as [out/R, groups, R, n] so the
inner loop reads them sequentially; positions stay uint8 (5 bytes per entry).

CUDA schedule: one thread per (token, output row), the token's X row staged in
shared memory; values are packed [k, out] so a warp's loads are coalesced.
"""

from __future__ import annotations

import logging

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel
from sparsecc.ops.formats import NmWeight

logger = logging.getLogger(__name__)

L1_BYTES = 32 * 1024  # budget for the XT slice of one chunk
ROW_BLOCK = 64  # rows per parallel task
ACC_VECTORS = 16  # accumulator vectors per register tile (AVX-512 and NEON have 32 registers)
# Permute window (float32 lanes of one register, tile W) -> the lane permute of that width.
PERMUTES = {16: "llvm.x86.avx512.permvar.sf.512", 8: "llvm.x86.avx2.permps"}
PERMUTE_TILES = ((3, 4), (2, 6), (1, 8))  # (OB, TB): output vectors x tokens, <= 12 accumulators
CUDA_THREADS = 128
TILE_NAMES = ("PERM", "W", "OB", "TB", "U8", "R", "MT", "GC", "RB", "threads")


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _largest_divisor_at_most(value: int, limit: int) -> int:
    return next(d for d in range(max(1, min(limit, value)), 0, -1) if value % d == 0)


def default_tiles(weight: NmWeight, m: int, lanes: int) -> dict[str, int]:
    """R rows x MT tokens of accumulators (ACC_VECTORS vectors), GC groups per chunk, RB rows per task."""
    out, inp = weight.shape
    # 2 vectors x 8 rows beat 4 x 4 by ~10% (2:4, 3072x768); fewer tokens than lanes: next power of two.
    mt = min(2 * lanes, _round_up(m, lanes)) if m >= lanes else 1 << (m - 1).bit_length()
    rows = _largest_divisor_at_most(out, max(1, ACC_VECTORS // max(1, mt // lanes)))
    groups = inp // weight.m
    gc = _largest_divisor_at_most(groups, max(1, L1_BYTES // (4 * mt * weight.m)))
    rb = rows * _largest_divisor_at_most(out // rows, max(1, ROW_BLOCK // rows))
    return {"R": rows, "MT": mt, "GC": gc, "RB": rb}


def pack(weight: NmWeight, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """values and in-group positions as [out/R, groups, R, n] (float32, uint8)."""
    out, inp = weight.shape
    groups = inp // weight.m
    shape = (out // rows, rows, groups, weight.n)
    values = weight.values.reshape(shape).transpose(0, 2, 1, 3)
    positions = weight.indices.reshape(shape).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(values, np.float32), np.ascontiguousarray(positions, np.uint8)


def nm_linear_cpu(m: int, weight: NmWeight, tiles: dict[str, int], name: str = "main"):
    """PrimFunc (X[m, in], values[out/R, G, R, n], positions[out/R, G, R, n] u8, bias[out], Y[m, out])."""
    from tvm.script import tirx as T

    out, inp = weight.shape
    n, group = weight.n, weight.m
    groups = inp // group
    rows, mt, gc, rb = tiles["R"], tiles["MT"], tiles["GC"], tiles["RB"]
    m_padded = _round_up(m, mt)
    n_tiles, n_chunks = m_padded // mt, groups // gc

    @T.prim_func
    def kernel(
        X: T.Buffer((m, inp), "float32"),
        values: T.Buffer((out // rows, groups, rows, n), "float32"),
        positions: T.Buffer((out // rows, groups, rows, n), "uint8"),
        bias: T.Buffer((out,), "float32"),
        Y: T.Buffer((m, out), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": name, "tirx.is_scheduled": True})
        XT = T.alloc_buffer((n_tiles, inp, mt), "float32")
        for k in T.parallel(inp):
            for tile, t in T.grid(n_tiles, mt):
                XT[tile, k, t] = T.if_then_else(
                    tile * mt + t < m, X[T.min(tile * mt + t, m - 1), k], T.float32(0)
                )
        for blk in T.parallel(out // rb):
            part = T.alloc_buffer((rb, mt), "float32")
            for tile in T.serial(n_tiles):
                for c in T.serial(n_chunks):
                    for rt in T.serial(rb // rows):
                        acc = T.alloc_buffer((rows, mt), "float32")
                        for r in T.unroll(rows):
                            for t in T.vectorized(mt):
                                acc[r, t] = T.if_then_else(
                                    c == 0, bias[blk * rb + rt * rows + r], part[rt * rows + r, t]
                                )
                        for g in T.serial(gc):
                            for r in T.unroll(rows):
                                for j in T.unroll(n):
                                    for t in T.vectorized(mt):
                                        acc[r, t] = (
                                            acc[r, t]
                                            + XT[
                                                tile,
                                                (c * gc + g) * group
                                                + T.Cast(
                                                    "int32",
                                                    positions[(blk * rb) // rows + rt, c * gc + g, r, j],
                                                ),
                                                t,
                                            ]
                                            * values[(blk * rb) // rows + rt, c * gc + g, r, j]
                                        )
                        if c == n_chunks - 1:
                            for r in T.serial(rows):
                                for t in T.serial(mt):
                                    if tile * mt + t < m:
                                        Y[tile * mt + t, blk * rb + rt * rows + r] = acc[r, t]
                        else:
                            for r in T.unroll(rows):
                                for t in T.vectorized(mt):
                                    part[rt * rows + r, t] = acc[r, t]

    return kernel


def permute_window(weight: NmWeight, target_info) -> int:
    """The permute width for this weight and target, 0 if the permute schedule does not apply.

    It needs an x86 lane permute (AVX2: 8 lanes, AVX-512: 16) and M | W, W | in, W | out.
    """
    out, inp = weight.shape
    window = max(int(target_info.vector_bits) // 32, 1)
    fits = window in PERMUTES and window % weight.m == 0 and inp % window == 0 and out % window == 0
    return window if target_info.family == "x86" and fits else 0


def default_permute_tiles(weight: NmWeight, m: int, window: int) -> dict[str, int]:
    """The widest output tile that divides out_features; TB tokens never more than there are."""
    vectors = weight.shape[0] // window
    ob, tb = next((ob, tb) for ob, tb in PERMUTE_TILES if vectors % ob == 0)
    # uint8 lanes (5 B per entry, as the format) pay off only when one token cannot amortise the
    # widening: measured 0.037 vs 0.055 ms at M=1, but 2.5 vs 2.0 ms at M=128 (3072x768, 2:4).
    return {"PERM": 1, "W": window, "OB": ob, "TB": min(tb, m), "U8": int(m == 1)}


def pack_permute(
    weight: NmWeight, ob: int, window: int = 16, lane_dtype=np.int32
) -> tuple[np.ndarray, np.ndarray]:
    """values (float32) and lanes (position inside the window) as [out/(W*OB), in/W, S, OB, W].

    Slot s of window w is stored entry w*S + s of each row; its lane is (s // n) * m + position.
    """
    out, inp = weight.shape
    windows, slots = inp // window, window // weight.m * weight.n
    first_lane = (np.arange(windows * slots) % slots // weight.n * weight.m).astype(np.int32)
    lanes = first_lane[None, :] + weight.indices.astype(np.int32)

    def tile(array: np.ndarray) -> np.ndarray:
        blocked = array.reshape(out // (window * ob), ob, window, windows, slots).transpose(0, 3, 4, 1, 2)
        return np.ascontiguousarray(blocked)

    return tile(weight.values.astype(np.float32)), tile(lanes.astype(lane_dtype))


def nm_linear_permute(m: int, weight: NmWeight, tiles: dict[str, int], name: str = "main"):
    """PrimFunc (X[m, in], values[B, in/W, S, OB, W], lanes[B, in/W, S, OB, W] i32, bias[out], Y[m, out])."""
    from tvm.script import tirx as T

    out, inp = weight.shape
    window, ob, tb = tiles["W"], tiles["OB"], tiles["TB"]
    windows, slots = inp // window, window // weight.m * weight.n
    n_blocks, n_token_tiles = out // (window * ob), -(-m // tb)
    permute, vector = PERMUTES[window], f"float32x{window}"
    lane_dtype = "uint8" if tiles["U8"] else "int32"

    @T.prim_func
    def kernel(
        X: T.Buffer((m, inp), "float32"),
        values: T.Buffer((n_blocks, windows, slots, ob, window), "float32"),
        lanes: T.Buffer((n_blocks, windows, slots, ob, window), lane_dtype),
        bias: T.Buffer((out,), "float32"),
        Y: T.Buffer((m, out), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": name, "tirx.is_scheduled": True})
        # Consecutive tasks share a block's weights, and the pool hands each thread a contiguous range.
        for task in T.parallel(n_blocks * n_token_tiles):
            acc = T.alloc_buffer((tb, ob, window), "float32")
            for t in T.unroll(tb):
                for o in T.unroll(ob):
                    acc[t, o, T.ramp(0, 1, window)] = bias[
                        T.ramp((task // n_token_tiles * ob + o) * window, 1, window)
                    ]
            for w in T.serial(windows):
                for s in T.unroll(slots):
                    for o in T.unroll(ob):
                        for t in T.unroll(tb):
                            # Tokens past m (last tile) read row m-1 and are never stored.
                            acc[t, o, T.ramp(0, 1, window)] = (
                                acc[t, o, T.ramp(0, 1, window)]
                                + T.call_llvm_pure_intrin(
                                    T.llvm_lookup_intrinsic_id(permute),
                                    X[
                                        T.min(task % n_token_tiles * tb + t, m - 1),
                                        T.ramp(w * window, 1, window),
                                    ],
                                    T.Cast(
                                        f"int32x{window}",
                                        lanes[task // n_token_tiles, w, s, o, T.ramp(0, 1, window)],
                                    ),
                                    dtype=vector,
                                )
                                * values[task // n_token_tiles, w, s, o, T.ramp(0, 1, window)]
                            )
            for t in T.serial(tb):
                if task % n_token_tiles * tb + t < m:
                    for o in T.unroll(ob):
                        Y[
                            task % n_token_tiles * tb + t,
                            T.ramp((task // n_token_tiles * ob + o) * window, 1, window),
                        ] = acc[t, o, T.ramp(0, 1, window)]

    return kernel


def nm_linear_cuda(m: int, weight: NmWeight, threads: int, name: str = "main"):
    """PrimFunc (X[m, in], values[k, out], positions[k, out] u8, bias[out], Y[m, out]), k = in*n/m."""
    from tvm.script import tirx as T

    out, inp = weight.shape
    n, group = weight.n, weight.m
    kept = inp // group * n
    n_blocks = -(-out // threads)

    @T.prim_func
    def kernel(
        X: T.Buffer((m, inp), "float32"),
        values: T.Buffer((kept, out), "float32"),
        positions: T.Buffer((kept, out), "uint8"),
        bias: T.Buffer((out,), "float32"),
        Y: T.Buffer((m, out), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": name, "tirx.is_scheduled": True})
        for token in T.thread_binding(m, thread="blockIdx.y"):
            for bx in T.thread_binding(n_blocks, thread="blockIdx.x"):
                for tx in T.thread_binding(threads, thread="threadIdx.x"):
                    xs = T.alloc_buffer((inp,), "float32", scope="shared")
                    acc = T.alloc_buffer((1,), "float32", scope="local")
                    for i in T.serial(-(-inp // threads)):
                        if i * threads + tx < inp:
                            xs[i * threads + tx] = X[token, i * threads + tx]
                    T.tvm_storage_sync("shared")
                    if bx * threads + tx < out:
                        acc[0] = bias[bx * threads + tx]
                        for e in T.serial(kept):
                            acc[0] = (
                                acc[0]
                                + xs[e // n * group + T.Cast("int32", positions[e, bx * threads + tx])]
                                * values[e, bx * threads + tx]
                            )
                        Y[token, bx * threads + tx] = acc[0]

    return kernel


def _merge(defaults: dict[str, int], tiles: dict | None) -> dict[str, int]:
    """Defaults overridden by the tunables this schedule has; PERM and W always say what was built."""
    fixed = ("PERM", "W")
    unknown = set(tiles or {}) - set(TILE_NAMES)
    if unknown:
        raise ValueError(f"unknown N:M tiles {sorted(unknown)}; known: {', '.join(TILE_NAMES)}")
    return {**defaults, **{k: int(v) for k, v in (tiles or {}).items() if k in defaults and k not in fixed}}


def make_nm_kernel(
    weight: NmWeight, bias: np.ndarray | None, m: int, target_info, tiles: dict | None = None
) -> Kernel:
    """The scheduled N:M kernel for `target_info` (x86, aarch64 or cuda).

    `tiles` overrides the tunables: PERM (1: permute schedule where it applies, 0: token-vectorised),
    OB/TB/U8 for the permute schedule (W, its width, follows the target), R/MT/GC/RB for the token-vectorised one, threads for CUDA.
    """
    out, _ = weight.shape
    bias_array = np.zeros(out, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    flops = 2 * m * weight.values.size
    label = f"nm_{weight.n}_{weight.m}_{target_info.family}"
    if target_info.family == "cuda":
        threads = int((tiles or {}).get("threads", CUDA_THREADS))
        values = np.ascontiguousarray(weight.values.T, np.float32)
        positions = np.ascontiguousarray(weight.indices.T, np.uint8)
        func = nm_linear_cuda(m, weight, threads)
        return Kernel(label, func, [values, positions, bias_array], {"threads": threads}, flops)
    window = permute_window(weight, target_info)
    if window and (tiles or {}).get("PERM", 1):
        chosen = _merge(default_permute_tiles(weight, m, window), tiles)
        if (out // window) % chosen["OB"] or chosen["TB"] < 1:
            raise ValueError(f"tiles {chosen} must satisfy W*OB | out={out} and TB >= 1")
        lane_dtype = np.uint8 if chosen["U8"] else np.int32
        values, positions = pack_permute(weight, chosen["OB"], window, lane_dtype)
        logger.debug("nm %d:%d %s m=%d permute tiles=%s", weight.n, weight.m, weight.shape, m, chosen)
        func = nm_linear_permute(m, weight, chosen)
        return Kernel(label, func, [values, positions, bias_array], chosen, flops)
    lanes = max(int(target_info.vector_bits) // 32, 1)
    chosen = _merge({**default_tiles(weight, m, lanes), "PERM": 0}, tiles)
    groups = weight.shape[1] // weight.m
    if out % chosen["RB"] or chosen["RB"] % chosen["R"] or groups % chosen["GC"]:
        raise ValueError(f"tiles {chosen} must satisfy R | RB | out={out} and GC | groups={groups}")
    values, positions = pack(weight, chosen["R"])
    logger.debug("nm %d:%d %s m=%d tiles=%s", weight.n, weight.m, weight.shape, m, chosen)
    func = nm_linear_cpu(m, weight, chosen)
    return Kernel(label, func, [values, positions, bias_array], chosen, flops)


def nm_tile_space(weight: NmWeight, m: int, target_info) -> list[dict[str, int]]:
    """Candidate tiles for tuning, the default first; every one is valid for `make_nm_kernel`."""
    if target_info.family == "cuda":
        return [{"threads": t} for t in (CUDA_THREADS, 256, 64)]
    out, _ = weight.shape
    space = []
    window = permute_window(weight, target_info)
    if window:
        for ob, tb in (*PERMUTE_TILES, (3, 5), (4, 3), (2, 4)):
            if (out // window) % ob == 0:
                for u8 in (int(m == 1), int(m != 1)):
                    candidate = {"PERM": 1, "W": window, "OB": ob, "TB": min(tb, m), "U8": u8}
                    if candidate not in space:
                        space.append(candidate)
    lanes = max(int(target_info.vector_bits) // 32, 1)
    token = {**default_tiles(weight, m, lanes), "PERM": 0}
    space.append(token)
    for rows, vectors in ((4, 4), (16, 1), (4, 2)):
        mt = min(vectors * lanes, _round_up(m, lanes))
        if out % rows == 0 and token["RB"] % rows == 0:
            candidate = {**token, "R": rows, "MT": mt}
            if candidate not in space:
                space.append(candidate)
    return space
