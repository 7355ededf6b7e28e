"""A file's big external-data weights stay on disk until a pass reads them.

`onnx.load` with its external data reads every weight into the proto, and the proto lives as
long as the IR that wraps it: a big model's weights were held whole through the pipeline
even after prune and dense-to-sparse had replaced them. Instead, each big initializer keeps
its external reference with the location made absolute (the proto no longer knows the
file's folder), so onnx-ir deserializes it as an `ExternalTensor` that maps the data file
when read and unmaps it when replaced. Small tensors and tensors outside the main graph's
initializers are read in at once, as before.

Absolute locations never reach a written file: `onnx_save` and the onnxruntime backend
write or hand over the data itself (`materialize`). Locations are checked here as onnx
checks them when it reads data (relative, inside the model's folder, offset and length
within the file and equal to the tensor's size), since onnx-ir's own containment checks
need the folder this representation drops.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import onnx_ir as ir
from onnx import external_data_helper

from sparsecc.compiler.frontends.weightless import tensor_nbytes

# Initializers at least this big stay on disk; smaller ones are read into the proto.
ON_DISK_BYTES = 1 << 20


def on_disk(tensor: onnx.TensorProto) -> bool:
    return external_data_helper.uses_external_data(tensor)


def keep_on_disk(proto: onnx.ModelProto, folder: Path) -> None:
    """Check every external reference of `proto` (read from `folder`); read in the small ones
    and point the big initializers at their data file by absolute path. ValueError when a
    reference is bad."""
    for tensor in proto.graph.initializer:  # (upb makes a new wrapper per access: no id() sets)
        if on_disk(tensor) and tensor_nbytes(tensor) >= ON_DISK_BYTES:
            _set_reference(tensor, *_checked_reference(tensor, folder))
    for tensor in external_data_helper._get_all_tensors(proto):
        if on_disk(tensor) and not _absolute(tensor):
            path, offset, length = _checked_reference(tensor, folder)
            with open(path, "rb") as handle:
                handle.seek(offset)
                tensor.raw_data = handle.read(length)
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]


def _absolute(tensor: onnx.TensorProto) -> bool:
    return any(entry.key == "location" and os.path.isabs(entry.value) for entry in tensor.external_data)


def has_external_data(path: Path) -> bool:
    """Whether the .onnx file at `path` keeps some tensor in another file (reads the file again)."""
    proto = onnx.load(str(path), load_external_data=False)
    return any(on_disk(tensor) for tensor in external_data_helper._get_all_tensors(proto))


def _checked_reference(tensor: onnx.TensorProto, folder: Path) -> tuple[Path, int, int]:
    info = external_data_helper.ExternalDataInfo(tensor)
    where = f"external data of '{tensor.name}'"
    location = str(info.location)
    if not location or os.path.isabs(location) or Path(os.path.normpath(location)).parts[:1] == ("..",):
        raise ValueError(f"{where}: location {location!r} must be a file name relative to the model's folder")
    base = folder.resolve()
    path = (base / location).resolve()
    if base not in path.parents:
        raise ValueError(f"{where}: {location!r} leads outside the model's folder")
    if not path.is_file():
        raise ValueError(f"{where}: {location!r} is not a file next to the model")
    size = path.stat().st_size
    offset = info.offset or 0
    expected = tensor_nbytes(tensor)
    length = info.length if info.length is not None else expected
    if length != expected or offset + length > size:
        raise ValueError(
            f"{where}: {length} bytes at offset {offset} of {location!r} ({size} bytes) do not hold "
            f"a tensor of dims {list(tensor.dims)} ({expected} bytes)"
        )
    return path, offset, length


def _set_reference(tensor: onnx.TensorProto, path: Path, offset: int, length: int) -> None:
    location = str(path)
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def materialize(model: ir.Model) -> ir.Model:
    """`model` with every on-disk weight read into memory (in place), for writers and sessions
    that would otherwise get an absolute external reference."""
    return ir.external_data.load_to_model(model)
