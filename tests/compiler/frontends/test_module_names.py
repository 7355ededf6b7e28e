"""Module names for ONNX files: what each torch exporter recorded becomes the weights' names."""

import re
import subprocess
import sys

import pytest

from sparsecc.compiler import api
from tests.hf_bert import export_hf_bert

EXPORTS = [("dynamo", 18), ("torchscript", 14), ("dynamo", 23)]
INTERMEDIATE = {f"encoder.layer.{i}.intermediate.dense.weight" for i in range(2)}


@pytest.fixture(scope="module", params=EXPORTS, ids=[f"{e}-opset{o}" for e, o in EXPORTS])
def exported(request, tmp_path_factory):
    exporter, opset = request.param
    path = tmp_path_factory.mktemp(exporter) / "bert.onnx"
    feeds = export_hf_bert(path, exporter, opset)
    return path, feeds


def test_selectors_on_module_names_pick_exactly_the_intermediate_weights(exported):
    path, feeds = exported
    result = api.sparsify_ir(str(path), "*intermediate*=block(1,16)@0.9", feeds)
    names = {row.name for row in result.report}
    assert names == {
        f"encoder.layer.{i}.{part}.weight"
        for i in range(2)
        for part in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "intermediate.dense",
            "output.dense",
        )
    }
    sparse = {row.name for row in result.report if row.format != "dense"}
    assert sparse == INTERMEDIATE
    assert all(row.format == "BSR 1x16" for row in result.report if row.name in INTERMEDIATE)
    assert not result.warnings


def test_selectors_still_match_initializer_names(exported):
    path, feeds = exported
    first = api.sparsify_ir(str(path), "existing", feeds).report
    query = next(row for row in first if row.name == "encoder.layer.0.attention.self.query.weight")
    assert query.initializer and query.initializer != query.name  # val_55, onnx::MatMul_402, ...
    result = api.sparsify_ir(str(path), f"{query.initializer}=unstructured@0.95", feeds)
    chosen = [row.name for row in result.report if row.format != "dense"]
    assert chosen == [query.name]


def test_inspect_shows_module_names(exported):
    path, _ = exported
    proc = subprocess.run(
        [sys.executable, "-m", "sparsecc.tools.cli", "inspect", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    shown = set(re.findall(r"encoder\.layer\.\d\.[a-z.]+\.weight", proc.stdout))
    assert len(shown) == 12 and shown >= INTERMEDIATE
    assert not re.search(r"\bval_\d+\b|onnx::MatMul", proc.stdout)  # the exporter's names stay out of sight
