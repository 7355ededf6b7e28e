"""PatternAttention kernels against dense attention, one video-DiT attention layer.

    python bench/bench_attention_patterns.py [--rounds 3] [--runs 3] [--threads 2]

N = 4 frames x 1024 latent tokens + 226 text tokens (last), 12 heads, d = 64, batch 1, fp32.
Candidates, interleaved in one process at the same threads: our dense flash kernel
(`kernels/attention_cpu.py`), onnxruntime's dense attention (one opset-23 `Attention` node),
and the PatternAttention kernel (`kernels/pattern_attention_cpu.py`) for each mode, with the
video_dit zoo's planted parameters (diag window 0, mdiag radius 0, vstripe on its global
tokens) and a random block list. Kernels only: the K packing / transpose / gather before them
is not timed (for the dense kernel either). Per mode: density (its FLOP fraction), time ratio vs our
dense, and the realised fraction of the FLOP cut, (1 - t_mode / t_dense) / (1 - density).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import common
import numpy as np
import onnx
import tvm
from rich.console import Console
from rich.table import Table

from sparsecc.backends.ort import session
from sparsecc.backends.tvm.kernels import attention_cpu
from sparsecc.backends.tvm.kernels.pattern_attention_cpu import (
    PatternShape,
    padded_key_columns,
    pattern_attention_kernel,
    pattern_tiles,
    plan_keys,
)
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.models.video_dit import VideoDiTConfig, planted_table
from sparsecc.sparsity.attention_patterns import HeadPattern, TokenLayout, masked_attention, pattern_mask

CONFIG = VideoDiTConfig(frames=4, frame_tokens=1024, text=226, heads=12, head_dim=64, global_tokens=4)
LAYOUT = TokenLayout(**CONFIG.layout)
BLOCK = 64
BLOCK_KEEP = 0.2  # the random block list keeps this fraction of key blocks per query block


def patterns() -> dict[str, HeadPattern]:
    planted = {entry["mode"]: HeadPattern.from_dict(entry) for entry in planted_table(CONFIG)[0]}
    rows = cols = -(-LAYOUT.tokens // BLOCK)
    grid = np.random.default_rng(0).random((rows, cols)) < BLOCK_KEEP
    ptr = np.concatenate([[0], np.cumsum(grid.sum(axis=1))])
    blocks = HeadPattern(
        "blocks", block_size=(BLOCK, BLOCK), block_ptr=tuple(ptr), block_cols=tuple(np.nonzero(grid)[1])
    )
    return {
        "diag": planted["diag"],
        "mdiag": planted["mdiag"],
        "vstripe": planted["vstripe"],
        "blocks": blocks,
    }


def ort_attention(b, h, n, d) -> onnx.ModelProto:
    info = [onnx.helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, [b, h, n, d]) for x in "QKVY"]
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Attention", ["Q", "K", "V"], ["Y"])], "attention", info[:3], info[3:]
    )
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 23)], ir_version=10)


class Kernel:
    """A compiled kernel with its bound arguments; calling it runs it once."""

    def __init__(self, func, target, args):
        self.module = tvm.compile(func, target=target.target).jit()
        self.args = [tvm.runtime.tensor(np.ascontiguousarray(a), tvm.cpu()) for a in args]

    def __call__(self):
        self.module["main"](*self.args)

    def output(self) -> np.ndarray:
        return self.args[-1].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per round (after 3 warm-up runs)")
    args = parser.parse_args()
    target = resolve_target("cpu")
    b, h, n, d = 1, CONFIG.heads, LAYOUT.tokens, CONFIG.head_dim
    scale = 1.0 / np.sqrt(d)
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((b, h, n, d)).astype(np.float32) for _ in range(3))
    console = Console(width=200)

    dense_shape = attention_cpu.AttentionShape(b, h, h, n, n, d, d, None, scale=scale)
    tiles = attention_cpu.default_tiles(dense_shape, target.lanes, target.vector_registers)
    dense = Kernel(
        attention_cpu.attention_kernel(dense_shape, target.lanes, tiles),
        target,
        [q, attention_cpu.pack_keys(k, tiles["TK"]), v, np.zeros((1, 1, 1, 1), np.float32), np.zeros_like(q)],
    )
    ort = session.make_session(ort_attention(b, h, n, d), threads=common.THREADS)
    candidates = {
        "dense (ours)": dense,
        "dense (onnxruntime)": lambda: ort.run(None, {"Q": q, "K": k, "V": v}),
    }

    shape = PatternShape(b, h, n, d, d, scale)
    ptiles = pattern_tiles(shape, target.lanes, target.vector_registers)
    plans, kernels = {}, {}
    for mode, pattern in patterns().items():
        plan = plan_keys(pattern, LAYOUT, ptiles["TQ"], ptiles["TK"], ptiles["KR"])
        kt_plan = np.zeros((b, h, d, padded_key_columns(n, ptiles)), np.float32)
        kt_plan[..., :n] = k[:, :, plan.key_order].transpose(0, 1, 3, 2)
        operands = [q, kt_plan, v[:, :, plan.key_order], *plan.constants(), np.zeros_like(q)]
        kernels[mode] = Kernel(pattern_attention_kernel(shape, plan, target.lanes, ptiles), target, operands)
        plans[mode] = (pattern, plan)
        candidates[mode] = kernels[mode]

    # correctness, head 0 (numpy's dense score matrix of all heads would take 0.9 GB)
    dense()
    want = masked_attention(q[0, 0], k[0, 0], v[0, 0], None, scale)
    errors = {"dense (ours)": np.abs(dense.output()[0, 0] - want).max() / np.abs(want).max()}
    ort_y = ort.run(None, {"Q": q, "K": k, "V": v})[0]
    errors["dense (onnxruntime)"] = np.abs(ort_y[0, 0] - want).max() / np.abs(want).max()
    for mode, (pattern, _) in plans.items():
        kernels[mode]()
        want = masked_attention(q[0, 0], k[0, 0], v[0, 0], pattern_mask(pattern, LAYOUT), scale)
        errors[mode] = np.abs(kernels[mode].output()[0, 0] - want).max() / np.abs(want).max()

    times = common.interleaved(candidates, rounds=args.rounds, runs=args.runs)
    t_dense = times["dense (ours)"]
    table = Table(
        title=f"PatternAttention, N = {LAYOUT.frames} x {LAYOUT.frame_tokens} + {LAYOUT.text} text, {h} heads, "
        f"d = {d}, fp32, {common.THREADS} threads, target {target.target_dict['mcpu']} "
        f"(median ms of {args.rounds} interleaved rounds)"
    )
    for column in ("kernel", "density", "computed", "ms", "vs our dense", "realised FLOP cut", "max rel err"):
        table.add_column(column, justify="right")
    for name, ms in times.items():
        if name in plans:
            pattern, plan = plans[name]
            density, computed = plan.kept / n**2, plan.computed / n**2
            realised = (1 - ms / t_dense) / (1 - density)
            cells = (
                f"{density:.3f}",
                f"{computed:.3f}",
                f"{ms:.1f}",
                f"{ms / t_dense:.3f}",
                f"{realised:.0%}",
            )
        else:
            cells = ("1.000", "1.000", f"{ms:.1f}", f"{ms / t_dense:.3f}", "-")
        table.add_row(name, *cells, f"{errors[name]:.1e}")
    console.print(table)
    console.print(
        f"our dense / onnxruntime dense: {t_dense / times['dense (onnxruntime)']:.2f} "
        f"(below 1: ours is faster); load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
