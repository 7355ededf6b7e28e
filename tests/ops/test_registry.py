"""Each sparse op is defined once and found by op type, weight or format."""

import numpy as np
import pytest

from sparsecc import ops
from sparsecc.sparsity.detect import analyze_weight
from sparsecc.sparsity.masks import block_mask, nm_mask
from sparsecc.sparsity.patterns import BlockSparsity, Dense, Existing, NMSparsity, Unstructured

W = np.random.default_rng(2).standard_normal((32, 64)).astype(np.float32)


def test_every_op_is_complete_and_found_every_way():
    assert list(ops.OPS) == ["BsrMatMul", "CsrMatMul", "NmMatMul", "BsrConv", "CsrConv", "NmConv"]
    for op_type, op in [(t, op) for t, op in ops.OPS.items() if not op.conv]:
        assert ops.op_of(op_type) is op
        assert op.inputs and op.attributes[0].name == "shape" and "w = " in op.body
        fmt = {
            "BsrMatMul": ops.BsrFormat((4, 4)),
            "NmMatMul": ops.NmFormat(2, 4),
            "CsrMatMul": ops.CsrFormat(),
        }[op_type]
        w = W * nm_mask(W, 2, 4) if op_type == "NmMatMul" else W * block_mask(W, (4, 4), 0.5)
        weight = fmt.compress(w)
        assert ops.op_of(fmt) is op and ops.op_of(weight) is op and weight.format == fmt
        np.testing.assert_array_equal(weight.to_dense(), w)
        assert op.weight_from(list(weight.arrays()), op.attribute_values(weight)).format == fmt
    with pytest.raises(KeyError, match="known ops: BsrMatMul, CsrMatMul, NmMatMul, BsrConv"):
        ops.op_of("EllMatMul")


def test_each_format_has_a_conv_form_with_the_same_weight():
    for linear in [op for op in ops.OPS.values() if not op.conv]:
        conv = ops.op_of(linear.op_type.replace("MatMul", "Conv"))
        assert conv.conv and conv.weight_type is linear.weight_type and conv.body == linear.body
        names = [a.name for a in conv.attributes]
        assert names[: len(linear.attributes)] == [a.name for a in linear.attributes]
        assert names[len(linear.attributes) :] == ["kernel_shape", "strides", "pads", "dilations", "group"]
    weight = ops.CsrFormat().compress(W * (np.abs(W) > 1))
    assert ops.conv_op_of(weight).op_type == "CsrConv" and ops.op_of(weight).op_type == "CsrMatMul"


def test_formats_for_each_pattern():
    shape = W.shape
    assert ops.formats_for(Dense(), shape) == []
    assert ops.formats_for(BlockSparsity((4, 4), 0.5), shape) == [ops.BsrFormat((4, 4))]
    assert ops.formats_for(BlockSparsity((3, 4), 0.5), shape) == []  # 3 does not divide 32
    assert ops.formats_for(NMSparsity(2, 4), shape) == [ops.NmFormat(2, 4)]
    assert ops.formats_for(Unstructured(0.9), shape) == [ops.CsrFormat()]
    existing = ops.formats_for(Existing(), shape, analyze_weight(W * nm_mask(W, 2, 4)))
    assert (
        ops.CsrFormat() in existing and ops.NmFormat(2, 4) in existing and ops.BsrFormat((16, 1)) in existing
    )


def test_storage_is_the_bytes_the_arrays_take():
    for fmt, w in (
        (ops.BsrFormat((4, 4)), W * block_mask(W, (4, 4), 0.75)),
        (ops.NmFormat(2, 4), W * nm_mask(W, 2, 4)),
        (ops.CsrFormat(), W * block_mask(W, (1, 1), 0.9)),
    ):
        storage = fmt.storage(w)
        weight = fmt.compress(w)
        assert storage.nbytes == sum(a.nbytes for a in weight.arrays())
        assert storage.density == pytest.approx(weight.density)
