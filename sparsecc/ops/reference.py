"""Reference bodies of the sparse ops, in standard ONNX, as model-local functions.

Each op's body (`SparseOp.body`) rebuilds the dense W[out, in] from its inputs in O(nnz)
memory; the shared head and tail here flatten X, apply `Gemm(X2, W, bias, transB=1)` and
restore X's leading dimensions. Gemm's C is optional, so the op's optional bias needs no
second body. onnxruntime inlines these functions and folds the rebuilt W at session start.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir

from sparsecc.ops.base import DOMAIN, SparseOp

MIN_OPSET = 18  # ScatterElements reduction="add", Shape start/end

# Constants every body may use; `shape` is the op's [out, in] attribute as int64.
HEAD = """
    zero_1d = Constant<value_ints=[0]>()
    one_1d = Constant<value_ints=[1]>()
    two_1d = Constant<value_ints=[2]>()
    minus_one_1d = Constant<value_ints=[-1]>()
    shape = Constant<value_ints: ints = @shape>()
"""

# X[..., in] -> X2[-1, in]; Y2 -> Y[..., out]. Expects `w` = W[out, in].
TAIL = """
    in_dim = Slice(shape, one_1d, two_1d)
    out_dim = Slice(shape, zero_1d, one_1d)
    flat_shape = Concat<axis=0>(minus_one_1d, in_dim)
    x2 = Reshape(X, flat_shape)
    y2 = Gemm<transB=1>(x2, w, bias)
    lead = Shape<end=-1>(X)
    y_shape = Concat<axis=0>(lead, out_dim)
    Y = Reshape(y2, y_shape)
"""

# rowid[k] = number of r in 1..rows-1 with row_ptr[r] <= k, for k in [0, nnz): the row of each
# stored entry, from a histogram of row_ptr (never an nnz x rows comparison). Needs `nnz_1d`.
ROW_OF_ENTRY = """
    ptr64 = Cast<to=7>(row_ptr)
    inner_ptr = Slice(ptr64, one_1d, minus_one_1d)
    hist_len = Add(nnz_1d, one_1d)
    hist0 = ConstantOfShape<value=int64[1] {0}>(hist_len)
    ones = Shape(inner_ptr)
    ones_v = ConstantOfShape<value=int64[1] {1}>(ones)
    hist = ScatterElements<axis=0, reduction="add">(hist0, inner_ptr, ones_v)
    cum = CumSum(hist, zero_1d)
    rowid = Slice(cum, zero_1d, nnz_1d)
"""


# The Conv forms: W[out, C/group * kh * kw] -> [out, C/group, kh, kw], then a standard Conv.
CONV_TAIL = """
    out_dim = Slice(shape, zero_1d, one_1d)
    kernel = Constant<value_ints: ints = @kernel_shape>()
    w_shape = Concat<axis=0>(out_dim, minus_one_1d, kernel)
    w4 = Reshape(w, w_shape)
    Y = Conv<strides: ints = @strides, pads: ints = @pads, dilations: ints = @dilations, group: int = @group>(X, w4, bias)
"""


def reference_function(op: type[SparseOp], opset: int) -> ir.Function:
    """The model-local function of `op`, written against default-domain `opset` (>= 18)."""
    attributes = ", ".join(attribute.name for attribute in op.attributes)
    signature = f"(X, {', '.join(op.inputs)}, bias) => (Y)"
    text = (
        f'<domain: "{DOMAIN}", opset_import: ["" : {opset}]>\n'
        f"{op.op_type} <{attributes}> {signature}\n{{{HEAD}{op.body}{CONV_TAIL if op.conv else TAIL}}}"
    )
    return ir.serde.deserialize_function(onnx.parser.parse_function(text))
