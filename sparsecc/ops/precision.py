"""Weight precision: the dtypes a compile may store weights in, and exact conversions to them.

The contract (see `compile(..., dtype=)`): the IR and any sparsified ONNX keep float32; a
backend asked for "bfloat16" or "float16" rounds the weights of the layers its kernels run
(linear and Conv) to that dtype once, at compile time, and computes in float32
(accumulation always float32). Numpy has no bfloat16: bf16 values travel as their uint16
bits (`bf16_bits`), and `round_to` gives a float32 array holding exactly the values the
narrow dtype can represent, so a kernel may store either form without further rounding.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparsecc.errors import SparseccError

DTYPES = ("float32", "bfloat16", "float16")
ALIASES = {
    "fp32": "float32",
    "f32": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "f16": "float16",
    "half": "float16",
}

# Tolerance of a layer's or a model's output against a float32 reference, relative to the
# reference's max |value| (max |y - ref| <= TOLERANCE * max |ref|). bf16 keeps 8 bits of
# mantissa (relative rounding 2^-9 = 0.2%); a K-long dot product of rounded weights (and, in the
# bf16 dot kernels, rounded activations) errs like a random walk, ~0.2% x a few for K <= 4096,
# and a model's layers add up: 2e-2 leaves a margin that still catches a wrong index or pairing.
TOLERANCE = {"float32": 1e-4, "bfloat16": 2e-2, "float16": 5e-3}


def parse_dtype(value) -> str:
    """The canonical dtype name for `value` (case-insensitive, "bf16"-style aliases accepted)."""
    if value is None:
        return "float32"
    name = str(getattr(value, "name", value)).strip().lower()
    name = ALIASES.get(name, name)
    if name not in DTYPES:
        raise SparseccError(f"unknown dtype {value!r}; valid dtypes: {', '.join(DTYPES)} (default float32)")
    return name


def bf16_bits(array: np.ndarray) -> np.ndarray:
    """The bfloat16 bits (uint16) nearest to float32 `array`, rounding to nearest even.

    NaN stays NaN (its quiet bit is forced), infinities stay infinite.
    """
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounded = ((bits.astype(np.uint64) + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(array)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bits (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_to(array: np.ndarray, dtype: str) -> np.ndarray:
    """float32 `array` rounded to the nearest `dtype` values, returned as float32."""
    if dtype == "float32":
        return np.asarray(array, dtype=np.float32)
    if dtype == "bfloat16":
        return bf16_to_float32(bf16_bits(array))
    if dtype == "float16":
        return np.asarray(array, dtype=np.float32).astype(np.float16).astype(np.float32)
    raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")


def round_weight(weight, dtype: str):
    """A dense W or a SparseWeight with its values rounded to `dtype` (indices unchanged)."""
    if dtype == "float32":
        return weight
    if isinstance(weight, np.ndarray):
        return round_to(weight, dtype)
    return dataclasses.replace(weight, values=round_to(weight.values, dtype))


def within_tolerance(y: np.ndarray, reference: np.ndarray, dtype: str) -> tuple[bool, float]:
    """Whether `y` is within TOLERANCE[dtype] of `reference`, and its error relative to max |reference|."""
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    error = float(np.abs(np.asarray(y, np.float64) - reference).max()) if reference.size else 0.0
    relative = error / scale if scale else error
    return relative <= TOLERANCE[dtype], relative
