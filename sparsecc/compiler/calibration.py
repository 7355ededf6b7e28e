"""Calibration data from the user: an .npz file or an iterable of input batches, checked once.

An .npz holds one array per graph input, each with the batches stacked on a new leading
axis ([N, *input_shape]); an iterable yields dicts {input name: array} or tuples in the
graph's input order (numpy arrays or torch tensors).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from sparsecc.errors import InputError
from sparsecc.passes.context import Calibration


def _as_numpy(value) -> np.ndarray:
    if type(value).__module__.split(".")[0] == "torch":
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value)


def _from_npz(path: Path, names: list[str]) -> list[dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise InputError(f"cannot read calibration data from '{path}': {error}") from error
    unknown = sorted(set(arrays) - set(names))
    missing = [n for n in names if n not in arrays]
    if unknown or missing:
        raise InputError(
            f"calibration file '{path}' holds {sorted(arrays)}, the model's inputs are {names}; "
            "store one array per input, batches stacked on axis 0"
        )
    counts = {len(arrays[n]) for n in names}
    if len(counts) != 1:
        raise InputError(
            f"calibration file '{path}': the inputs hold different numbers of batches {sorted(counts)}"
        )
    return [{n: arrays[n][i] for n in names} for i in range(counts.pop())]


def load_calibration(source, names: list[str]) -> Calibration | None:
    """A `Calibration` from `source` (None, a Calibration, an .npz path, or an iterable of batches)."""
    if source is None or isinstance(source, Calibration):
        return source
    if isinstance(source, (str, os.PathLike)):
        batches = _from_npz(Path(source), names)
    else:
        try:
            items = list(source)
        except TypeError:
            raise InputError(
                f"calibration must be an .npz path or an iterable of input batches, not {type(source).__name__}"
            ) from None
        batches = []
        for index, item in enumerate(items):
            if isinstance(item, dict):
                batch = {k: _as_numpy(v) for k, v in item.items()}
            elif isinstance(item, (tuple, list)):
                if len(item) != len(names):
                    raise InputError(
                        f"calibration batch {index} has {len(item)} arrays, the model takes {names}"
                    )
                batch = {n: _as_numpy(v) for n, v in zip(names, item)}
            else:
                batch = {names[0]: _as_numpy(item)} if len(names) == 1 else None
                if batch is None:
                    raise InputError(
                        f"calibration batch {index} must be a dict or a tuple of {len(names)} arrays"
                    )
            if sorted(batch) != sorted(names):
                raise InputError(
                    f"calibration batch {index} holds {sorted(batch)}, the model's inputs are {names}"
                )
            batches.append(batch)
    if not batches:
        raise InputError("calibration data holds no batches")
    return Calibration(tuple(batches))
