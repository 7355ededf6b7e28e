"""The `.sccpkg` codec: one zip holding a manifest and named binary entries, each with its sha256.

Reading and writing only, independent of what the entries mean: `runtime.py` puts the
compiled library (and CUDA's PTX) in and takes them out, and the model's weights as arrays.
The arrays go to one member, `WEIGHTS`, stored uncompressed with each array at a 64-byte
aligned file offset (TVM takes only aligned tensors), so `map_arrays` hands them out as
copy-on-write views of the file (mmap): loading a model reads no weight into private memory.
Imports only numpy and the standard library, so `sparsecc.load` stays free of torch and onnx.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import zipfile
import zlib
from pathlib import Path

import numpy as np

from sparsecc.errors import ArtifactError, SparseccError
from sparsecc.files import atomic_path

# 2: the manifest declares each entry's size and carries its own digest
# 3: the weights are arrays in WEIGHTS, not constants inside the library (2 still loads)
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
MANIFEST = "manifest.json"
WEIGHTS = "weights.bin"  # the arrays, back to back at aligned offsets, stored (not compressed)
ALIGNMENT = 64  # bytes: what tvm's from_dlpack demands of a tensor's data
_CHUNK = 1 << 20  # bytes hashed at a time
_DTYPES = {
    np.dtype(t).str
    for t in ("float32", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32")
}
MANIFEST_LIMIT = 64 << 20  # bytes; a manifest holds names, shapes and the report: kilobytes
ENTRY_LIMIT = 16 << 30  # bytes per entry, whatever the manifest declares (BERT-base's library: ~0.5 GB)
# DEFLATE cannot expand more than 1032:1; a member claiming more is corrupted (or a zip bomb).
DEFLATE_MAX_RATIO = 1032
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_UNREADABLE_FLAGS = 0x1 | 0x20 | 0x40  # encrypted, patched data, strong encryption


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_digest(manifest: dict) -> str:
    """The sha256 of the manifest's canonical JSON, its own digest left out."""
    body = {key: value for key, value in manifest.items() if key != "manifest_sha256"}
    return sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def write_package(path, manifest: dict, entries: dict[str, bytes], arrays=()) -> None:
    """Write `entries`, `arrays` (numpy arrays, or anything `np.asarray` takes, written one at a time)
    and the manifest (plus format version, sizes, digests and the arrays' table) atomically to `path`."""
    target = Path(path)
    if not target.parent.exists():
        raise SparseccError(f"output directory {str(target.parent)!r} does not exist; create it first")
    digests = {n: sha256(d) for n, d in entries.items()}
    sizes = {n: len(d) for n, d in entries.items()}
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        table = []
        if arrays:
            table, digests[WEIGHTS], sizes[WEIGHTS] = _write_arrays(archive, arrays)
        manifest = dict(manifest, format_version=FORMAT_VERSION, sha256=digests, sizes=sizes, arrays=table)
        manifest = json.loads(json.dumps(manifest))  # the digest covers what a reader will parse
        manifest["manifest_sha256"] = manifest_digest(manifest)
        archive.writestr(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def _write_arrays(archive: zipfile.ZipFile, arrays) -> tuple[list[dict], str, int]:
    """Stream `arrays` into the WEIGHTS member; (their table, its sha256, its size).

    Offsets are from the member's first byte, which sits at an aligned file offset (the local
    header's extra field pads it), and each array starts aligned after zero padding."""
    info = zipfile.ZipInfo(WEIGHTS, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    # local header: 30 bytes + name + extra; zip64 (force_zip64) adds its own 20-byte extra field
    start = archive.fp.tell() + 30 + len(WEIGHTS.encode()) + 20
    info.extra = _padding_field(-start % ALIGNMENT)
    blob, table, offset = hashlib.sha256(), [], 0
    with archive.open(info, "w", force_zip64=True) as member:
        if (archive.fp.tell()) % ALIGNMENT:
            raise AssertionError("the weights member does not start aligned")
        for array in arrays:
            data = np.ascontiguousarray(array)
            pad = b"\0" * (-offset % ALIGNMENT)
            view = memoryview(data.reshape(-1).view(np.uint8))
            for chunk in (pad, view):
                member.write(chunk)
                blob.update(chunk)
            offset += len(pad)
            table.append({"offset": offset, "shape": list(data.shape), "dtype": data.dtype.str})
            offset += data.nbytes
    return table, _weights_digest(table, blob.hexdigest()), offset


def _weights_digest(table, blob_sha256: str) -> str:
    """WEIGHTS' digest covers its bytes and the table that says how to read them (offsets,
    shapes, dtypes): an edited table is refused like edited bytes."""
    return sha256(json.dumps([table, blob_sha256], sort_keys=True, separators=(",", ":")).encode())


def _padding_field(size: int) -> bytes:
    """An extra field of exactly `size` bytes (0, or 4 and up: a 4-byte header plus zeros), id 0xCAFE."""
    if size == 0:
        return b""
    size += ALIGNMENT if size < 4 else 0
    return (0xCAFE).to_bytes(2, "little") + (size - 4).to_bytes(2, "little") + b"\0" * (size - 4)


def map_arrays(path, manifest: dict) -> list[np.ndarray]:
    """The arrays `write_package` stored, as copy-on-write views of the file, after checking the
    WEIGHTS member's sha256 (read in chunks: nothing stays in memory but the page cache).

    A zip rewritten by another tool may leave them unaligned: the runtime then copies them."""
    path = Path(path)
    table = manifest.get("arrays")
    if WEIGHTS not in manifest["sizes"] and not table:  # format 2, or a model without big weights
        return []
    try:
        with zipfile.ZipFile(path) as archive:
            info = _member(path, archive, WEIGHTS, ENTRY_LIMIT)
            if info.compress_type != zipfile.ZIP_STORED or info.file_size != manifest["sizes"].get(WEIGHTS):
                raise ArtifactError(
                    f"'{path}' stores {WEIGHTS} compressed or with a wrong size; compile it again"
                )
            with archive.open(info) as member:
                blob = hashlib.sha256()
                while chunk := member.read(_CHUNK):
                    blob.update(chunk)
        start = _data_offset(path, info)
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError, NotImplementedError) as error:
        raise ArtifactError(
            f"'{path}' is not a valid .sccpkg (truncated or corrupted: {_one_line(error)}); compile it again"
        ) from None
    if manifest["sha256"].get(WEIGHTS) != _weights_digest(table, blob.hexdigest()):
        raise ArtifactError(f"'{path}' is corrupted: the sha256 of {WEIGHTS} does not match the manifest")
    layout = [_array_layout(entry, info.file_size) for entry in table]
    if None in layout:
        raise ArtifactError(f"'{path}' has a manifest whose array table is invalid; compile it again")
    with open(path, "rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
    return [
        np.frombuffer(mapped, dtype, int(np.prod(shape)), start + offset).reshape(shape)
        for dtype, shape, offset in layout
    ]


def _array_layout(entry, size: int) -> tuple[np.dtype, tuple[int, ...], int] | None:
    """(dtype, shape, offset) of one table entry, or None when it is not one that fits in `size` bytes."""
    if not isinstance(entry, dict):
        return None
    shape, offset, dtype = entry.get("shape"), entry.get("offset"), entry.get("dtype")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        return None
    if type(offset) is not int or offset < 0 or offset % ALIGNMENT or dtype not in _DTYPES:
        return None
    dtype = np.dtype(dtype)
    count = 1
    for dim in shape:
        count *= dim
    return (dtype, tuple(shape), offset) if offset + count * dtype.itemsize <= size else None


def _data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """The file offset of a stored member's first byte (after its local header)."""
    with open(path, "rb") as file:
        file.seek(info.header_offset)
        header = file.read(30)
    if header[:4] != b"PK\x03\x04":
        raise ValueError(f"no local header for {info.filename}")
    name_length, extra_length = (
        int.from_bytes(header[26:28], "little"),
        int.from_bytes(header[28:30], "little"),
    )
    return info.header_offset + 30 + name_length + extra_length


def read_package(path, required: tuple[str, ...]) -> tuple[dict, dict[str, bytes]]:
    """The manifest and the `required` entries, after checking version, sizes and digests.

    Members are read into memory by our own names only (nothing is extracted by the names
    the archive holds), and each member's size is checked in the central directory before
    a byte of it is decompressed. Integrity, not security: a package holds native code that
    `load` runs, so only load packages you trust.
    """
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"artifact '{path}' does not exist")
    if path.is_dir():
        raise ArtifactError(f"artifact '{path}' is a directory; give a .sccpkg file")
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = _read_manifest(path, archive)
            entries = {name: _read_entry(path, archive, name, manifest["sizes"]) for name in required}
    # NotImplementedError: zipfile's word for a member needing a newer zip version (a flipped byte)
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError, NotImplementedError) as error:
        raise ArtifactError(
            f"'{path}' is not a valid .sccpkg (truncated or corrupted: {_one_line(error)}); compile it again"
        ) from None
    for name, data in entries.items():
        if manifest["sha256"].get(name) != sha256(data):
            raise ArtifactError(f"'{path}' is corrupted: the sha256 of {name} does not match the manifest")
    return manifest, entries


def _member(path: Path, archive: zipfile.ZipFile, name: str, limit: int) -> zipfile.ZipInfo:
    """The central-directory record of `name`, refused when it is missing, too big or unreadable."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ArtifactError(
            f"'{path}' has no {name}; it is not a complete .sccpkg, compile it again"
        ) from None
    if info.compress_type not in _COMPRESSIONS or info.flag_bits & _UNREADABLE_FLAGS:
        raise ArtifactError(
            f"'{path}' stores {name} encrypted or with compression method {info.compress_type}, "
            "which sparsecc never writes; compile it again"
        )
    ceiling = (
        info.compress_size
        if info.compress_type == zipfile.ZIP_STORED
        else info.compress_size * DEFLATE_MAX_RATIO
    )
    if info.file_size > limit or info.file_size > ceiling + 1024:
        raise ArtifactError(
            f"'{path}' declares {name} as {info.file_size} bytes uncompressed (from {info.compress_size}; "
            f"the limit is {limit} bytes and {DEFLATE_MAX_RATIO}x compression); refusing to read it, compile it again"
        )
    return info


def _read_manifest(path: Path, archive: zipfile.ZipFile) -> dict:
    info = _member(path, archive, MANIFEST, MANIFEST_LIMIT)
    try:
        manifest = json.loads(archive.read(info))
    except (ValueError, RecursionError) as error:  # not UTF-8, not JSON, an absurd number
        raise ArtifactError(
            f"'{path}' has a manifest that is not JSON ({_one_line(error)}); compile it again"
        ) from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"'{path}' has a manifest that is not a JSON object; compile it again")
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise ArtifactError(
            f"'{path}' has format version {_one_line(repr(version))[:40]}; this sparsecc reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}; compile it again with this sparsecc"
        )
    if manifest.get("manifest_sha256") != manifest_digest(manifest):
        raise ArtifactError(
            f"'{path}' is corrupted: its manifest does not match its own sha256; compile it again"
        )
    for key in ("sha256", "sizes"):
        table = manifest.get(key)
        if not isinstance(table, dict) or not all(
            isinstance(v, str if key == "sha256" else int) and not isinstance(v, bool) for v in table.values()
        ):
            raise ArtifactError(
                f"'{path}' has a manifest whose '{key}' is not a table of entries; compile it again"
            )
    return manifest


def _read_entry(path: Path, archive: zipfile.ZipFile, name: str, sizes: dict) -> bytes:
    declared = sizes.get(name)
    if declared is None:
        raise ArtifactError(f"'{path}' has a manifest that does not list {name}; compile it again")
    info = _member(path, archive, name, min(declared, ENTRY_LIMIT))
    if info.file_size != declared:
        raise ArtifactError(
            f"'{path}' is corrupted: {name} is {info.file_size} bytes, the manifest says {declared}; compile it again"
        )
    return archive.read(info)


def _one_line(error) -> str:
    text = " ".join(str(error).split())
    return text[:200] if text else type(error).__name__
