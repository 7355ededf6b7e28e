import numpy as np
from onnx_ir.passes.common import NameFixPass

from sparsecc.passes.cleanup import CleanupPass
from tests.onnx_text import apply, model_from_text


def test_removes_dead_nodes_and_initializers():
    model = model_from_text(
        """<ir_version: 10, opset_import: ["" : 23]>
        g (float[4] X) => (float[4] Y) { Dead = Mul(X, C)
         Y = Relu(X) }""",
        {"C": np.ones(4, np.float32)},
    )
    assert apply(CleanupPass(), model).modified
    assert [n.op_type for n in model.graph] == ["Relu"]
    assert "C" not in model.graph.initializers


def test_clean_model_is_not_modified():
    model = model_from_text("""<ir_version: 10, opset_import: ["" : 23]>
        g (float[4] X) => (float[4] Y) { Y = Relu(X) }""")
    NameFixPass()(model)  # as every frontend leaves a model
    assert not apply(CleanupPass(), model).modified


def test_names_the_nodes_rewrites_left_unnamed():
    model = model_from_text("""<ir_version: 10, opset_import: ["" : 23]>
        g (float[4] X) => (float[4] Y) { A = Relu(X)
         Y = Relu(A) }""")
    assert apply(CleanupPass(), model).modified
    names = [n.name for n in model.graph]
    assert all(names) and len(set(names)) == 2
