"""The `sparsecc` op domain: BsrMatMul, NmMatMul, CsrMatMul (design.md, "Sparse ops").

Like an MLIR dialect: builders (`make_linear_node`), verifiers (`verify_node`) and
reference bodies in standard ONNX, attached as model-local functions so any ONNX
runtime executes a sparsified model unchanged.
"""

from sparsecc.ops.build import bias_of, make_linear_node, weight_from_node
from sparsecc.ops.formats import BsrWeight, CsrWeight, NmWeight, SparseWeight
from sparsecc.ops.functions import attach_reference_functions
from sparsecc.ops.schema import DOMAIN, DOMAIN_VERSION, SPARSE_OP_TYPES
from sparsecc.ops.verify import verify_model, verify_node

__all__ = [
    "DOMAIN",
    "DOMAIN_VERSION",
    "SPARSE_OP_TYPES",
    "BsrWeight",
    "CsrWeight",
    "NmWeight",
    "SparseWeight",
    "attach_reference_functions",
    "bias_of",
    "make_linear_node",
    "verify_model",
    "verify_node",
    "weight_from_node",
]
