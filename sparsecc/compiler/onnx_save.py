"""Write an ONNX model to disk: atomically, and with external data when it is too big for protobuf.

Protobuf cannot serialize (or parse) a message of 2 GiB or more, so a model whose
weights pass `EXTERNAL_DATA_THRESHOLD` is written as `OUT.onnx` plus its weights in
`OUT.onnx.data` beside it (ONNX's external data; onnx.load, onnxruntime and sparsecc
read the pair from the .onnx path). Both files are written under temporary names in a
directory beside the output and renamed into place only when both are complete, so an
error leaves nothing half-written (a reader that races the two renames may briefly see
the new data file with the old .onnx).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import onnx
import onnx_ir as ir

from sparsecc import files
from sparsecc.compiler.frontends.weightless import tensor_nbytes
from sparsecc.errors import SparseccError

# Protobuf's hard limit is 2 GiB (2**31 bytes); 2 GB leaves ~147 MB for the graph itself,
# which the estimate below (weights only) does not count.
EXTERNAL_DATA_THRESHOLD = 2_000_000_000
# Tensors smaller than this stay inside the .onnx even when the rest goes external.
SMALL_TENSOR_BYTES = 1024


def save_onnx(
    model: onnx.ModelProto | ir.Model,
    path: str | os.PathLike,
    *,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
) -> Path | None:
    """Write `model` to `path`; returns the external data file, or None when there is none.

    External data is used when the model's size (serialized size of a proto, weight bytes
    of an IR model) passes `external_data_threshold`. The model is left unchanged.
    """
    target = files.check_output_path(path)
    if model_bytes(model) <= external_data_threshold:
        with files.atomic_path(target) as tmp:
            if isinstance(model, onnx.ModelProto):
                tmp.write_bytes(model.SerializeToString())
            else:
                ir.save(model, tmp, format="protobuf")
        return None
    return _save_external(model, target)


def model_bytes(model: onnx.ModelProto | ir.Model) -> int:
    """The bytes of the model's initializers (from dims and types: upb's ByteSize would
    serialize the whole proto to count them)."""
    if isinstance(model, onnx.ModelProto):
        return sum(tensor_nbytes(tensor) for tensor in model.graph.initializer)
    return sum(
        value.const_value.nbytes
        for value in model.graph.initializers.values()
        if value.const_value is not None
    )


def _save_external(model: onnx.ModelProto | ir.Model, target: Path) -> Path:
    if isinstance(model, onnx.ModelProto):
        model = ir.serde.deserialize_model(model)  # wraps the proto's tensors; copies no weights
    data_name = f"{target.name}.data"
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        try:
            ir.save(
                model,
                work / target.name,
                format="protobuf",
                external_data=data_name,
                size_threshold_bytes=SMALL_TENSOR_BYTES,
            )
        except OSError as error:
            raise SparseccError(f"cannot write {target}: {error.strerror}; check the disk space") from None
        written = [work / data_name, work / target.name]  # the data first: the .onnx names it
        for file in written:
            with open(file, "rb+") as handle:
                os.fsync(handle.fileno())
            os.chmod(file, files.new_file_mode())
        for file in written:
            os.replace(file, target.parent / file.name)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    return target.parent / data_name
