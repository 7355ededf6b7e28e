"""ONNX -> Relax: sparse ops, dense linears and the opset-23 Attention against onnxruntime."""

import numpy as np
import onnx
import pytest

from sparsecc.backends.ort import session
from sparsecc.backends.tvm.build import build_relax
from sparsecc.backends.tvm.importer import import_onnx
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.errors import UnsupportedOpError

tvm = pytest.importorskip("tvm")
TARGET = resolve_target("cpu")
RNG = np.random.default_rng(5)


def run_tvm(proto, feeds, kernels=None, bias_adds=None):
    from tvm import relax

    shapes = {k: v.shape for k, v in feeds.items()}
    dtypes = {k: str(v.dtype) for k, v in feeds.items()}
    module = import_onnx(proto, shapes, dtypes, kernels, TARGET, bias_adds)
    vm = relax.VirtualMachine(build_relax(module, TARGET), tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(feeds[i.name], tvm.cpu()) for i in proto.graph.input])
    return out.numpy() if hasattr(out, "numpy") else out[0].numpy()


def attention_model(shape_q, shape_kv, attrs: dict, mask_type=None):
    inputs = [
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s)
        for n, s in (("Q", shape_q), ("K", shape_kv), ("V", shape_kv))
    ]
    names = ["Q", "K", "V"]
    if mask_type is not None:
        s_q, s_kv = (
            shape_q[-2] if len(shape_q) == 4 else shape_q[1],
            shape_kv[-2] if len(shape_kv) == 4 else shape_kv[1],
        )
        inputs.append(onnx.helper.make_tensor_value_info("M", mask_type, [s_q, s_kv]))
        names.append("M")
    node = onnx.helper.make_node("Attention", names, ["Y"], **attrs)
    graph = onnx.helper.make_graph(
        [node], "g", inputs, [onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)]
    )
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 23)], ir_version=10)


@pytest.mark.parametrize(
    ("shape_q", "shape_kv", "attrs", "mask"),
    [
        ([1, 4, 16, 8], [1, 4, 16, 8], {}, None),
        ([2, 4, 16, 8], [2, 4, 16, 8], {"is_causal": 1}, None),
        ([1, 4, 16, 8], [1, 2, 16, 8], {"scale": 0.3}, None),  # grouped-query: 4 query heads, 2 kv heads
        ([1, 16, 32], [1, 16, 32], {"q_num_heads": 4, "kv_num_heads": 4}, None),  # 3-D inputs
        ([1, 4, 16, 8], [1, 4, 16, 8], {}, onnx.TensorProto.BOOL),
        ([1, 4, 16, 8], [1, 4, 16, 8], {}, onnx.TensorProto.FLOAT),
    ],
)
def test_standard_attention_matches_onnxruntime(shape_q, shape_kv, attrs, mask):
    proto = attention_model(shape_q, shape_kv, attrs, mask)
    feeds = {
        "Q": RNG.standard_normal(shape_q).astype(np.float32),
        "K": RNG.standard_normal(shape_kv).astype(np.float32),
        "V": RNG.standard_normal(shape_kv).astype(np.float32),
    }
    if mask == onnx.TensorProto.BOOL:
        feeds["M"] = RNG.random((16, 16)) > 0.3
        feeds["M"][:, 0] = True
    elif mask == onnx.TensorProto.FLOAT:
        feeds["M"] = RNG.standard_normal((16, 16)).astype(np.float32)
    want = session.run(proto, feeds)[0]
    got = run_tvm(proto, feeds)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_unsupported_ops_are_listed_in_one_error():
    proto = onnx.parser.parse_model("""<ir_version: 10, opset_import: ["" : 23, "acme" : 1]>
        g (float[4] X) => (float[4] Y) { A = acme.Frob(X)
         Y = acme.Blah(A) }""")
    with pytest.raises(UnsupportedOpError, match=r"cannot compile these ops: acme::Blah, acme::Frob"):
        import_onnx(proto, {"X": (4,)}, {"X": "float32"})


def test_constant_of_shape_with_an_empty_shape_gives_a_scalar():
    """TorchScript exports of BERT fill a scalar this way; TVM's converter alone fails on it."""
    proto = onnx.parser.parse_model("""<ir_version: 10, opset_import: ["" : 23]>
        g (float[4] X) => (float[4] Y) {
          empty = Constant<value = int64[0] {}>()
          three = ConstantOfShape<value = float[1] {3}>(empty)
          Y = Add(X, three) }""")
    x = RNG.standard_normal(4).astype(np.float32)
    np.testing.assert_allclose(run_tvm(proto, {"X": x}), x + 3, rtol=1e-6)


@pytest.mark.parametrize("axis", [-1, 1])
def test_rms_normalization_is_spelled_out_and_matches_onnxruntime(axis):
    """A mean of squares computed once (TVM's rms_norm recomputed it per element)."""
    proto = onnx.parser.parse_model(f"""<ir_version: 10, opset_import: ["" : 23]>
        g (float[2, 3, 64] X, float[{"64" if axis == -1 else "3, 64"}] S) => (float[2, 3, 64] Y) {{
          Y = RMSNormalization<axis = {axis}, epsilon = 0.001>(X, S) }}""")
    x = RNG.standard_normal((2, 3, 64)).astype(np.float32) * 3
    scale = RNG.standard_normal((64,) if axis == -1 else (3, 64)).astype(np.float32)
    want = session.run(proto.SerializeToString(), {"X": x, "S": scale})[0]
    np.testing.assert_allclose(run_tvm(proto, {"X": x, "S": scale}), want, rtol=1e-5, atol=1e-5)
    text = import_onnx(proto, {"X": (2, 3, 64), "S": scale.shape}, {"X": "float32", "S": "float32"}).script()
    assert "R.nn.rms_norm" not in text and "R.mean(" in text


@pytest.mark.parametrize("shape, axis", [((1, 1, 64), -1), ((1, 4, 64), 1), ((2, 3, 64), -1)])
def test_layer_norm_of_one_row_is_spelled_out_and_matches_onnxruntime(shape, axis):
    """One row (a decode step's token): statistics computed once (TVM's took 15 ms for 2048 features)."""
    norm_shape = shape[axis % 3 :]
    dims = ", ".join(map(str, shape))
    proto = onnx.parser.parse_model(f"""<ir_version: 10, opset_import: ["" : 23]>
        g (float[{dims}] X, float[{", ".join(map(str, norm_shape))}] S, float[{", ".join(map(str, norm_shape))}] B)
          => (float[{dims}] Y) {{
          Y = LayerNormalization<axis = {axis}, epsilon = 0.001>(X, S, B) }}""")
    feeds = {
        "X": RNG.standard_normal(shape).astype(np.float32) * 3 + 1,
        "S": RNG.standard_normal(norm_shape).astype(np.float32),
        "B": RNG.standard_normal(norm_shape).astype(np.float32),
    }
    want = session.run(proto.SerializeToString(), feeds)[0]
    np.testing.assert_allclose(run_tvm(proto, feeds), want, rtol=1e-5, atol=1e-5)
    text = import_onnx(
        proto, {k: v.shape for k, v in feeds.items()}, dict.fromkeys(feeds, "float32")
    ).script()
    assert ("R.nn.layer_norm" in text) == (shape[0] * shape[1] > 1 and axis == -1)


def test_small_integer_powers_become_products_and_match_onnxruntime():
    """GPT-2's GELU cubes its input: Pow(x, 3) as x*x*x (a powf call per element otherwise)."""
    proto = onnx.parser.parse_model("""<ir_version: 10, opset_import: ["" : 23]>
        g (float[4, 64] X) => (float[4, 64] Y) {
          two = Constant<value = float {2}>()
          three = Constant<value = float[1] {3}>()
          half = Constant<value = float {0.5}>()
          a = Pow(X, two)
          b = Pow(X, three)
          c = Pow(a, half)
          s = Add(a, b)
          Y = Add(s, c) }""")
    x = RNG.standard_normal((4, 64)).astype(np.float32)
    want = session.run(proto.SerializeToString(), {"X": x})[0]
    np.testing.assert_allclose(run_tvm(proto, {"X": x}), want, rtol=1e-5, atol=1e-5)

    module = import_onnx(proto, {"X": (4, 64)}, {"X": "float32"})
    text = module.script()
    assert text.count("R.power(") == 1 and "R.multiply(" in text  # only the square root stays a power


def layer_kernels(proto, feeds) -> tuple[dict, set[str]]:
    """Node name -> our kernel for each linear layer, made directly (no cost model: sparse stays
    sparse), and the bias Adds those kernels take in."""
    import onnx_ir as ir

    from sparsecc.backends.tvm.kernels.rules import make_kernel
    from sparsecc.backends.tvm.layers import find_layers

    layers = find_layers(ir.serde.deserialize_model(proto), feeds)
    kernels = {layer.node: make_kernel(layer.weight, layer.bias, layer.m, TARGET) for layer in layers}
    return kernels, {layer.bias_add for layer in layers if layer.bias_add}


def sparse_layer(op_type: str, x_shape, with_bias: bool):
    """One sparse op (and its reference body, which onnxruntime runs) on a masked 32x48 weight."""
    from sparsecc.ops import BsrWeight, CsrWeight, NmWeight
    from sparsecc.sparsity.masks import block_mask, nm_mask, unstructured_mask
    from tests.ops.test_reference_bodies import single_op_model

    w = RNG.standard_normal((32, 48)).astype(np.float32)
    weight = {
        "BsrMatMul": lambda: BsrWeight.from_dense(w * block_mask(w, (4, 4), 0.6), (4, 4)),
        "CsrMatMul": lambda: CsrWeight.from_dense(w * unstructured_mask(w, 0.8)),
        "NmMatMul": lambda: NmWeight.from_dense(w * nm_mask(w, 2, 4), 2, 4),
    }[op_type]()
    model, _ = single_op_model(weight, x_shape, with_bias)
    import onnx_ir as ir

    return ir.serde.serialize_model(model)


@pytest.mark.parametrize("op_type", ["BsrMatMul", "CsrMatMul", "NmMatMul"])
@pytest.mark.parametrize(("x_shape", "with_bias"), [((7, 48), True), ((2, 5, 48), False)])
def test_sparse_ops_match_onnxruntime(op_type, x_shape, with_bias):
    """Each sparsecc op imported as our kernel: the same numbers as its reference body in onnxruntime."""
    proto = sparse_layer(op_type, x_shape, with_bias)
    assert [n.op_type for n in proto.graph.node] == [op_type]
    feeds = {"X": RNG.standard_normal(x_shape).astype(np.float32)}
    kernels, bias_adds = layer_kernels(proto, feeds)
    (kernel,) = kernels.values()
    prefix = {"BsrMatMul": "bsr_", "CsrMatMul": "csr_", "NmMatMul": "nm_"}[op_type]
    assert kernel.runs != "dense" and kernel.name.startswith(prefix), kernel.name
    want = session.run(proto, feeds)[0]
    got = run_tvm(proto, feeds, kernels, bias_adds)
    assert got.shape == want.shape == (*x_shape[:-1], 32)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_dense_linear_matches_onnxruntime():
    """MatMul by a constant weight, then Add of a constant bias: our dense kernel, bias folded in."""
    w = RNG.standard_normal((48, 32)).astype(np.float32)
    b = RNG.standard_normal(32).astype(np.float32)
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("MatMul", ["X", "W"], ["H"], name="linear"),
            onnx.helper.make_node("Add", ["H", "B"], ["Y"], name="bias"),
        ],
        "g",
        [onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [6, 48])],
        [onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [6, 32])],
        initializer=[onnx.numpy_helper.from_array(w, "W"), onnx.numpy_helper.from_array(b, "B")],
    )
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 23)], ir_version=10)
    x = RNG.standard_normal((6, 48)).astype(np.float32)
    want = x.astype(np.float64) @ w + b  # numpy, and onnxruntime beside it
    np.testing.assert_allclose(session.run(proto, {"X": x})[0], want, rtol=1e-5, atol=1e-4)
    kernels, bias_adds = layer_kernels(proto, {"X": x})
    assert [k.name for k in kernels.values()] == [f"dense_gemm_{TARGET.family}"] and bias_adds == {"bias"}
    got = run_tvm(proto, {"X": x}, kernels, bias_adds)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_marking_leaves_out_the_weights_only_kernels_read():
    """A linear with a kernel keeps X only, and its W leaves the graph TVM imports (the kernel
    holds it); the caller's proto is untouched unless it gives it up (`owned`)."""
    from sparsecc.backends.tvm.importer import LINEAR, mark_private_ops

    model = onnx.parser.parse_model(
        """<ir_version: 10, opset_import: ["" : 23]>
        g (float[2, 8] x) => (float[2, 4] y) <float[8, 4] w = {0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,
            16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31}, float[4] b = {1,2,3,4}> {
            h = MatMul (x, w)
            y = Add (h, b)
        }"""
    )
    model.graph.node[0].name, model.graph.node[1].name = "mm", "add"
    marked = mark_private_ops(model, {"mm"})
    assert [(n.op_type, list(n.input)) for n in marked.graph.node] == [(LINEAR, ["x"]), ("Add", ["h", "b"])]
    assert [i.name for i in marked.graph.initializer] == ["b"]
    assert [i.name for i in model.graph.initializer] == ["w", "b"]  # a copy was marked
    in_place = mark_private_ops(model, {"mm"}, {"add"}, owned=True)
    assert in_place is model and len(model.graph.initializer) == 0  # the bias Add passes Y on
