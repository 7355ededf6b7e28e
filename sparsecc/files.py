"""Atomic output files: a reader sees the old file or the complete new one, never a half.

Standard library only (the artifact loader uses it where neither torch nor onnx is installed).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sparsecc.errors import SparseccError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    target = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, new_file_mode())  # mkstemp makes 0600; a new file gets the user's umask
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_output_path(path: str | os.PathLike) -> Path:
    """`path` as a Path, or a one-line error when no file can be written there."""
    target = Path(path)
    if target.is_dir():
        raise SparseccError(f"output path {str(target)!r} is a directory; give a file name")
    if not target.parent.exists():
        raise SparseccError(f"output directory {str(target.parent)!r} does not exist; create it first")
    return target


def new_file_mode() -> int:
    """The mode a new file gets from open(): 0666 less the user's umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; set straight back
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def locked(lock_file: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on `lock_file` (created if missing) across processes.

    For read-modify-write of shared files (tuning records): two processes that both hold
    this around their update cannot lose each other's changes. The lock goes with the
    open file, so a process that dies releases it. Where fcntl is missing (Windows) it
    does not lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not Linux or macOS
        yield
        return
    try:
        handle = open(lock_file, "a+b")  # noqa: SIM115 - closed below, after the body ran
    except OSError as error:
        raise SparseccError(
            f"cannot create lock file {str(lock_file)!r}: {error.strerror}; is its directory writable?"
        ) from None
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
