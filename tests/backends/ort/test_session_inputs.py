"""Synthetic inputs from the declared input types, and onnxruntime's failures as one line."""

import numpy as np
import onnx
import pytest

from sparsecc.backends.ort import session
from sparsecc.errors import InputError


def model(inputs: str, body: str, outputs: str) -> onnx.ModelProto:
    return onnx.parser.parse_model(f"""<ir_version: 10, opset_import: ["" : 23]>
        g ({inputs}) => ({outputs}) {{ {body} }}""")


def test_inputs_follow_the_declared_types_and_static_dims():
    proto = model(
        "float[2, N] A, float16[3] B, int64[4] C, uint8[2] D, bool[2] E",
        "Y = Identity(A) Z = Identity(B) U = Identity(C) V = Identity(D) W = Identity(E)",
        "float[2, N] Y, float16[3] Z, int64[4] U, uint8[2] V, bool[2] W",
    )
    feeds = session.random_inputs(proto)
    assert {k: (v.shape, v.dtype.name) for k, v in feeds.items()} == {
        "A": ((2, 1), "float32"),  # dynamic dims get 1
        "B": ((3,), "float16"),
        "C": ((4,), "int64"),
        "D": ((2,), "uint8"),
        "E": ((2,), "bool"),
    }
    assert set(np.unique(feeds["C"])) <= {0, 1} and feeds["E"].all()
    outputs, why = session.try_run(proto, feeds)
    assert why == "" and all(np.array_equal(o, feeds[k]) for o, k in zip(outputs, "ABCDE"))
    np.testing.assert_array_equal(session.random_inputs(proto)["A"], feeds["A"])  # seeded


def test_a_string_input_cannot_be_made_up():
    proto = model("float[2] X, string[2] S", "Y = Identity(X) T = Identity(S)", "float[2] Y, string[2] T")
    with pytest.raises(InputError, match=r"sparsecc cannot make up input 'S' \(a string tensor\)"):
        session.random_inputs(proto)


def test_try_run_says_why_in_one_line_without_cpp_locations():
    proto = model("float[4, 4] X, int64[1] shape", "Y = Reshape(X, shape)", "float[?] Y")
    feeds = {"X": np.ones((4, 4), np.float32), "shape": np.array([3], np.int64)}
    outputs, why = session.try_run(proto, feeds)
    assert outputs is None and why.startswith("onnxruntime fails on these inputs: Non-zero status code")
    assert "Reshape" in why and "/onnxruntime_src/" not in why and "\n" not in why
    (y,), why = session.try_run(proto, {**feeds, "shape": np.array([16], np.int64)})
    assert why == "" and y.shape == (16,)

    broken = model("float[4] X", "Y = Frobnicate(X)", "float[4] Y")
    outputs, why = session.try_run(broken, {"X": np.ones(4, np.float32)})
    assert outputs is None and why.startswith("onnxruntime cannot load it:") and "Frobnicate" in why
