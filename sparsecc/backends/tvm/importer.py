"""ONNX -> Relax through TVM's own ONNX importer, extended (not edited) for our ops.

Lowering only: the kernel of every linear layer was chosen (and tuned) before, by node
name (`selection.py`). The extension renames, in a copy of the graph, the nodes we
convert ourselves to private op types, so TVM's unsupported-op check and dispatch (which
look at the op type only, not the domain) never confuse them with its own:
  a linear layer with a chosen kernel (sparse op, MatMul by a constant W) -> call_tir of it
  Attention (opset 23, standard domain)                                   -> attention.py
  sparsecc::PatternAttention (a group of heads under a static pattern)    -> pattern_attention.py
Everything TVM cannot import is reported at once, in one line.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings

import onnx

from sparsecc.backends.tvm.attention import lower_attention
from sparsecc.backends.tvm.kernels import Kernel
from sparsecc.backends.tvm.kernels.blocked_layout_cpu import (
    PoolGeometry,
    max_pool_blocked_func,
    to_blocked_func,
    to_planar_func,
)
from sparsecc.backends.tvm.kernels.conv_blocked_cpu import blocked_shape
from sparsecc.backends.tvm.layers import ConvCall
from sparsecc.backends.tvm.pattern_attention import (
    lower_pattern_attention,
    pattern_calls,
    pattern_node_name,
)
from sparsecc.backends.tvm.rotary import lower_rotary
from sparsecc.errors import UnsupportedOpError

logger = logging.getLogger(__name__)

PRIVATE = "sparsecc__"  # prefix of the op types only our converters handle
LINEAR = PRIVATE + "Linear"
ATTENTION = PRIVATE + "Attention"
PATTERN_ATTENTION = PRIVATE + "PatternAttention"
CONV = PRIVATE + "Conv"
PASS = PRIVATE + "Pass"  # a node whose work a kernel before it did: passes Y on, in its layout


def _fuse_convs(model: onnx.ModelProto, convs: dict[str, ConvCall]) -> None:
    """Conv nodes with a chosen kernel -> CONV (X, [residual]); the Add / Relu / Clip nodes their
    kernel applies pass Y on (PASS). A Conv adding a residual moves down to its Add, where
    the residual is sure to be computed (the Conv's Y feeds only that Add)."""
    nodes = list(model.graph.node)
    by_name = {node.name: node for node in nodes}
    for name, call in convs.items():
        residual, absorbed = call.residual, call.absorbed
        node = by_name[name]
        y = node.output[0]
        node.op_type, node.domain = CONV, ""
        del node.input[1:]
        del node.attribute[:]
        if residual is not None:
            node.input.append(residual)
        for fused_name in absorbed:
            fused = by_name[fused_name]
            fused.op_type, fused.domain = PASS, ""
            del fused.input[:]
            del fused.attribute[:]
            fused.input.append(y)
            y = fused.output[0]
        if residual is not None:
            nodes.remove(node)
            nodes.insert(nodes.index(by_name[absorbed[0]]), node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def mark_private_ops(
    model: onnx.ModelProto,
    linear_nodes: set[str],
    bias_adds: set[str] = frozenset(),
    convs: dict | None = None,
    owned: bool = False,
) -> onnx.ModelProto:
    """A copy whose chosen linear layers, Convs and standard Attention nodes carry private op types,
    and whose `bias_adds` (a bias Add after a linear whose kernel adds the bias) pass Y through.
    The initializers only kernels read (their kernels hold them, packed) are left out.

    `convs`: Conv node name -> how its kernel is called (`layers.ConvCall`). `owned`: the caller
    gives `model` up, so it is changed in place instead (a copy would hold every weight twice)."""
    if not owned:
        model = onnx.ModelProto.FromString(model.SerializeToString())
    del model.functions[:]  # sparse-op reference bodies: our kernels replace them
    _fuse_convs(model, convs or {})
    produced_by = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.name in bias_adds:
            y = next(i for i in node.input if i in produced_by and produced_by[i].name in linear_nodes)
            node.op_type, node.domain = "Identity", ""
            del node.input[:]
            node.input.append(y)
            continue
        if node.op_type == "ConstantOfShape" and node.domain in ("", "ai.onnx"):
            _scalar_fill_value(node)
        if node.op_type == CONV:
            continue
        if node.name in linear_nodes:
            node.op_type, node.domain = LINEAR, ""
            del node.input[1:]  # X only: the kernel holds W and the bias
        elif node.domain in ("", "ai.onnx") and node.op_type == "Attention":
            node.op_type = ATTENTION
        elif node.domain == "sparsecc" and node.op_type == "PatternAttention":
            # read before (`pattern_calls`): TVM's attribute parser refuses empty lists
            node.op_type, node.domain = PATTERN_ATTENTION, ""
            node.name = pattern_node_name(node)
            del node.attribute[:]
        elif node.domain == "sparsecc":
            raise UnsupportedOpError(
                f"sparse node '{node.name}' ({node.op_type}) has no kernel; was it verified?"
            )
    _drop_unread_initializers(model.graph)
    return model


def _drop_unread_initializers(graph: onnx.GraphProto) -> None:
    """Remove the initializers no node (nor subgraph) reads and no output names: TVM's importer
    would turn each into a constant that only dead code uses."""
    read = {name for node in _all_nodes(graph) for name in node.input} | {o.name for o in graph.output}
    unread = {init.name for init in graph.initializer} - read
    if not unread:
        return
    # deleted where they stand: rebuilding the field would copy every kept tensor
    for index in reversed(range(len(graph.initializer))):
        if graph.initializer[index].name in unread:
            del graph.initializer[index]
    for index in reversed(range(len(graph.input))):
        if graph.input[index].name in unread:
            del graph.input[index]


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attribute.g)
            for sub in attribute.graphs:
                yield from _all_nodes(sub)


def _scalar_fill_value(node: onnx.NodeProto) -> None:
    """ConstantOfShape's one-element `value` as a 0-d tensor: TVM broadcasts a 1-element 1-D value
    and fails when the requested shape is empty (a scalar), as TorchScript exports of BERT ask."""
    for attribute in node.attribute:
        if attribute.name == "value" and list(attribute.t.dims) == [1]:
            del attribute.t.dims[:]


def _importer_class():
    from tvm.relax.frontend.onnx import onnx_frontend

    class SparseccImporter(onnx_frontend.ONNXGraphImporter):
        """TVM's ONNX graph importer plus converters for sparsecc's ops."""

        def __init__(
            self,
            shape_dict,
            dtype_dict,
            kernels: dict[str, Kernel],
            target,
            tuner=None,
            convs=None,
            patterns=None,
            release=False,
        ):
            super().__init__(shape_dict, dtype_dict)
            self.release = release  # drop each kernel's arrays once Relax constants hold them
            self.patterns = patterns or {}  # PatternAttention node name -> pattern_attention.PatternCall
            self.pattern_kernels: dict[str, str] = {}  # PatternAttention node name -> the kernel that runs it
            self.convs = convs or {}  # Conv node name -> layers.ConvCall
            self.kernels = kernels  # node name -> the kernel chosen for it
            self.target = target  # TargetInfo, or None: no target-specific kernels (attention decomposed)
            self.tuner = tuner  # tuning.KernelTuner when tune=N: it picks attention's tiles
            cpu = target is not None and target.family != "cuda"
            self.layouts = BlockedValues(self.bb, target.lanes if cpu else 1, cpu)

        def _check_for_unsupported_ops(self, graph):
            known = onnx_frontend._get_convert_map()
            unsupported = sorted(
                {
                    f"{node.domain}::{node.op_type}" if node.domain else node.op_type
                    for node in graph.node
                    if not node.op_type.startswith(PRIVATE)
                    and node.op_type not in known
                    and node.op_type not in ("If", "Constant", "RotaryEmbedding")
                }
            )
            if unsupported:
                raise UnsupportedOpError(
                    f"the TVM backend cannot compile these ops: {', '.join(unsupported)}; "
                    "use `sparsecc sparsify` (ONNX out) for this model, or replace those ops"
                )

        def _construct_nodes(self, graph):
            super()._construct_nodes(graph)
            for output in graph.output:  # the graph's outputs in NCHW
                if output.name in self._nodes:
                    self._nodes[output.name] = self.layouts.planar(self._nodes[output.name])

        def _convert_operator(self, op_name, inputs, attrs, opset):
            if op_name == PASS:
                return inputs[0]
            if op_name == CONV:
                return self._convert_conv(inputs, attrs["tvm_custom"]["name"])
            if op_name == "MaxPool" and (pooled := self.layouts.max_pool(inputs[0], attrs)) is not None:
                return pooled
            for index, value in enumerate(inputs):  # every other op reads NCHW
                inputs[index] = self.layouts.planar(value)
            if op_name == "Gelu" and attrs.get("approximate", b"none") in (b"none", "none"):
                return self.bb.normalize(exact_gelu(inputs[0]))
            if op_name == "RMSNormalization" and (normed := rms_norm(inputs, attrs)) is not None:
                return self.bb.normalize(normed)
            if op_name == "LayerNormalization" and (normed := one_row_layer_norm(inputs, attrs)) is not None:
                from tvm import relax

                unused = relax.const(0, "float32")  # Mean and InvStdDev, as TVM's converter gives them
                return relax.Tuple([self.bb.normalize(normed), unused, unused])
            if op_name == "Pow" and (power := integer_power(*inputs)) is not None:
                return self.bb.normalize(power)
            if op_name == "RotaryEmbedding":
                return self.bb.normalize(lower_rotary(self.bb, inputs, attrs))
            if not op_name.startswith(PRIVATE):
                return self._convert_standard(op_name, inputs, attrs, opset)
            if op_name == PATTERN_ATTENTION:
                name = attrs["tvm_custom"]["name"]
                out, label = lower_pattern_attention(self.bb, inputs, self.patterns[name], self.target, name)
                self.pattern_kernels[name] = label
                logger.info("PatternAttention '%s' runs %s", name, label)
                return self.bb.normalize(out)
            if op_name == ATTENTION:
                choose = self.tuner.attention_tiles if self.tuner is not None else None
                return self.bb.normalize(lower_attention(self.bb, inputs, attrs, self.target, choose))
            return self.bb.normalize(self._convert_linear(inputs[0], attrs["tvm_custom"]["name"]))

        def _convert_standard(self, op_name, inputs, attrs, opset):
            """TVM's converter for a standard op; where it fails (or would build wrong code), one line
            naming the op instead of TVM's traceback."""
            if op_name == "Expand" and self._is_graph_input(inputs[1]):
                # a shape known at run time only: the import or the build fails (TVM 0.24)
                raise UnsupportedOpError(
                    f"the TVM backend cannot compile Expand to a shape given at run time (input "
                    f"'{inputs[1].name}'); use `sparsecc sparsify` (ONNX out) for this model"
                )
            if op_name == "Reshape" and (shape := _scalar_to_shape(inputs)) is not None:
                return shape
            if op_name == "Range":  # a length known now (the one new token): a static range
                inputs = [_static_scalar(value) for value in inputs]
            if op_name in ("Add", "Sub", "Mul", "Div") and _mixes_scalar_and_array(inputs):
                inputs = _shape_values_as_tensors(self.bb, inputs)  # TVM would drop the array's rank
            if op_name == "SequenceInsert" and len(inputs) == 3:
                inputs[2] = _insert_position(inputs[0], inputs[2])
            try:
                try:
                    return super()._convert_operator(op_name, inputs, attrs, opset)
                except Exception:
                    tensors = _shape_values_as_tensors(self.bb, inputs)
                    if tensors is None:
                        raise
                    return super()._convert_operator(op_name, tensors, attrs, opset)
            except Exception as error:  # TVM's converters raise anything (ValueError, TypeError, asserts)
                raise UnsupportedOpError(
                    f"TVM's ONNX importer cannot convert {op_name} here: {_first_line(error)}; "
                    "use `sparsecc sparsify` (ONNX out) for this model"
                ) from error

        def _is_graph_input(self, value) -> bool:
            return any(value is not None and value.same_as(var) for var in self._inputs.values())

        def _convert_linear(self, x, name: str):
            from tvm import relax

            kernel = self.kernels[name]
            shape = [int(d) for d in x.ty.shape]
            m, inp = math.prod(shape[:-1]), shape[-1]
            out = kernel.constants[-1].shape[0]  # every kernel's last constant is the bias [out]
            if kernel.m != m:
                raise AssertionError(
                    f"the kernel for '{name}' was built for {kernel.m} tokens, the graph has {m}"
                )
            func = self.bb.add_func(kernel.prim_func.without_attr("global_symbol"), _func_name(name, kernel))
            x2 = self.bb.emit(relax.op.reshape(x, (m, inp)))
            constants = [relax.const(c) for c in kernel.constants]
            if self.release:
                kernel.constants = []
            y2 = self.bb.emit(
                relax.call_tir(func, [x2, *constants], out_ty=relax.TensorType((m, out), "float32"))
            )
            return relax.op.reshape(y2, (*shape[:-1], out))

        def _convert_conv(self, inputs, name: str):
            import numpy as np
            from tvm import relax

            kernel, call = self.kernels[name], self.convs[name]
            layouts = self.layouts
            x = layouts.blocked(inputs[0]) if call.blocked_input else layouts.planar(inputs[0])
            residual = inputs[1] if len(inputs) > 1 and inputs[1] is not None else None
            if residual is not None:
                residual = layouts.blocked(residual) if call.blocked_output else layouts.planar(residual)
            func = self.bb.add_func(kernel.prim_func.without_attr("global_symbol"), _func_name(name, kernel))
            if call.out_shape[0] != int(x.ty.shape[0]):
                raise AssertionError(
                    f"the kernel for '{name}' was built for batch {call.out_shape[0]}, not {x.ty.shape[0]}"
                )
            constants = [relax.const(c) for c in kernel.constants]
            if self.release:
                kernel.constants = []
            extra = residual if residual is not None else relax.const(np.zeros(1, np.float32))
            out_shape = (
                blocked_shape(call.out_shape, layouts.lanes) if call.blocked_output else call.out_shape
            )
            y = self.bb.emit(
                relax.call_tir(
                    func,
                    [x, *constants, extra],
                    out_ty=relax.TensorType(list(out_shape), "float32"),
                )
            )
            if call.blocked_output:
                layouts.mark(y, call.out_shape)
            return y

    return SparseccImporter


class BlockedValues:
    """The Relax values the graph holds channel-blocked ([N, C/L, H, W, L], `layouts.py`), and the
    conversions between layouts, each emitted once per value."""

    def __init__(self, bb, lanes: int, cpu: bool):
        self.bb, self.lanes = bb, lanes
        self.cpu = cpu  # the pool kernel is a CPU kernel
        self._nchw: dict = {}  # blocked Var -> its NCHW shape
        self._planar: dict = {}  # blocked Var -> its NCHW copy
        self._blocked: dict = {}  # NCHW value -> its blocked copy

    def _add(self, func, name: str):
        return self.bb.add_func(func.without_attr("global_symbol"), name)

    def mark(self, var, nchw_shape) -> None:
        self._nchw[var] = tuple(int(d) for d in nchw_shape)

    def is_blocked(self, value) -> bool:
        from tvm import relax

        return isinstance(value, relax.Var) and value in self._nchw

    def planar(self, value):
        """`value` in NCHW (itself unless it is blocked)."""
        from tvm import relax

        if not self.is_blocked(value):
            return value
        if value not in self._planar:
            func = self._add(to_planar_func(self._nchw[value], self.lanes), "to_planar")
            self._planar[value] = self.bb.emit(
                relax.call_tir(func, [value], out_ty=relax.TensorType(list(self._nchw[value]), "float32"))
            )
        return self._planar[value]

    def blocked(self, value):
        """`value` (a 4-D NCHW tensor, or blocked already) blocked."""
        from tvm import relax

        if self.is_blocked(value):
            return value
        key = value if isinstance(value, relax.Var) else None
        if key is not None and key in self._blocked:
            return self._blocked[key]
        shape = tuple(int(d) for d in value.ty.shape)
        func = self._add(to_blocked_func(shape, self.lanes), "to_blocked")
        var = self.bb.emit(
            relax.call_tir(
                func, [value], out_ty=relax.TensorType(list(blocked_shape(shape, self.lanes)), "float32")
            )
        )
        self.mark(var, shape)
        if key is not None:
            self._blocked[key] = var
        return var

    def max_pool(self, value, attrs: dict):
        """MaxPool with our kernel: vectorised over channels when `value` is blocked, one channel
        per lane otherwise (NCHW viewed as [N, C, H, W, 1]); None when the kernel does not take
        these attributes, or the value is not a static 4-D float tensor (TVM's MaxPool then)."""
        from tvm import relax, tirx

        attributes = {k: v for k, v in attrs.items() if k != "tvm_custom"}
        if not self.cpu:
            return None
        if self.is_blocked(value):
            shape, lanes = self._nchw[value], self.lanes
        else:
            if not isinstance(value, relax.Expr) or not isinstance(value.ty, relax.TensorType):
                return None
            if value.ty.dtype != "float32" or value.ty.ndim != 4 or value.ty.shape is None:
                return None
            if not all(isinstance(d, tirx.IntImm) for d in value.ty.shape):
                return None
            shape, lanes = tuple(int(d) for d in value.ty.shape), 1
        geometry = PoolGeometry.of(shape, attributes)
        if geometry is None:
            return None
        out_shape = (geometry.n, geometry.c, geometry.out_h, geometry.out_w)
        func = self._add(max_pool_blocked_func(geometry, lanes), "max_pool")
        x = value if lanes > 1 else self.bb.emit(relax.op.reshape(value, (*shape, 1)))
        var = self.bb.emit(
            relax.call_tir(
                func, [x], out_ty=relax.TensorType(list(blocked_shape(out_shape, lanes)), "float32")
            )
        )
        if lanes == 1:
            return self.bb.emit(relax.op.reshape(var, out_shape))
        self.mark(var, out_shape)
        return var


def _insert_position(sequence, position):
    """SequenceInsert's constant negative position as the index it means (n + p: -1 inserts before
    the last tensor); TVM 0.24 reads -1 as "append"."""
    import tvm
    from tvm import relax

    if not isinstance(position, tvm.ir.GenericConst) or not isinstance(sequence, relax.Tuple):
        return position
    value = int(position.value.numpy())
    return relax.const(len(sequence.fields) + value, str(position.ty.dtype)) if value < 0 else position


def _scalar_to_shape(inputs):
    """Reshape of a symbolic scalar (a length the graph computes, e.g. past + new) to [1] or [-1] as
    the 1-D shape value TVM's shape converters take; None for any other Reshape."""
    import tvm
    from tvm import relax

    data, shape = inputs[0], inputs[1]
    if not tvm.ir.is_prim_expr(data) or not isinstance(shape, tvm.ir.GenericConst):
        return None
    if shape.value.numpy().tolist() not in ([1], [-1]):
        return None
    return relax.ShapeExpr([data])


def _shape_values_as_tensors(bb, inputs):
    """`inputs` with symbolic lengths (shape values, TIR scalars) as int64 tensors computed at run time,
    for the converters that only take tensors there; None when there are none."""
    import tvm
    from tvm import relax

    if not any(isinstance(v, relax.ShapeExpr) or tvm.ir.is_prim_expr(v) for v in inputs if v is not None):
        return None
    converted = []
    for value in inputs:
        if isinstance(value, relax.ShapeExpr):
            value = bb.normalize(relax.op.shape_to_tensor(value))
        elif value is not None and tvm.ir.is_prim_expr(value):
            one = bb.normalize(relax.op.shape_to_tensor(relax.ShapeExpr([value])))
            value = bb.normalize(relax.op.reshape(one, ()))
        converted.append(value)
    return converted


def _mixes_scalar_and_array(inputs) -> bool:
    """A symbolic scalar combined with an array of rank >= 1 (a [1] range plus the cache length)."""
    import tvm

    scalar = any(v is not None and tvm.ir.is_prim_expr(v) for v in inputs)
    ranks = [
        len(v.ty.shape)
        for v in inputs
        if v is not None
        and not tvm.ir.is_prim_expr(v)
        and getattr(getattr(v, "ty", None), "shape", None) is not None
    ]
    return scalar and any(rank >= 1 for rank in ranks)


def _static_scalar(value):
    """A scalar the shape arithmetic folded to a number (a TIR IntImm) as a constant."""
    from tvm import relax, tirx

    if isinstance(value, tirx.IntImm):
        return relax.const(int(value.value), str(value.ty))
    return value


def symbolic_shapes(specs, model) -> dict[str, list]:
    """Input name -> shape for the importer: each -1 of a spec becomes the int64 TIR variable of the
    model's symbolic dimension there (one variable per name, shared by every input that has it)."""
    from tvm import tirx

    model_dims = {value.name: list(value.shape or ()) for value in model.graph.inputs}
    variables: dict[str, object] = {}
    shapes = {}
    for spec in specs:
        shape = []
        for axis, dim in enumerate(spec.shape):
            if dim != -1:
                shape.append(int(dim))
                continue
            dims = model_dims.get(spec.name, [])
            label = getattr(dims[axis], "value", None) if axis < len(dims) else None
            name = "".join(ch if ch.isalnum() else "_" for ch in (label or f"{spec.name}_{axis}"))
            shape.append(variables.setdefault(name, tirx.Var(name, "int64")))
        shapes[spec.name] = shape
    return shapes


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[-1 if text.startswith("Traceback") else 0] if text else type(error).__name__


def _func_name(node_name: str, kernel: Kernel) -> str:
    clean = "".join(ch if ch.isalnum() else "_" for ch in node_name)[-40:]
    return f"{kernel.name}_{clean}"


def integer_power(x, exponent):
    """x ** 1..4 as products, or None: Pow lowers to a scalar powf call per element, and
    GPT-2's GELU (0.044715 x^3) spent 0.65 ms of a 3 ms model in it (2026-12-02, AVX2 EPYC)."""
    import tvm
    from tvm import relax

    if not isinstance(exponent, tvm.ir.GenericConst) or exponent.value.numpy().size != 1:
        return None
    value = float(exponent.value.numpy().reshape(()))
    if value not in (1.0, 2.0, 3.0, 4.0) or str(x.ty.dtype) != "float32":
        return None
    square = relax.op.multiply(x, x)
    return {1.0: x, 2.0: square, 3.0: relax.op.multiply(square, x), 4.0: relax.op.multiply(square, square)}[
        value
    ]


def one_row_layer_norm(inputs, attrs: dict):
    """LayerNormalization (float32) of a single row (a decode step's token) spelled out, or None.

    With no leading axis to parallelise over, TVM's layer_norm falls to a reduction schedule that
    recomputes the statistics per element: 15 ms for one [1, 1, 2048] row, against 30 us for
    [1, 128, 768] (2026-12-03). Spelled out, mean and variance are reductions computed once."""
    from tvm import relax, tirx

    x, scale = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    if str(x.ty.dtype) != "float32" or x.ty.ndim < 1 or x.ty.shape is None:
        return None
    ndim = x.ty.ndim
    first = int(attrs.get("axis", -1)) % ndim
    leading = list(x.ty.shape)[:first]
    if not all(isinstance(d, tirx.IntImm) and int(d) == 1 for d in leading):
        return None  # rows to spread over threads: TVM's layer_norm is scheduled well there
    axes = list(range(first, ndim))
    epsilon = relax.const(float(attrs.get("epsilon", 1e-5)), "float32")

    def kept(row):  # a statistic over `axes` broadcast back over them
        for axis in axes:
            row = relax.op.expand_dims(row, axis)
        return row

    centred = relax.op.subtract(x, kept(relax.op.mean(x, axis=axes)))
    variance = relax.op.mean(relax.op.multiply(centred, centred), axis=axes)
    normed = relax.op.multiply(centred, kept(relax.op.rsqrt(relax.op.add(variance, epsilon))))
    out = relax.op.multiply(normed, scale)
    return out if bias is None else relax.op.add(out, bias)


def rms_norm(inputs, attrs: dict):
    """RMSNormalization (float32) as a mean of squares, rsqrt and products, or None for other dtypes.

    TVM's own rms_norm legalizes to one function that the CPU schedules leave as it is: the mean
    was recomputed for every element, 2 ms for one [1, 1, 2048] token (half of a 1.1B Llama's
    decode step, 2026-12-03). Spelled out, the mean is its own reduction, computed once."""
    from tvm import relax

    x, scale = inputs[0], inputs[1]
    if str(x.ty.dtype) != "float32" or x.ty.ndim < 1:
        return None
    ndim = x.ty.ndim
    axis = int(attrs.get("axis", -1))
    axes = list(range(axis % ndim, ndim))
    epsilon = relax.const(float(attrs.get("epsilon", 1e-5)), "float32")
    mean = relax.op.mean(relax.op.multiply(x, x), axis=axes)  # no kept axes: a row reduction to schedule
    inverse = relax.op.rsqrt(relax.op.add(mean, epsilon))
    for axis in axes:
        inverse = relax.op.expand_dims(inverse, axis)
    return relax.op.multiply(relax.op.multiply(x, inverse), scale)


def exact_gelu(x):
    """0.5 x (1 + erf(x / sqrt 2)) spelled out, so FastMathTransform can vectorise the erf."""
    from tvm import relax

    half = relax.const(0.5, "float32")
    erf = relax.op.erf(relax.op.multiply(x, relax.const(1.0 / math.sqrt(2.0), "float32")))
    return relax.op.multiply(relax.op.multiply(x, half), relax.op.add(relax.const(1.0, "float32"), erf))


def import_onnx(
    model: onnx.ModelProto,
    input_shapes: dict[str, tuple],
    input_dtypes: dict[str, str],
    kernels: dict[str, Kernel] | None = None,
    target=None,
    bias_adds: set[str] | None = None,
    tuner=None,
    convs: dict | None = None,
    owned: bool = False,
    release: bool = False,
):
    """Relax IRModule of `model` with static input shapes; `kernels` maps linear and Conv node names
    to their kernel; `target` (a TargetInfo) picks target kernels for other ops (attention);
    `convs` (see `mark_private_ops`) says how each Conv kernel is called; `owned`: the caller gives
    `model` up (it is changed in place); `release`: each kernel's arrays are dropped once Relax
    constants hold them (one copy of the weights at a time)."""
    kernels = kernels or {}
    convs = convs or {}
    for name, dtype in input_dtypes.items():
        if str(dtype) == "object" or str(dtype).lstrip("<>|=")[:1] in ("U", "S"):
            raise UnsupportedOpError(
                f"the TVM backend cannot take input '{name}': it holds strings; "
                "use `sparsecc sparsify` (ONNX out) for this model"
            )
    patterns = pattern_calls(model)
    marked = mark_private_ops(model, set(kernels) - set(convs), bias_adds or set(), convs, owned)
    importer = _importer_class()(input_shapes, input_dtypes, kernels, target, tuner, convs, patterns, release)
    opset = next((o.version for o in marked.opset_import if o.domain in ("", "ai.onnx")), 1)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # TVM prints each failing op before re-raising, and warns for every input name with a dot
        warnings.filterwarnings("ignore", message="Renaming name")
        return importer.from_onnx(marked.graph, opset)
