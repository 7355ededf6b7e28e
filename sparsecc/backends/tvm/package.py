"""The `.sccpkg` codec: one zip holding a manifest and named binary entries, each with its sha256.

Reading and writing only, independent of what the entries mean: `runtime.py` puts the
compiled library (and CUDA's PTX) in and takes them out. Imports only the standard
library, so `sparsecc.load` stays free of torch and onnx.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from pathlib import Path

from sparsecc.errors import ArtifactError, SparseccError
from sparsecc.files import atomic_path

FORMAT_VERSION = 2  # 2: the manifest declares each entry's size and carries its own digest
MANIFEST = "manifest.json"
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


def write_package(path, manifest: dict, entries: dict[str, bytes]) -> None:
    """Write `entries` and the manifest (plus format version, sizes and digests) atomically to `path`."""
    target = Path(path)
    if not target.parent.exists():
        raise SparseccError(f"output directory {str(target.parent)!r} does not exist; create it first")
    manifest = dict(
        manifest,
        format_version=FORMAT_VERSION,
        sha256={n: sha256(d) for n, d in entries.items()},
        sizes={n: len(d) for n, d in entries.items()},
    )
    manifest = json.loads(json.dumps(manifest))  # the digest covers what a reader will parse
    manifest["manifest_sha256"] = manifest_digest(manifest)
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        for name, data in entries.items():
            archive.writestr(name, data)


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
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ArtifactError(
            f"'{path}' has format version {_one_line(repr(version))[:40]}; this sparsecc reads version "
            f"{FORMAT_VERSION}; compile it again with this sparsecc"
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
