"""The verifier of every sparse op: what a well-formed node must satisfy.

Like an MLIR op verifier. The generic part checks the signature the op declares (input
count, attribute kinds), the shape attribute, dtypes, the bias and X; the op's own `check`
adds its format's rules (index ranges, orderings the kernels rely on). A violation raises
VerificationError naming the node and the rule.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparsecc.errors import VerificationError
from sparsecc.ops.base import DOMAIN, OPS, op_of
from sparsecc.ops.nodes import bias_of, weight_from_node


def _requirer(node: ir.Node):
    def require(condition, message: str) -> None:
        if not condition:
            raise VerificationError(f"{node.op_type} node '{node.name}': {message}")

    return require


def _check_signature(node: ir.Node, require) -> None:
    """Input count and attribute kinds, checked first so later checks can unpack safely."""
    op = op_of(node.op_type)
    n_weight = len(op.inputs)
    require(
        1 + n_weight <= len(node.inputs) <= 2 + n_weight,
        f"expects X, {', '.join(op.inputs)} and an optional bias; got {len(node.inputs)} inputs",
    )
    for attribute in op.attributes:
        attr = node.attributes.get(attribute.name)
        if attribute.count is None:
            require(
                attr is not None and attr.type == ir.AttributeType.INT,
                f"attribute {attribute.name} must be an int",
            )
        else:
            ok = (
                attr is not None and attr.type == ir.AttributeType.INTS and len(attr.value) == attribute.count
            )
            require(ok, f"attribute {attribute.name} must be {attribute.count} ints")


def verify_node(node: ir.Node) -> None:
    """Raise VerificationError if this sparse node breaks its contract."""
    require = _requirer(node)
    require(node.op_type in OPS, f"unknown op in domain '{DOMAIN}'; known ops: {', '.join(OPS)}")
    _check_signature(node, require)
    shape = tuple(node.attributes.get_ints("shape", ()))
    require(len(shape) == 2 and all(s > 0 for s in shape), f"attribute shape must be [out, in], got {shape}")
    weight = weight_from_node(node)
    require(weight.values.dtype == np.float32, f"values must be float32, got {weight.values.dtype}")
    op_of(node.op_type).check(weight, require)
    bias = bias_of(node)
    require(bias is None or bias.shape == (shape[0],), f"bias must have shape [{shape[0]}]")
    require(
        bias is None or bias.dtype == np.float32, f"bias must be float32, got {getattr(bias, 'dtype', '')}"
    )
    x = node.inputs[0]
    require(x is not None, "input X is missing")
    require(x.dtype in (None, ir.DataType.FLOAT), f"X must be float32, got {x.dtype}")
    if OPS[node.op_type].conv:
        _check_conv(node, shape, require)
    elif x.shape is not None and len(x.shape) and isinstance(x.shape[-1], int):
        require(x.shape[-1] == shape[1], f"X's last dimension {x.shape[-1]} must equal in={shape[1]}")


def _check_conv(node: ir.Node, shape: tuple[int, ...], require) -> None:
    """A Conv form: in = C/group x kh x kw for X's channels C, positive strides and dilations."""
    kh, kw = node.attributes.get_ints("kernel_shape")
    group = node.attributes.get_int("group")
    require(min(node.attributes.get_ints("strides")) > 0, "strides must be positive")
    require(min(node.attributes.get_ints("dilations")) > 0, "dilations must be positive")
    require(min(node.attributes.get_ints("pads")) >= 0, "pads must not be negative")
    require(group > 0 and shape[0] % group == 0, f"group {group} must divide out={shape[0]}")
    require(kh > 0 and kw > 0 and shape[1] % (kh * kw) == 0, f"in={shape[1]} must be C/group x {kh} x {kw}")
    x = node.inputs[0]
    if x.shape is not None and len(x.shape) == 4 and isinstance(x.shape[1], int):
        channels = x.shape[1]
        require(
            channels % group == 0 and channels // group * kh * kw == shape[1],
            f"X has {channels} channels: in must be {channels}/{group} x {kh} x {kw}, got {shape[1]}",
        )


def verify_model(model: ir.Model) -> None:
    """Verify every node of the `sparsecc` domain in the main graph."""
    for node in model.graph:
        if node.domain == DOMAIN:
            verify_node(node)
