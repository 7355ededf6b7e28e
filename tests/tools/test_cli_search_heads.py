"""`sparsecc search-heads`: writes a table the spec reads back; usage errors are one line, exit 2."""

import numpy as np
import onnx_ir as ir
import pytest

from sparsecc.compiler import frontends
from sparsecc.models.video_dit import build_video_dit, calibration_batches
from sparsecc.sparsity.head_table import HeadTable
from sparsecc.sparsity.spec import SparsitySpec
from sparsecc.tools.cli import main
from tests.passes.video_dit_small import CONFIG, LAYOUT, planted


@pytest.fixture(scope="module")
def dit(tmp_path_factory):
    """The small video DiT saved as ONNX (exported once for the module)."""
    module, inputs = build_video_dit(CONFIG)
    model, _ = frontends.resolve_model(module, inputs)
    path = tmp_path_factory.mktemp("dit") / "dit.onnx"
    ir.save(model, path)
    return path


def test_search_heads_writes_an_editable_table(tmp_path, capsys, dit):
    np.savez(tmp_path / "calib.npz", x=np.stack([b["x"] for b in calibration_batches(CONFIG, 2)]))
    layout = ["--frames", "4", "--frame-tokens", "16", "--text", "5"]
    out = tmp_path / "heads.yaml"
    argv = ["search-heads", str(dit), "--calibration", str(tmp_path / "calib.npz"), *layout]
    assert main([*argv, "-o", str(out)]) == 0
    table = HeadTable.from_file(out)
    found = [p for layer in table.layers for p in layer.patterns]
    expected = [p for layer in planted() for p in layer]
    assert sum(a == b for a, b in zip(found, expected)) >= 0.95 * len(expected)
    spec = SparsitySpec.parse({"attention": {"layout": CONFIG.layout, "heads": str(out)}})
    assert spec.attention.heads.layers[0].patterns == table.layers[0].patterns
    capsys.readouterr()
    assert main(["search-heads", str(dit), "--calibration", "x.npz", "-o", str(out)]) == 2
    assert "--frames and --frame-tokens" in capsys.readouterr().err


def test_measured_costs_time_the_kernels_here(tmp_path, dit):
    from sparsecc.backends.tvm import pattern_costs

    np.savez(tmp_path / "calib.npz", x=np.stack([b["x"] for b in calibration_batches(CONFIG, 1)]))
    spec = tmp_path / "attention.yaml"
    spec.write_text(f"attention: {{layout: {CONFIG.layout}, modes: [diag], eps: 100}}\n".replace("'", ""))
    out = tmp_path / "heads.yaml"
    argv = ["search-heads", str(dit), "--calibration", str(tmp_path / "calib.npz")]
    assert main([*argv, "--spec", str(spec), "--measured-costs", "-o", str(out)]) == 0
    assert {p.mode for layer in HeadTable.from_file(out).layers for p in layer.patterns} == {"diag"}
    timed = [key for key in pattern_costs._measured if key[0] == LAYOUT and key[1].mode == "diag"]
    assert timed, "the diag kernel was not timed"
