"""The CPU dense linear kernel with bfloat16 weights: the GEMM micro-kernel of `dense_cpu.py`
(MR tokens x NV vectors of outputs in registers, weights packed in panels of NR = NV vectors)
written as plain loops, with one of two inner products (`bf16.py`):

- "dot" (AVX512-BF16): X is rounded to bf16 once per call into a workspace XB[m, k]; per pair
  of inputs, NV vector loads of the panel (16 outputs x 2 inputs each) and MR broadcasts of one
  token's input pair feed MR x NV `vdpbf16ps`. Panels: int32 Wp[n / NR, ceil(k/2), NR].
- "widen" (other CPUs): X stays float32; per input, NV loads of 16-bit panel values widened by
  a shift, MR broadcasts, MR x NV float32 FMAs. Panels: uint16 Wp[n / NR, k, NR].

Tokens are tiled by MR with the last tile reading row m-1 again (never stored), so m needs no
padding. Accumulation is float32 throughout; the bias is float32.
"""

from __future__ import annotations

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel, loop_kind
from sparsecc.backends.tvm.kernels import bf16 as B
from sparsecc.backends.tvm.kernels.dense_cpu import PREFERRED_TILES, DenseCpu, fits_registers
from sparsecc.ops.precision import bf16_bits

TOKEN_TILES = (8, 4, 2, 1)


def default_tiles(m: int, n: int, lanes: int, registers: int) -> dict[str, int]:
    """The preferred (MR, NV) whose panels divide n; MR no larger than the tokens."""
    for mr, nv in PREFERRED_TILES[registers]:
        if n % (nv * lanes) == 0 and fits_registers(mr, nv, lanes, registers) and (mr <= m or mr == 1):
            return {"MR": mr, "NV": nv}
    raise ValueError(f"no dense tile fits out_features {n} with {lanes} lanes")


def pack_pairs(w: np.ndarray, nr: int) -> np.ndarray:
    """W[n, k] -> int32 Wp[n / nr, ceil(k/2), nr]: each entry the bf16 pair (W[., 2j], W[., 2j+1])."""
    n = w.shape[0]
    paired = B.pairs(w)  # [n, k2]
    return np.ascontiguousarray(paired.reshape(n // nr, nr, -1).transpose(0, 2, 1))


def pack_bits(w: np.ndarray, nr: int) -> np.ndarray:
    """W[n, k] -> uint16 Wp[n / nr, k, nr] (bf16 bits)."""
    n, k = w.shape
    return np.ascontiguousarray(bf16_bits(w).reshape(n // nr, nr, k).transpose(0, 2, 1))


def dense_bf16_dot(m: int, n: int, k: int, mr: int, nv: int):
    """PrimFunc (X[m, k] f32, Wp[n/NR, k2, NR] i32, bias[n], Y[m, n]) with `vdpbf16ps` (16 lanes)."""
    from tvm.script import tirx as T

    lanes = B.DOT_LANES
    nr, k2 = nv * lanes, -(-k // 2)
    panels, token_tiles = n // nr, -(-m // mr)
    outer = loop_kind(m * n * k)
    prepass = loop_kind(m * k)
    chunks = k // lanes

    @T.prim_func
    def kernel(
        X: T.Buffer((m, k), "float32"),
        W: T.Buffer((panels, k2, nr), "int32"),
        bias: T.Buffer((n,), "float32"),
        Y: T.Buffer((m, n), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": "main", "tirx.is_scheduled": True})
        with T.attr(0, "pragma_import_llvm", B.DOT_LLVM):
            XB = T.alloc_buffer((m, 2 * k2), "uint16")
            for t in prepass(m):
                for c in T.serial(chunks):
                    for lane in T.vectorized(lanes):
                        XB[t, c * lanes + lane] = B.bf16_of(X[t, c * lanes + lane])
                for r in T.serial(2 * k2 - chunks * lanes):
                    if chunks * lanes + r < k:
                        XB[t, chunks * lanes + r] = B.bf16_of(X[t, chunks * lanes + r])
                    else:
                        XB[t, chunks * lanes + r] = T.uint16(0)
            # Consecutive tasks share a panel of weights.
            for task in outer(panels * token_tiles):
                acc = T.alloc_buffer((mr, nv, lanes), "float32")
                for t in T.unroll(mr):
                    for o in T.unroll(nv):
                        acc[t, o, T.ramp(0, 1, lanes)] = bias[
                            T.ramp((task // token_tiles * nv + o) * lanes, 1, lanes)
                        ]
                for j in T.serial(k2):
                    for o in T.unroll(nv):
                        for t in T.unroll(mr):
                            acc[t, o, T.ramp(0, 1, lanes)] = B.dot(
                                acc[t, o, T.ramp(0, 1, lanes)],
                                W[task // token_tiles, j, T.ramp(o * lanes, 1, lanes)],
                                T.Broadcast(
                                    T.reinterpret(
                                        "int32",
                                        XB[T.min(task % token_tiles * mr + t, m - 1), T.ramp(2 * j, 1, 2)],
                                    ),
                                    lanes,
                                ),
                            )
                for t in T.serial(mr):
                    if task % token_tiles * mr + t < m:
                        for o in T.unroll(nv):
                            Y[
                                task % token_tiles * mr + t,
                                T.ramp((task // token_tiles * nv + o) * lanes, 1, lanes),
                            ] = acc[t, o, T.ramp(0, 1, lanes)]

    return kernel


def dense_bf16_widen(m: int, n: int, k: int, mr: int, nv: int, lanes: int):
    """PrimFunc (X[m, k] f32, Wp[n/NR, k, NR] u16, bias[n], Y[m, n]): bf16 widened, float32 FMA."""
    from tvm.script import tirx as T

    nr = nv * lanes
    panels, token_tiles = n // nr, -(-m // mr)
    outer = loop_kind(m * n * k)

    @T.prim_func
    def kernel(
        X: T.Buffer((m, k), "float32"),
        W: T.Buffer((panels, k, nr), "uint16"),
        bias: T.Buffer((n,), "float32"),
        Y: T.Buffer((m, n), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": "main", "tirx.is_scheduled": True})
        for task in outer(panels * token_tiles):
            acc = T.alloc_buffer((mr, nv, lanes), "float32")
            for t in T.unroll(mr):
                for o in T.unroll(nv):
                    acc[t, o, T.ramp(0, 1, lanes)] = bias[
                        T.ramp((task // token_tiles * nv + o) * lanes, 1, lanes)
                    ]
            for r in T.serial(k):
                for o in T.unroll(nv):
                    for t in T.unroll(mr):
                        acc[t, o, T.ramp(0, 1, lanes)] = acc[t, o, T.ramp(0, 1, lanes)] + T.Broadcast(
                            X[T.min(task % token_tiles * mr + t, m - 1), r], lanes
                        ) * B.widen(W[task // token_tiles, r, T.ramp(o * lanes, 1, lanes)], lanes)
            for t in T.serial(mr):
                if task % token_tiles * mr + t < m:
                    for o in T.unroll(nv):
                        Y[
                            task % token_tiles * mr + t,
                            T.ramp((task // token_tiles * nv + o) * lanes, 1, lanes),
                        ] = acc[t, o, T.ramp(0, 1, lanes)]

    return kernel


def make_dense_bf16_kernel(
    w: np.ndarray, bias: np.ndarray | None, m: int, target, label: str, tiles: dict | None = None
) -> Kernel:
    """The bf16-weight dense kernel for `target`: the dot where it has AVX512-BF16, else widen.

    `w` holds bf16 values as float32 (`ops.precision.round_to`); `tiles` may override MR and NV.
    """
    n, k = w.shape
    dot = target.bf16_dot
    lanes = B.DOT_LANES if dot else target.lanes
    tiles = {**default_tiles(m, n, lanes, target.vector_registers), **(tiles or {})}
    mr, nv = int(tiles["MR"]), int(tiles["NV"])
    if n % (nv * lanes) or not fits_registers(mr, nv, lanes, target.vector_registers):
        raise ValueError(f"dense bf16 tiles {tiles} invalid for n={n} with {lanes} lanes")
    bias = np.zeros(n, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    if dot:
        func, panels = dense_bf16_dot(m, n, k, mr, nv), pack_pairs(w, nv * lanes)
    else:
        func, panels = dense_bf16_widen(m, n, k, mr, nv, lanes), pack_bits(w, nv * lanes)
    return Kernel(
        f"{label}_{'dot' if dot else 'widen'}", func, [panels, bias], {"MR": mr, "NV": nv}, 2 * m * n * k
    )


class DenseBf16Cpu(DenseCpu):
    """The dense rule (`DenseCpu`: same name, declines and efficiency) that also builds bf16 weights."""

    dtypes = ("bfloat16",)  # vdpbf16ps with AVX512-BF16, else widened bf16 and float32 FMA

    def build(self, weight, bias, m, target, tiles=None, dtype="float32") -> Kernel:
        if dtype != "bfloat16":
            return super().build(weight, bias, m, target, tiles)
        label = f"{self.label(None, weight.shape, target)}_bf16"
        return make_dense_bf16_kernel(weight, bias, m, target, label, tiles)
