"""`.sccpkg` artifacts: one zip holding the compiled library and a manifest.

manifest.json: format version, inputs/outputs (names, shapes, dtypes), target, the
architecture the library runs on, spec, versions, the report, and the sha256 of every
other entry. `load` needs only numpy + apache-tvm: no torch, no onnx, no onnx-ir.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import zipfile
from pathlib import Path

from sparsecc.backends.tvm.runtime import CompiledModel
from sparsecc.compiler.files import atomic_path  # stdlib only: keeps load() free of torch/onnx
from sparsecc.errors import ArtifactError, SparseccError

FORMAT_VERSION = 1
LIBRARY = "model.so"
MANIFEST = "manifest.json"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export_library(library, path: Path, family: str) -> None:
    """Write the built library as a shared object for the target's architecture."""
    if family == "aarch64":
        import shutil

        from tvm.support import cc

        if shutil.which("aarch64-linux-gnu-g++") is None:
            raise SparseccError(
                "cross-compiling for aarch64 needs aarch64-linux-gnu-g++ "
                "(apt-get install g++-aarch64-linux-gnu)"
            )
        library.export_library(str(path), fcompile=cc.cross_compiler("aarch64-linux-gnu-g++"))
    else:
        library.export_library(str(path))


def save(model: CompiledModel, path) -> None:
    target = Path(path)
    if not target.parent.exists():
        raise SparseccError(f"output directory {str(target.parent)!r} does not exist; create it first")
    with tempfile.TemporaryDirectory() as work:
        lib_path = Path(work) / LIBRARY
        export_library(model._library, lib_path, model.manifest["target"]["family"])
        library = lib_path.read_bytes()
    extra = dict(model.device_code)
    digests = {LIBRARY: _sha256(library), **{name: _sha256(data) for name, data in extra.items()}}
    manifest = dict(model.manifest, format_version=FORMAT_VERSION, sha256=digests)
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        archive.writestr(LIBRARY, library)
        for name, data in extra.items():
            archive.writestr(name, data)


def _read(path: Path) -> tuple[dict, bytes]:
    if not path.exists():
        raise ArtifactError(f"artifact '{path}' does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read(MANIFEST))
            library = archive.read(LIBRARY)
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError, zipfile.LargeZipFile) as error:
        raise ArtifactError(
            f"'{path}' is not a valid .sccpkg (truncated or corrupted: {error}); compile it again"
        ) from None
    return manifest, library


def load(path) -> CompiledModel:
    """Open a `.sccpkg` written by `CompiledModel.save`, checking integrity and architecture."""
    from sparsecc.backends.tvm.env import configure_tvm

    configure_tvm()
    path = Path(path)
    manifest, library = _read(path)
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"'{path}' has format version {version}; this sparsecc reads version {FORMAT_VERSION}"
        )
    if manifest.get("sha256", {}).get(LIBRARY) != _sha256(library):
        raise ArtifactError(f"'{path}' is corrupted: the library's sha256 does not match the manifest")
    arch, here = manifest["target"]["arch"], platform.machine()
    if arch != here:
        raise ArtifactError(
            f"'{path}' was built for {arch}, this machine is {here}; compile it with --target cpu here"
        )
    import tvm

    work = tempfile.mkdtemp(prefix="sparsecc-load-")
    lib_path = Path(work) / LIBRARY
    lib_path.write_bytes(library)
    try:
        module = tvm.runtime.load_module(str(lib_path))
    finally:  # the loaded object stays mapped; the file is not needed any more
        lib_path.unlink()
        os.rmdir(work)
    return CompiledModel(module, manifest)
