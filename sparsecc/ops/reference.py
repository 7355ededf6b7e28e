"""Reference bodies of the sparse ops, in standard ONNX.

Each body rebuilds the dense W[out, in] from the sparse inputs in O(nnz) memory and
applies it with `Gemm(X2, W, bias, transB=1)`: Gemm's C is optional, so the optional
bias of the op needs no second body. The row of each stored entry comes from a
histogram of row_ptr (ScatterElements-add of ones, then CumSum), never from an
nnz x rows comparison. onnxruntime inlines these functions and folds the rebuilt W.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir

from sparsecc.ops.schema import DOMAIN

# X[..., in] -> X2[-1, in]; Y2 -> Y[..., out]. Expects `shape` ([out, in], int64) to be defined.
_LINEAR_TAIL = """
    in_dim = Slice(shape, one_1d, two_1d)
    out_dim = Slice(shape, zero_1d, one_1d)
    flat_shape = Concat<axis=0>(minus_one_1d, in_dim)
    x2 = Reshape(X, flat_shape)
    y2 = Gemm<transB=1>(x2, w, bias)
    lead = Shape<end=-1>(X)
    y_shape = Concat<axis=0>(lead, out_dim)
    Y = Reshape(y2, y_shape)
"""

_COMMON = """
    zero_1d = Constant<value_ints=[0]>()
    one_1d = Constant<value_ints=[1]>()
    two_1d = Constant<value_ints=[2]>()
    minus_one_1d = Constant<value_ints=[-1]>()
    shape = Constant<value_ints: ints = @shape>()
"""

# rowid[k] = number of r in 1..rows-1 with row_ptr[r] <= k, for k in [0, nnz). Needs `ptr`, `nnz_1d`.
_ROW_OF_ENTRY = """
    ptr64 = Cast<to=7>(ptr)
    inner_ptr = Slice(ptr64, one_1d, minus_one_1d)
    hist_len = Add(nnz_1d, one_1d)
    hist0 = ConstantOfShape<value=int64[1] {0}>(hist_len)
    ones = Shape(inner_ptr)
    ones_v = ConstantOfShape<value=int64[1] {1}>(ones)
    hist = ScatterElements<axis=0, reduction="add">(hist0, inner_ptr, ones_v)
    cum = CumSum(hist, zero_1d)
    rowid = Slice(cum, zero_1d, nnz_1d)
"""

BODIES = {
    "BsrMatMul": (
        "<shape, block>",
        "(X, values, col_indices, ptr, bias) => (Y)",
        _COMMON
        + """
    block = Constant<value_ints: ints = @block>()
    grid = Div(shape, block)
    nnz_1d = Shape<end=1>(values)
"""
        + _ROW_OF_ENTRY
        + """
    rowid2 = Unsqueeze(rowid, one_1d)
    col64 = Cast<to=7>(col_indices)
    col2 = Unsqueeze(col64, one_1d)
    where = Concat<axis=1>(rowid2, col2)
    tiles_shape = Concat<axis=0>(grid, block)
    tiles0 = ConstantOfShape<value=float[1] {0}>(tiles_shape)
    tiles = ScatterND(tiles0, where, values)
    rows_first = Transpose<perm=[0, 2, 1, 3]>(tiles)
    w = Reshape(rows_first, shape)
"""
        + _LINEAR_TAIL,
    ),
    "NmMatMul": (
        "<shape, n, m>",
        "(X, values, indices, bias) => (Y)",
        _COMMON
        + """
    n = Constant<value_int: int = @n>()
    m = Constant<value_int: int = @m>()
    k_1d = Shape<start=1, end=2>(values)
    k = Squeeze(k_1d, zero_1d)
    zero = Constant<value_int=0>()
    step = Constant<value_int=1>()
    j = Range(zero, k, step)
    group = Div(j, n)
    base = Mul(group, m)
    pos = Cast<to=7>(indices)
    cols = Add(pos, base)
    w0 = ConstantOfShape<value=float[1] {0}>(shape)
    w = ScatterElements<axis=1>(w0, cols, values)
"""
        + _LINEAR_TAIL,
    ),
    "CsrMatMul": (
        "<shape>",
        "(X, values, col_indices, ptr, bias) => (Y)",
        _COMMON
        + """
    nnz_1d = Shape(values)
"""
        + _ROW_OF_ENTRY
        + """
    rowid2 = Unsqueeze(rowid, one_1d)
    col64 = Cast<to=7>(col_indices)
    col2 = Unsqueeze(col64, one_1d)
    where = Concat<axis=1>(rowid2, col2)
    w0 = ConstantOfShape<value=float[1] {0}>(shape)
    w = ScatterND(w0, where, values)
"""
        + _LINEAR_TAIL,
    ),
}


def reference_function(op_type: str, opset: int) -> ir.Function:
    """The model-local function for `op_type`, written against default-domain `opset` (>= 18)."""
    attributes, signature, body = BODIES[op_type]
    text = (
        f'<domain: "{DOMAIN}", opset_import: ["" : {opset}]>\n{op_type} {attributes} {signature}\n{{{body}}}'
    )
    proto = onnx.parser.parse_function(text)
    return ir.serde.deserialize_function(proto)
