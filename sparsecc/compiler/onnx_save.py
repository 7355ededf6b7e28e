"""Write an ONNX model to disk: atomically, and with external data when it is too big for protobuf.

Protobuf cannot serialize (or parse) a message of 2 GiB or more, so a model whose
weights pass `EXTERNAL_DATA_THRESHOLD` is written as `OUT.onnx` plus its weights in
`OUT.onnx.data` beside it (ONNX's external data; onnx.load, onnxruntime and sparsecc
read the pair from the .onnx path). Both files are written under temporary names in a
directory beside the output and renamed into place only when both are complete, so an
error leaves nothing half-written (a reader that races the two renames may briefly see
the new data file with the old .onnx).

Below the threshold the .onnx is written one weight at a time, never as one serialized
message: protobuf merges repeated occurrences of a message field, so a ModelProto without
its big initializers followed by one `ModelProto{graph{initializer}}` per weight parses as
the whole model (in onnx, onnxruntime and any protobuf reader). Weights a loaded file kept on
disk (`frontends/external_weights.py`) are read into the output as they are written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
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
    if isinstance(model, onnx.ModelProto):
        model = ir.serde.deserialize_model(model)  # wraps the proto's tensors; copies no weights
    if model_bytes(model) <= external_data_threshold:
        with files.atomic_path(target) as tmp:
            try:
                with open(tmp, "wb") as handle:
                    write_weight_by_weight(model, handle)
            except OSError as error:
                raise SparseccError(
                    f"cannot write {target}: {error.strerror}; check the disk space"
                ) from None
        return None
    return _save_external(model, target)


def write_weight_by_weight(model: ir.Model, handle) -> None:
    """Serialize `model` to `handle` holding one big weight's bytes at a time (see the module doc)."""
    big = [
        value
        for value in model.graph.initializers.values()
        if value.const_value is not None and value.const_value.nbytes > SMALL_TENSOR_BYTES
    ]
    held = [value.const_value for value in big]
    try:
        for index, value in enumerate(big):  # stand-ins that serialize to a few bytes each
            value.const_value = ir.ExternalTensor(
                f"stand-in-{index}",
                0,
                0,
                value.const_value.dtype,
                shape=value.const_value.shape,
                name=value.name,
            )
        light = ir.serde.serialize_model(model)
    finally:
        for value, tensor in zip(big, held, strict=True):
            value.const_value = tensor
    moved = {value.name for value in big}
    kept = [tensor for tensor in light.graph.initializer if tensor.name not in moved]
    del light.graph.initializer[:]
    light.graph.initializer.extend(kept)
    handle.write(light.SerializeToString())
    del light
    for value in big:
        fragment = onnx.ModelProto()
        _serialize_weight(fragment.graph.initializer.add(), value.name, value.const_value)
        handle.write(fragment.SerializeToString())


def _serialize_weight(proto: onnx.TensorProto, name: str, tensor) -> None:
    if isinstance(tensor, ir.ExternalTensor):  # kept on disk by the frontend: its bytes, not its reference
        proto.name, proto.data_type = name, tensor.dtype.value
        proto.dims.extend(tensor.shape.numpy())
        proto.raw_data = tensor.tobytes()
        with contextlib.suppress(BufferError):  # unmapped unless a pass still holds a view of it
            tensor.release()
        return
    tensor.name = name
    ir.serde.serialize_tensor_into(proto, from_=tensor)


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


def _save_external(model: ir.Model, target: Path) -> Path:
    data_name = f"{target.name}.data"
    with staged_output(target) as staged:
        try:
            ir.save(
                model,
                staged,
                format="protobuf",
                external_data=data_name,
                size_threshold_bytes=SMALL_TENSOR_BYTES,
            )
        except OSError as error:
            raise SparseccError(f"cannot write {target}: {error.strerror}; check the disk space") from None
    return target.parent / data_name


@contextlib.contextmanager
def staged_output(path: str | os.PathLike) -> Iterator[Path]:
    """A path to write `path`'s model to (with `save_onnx`, external data and all) in a new folder
    beside it; when the block ends without an error the files move into place (the data file
    first: the .onnx names it), else nothing is left. `sparsify` checks the model it staged."""
    target = files.check_output_path(path)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield work / target.name
        written = sorted(work.iterdir(), key=lambda file: file.name == target.name)
        for file in written:
            with open(file, "rb+") as handle:
                os.fsync(handle.fileno())
            os.chmod(file, files.new_file_mode())
        for file in written:
            os.replace(file, target.parent / file.name)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
