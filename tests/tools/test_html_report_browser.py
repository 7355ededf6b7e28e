"""The HTML report as a reader sees it: rendered by headless Chromium.

`sparsecc inspect --html` on zoo:bert (exported once to an .onnx file) with a spec that makes
most weights sparse; Chromium dumps the DOM after load (the page's script marks each decoded
image) and takes a screenshot. The summary numbers are computed here with numpy from the
pruned weights of a portable export (plain MatMuls: found by scanning the graph, not through
sparsecc's matcher). Skips without Chromium on a developer's machine; fails under CI=true
(scripts/test.sh installs it).
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import sparsecc
from sparsecc.tools.cli import main
from tests.conftest import require

SPEC = "*intermediate.dense*=block(16,1)@0.9; *output.dense*=block(16,1)@0.9; *self.query*=unstructured@0.95; *self.key*=2:4"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser() -> str:
    path = next((p for p in map(shutil.which, BROWSERS) if p), None)
    require(path is not None, "needs Chromium for the browser test: apt-get install -y chromium")
    return path


def _chromium(browser: str, *args: str) -> str:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}"
    return proc.stdout


def _unfilter(kind: int, line: np.ndarray, prev: np.ndarray, channels: int) -> np.ndarray:
    """Undo one PNG row filter (RFC 2083 section 6): None, Sub, Up, Average, Paeth."""
    if kind == 0:
        return line
    if kind == 1:
        return (np.cumsum(line.reshape(-1, channels), axis=0) % 256).reshape(-1)
    if kind == 2:
        return (line + prev) % 256
    row, up = line.tolist(), prev.tolist()  # Average and Paeth run left to right: plain ints
    for i in range(len(row)):
        a = row[i - channels] if i >= channels else 0
        b, c = up[i], up[i - channels] if i >= channels else 0
        if kind == 3:
            row[i] = (row[i] + (a + b) // 2) & 0xFF
            continue
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    return np.array(row, np.int64)


def _png_pixels(data: bytes) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) to [height, width, 3]."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    channels = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * channels)
    out = np.zeros((height, width * channels), np.int64)
    prev = out[0]
    for y in range(height):
        out[y] = prev = _unfilter(int(raw[y, 0]), raw[y, 1:].astype(np.int64), prev, channels)
    return out.reshape(height, width, channels)[..., :3].astype(np.uint8)


def _matmul_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every 2-D initializer that is a MatMul's second input, as W[out, in], in graph order."""
    inits = {t.name: t for t in model.graph.initializer}
    return {
        n.input[1]: numpy_helper.to_array(inits[n.input[1]]).T
        for n in model.graph.node
        if n.op_type == "MatMul" and n.input[1] in inits and len(inits[n.input[1]].dims) == 2
    }


def _card(dom: str, key: str) -> tuple[float, str]:
    match = re.search(
        rf'id="summary-{key}" data-value="([^"]+)"><div class="label">[^<]*</div><div class="value">([^<]*)<',
        dom,
    )
    assert match, f"summary card {key} missing from the rendered DOM"
    return float(match.group(1)), match.group(2)


def test_report_renders_in_chromium(tmp_path):
    browser = _browser()
    from sparsecc.tools.commands.common import load_source

    model_path, page = tmp_path / "bert.onnx", tmp_path / "report.html"
    onnx.save(load_source("zoo:bert").proto, model_path)  # export once; the CLI and the check read it
    assert main(["inspect", str(model_path), "--spec", SPEC, "--html", str(page)]) == 0

    pruned = _matmul_weights(sparsecc.sparsify(str(model_path), SPEC, portable=True))
    assert len(pruned) == 12  # 2 layers x (q, k, v, attention out, intermediate, output)
    size = sum(w.size for w in pruned.values())
    zeros = sum(int((w == 0).sum()) for w in pruned.values())
    assert 0.7 < zeros / size < 0.9  # the spec makes most weights sparse

    dom = _chromium(browser, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    value, text = _card(dom, "sparsity")
    assert value == pytest.approx(zeros / size, abs=1e-15) and text == f"{100 * zeros / size:.2f}%"
    value, text = _card(dom, "parameters")
    assert value == size and text == f"{size:,}"
    assert _card(dom, "layers") == (12, "12")
    assert _card(dom, "bytes")[0] < 0.4 * 4 * size  # stored far below dense (exact bytes: unit test)

    bars = re.findall(r'<rect class="bar"[^>]*data-weight="([^"]+)"[^>]*data-sparsity="([^"]+)"', dom)
    assert len(bars) == len(pruned) == 12
    sparsity = sorted(1 - np.count_nonzero(w) / w.size for w in pruned.values())
    assert sorted(float(s) for _, s in bars) == pytest.approx(sparsity, abs=1e-12)
    assert "encoder.layer.0.attention.self.query.weight" in dom  # module names first
    assert "initializer val_" in dom  # the exporter's initializer name as secondary text

    decoded = re.search(r'<body data-images-decoded="(\d+)" data-images-total="(\d+)"', dom)
    assert decoded and decoded.groups() == ("12", "12"), "heatmaps did not all decode"
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    assert len(widths) == 12 and min(widths) > 0

    shot = tmp_path / "report.png"
    _chromium(browser, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    pixels = _png_pixels(shot.read_bytes())
    assert pixels.shape == (2000, 1280, 3)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"screenshot looks blank: {len(colours)} colours"
    # the chart's format colours are on screen: BSR blue (#0072B2) and CSR green (#009E73)
    for rgb in ((0x00, 0x72, 0xB2), (0x00, 0x9E, 0x73)):
        assert (pixels == rgb).all(axis=-1).sum() > 1000, f"chart colour {rgb} not rendered"
