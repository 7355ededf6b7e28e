"""backend="onnxruntime": the sparsified ONNX in onnxruntime, the reference the native builds match."""

import numpy as np
import onnx
import pytest

import sparsecc
from sparsecc.errors import SparseccError

SPEC = (
    "*intermediate.dense.weight=block(16,1)@0.9; *output.dense.weight=block(16,1)@0.9; *attention.self*=2:4"
)


def test_compiles_and_runs_zoo_bert_and_matches_tvm():
    pytest.importorskip("tvm")
    reference = sparsecc.compile("zoo:bert", SPEC, backend="onnxruntime")
    native = sparsecc.compile("zoo:bert", SPEC, backend="tvm")
    (ids,) = reference.example_inputs.values()
    want, got = reference(ids), native(ids)
    assert want.shape == got.shape
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_report_says_onnxruntime_runs_every_layer_at_dense_speed(tmp_path):
    compiled = sparsecc.compile("zoo:bert", SPEC, backend="onnxruntime")
    sparse = [row for row in compiled.report if row["format"] != "dense"]
    assert len(sparse) == 12  # 2 layers x (q, k, v, attention output, FFN in, FFN out)
    for row in sparse:
        assert row["kernel"] == "onnxruntime" and row["runs"] == "dense"
        assert "reference body" in row["kernel_reason"] and "of the dense bytes" in row["reason"]
    compiled.save(tmp_path / "bert.onnx")
    saved = onnx.load(tmp_path / "bert.onnx")
    assert {n.op_type for n in saved.graph.node if n.domain == "sparsecc"} == {"BsrMatMul", "NmMatMul"}


def test_nothing_to_tune_and_no_other_target():
    with pytest.raises(SparseccError, match="nothing to tune"):
        sparsecc.compile("zoo:mlp", "existing", backend="onnxruntime", tune=4)
    with pytest.raises(SparseccError, match="runs on this CPU only"):
        sparsecc.compile("zoo:mlp", "existing", backend="onnxruntime", target="aarch64")
    with pytest.raises(SparseccError, match="unknown backend 'mlir'; known backends: tvm, onnxruntime"):
        sparsecc.compile("zoo:mlp", "existing", backend="mlir")
