"""The `sparsecc` op domain: one module per op (`bsr.py`, `nm.py`, `csr.py`), found by type.

Like an MLIR dialect: each op is defined once (format, weight, attributes, verifier,
reference body in standard ONNX, cost hook; see `base.py`), and the generic builders,
verifier and body attachment work over the registry. Sparsified models carry the bodies
as model-local functions, so any ONNX runtime executes them unchanged.
"""

from sparsecc.ops import (  # noqa: F401  (registers the ops, in this order)
    bsr,
    conv,
    csr,
    nm,
    pattern_attention,
)
from sparsecc.ops.base import (
    DOMAIN,
    DOMAIN_VERSION,
    OPS,
    SparseFormat,
    SparseOp,
    SparseWeight,
    Storage,
    formats_for,
    op_of,
)
from sparsecc.ops.bsr import BsrFormat, BsrWeight
from sparsecc.ops.conv import conv_op_of
from sparsecc.ops.csr import CsrFormat, CsrWeight
from sparsecc.ops.functions import attach_reference_functions
from sparsecc.ops.nm import NmFormat, NmWeight
from sparsecc.ops.nodes import (
    bias_of,
    is_conv_node,
    is_sparse_node,
    make_conv_node,
    make_linear_node,
    weight_from_node,
)
from sparsecc.ops.verify import verify_node


def verify_model(model) -> None:
    """Verify every node of the `sparsecc` domain in the main graph: the linear ops by
    `verify.verify_node`, PatternAttention (not a linear op) by its own verifier."""
    for node in model.graph:
        if node.domain == DOMAIN:
            is_attention = node.op_type == pattern_attention.OP_TYPE
            (pattern_attention.verify if is_attention else verify_node)(node)


__all__ = [
    "DOMAIN",
    "DOMAIN_VERSION",
    "OPS",
    "BsrFormat",
    "BsrWeight",
    "CsrFormat",
    "CsrWeight",
    "NmFormat",
    "NmWeight",
    "SparseFormat",
    "SparseOp",
    "SparseWeight",
    "Storage",
    "attach_reference_functions",
    "bias_of",
    "conv_op_of",
    "formats_for",
    "is_conv_node",
    "is_sparse_node",
    "make_conv_node",
    "make_linear_node",
    "op_of",
    "pattern_attention",
    "verify_model",
    "verify_node",
    "weight_from_node",
]
