"""session.compare: the check `sparsify` runs on every output it writes."""

import numpy as np
import onnx
import pytest

from sparsecc.backends.ort import session


def model(body: str, outputs: str = "float[4] Y") -> onnx.ModelProto:
    return onnx.parser.parse_model(
        f"""<ir_version: 10, opset_import: ["" : 23]>
        g (float[4] X) => ({outputs}) {{ {body} }}"""
    )


X = np.array([-1.0, 0.0, 4.0, np.inf], np.float32)  # sqrt: NaN, 0, 2, inf


def test_nan_and_inf_on_both_sides_agree():
    agreement = session.compare(model("Y = Sqrt(X)"), model("Y = Sqrt(X)"), {"X": X})
    assert agreement.ok and agreement.max_abs_diff == 0.0 and agreement.max_magnitude == 2.0


def test_nan_on_one_side_disagrees():
    agreement = session.compare(model("Y = Sqrt(X)"), model("Y = Abs(X)"), {"X": X})
    assert not agreement.ok and agreement.max_abs_diff == float("inf")


def test_a_small_difference_is_measured():
    x = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    agreement = session.compare(model("Y = Neg(X)"), model("Y = Abs(X)"), {"X": x}, tolerance=1e-4)
    assert agreement.max_abs_diff == pytest.approx(8.0) and agreement.relative == pytest.approx(2.0)
    assert not agreement.ok


def test_a_model_that_lost_an_output_disagrees():
    """Equal output counts are required: the first outputs agreeing is not enough, either way round."""
    two = model("Y = Abs(X)\n Z = Neg(X)", "float[4] Y, float[4] Z")
    for candidate, reference in ((model("Y = Abs(X)"), two), (two, model("Y = Abs(X)"))):
        agreement = session.compare(candidate, reference, {"X": X})
        assert not agreement.ok and agreement.max_abs_diff == float("inf")
    assert session.compare(two, two, {"X": X}).ok


def test_integer_outputs_compare_exactly():
    ints = "int64[4] Y"
    x = np.array([1, 2, 3, 4], np.float32)
    same = session.compare(model("Y = Cast<to=7>(X)", ints), model("Y = Cast<to=7>(X)", ints), {"X": x})
    assert same.ok and same.max_abs_diff == 0.0
