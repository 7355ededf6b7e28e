"""`sparsecc search-heads`: writes a table the spec reads back; usage errors are one line, exit 2."""

import numpy as np
import onnx_ir as ir

from sparsecc.compiler import frontends
from sparsecc.models.video_dit import build_video_dit, calibration_batches
from sparsecc.sparsity.head_table import HeadTable
from sparsecc.sparsity.spec import SparsitySpec
from sparsecc.tools.cli import main
from tests.passes.video_dit_small import CONFIG, planted


def test_search_heads_writes_an_editable_table(tmp_path, capsys):
    module, inputs = build_video_dit(CONFIG)
    model, _ = frontends.resolve_model(module, inputs)
    ir.save(model, tmp_path / "dit.onnx")
    np.savez(tmp_path / "calib.npz", x=np.stack([b["x"] for b in calibration_batches(CONFIG, 2)]))
    layout = ["--frames", "4", "--frame-tokens", "16", "--text", "5"]
    out = tmp_path / "heads.yaml"
    argv = ["search-heads", str(tmp_path / "dit.onnx"), "--calibration", str(tmp_path / "calib.npz"), *layout]
    assert main([*argv, "-o", str(out)]) == 0
    table = HeadTable.from_file(out)
    found = [p for layer in table.layers for p in layer.patterns]
    expected = [p for layer in planted() for p in layer]
    assert sum(a == b for a, b in zip(found, expected)) >= 0.95 * len(expected)
    spec = SparsitySpec.parse({"attention": {"layout": CONFIG.layout, "heads": str(out)}})
    assert spec.attention.heads.layers[0].patterns == table.layers[0].patterns
    capsys.readouterr()
    assert main(["search-heads", str(tmp_path / "dit.onnx"), "--calibration", "x.npz", "-o", str(out)]) == 2
    assert "--frames and --frame-tokens" in capsys.readouterr().err
