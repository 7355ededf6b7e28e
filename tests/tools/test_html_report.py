"""The HTML report's numbers (no browser): summary, chart bars and table, checked against values
computed here with numpy from weights this test plants, on a small ONNX model written as text."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from sparsecc.tools import html_report
from sparsecc.tools.cli import main

OUT, IN, HIDDEN, ROWS = 128, 64, 32, 32  # W1[OUT, IN], W2[HIDDEN, OUT], X[ROWS, IN]
BLOCK_ZEROS = 0.75  # of W1's 16x1 blocks


def _weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    w1 = (rng.uniform(0.5, 1.5, (OUT, IN)) * rng.choice([-1, 1], (OUT, IN))).astype(np.float32)
    blocks = np.ones((OUT // 16) * IN, dtype=bool)
    blocks[rng.permutation(blocks.size)[: int(BLOCK_ZEROS * blocks.size)]] = False
    w1 *= np.repeat(blocks.reshape(OUT // 16, IN), 16, axis=0)  # 16x1 blocks: 16 rows, 1 column
    w2 = rng.standard_normal((HIDDEN, OUT)).astype(np.float32)
    w2[rng.random(w2.shape) < 0.3] = 0  # some zeros, but no rule: stays dense
    return w1, w2


def _model(path) -> tuple[np.ndarray, np.ndarray]:
    w1, w2 = _weights()
    model = onnx.parser.parse_model(
        f"""<ir_version: 10, opset_import: ["" : 18]>
        g (float[{ROWS},{IN}] X) => (float[{ROWS},{HIDDEN}] Y) {{
            H = MatMul(X, W1t)
            R = Relu(H)
            Y = MatMul(R, W2t)
        }}"""
    )
    model.graph.initializer.extend(
        [numpy_helper.from_array(w1.T.copy(), "W1t"), numpy_helper.from_array(w2.T.copy(), "W2t")]
    )
    onnx.save(model, path)
    return w1, w2


def _bsr_bytes(w: np.ndarray, block_rows: int) -> int:
    """BSR with r x 1 blocks: float32 values per kept block, an int32 column per block, int32 row pointers."""
    kept = int(np.count_nonzero(np.abs(w).reshape(w.shape[0] // block_rows, block_rows, -1).sum(axis=1)))
    return kept * (block_rows * 4 + 4) + (w.shape[0] // block_rows + 1) * 4


def _card(page: str, key: str) -> tuple[float, str]:
    match = re.search(
        rf"id='summary-{key}' data-value='([^']+)'><div class='label'>[^<]*</div><div class='value'>([^<]*)<",
        page,
    )
    assert match, f"summary card {key} missing"
    return float(match.group(1)), match.group(2)


def test_summary_numbers_match_the_weights(tmp_path):
    path = tmp_path / "mlp.onnx"
    w1, w2 = _model(path)
    data = html_report.sparsify_for_report(str(path), "W1t=block(16,1)@0.75", backend="onnxruntime")
    rows = data.result.report
    assert [(r.name, r.format) for r in rows] == [("W1t", "BSR 16x1"), ("W2t", "dense")]
    np.testing.assert_array_equal(data.weights["W1t"], w1)  # already 75% block-sparse: pruning keeps it

    summary = html_report.summarize(rows, data.weights, data.stored_bytes, w1.size + w2.size)
    zeros = (w1 == 0).sum() + (w2 == 0).sum()
    assert summary.parameters == w1.size + w2.size == summary.model_parameters
    assert summary.zeros == zeros and summary.sparsity == pytest.approx(zeros / (w1.size + w2.size), abs=0)
    assert summary.dense_bytes == 4 * (w1.size + w2.size)
    assert summary.stored_bytes == _bsr_bytes(w1, 16) + 4 * w2.size
    assert (summary.layers, summary.sparse_layers) == (2, 1)
    # onnxruntime prices by bytes: the BSR layer runs at dense speed, so the estimate is 1.0x
    assert summary.est_speedup == pytest.approx(1.0, abs=1e-12) and summary.measured_speedup is None

    page = html_report.render_html(
        "t", rows, data.weights, data.stored_bytes, model_parameters=w1.size + w2.size
    )
    value, text = _card(page, "sparsity")
    assert value == pytest.approx(zeros / (w1.size + w2.size), abs=1e-15)
    assert text == f"{100 * zeros / (w1.size + w2.size):.2f}%"
    assert _card(page, "parameters") == (w1.size + w2.size, f"{w1.size + w2.size:,}")
    assert _card(page, "bytes")[0] == _bsr_bytes(w1, 16) + 4 * w2.size
    bars = re.findall(
        r"<rect class='bar'[^>]*data-weight='([^']+)' data-format='([^']+)' data-sparsity='([^']+)'", page
    )
    assert [(n, f) for n, f, _ in bars] == [("W1t", "BSR 16x1"), ("W2t", "dense")]
    assert [float(s) for *_, s in bars] == pytest.approx([(w1 == 0).mean(), (w2 == 0).mean()], abs=1e-12)
    assert page.count("data:image/png;base64,") == 2 and "http" not in page.replace("http://www.w3.org", "")


def test_overall_speedup_weights_layers_by_size():
    rows = [
        {"name": "a", "shape": (100, 10), "format": "BSR 16x1", "est_speedup": 4.0, "runs": "BSR 16x1"},
        {"name": "b", "shape": (100, 30), "format": "CSR", "est_speedup": 2.0, "runs": "CSR"},
        {"name": "c", "shape": (100, 10), "format": "N:M 2:4", "est_speedup": 3.0, "runs": "dense"},
        {"name": "d", "shape": (100, 50), "format": "dense", "est_speedup": None, "runs": "dense"},
    ]
    # time dense 10+30+10+50 = 100 units; sparse 10/4 + 30/2 + 10 (runs dense) + 50
    assert html_report.overall_speedup(rows, "est_speedup") == pytest.approx(100 / 77.5, rel=1e-12)
    assert html_report.overall_speedup(rows, "measured_speedup") is None
    assert html_report.format_colours(["dense", "BSR 16x1", "BSR 32x1", "CSR"]) == {
        "dense": "#9e9e9e",
        "BSR 16x1": "#0072B2",
        "BSR 32x1": "#CC79A7",  # a second block size gets its own colour, not BSR's again
        "CSR": "#009E73",
    }


@pytest.mark.tvm
def test_compile_measure_html_shows_measured_speedups(tmp_path):
    path = tmp_path / "mlp.onnx"
    w1, w2 = _model(path)
    page_path, pkg = tmp_path / "report.html", tmp_path / "mlp.sccpkg"
    spec = (
        "W1t=block(16,1)@0.95"  # a twentieth of the work: sparse wins its measurement on a loaded machine too
    )
    assert (
        main(["compile", str(path), "--spec", spec, "--measure", "--html", str(page_path), "-o", str(pkg)])
        == 0
    )
    import sparsecc

    report = sparsecc.load(str(pkg)).report  # what the artifact recorded, read back independently
    [bsr] = [row for row in report if row["format"] == "BSR 16x1" and row["runs"] == "BSR 16x1"]
    assert bsr["measured_speedup"] and bsr["measured_speedup"] > 0
    page = page_path.read_text()
    sizes = {"W1t": w1.size, "W2t": w2.size}
    expected = sum(sizes.values()) / (w1.size / bsr["measured_speedup"] + w2.size)
    value, text = _card(page, "measured-speedup")
    assert value == pytest.approx(expected, rel=1e-9) and text == f"{expected:.2f}x"
    assert f"<td class='num'>{bsr['measured_speedup']:.2f}x</td>" in page  # the measured column
    assert "<th scope='col'>runs</th>" in page and "bsr_16x1" in page
