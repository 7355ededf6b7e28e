"""The video-DiT block stack end to end: dense against searched head patterns, over an eps sweep.

    python bench/bench_dit.py [--depth 2] [--eps 0.01,0.1,0.2,0.4,1] [--lambda 0.5]
                              [--costs flops|measured] [--rounds 3] [--runs 2] [--json FILE]

The zoo's `video_dit` at the issue's shape: 4 frames x 1024 latent tokens + 226 text tokens
(last), 12 heads, d = 64, `--depth` blocks (default 2: one run of the default sweep stays near
10 minutes on 2 cores), batch 1, fp32, weights dense. Compiled by sparsecc's TVM backend without
an attention section ("dense") and, per eps, with the head table that search-heads picks on
seeded calibration batches (`--calibration` of them, seeds 100...), compiled through the spec's
`attention: {heads: TABLE}`. Per eps:

  mix        heads per mode over all layers
  FLOPs      the attention FLOPs the mix keeps (mean head density; skip 0, full 1)
  ideal      Amdahl: 1 / (1 - s + s x FLOPs), s = attention's share of the dense compile's time
             (its `attention_cpu` calls, profiled on the same input)
  speedup    the dense compile's time / this compile's (median of interleaved rounds)
  realised   the share of the ideal time saving measured: (1 - 1/speedup) / (1 - 1/ideal)
  PSNR       of this compile's output against onnxruntime's full-attention output, on a held-out
             input (seed 999, not a calibration batch); peak = the reference's max - min

onnxruntime runs the dense model in the same interleaved rounds. Timing: `--runs` calls per
candidate per round after one warm-up call, the median per round, then the median of rounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import common
import numpy as np
import onnx_ir as ir
from rich.console import Console
from rich.table import Table

from sparsecc.backends.ort import session
from sparsecc.backends.tvm.pattern_costs import measured_costs
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.compiler import api, frontends
from sparsecc.models.video_dit import VideoDiTConfig, build_video_dit, calibration_batch, calibration_batches
from sparsecc.passes.search_heads import priced_patterns
from sparsecc.sparsity.attention_patterns import TokenLayout, density
from sparsecc.sparsity.attention_spec import AttentionSpec
from sparsecc.sparsity.head_table import METADATA_KEY, HeadTable

MODES = ("full", "diag", "mdiag", "vstripe", "skip")
HELD_OUT_SEED = 999  # calibration batches use seeds 100, 101, ...
WEIGHTS = "dense"  # every linear stays dense: only attention differs between the compiles


class Timed:
    """A candidate for `common.interleaved`: warmed up once, then `runs` calls a round."""

    def __init__(self, fn):
        self.fn = fn
        fn()

    def median_ms(self, runs: int) -> float:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            self.fn()
            times.append(time.perf_counter() - started)
        return float(np.median(times)) * 1000.0


@dataclasses.dataclass
class Searched:
    eps: float
    table: HeadTable
    compiled: object
    search_s: float
    compile_s: float

    def mix(self) -> dict[str, int]:
        modes = [p.mode for layer in self.table.layers for p in layer.patterns]
        return {mode: modes.count(mode) for mode in MODES}

    def flops(self, layout: TokenLayout) -> float:
        """The attention FLOPs the table keeps, as a fraction of dense attention's."""
        kept = [
            1.0 if p.mode == "full" else density(p, layout)
            for layer in self.table.layers
            for p in layer.patterns
        ]
        return float(np.mean(kept))


def output(compiled, x) -> np.ndarray:
    got = compiled(x)
    return np.asarray(got[0] if isinstance(got, (list, tuple)) else got)


def psnr(reference: np.ndarray, got: np.ndarray) -> float:
    mse = float(np.mean((reference.astype(np.float64) - got) ** 2))
    peak = float(reference.max() - reference.min())
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


def search(proto, cfg, layout, eps, lam, costs, calibration, x) -> Searched:
    """search-heads at eps (onnxruntime runs the model; the tvm backend where costs are measured),
    then a compile with the table it chose."""
    section = {"layout": cfg.layout, "eps": eps, "lambda": lam, "costs": costs}
    started = time.perf_counter()
    result = api.sparsify_ir(
        proto,
        {"attention": section},
        pipeline="canonicalize,fuse-attention,search-heads",
        calibration=calibration,
        backend="tvm" if costs == "measured" else "onnxruntime",
    )
    table = HeadTable.from_yaml(result.model.metadata_props[METADATA_KEY])
    searched = time.perf_counter() - started
    spec = {
        "rules": [{"match": "*", "pattern": WEIGHTS}],
        "attention": {"layout": cfg.layout, "heads": table.to_dict()},
    }
    started = time.perf_counter()
    compiled = api.compile(proto, spec, {"x": x})
    return Searched(eps, table, compiled, searched, time.perf_counter() - started)


def attention_share(compiled, x) -> float:
    """The share of the compile's time in its dense attention kernel (one profiled call)."""
    groups = compiled.profile(x, runs=1)
    total = sum(g.total_ms for g in groups)
    return sum(g.total_ms for g in groups if g.group.startswith("attention")) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=2, help="DiT blocks (default 2)")
    parser.add_argument("--eps", default="0.01,0.1,0.2,0.4,1", help="comma-separated eps values")
    parser.add_argument("--lambda", dest="lam", type=float, default=0.5)
    parser.add_argument("--costs", choices=("flops", "measured"), default="flops", help="search's mode costs")
    parser.add_argument("--calibration", type=int, default=1, help="calibration batches (default 1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2, help="timed calls per candidate per round")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    console = Console(width=200)
    began = time.perf_counter()
    cfg = VideoDiTConfig(frames=4, frame_tokens=1024, text=226, heads=12, head_dim=64, depth=args.depth)
    layout = TokenLayout(**cfg.layout)
    module, inputs = build_video_dit(cfg)
    model, _ = frontends.resolve_model(module, inputs)
    proto = ir.serde.serialize_model(model)
    calibration = calibration_batches(cfg, args.calibration, seed=100)
    x = calibration_batch(cfg, 1, seed=HELD_OUT_SEED)

    ort = session.make_session(proto, threads=common.THREADS)
    reference = ort.run(None, {"x": x})[0]
    started = time.perf_counter()
    dense = api.compile(proto, WEIGHTS, {"x": x})
    dense_compile_s = time.perf_counter() - started
    dense_out = output(dense, x)
    dense_error = float(np.abs(dense_out - reference).max() / np.abs(reference).max())
    assert dense_error < 1e-3, f"the dense compile is off onnxruntime by {dense_error:.1e} (max, relative)"
    share = attention_share(dense, x)

    costs = None
    if args.costs == "measured":  # what the searches use: timed once here, cached for the process
        options = AttentionSpec.from_dict({"layout": cfg.layout, "lambda": args.lam})
        costs = measured_costs(priced_patterns(options), layout, resolve_target("cpu"), cfg.head_dim)
        console.print(f"measured costs: { {m: round(c, 3) for m, c in costs.items()} }")

    runs = []
    for eps in (float(e) for e in args.eps.split(",")):
        runs.append(search(proto, cfg, layout, eps, args.lam, args.costs, calibration, x))
        console.print(
            f"eps {eps}: {runs[-1].mix()} (search {runs[-1].search_s:.0f} s, compile {runs[-1].compile_s:.0f} s)"
        )

    candidates = {
        "onnxruntime dense": Timed(lambda: ort.run(None, {"x": x})),
        "sparsecc dense": Timed(lambda: dense(x)),
    }
    for run in runs:
        candidates[f"eps {run.eps:g}"] = Timed(lambda compiled=run.compiled: compiled(x))
    times = common.interleaved(candidates, rounds=args.rounds, runs=args.runs)
    t_dense = times["sparsecc dense"]

    rows = []
    for run in runs:
        flops = run.flops(layout)
        ideal = 1.0 / (1.0 - share + share * flops)
        speedup = t_dense / times[f"eps {run.eps:g}"]
        realised = (1 - 1 / speedup) / (1 - 1 / ideal) if ideal > 1 else float("nan")
        rows.append(
            {
                "eps": run.eps,
                "mix": run.mix(),
                "attention_flops": flops,
                "ideal_speedup": ideal,
                "ms": times[f"eps {run.eps:g}"],
                "speedup": speedup,
                "realised": realised,
                "psnr_db": psnr(reference, output(run.compiled, x)),
                "search_s": run.search_s,
                "compile_s": run.compile_s,
            }
        )

    title = (
        f"video DiT, {cfg.depth} blocks, N = {cfg.frames} x {cfg.frame_tokens} + {cfg.text} text, "
        f"{cfg.heads} heads, d = {cfg.head_dim}, fp32, {common.THREADS} threads, lambda {args.lam}, "
        f"costs {args.costs} (median ms of {args.rounds} interleaved rounds x {args.runs} runs)"
    )
    table = Table(title=title)
    for column in ("eps", *MODES, "attn FLOPs", "ideal", "ms", "speedup", "realised", "PSNR dB"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            f"{row['eps']:g}",
            *(str(row["mix"][m]) for m in MODES),
            f"{row['attention_flops']:.3f}",
            f"{row['ideal_speedup']:.2f}x",
            f"{row['ms']:.0f}",
            f"{row['speedup']:.2f}x",
            f"{row['realised']:.0%}",
            f"{row['psnr_db']:.1f}",
        )
    console.print(table)
    console.print(
        f"sparsecc dense {t_dense:.0f} ms (attention {share:.0%} of it, profiled), onnxruntime dense "
        f"{times['onnxruntime dense']:.0f} ms; sparsecc dense vs onnxruntime: max rel err {dense_error:.1e}, "
        f"PSNR {psnr(reference, dense_out):.1f} dB; load average {os.getloadavg()[0]:.2f}; "
        f"whole run {time.perf_counter() - began:.0f} s"
    )
    if args.json:
        data = {
            "config": dataclasses.asdict(cfg),
            "threads": common.THREADS,
            "lambda": args.lam,
            "costs": args.costs,
            "dense_ms": t_dense,
            "onnxruntime_ms": times["onnxruntime dense"],
            "attention_share": share,
            "dense_max_rel_error": dense_error,
            "dense_compile_s": dense_compile_s,
            "measured_costs": costs,
            "eps": rows,
        }
        with open(args.json, "w") as file:
            json.dump(data, file, indent=2)


if __name__ == "__main__":
    main()
