"""The verifiers catch each kind of broken sparse node."""

import numpy as np
import onnx_ir as ir
import pytest

from sparsecc import ops
from sparsecc.errors import VerificationError
from sparsecc.ops import BsrWeight, CsrWeight, NmWeight
from tests.ops.test_reference_bodies import single_op_model


def node_for(weight):
    model, _ = single_op_model(weight, (2, weight.shape[1]), with_bias=True)
    return model.graph[0]


def corrupt(node, input_index, array):
    value = node.inputs[input_index]
    value.const_value = ir.tensor(array, name=value.name)


W = np.arange(1, 8 * 16 + 1, dtype=np.float32).reshape(8, 16)
W[2:4] = 0


def test_well_formed_nodes_pass():
    for weight in (
        BsrWeight.from_dense(W, (2, 4)),
        CsrWeight.from_dense(W),
        NmWeight.from_dense(np.where(np.arange(16) % 4 < 2, W, 0), 2, 4),
    ):
        ops.verify_node(node_for(weight))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda n: corrupt(n, 3, np.array([0, 1, 2, 2, 9], np.int32)), "end at"),
        (lambda n: corrupt(n, 3, np.array([0, 5, 4, 9, 16], np.int32)), "non-decreasing"),
        (lambda n: corrupt(n, 2, np.full(16, 7, np.int32)), r"lie in \[0, 4\)"),
        (lambda n: corrupt(n, 2, np.array([3, 2, 1, 0] * 4, np.int32)), "ascending"),
        (lambda n: corrupt(n, 2, np.zeros(16, np.int64)), "int32"),
        (lambda n: corrupt(n, 1, np.zeros((16, 4, 2), np.float32)), r"values must be \[nnzb, 2, 4\]"),
    ],
)
def test_bsr_violations(mutate, message):
    node = node_for(BsrWeight.from_dense(np.ones((8, 16), np.float32), (2, 4)))
    mutate(node)
    with pytest.raises(VerificationError, match=message):
        ops.verify_node(node)


def test_nm_violations():
    w = np.where(np.arange(16) % 4 < 2, W, 0)
    node = node_for(NmWeight.from_dense(w, 2, 4))
    corrupt(node, 2, np.full((8, 8), 5, np.uint8))
    with pytest.raises(VerificationError, match="< m=4"):
        ops.verify_node(node)
    corrupt(node, 2, np.tile(np.array([1, 0], np.uint8), (8, 4)))
    with pytest.raises(VerificationError, match="ascending within a group"):
        ops.verify_node(node)
    corrupt(node, 2, np.zeros((8, 8), np.int32))
    with pytest.raises(VerificationError, match="uint8"):
        ops.verify_node(node)


def test_csr_and_bias_and_shape_violations():
    node = node_for(CsrWeight.from_dense(W))
    corrupt(node, 4, np.zeros(3, np.float32))
    with pytest.raises(VerificationError, match=r"bias must have shape \[8\]"):
        ops.verify_node(node)
    node = node_for(CsrWeight.from_dense(W))
    node.attributes["shape"] = ir.AttrInt64s("shape", [8, 32])
    with pytest.raises(VerificationError):
        ops.verify_node(node)


def test_non_constant_weight_is_rejected():
    node = node_for(CsrWeight.from_dense(W))
    node.replace_input_with(1, ir.Value(name="runtime_values"))
    with pytest.raises(VerificationError, match="must be a constant"):
        ops.verify_node(node)


def test_signature_violations_name_the_problem():
    node = node_for(BsrWeight.from_dense(W, (2, 4)))
    del node.attributes["block"]
    with pytest.raises(VerificationError, match="BsrMatMul node 'layer': attribute block must be 2 ints"):
        ops.verify_node(node)
    node = node_for(NmWeight.from_dense(np.where(np.arange(16) % 4 < 2, W, 0), 2, 4))
    node.attributes["m"] = ir.AttrFloat32("m", 4.0)
    with pytest.raises(VerificationError, match="attribute m must be an int"):
        ops.verify_node(node)
    node = node_for(CsrWeight.from_dense(W))
    node.resize_inputs(6)
    with pytest.raises(VerificationError, match="got 6 inputs"):
        ops.verify_node(node)


def test_block_must_divide_shape_and_x_must_match():
    node = node_for(BsrWeight.from_dense(W, (2, 4)))
    node.attributes["block"] = ir.AttrInt64s("block", [3, 4])
    with pytest.raises(VerificationError, match="block 3x4 must divide shape 8x16"):
        ops.verify_node(node)
    node = node_for(CsrWeight.from_dense(W))
    node.inputs[0].shape = ir.Shape([2, 12])
    with pytest.raises(VerificationError, match="X's last dimension 12 must equal in=16"):
        ops.verify_node(node)
    node = node_for(CsrWeight.from_dense(W))
    node.inputs[0].dtype = ir.DataType.DOUBLE
    with pytest.raises(VerificationError, match="X must be float32"):
        ops.verify_node(node)


def test_weight_from_node_rejects_other_ops():
    node = ir.Node("", "MatMul", [ir.Value(name="a"), ir.Value(name="b")], name="mm")
    with pytest.raises(VerificationError, match="not a sparse op"):
        ops.weight_from_node(node)
