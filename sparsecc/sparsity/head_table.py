"""The head-pattern table: one pattern per (attention layer, head), as YAML a user can edit.

    version: 1
    layout: {frames: 4, frame_tokens: 64, text: 16, text_first: false}
    layers:                       # attention layers in graph order
      - name: node_Attention_12   # informational: the Attention node the search saw
        heads: [diag, mdiag, {mode: vstripe, stripes: [3, 70]}, full, skip, ...]
        loss: [0.17, 0.06, ...]   # informational: the chosen mode's search loss per head

`search-heads` writes it, `fuse-heads` reads it (from the spec, a file, or the model's
metadata where `search-heads` left it).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sparsecc.errors import SpecError
from sparsecc.sparsity.attention_patterns import HeadPattern, TokenLayout

VERSION = 1
METADATA_KEY = "sparsecc.attention_heads"  # where search-heads leaves its table in the model


@dataclasses.dataclass(frozen=True)
class LayerHeads:
    patterns: tuple[HeadPattern, ...]
    name: str = ""
    loss: tuple[float, ...] = ()

    def to_dict(self) -> dict:
        data: dict = {"name": self.name} if self.name else {}
        data["heads"] = [p.mode if len(p.to_dict()) == 1 else p.to_dict() for p in self.patterns]
        if self.loss:
            data["loss"] = [round(float(x), 4) for x in self.loss]
        return data


@dataclasses.dataclass(frozen=True)
class HeadTable:
    layout: TokenLayout
    layers: tuple[LayerHeads, ...]

    def problems(self) -> list[str]:
        return [
            f"layer {i} head {h}: {problem}"
            for i, layer in enumerate(self.layers)
            for h, pattern in enumerate(layer.patterns)
            if (problem := pattern.problem(self.layout))
        ]

    def to_dict(self) -> dict:
        return {
            "version": VERSION,
            "layout": self.layout.to_dict(),
            "layers": [layer.to_dict() for layer in self.layers],
        }

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)

    @classmethod
    def from_dict(cls, data, layout: TokenLayout | None = None) -> HeadTable:
        """`data` as `to_dict` writes it; `layout` fills in a table without one (a spec's)."""
        if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
            raise SpecError("a head-pattern table must be a mapping with a 'layers' list")
        unknown = sorted(map(repr, set(data) - {"version", "layout", "layers"}))
        if unknown:
            raise SpecError(
                f"head-pattern table: unknown key {', '.join(unknown)}; valid: layers, layout, version"
            )
        if data.get("version", VERSION) != VERSION:
            raise SpecError(
                f"head-pattern table version {data['version']!r} is not supported (reads {VERSION})"
            )
        if "layout" in data:
            layout = layout_from_dict(data["layout"])
        if layout is None:
            raise SpecError("the head-pattern table gives no layout (frames, frame_tokens, text, text_first)")
        layers = []
        for index, entry in enumerate(data["layers"]):
            if not isinstance(entry, dict) or not isinstance(entry.get("heads"), list):
                raise SpecError(f"head-pattern table layer {index}: expected a mapping with a 'heads' list")
            patterns = tuple(HeadPattern.from_dict(h) for h in entry["heads"])
            layers.append(LayerHeads(patterns, str(entry.get("name", "")), tuple(entry.get("loss", ()))))
        table = cls(layout, tuple(layers))
        problems = table.problems()
        if problems:
            raise SpecError(f"head-pattern table: {problems[0]}")
        return table

    @classmethod
    def from_yaml(cls, text: str, layout: TokenLayout | None = None) -> HeadTable:
        import yaml

        try:
            return cls.from_dict(yaml.safe_load(text), layout)
        except yaml.YAMLError as error:
            raise SpecError(
                f"the head-pattern table is not valid YAML: {str(error).splitlines()[0]}"
            ) from None

    @classmethod
    def from_file(cls, path, layout: TokenLayout | None = None) -> HeadTable:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise SpecError(
                f"cannot read head-pattern table {str(path)!r}: {error.strerror or error}"
            ) from None
        return cls.from_yaml(text, layout)


def layout_from_dict(data) -> TokenLayout:
    valid = {f.name for f in dataclasses.fields(TokenLayout)}
    if not isinstance(data, dict) or set(data) - valid or not {"frames", "frame_tokens"} <= set(data):
        raise SpecError(
            f"attention layout must be a mapping of {', '.join(sorted(valid))} (frames, frame_tokens required)"
        )
    try:
        return TokenLayout(**{k: (bool(v) if k == "text_first" else int(v)) for k, v in data.items()})
    except (TypeError, ValueError):
        raise SpecError(f"attention layout values must be integers, got {data!r}") from None
