"""Old ONNX files: IR 3 (initializers listed as graph inputs, or not) and opsets that predate inputs
for what used to be attributes, read as onnxruntime reads them."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sparsecc.backends.ort import session
from sparsecc.compiler import api, frontends
from sparsecc.compiler.frontends.inputs import graph_inputs

RNG = np.random.default_rng(0)
W = RNG.standard_normal((8, 16)).astype(np.float32)  # Y = X W^T, the way old pytorch exports wrote Linear
X = RNG.standard_normal((2, 16)).astype(np.float32)


def ir3_linear(weight_is_input: bool) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["W"], ["Wt"]), helper.make_node("MatMul", ["X", "Wt"], ["Y"])],
        "linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 16])]
        + ([helper.make_tensor_value_info("W", TensorProto.FLOAT, [8, 16])] if weight_is_input else []),
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 8])],
        [numpy_helper.from_array(W, "W")],
    )
    return helper.make_model(graph, ir_version=3, opset_imports=[helper.make_opsetid("", 6)])


def test_an_ir3_initializer_missing_from_the_inputs_is_accepted():
    proto = ir3_linear(weight_is_input=False)  # the IR-3 checker refuses it; onnxruntime runs it
    model = frontends.load_model(proto)
    assert [v.name for v in graph_inputs(model)] == ["X"]
    (want,) = session.run(proto, {"X": X})
    (got,) = session.run(api.sparsify(proto, "existing"), {"X": X})
    np.testing.assert_allclose(want, X @ W.T, rtol=1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_ir3_weights_listed_as_inputs_are_weights_a_spec_prunes():
    proto = ir3_linear(weight_is_input=True)
    model = frontends.load_model(proto)
    assert [v.name for v in model.graph.inputs] == ["X"] and model.ir_version >= 4
    result = api.sparsify_ir(proto, "unstructured@0.5", portable=True, backend="onnxruntime")
    assert [(row.initializer, row.shape, row.density) for row in result.report] == [("W", (8, 16), 0.5)]
    assert result.changed_weights


def test_an_ir3_pad_converted_to_opset_23_gets_an_ir_version_that_allows_its_new_initializer():
    """Pad-2 holds `pads` as an attribute; at opset 23 it is an input, an initializer IR 3 would refuse."""
    graph = helper.make_graph(
        [helper.make_node("Pad", ["X"], ["Y"], pads=[0, 1, 0, 2], mode="constant", value=0.5)],
        "pad",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 16])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 19])],
    )
    proto = helper.make_model(graph, ir_version=3, opset_imports=[helper.make_opsetid("", 2)])
    converted = api.sparsify(proto, "existing")
    onnx.checker.check_model(converted)
    assert converted.ir_version >= 10 and converted.opset_import[0].version == 23
    (got,) = session.run(converted, {"X": X})
    np.testing.assert_array_equal(got, np.pad(X, ((0, 0), (1, 2)), constant_values=0.5))
