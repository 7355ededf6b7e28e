"""`sparsecc::PatternAttention`: attention of one group of heads under a static pattern.

    Y = softmax(Q K^T * scale + log M) V,   Q, K, V, Y: [B, H, N, d] float32

M is the pattern's 0/1 mask over [N, N] (`sparsity/attention_patterns.py`): the mode (full,
diag, mdiag, vstripe, blocks) and the token layout (frames x frame_tokens latent tokens,
`text` tokens first or last; text rows and columns are always kept) are attributes, so a
backend knows the pattern statically. Unlike the linear ops (`base.SparseOp`) it holds no
weight: it is defined here once (attributes, node building and reading, verifier, reference
body) and dispatched by type from `ops/__init__.py`.

The reference body builds M from the attributes with index arithmetic (Range, Div, Mod), one
term per mode selected by comparing the `mode` string, and runs dense attention with a
0 / -inf bias. Every node carries every attribute (`make_node` writes the unused ones with
neutral values), so the body never reads a missing attribute.
"""

from __future__ import annotations

import math

import onnx
import onnx_ir as ir

from sparsecc.errors import VerificationError
from sparsecc.ops.base import DOMAIN, DOMAIN_VERSION
from sparsecc.sparsity.attention_patterns import MODES, HeadPattern, TokenLayout

OP_TYPE = "PatternAttention"
INPUTS = ("Q", "K", "V")
INT_ATTRIBUTES = ("frames", "frame_tokens", "text", "text_first", "window", "radius")
INTS_ATTRIBUTES = ("stripes", "block_size", "block_ptr", "block_cols")
MIN_OPSET = 18  # ReduceSum with axes as an input, ScatterND

BODY = """
    mode_t = Constant<value_string: string = @mode>()
    frames = Constant<value_int: int = @frames>()
    ft = Constant<value_int: int = @frame_tokens>()
    text = Constant<value_int: int = @text>()
    text_first = Constant<value_int: int = @text_first>()
    window = Constant<value_int: int = @window>()
    radius = Constant<value_int: int = @radius>()
    stripes = Constant<value_ints: ints = @stripes>()
    block_size = Constant<value_ints: ints = @block_size>()
    block_ptr = Constant<value_ints: ints = @block_ptr>()
    block_cols = Constant<value_ints: ints = @block_cols>()
    scale = Constant<value_float: float = @scale>()
    zero = Constant<value_int=0>()
    one = Constant<value_int=1>()
    zero_1d = Constant<value_ints=[0]>()
    one_1d = Constant<value_ints=[1]>()
    two_1d = Constant<value_ints=[2]>()
    minus_one_1d = Constant<value_ints=[-1]>()
    latent = Mul(frames, ft)
    n = Add(latent, text)
    pos = Range(zero, n, one)
    start = Mul(text, text_first)
    rel = Sub(pos, start)
    before = Less(rel, zero)
    after = GreaterOrEqual(rel, latent)
    is_text = Or(before, after)
    li = Where(is_text, zero, rel)
    frame = Div(li, ft)
    spatial = Mod(li, ft)
    frame_q = Unsqueeze(frame, minus_one_1d)
    frame_k = Unsqueeze(frame, zero_1d)
    frame_diff = Sub(frame_q, frame_k)
    frame_gap = Abs(frame_diff)
    diag = LessOrEqual(frame_gap, window)
    spatial_q = Unsqueeze(spatial, minus_one_1d)
    spatial_k = Unsqueeze(spatial, zero_1d)
    spatial_diff = Sub(spatial_q, spatial_k)
    spatial_gap = Abs(spatial_diff)
    mdiag = LessOrEqual(spatial_gap, radius)
    li_col = Unsqueeze(li, minus_one_1d)
    stripes_row = Unsqueeze(stripes, zero_1d)
    hit = Equal(li_col, stripes_row)
    hits = Cast<to=7>(hit)
    hit_count = ReduceSum<keepdims=0>(hits, one_1d)
    is_stripe = Greater(hit_count, zero)
    latent_col = Not(is_text)
    stripe_col = And(is_stripe, latent_col)
    vstripe = Unsqueeze(stripe_col, zero_1d)
    bq = Slice(block_size, zero_1d, one_1d)
    bk = Slice(block_size, one_1d, two_1d)
    nnz_1d = Shape(block_cols)
    ptr_len = Shape(block_ptr)
    rows_1d = Sub(ptr_len, one_1d)
    inner_ptr = Slice(block_ptr, one_1d, minus_one_1d)
    hist_len = Add(nnz_1d, one_1d)
    hist0 = ConstantOfShape<value=int64[1] {0}>(hist_len)
    inner_len = Shape(inner_ptr)
    ones_v = ConstantOfShape<value=int64[1] {1}>(inner_len)
    hist = ScatterElements<axis=0, reduction="add">(hist0, inner_ptr, ones_v)
    cum = CumSum(hist, zero_1d)
    rowid = Slice(cum, zero_1d, nnz_1d)
    n_1d = Unsqueeze(n, zero_1d)
    n_up = Add(n_1d, bk)
    n_up1 = Sub(n_up, one_1d)
    cols_1d = Div(n_up1, bk)
    grid_shape = Concat<axis=0>(rows_1d, cols_1d)
    grid0 = ConstantOfShape<value=int64[1] {0}>(grid_shape)
    rowid_2d = Unsqueeze(rowid, one_1d)
    cols_2d = Unsqueeze(block_cols, one_1d)
    entry = Concat<axis=1>(rowid_2d, cols_2d)
    trues = ConstantOfShape<value=int64[1] {1}>(nnz_1d)
    grid = ScatterND(grid0, entry, trues)
    qb = Div(pos, bq)
    kb = Div(pos, bk)
    block_rows = Gather<axis=0>(grid, qb)
    block_hits = Gather<axis=1>(block_rows, kb)
    blocks = Cast<to=9>(block_hits)
    s_full = Constant<value_string="full">()
    s_diag = Constant<value_string="diag">()
    s_mdiag = Constant<value_string="mdiag">()
    s_vstripe = Constant<value_string="vstripe">()
    is_full = Equal(mode_t, s_full)
    is_diag = Equal(mode_t, s_diag)
    is_mdiag = Equal(mode_t, s_mdiag)
    is_vstripe = Equal(mode_t, s_vstripe)
    s_blocks = Constant<value_string="blocks">()
    is_blocks = Equal(mode_t, s_blocks)
    t_diag = And(is_diag, diag)
    t_mdiag = And(is_mdiag, mdiag)
    t_vstripe = And(is_vstripe, vstripe)
    t_blocks = And(is_blocks, blocks)
    c_1 = Or(is_full, t_diag)
    c_2 = Or(c_1, t_mdiag)
    c_3 = Or(c_2, t_vstripe)
    chosen = Or(c_3, t_blocks)
    text_q = Unsqueeze(is_text, minus_one_1d)
    text_k = Unsqueeze(is_text, zero_1d)
    text_any = Or(text_q, text_k)
    keep = Or(chosen, text_any)
    f_zero = Constant<value_float=0.0>()
    neg_inf = Log(f_zero)
    bias = Where(keep, f_zero, neg_inf)
    k_t = Transpose<perm=[0, 1, 3, 2]>(K)
    qk = MatMul(Q, k_t)
    scaled = Mul(qk, scale)
    scores = Add(scaled, bias)
    probs = Softmax<axis=-1>(scores)
    Y = MatMul(probs, V)
"""


def _int(node: ir.Node, name: str) -> int:
    return node.attributes.get_int(name)


def make_node(
    q: ir.Value,
    k: ir.Value,
    v: ir.Value,
    pattern: HeadPattern,
    layout: TokenLayout,
    *,
    head_dim: int,
    scale: float | None = None,
    name: str = "",
) -> ir.Node:
    """A PatternAttention node over q, k, v ([B, H, N, d]); not inserted into any graph."""
    if pattern.mode not in MODES:
        raise ValueError(f"PatternAttention computes {', '.join(MODES)}, not {pattern.mode!r}")
    blocks = pattern.mode == "blocks"
    attributes = [
        ir.AttrString("mode", pattern.mode),
        ir.AttrInt64("frames", layout.frames),
        ir.AttrInt64("frame_tokens", layout.frame_tokens),
        ir.AttrInt64("text", layout.text),
        ir.AttrInt64("text_first", int(layout.text_first)),
        ir.AttrInt64("window", pattern.window),
        ir.AttrInt64("radius", pattern.radius),
        ir.AttrInt64s("stripes", list(pattern.stripes)),
        # one block covering everything where blocks are unused, so the body's grid is valid
        ir.AttrInt64s("block_size", list(pattern.block_size if blocks else (layout.tokens, layout.tokens))),
        ir.AttrInt64s("block_ptr", list(pattern.block_ptr if blocks else (0, 1))),
        ir.AttrInt64s("block_cols", list(pattern.block_cols if blocks else (0,))),
        ir.AttrFloat32("scale", float(1.0 / math.sqrt(head_dim) if scale is None else scale)),
    ]
    node = ir.Node(DOMAIN, OP_TYPE, [q, k, v], attributes, name=name or None)
    out = node.outputs[0]
    out.type = ir.TensorType(ir.DataType.FLOAT)
    if q.shape is not None and v.shape is not None:
        out.shape = ir.Shape([*list(q.shape)[:3], v.shape[3]])
    return node


def pattern_of(node: ir.Node) -> tuple[HeadPattern, TokenLayout, float]:
    """The pattern, token layout and softmax scale a node holds."""
    layout = TokenLayout(
        _int(node, "frames"), _int(node, "frame_tokens"), _int(node, "text"), bool(_int(node, "text_first"))
    )
    ints = {name: tuple(node.attributes.get_ints(name)) for name in INTS_ATTRIBUTES}
    pattern = HeadPattern(
        node.attributes.get_string("mode"),
        window=_int(node, "window"),
        radius=_int(node, "radius"),
        **ints,
    )
    return pattern, layout, node.attributes.get_float("scale")


def verify(node: ir.Node) -> None:
    """Raise VerificationError if the node breaks PatternAttention's contract."""

    def require(condition, message: str) -> None:
        if not condition:
            raise VerificationError(f"{OP_TYPE} node '{node.name}': {message}")

    require(len(node.inputs) == 3 and all(v is not None for v in node.inputs), "expects inputs Q, K, V")
    kinds = {
        **{n: ir.AttributeType.INT for n in INT_ATTRIBUTES},
        **{n: ir.AttributeType.INTS for n in INTS_ATTRIBUTES},
        "mode": ir.AttributeType.STRING,
        "scale": ir.AttributeType.FLOAT,
    }
    for name, kind in kinds.items():
        attr = node.attributes.get(name)
        require(attr is not None and attr.type == kind, f"attribute {name} must be {kind.name.lower()}")
    require(node.attributes.get_string("mode") in MODES, f"mode must be one of {', '.join(MODES)}")
    require(len(node.attributes.get_ints("block_size")) == 2, "block_size must be 2 ints")
    try:
        pattern, layout, _ = pattern_of(node)
    except Exception as error:  # a SpecError from the layout's own checks
        raise VerificationError(f"{OP_TYPE} node '{node.name}': {error}") from None
    for value in node.inputs:
        require(value.dtype in (None, ir.DataType.FLOAT), f"{value.name} must be float32, got {value.dtype}")
        shape = value.shape
        require(shape is None or shape.rank() == 4, f"{value.name} must be [B, H, N, d]")
        if shape is not None and isinstance(shape[2], int):
            require(
                shape[2] == layout.tokens, f"{value.name} has {shape[2]} tokens, the layout {layout.tokens}"
            )
    problem = pattern.problem(layout)
    require(problem is None, str(problem))
    if pattern.mode != "blocks":
        require(
            tuple(pattern.block_size) == (layout.tokens, layout.tokens)
            and pattern.block_ptr == (0, 1)
            and pattern.block_cols == (0,),
            "block_size/block_ptr/block_cols must be their neutral values outside mode 'blocks'",
        )
    require(_int(node, "text_first") in (0, 1), "text_first must be 0 or 1")
    shapes = [v.shape for v in node.inputs]
    if all(s is not None and all(isinstance(d, int) for d in s) for s in shapes):
        (bq, hq, _, dq), (bk, hk, _, dk), (bv, hv, _, _) = (tuple(s) for s in shapes)
        require(bq == bk == bv and hq == hk == hv, "Q, K and V must have the same batch and heads")
        require(dq == dk, "Q and K must have the same head size")


def reference_function(opset: int) -> ir.Function:
    """The model-local function of PatternAttention, against default-domain `opset` (>= 18)."""
    attributes = ", ".join(["mode", *INT_ATTRIBUTES, *INTS_ATTRIBUTES, "scale"])
    text = (
        f'<domain: "{DOMAIN}", opset_import: ["" : {opset}]>\n'
        f"{OP_TYPE} <{attributes}> ({', '.join(INPUTS)}) => (Y)\n{{{BODY}}}"
    )
    return ir.serde.deserialize_function(onnx.parser.parse_function(text))


def attach_function(model: ir.Model) -> None:
    """Give `model` PatternAttention's body when it uses the op, and drop it when it does not."""
    key = (DOMAIN, OP_TYPE, "")
    used = any(node.domain == DOMAIN and node.op_type == OP_TYPE for node in model.graph)
    opset = max(model.opset_imports.get("", MIN_OPSET), MIN_OPSET)
    if used:
        function = model.functions.get(key)
        if function is None or function.opset_imports.get("") != opset:
            model.functions[key] = reference_function(opset)
        model.opset_imports[DOMAIN] = DOMAIN_VERSION
        model.opset_imports.setdefault("", opset)
    else:
        model.functions.pop(key, None)
