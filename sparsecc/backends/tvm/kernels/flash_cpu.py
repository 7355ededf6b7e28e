"""The online-softmax step that the CPU attention kernels share (dense and pattern attention).

One step takes TQ query rows over one run of at most TK keys and folds it into their running
softmax state, without a score matrix beyond TQ x TK:
  S   = Q[rows] K[keys]^T, scaled and masked   register tiles of TQ x KR scores, vectorised over
                                               keys (K comes transposed); each row's maxima per
                                               lane are taken as the scores leave the registers
  m'  = max(m, max S)                          one tree reduction across lanes per row and step
  P   = exp(S - m')                            the polynomial exp (`fast_exp`, no libm calls)
  l   = l * exp(m - m') + sum P                kept per lane: reduced across lanes once, at the
                                               end (`finish_rows`), not at every step
  acc = acc * exp(m - m') + P V[keys]          register tiles of TQ x DV output columns, the
                                               rescale applied once per step
(A serial reduction across lanes of the max and of the sum, per row and step, is a chain of 16
dependent scalar operations each with AVX-512, beside ~1000 FMAs per row and step at TK = 128.)

The kernels differ only in where rows, keys and values live; they say it with an *operand
view* (`query(q, d)`, `key(d, j)`, `value(j, c)`, `score(s, q, j)`: the j-th key of the run,
the q-th row of the tile), built inside their PrimFunc and handed to the step.
"""

from __future__ import annotations

import dataclasses

# exp(x) = 2^n * p(r), x = n ln2 + r, |r| <= ln2 / 2: Cody-Waite split of ln2 and the degree-6
# minimax polynomial of Cephes' expf (relative error ~1e-7 over float32's range).
EXP_HI, EXP_LO = 88.3762626647950, -88.3762626647949
LOG2E = 1.44269504088896341
LN2_HI, LN2_LO = 0.693359375, -2.12194440e-4
EXP_POLY = (
    1.9875691500e-4,
    1.3981999507e-3,
    8.3334519073e-3,
    4.1665795894e-2,
    1.6666665459e-1,
    5.0000001201e-1,
)
NEG_INF = float("-inf")

# Per-row softmax state, the columns of the `stats` buffer [rows, SUMS + lanes]: the running
# max, this step's max, the rescale of the past, the row sum once finished; from SUMS on, the
# running sum kept per lane (reduced across lanes once, at the end, not at every step).
ROW_MAX, STEP_MAX, RESCALE, ROW_SUM, SUMS = 0, 1, 2, 3, 4


def stats_shape(rows: int, lanes: int) -> tuple[int, int]:
    return (rows, SUMS + lanes)


def fast_exp(x):
    """exp of a float32 PrimExpr as arithmetic that vectorises; exp(-inf) = 0."""
    from tvm import tirx

    f32 = "float32"
    x = tirx.max(tirx.min(x, tirx.const(EXP_HI, f32)), tirx.const(EXP_LO, f32))
    n = tirx.floor(x * tirx.const(LOG2E, f32) + tirx.const(0.5, f32))
    r = x - n * tirx.const(LN2_HI, f32) - n * tirx.const(LN2_LO, f32)
    p = tirx.const(EXP_POLY[0], f32)
    for c in EXP_POLY[1:]:
        p = p * r + tirx.const(c, f32)
    p = p * r * r + r + tirx.const(1.0, f32)
    bits = tirx.shift_left(tirx.Cast("int32", n) + tirx.const(127, "int32"), tirx.const(23, "int32"))
    return p * tirx.reinterpret(f32, bits)


def _safe(row_max):
    """A row masked so far keeps max -inf; its exponents use 0 instead (exp(-inf) = 0, not NaN)."""
    from tvm import tirx

    return tirx.Select(row_max == tirx.const(NEG_INF, "float32"), tirx.const(0.0, "float32"), row_max)


def _tree(op, values: list):
    """op over `values` as a balanced tree (a short dependency chain, not a serial one)."""
    while len(values) > 1:
        values = [
            op(values[i], values[i + 1]) if i + 1 < len(values) else values[i]
            for i in range(0, len(values), 2)
        ]
    return values[0]


def lane_max(buffer, row, lanes: int):
    from tvm import tirx

    return _tree(tirx.max, [buffer[row, lane] for lane in range(lanes)])


def normalised(acc, stats, row, column):
    """The output of a finished row: acc / rowsum, 0 for a row that kept no key."""
    from tvm import tirx

    total = stats[row, ROW_SUM]
    zero = tirx.const(0.0, "float32")
    return tirx.Select(total > zero, acc[row, column] / total, zero)


def init_rows(rows: int, value_dim: int, lanes: int):
    """Macro (stats, acc): rows start with max -inf, sum 0, output 0."""
    from tvm.script import tirx as T

    @T.macro
    def init(stats, acc):
        for r in T.serial(rows):
            stats[r, ROW_MAX] = T.float32(NEG_INF)
            for lane in T.vectorized(lanes):
                stats[r, SUMS + lane] = T.float32(0)
            for j in T.vectorized(value_dim):
                acc[r, j] = T.float32(0)

    return init


def finish_rows(lanes: int):
    """Macro (stats, count): the row sums of the first `count` rows, for `normalised`."""
    from tvm.script import tirx as T

    @T.macro
    def finish(stats, count):
        for r in T.serial(count):
            stats[r, ROW_SUM] = _tree(lambda a, b: a + b, [stats[r, SUMS + lane] for lane in range(lanes)])

    return finish


@dataclasses.dataclass(frozen=True)
class Work:
    """A task's buffers (allocated once per task: an allocation inside the step would cost a
    workspace call per step). `stats` (`stats_shape`) and `acc` [rows, Dv]: the running state
    of the task's rows; scratch of one step: `s` [TQ, TK] scores, `reg` [TQ, KR] and `chunk`
    [TQ, DV] the register tiles (LLVM keeps them in registers), `top` [TQ, lanes] the rows'
    maxima per lane, `part` [lanes]."""

    stats: object
    acc: object
    s: object
    reg: object
    chunk: object
    top: object
    part: object


def scratch_shapes(tiles: dict[str, int], lanes: int) -> dict[str, tuple[int, ...]]:
    """Shapes of `Work`'s scratch buffers for these tiles."""
    tq = tiles["TQ"]
    return {
        "s": (tq, tiles["TK"]),
        "reg": (tq, tiles["KR"]),
        "chunk": (tq, tiles["DV"]),
        "top": (tq, lanes),
        "part": (lanes,),
    }


def flash_step(tiles: dict[str, int], head_dim: int, value_dim: int, lanes: int):
    """Macro (work, row0, length, view): one step over `length` <= TK keys for the TQ rows of
    `work` (a `Work`) from `row0`. Scores are computed for whole register tiles
    (ceil(length / KR) x KR keys): `view.key` must read (zeros) up to there and `view.score` must
    give -inf to the keys a row drops, those past `length` included.
    """
    from tvm.script import tirx as T

    tq, kr, dvc = tiles["TQ"], tiles["KR"], tiles["DV"]
    vectors = kr // lanes

    @T.macro
    def step(work, row0, length, view):
        s, stats, acc, part, top = work.s, work.stats, work.acc, work.part, work.top
        reg, chunk = work.reg, work.chunk
        for q in T.serial(tq):
            for lane in T.vectorized(lanes):
                top[q, lane] = stats[row0 + q, ROW_MAX]
        # S = Q K^T, KR keys at a time: TQ x KR/lanes accumulators (unrolled indices only, so LLVM
        # keeps them in registers; Q is broadcast from memory); the rows' maxima per lane
        for kc in T.serial((length + (kr - 1)) // kr):
            for q in T.unroll(tq):
                for j in T.vectorized(kr):
                    reg[q, j] = T.float32(0)
            for d in T.serial(head_dim):
                for q in T.unroll(tq):
                    for jv in T.unroll(vectors):
                        for lane in T.vectorized(lanes):
                            reg[q, jv * lanes + lane] = reg[q, jv * lanes + lane] + view.query(
                                q, d
                            ) * view.key(d, kc * kr + jv * lanes + lane)
            for q in T.unroll(tq):
                for jv in T.unroll(vectors):
                    for lane in T.vectorized(lanes):
                        s[q, kc * kr + jv * lanes + lane] = view.score(
                            reg[q, jv * lanes + lane], q, kc * kr + jv * lanes + lane
                        )
                        top[q, lane] = T.max(top[q, lane], s[q, kc * kr + jv * lanes + lane])
        # online softmax, row by row: the step's max, P = exp(S - max), the rescale of the past
        for q in T.serial(tq):
            stats[row0 + q, STEP_MAX] = lane_max(top, q, lanes)
            stats[row0 + q, RESCALE] = fast_exp(stats[row0 + q, ROW_MAX] - _safe(stats[row0 + q, STEP_MAX]))
            for lane in T.vectorized(lanes):
                part[lane] = stats[row0 + q, SUMS + lane] * stats[row0 + q, RESCALE]
            for jv in T.serial((length + (kr - 1)) // kr * vectors):
                for lane in T.vectorized(lanes):
                    s[q, jv * lanes + lane] = fast_exp(
                        s[q, jv * lanes + lane] - _safe(stats[row0 + q, STEP_MAX])
                    )
                    part[lane] = part[lane] + s[q, jv * lanes + lane]
            for lane in T.vectorized(lanes):
                stats[row0 + q, SUMS + lane] = part[lane]
            stats[row0 + q, ROW_MAX] = stats[row0 + q, STEP_MAX]
        # acc = acc * rescale + P V over the run's keys, DV columns at a time in registers
        for c in T.serial(value_dim // dvc):
            for q in T.unroll(tq):
                for j in T.vectorized(dvc):
                    chunk[q, j] = acc[row0 + q, c * dvc + j] * stats[row0 + q, RESCALE]
            for kk in T.serial(length):
                for q in T.unroll(tq):
                    for jv in T.unroll(dvc // lanes):
                        for lane in T.vectorized(lanes):
                            chunk[q, jv * lanes + lane] = chunk[q, jv * lanes + lane] + s[q, kk] * view.value(
                                kk, c * dvc + jv * lanes + lane
                            )
            for q in T.unroll(tq):
                for j in T.vectorized(dvc):
                    acc[row0 + q, c * dvc + j] = chunk[q, j]

    return step
