"""The weights member of a `.sccpkg` (format 3): aligned, mapped, checked; format 2 still reads."""

import hashlib
import json
import zipfile

import numpy as np
import pytest

from sparsecc.backends.tvm.package import (
    ALIGNMENT,
    MANIFEST,
    WEIGHTS,
    manifest_digest,
    map_arrays,
    read_package,
    write_package,
)
from sparsecc.errors import ArtifactError

ARRAYS = [
    np.arange(10, dtype=np.float32),
    np.arange(15, dtype=np.int32).reshape(3, 5),
    np.zeros((0, 4), np.float32),
    np.arange(7, dtype=np.uint16),
]


@pytest.fixture
def package(tmp_path):
    path = tmp_path / "w.sccpkg"
    write_package(path, {"note": "test"}, {"model.so": b"library"}, iter(ARRAYS))
    return path


def test_arrays_come_back_as_aligned_writable_views_of_the_file(package):
    manifest, entries = read_package(package, ("model.so",))
    assert manifest["format_version"] == 3 and entries == {"model.so": b"library"}
    with zipfile.ZipFile(package) as archive:
        assert archive.getinfo(WEIGHTS).compress_type == zipfile.ZIP_STORED
    arrays = map_arrays(package, manifest)
    for original, mapped in zip(ARRAYS, arrays, strict=True):
        assert mapped.dtype == original.dtype and np.array_equal(mapped, original)
        assert mapped.ctypes.data % ALIGNMENT == 0 and mapped.flags.writeable  # copy-on-write
    arrays[0][0] = 99.0  # writing to a mapped array never reaches the file
    assert map_arrays(package, manifest)[0][0] == 0.0


def rewrite(path, out, manifest=None, weights=None):
    """A copy of the package with its manifest (its digest recomputed) or weights bytes replaced."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == MANIFEST and manifest is not None:
                manifest["manifest_sha256"] = manifest_digest(manifest)
                data = json.dumps(manifest).encode()
            if name == WEIGHTS and weights is not None:
                data = weights(data)
            dst.writestr(name, data)
    return out


def test_edited_weights_or_table_are_refused_in_one_line(package, tmp_path):
    manifest, _ = read_package(package, ())
    flipped = rewrite(package, tmp_path / "f.sccpkg", weights=lambda d: d[:-1] + bytes([d[-1] ^ 1]))
    with pytest.raises(ArtifactError, match=f"the sha256 of {WEIGHTS} does not match the manifest"):
        map_arrays(flipped, read_package(flipped, ())[0])
    edited = json.loads(json.dumps(manifest))
    edited["arrays"][1]["shape"] = [5, 3]  # same bytes, another shape: a hand edit or a buggy writer
    reshaped = rewrite(package, tmp_path / "r.sccpkg", manifest=edited)
    with pytest.raises(ArtifactError, match="does not match the manifest"):
        map_arrays(reshaped, read_package(reshaped, ())[0])


def test_a_rewritten_zip_still_reads_its_arrays(package, tmp_path):
    """Another zip tool moves the member off its aligned offset: the values are unchanged."""
    moved = rewrite(package, tmp_path / "moved.sccpkg")
    arrays = map_arrays(moved, read_package(moved, ())[0])
    assert all(np.array_equal(a, b) for a, b in zip(ARRAYS, arrays, strict=True))


def test_format_2_packages_read_without_weights_and_1_is_refused(tmp_path):
    old = tmp_path / "old.sccpkg"
    library = b"library with its constants"
    manifest = {"format_version": 2, "sha256": {}, "sizes": {"model.so": len(library)}}
    manifest["sha256"]["model.so"] = hashlib.sha256(library).hexdigest()
    manifest["manifest_sha256"] = manifest_digest(manifest)
    with zipfile.ZipFile(old, "w") as archive:
        archive.writestr(MANIFEST, json.dumps(manifest))
        archive.writestr("model.so", library)
    read, entries = read_package(old, ("model.so",))
    assert entries["model.so"] == library and map_arrays(old, read) == []
    manifest["format_version"] = 1
    manifest["manifest_sha256"] = manifest_digest(manifest)
    with zipfile.ZipFile(old, "w") as archive:
        archive.writestr(MANIFEST, json.dumps(manifest))
        archive.writestr("model.so", library)
    with pytest.raises(ArtifactError, match="format version 1; this sparsecc reads versions 2, 3"):
        read_package(old, ("model.so",))
