"""A model too big for one protobuf message (2 GB), kept as an .onnx file with external data.

onnxruntime cannot take such a model as bytes, and `SerializeToString` fails past 2 GB, so the
onnxruntime backend writes it once to a private folder (weights in one data file beside it) and
runs it from there; `save_as` copies both files, pointing the copy at its own data file name.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import onnx
import onnx_ir as ir

from sparsecc import files

# Past this many weight bytes a model goes to a file: under protobuf's 2 GiB with room for the graph.
FILE_BYTES = 1_800_000_000


def weight_bytes(model: ir.Model) -> int:
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


class ModelFile:
    """`model` written to a temporary folder as model.onnx + model.onnx.data (removed with this object)."""

    DATA = "model.onnx.data"

    def __init__(self, model: ir.Model):
        self._folder = tempfile.TemporaryDirectory(prefix="sparsecc-onnxruntime-")
        self.path = Path(self._folder.name) / "model.onnx"
        ir.save(model, self.path, external_data=self.DATA)

    def save_as(self, path) -> None:
        """OUT.onnx and OUT.onnx.data; the .onnx is written last, atomically."""
        target = files.check_output_path(path)
        data_name = target.name + ".data"
        proto = onnx.load(str(self.path), load_external_data=False)
        for tensor in _external_tensors(proto.graph):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = data_name
        with files.atomic_path(target.parent / data_name) as tmp:
            shutil.copyfile(Path(self._folder.name) / self.DATA, tmp)
        files.write_bytes(target, proto.SerializeToString())


def _external_tensors(graph: onnx.GraphProto):
    for tensor in graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _external_tensors(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    yield from _external_tensors(sub)
