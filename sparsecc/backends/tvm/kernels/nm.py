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

Elsewhere (aarch64 NEON, shapes the window does not divide) N:M runs the dense kernel:
a token-vectorised gather-FMA kernel measured slower than dense at every M (2:4, x86:
0.153 vs 0.089 ms at M=1, 3.26 vs 3.08 ms at M=128 for 3072x768), so it was removed.

CUDA schedule: one thread per (token, output row), the token's X row staged in
shared memory; values are packed [k, out] so a warp's loads are coalesced.
"""

from __future__ import annotations

import logging

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel, KernelRule, loop_kind
from sparsecc.ops import NmFormat, NmWeight

logger = logging.getLogger(__name__)

# Permute window (float32 lanes of one register, tile W) -> the lane permute of that width.
PERMUTES = {16: "llvm.x86.avx512.permvar.sf.512", 8: "llvm.x86.avx2.permps"}
PERMUTE_TILES = ((3, 4), (2, 6), (1, 8))  # (OB, TB): output vectors x tokens, <= 12 accumulators
CUDA_THREADS = 128
TILE_NAMES = ("PERM", "W", "OB", "TB", "U8", "threads")


def permute_window(group: int, shape: tuple[int, int], target_info) -> int:
    """The permute width for N:M groups of `group` inputs on W of `shape`, 0 if it does not apply.

    It needs an x86 lane permute (AVX2: 8 lanes, AVX-512: 16) and M | W, W | in, W | out.
    """
    out, inp = shape
    window = max(int(target_info.vector_bits) // 32, 1)
    fits = window in PERMUTES and window % group == 0 and inp % window == 0 and out % window == 0
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
    outer = loop_kind(m * out * inp // weight.m * weight.n)

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
        for task in outer(n_blocks * n_token_tiles):
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
    """The scheduled N:M kernel for `target_info`: the lane permute on x86, or CUDA.

    `tiles` overrides the tunables: OB/TB/U8 for the permute schedule (W, its width, follows
    the target), threads for CUDA.
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
    window = permute_window(weight.m, weight.shape, target_info)
    if not window:
        raise ValueError(f"the N:M permute kernel does not fit {weight.n}:{weight.m} {out}x{weight.shape[1]}")
    chosen = _merge(default_permute_tiles(weight, m, window), tiles)
    if (out // window) % chosen["OB"] or chosen["TB"] < 1:
        raise ValueError(f"tiles {chosen} must satisfy W*OB | out={out} and TB >= 1")
    lane_dtype = np.uint8 if chosen["U8"] else np.int32
    values, positions = pack_permute(weight, chosen["OB"], window, lane_dtype)
    logger.debug("nm %d:%d %s m=%d permute tiles=%s", weight.n, weight.m, weight.shape, m, chosen)
    func = nm_linear_permute(m, weight, chosen)
    return Kernel(label, func, [values, positions, bias_array], chosen, flops)


def nm_tile_space(weight: NmWeight, m: int, target_info) -> list[dict[str, int]]:
    """Candidate tiles for tuning, the default first; every one is valid for `make_nm_kernel`."""
    if target_info.family == "cuda":
        return [{"threads": t} for t in (CUDA_THREADS, 256, 64)]
    out, _ = weight.shape
    window = permute_window(weight.m, weight.shape, target_info)
    space = [default_permute_tiles(weight, m, window)] if window else []
    for ob, tb in (*PERMUTE_TILES, (3, 5), (4, 3), (2, 4)):
        if window and (out // window) % ob == 0:
            for u8 in (int(m == 1), int(m != 1)):
                candidate = {"PERM": 1, "W": window, "OB": ob, "TB": min(tb, m), "U8": u8}
                if candidate not in space:
                    space.append(candidate)
    return space


# Useful FLOP rate against the dense kernel: 2:4 at M=128 measured 0.45-0.55 against the GEMM
# micro-kernel (2026-12-01, Xeon, AVX-512, 2 threads, bench/bench_layers.py: 768x768 0.504 vs 0.49 ms,
# 3072x768 1.62 vs 2.07, 768x3072 1.98 vs 2.08; the best tiles of its grid 0.41-0.9 ms faster at most
# 1.2x, /tmp/i8/nmt.py): 2:4 breaks even with dense here, so it runs dense unless a tuned build
# measures a win.
PERMUTE_EFFICIENCY = 0.5
# Not measured: no GPU has run the CUDA kernel; the CPU figure of 2026-11-28 (Zen 4) stands in.
CUDA_EFFICIENCY = 0.65


class NmPermuteX86(KernelRule):
    """N:M on x86: one vpermps with a compile-time lane vector plus one FMA per slot."""

    name = "nm_permute"
    formats = (NmFormat,)
    summary = "lane-permute kernel (one vpermps + FMA per slot)"

    def declines(self, fmt, shape, m, target) -> str | None:
        if target.family == "cuda":
            return "runs on CPUs only"
        if target.family != "x86":
            return f"needs an x86 lane permute (AVX2 or AVX-512); the target is {target.family}"
        if not permute_window(fmt.m, shape, target):
            window = max(target.vector_bits // 32, 1)
            return f"needs {fmt.m} | {window} | in and {window} | out ({window}-lane permute), got {shape[0]}x{shape[1]}"
        return None

    def efficiency(self, fmt, shape, m, target) -> float:
        return PERMUTE_EFFICIENCY

    def label(self, fmt, shape, target) -> str:
        return f"nm_{fmt.n}_{fmt.m}_{target.family}"

    def build(self, weight, bias, m, target, tiles=None) -> Kernel:
        return make_nm_kernel(weight, bias, m, target, tiles)

    def tile_space(self, weight, m, target) -> list[dict]:
        return nm_tile_space(weight, m, target)


class NmCuda(KernelRule):
    """N:M on CUDA: one thread per (token, output), the token's X row in shared memory."""

    name = "nm_cuda"
    formats = (NmFormat,)
    summary = "one thread per output, X row in shared memory (not yet run on a GPU)"

    def declines(self, fmt, shape, m, target) -> str | None:
        return None if target.family == "cuda" else "runs on CUDA only"

    def efficiency(self, fmt, shape, m, target) -> float:
        return CUDA_EFFICIENCY

    def label(self, fmt, shape, target) -> str:
        return f"nm_{fmt.n}_{fmt.m}_cuda"

    def build(self, weight, bias, m, target, tiles=None) -> Kernel:
        return make_nm_kernel(weight, bias, m, target, tiles)

    def tile_space(self, weight, m, target) -> list[dict]:
        return nm_tile_space(weight, m, target)
