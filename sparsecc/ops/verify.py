"""Verifiers of the sparse ops: what a well-formed node must satisfy.

Like an MLIR op verifier: shapes against attributes, dtypes, index ranges, and the
orderings the kernels rely on (ascending columns within a row, ascending N:M
positions). A violation raises VerificationError naming the node and the rule.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparsecc.errors import VerificationError
from sparsecc.ops.build import bias_of, weight_from_node
from sparsecc.ops.formats import BsrWeight, CsrWeight, NmWeight
from sparsecc.ops.schema import DOMAIN, SPARSE_OP_TYPES, WEIGHT_INPUTS


def _require(condition, node: ir.Node, message: str) -> None:
    if not condition:
        raise VerificationError(f"{node.op_type} node '{node.name}': {message}")


def _check_ptr(node, row_ptr: np.ndarray, rows: int, nnz: int) -> None:
    _require(row_ptr.dtype == np.int32, node, f"row_ptr must be int32, got {row_ptr.dtype}")
    _require(row_ptr.shape == (rows + 1,), node, f"row_ptr must have {rows + 1} entries, has {row_ptr.shape}")
    _require(row_ptr[0] == 0 and row_ptr[-1] == nnz, node, f"row_ptr must start at 0 and end at {nnz}")
    _require(np.all(np.diff(row_ptr) >= 0), node, "row_ptr must be non-decreasing")


def _check_columns(node, cols: np.ndarray, row_ptr: np.ndarray, limit: int, what: str) -> None:
    _require(cols.dtype == np.int32, node, f"col_indices must be int32, got {cols.dtype}")
    if cols.size == 0:
        return
    _require(cols.min() >= 0 and cols.max() < limit, node, f"{what} must lie in [0, {limit})")
    steps = np.diff(cols.astype(np.int64))
    row_starts = np.zeros(cols.size, dtype=bool)
    row_starts[row_ptr[1:-1][row_ptr[1:-1] < cols.size]] = True
    _require(np.all((steps > 0) | row_starts[1:]), node, f"{what} must be strictly ascending within a row")


def _check_bsr(node, w: BsrWeight) -> None:
    out, inp = w.shape
    r, c = w.block
    _require(
        r > 0 and c > 0 and out % r == 0 and inp % c == 0,
        node,
        f"block {r}x{c} must divide shape {out}x{inp}",
    )
    _require(
        w.values.ndim == 3 and w.values.shape[1:] == (r, c),
        node,
        f"values must be [nnzb, {r}, {c}], got {list(w.values.shape)}",
    )
    _require(w.col_indices.shape == (w.values.shape[0],), node, "col_indices must have one entry per block")
    _check_ptr(node, w.row_ptr, out // r, w.values.shape[0])
    _check_columns(node, w.col_indices, w.row_ptr, inp // c, "block column indices")


def _check_nm(node, w: NmWeight) -> None:
    out, inp = w.shape
    _require(
        0 < w.n <= w.m and inp % w.m == 0, node, f"{w.n}:{w.m} must have 0 < n <= m and m dividing {inp}"
    )
    k = inp // w.m * w.n
    _require(w.values.shape == (out, k), node, f"values must be [{out}, {k}], got {list(w.values.shape)}")
    _require(w.indices.shape == (out, k), node, f"indices must be [{out}, {k}], got {list(w.indices.shape)}")
    _require(w.indices.dtype == np.uint8, node, f"indices must be uint8, got {w.indices.dtype}")
    groups = w.indices.reshape(out, inp // w.m, w.n).astype(np.int64)
    _require(np.all(groups < w.m), node, f"indices must be < m={w.m}")
    _require(np.all(np.diff(groups, axis=2) > 0), node, "indices must be strictly ascending within a group")


def _check_csr(node, w: CsrWeight) -> None:
    out, inp = w.shape
    _require(
        w.values.ndim == 1 and w.col_indices.shape == w.values.shape,
        node,
        "values and col_indices must be 1-D of the same length",
    )
    _check_ptr(node, w.row_ptr, out, w.values.shape[0])
    _check_columns(node, w.col_indices, w.row_ptr, inp, "column indices")


# op type -> (attribute name, number of ints, or None for a single int) that its node must carry
_ATTRIBUTES = {
    "BsrMatMul": (("shape", 2), ("block", 2)),
    "NmMatMul": (("shape", 2), ("n", None), ("m", None)),
    "CsrMatMul": (("shape", 2),),
}


def _check_signature(node: ir.Node) -> None:
    """Input count and attribute kinds, checked first so later checks can unpack safely."""
    n_weight = len(WEIGHT_INPUTS[node.op_type])
    _require(
        1 + n_weight <= len(node.inputs) <= 2 + n_weight,
        node,
        f"expects X, {', '.join(WEIGHT_INPUTS[node.op_type])} and an optional bias; got {len(node.inputs)} inputs",
    )
    for name, count in _ATTRIBUTES[node.op_type]:
        attr = node.attributes.get(name)
        if count is None:
            ok = attr is not None and attr.type == ir.AttributeType.INT
            _require(ok, node, f"attribute {name} must be an int")
        else:
            ok = attr is not None and attr.type == ir.AttributeType.INTS and len(attr.value) == count
            _require(ok, node, f"attribute {name} must be {count} ints")


_CHECKS = {BsrWeight: _check_bsr, NmWeight: _check_nm, CsrWeight: _check_csr}


def verify_node(node: ir.Node) -> None:
    """Raise VerificationError if this sparse node breaks its contract."""
    _require(node.op_type in SPARSE_OP_TYPES, node, f"unknown op in domain '{DOMAIN}'")
    _check_signature(node)
    shape = tuple(node.attributes.get_ints("shape", ()))
    _require(
        len(shape) == 2 and all(s > 0 for s in shape), node, f"attribute shape must be [out, in], got {shape}"
    )
    weight = weight_from_node(node)
    _require(weight.values.dtype == np.float32, node, f"values must be float32, got {weight.values.dtype}")
    _CHECKS[type(weight)](node, weight)
    bias = bias_of(node)
    _require(bias is None or bias.shape == (shape[0],), node, f"bias must have shape [{shape[0]}]")
    _require(
        bias is None or bias.dtype == np.float32,
        node,
        f"bias must be float32, got {getattr(bias, 'dtype', '')}",
    )
    x = node.inputs[0]
    _require(x is not None, node, "input X is missing")
    _require(x.dtype in (None, ir.DataType.FLOAT), node, f"X must be float32, got {x.dtype}")
    if x.shape is not None and len(x.shape) and isinstance(x.shape[-1], int):
        _require(x.shape[-1] == shape[1], node, f"X's last dimension {x.shape[-1]} must equal in={shape[1]}")


def verify_model(model: ir.Model) -> None:
    """Verify every sparse node of the main graph."""
    for node in model.graph:
        if node.domain == DOMAIN:
            verify_node(node)
