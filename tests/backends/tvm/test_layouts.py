"""Channel-blocked activations across a graph: where the importer converts between NCHW and
blocked, and that every mix of blocked and NCHW consumers computes what onnxruntime does."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sparsecc
from sparsecc.backends.ort import session
from sparsecc.backends.tvm.target import resolve_target

pytest.importorskip("tvm")
LANES = resolve_target("cpu").lanes
RNG = np.random.default_rng(3)


def conv_weight(o, c, k, sparsity=0.0):
    w = (RNG.standard_normal((o, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
    if sparsity:
        w *= RNG.random(w.shape) >= sparsity
    return w


def mixed_model() -> onnx.ModelProto:
    """x (one vector of channels) -> Conv 3x3 (dense: blocked) -> MaxPool (blocked) -> Conv 1x1 (92% sparse: NCHW) -> Relu
    -> Conv 3x3 (dense: blocked, + the pool's output as residual) -> Relu -> [graph output
    `features`] -> GlobalAveragePool -> `pooled`; the first Conv's output is a graph output too."""
    c = 2 * LANES
    weights = {
        "w0": conv_weight(c, LANES, 3),
        "w1": conv_weight(c, c, 1, sparsity=0.92),
        "w2": conv_weight(c, c, 3),
        "b0": RNG.standard_normal(c).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["stem"], pads=[1, 1, 1, 1], name="conv0"),
        helper.make_node(
            "MaxPool", ["stem"], ["pool"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Conv", ["pool", "w1"], ["mid"], name="conv1"),
        helper.make_node("Relu", ["mid"], ["mid_relu"]),
        helper.make_node("Conv", ["mid_relu", "w2"], ["y"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Add", ["y", "pool"], ["sum"]),
        helper.make_node("Relu", ["sum"], ["features"]),
        helper.make_node("GlobalAveragePool", ["features"], ["pooled"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, LANES, 16, 14])],
        [
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, c, 1, 1]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, c, 8, 7]),
            helper.make_tensor_value_info("stem", TensorProto.FLOAT, [1, c, 16, 14]),
        ],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_mixed_layouts_match_onnxruntime(tmp_path):
    path = tmp_path / "mixed.onnx"
    onnx.save(mixed_model(), path)
    x = RNG.standard_normal((1, LANES, 16, 14)).astype(np.float32)
    compiled = sparsecc.compile(str(path), "existing", example_inputs={"x": x})
    kernels = {row["name"]: (row["kernel"], row["runs"]) for row in compiled.report}
    assert kernels["w0"] == ("conv_dense_blocked_x86", "dense")
    assert kernels["w1"] == ("conv_csr_x86", "CSR")
    assert kernels["w2"] == ("conv_dense_blocked_x86", "dense")
    got = compiled(x)
    for mine, want in zip(got, session.run(str(path), {"x": x}), strict=True):
        assert mine.shape == want.shape
        np.testing.assert_allclose(mine, want, rtol=0, atol=1e-4 * float(np.abs(want).max()))
    calls = {entry.group: entry.calls for entry in compiled.profile(x, runs=1)}
    # NCHW for the sparse Conv's input (the pool), the graph outputs `stem` and `features`, and
    # the residual of conv2 is the pool's blocked value: no conversion back
    assert calls.get("to_planar") == 3 and calls.get("max_pool") == 1, calls
    # blocked again after the sparse Conv, for conv2 (which reads X in its padded copy)
    assert "to_blocked" not in calls, calls
