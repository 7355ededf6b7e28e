"""Atomic output files."""

import os

import pytest

from sparsecc import files
from sparsecc.errors import SparseccError


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_new_files_get_the_users_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        files.write_bytes(tmp_path / "out.onnx", b"data")
    finally:
        os.umask(old)
    assert (tmp_path / "out.onnx").read_bytes() == b"data"
    assert (tmp_path / "out.onnx").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_write_leaves_neither_a_half_file_nor_a_temporary(tmp_path):
    target = tmp_path / "out.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), files.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx"]


def test_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(SparseccError, match="does not exist; create it first"):
        files.write_bytes(tmp_path / "nope" / "out.onnx", b"data")
