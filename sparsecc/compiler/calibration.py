"""Calibration data from the user, streamed: an .npz file or an iterable of input batches.

An .npz holds one array per graph input, each with the batches stacked on a new leading axis
([N, *input_shape]); it is read batch by batch: each member's .npy header (`numpy.lib.format`)
gives the shape and dtype, then one batch's bytes at a time come out of the zip member, never
the whole array. An iterable yields dicts {input name: array} or tuples in the graph's input
order (numpy arrays or torch tensors); a list or a torch DataLoader is iterated again for each
pass over the data, a one-shot iterator (a generator) is read once and its batches kept in a
temporary folder for the later passes. Names, dtypes and static dims are checked against the
graph's inputs: the .npz's when it is opened, an iterable's batch by batch as it is read.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx_ir as ir
from numpy.lib import format as npy_format

from sparsecc.backends.base import is_torch
from sparsecc.errors import InputError
from sparsecc.passes.context import Calibration

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class InputSignature:
    """What the graph takes as one input: dtype and dims (None: any size); None: not checked."""

    name: str
    dtype: np.dtype | None = None
    dims: tuple[int | None, ...] | None = None

    @classmethod
    def of(cls, value: str | ir.Value) -> InputSignature:
        if isinstance(value, str):
            return cls(value)
        dtype = np.dtype(value.dtype.numpy()) if value.dtype is not None else None
        dims = None if value.shape is None else tuple(d if isinstance(d, int) else None for d in value.shape)
        return cls(value.name, dtype, dims)

    def problem(self, dtype: np.dtype, shape: tuple[int, ...]) -> str | None:
        """Why an array of this dtype and shape cannot feed this input (None when it can)."""
        if self.dtype is not None and dtype != self.dtype:
            return f"input '{self.name}' is {dtype}, the model takes {self.dtype}"
        if self.dims is not None and (
            len(shape) != len(self.dims) or any(d is not None and d != s for d, s in zip(self.dims, shape))
        ):
            want = "[" + ", ".join("?" if d is None else str(d) for d in self.dims) + "]"
            return f"input '{self.name}' has shape {list(shape)}, the model takes {want}"
        return None


def load_calibration(source, inputs: Sequence[str | ir.Value]) -> Calibration | None:
    """A streaming `Calibration` from `source`: None, a Calibration, an .npz path, or an iterable
    of batches; `inputs` are the graph's inputs (or just their names: then dtypes and shapes are
    not checked)."""
    if source is None or isinstance(source, Calibration):
        return source
    signature = [InputSignature.of(value) for value in inputs]
    if isinstance(source, (str, os.PathLike)):
        return _NpzBatches(Path(source), signature).calibration()
    if not isinstance(source, Iterable) or isinstance(source, (bytes, dict, np.ndarray)):
        raise InputError(
            f"calibration must be an .npz path or an iterable of input batches, not {type(source).__name__}"
        )
    checker = _BatchChecker(signature)
    if isinstance(source, Iterator):
        return Calibration(_Spool(source, checker).read, "calibration batches (read once, kept on disk)")
    return Calibration(lambda: checker.each(source), "calibration batches")


def _as_numpy(value) -> np.ndarray:
    if is_torch(value):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value)


@dataclasses.dataclass(frozen=True)
class _BatchChecker:
    """Turns each item of an iterable into a checked batch {input name: array}."""

    signature: list[InputSignature]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.signature]

    def each(self, items: Iterable) -> Iterator[Batch]:
        count = 0
        for count, item in enumerate(items, start=1):
            yield self.check(count - 1, item)
        if count == 0:
            raise InputError("calibration data holds no batches")

    def check(self, index: int, item) -> Batch:
        names = self.names
        if isinstance(item, dict):
            batch = {k: _as_numpy(v) for k, v in item.items()}
        elif isinstance(item, (tuple, list)):
            if len(item) != len(names):
                raise InputError(
                    f"calibration batch {index} has {len(item)} arrays, the model takes {names} "
                    "(a DataLoader of (inputs, labels) pairs: give one that yields the inputs only)"
                )
            batch = {n: _as_numpy(v) for n, v in zip(names, item)}
        elif len(names) == 1:
            batch = {names[0]: _as_numpy(item)}
        else:
            raise InputError(f"calibration batch {index} must be a dict or a tuple of {len(names)} arrays")
        if sorted(batch) != sorted(names):
            raise InputError(
                f"calibration batch {index} holds {sorted(batch)}, the model's inputs are {names}"
            )
        for spec in self.signature:
            problem = spec.problem(batch[spec.name].dtype, batch[spec.name].shape)
            if problem:
                raise InputError(f"calibration batch {index}: {problem}")
        return batch


class _Spool:
    """A one-shot iterator, read once: each batch also goes to a temporary folder as .npy files,
    and later passes read them back from there one batch at a time."""

    def __init__(self, iterator: Iterator, checker: _BatchChecker):
        self._iterator, self._checker = iterator, checker
        self._folder: tempfile.TemporaryDirectory | None = None  # removed with this object
        self._count: int | None = None  # batches, once the iterator is exhausted

    def read(self) -> Iterator[Batch]:
        if self._count is not None:
            return self._replay()
        if self._folder is not None:
            raise RuntimeError("a one-shot calibration iterator was read twice at once")
        self._folder = tempfile.TemporaryDirectory(prefix="sparsecc-calibration-")
        return self._first_pass()

    def _path(self, index: int, slot: int) -> Path:
        return Path(self._folder.name) / f"{index}-{slot}.npy"

    def _first_pass(self) -> Iterator[Batch]:
        count = 0
        for count, batch in enumerate(self._checker.each(self._iterator), start=1):
            for slot, name in enumerate(self._checker.names):
                np.save(self._path(count - 1, slot), batch[name], allow_pickle=False)
            yield batch
        self._count = count

    def _replay(self) -> Iterator[Batch]:
        for index in range(self._count):
            yield {name: np.load(self._path(index, slot)) for slot, name in enumerate(self._checker.names)}


@dataclasses.dataclass(frozen=True)
class _Member:
    """One .npy array of the archive: where its data starts, its dtype and shape."""

    name: str  # archive member
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def batch_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize


class _NpzBatches:
    """An .npz read batch by batch (headers checked once, when it is opened)."""

    def __init__(self, path: Path, signature: list[InputSignature]):
        self.path = path
        names = [s.name for s in signature]
        members = self._read_headers()
        unknown, missing = sorted(set(members) - set(names)), [n for n in names if n not in members]
        if unknown or missing:
            raise InputError(
                f"calibration file '{path}' holds {sorted(members)}, the model's inputs are {names}; "
                "store one array per input, batches stacked on axis 0"
            )
        self.members = [members[n] for n in names]
        counts = {m.shape[0] if m.shape else 0 for m in self.members}
        if len(counts) != 1:
            raise InputError(
                f"calibration file '{path}': the inputs hold different numbers of batches {sorted(counts)}"
            )
        self.count = counts.pop()
        if self.count == 0:
            raise InputError(f"calibration file '{path}' holds no batches (axis 0 of its arrays is empty)")
        for spec, member in zip(signature, self.members):
            problem = spec.problem(member.dtype, member.shape[1:])
            if problem:
                raise InputError(f"calibration file '{path}': {problem} (one batch: axis 0 dropped)")

    def calibration(self) -> Calibration:
        return Calibration(self.batches, f"'{self.path}'", self.count)

    def _read_headers(self) -> dict[str, _Member]:
        try:
            with zipfile.ZipFile(self.path) as archive:
                return dict(self._header(archive, info) for info in archive.infolist())
        except FileNotFoundError as error:
            raise InputError(f"cannot read calibration data from '{self.path}': {error.strerror}") from None
        except (OSError, zipfile.BadZipFile, EOFError) as error:
            raise InputError(
                f"cannot read calibration data from '{self.path}': not an .npz archive ({error})"
            ) from None

    def _header(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[str, _Member]:
        if not info.filename.endswith(".npy"):
            raise InputError(f"calibration file '{self.path}': member {info.filename!r} is not an .npy array")
        with archive.open(info) as stream:
            shape, fortran_order, dtype = _read_header(stream, self.path, info.filename)
        if dtype.hasobject or fortran_order:
            what = "Python objects" if dtype.hasobject else "Fortran-ordered data"
            raise InputError(
                f"calibration file '{self.path}': {info.filename!r} holds {what}; store plain C-ordered arrays"
            )
        return info.filename[: -len(".npy")], _Member(info.filename, dtype, tuple(shape))

    def batches(self) -> Iterator[Batch]:
        with zipfile.ZipFile(self.path) as archive:
            streams = [archive.open(m.name) for m in self.members]
            try:
                for stream, member in zip(streams, self.members):
                    _read_header(stream, self.path, member.name)  # to the first batch
                for index in range(self.count):
                    yield {
                        member.name[: -len(".npy")]: self._read_batch(stream, member, index)
                        for stream, member in zip(streams, self.members)
                    }
            finally:
                for stream in streams:
                    stream.close()

    def _read_batch(self, stream, member: _Member, index: int) -> np.ndarray:
        data = stream.read(member.batch_bytes)
        if len(data) != member.batch_bytes:
            raise InputError(f"calibration file '{self.path}': {member.name!r} ends inside batch {index}")
        return np.frombuffer(data, dtype=member.dtype).reshape(member.shape[1:])


def _read_header(stream, path: Path, member: str):
    """(shape, fortran_order, dtype) from an .npy stream positioned at its start; leaves it at the data."""
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            return npy_format.read_array_header_1_0(stream)
        if version == (2, 0):
            return npy_format.read_array_header_2_0(stream)
        raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
    except ValueError as error:
        raise InputError(
            f"calibration file '{path}': {member!r} is not a readable .npy array ({error})"
        ) from None
