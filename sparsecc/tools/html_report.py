"""`sparsecc inspect --html` / `sparsecc compile --html`: one self-contained page per model.

The page reads top to bottom: a model-level summary (parameters, overall sparsity, weight
bytes dense vs stored, estimated and measured speedups), a bar chart of sparsity per layer
coloured by format (inline SVG), the per-layer table, the attention heads' patterns (with a
spec's `attention:` section: `head_maps.py`), then a density heatmap per weight.

Heatmaps are density maps (`heatmaps.py`): each pixel is the fraction of non-zeros in one
tile of W (rows = outputs, columns = inputs), white = all zero, dark = dense. Nothing is
fetched from outside.
"""

from __future__ import annotations

import base64
import dataclasses
import html
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from sparsecc import ops
from sparsecc.compiler import api
from sparsecc.files import write_bytes
from sparsecc.ops.metadata import WEIGHT_NAME
from sparsecc.passes.conv import find_weighted
from sparsecc.tools import head_maps
from sparsecc.tools.heatmaps import heatmap_png
from sparsecc.tools.present import human_bytes


# -- what the page shows ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Summary:
    """Model-level numbers over the weights of the report (linear and Conv layers)."""

    layers: int
    sparse_layers: int  # stored in a sparse format
    parameters: int  # elements of those weights
    zeros: int  # after pruning
    dense_bytes: int  # those weights stored dense
    stored_bytes: int  # stored in the formats chosen (dense weights at their dense size)
    est_speedup: float | None  # the cost model's, over those layers (see `overall_speedup`)
    measured_speedup: float | None  # from a compile with measure=True
    model_parameters: int | None = None  # every initializer of the model given

    @property
    def sparsity(self) -> float:
        return self.zeros / self.parameters if self.parameters else 0.0

    @property
    def bytes_kept(self) -> float:
        return self.stored_bytes / self.dense_bytes if self.dense_bytes else 1.0


def _row_dict(row) -> dict:
    return row if isinstance(row, Mapping) else row.as_dict()


def _runs_sparse(row: dict) -> bool:
    """A sparse format in the IR, and (after a build) a sparse kernel that actually runs it."""
    return row["format"] != "dense" and row.get("runs") not in ("dense",)


def overall_speedup(rows: Iterable[dict], key: str) -> float | None:
    """Time of the layers dense / time with the chosen kernels, from per-layer speedups.

    A layer's dense time is taken as proportional to its weight's size (every layer sees the
    same number of rows, as in a transformer; Convs differ) and a layer without a figure (it
    runs dense) counts as 1.0x. None when no layer has a figure.
    """
    rows = list(rows)
    if not any(row.get(key) for row in rows if _runs_sparse(row)):
        return None
    dense = sparse = 0.0
    for row in rows:
        size = float(row["shape"][0] * row["shape"][1])
        speedup = row.get(key) if _runs_sparse(row) else None
        dense += size
        sparse += size / (speedup or 1.0)
    return dense / sparse


def summarize(
    rows: Iterable,
    weights: Mapping[str, np.ndarray],
    stored_bytes: Mapping[str, int],
    model_parameters: int | None = None,
) -> Summary:
    """The summary of a report: `weights` are W after pruning by name, `stored_bytes` the bytes
    each sparse-format weight keeps (`sparse_bytes`)."""
    rows = [_row_dict(row) for row in rows]
    parameters = zeros = dense_bytes = stored = 0
    for row in rows:
        w = weights.get(row["name"])
        size = int(np.prod(row["shape"]))
        nbytes = w.nbytes if w is not None else size * 4
        parameters += size
        zeros += size - (int(np.count_nonzero(w)) if w is not None else round(row["density"] * size))
        dense_bytes += nbytes
        stored += stored_bytes.get(row["name"], nbytes) if row["format"] != "dense" else nbytes
    return Summary(
        layers=len(rows),
        sparse_layers=sum(row["format"] != "dense" for row in rows),
        parameters=parameters,
        zeros=zeros,
        dense_bytes=dense_bytes,
        stored_bytes=stored,
        est_speedup=overall_speedup(rows, "est_speedup"),
        measured_speedup=overall_speedup(rows, "measured_speedup"),
        model_parameters=model_parameters,
    )


# -- gathering the data ----------------------------------------------------------------------------
def sparse_bytes(model: ir.Model) -> dict[str, int]:
    """Weight name -> bytes its sparse op stores (all constant inputs but the bias)."""
    stored = {}
    for node in model.graph:
        if ops.is_sparse_node(node):
            weight = ops.weight_from_node(node)
            stored[node.metadata_props.get(WEIGHT_NAME, node.name)] = sum(a.nbytes for a in weight.arrays())
    return stored


def model_parameters(proto: onnx.ModelProto) -> int:
    """Elements of every initializer of the model (biases, embeddings and norms included)."""
    return sum(int(np.prod(t.dims)) for t in proto.graph.initializer)


@dataclasses.dataclass
class ReportData:
    """What a page needs besides the report rows: W after pruning, the bytes stored, and the
    attention heads' patterns (with a spec's `attention:` section)."""

    result: api.SparsifyResult
    weights: dict[str, np.ndarray]
    stored_bytes: dict[str, int]
    model_parameters: int | None  # every initializer's elements in the model given (a proto)
    attention: head_maps.AttentionData | None = None

    def write_page(
        self,
        path: str | Path,
        title: str,
        rows: Iterable,
        subtitle: str,
        attention_groups: list[dict] | None = None,
    ) -> None:
        """The report page for `rows` (this pipeline run's or a compiled model's report);
        `attention_groups`: a compiled model's (with their kernels) instead of this run's."""
        attention = self.attention
        if attention is not None and attention_groups is not None:
            attention = dataclasses.replace(attention, groups=list(attention_groups))
        write_html(
            path,
            title,
            rows,
            self.weights,
            self.stored_bytes,
            model_parameters=self.model_parameters,
            subtitle=subtitle,
            attention=attention,
        )


def sparsify_for_report(model, spec, example_inputs=None, **options) -> ReportData:
    """Run the sparsity pipeline (`api.sparsify_ir`, same options) keeping what the page shows."""
    weights: dict[str, np.ndarray] = {}
    # with calibration data, the model before fuse-heads, to measure example heads' attention on
    before_fusing: list[onnx.ModelProto] = []
    measure = options.get("calibration") is not None

    def keep(name: str, ir_model: ir.Model) -> None:
        if name == "prune":
            weights.update({m.name: m.w() for m in find_weighted(ir_model.graph)})
        if measure and name in ("fuse-attention", "search-heads"):
            before_fusing[:] = [ir.serde.serialize_model(ir_model)]

    result = api.sparsify_ir(model, spec, example_inputs, after_pass=keep, **options)
    parameters = model_parameters(model) if isinstance(model, onnx.ModelProto) else None
    attention = None
    table = head_maps.head_table(result.spec, result.model)
    if table is not None:
        groups = [group.as_dict() for group in result.context.attention]
        attention = head_maps.AttentionData(table, groups)
        if before_fusing and result.context.calibration is not None:
            unfused = ir.serde.deserialize_model(before_fusing.pop())
            attention.measured = head_maps.measure_heads(unfused, table, result.context.calibration)
    return ReportData(result, weights, sparse_bytes(result.model), parameters, attention)


# -- the page ---------------------------------------------------------------------------------------
# Colour-blind-safe (Okabe-Ito) colours per format family; dense is grey.
_FAMILY_COLOURS = (("BSR", "#0072B2"), ("N:M", "#E69F00"), ("CSR", "#009E73"))
_OTHER_COLOURS = ("#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
_DENSE_COLOUR = "#9e9e9e"

_STYLE = """*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2328;background:#fff}
main{max-width:1200px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #d8dee4;padding-bottom:4px}
.sub{color:#57606a;margin:0 0 16px;font-size:14px}.muted{color:#57606a}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:12px}
.card{border:1px solid #d8dee4;border-radius:8px;padding:12px 14px;background:#f6f8fa}
.card .label{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:#57606a}
.card .value{font-size:26px;font-weight:600;margin:4px 0 2px;font-variant-numeric:tabular-nums}
.card .note{font-size:12px;color:#57606a}
.legend{display:flex;flex-wrap:wrap;gap:16px;list-style:none;padding:0;margin:8px 0;font-size:13px}
.swatch{display:inline-block;width:14px;height:14px;border-radius:3px;vertical-align:-2px;margin-right:6px}
svg.chart{width:100%;height:auto;font-size:12px}svg.chart text{fill:#1f2328}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:13px;width:100%}
td,th{border-bottom:1px solid #d8dee4;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;position:sticky;top:0}caption{text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.fmt{white-space:nowrap}
td.reason{min-width:200px;max-width:420px;color:#57606a}td.name{max-width:250px;overflow-wrap:anywhere}.sparse td:first-child{border-left:3px solid #009E73}
.layer{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.init{display:block;color:#57606a;font-size:11px}.kernel{font-family:ui-monospace,monospace;color:#1f2328;font-weight:600}
.maps{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:18px}
figure{margin:0;font-size:12px}figcaption{margin-top:4px;overflow-wrap:anywhere}
svg.headmap{max-width:100%;height:auto;font-size:12px}svg.headmap .axis{fill:#57606a}
h3{font-size:15px;margin:20px 0 6px}table.groups{margin-top:16px}
img{image-rendering:pixelated;border:1px solid #8c959f;max-width:100%;height:auto}"""

# Marks every <img> with the width it decoded to, so a headless browser's DOM dump shows it.
_SCRIPT = """window.addEventListener('load',function(){var n=0,imgs=document.images;
for(var i=0;i<imgs.length;i++){imgs[i].setAttribute('data-natural-width',imgs[i].naturalWidth);
if(imgs[i].naturalWidth>0)n++;}document.body.setAttribute('data-images-decoded',n);
document.body.setAttribute('data-images-total',imgs.length);});"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _speedup(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_colours(formats: Iterable[str]) -> dict[str, str]:
    """Format label -> colour: dense grey, BSR / N:M / CSR their family's colour, others in turn."""
    colours, spare = {}, list(_OTHER_COLOURS)
    for label in dict.fromkeys(formats):
        family = next((c for prefix, c in _FAMILY_COLOURS if label.startswith(prefix)), None)
        if label == "dense":
            colours[label] = _DENSE_COLOUR
        elif family is not None and family not in colours.values():
            colours[label] = family
        else:  # a second BSR block size, or a format this page does not know
            colours[label] = spare.pop(0) if spare else "#444444"
    return colours


def _card(key: str, label: str, value: str, note: str, data: float | None) -> str:
    attr = "" if data is None else f" data-value='{data!r}'"
    return (
        f"<div class='card' id='summary-{key}'{attr}><div class='label'>{_e(label)}</div>"
        f"<div class='value'>{_e(value)}</div><div class='note'>{_e(note)}</div></div>"
    )


def _summary_html(s: Summary) -> str:
    total = f"; {s.model_parameters:,} in the whole model" if s.model_parameters else ""
    cards = [
        _card("layers", "Weighted layers", f"{s.layers}", f"{s.sparse_layers} stored sparse", s.layers),
        _card("parameters", "Parameters", f"{s.parameters:,}", f"in these weights{total}", s.parameters),
        _card(
            "sparsity",
            "Overall sparsity",
            f"{100 * s.sparsity:.2f}%",
            f"{s.zeros:,} zeros in these weights",
            s.sparsity,
        ),
        _card(
            "bytes",
            "Weight bytes",
            f"{human_bytes(s.stored_bytes)}",
            f"dense {human_bytes(s.dense_bytes)}: {100 * s.bytes_kept:.1f}% kept in the formats chosen",
            float(s.stored_bytes),
        ),
        _card(
            "est-speedup",
            "Estimated speedup",
            _speedup(s.est_speedup),
            "cost model, these layers, weighted by weight size"
            if s.est_speedup is not None
            else "no layer is estimated faster than dense",
            s.est_speedup,
        ),
    ]
    if s.measured_speedup is not None:
        cards.append(
            _card(
                "measured-speedup",
                "Measured speedup",
                _speedup(s.measured_speedup),
                "kernels timed against dense here, weighted by weight size",
                s.measured_speedup,
            )
        )
    return "<section aria-labelledby='h-summary'><h2 id='h-summary'>Summary</h2><div class='cards'>" + (
        "".join(cards) + "</div></section>"
    )


def _short(name: str, limit: int = 56) -> str:
    return name if len(name) <= limit else name[: limit // 2 - 1] + "…" + name[-(limit // 2) :]


def _chart_html(rows: list[dict], colours: dict[str, str]) -> str:
    """One horizontal bar per weight: its sparsity, coloured by its format."""
    bar_h, gap, top = 18, 8, 24
    label_w = min(420, 16 + 7 * max((len(_short(r["name"])) for r in rows), default=10))
    bar_x, bar_w = label_w + 8, 1100 - label_w - 8 - 250
    height = top + len(rows) * (bar_h + gap) + 8
    parts = [
        f"<svg class='chart' viewBox='0 0 1100 {height}' role='img' "
        "aria-labelledby='chart-title chart-desc' xmlns='http://www.w3.org/2000/svg'>",
        "<title id='chart-title'>Sparsity per layer, coloured by format</title>",
        f"<desc id='chart-desc'>{len(rows)} bars, one per weight in graph order; bar length is "
        "the fraction of zeros (0 to 100%).</desc>",
    ]
    for tick in (0, 25, 50, 75, 100):
        x = bar_x + bar_w * tick / 100
        parts.append(
            f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top - 6}' y2='{height - 6}' stroke='#d8dee4'/>"
            f"<text x='{x:.1f}' y='{top - 10}' text-anchor='middle' fill='#57606a'>{tick}%</text>"
        )
    for i, row in enumerate(rows):
        y = top + i * (bar_h + gap)
        sparsity = 1.0 - row["density"]
        runs = row.get("runs")
        fmt = row["format"] + (f" (runs {runs})" if runs and runs != row["format"] else "")
        speed = ""
        if row.get("measured_speedup"):
            speed = f" · measured {_speedup(row['measured_speedup'])}"
        elif _runs_sparse(row) and row.get("est_speedup"):
            speed = f" · est. {_speedup(row['est_speedup'])}"
        tip = f"{row['name']}: {100 * sparsity:.1f}% zeros, {fmt}"
        parts.append(
            f"<g class='row'><title>{_e(tip)}</title>"
            f"<text x='{label_w}' y='{y + bar_h - 5}' text-anchor='end' class='layer'>"
            f"{_e(_short(row['name']))}</text>"
            f"<rect class='track' x='{bar_x}' y='{y}' width='{bar_w}' height='{bar_h}' fill='#f0f2f4'/>"
            f"<rect class='bar' x='{bar_x}' y='{y}' width='{bar_w * sparsity:.1f}' height='{bar_h}' "
            f"fill='{colours[row['format']]}' data-weight='{_e(row['name'])}' "
            f"data-format='{_e(row['format'])}' data-sparsity='{sparsity!r}'/>"
            f"<text x='{bar_x + bar_w + 8}' y='{y + bar_h - 5}'>{100 * sparsity:.1f}% · {_e(fmt)}"
            f"{speed}</text></g>"
        )
    parts.append("</svg>")
    legend = "".join(
        f"<li><span class='swatch' style='background:{colour}' aria-hidden='true'></span>{_e(label)}</li>"
        for label, colour in colours.items()
    )
    return (
        "<section aria-labelledby='h-chart'><h2 id='h-chart'>Sparsity per layer</h2>"
        f"<ul class='legend' aria-label='formats'>{legend}</ul>{''.join(parts)}</section>"
    )


def _name_cell(row: dict) -> str:
    init = row.get("initializer") or ""
    secondary = f"<span class='init'>initializer {_e(init)}</span>" if init and init != row["name"] else ""
    breakable = _e(row["name"]).replace(".", ".<wbr>")  # long module paths wrap at their dots
    return f"<td class='name'><span class='layer'>{breakable}</span>{secondary}</td>"


def _table_html(rows: list[dict], weights: Mapping[str, np.ndarray], stored: Mapping[str, int]) -> str:
    built = any(row.get("kernel") for row in rows)
    measured = any(row.get("measured_speedup") is not None for row in rows)
    # After a build the kernel and its reason replace what analysis detected (a laptop's width)
    columns = ["layer", "shape", "sparsity", *([] if built else ["detected"]), "rule", "format"]
    columns += ["runs"] if built else []
    columns += ["bytes", "est."] + (["measured"] if measured else []) + ["why" if built else "reason"]
    lines = [
        "<section aria-labelledby='h-table'><h2 id='h-table'>Layers</h2><div class='scroll'><table>",
        "<caption class='sub'>One row per weight, in graph order; bytes: stored in the format "
        "chosen (dense size when dense).</caption><tr>",
        *(f"<th scope='col'>{c}</th>" for c in columns),
        "</tr>",
    ]
    for row in rows:
        size = row["shape"][0] * row["shape"][1]
        w = weights.get(row["name"])
        dense = w.nbytes if w is not None else size * 4
        nbytes = stored.get(row["name"], dense) if row["format"] != "dense" else dense
        cells = [
            _name_cell(row),
            f"<td class='num'>{row['shape'][0]}x{row['shape'][1]}</td>",
            f"<td class='num'>{100 * (1 - row['density']):.1f}%</td>",
            *([] if built else [f"<td>{_e(row.get('detected', ''))}</td>"]),
            f"<td>{_e(row.get('pattern', '-'))}</td>",
            f"<td class='fmt'>{_e(row['format'])}</td>",
        ]
        if built:
            cells.append(f"<td class='fmt'>{_e(row.get('runs') or '-')}</td>")
        cells.append(f"<td class='num'>{_e(human_bytes(nbytes))}</td>")
        cells.append(
            f"<td class='num'>{_speedup(row.get('est_speedup') if _runs_sparse(row) else None)}</td>"
        )
        if measured:
            cells.append(f"<td class='num'>{_speedup(row.get('measured_speedup'))}</td>")
        reason = _e(row.get("kernel_reason") or row.get("reason", "")) if built else _e(row.get("reason", ""))
        kernel = f"<span class='kernel'>{_e(row['kernel'])}</span> " if built and row.get("kernel") else ""
        cells.append(f"<td class='reason'>{kernel}{reason}</td>")
        css = " class='sparse'" if _runs_sparse(row) else ""
        lines.append(f"<tr{css}>" + "".join(cells) + "</tr>")
    lines.append("</table></div></section>")
    return "\n".join(lines)


def _heatmaps_html(rows: list[dict], weights: Mapping[str, np.ndarray]) -> str:
    formats = {row["name"]: row["format"] for row in rows}
    lines = [
        "<section aria-labelledby='h-maps'><h2 id='h-maps'>Sparsity heatmaps</h2>"
        "<p class='sub'>Each pixel: fraction of non-zeros in a tile of W (rows = outputs, columns = "
        "inputs). White = all zero, dark blue = dense.</p><div class='maps'>"
    ]
    for name, w in weights.items():
        data = base64.b64encode(heatmap_png(w)).decode()
        density = np.count_nonzero(w) / w.size
        shape = f"{w.shape[0]}x{w.shape[1]}"
        fmt = formats.get(name, "dense")
        alt = f"Density heatmap of {name} ({shape}, {100 * density:.1f}% non-zero, stored {fmt})"
        lines.append(
            f"<figure><img src='data:image/png;base64,{data}' alt='{_e(alt)}' title='{_e(name)}'>"
            f"<figcaption><span class='layer'>{_e(name)}</span><br>{shape}, density {density:.3f}, "
            f"{_e(fmt)}</figcaption></figure>"
        )
    lines.append("</div></section>")
    return "\n".join(lines)


def render_html(
    title: str,
    rows: Iterable,
    weights: Mapping[str, np.ndarray],
    stored_bytes: Mapping[str, int] | None = None,
    *,
    model_parameters: int | None = None,
    subtitle: str = "",
    attention: head_maps.AttentionData | None = None,
) -> str:
    """The page as text: summary, chart, table, attention heads (with `attention`), heatmaps
    (rows: `WeightReport`s or report dicts)."""
    rows = [_row_dict(row) for row in rows]
    stored = stored_bytes or {}
    summary = summarize(rows, weights, stored, model_parameters)
    colours = format_colours(["dense", *(row["format"] for row in rows)])
    if not any(row["format"] == "dense" for row in rows):
        colours.pop("dense")
    return "\n".join(
        [
            f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body><main>",
            f"<h1>{_e(title)}</h1><p class='sub'>{_e(subtitle)}</p>",
            _summary_html(summary),
            _chart_html(rows, colours) if rows else "<p>No linear or Conv weight found.</p>",
            _table_html(rows, weights, stored),
            head_maps.attention_html(attention) if attention is not None else "",
            _heatmaps_html(rows, weights),
            f"</main><script>{_SCRIPT}</script></body></html>",
        ]
    )


def write_html(path: str | Path, *args, **kwargs) -> None:
    """Write the report page atomically (arguments as for `render_html`)."""
    write_bytes(path, render_html(*args, **kwargs).encode("utf-8"))
