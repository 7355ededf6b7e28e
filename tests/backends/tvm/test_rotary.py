"""RotaryEmbedding (opset 23) lowered by `rotary.py` against onnxruntime: 4-D and 3-D inputs, halves
and interleaved pairs, partial rotation, position ids, and a symbolic sequence length."""

import numpy as np
import onnx
import pytest

from sparsecc.backends.base import TensorSpec
from sparsecc.backends.ort import session
from sparsecc.backends.tvm.build import build_relax
from sparsecc.backends.tvm.importer import import_onnx, symbolic_shapes
from sparsecc.backends.tvm.target import resolve_target

tvm = pytest.importorskip("tvm")
TARGET = resolve_target("cpu")
FLOAT, INT64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64


def rotary_model(x_shape, cache_shape, attrs: dict, positions: bool):
    inputs = [
        onnx.helper.make_tensor_value_info("X", FLOAT, x_shape),
        onnx.helper.make_tensor_value_info("cos", FLOAT, cache_shape),
        onnx.helper.make_tensor_value_info("sin", FLOAT, cache_shape),
    ]
    names = ["X", "cos", "sin"]
    if positions:
        inputs.append(onnx.helper.make_tensor_value_info("pos", INT64, [x_shape[0], "S"]))
        names.append("pos")
    node = onnx.helper.make_node("RotaryEmbedding", names, ["Y"], **attrs)
    graph = onnx.helper.make_graph(
        [node], "rope", inputs, [onnx.helper.make_tensor_value_info("Y", FLOAT, x_shape)]
    )
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 23)], ir_version=10)


def run_tvm(proto, feeds, symbolic=()):
    """`symbolic`: names of inputs whose axis 'S' stays symbolic in the build."""
    import onnx_ir as ir
    from tvm import relax

    model = ir.serde.deserialize_model(proto)
    specs = []
    for value in model.graph.inputs:
        shape = tuple(-1 if not isinstance(d, int) else d for d in value.shape)
        specs.append(
            TensorSpec(value.name, shape if value.name in symbolic else feeds[value.name].shape, "x")
        )
    shapes = symbolic_shapes(specs, model)
    module = import_onnx(proto, shapes, {k: str(v.dtype) for k, v in feeds.items()}, target=TARGET)
    vm = relax.VirtualMachine(build_relax(module, TARGET), tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(feeds[i.name], tvm.cpu()) for i in proto.graph.input])
    return out.numpy()


@pytest.mark.parametrize(
    "layout, interleaved, rotary_dim, positions",
    [
        ("BHSD", 0, 0, False),
        ("BHSD", 1, 0, False),
        ("BHSD", 0, 8, False),
        ("BSE", 0, 0, False),
        ("BSE", 1, 8, True),
        ("BHSD", 0, 0, True),
    ],
)
def test_rotary_matches_onnxruntime(layout, interleaved, rotary_dim, positions):
    rng = np.random.default_rng(3)
    b, h, s, d = 2, 3, 5, 16
    half = (rotary_dim or d) // 2
    x_shape = [b, h, "S", d] if layout == "BHSD" else [b, "S", h * d]
    cache_shape = [32, half] if positions else [b, "S", half]
    attrs = {"interleaved": interleaved}
    if rotary_dim:
        attrs["rotary_embedding_dim"] = rotary_dim
    if layout == "BSE":
        attrs["num_heads"] = h
    proto = rotary_model(x_shape, cache_shape, attrs, positions)
    concrete = lambda shape: tuple(s if d == "S" else d for d in shape)  # noqa: E731
    angles = rng.uniform(-3, 3, concrete(cache_shape)).astype(np.float32)
    feeds = {
        "X": rng.standard_normal(concrete(x_shape)).astype(np.float32),
        "cos": np.cos(angles),
        "sin": np.sin(angles),
    }
    if positions:
        feeds["pos"] = rng.integers(0, 32, (b, s)).astype(np.int64)
    expected = session.run(proto, feeds)[0]
    np.testing.assert_allclose(run_tvm(proto, feeds), expected, rtol=1e-5, atol=1e-5)
    # the same build answers other lengths when S stays symbolic
    symbolic = {
        name
        for name, shape in (("X", x_shape), ("cos", cache_shape), ("sin", cache_shape), ("pos", [b, "S"]))
        if "S" in shape
    }
    np.testing.assert_allclose(run_tvm(proto, feeds, symbolic), expected, rtol=1e-5, atol=1e-5)
