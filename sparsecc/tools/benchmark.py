"""Time a model the ways a user could run it, in one process: the `bench` command and the demo.

Candidates: onnxruntime on the pruned dense model, TVM with our dense kernels, TVM
sparse, and torch (zoo models, with the pruned weights loaded). Rounds are
interleaved so machine noise hits every candidate alike.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np


@dataclasses.dataclass
class BenchResult:
    times_ms: dict[str, float]
    sparse_key: str
    report: list[dict]
    max_rel_error: float  # TVM sparse vs onnxruntime on the pruned dense model
    profile: list = dataclasses.field(default_factory=list)  # the sparse build's FunctionTimes, when asked


def _median_ms(fn, runs: int) -> float:
    fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return float(np.median(samples)) * 1000.0


SETTLE_SECONDS = 0.5  # other libraries' worker threads spin after a call; let them park first


def run_benchmark(
    model: str,
    spec: str,
    target: str = "cpu",
    rounds: int = 3,
    runs: int = 5,
    threads: int | None = None,
    profile: bool = False,
) -> BenchResult:
    """Compile `model` dense and sparse for `target` and time every candidate."""
    import onnx_ir as ir

    import sparsecc
    from sparsecc.backends.ort import session
    from sparsecc.compiler import api, frontends

    threads = threads or int(os.environ.get("TVM_NUM_THREADS") or os.cpu_count() or 1)
    source, feeds = frontends.resolve_model(model)
    pruned_result = api.sparsify_ir(ir.serde.serialize_model(source), spec, feeds, portable=True)
    pruned = ir.serde.serialize_model(ir.external_data.load_to_model(pruned_result.model))
    feeds = feeds or session.random_inputs(pruned)
    sparse = sparsecc.compile(pruned, spec="existing", example_inputs=feeds, target=target)
    dense = sparsecc.compile(pruned, spec="dense", example_inputs=feeds, target=target)
    ort = session.make_session(pruned, threads=threads)
    args = [feeds[spec_.name] for spec_ in sparse.input_specs]
    reference = ort.run(None, feeds)[0]
    got = sparse(*args)
    got = got[0] if isinstance(got, tuple) else got
    error = float(np.abs(got - reference).max() / max(np.abs(reference).max(), 1e-30))
    candidates = {
        "onnxruntime dense": lambda: ort.run(None, feeds),
        "TVM dense": lambda: dense(*args),
        "TVM sparse": lambda: sparse(*args),
    }
    torch_candidate = _torch_candidate(model, pruned_result.model, threads)
    if torch_candidate is not None:
        candidates["torch dense"] = torch_candidate
    samples = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            time.sleep(SETTLE_SECONDS)
            samples[name].append(_median_ms(fn, runs))
    times = {name: float(np.median(values)) for name, values in samples.items()}
    result = BenchResult(times, "TVM sparse", sparse.report, error)
    if profile:
        time.sleep(SETTLE_SECONDS)
        result.profile = sparse.profile(*args, runs=runs)
    return result


def _torch_candidate(model, pruned_ir, threads: int):
    """torch on the zoo module with the pruned weights, or None for ONNX files."""
    if not (isinstance(model, str) and model.startswith("zoo:")):
        return None
    import torch

    from sparsecc import models
    from sparsecc.passes.conv import find_weighted

    torch.set_num_threads(threads)
    zoo = models.get(model[len("zoo:") :])
    params = dict(zoo.module.named_parameters())
    with torch.no_grad():
        for match in find_weighted(pruned_ir.graph):
            if match.name in params:
                param = params[match.name]
                param.copy_(torch.from_numpy(match.w()).reshape(param.shape))

    def call():
        with torch.no_grad():
            zoo.module(*zoo.example_inputs)

    return call


def speedup_table(result: BenchResult, title: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("candidate")
    table.add_column("median ms", justify="right")
    table.add_column("TVM sparse is", justify="right")
    sparse_ms = result.times_ms[result.sparse_key]
    for name, ms in result.times_ms.items():
        table.add_row(
            name, f"{ms:.2f}", "-" if name == result.sparse_key else f"{ms / sparse_ms:.2f}x faster"
        )
    return table
