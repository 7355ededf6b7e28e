"""The pass pipeline driver, in the style of `mlir-opt`.

A pipeline is a comma-separated list of registered pass names. The driver times
each pass, records whether it changed the model, can verify the IR after every
pass (ONNX checker + the sparse-op verifiers), hand the IR to a callback after
each pass (`--print-ir-after-all`) and keep it on disk (`SPARSECC_SAVE_TEMPS=dir`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import onnx
import onnx_ir as ir

from sparsecc import ops
from sparsecc.backends.tvm.pattern_costs import measured_costs
from sparsecc.compiler.frontends.weightless import without_weights
from sparsecc.compiler.onnx_save import save_onnx
from sparsecc.errors import PipelineError, SparseccError, VerificationError
from sparsecc.passes.analyze_sparsity import AnalyzeSparsityPass
from sparsecc.passes.canonicalize import CanonicalizePass
from sparsecc.passes.cleanup import CleanupPass
from sparsecc.passes.context import CompileContext
from sparsecc.passes.dense_to_sparse import DenseToSparsePass
from sparsecc.passes.fuse_attention import FuseAttentionPass
from sparsecc.passes.fuse_heads import FuseHeadsPass
from sparsecc.passes.prune import PrunePass
from sparsecc.passes.search_heads import SearchHeadsPass, priced_patterns

logger = logging.getLogger(__name__)

SAVE_TEMPS_ENV = "SPARSECC_SAVE_TEMPS"
VERIFY_EACH_ENV = "SPARSECC_VERIFY_EACH"  # "1": verify after every pass (the test suite sets it)


def _attention_spec(ctx: CompileContext, name: str):
    if ctx.spec is None or ctx.spec.attention is None:
        raise PipelineError(f"pass '{name}' needs a spec with an 'attention:' section (layout, heads)")
    return ctx.spec.attention


def _search_heads(ctx: CompileContext) -> SearchHeadsPass:
    if ctx.calibration is None:
        raise PipelineError("pass 'search-heads' needs calibration data (--calibration FILE.npz)")
    options = _attention_spec(ctx, "search-heads")
    return SearchHeadsPass(options, ctx.calibration, _measured_costs(ctx, options))


def _measured_costs(ctx: CompileContext, options):
    """With `costs: measured`: per layer, the modes' kernel times relative to dense attention,
    timed on the compile's TVM CPU target (`backends/tvm/pattern_costs.py`); else None (FLOPs)."""
    if options.costs != "measured":
        return None
    if getattr(ctx.target, "family", None) not in ("x86", "aarch64") or not ctx.target.runs_here:
        name = getattr(ctx.target, "name", "none")
        raise PipelineError(
            f"attention costs: measured needs the tvm backend with a CPU target this host runs, not {name!r} "
            "(use costs: flops)"
        )
    patterns = priced_patterns(options)
    return lambda layer: measured_costs(
        patterns, options.layout, ctx.target, layer.head_dim, layer.node.inputs[2].shape[3]
    )


def _fuse_heads(ctx: CompileContext) -> FuseHeadsPass:
    heads = _attention_spec(ctx, "fuse-heads").heads
    # "search": the table search-heads left; the groups go to the context's attention report
    return FuseHeadsPass(None if isinstance(heads, str) else heads, ctx)


# name -> factory(context) -> pass, in the order a default pipeline runs them
PASSES: dict[str, Callable[[CompileContext], ir.passes.PassBase]] = {
    "canonicalize": lambda ctx: CanonicalizePass(),  # Gemm/MatMul(+Transpose) -> MatMul(X, Wt) [+ Add]
    "fuse-attention": lambda ctx: FuseAttentionPass(),  # softmax(Q K^T * s + mask) V -> Attention
    "search-heads": _search_heads,  # per-head attention pattern on calibration data (spec `attention:`)
    "fuse-heads": _fuse_heads,  # Attention -> one PatternAttention per group of heads
    "analyze-sparsity": AnalyzeSparsityPass,  # density, N:M, blocks per weight (read-only)
    "prune": PrunePass,  # impose the spec's patterns by magnitude
    "dense-to-sparse": DenseToSparsePass,  # linear -> BsrMatMul / NmMatMul / CsrMatMul where it pays
    "cleanup": lambda ctx: CleanupPass(),  # unused nodes, functions, opsets; topological order
}
DEFAULT_PIPELINE = "canonicalize,fuse-attention,analyze-sparsity,prune,dense-to-sparse,cleanup"
PORTABLE_PIPELINE = "canonicalize,analyze-sparsity,prune,cleanup"


def pipeline_for(spec, portable: bool = False) -> str:
    """The default pipeline for `spec`: with an `attention:` section, the head passes follow
    fuse-attention (search-heads only when the spec asks for a search)."""
    text = PORTABLE_PIPELINE if portable else DEFAULT_PIPELINE
    attention = getattr(spec, "attention", None)
    if attention is None:
        return text
    heads = "search-heads,fuse-heads" if attention.heads == "search" else "fuse-heads"
    if "fuse-attention" not in text:
        return text.replace("canonicalize", f"canonicalize,fuse-attention,{heads}", 1)
    return text.replace("fuse-attention", f"fuse-attention,{heads}", 1)


@dataclasses.dataclass(frozen=True)
class PassRun:
    """What one pass did: its name, its wall time and whether it changed the model."""

    name: str
    seconds: float
    modified: bool


def parse_pipeline(text: str) -> list[str]:
    """Split and check a pipeline string; unknown names list the known ones."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise PipelineError(f"empty pipeline {text!r}; example: {DEFAULT_PIPELINE!r}")
    unknown = [name for name in names if name not in PASSES]
    if unknown:
        raise PipelineError(
            f"unknown pass {', '.join(map(repr, unknown))} in pipeline {text!r}; known passes: {', '.join(PASSES)}"
        )
    return names


def verify_ir(model: ir.Model) -> None:
    """ONNX checker on the serialised model plus every sparse op's verifier."""
    ops.verify_model(model)
    try:
        # weights as typed inputs: the checker refuses the absolute paths of weights kept on disk
        onnx.checker.check_model(without_weights(ir.serde.serialize_model(model)), full_check=False)
    except onnx.checker.ValidationError as error:
        raise VerificationError(f"the ONNX checker rejects the IR: {str(error).splitlines()[0]}") from error


class Pipeline:
    """Runs named passes over one model with one shared `CompileContext`."""

    def __init__(
        self,
        names: list[str] | str = DEFAULT_PIPELINE,
        *,
        verify: bool = False,
        after_pass: Callable[[str, ir.Model], None] | None = None,
        save_temps: str | os.PathLike | None = None,
    ):
        self.names = parse_pipeline(names) if isinstance(names, str) else list(names)
        self.verify = verify or os.environ.get(VERIFY_EACH_ENV) == "1"
        self.after_pass = after_pass
        save_temps = save_temps or os.environ.get(SAVE_TEMPS_ENV)
        self.save_temps = Path(save_temps) if save_temps else None

    def __str__(self) -> str:
        return ",".join(self.names)

    def run(self, model: ir.Model, context: CompileContext) -> list[PassRun]:
        runs: list[PassRun] = []
        for index, name in enumerate(self.names):
            started = time.perf_counter()
            try:
                result = PASSES[name](context)(model)
                if self.verify:
                    verify_ir(result.model)
            except VerificationError as error:
                raise VerificationError(f"after pass '{name}'{self._ran_before(runs)}: {error}") from error
            except SparseccError:
                raise
            except Exception as error:
                raise RuntimeError(f"pass '{name}' failed{self._ran_before(runs)}: {error}") from error
            model = result.model
            runs.append(PassRun(name, time.perf_counter() - started, result.modified))
            logger.info("pass %s: %.3f s, modified=%s", name, runs[-1].seconds, result.modified)
            if self.after_pass is not None:
                self.after_pass(name, model)
            if self.save_temps is not None:
                self.save_temps.mkdir(parents=True, exist_ok=True)
                save_onnx(model, self.save_temps / f"{index:02d}-{name}.onnx")  # weights included
        return runs

    @staticmethod
    def _ran_before(runs: list[PassRun]) -> str:
        return f" (after {', '.join(r.name for r in runs)})" if runs else " (first pass)"
