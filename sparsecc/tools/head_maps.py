"""The attention section of the HTML report: which pattern each head runs, and what it looks like.

- A head-pattern map: a grid of layers x heads coloured by mode (inline SVG, each cell labelled
  with the mode's letter too), with a legend that counts the heads of each mode.
- Per mode present, an example mask: the pattern of the first head of that mode, on the model's
  token layout, pooled into tiles like the weight heatmaps (dark = kept).
- With calibration data, next to each mask: the attention that head measured on the first
  calibration batch in the dense model (before fuse-heads), each row scaled to its largest
  probability so the structure shows whatever the row's spread.
- The groups that run: layer, mode, heads, density (FLOP share of dense attention), kernel.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx_ir as ir

from sparsecc.passes.attention_heads import attention_layers
from sparsecc.passes.layer_inputs import session_with_outputs
from sparsecc.sparsity.attention_patterns import HEAD_MODES, attention_probs, pattern_mask
from sparsecc.sparsity.head_table import METADATA_KEY, HeadTable
from sparsecc.tools.heatmaps import density_grid, grid_png, pooled
from sparsecc.tools.present import head_ranges

# Okabe-Ito colours (colour-blind safe), one per mode; full is grey, skip near-white.
MODE_COLOURS = {
    "full": "#9e9e9e",
    "diag": "#0072B2",
    "mdiag": "#E69F00",
    "vstripe": "#009E73",
    "blocks": "#CC79A7",
    "skip": "#f0f2f4",
}
MODE_LETTERS = {"full": "F", "diag": "D", "mdiag": "M", "vstripe": "V", "blocks": "B", "skip": "S"}


@dataclasses.dataclass(frozen=True)
class MeasuredHead:
    """One head's attention probabilities on calibration data, pooled into tiles."""

    layer: int
    head: int
    grid: np.ndarray  # [<= MAX_PIXELS, <= MAX_PIXELS], mean probability per tile, rows scaled to max 1


@dataclasses.dataclass
class AttentionData:
    """What the attention section shows: the head table, the groups that run, measured heads."""

    table: HeadTable
    groups: list[dict]  # `AttentionGroup.as_dict()`s (a compiled model's carry the kernel)
    measured: dict[str, MeasuredHead] = dataclasses.field(default_factory=dict)  # mode -> example head


def head_table(spec, model: ir.Model) -> HeadTable | None:
    """The table fuse-heads used: the spec's own, or the one search-heads left in the model."""
    attention = getattr(spec, "attention", None)
    if attention is None:
        return None
    if isinstance(attention.heads, HeadTable):
        return attention.heads
    text = model.metadata_props.get(METADATA_KEY)
    return HeadTable.from_yaml(text) if text else None


def mode_counts(table: HeadTable) -> dict[str, int]:
    """Heads per mode over all layers, modes in `HEAD_MODES` order."""
    modes = [p.mode for layer in table.layers for p in layer.patterns]
    return {mode: modes.count(mode) for mode in HEAD_MODES if mode in modes}


def example_heads(table: HeadTable) -> dict[str, tuple[int, int]]:
    """Mode -> (layer, head) of its first head, for each mode present."""
    found: dict[str, tuple[int, int]] = {}
    for index, layer in enumerate(table.layers):
        for head, pattern in enumerate(layer.patterns):
            found.setdefault(pattern.mode, (index, head))
    return {mode: found[mode] for mode in HEAD_MODES if mode in found}


def measure_heads(model: ir.Model, table: HeadTable, calibration: Iterable) -> dict[str, MeasuredHead]:
    """The example head of each mode, measured on the first calibration batch in onnxruntime
    (`model` still has its Attention nodes)."""
    layers = attention_layers(model, table.layout)
    picks = example_heads(table)
    used = sorted({layer for layer, _ in picks.values()})
    values = [x for index in used for x in layers[index].node.inputs[:2]]
    batch = next(iter(calibration))
    with tempfile.TemporaryDirectory(prefix="sparsecc-head-maps-") as folder:
        session = session_with_outputs(model, values, Path(folder))
        arrays = dict(zip([v.name for v in values], session.run([v.name for v in values], batch)))
    measured = {}
    for mode, (index, head) in picks.items():
        node = layers[index].node
        q, k = (arrays[x.name][:, head] for x in node.inputs[:2])
        scale = node.attributes.get_float("scale", 1.0 / np.sqrt(q.shape[-1]))
        probs = attention_probs(q, k, None, scale).mean(axis=0)  # [N, N], mean over the batch
        probs = probs / np.maximum(probs.max(axis=1, keepdims=True), 1e-30)
        measured[mode] = MeasuredHead(index, head, pooled(probs))
    return measured


# -- the section -------------------------------------------------------------------------------------
def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _img(data: bytes, alt: str) -> str:
    return f"<img src='data:image/png;base64,{base64.b64encode(data).decode()}' alt='{_e(alt)}'>"


def head_map_svg(table: HeadTable) -> str:
    """The grid of layers x heads, each cell coloured by its mode and labelled with its letter."""
    cell, gap, left, top = 26, 2, 74, 22
    heads = max(len(layer.patterns) for layer in table.layers)
    width, height = left + heads * (cell + gap) + 4, top + len(table.layers) * (cell + gap) + 4
    counts = mode_counts(table)
    parts = [
        f"<svg class='headmap' viewBox='0 0 {width} {height}' width='{width}' role='img' "
        "aria-labelledby='headmap-title headmap-desc' xmlns='http://www.w3.org/2000/svg'>",
        "<title id='headmap-title'>Attention pattern per layer and head</title>",
        f"<desc id='headmap-desc'>{len(table.layers)} layers (rows) x {heads} heads (columns); "
        + _e(", ".join(f"{count} {mode}" for mode, count in counts.items()))
        + "</desc>",
    ]
    parts.append(f"<text x='{left - 8}' y='{top - 7}' text-anchor='end' class='axis'>head</text>")
    for head in range(heads):
        x = left + head * (cell + gap) + cell / 2
        parts.append(f"<text x='{x:.0f}' y='{top - 7}' text-anchor='middle' class='axis'>{head}</text>")
    for index, layer in enumerate(table.layers):
        y = top + index * (cell + gap)
        label = f"layer {index}"
        parts.append(f"<text x='{left - 8}' y='{y + cell - 8}' text-anchor='end' class='axis'>{label}</text>")
        for head, pattern in enumerate(layer.patterns):
            x = left + head * (cell + gap)
            ink = "#1f2328" if pattern.mode in ("skip", "full", "mdiag") else "#ffffff"
            parts.append(
                f"<g class='head'><title>layer {index} ({_e(layer.name or '-')}), head {head}: "
                f"{_e(pattern.mode)}</title>"
                f"<rect x='{x}' y='{y}' width='{cell}' height='{cell}' rx='3' fill='{MODE_COLOURS[pattern.mode]}' "
                f"stroke='#8c959f' stroke-width='0.5' data-layer='{index}' data-head='{head}' "
                f"data-mode='{_e(pattern.mode)}'/>"
                f"<text x='{x + cell / 2}' y='{y + cell - 8}' text-anchor='middle' fill='{ink}' "
                f"font-weight='600'>{MODE_LETTERS[pattern.mode]}</text></g>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _legend(table: HeadTable) -> str:
    items = "".join(
        f"<li data-mode='{_e(mode)}' data-count='{count}'><span class='swatch' "
        f"style='background:{MODE_COLOURS[mode]};border:1px solid #8c959f' aria-hidden='true'></span>"
        f"{MODE_LETTERS[mode]} {_e(mode)}: {count} head{'s' if count != 1 else ''}</li>"
        for mode, count in mode_counts(table).items()
    )
    return f"<ul class='legend' aria-label='attention modes'>{items}</ul>"


def _examples(data: AttentionData) -> str:
    table, layout = data.table, data.table.layout
    figures = []
    for mode, (index, head) in example_heads(table).items():
        if mode == "skip":  # no mask: the head is not computed
            continue
        pattern = table.layers[index].patterns[head]
        mask = pattern_mask(pattern, layout)
        where = f"layer {index}, head {head}"
        alt = f"Mask of mode {mode} ({where}): {layout.tokens}x{layout.tokens} tokens, {100 * mask.mean():.1f}% kept"
        figures.append(
            f"<figure class='mask' data-mode='{_e(mode)}' data-density='{float(mask.mean())!r}'>"
            f"{_img(grid_png(density_grid(mask)), alt)}<figcaption><b>{_e(mode)}</b> mask ({where}): "
            f"density {mask.mean():.3f}, queries down, keys across</figcaption></figure>"
        )
        measured = data.measured.get(mode)
        if measured is not None:
            where = f"layer {measured.layer}, head {measured.head}"
            figures.append(
                f"<figure class='measured' data-mode='{_e(mode)}'>"
                f"{_img(grid_png(measured.grid), f'Measured attention of a {mode} head ({where})')}"
                f"<figcaption><b>{_e(mode)}</b> measured ({where}): dense model, first calibration "
                "batch, rows scaled to their largest probability</figcaption></figure>"
            )
    text = f"{layout.frames} frames x {layout.frame_tokens} tokens" + (
        f" + {layout.text} text tokens ({'first' if layout.text_first else 'last'})" if layout.text else ""
    )
    note = "" if data.measured else " Measured maps appear when calibration data is given."
    return (
        f"<h3>Example masks</h3><p class='sub'>Token layout: {_e(text)}. Each pixel: the share of "
        f"a tile of the score matrix a head computes (dark = kept).{note}</p>"
        f"<div class='maps'>{''.join(figures)}</div>"
    )


def _groups_table(groups: list[Mapping]) -> str:
    built = any(g.get("kernel") for g in groups)
    columns = ["layer", "mode", "heads", "density", *(["kernel"] if built else []), "heads grouped"]
    lines = [
        "<div class='scroll'><table class='groups'><caption class='sub'>One row per group of heads "
        "that runs one pattern (one PatternAttention); density: the share of dense attention's "
        "FLOPs it computes.</caption><tr>",
        *(f"<th scope='col'>{c}</th>" for c in columns),
        "</tr>",
    ]
    for g in groups:
        skipped = g["mode"] == "skip"
        cells = [
            f"<td class='layer'>{g['layer_index']}: {_e(g['layer'])}</td>",
            f"<td class='fmt'>{_e(g['mode'])}</td>",
            f"<td>{_e(head_ranges(g['heads']))} ({len(g['heads'])})</td>",
            f"<td class='num'>{g['density']:.3f}</td>",
        ]
        if built:
            kernel = "not computed" if skipped else g.get("kernel") or "-"
            cells.append(f"<td><span class='kernel'>{_e(kernel)}</span></td>")
        cells.append(f"<td>{_e(g.get('reorder', ''))}</td>")
        lines.append(f"<tr data-mode='{_e(g['mode'])}' data-heads='{len(g['heads'])}'>{''.join(cells)}</tr>")
    lines.append("</table></div>")
    return "\n".join(lines)


def attention_html(data: AttentionData) -> str:
    """The page's attention section."""
    table = data.table
    return "\n".join(
        [
            "<section aria-labelledby='h-attention'><h2 id='h-attention'>Attention heads</h2>",
            f"<p class='sub'>The pattern each head runs ({len(table.layers)} attention layers, "
            "in graph order).</p>",
            _legend(table),
            f"<div class='scroll'>{head_map_svg(table)}</div>",
            _examples(data),
            f"<h3>Groups</h3>{_groups_table(data.groups)}" if data.groups else "",
            "</section>",
        ]
    )
