"""Which activations flow channel-blocked ([N, C/L, H, W, L]) between kernels instead of NCHW.

A dense Conv that the channel-blocked kernel takes writes its output blocked; a MaxPool of a
blocked value stays blocked (its own kernel); everything else reads NCHW, which the importer
converts once per value, where it is first needed. So a ResNet runs blocked from its stem to
its pooling head, converting twice, and a sparse (NCHW) Conv between blocked ones costs a
conversion each way. The plan is made before the Conv kernels are built: each reads its input
in the layout the plan says it arrives in.
"""

from __future__ import annotations

import onnx_ir as ir

from sparsecc.backends.tvm.kernels.blocked_layout_cpu import pool_supported
from sparsecc.backends.tvm.layers import ConvLayer


def attribute_values(node: ir.Node) -> dict:
    """A node's attributes as plain Python values (names -> ints, floats, strings, lists)."""
    return {name: attribute.value for name, attribute in node.attributes.items()}


def blocked_values(model: ir.Model, layers: list[ConvLayer], blocked_convs: set[str]) -> set[str]:
    """Names of the values that are blocked when the Convs `blocked_convs` (node names) write
    blocked outputs."""
    writes = {layer.node: layer.output for layer in layers if layer.node in blocked_convs}
    blocked: set[str] = set()
    for node in model.graph:
        if node.name in writes:
            blocked.add(writes[node.name])
        elif (
            node.op_type == "MaxPool"
            and node.domain in ("", "ai.onnx")
            and len(node.outputs) == 1
            and node.inputs[0] is not None
            and node.inputs[0].name in blocked
            and pool_supported(attribute_values(node))
        ):
            blocked.add(node.outputs[0].name)
    return blocked
