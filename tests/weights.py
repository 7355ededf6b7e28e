"""Sparse weights paired with the masked numpy array they were built from: the tests' reference.

A kernel or reference-body test that compared with the format's own `to_dense()` would pass when
`from_dense` and `to_dense` share a bug; the masked array (W * mask, computed in the test) cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Encoded:
    weight: object  # BsrWeight, CsrWeight or NmWeight
    dense: np.ndarray  # what the weight must compute: the test's own masked array

    @property
    def shape(self) -> tuple[int, int]:
        return self.dense.shape


def encode(fmt, dense: np.ndarray, *args) -> Encoded:
    """`fmt.from_dense(dense, *args)`, remembering a copy of `dense` as the reference."""
    dense = np.asarray(dense)
    return Encoded(fmt.from_dense(dense, *args), dense.copy())


def split(weight) -> tuple[object, np.ndarray]:
    """(weight to build with, reference dense array); a plain array is its own reference."""
    if isinstance(weight, np.ndarray):
        return weight, weight
    if isinstance(weight, Encoded):
        return weight.weight, weight.dense
    raise TypeError(
        f"got a bare {type(weight).__name__}: pass encode(Format, masked, ...) so the test compares with "
        "the masked array it built, not with the format's own to_dense()"
    )
