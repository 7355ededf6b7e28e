"""The CPU dense linear kernel: a GEMM micro-kernel vectorised over the outputs.

Y[m, n] = sum_k X[m, k] * W[n, k] + bias[n], with W packed at compile time as panels
Wp[n / NR, k, NR] (NR = NV vectors of outputs). A register tile holds MR tokens x NR
outputs: per k, NV vector loads of the panel and MR broadcasts of X feed MR x NV FMAs,
and neither X nor Y is transposed. The tile, the NV panel vectors and the broadcast must
fit the register file, or LLVM spills the accumulators (16 registers with AVX2, 32 with
AVX-512 and NEON); and it must stay within 1 KiB (`"global"` buffers up to that size
become allocas that LLVM keeps in registers; docs/tvm-notes.md, "Block-sparse TIR").

Measured, one process, interleaved, 2 threads, against onnxruntime's MatMul:
- 2026-12-01, Sapphire Rapids-class Xeon (AVX-512), M=128 (/tmp/i8/gemm.py): MR=8, NV=2 ran
  (768, 768) in 0.49 ms, (3072, 768) 2.07, (768, 3072) 2.08 against 0.50 / 2.01 / 1.93; MR=4,
  NV=4 was within 5% of it; MR=2, NV=8 and MR=1 lost 30-100%.
- 2026-12-02, AMD EPYC with AVX2 only (16 ymm), M=128: MR=8, NV=2 (16 accumulators, spilled)
  ran at 0.51-0.68x of onnxruntime; MR=4, NV=3 at 0.97-1.18x, MR=6, NV=2 0.97-1.01x, MR=3,
  NV=4 (17 registers) 0.6x. At M=8 / 32 / 512, MR=4, NV=3 was 0.98-1.44x / 0.90-1.22x /
  0.99-1.01x, the best of (4,3), (6,2), (8,1), (2,3), (1,3) everywhere but one cell.
  (`/tmp/exp/gemm_sweep.py M`). K-blocking the panel to fit L1 (KC 128-384) changed
  nothing beyond noise there.

MR and NV are the tunables: MetaSchedule samples MR (`design_space`).
"""

from __future__ import annotations

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel, KernelRule, runs_parallel

ALLOCA_BYTES = 1024  # a tile larger than this lands on the heap, and every FMA goes through memory
TOKEN_TILES = (8, 4, 2, 1)  # MR candidates; tokens are padded to a multiple of 8
# (MR, NV) by preference for each register file size: the measured best first
PREFERRED_TILES = {
    32: ((8, 2), (4, 4), (4, 2), (8, 1), (2, 4), (4, 1), (2, 2), (2, 1), (1, 2), (1, 1)),
    16: ((4, 3), (4, 2), (8, 1), (2, 3), (2, 2), (4, 1), (1, 3), (2, 1), (1, 2), (1, 1)),
}


def padded_tokens(m: int) -> int:
    return -(-m // TOKEN_TILES[0]) * TOKEN_TILES[0] if m > 1 else 1


def fits_registers(mr: int, nv: int, lanes: int, registers: int) -> bool:
    """MR x NV accumulators + NV panel vectors + one broadcast in the register file, within an alloca."""
    return mr * nv + nv + 1 <= registers and mr * nv * lanes * 4 <= ALLOCA_BYTES


def output_vectors(n: int, lanes: int, registers: int) -> list[int]:
    """NV values whose panels divide out_features, the preferred first."""
    preferred = dict.fromkeys(nv for _, nv in PREFERRED_TILES[registers])
    return [nv for nv in preferred if n % (nv * lanes) == 0]


def fits(n: int, lanes: int) -> bool:
    return n % lanes == 0


def token_tile_choices(m: int, nv: int, lanes: int, registers: int) -> list[int]:
    """MR values that divide the padded tokens and keep the tile within the register budget."""
    return [
        mr for mr in TOKEN_TILES if fits_registers(mr, nv, lanes, registers) and padded_tokens(m) % mr == 0
    ]


def default_tiles(m: int, n: int, lanes: int, registers: int) -> dict[str, int]:
    for mr, nv in PREFERRED_TILES[registers]:
        if n % (nv * lanes) == 0 and mr in token_tile_choices(m, nv, lanes, registers):
            return {"MR": mr, "NV": nv}
    raise ValueError(f"no dense tile fits out_features {n} with {lanes} lanes")


def pack_panels(w: np.ndarray, nr: int) -> np.ndarray:
    """W[n, k] -> Wp[n / nr, k, nr]: the nr outputs one k meets are one contiguous run."""
    n, k = w.shape
    return np.ascontiguousarray(w.reshape(n // nr, nr, k).transpose(0, 2, 1), dtype=np.float32)


def dense_linear(m: int, n: int, k: int, nr: int):
    """Unscheduled PrimFunc (X[m, k], Wp[n/nr, k, nr], bias[n], Y[m, n]); tokens padded when m % 8."""
    from tvm.script import tirx as T

    m_pad = padded_tokens(m)
    if m_pad == m:

        @T.prim_func(s_tir=True)
        def kernel(
            X: T.Buffer((m, k), "float32"),
            W: T.Buffer((n // nr, k, nr), "float32"),
            bias: T.Buffer((n,), "float32"),
            Y: T.Buffer((m, n), "float32"),
        ):
            T.func_attr({"tirx.noalias": True})
            for i, j, r in T.grid(m, n, k):
                with T.sblock("gemm"):
                    vi, vj, vr = T.axis.remap("SSR", [i, j, r])
                    with T.init():
                        Y[vi, vj] = bias[vj]
                    Y[vi, vj] = Y[vi, vj] + X[vi, vr] * W[vj // nr, vr, vj % nr]

        return kernel

    @T.prim_func(s_tir=True)
    def padded(
        X: T.Buffer((m, k), "float32"),
        W: T.Buffer((n // nr, k, nr), "float32"),
        bias: T.Buffer((n,), "float32"),
        Y: T.Buffer((m, n), "float32"),
    ):
        T.func_attr({"tirx.noalias": True})
        XP = T.sblock_alloc_buffer((m_pad, k), "float32")
        YP = T.sblock_alloc_buffer((m_pad, n), "float32")
        for i, r in T.grid(m_pad, k):
            with T.sblock("XP"):
                vi, vr = T.axis.remap("SS", [i, r])
                XP[vi, vr] = T.if_then_else(vi < m, X[T.min(vi, m - 1), vr], T.float32(0))
        for i, j, r in T.grid(m_pad, n, k):
            with T.sblock("gemm"):
                vi, vj, vr = T.axis.remap("SSR", [i, j, r])
                with T.init():
                    YP[vi, vj] = bias[vj]
                YP[vi, vj] = YP[vi, vj] + XP[vi, vr] * W[vj // nr, vr, vj % nr]
        for i, j in T.grid(m, n):
            with T.sblock("Y"):
                vi, vj = T.axis.remap("SS", [i, j])
                Y[vi, vj] = YP[vi, vj]

    return padded


def _vectorize_inner(sch, loop, lanes: int) -> None:
    outer, lane = sch.split(loop, [None, lanes])
    sch.vectorize(lane)
    sch.unroll(outer)


def schedule_dense(sch, m: int, n: int, k: int, lanes: int, nv: int, registers: int, mr=None) -> None:
    """The micro-kernel schedule; `mr=None` lets MetaSchedule sample the token tile."""
    m_pad = padded_tokens(m)
    parallel = runs_parallel(m * n * k)
    if m_pad != m:
        i, r = sch.get_loops(sch.get_sblock("XP"))
        if parallel:
            sch.parallel(i)
        if k % lanes == 0:
            _vectorize_inner(sch, r, lanes)
        i, j = sch.get_loops(sch.get_sblock("Y"))
        if parallel:
            sch.parallel(i)
        _vectorize_inner(sch, j, lanes)
    block = sch.get_sblock("gemm")
    i, j, r = sch.get_loops(block)
    if mr is None:
        choices = token_tile_choices(m, nv, lanes, registers)
        mr = sch.sample_categorical(choices, [1.0 / len(choices)] * len(choices))
    i_tile, i_in = sch.split(i, [None, mr])
    j_tile, j_vec, j_lane = sch.split(j, [None, nv, lanes])
    sch.reorder(j_tile, i_tile, r, i_in, j_vec, j_lane)
    acc = sch.cache_write(block, 0, "global")  # the MR x NR tile: an alloca held in registers
    sch.reverse_compute_at(acc, i_tile, preserve_unit_loops=True)
    sch.vectorize(j_lane)
    sch.unroll(j_vec)
    sch.unroll(i_in)
    tasks = sch.fuse(j_tile, i_tile)
    if parallel:
        sch.parallel(tasks)  # consecutive tasks share a weight panel
    init = sch.decompose_reduction(block, r)
    for stage in (init, acc):
        *_, rows, columns = sch.get_loops(stage)
        _vectorize_inner(sch, columns, lanes)
        sch.unroll(rows)


def design_space(m: int, n: int, k: int, lanes: int, nv: int, registers: int):
    def space(sch) -> None:
        schedule_dense(sch, m, n, k, lanes, nv, registers)

    return space


def tiles_of_trace(trace, nv: int) -> dict[str, int]:
    for inst in trace.insts:
        if inst.kind.name == "SampleCategorical":
            candidates = [int(c) for c in inst.attrs[0]]
            return {"MR": candidates[int(trace.decisions[inst])], "NV": nv}
    raise ValueError("trace has no token-tile decision")


def make_dense_kernel(
    w: np.ndarray,
    bias: np.ndarray | None,
    m: int,
    lanes: int,
    registers: int,
    label: str,
    tiles: dict | None = None,
) -> Kernel:
    import tvm

    n, k = w.shape
    tiles = {**default_tiles(m, n, lanes, registers), **(tiles or {})}
    mr, nv = int(tiles["MR"]), int(tiles["NV"])
    if nv not in output_vectors(n, lanes, registers) or mr not in token_tile_choices(m, nv, lanes, registers):
        raise ValueError(
            f"dense tiles {tiles} invalid for m={m}, n={n}: NV must give panels dividing n, MR divide "
            f"{padded_tokens(m)}, and the tile fit {registers} registers"
        )
    base = dense_linear(m, n, k, nv * lanes)
    sch = tvm.s_tir.Schedule(base)
    schedule_dense(sch, m, n, k, lanes, nv, registers, mr)
    bias = np.zeros(n, np.float32) if bias is None else np.asarray(bias, np.float32)
    return Kernel(
        label,
        sch.mod["main"].with_attr("tirx.is_scheduled", True),
        [pack_panels(np.asarray(w, np.float32), nv * lanes), bias],
        {"MR": mr, "NV": nv},
        2 * m * n * k,
        base_func=base,
        design_space=design_space(m, n, k, lanes, nv, registers),
        tiles_of_trace=lambda trace: tiles_of_trace(trace, nv),
        space_size=len(token_tile_choices(m, nv, lanes, registers)),
    )


class DenseCpu(KernelRule):
    """Dense W on CPUs, 5 tokens and more: the GEMM micro-kernel over packed weight panels."""

    name = "dense_cpu"
    formats = (None,)
    summary = "GEMM micro-kernel over packed weight panels"

    def declines(self, fmt, shape, m, target) -> str | None:
        if target.family == "cuda":
            return "runs on CPUs only"
        if not fits(shape[0], target.lanes):
            return f"out_features {shape[0]} is not a multiple of {target.lanes} lanes"
        return None

    def efficiency(self, fmt, shape, m, target) -> float:
        return 1.0

    def label(self, fmt, shape, target) -> str:
        return f"dense_gemm_{target.family}"

    def build(self, weight, bias, m, target, tiles=None) -> Kernel:
        label = self.label(None, weight.shape, target)
        return make_dense_kernel(weight, bias, m, target.lanes, target.vector_registers, label, tiles)
