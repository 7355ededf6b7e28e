"""Graphs we did not write: every model the `onnx` wheel ships as backend test data.

onnx/backend/test/data/{pytorch-converted,pytorch-operator,simple,light}: old IR versions and
opsets (IR 3, opset 1-9), string, int, shape and sequence inputs, models without a single weight.
Each goes through `sparsecc sparsify MODEL --spec existing` (the CLI entry point, in-process,
with the shipped inputs as --input files) and through `sparsecc.sparsify` (the pipeline's own
output, opset-converted and canonicalised); both are run by onnxruntime on the shipped inputs
and compared with onnxruntime on the unmodified model (TOLERANCE). A model either gives the
same outputs or is refused in one line; any other exception fails the test. A sample is also
compiled with the TVM backend and compared the same way; what TVM's importer does not take is
refused in one line naming the op. Models that onnxruntime itself cannot run are excluded, and
counted.

Run the whole sweep, with a table, with `python bench/onnx_testdata_sweep.py [--compile]`.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.backend.test
import pytest
from onnx import numpy_helper

import sparsecc
from sparsecc.backends.ort import session
from sparsecc.errors import SparseccError, UnsupportedOpError
from sparsecc.tools import cli

DATA = onnx.backend.test.__file__.rsplit("/", 1)[0] + "/data"
DIRS = ("pytorch-converted", "pytorch-operator", "simple", "light")
# max |got - want| / max(1, max |want|) over all outputs; float32 models whose outputs are O(1),
# and the pipeline only reorganises them (opset conversion, Gemm -> MatMul + Add)
TOLERANCE = 1e-4

# Why onnxruntime 1.31 cannot run the rest (as of 2026-12-03): kernels for opset-1/6 versions of
# AveragePool, BatchNormalization, Add, Mul, Gemm, PRelu, Pow were removed; the gradient models use
# the training-only Gradient op; StringNormalizer needs the en_US.UTF-8 locale (absent here).
NOT_RUNNABLE_AT_MOST = 40

# compiled with TVM as well: a sample that keeps the module within its time budget (Conv, pooling,
# pads, Gemm, integer inputs, sequences, a whole CNN), and models TVM's importer does not take
COMPILED = (
    "pytorch-converted/test_Conv2d_groups",
    "pytorch-converted/test_Linear_no_bias",
    "pytorch-converted/test_MaxPool2d_stride_padding_dilation",
    "pytorch-converted/test_ConstantPad2d",
    "pytorch-operator/test_operator_index",
    "simple/test_sequence_model3",  # SequenceInsert at -1: before the last tensor (TVM 0.24 appends)
    "light/light_squeezenet",
)
TVM_REFUSES = {
    "simple/test_expand_shape_model1": "the TVM backend cannot compile Expand to a shape given at run time",
    "simple/test_sequence_model6": "TVM's ONNX importer cannot convert SequenceLength here",
    "simple/test_strnorm_model_nostopwords_nochangecase": "the TVM backend cannot take input 'x': it holds strings",
}
# `sparsify --spec existing` refuses none of the models onnxruntime runs (name -> words of the refusal)
REFUSED: dict[str, str] = {}


def _index(path) -> int:
    return int(path.stem.rsplit("_", 1)[1])


def _light_input(value: onnx.ValueInfoProto) -> np.ndarray:
    """What onnx's backend runner feeds the `light` models: arange / n in the input's shape."""
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in value.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def _cases() -> list[tuple[str, str, dict[str, np.ndarray]]]:
    """(name, model path, inputs by graph input name) for the first data set of every model."""
    from pathlib import Path

    found = []
    for folder in DIRS:
        root = Path(DATA) / folder
        if folder == "light":  # a model file; inputs made as onnx's runner makes them
            for path in sorted(root.glob("*.onnx")):
                graph = onnx.load(str(path)).graph
                initializers = {t.name for t in graph.initializer}
                feeds = {v.name: _light_input(v) for v in graph.input if v.name not in initializers}
                found.append((f"{folder}/{path.stem}", str(path), feeds))
            continue
        for case in sorted(p for p in root.iterdir() if (p / "model.onnx").exists()):
            graph = onnx.load(str(case / "model.onnx")).graph
            initializers = {t.name for t in graph.initializer}
            names = [v.name for v in graph.input if v.name not in initializers]
            files = sorted((case / "test_data_set_0").glob("input_*.pb"), key=_index)
            tensors = [onnx.TensorProto.FromString(p.read_bytes()) for p in files]
            feeds = {t.name or name: numpy_helper.to_array(t) for t, name in zip(tensors, names)}
            found.append((f"{folder}/{case.name}", str(case / "model.onnx"), feeds))
    return found


CASES = _cases()
REFERENCE: dict[str, tuple[list[np.ndarray] | None, str]] = {}


def reference(name: str, path: str, feeds) -> list[np.ndarray]:
    """onnxruntime on the unmodified model (skips a model it cannot run: counted below)."""
    if name not in REFERENCE:
        REFERENCE[name] = session.try_run(path, feeds)
    outputs, why = REFERENCE[name]
    if outputs is None:
        pytest.skip(f"onnxruntime cannot run the input model: {why}")
    return outputs


def difference(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    """Largest output difference relative to max(1, |want|); NaN against NaN counts as equal."""
    assert len(got) == len(want)
    return max(
        (session.output_difference(g, w) / max(1.0, session._finite_magnitude(w)) for g, w in zip(got, want)),
        default=0.0,
    )


def test_onnxruntime_runs_all_but_the_known_few():
    for name, path, feeds in CASES:
        REFERENCE.setdefault(name, session.try_run(path, feeds))
    excluded = [name for name, _, _ in CASES if REFERENCE[name][0] is None]
    assert len(CASES) == 149
    assert len(excluded) <= NOT_RUNNABLE_AT_MOST, excluded
    assert "pytorch-converted/test_ConstantPad2d" not in excluded  # the IR-3 model sparsecc used to refuse


@pytest.mark.parametrize(("name", "path", "feeds"), CASES, ids=[case[0] for case in CASES])
def test_sparsify_existing_gives_the_same_outputs_or_one_line(name, path, feeds, tmp_path, capsys):
    want = reference(name, path, feeds)
    out = tmp_path / "out.onnx"
    argv = ["sparsify", path, "--spec", "existing", "-o", str(out)]
    for index, (input_name, array) in enumerate(feeds.items()):
        np.save(tmp_path / f"{index}.npy", array.astype(str) if array.dtype == object else array)
        argv += ["--input", f"{input_name}={tmp_path / f'{index}.npy'}"]
    code = cli.main(argv)  # anything but a SparseccError propagates and fails the test
    stderr = capsys.readouterr().err
    if name in REFUSED:  # a refusal: one line that says why
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and REFUSED[name] in lines[0], stderr
        assert not out.exists()
        with pytest.raises(SparseccError, match=REFUSED[name]):
            sparsecc.sparsify(path, "existing")
        return
    assert code == 0 and "Traceback" not in stderr
    assert difference(session.run(str(out), feeds), want) <= TOLERANCE

    # the pipeline's own output (what sparsify writes once a weight gets sparser)
    proto = sparsecc.sparsify(path, "existing")
    assert proto.opset_import[0].version == 23
    onnx.checker.check_model(proto)
    assert difference(session.run(proto, feeds), want) <= TOLERANCE


@pytest.mark.tvm
@pytest.mark.parametrize("name", COMPILED)
def test_compile_with_tvm_gives_the_same_outputs(name):
    pytest.importorskip("tvm")
    _, path, feeds = next(case for case in CASES if case[0] == name)
    want = reference(name, path, feeds)
    compiled = sparsecc.compile(path, "existing", example_inputs=feeds, target="cpu")
    got = compiled(**feeds)
    got = list(got) if isinstance(got, tuple) else [got]
    assert difference([np.asarray(g) for g in got], want) <= TOLERANCE


@pytest.mark.tvm
@pytest.mark.parametrize("name", TVM_REFUSES)
def test_what_tvm_cannot_import_is_one_line_naming_the_op(name):
    pytest.importorskip("tvm")
    _, path, feeds = next(case for case in CASES if case[0] == name)
    with pytest.raises(UnsupportedOpError) as caught:
        sparsecc.compile(path, "existing", example_inputs=feeds, target="cpu")
    message = str(caught.value)
    assert message.startswith(TVM_REFUSES[name]) and "\n" not in message
    assert "use `sparsecc sparsify` (ONNX out)" in message
