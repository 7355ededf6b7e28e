"""ONNX -> Relax through TVM's own ONNX importer, extended (not edited) for our ops.

Lowering only: the kernel of every linear layer was chosen (and tuned) before, by node
name (`selection.py`). The extension renames, in a copy of the graph, the nodes we
convert ourselves to private op types, so TVM's unsupported-op check and dispatch (which
look at the op type only, not the domain) never confuse them with its own:
  a linear layer with a chosen kernel (sparse op, MatMul by a constant W) -> call_tir of it
  Attention (opset 23, standard domain)                                   -> attention.py
Everything TVM cannot import is reported at once, in one line.
"""

from __future__ import annotations

import logging
import math

import onnx

from sparsecc.backends.tvm.attention import lower_attention
from sparsecc.backends.tvm.kernels import Kernel
from sparsecc.errors import UnsupportedOpError

logger = logging.getLogger(__name__)

PRIVATE = "sparsecc__"  # prefix of the op types only our converters handle
LINEAR = PRIVATE + "Linear"
ATTENTION = PRIVATE + "Attention"
CONV = PRIVATE + "Conv"


def _fuse_convs(model: onnx.ModelProto, convs: dict) -> None:
    """Conv nodes with a chosen kernel -> CONV (X, [residual]); the Add / Relu / Clip nodes their
    kernel applies pass Y on as Identity. A Conv adding a residual moves down to its Add, where
    the residual is sure to be computed (the Conv's Y feeds only that Add)."""
    nodes = list(model.graph.node)
    by_name = {node.name: node for node in nodes}
    for name, (residual, absorbed, _) in convs.items():
        node = by_name[name]
        y = node.output[0]
        node.op_type, node.domain = CONV, ""
        del node.input[1:]
        del node.attribute[:]
        if residual is not None:
            node.input.append(residual)
        for fused_name in absorbed:
            fused = by_name[fused_name]
            fused.op_type, fused.domain = "Identity", ""
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
) -> onnx.ModelProto:
    """A copy whose chosen linear layers, Convs and standard Attention nodes carry private op types,
    and whose `bias_adds` (a bias Add after a linear whose kernel adds the bias) pass Y through.

    `convs`: Conv node name -> (residual value name or None, names of the nodes its kernel absorbs,
    the output shape)."""
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
        elif node.domain in ("", "ai.onnx") and node.op_type == "Attention":
            node.op_type = ATTENTION
        elif node.domain == "sparsecc":
            raise UnsupportedOpError(
                f"sparse node '{node.name}' ({node.op_type}) has no kernel; was it verified?"
            )
    return model


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
            self, shape_dict, dtype_dict, kernels: dict[str, Kernel], target, tuner=None, convs=None
        ):
            super().__init__(shape_dict, dtype_dict)
            self.convs = convs or {}  # Conv node name -> (residual, absorbed nodes, output shape)
            self.kernels = kernels  # node name -> the kernel chosen for it
            self.target = target  # TargetInfo, or None: no target-specific kernels (attention decomposed)
            self.tuner = tuner  # tuning.KernelTuner when tune=N: it picks attention's tiles

        def _check_for_unsupported_ops(self, graph):
            known = onnx_frontend._get_convert_map()
            unsupported = sorted(
                {
                    f"{node.domain}::{node.op_type}" if node.domain else node.op_type
                    for node in graph.node
                    if not node.op_type.startswith(PRIVATE)
                    and node.op_type not in known
                    and node.op_type not in ("If", "Constant")
                }
            )
            if unsupported:
                raise UnsupportedOpError(
                    f"the TVM backend cannot compile these ops: {', '.join(unsupported)}; "
                    "use `sparsecc sparsify` (ONNX out) for this model, or replace those ops"
                )

        def _convert_operator(self, op_name, inputs, attrs, opset):
            if op_name == "Gelu" and attrs.get("approximate", b"none") in (b"none", "none"):
                return self.bb.normalize(exact_gelu(inputs[0]))
            if op_name == "Pow" and (power := integer_power(*inputs)) is not None:
                return self.bb.normalize(power)
            if not op_name.startswith(PRIVATE):
                return super()._convert_operator(op_name, inputs, attrs, opset)
            if op_name == ATTENTION:
                choose = self.tuner.attention_tiles if self.tuner is not None else None
                return self.bb.normalize(lower_attention(self.bb, inputs, attrs, self.target, choose))
            if op_name == CONV:
                return self.bb.normalize(self._convert_conv(inputs, attrs["tvm_custom"]["name"]))
            return self.bb.normalize(self._convert_linear(inputs[0], attrs["tvm_custom"]["name"]))

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
            y2 = self.bb.emit(
                relax.call_tir(
                    func,
                    [x2, *[relax.const(c) for c in kernel.constants]],
                    out_ty=relax.TensorType((m, out), "float32"),
                )
            )
            return relax.op.reshape(y2, (*shape[:-1], out))

        def _convert_conv(self, inputs, name: str):
            import numpy as np
            from tvm import relax

            kernel = self.kernels[name]
            residual = inputs[1] if len(inputs) > 1 and inputs[1] is not None else None
            shape = [int(d) for d in inputs[0].ty.shape]
            func = self.bb.add_func(kernel.prim_func.without_attr("global_symbol"), _func_name(name, kernel))
            out_shape = list(self.convs[name][2])
            if out_shape[0] != shape[0]:
                raise AssertionError(
                    f"the kernel for '{name}' was built for batch {out_shape[0]}, not {shape[0]}"
                )
            extra = residual if residual is not None else relax.const(np.zeros(1, np.float32))
            return relax.call_tir(
                func,
                [inputs[0], *[relax.const(c) for c in kernel.constants], extra],
                out_ty=relax.TensorType(out_shape, "float32"),
            )

    return SparseccImporter


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
):
    """Relax IRModule of `model` with static input shapes; `kernels` maps linear and Conv node names
    to their kernel; `target` (a TargetInfo) picks target kernels for other ops (attention);
    `convs` (see `mark_private_ops`) says what each Conv kernel absorbs."""
    kernels = kernels or {}
    convs = convs or {}
    marked = mark_private_ops(model, set(kernels) - set(convs), bias_adds or set(), convs)
    importer = _importer_class()(input_shapes, input_dtypes, kernels, target, tuner, convs)
    opset = next((o.version for o in marked.opset_import if o.domain in ("", "ai.onnx")), 1)
    return importer.from_onnx(marked.graph, opset)
