"""Conv forms of the sparse ops: `BsrConv`, `CsrConv`, `NmConv`.

A Conv weight `[O, C/group, kh, kw]` is the linear weight `W[O, C/group * kh * kw]` (taps in
that order), stored exactly as its MatMul twin stores W; the node adds Conv's attributes
(`kernel_shape`, `strides`, `pads`, `dilations`, `group`) and takes X in NCHW. The reference
body rebuilds W with the twin's statements and applies a standard `Conv`, so onnxruntime runs a
sparsified CNN unchanged. Each twin is derived here from its MatMul op: one definition per format.
"""

from __future__ import annotations

from sparsecc.ops import bsr, csr, nm  # noqa: F401  (the MatMul ops are registered first)
from sparsecc.ops.base import OPS, Attribute, SparseOp, register

CONV_ATTRIBUTES = (
    Attribute("kernel_shape", 2),
    Attribute("strides", 2),
    Attribute("pads", 4),
    Attribute("dilations", 2),
    Attribute("group"),
)


def conv_form(op: type[SparseOp]) -> type[SparseOp]:
    """The Conv twin of a MatMul op: same inputs, weight, format and body for W; Conv's attributes."""
    return type(
        op.op_type.replace("MatMul", "Conv"),
        (op,),
        {
            "op_type": op.op_type.replace("MatMul", "Conv"),
            "attributes": op.attributes + CONV_ATTRIBUTES,
            "conv": True,
            "__doc__": f"{op.op_type} over a Conv's flattened weight (NCHW X, Conv attributes).",
        },
    )


for _linear in [op for op in OPS.values() if not op.conv]:
    register(conv_form(_linear))


def conv_op_of(weight) -> type[SparseOp]:
    """The Conv-form op storing this weight."""
    for op in OPS.values():
        if op.conv and isinstance(weight, op.weight_type):
            return op
    raise KeyError(f"no sparse Conv op for {type(weight).__name__}")
