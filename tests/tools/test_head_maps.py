"""The HTML report's attention section, from `sparsecc inspect --html` on a small video DiT with
its planted head table: the head map's cells and legend against the table, each example mask's
picture against the pattern's mask pooled here with numpy, and the measured attention maps
against the planted structure."""

from __future__ import annotations

import base64
import re

import numpy as np
import onnx_ir as ir
import pytest
import yaml

from sparsecc.compiler import frontends
from sparsecc.models.video_dit import build_video_dit, calibration_batches, planted_table
from sparsecc.sparsity.attention_patterns import HEAD_MODES, pattern_mask
from sparsecc.tools import present
from sparsecc.tools.cli import main
from tests.passes.video_dit_small import CONFIG, LAYOUT, planted
from tests.tools.test_html_report_browser import _png_pixels


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("head_maps")
    module, inputs = build_video_dit(CONFIG)
    model, _ = frontends.resolve_model(module, inputs)
    ir.save(model, folder / "dit.onnx")
    np.savez(folder / "calib.npz", x=np.stack([b["x"] for b in calibration_batches(CONFIG, 2)]))
    table = {"layers": [{"heads": layer} for layer in planted_table(CONFIG)]}
    spec = {"attention": {"layout": CONFIG.layout, "heads": table}}
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    return folder


@pytest.fixture(scope="module")
def page(files):
    path = files / "report.html"
    argv = ["inspect", str(files / "dit.onnx"), "--spec", str(files / "spec.yaml")]
    assert main([*argv, "--calibration", str(files / "calib.npz"), "--html", str(path)]) == 0
    return path.read_text()


def _images(figure_html: str) -> list[np.ndarray]:
    return [
        _png_pixels(base64.b64decode(d)) for d in re.findall(r"data:image/png;base64,([^']+)'", figure_html)
    ]


def _figures(page: str, kind: str) -> dict[str, str]:
    """Mode -> the HTML of its figure of `kind` ("mask" or "measured")."""
    found = re.finditer(rf"<figure class='{kind}' data-mode='(\w+)'.*?</figure>", page, re.S)
    return {m.group(1): m.group(0) for m in found}


def test_head_map_cells_and_legend_match_the_table(page):
    cells = re.findall(r"data-layer='(\d+)' data-head='(\d+)' data-mode='(\w+)'", page)
    expected = [(str(i), str(h), p.mode) for i, layer in enumerate(planted()) for h, p in enumerate(layer)]
    assert cells == expected
    modes = [p.mode for layer in planted() for p in layer]
    legend = dict(re.findall(r"<li data-mode='(\w+)' data-count='(\d+)'>", page))
    assert {m: int(c) for m, c in legend.items()} == {m: modes.count(m) for m in HEAD_MODES if m in modes}
    # the groups table: one row per group (skipped heads: one row per layer), heads add up per mode
    rows = re.findall(r"<tr data-mode='(\w+)' data-heads='(\d+)'>", page)
    totals = {m: sum(int(n) for mode, n in rows if mode == m) for m in legend if m != "full"}
    assert totals == {m: modes.count(m) for m in legend if m != "full"}


def test_example_masks_are_the_patterns_pooled(page):
    masks = _figures(page, "mask")
    present_modes = {p.mode for layer in planted() for p in layer} - {"skip"}
    assert set(masks) == present_modes
    first = {}
    for layer in planted():
        for p in layer:
            first.setdefault(p.mode, p)
    for mode, figure in masks.items():
        mask = pattern_mask(first[mode], LAYOUT)
        density = float(re.search(r"data-density='([^']+)'", figure).group(1))
        assert density == pytest.approx(mask.mean(), abs=1e-12)
        [pixels] = _images(figure)
        n = LAYOUT.tokens  # 69 tokens: one pixel per token pair, scaled up by 192 // 69 = 2
        assert pixels.shape == (2 * n, 2 * n, 3)
        kept = pixels[::2, ::2, 0] < 128  # dark: kept, white: dropped
        np.testing.assert_array_equal(kept, mask)


def test_measured_maps_show_the_planted_structure(page):
    measured = _figures(page, "measured")
    assert set(measured) == {p.mode for layer in planted() for p in layer} - {"skip"}
    first = {}
    for layer in planted():
        for p in layer:
            first.setdefault(p.mode, p)
    for mode in ("diag", "mdiag", "vstripe"):  # planted: most of each row's mass inside the mask
        [pixels] = _images(measured[mode])
        darkness = 1 - pixels[::2, ::2, 0] / 255.0
        mask = pattern_mask(first[mode], LAYOUT)
        latent = ~LAYOUT.is_text()
        inside = darkness[np.ix_(latent, latent)][mask[np.ix_(latent, latent)]].mean()
        outside = darkness[np.ix_(latent, latent)][~mask[np.ix_(latent, latent)]].mean()
        assert inside > 0.5 and outside < 0.05, (mode, inside, outside)


def test_attention_table_in_the_terminal(files, capsys):
    argv = ["inspect", str(files / "dit.onnx"), "--spec", str(files / "spec.yaml")]
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Attention groups" in out
    for mode in ("diag", "mdiag", "vstripe", "skip"):
        assert re.search(rf"\b{mode}\b", out)
    assert "in the weights" in out
    assert present.head_ranges([7, 0, 1, 2, 3, 9, 10]) == "0-3, 7, 9, 10"


@pytest.mark.tvm
def test_compile_reports_the_kernel_of_each_group(files, capsys):
    """One TVM compile: the artifact's attention rows name the kernel of each group, the terminal
    and the page show them, and the model (heads permuted in its weights) computes what the
    masked-dense model computes in onnxruntime."""
    import sparsecc
    from sparsecc.backends.ort import session
    from sparsecc.models.video_dit import calibration_batch
    from sparsecc.passes.attention_heads import apply_masks, attention_layers
    from tests.passes.video_dit_small import exported

    page, pkg = files / "compile.html", files / "dit.sccpkg"
    argv = ["compile", str(files / "dit.onnx"), "--spec", str(files / "spec.yaml")]
    capsys.readouterr()
    assert main([*argv, "--html", str(page), "-o", str(pkg)]) == 0
    out = capsys.readouterr().out
    compiled = sparsecc.load(str(pkg))
    groups = compiled.manifest["attention"]
    expected = {"full": "attention_cpu", "skip": None}
    for group in groups:
        kernel = expected.get(group["mode"], f"pattern_attention_{group['mode']}_cpu")
        assert group["kernel"] == kernel, group
        assert group["reorder"] == "in the weights"
        if kernel:
            assert f"<span class='kernel'>{kernel}</span>" in page.read_text() and kernel in out
    modes = [p.mode for layer in planted() for p in layer]
    assert sum(len(g["heads"]) for g in groups) == len(modes)

    masked = exported()
    for layer, patterns in zip(attention_layers(masked, LAYOUT), planted()):
        apply_masks(masked, layer.node, patterns, LAYOUT)
    x = calibration_batch(CONFIG, 1, seed=21)
    want = session.run(ir.serde.serialize_model(masked), {"x": x})[0]
    got = compiled(x)
    got = np.asarray(got[0] if isinstance(got, (list, tuple)) else got)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())
