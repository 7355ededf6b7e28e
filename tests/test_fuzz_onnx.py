"""Fuzz the ONNX load path: damaged files and models whose shapes contradict themselves.

Each case goes through `frontends.load_model(path)` and `sparsecc sparsify PATH --spec existing`
(in process). Either both work (and sparsify's onnxruntime check passes: exit 0, the output
file written and equal in outputs to the input model) or each fails with a SparseccError of
one line: exit 2, one `error:` line, no output file. Seeded (`derandomize=True`);
`SPARSECC_FUZZ_SCALE=20` runs 20x the examples (tests/fuzzing.py).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from sparsecc.backends.ort import session
from sparsecc.compiler import frontends
from sparsecc.errors import SparseccError
from sparsecc.tools import cli
from tests.fuzzing import fuzz, one_line, outcome


def two_layer_model() -> onnx.ModelProto:
    """Y = Relu(X W1 + B1) W2: two MatMuls (one weight half zeros), an Add, value_info for the middle."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((16, 8)).astype(np.float32)
    w1[:, ::2] = 0.0
    b1 = rng.standard_normal(8).astype(np.float32)
    w2 = rng.standard_normal((8, 4)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["X", "W1"], ["H"], name="fc1"),
        helper.make_node("Add", ["H", "B1"], ["HB"], name="bias1"),
        helper.make_node("Relu", ["HB"], ["R"], name="relu"),
        helper.make_node("MatMul", ["R", "W2"], ["Y"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 16])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 4])],
        initializer=[numpy_helper.from_array(a, n) for n, a in (("W1", w1), ("B1", b1), ("W2", w2))],
        value_info=[helper.make_tensor_value_info("H", TensorProto.FLOAT, [2, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    return model


ORIGINAL = two_layer_model()
FEEDS = {"X": np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32)}


def run_cli(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(list(argv))
    return code, err.getvalue()


def check_file(path, work) -> str:
    """'ok' when the model loads and sparsifies (checked), 'unchecked' when sparsify wrote the input
    unchanged because onnxruntime cannot run it (a warning says so), else the one-line error."""
    try:
        frontends.load_model(path)
        loaded = "ok"
    except SparseccError as error:
        loaded = one_line(str(error))
    out = work / "out.onnx"
    code, err = run_cli("sparsify", str(path), "--spec", "existing", "-o", str(out))
    # Warnings may come first (rich wraps them at 80 columns); an error is always one line.
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err, err
    if code == 0:
        assert out.exists() and not lines, err
        if "output check skipped" in err:  # onnxruntime cannot run the input model (e.g. IR version 14)
            with pytest.raises(session.ORT_ERRORS):
                session.run(onnx.load(str(path)), FEEDS)
            outcome("written unchecked: onnxruntime cannot run the input model")
            return "unchecked"
        # The written model computes what the input model computes (`existing` prunes nothing).
        want = session.run(onnx.load(str(path)), FEEDS)
        got = session.run(onnx.load(str(out)), FEEDS)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        outcome("sparsified, outputs match")
        return "ok"
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert not out.exists() and not list(work.glob(".out.onnx.*"))
    # load_model refusing is enough for the CLI to refuse; the CLI may also refuse later (ORT, passes).
    outcome("refused when loading" if loaded != "ok" else "refused after loading")
    return lines[0]


# -- damaged bytes ----------------------------------------------------------------------------------------


@st.composite
def damaged(draw, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite"]))
    data = bytearray(data)
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 6))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    at = draw(st.integers(0, len(data) - 1))
    run = draw(st.binary(min_size=1, max_size=16))
    data[at : at + len(run)] = run
    return bytes(data)


@fuzz(40)
@given(data=st.data())
def test_damaged_files(tmp_path_factory, data):
    work = tmp_path_factory.mktemp("bytes")
    path = work / "model.onnx"
    path.write_bytes(data.draw(damaged(ORIGINAL.SerializeToString())))
    check_file(path, work)


# -- inconsistent shapes ----------------------------------------------------------------------------------

INITIALIZERS = ["W1", "B1", "W2"]


def with_initializer_dims(model: onnx.ModelProto, name: str, dims: list[int]) -> None:
    """Declare other dims for an initializer, keeping its data: dims and data disagree (or not)."""
    tensor = next(t for t in model.graph.initializer if t.name == name)
    del tensor.dims[:]
    tensor.dims.extend(dims)


def with_initializer_array(model: onnx.ModelProto, name: str, shape: list[int]) -> None:
    """Replace an initializer by a consistent tensor of another shape (the graph may not multiply)."""
    tensor = next(t for t in model.graph.initializer if t.name == name)
    array = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    tensor.CopyFrom(numpy_helper.from_array(array, name))


def with_value_info(model: onnx.ModelProto, name: str, elem_type: int, shape: list[int]) -> None:
    del model.graph.value_info[:]
    model.graph.value_info.append(helper.make_tensor_value_info(name, elem_type, shape))


def with_io_shape(model: onnx.ModelProto, which: str, shape: list[int], elem_type: int) -> None:
    value = (model.graph.input if which == "input" else model.graph.output)[0]
    value.CopyFrom(helper.make_tensor_value_info(value.name, elem_type, shape))


dims = st.lists(st.integers(0, 20), min_size=0, max_size=3)
elem_types = st.sampled_from([TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64, TensorProto.DOUBLE])
edits = st.one_of(
    st.tuples(st.just(with_initializer_dims), st.sampled_from(INITIALIZERS), dims),
    st.tuples(st.just(with_initializer_array), st.sampled_from(INITIALIZERS), dims),
    st.tuples(st.just(with_value_info), st.sampled_from(["H", "HB", "R", "Y", "X", "W1"]), elem_types, dims),
    st.tuples(st.just(with_io_shape), st.sampled_from(["input", "output"]), dims, elem_types),
)


@fuzz(40)
@given(changes=st.lists(edits, min_size=1, max_size=2))
def test_inconsistent_shapes(tmp_path_factory, changes):
    model = onnx.ModelProto()
    model.CopyFrom(ORIGINAL)
    for edit, *args in changes:
        edit(model, *args)
    work = tmp_path_factory.mktemp("shapes")
    path = work / "model.onnx"
    path.write_bytes(model.SerializeToString())
    check_file(path, work)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (
            (with_initializer_dims, "W1", [16, 9]),
            "initializer 'W1' (dims [16, 9])",
        ),  # 128 floats, 144 declared
        ((with_initializer_array, "W2", [5, 4]), "fc2"),  # R is [2, 8]: cannot multiply by [5, 4]
        ((with_value_info, "H", TensorProto.FLOAT, [2, 9]), "(8) vs (9)"),  # MatMul gives [2, 8]
    ],
)
def test_named_inconsistencies_are_one_line_errors(tmp_path, edit, needle):
    model = onnx.ModelProto()
    model.CopyFrom(ORIGINAL)
    edit[0](model, *edit[1:])
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    line = check_file(path, tmp_path)
    assert line != "ok" and needle in line, line


def test_the_original_sparsifies_and_matches(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(ORIGINAL.SerializeToString())
    assert check_file(path, tmp_path) == "ok"
