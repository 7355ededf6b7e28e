"""Reference functions: checker-clean, idempotent, kept in step with the ops a model uses."""

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from sparsecc import ops
from sparsecc.backends.ort import session
from sparsecc.ops import BsrWeight, CsrWeight, NmWeight
from tests.ops.test_reference_bodies import single_op_model
from tests.weights import encode

RNG = np.random.default_rng(11)
W = RNG.standard_normal((16, 32)).astype(np.float32)
ENCODED = {  # each weight with the masked array it was built from: the reference (tests/weights.py)
    "BsrMatMul": encode(BsrWeight, W, (4, 8)),
    "NmMatMul": encode(NmWeight, np.where(np.arange(32) % 4 < 2, W, 0), 2, 4),
    "CsrMatMul": encode(CsrWeight, np.where(W > 0.5, W, 0)),
}
WEIGHTS = {op: encoded.weight for op, encoded in ENCODED.items()}


@pytest.mark.parametrize("op_type", list(WEIGHTS))
def test_saved_model_passes_full_check_with_rank_4_and_symbolic_inputs(op_type, tmp_path):
    weight = WEIGHTS[op_type]
    model, _ = single_op_model(weight, ("batch", 3, "seq", 32), with_bias=False)
    assert model.graph[0].op_type == op_type
    assert [str(d) for d in model.graph.outputs[0].shape] == ["batch", "3", "seq", "16"]
    path = tmp_path / "m.onnx"
    ir.save(model, path)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    x = RNG.standard_normal((2, 3, 5, 32)).astype(np.float32)
    (got,) = session.run(proto, {"X": x})
    np.testing.assert_allclose(got, x @ ENCODED[op_type].dense.T, rtol=1e-5, atol=1e-5 * np.abs(got).max())


def test_attach_is_idempotent_and_drops_unused_bodies():
    model, _ = single_op_model(WEIGHTS["CsrMatMul"], (2, 32), with_bias=True)
    body = model.functions[("sparsecc", "CsrMatMul", "")]
    ops.attach_reference_functions(model)
    assert list(model.functions) == [("sparsecc", "CsrMatMul", "")]
    assert model.functions[("sparsecc", "CsrMatMul", "")] is body
    assert model.opset_imports["sparsecc"] == 1 and model.opset_imports[""] == 23

    node = model.graph[0]
    model.graph.outputs[0] = node.inputs[0]
    model.graph.remove(node, safe=True)
    ops.attach_reference_functions(model)
    assert not model.functions
    assert "sparsecc" not in model.opset_imports


def test_bodies_follow_the_models_default_opset():
    model, _ = single_op_model(WEIGHTS["BsrMatMul"], (2, 32), with_bias=True)
    key = ("sparsecc", "BsrMatMul", "")
    assert model.functions[key].opset_imports[""] == 23
    model.opset_imports[""] = 21
    ops.attach_reference_functions(model)
    assert model.functions[key].opset_imports[""] == 21
    proto = ir.serde.serialize_model(model)
    onnx.checker.check_model(proto, full_check=True)
    x = RNG.standard_normal((2, 32)).astype(np.float32)
    (got,) = session.run(proto, {"X": x})
    bias = model.graph[0].inputs[4].const_value.numpy()
    np.testing.assert_allclose(got, x @ W.T + bias, rtol=1e-5, atol=1e-4)
