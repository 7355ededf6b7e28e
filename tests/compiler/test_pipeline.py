import time

import numpy as np
import pytest
from onnx_ir.passes.common import NameFixPass

from sparsecc.compiler.pipeline import DEFAULT_PIPELINE, Pipeline, parse_pipeline
from sparsecc.errors import PipelineError
from sparsecc.passes.context import CompileContext
from tests.onnx_text import linear_model


def test_parse_rejects_unknown_pass_and_lists_known():
    with pytest.raises(PipelineError, match="unknown pass 'fold'.*known passes: canonicalize"):
        parse_pipeline("canonicalize,fold")
    with pytest.raises(PipelineError, match="empty pipeline"):
        parse_pipeline(" , ")
    assert parse_pipeline(DEFAULT_PIPELINE)[0] == "canonicalize"


def test_runs_in_order_times_and_reports_modified(tmp_path):
    model = linear_model(np.ones((8, 8), np.float32))
    NameFixPass()(model)  # as every frontend leaves a model
    seen = []
    started = time.perf_counter()
    runs = Pipeline(
        "canonicalize,analyze-sparsity,cleanup",
        after_pass=lambda name, m: seen.append(name),
        save_temps=tmp_path,
    ).run(model, CompileContext())
    elapsed = time.perf_counter() - started
    assert [r.name for r in runs] == seen == ["canonicalize", "analyze-sparsity", "cleanup"]
    assert [r.modified for r in runs] == [True, False, False]
    # each pass's own time: positive, and together no more than the whole run took (in seconds)
    assert all(r.seconds > 0 for r in runs) and sum(r.seconds for r in runs) <= elapsed
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "00-canonicalize.onnx",
        "01-analyze-sparsity.onnx",
        "02-cleanup.onnx",
    ]


def test_failing_pass_names_itself_and_the_passes_before(monkeypatch):
    from sparsecc.compiler import pipeline

    def broken(ctx):
        raise ValueError("boom")

    monkeypatch.setitem(pipeline.PASSES, "prune", broken)
    with pytest.raises(RuntimeError, match=r"pass 'prune' failed \(after canonicalize\): boom"):
        Pipeline("canonicalize,prune").run(linear_model(np.ones((4, 4), np.float32)), CompileContext())
