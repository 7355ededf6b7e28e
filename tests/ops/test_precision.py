"""Weight precision helpers: bf16 rounding (ties to even), dtype names, the tolerance check."""

import numpy as np
import pytest

from sparsecc.errors import SparseccError
from sparsecc.ops import BsrFormat
from sparsecc.ops.precision import (
    TOLERANCE,
    bf16_bits,
    bf16_to_float32,
    parse_dtype,
    round_to,
    round_weight,
    within_tolerance,
)


def bits(value: int) -> np.ndarray:
    return np.array([value], np.uint32).view(np.float32)


@pytest.mark.parametrize(
    ("f32_bits", "bf16"),
    [
        (0x3F800000, 0x3F80),  # 1.0 exact
        (0x3F808000, 0x3F80),  # tie, even below: stays
        (0x3F818000, 0x3F82),  # tie, odd below: rounds up to even
        (0x3F808001, 0x3F81),  # above the tie: up
        (0x3F807FFF, 0x3F80),  # below the tie: down
        (0xBF818000, 0xBF82),  # negative ties alike
        (0x7F7FFFFF, 0x7F80),  # the largest float32 rounds to infinity, as bf16 casts do
        (0x7F800000, 0x7F80),  # infinity stays
    ],
)
def test_bf16_bits_round_to_nearest_even(f32_bits, bf16):
    assert int(bf16_bits(bits(f32_bits))[0]) == bf16


def test_nan_stays_nan_and_round_trip_is_exact():
    assert np.isnan(bf16_to_float32(bf16_bits(np.array([np.nan], np.float32))))[0]
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    once = round_to(x, "bfloat16")
    np.testing.assert_array_equal(round_to(once, "bfloat16"), once)  # representable values stay
    assert np.abs(once - x).max() <= np.abs(x).max() * 2.0**-8
    np.testing.assert_array_equal(round_to(x, "float16"), x.astype(np.float16).astype(np.float32))


def test_round_weight_keeps_indices():
    w = np.random.default_rng(1).standard_normal((16, 8)).astype(np.float32)
    w[:, ::2] = 0
    sparse = BsrFormat((4, 1)).compress(w)
    rounded = round_weight(sparse, "bfloat16")
    np.testing.assert_array_equal(rounded.col_indices, sparse.col_indices)
    np.testing.assert_array_equal(rounded.to_dense(), round_to(w, "bfloat16"))
    assert round_weight(w, "float32") is w


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("BF16", "bfloat16"),
        ("bfloat16", "bfloat16"),
        (None, "float32"),
        ("fp16", "float16"),
        ("Float32", "float32"),
    ],
)
def test_parse_dtype(given, name):
    assert parse_dtype(given) == name


def test_bad_dtype_lists_the_valid_ones():
    with pytest.raises(SparseccError, match="valid dtypes: float32, bfloat16, float16"):
        parse_dtype("int8")


def test_within_tolerance_is_relative_to_the_reference_max():
    ref = np.array([10.0, -100.0, 1.0])
    ok, rel = within_tolerance(ref + 1.0, ref, "bfloat16")
    assert ok and rel == pytest.approx(0.01)
    assert not within_tolerance(ref + 3.0, ref, "bfloat16")[0]
    assert TOLERANCE["float32"] < TOLERANCE["float16"] < TOLERANCE["bfloat16"]
