"""Each sparse op's reference body (run by onnxruntime) against numpy, edge cases included."""

import numpy as np
import onnx_ir as ir
import pytest

from sparsecc import ops
from sparsecc.backends.ort import session
from sparsecc.ops import BsrWeight, CsrWeight, NmWeight
from sparsecc.sparsity.masks import block_mask, nm_mask, unstructured_mask
from tests.weights import encode, split

RNG = np.random.default_rng(7)


def single_op_model(weight, x_shape, with_bias: bool) -> tuple[ir.Model, np.ndarray | None]:
    """A model with one sparse node: X -> op -> Y."""
    out, _ = weight.shape
    x = ir.Value(name="X", shape=ir.Shape(x_shape), type=ir.TensorType(ir.DataType.FLOAT))
    graph = ir.Graph([x], [], nodes=[], opset_imports={"": 23}, name="g")
    bias, bias_value = None, None
    if with_bias:
        bias = RNG.standard_normal(out).astype(np.float32)
        bias_value = ir.Value(
            name="bias",
            shape=ir.Shape([out]),
            type=ir.TensorType(ir.DataType.FLOAT),
            const_value=ir.tensor(bias, name="bias"),
        )
        graph.register_initializer(bias_value)
    node = ops.make_linear_node(weight, x, bias_value, name="layer", graph=graph)
    graph.append(node)
    node.outputs[0].name = "Y"
    graph.outputs.append(node.outputs[0])
    model = ir.Model(graph, ir_version=10)
    ops.attach_reference_functions(model)
    ops.verify_model(model)
    return model, bias


def check(weight, x_shape, with_bias=True):
    """onnxruntime on the reference body == x @ W.T + b, W the masked array the test built."""
    weight, dense_w = split(weight)
    model, bias = single_op_model(weight, x_shape, with_bias)
    x = RNG.standard_normal(x_shape).astype(np.float32)
    (got,) = session.run(ir.serde.serialize_model(model), {"X": x})
    want = x @ dense_w.T + (bias if bias is not None else 0)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want).max()))


def dense(shape=(32, 48)):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("block", [(1, 16), (16, 1), (4, 4), (8, 1), (2, 8)])
@pytest.mark.parametrize("x_shape", [(5, 48), (2, 3, 48), (1, 48), (48,)])
def test_bsr(block, x_shape):
    w = dense()
    check(encode(BsrWeight, w * block_mask(w, block, 0.7), block), x_shape)


def test_bsr_block_rows_without_blocks_and_no_bias():
    w = dense()
    w[:8] = 0  # the first block rows (and more) hold nothing
    w[20:24] = 0
    weight = encode(BsrWeight, w * block_mask(w, (4, 4), 0.5), (4, 4))
    assert np.any(np.diff(weight.weight.row_ptr) == 0)
    check(weight, (3, 48), with_bias=False)


@pytest.mark.parametrize(
    "make",
    [
        lambda w: encode(BsrWeight, w, (4, 8)),
        lambda w: encode(CsrWeight, w),
        lambda w: encode(NmWeight, w * nm_mask(w, 2, 4), 2, 4),
    ],
)
def test_fully_dense_and_all_zero_weights(make):
    check(make(dense()), (4, 48))
    zero = make(np.zeros((32, 48), np.float32))
    check(zero, (4, 48))
    check(zero, (2, 2, 48), with_bias=False)


def test_bsr_single_block():
    w = np.zeros((32, 48), np.float32)
    w[8:12, 16:20] = 1.5
    weight = encode(BsrWeight, w, (4, 4))
    assert weight.weight.nnz_blocks == 1
    check(weight, (3, 48))


@pytest.mark.parametrize(("n", "m"), [(1, 4), (2, 4), (2, 8), (4, 8)])
@pytest.mark.parametrize("x_shape", [(7, 48), (2, 2, 48), (48,)])
def test_nm(n, m, x_shape):
    w = dense()
    check(encode(NmWeight, w * nm_mask(w, n, m), n, m), x_shape)


def test_nm_groups_with_fewer_than_n_nonzeros():
    w = dense()
    w *= nm_mask(w, 2, 4)
    w[:, :8] = 0
    check(encode(NmWeight, w, 2, 4), (3, 48), with_bias=False)


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("x_shape", [(6, 48), (2, 3, 48), (48,)])
def test_csr(sparsity, x_shape):
    w = dense()
    check(encode(CsrWeight, w * unstructured_mask(w, sparsity)), x_shape)


def test_csr_empty_rows_at_start_and_end():
    w = dense() * unstructured_mask(dense(), 0.8)
    w[:3] = 0
    w[-5:] = 0
    check(encode(CsrWeight, w), (4, 48))


def test_round_trip_through_node():
    w = dense()
    for encoded in (
        encode(BsrWeight, w * block_mask(w, (1, 16), 0.9), (1, 16)),
        encode(NmWeight, w * nm_mask(w, 2, 4), 2, 4),
        encode(CsrWeight, w),
    ):
        model, _ = single_op_model(encoded.weight, (4, 48), True)
        back = ops.weight_from_node(model.graph[0])
        np.testing.assert_array_equal(back.to_dense(), encoded.dense)
