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

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_package(path, manifest: dict, entries: dict[str, bytes]) -> None:
    """Write `entries` and the manifest (plus format version and digests) atomically to `path`."""
    target = Path(path)
    if not target.parent.exists():
        raise SparseccError(f"output directory {str(target.parent)!r} does not exist; create it first")
    manifest = dict(
        manifest, format_version=FORMAT_VERSION, sha256={n: sha256(d) for n, d in entries.items()}
    )
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        for name, data in entries.items():
            archive.writestr(name, data)


def read_package(path, required: tuple[str, ...]) -> tuple[dict, dict[str, bytes]]:
    """The manifest and the `required` entries, after checking version and digests."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"artifact '{path}' does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read(MANIFEST))
            entries = {name: archive.read(name) for name in required}
    except (zipfile.BadZipFile, zlib.error, KeyError, ValueError, EOFError, OSError) as error:
        raise ArtifactError(
            f"'{path}' is not a valid .sccpkg (truncated or corrupted: {error}); compile it again"
        ) from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"'{path}' has a corrupted manifest; compile it again")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"'{path}' has format version {version}; this sparsecc reads version {FORMAT_VERSION}"
        )
    digests = manifest.get("sha256") if isinstance(manifest.get("sha256"), dict) else {}
    for name, data in entries.items():
        if digests.get(name) != sha256(data):
            raise ArtifactError(f"'{path}' is corrupted: the sha256 of {name} does not match the manifest")
    return manifest, entries
