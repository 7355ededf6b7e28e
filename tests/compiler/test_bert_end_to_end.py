"""Issue 2's must-shows on a transformers BertModel (small config, dynamo export)."""

import subprocess
import sys

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import sparsecc
from sparsecc.backends.ort import session
from sparsecc.compiler import frontends
from sparsecc.ops import NmWeight
from sparsecc.sparsity.detect import conforms_nm
from tests.hf_bert import make_hf_bert, prune_hf_bert

pytestmark = pytest.mark.filterwarnings("ignore")


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "sparsecc.tools.cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def pruned_bert(tmp_path_factory):
    """The pre-pruned BertModel exported to ONNX, and its inputs."""
    model, inputs = make_hf_bert()
    prune_hf_bert(model)
    ir_model, feeds = frontends.resolve_model(model, inputs)
    path = tmp_path_factory.mktemp("bert") / "model.onnx"
    ir.save(ir_model, path)
    return path, feeds


def sparse_nodes(proto):
    return {n.op_type for n in proto.graph.node if n.domain == "sparsecc"}, [
        n for n in proto.graph.node if n.domain == "sparsecc"
    ]


def test_sparsify_existing_keeps_outputs_and_halves_size(pruned_bert, tmp_path):
    path, feeds = pruned_bert
    out = tmp_path / "out.onnx"
    proc = cli("sparsify", str(path), "--spec", "existing", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    proto = onnx.load(out)
    kinds, nodes = sparse_nodes(proto)
    assert kinds == {"BsrMatMul", "NmMatMul"}
    # prune_hf_bert: 2 layers x (query, key, value, attention output) as 2:4, 2 layers x 2 FFN weights
    # as 1x16 blocks; "existing" finds every one of them
    by_kind = {k: sum(n.op_type == k for n in nodes) for k in kinds}
    assert by_kind == {"NmMatMul": 8, "BsrMatMul": 4}
    for node in nodes:
        if node.op_type == "BsrMatMul":
            assert list(next(a for a in node.attribute if a.name == "block").ints) == [1, 16]
    agreement = session.compare(proto, onnx.load(path), feeds)
    assert agreement.max_abs_diff <= 1e-4 * agreement.max_magnitude
    assert out.stat().st_size <= 0.5 * path.stat().st_size


def test_inspect_reports_blocks_and_two_four(pruned_bert):
    path, _ = pruned_bert
    proc = cli("inspect", str(path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    ffn = [line for line in lines if "intermediate.dense.weight" in line]
    assert ffn and all("block 1x16 @ 90%" in line for line in ffn)
    query = [line for line in lines if "attention.self.query.weight" in line]
    assert query and all("2:4" in line for line in query)


def test_torch_module_with_spec_matches_portable_and_patterns_hold():
    model, inputs = make_hf_bert()
    spec = "*intermediate*=block(1,16)@0.9; *attention.self*=2:4"
    sparse = sparsecc.sparsify(model, spec, example_inputs=inputs)
    portable = sparsecc.sparsify(model, spec, example_inputs=inputs, portable=True)
    assert not any(n.domain == "sparsecc" for n in portable.graph.node)
    feeds = frontends.resolve_model(model, inputs)[1]
    agreement = session.compare(sparse, portable, feeds, tolerance=1e-5)
    assert agreement.ok, agreement
    # every selected weight satisfies its pattern exactly
    from sparsecc import ops

    sparse_ir = ir.serde.deserialize_model(sparse)
    seen = {}
    for node in sparse_ir.graph:
        if node.domain != "sparsecc":
            continue
        weight = ops.weight_from_node(node)
        w = weight.to_dense()
        name = node.name
        if isinstance(weight, NmWeight):
            assert (weight.n, weight.m) == (2, 4) and conforms_nm(w, 2, 4)
            seen.setdefault("nm", []).append(name)
        else:
            blocks = np.any(w.reshape(w.shape[0], w.shape[1] // 16, 16) != 0, axis=2)
            assert 1 - blocks.mean() == pytest.approx(0.9, abs=1.0 / blocks.size)
            seen.setdefault("bsr", []).append(name)
    assert len(seen["nm"]) == 6 and len(seen["bsr"]) == 2
