"""Refuse models whose ops sparsecc cannot reason about, with one line listing them all."""

from __future__ import annotations

import onnx
import onnx_ir as ir

from sparsecc import ops
from sparsecc.errors import UnsupportedOpError

STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")


def _known(node: ir.Node, functions: set[tuple[str, str]]) -> bool:
    if (node.domain, node.op_type) in functions:
        return True
    if node.domain == ops.DOMAIN:
        return node.op_type in ops.OPS
    if node.domain in STANDARD_DOMAINS:
        return onnx.defs.has(node.op_type, node.domain if node.domain != "ai.onnx" else "")
    return False


def check_supported_ops(model: ir.Model) -> None:
    """Raise UnsupportedOpError naming every op that is neither standard ONNX nor ours."""
    functions = {(key[0], key[1]) for key in model.functions}
    unknown = sorted(
        {
            f"{node.domain}::{node.op_type}" if node.domain else node.op_type
            for node in ir.traversal.RecursiveGraphIterator(model.graph)
            if not _known(node, functions)
        }
    )
    if unknown:
        raise UnsupportedOpError(
            f"the model uses ops sparsecc cannot handle: {', '.join(unknown)}; "
            "export it with standard ONNX ops (or the sparsecc domain) only"
        )
