"""Metadata keys sparsecc keeps on IR values and nodes (they survive `ir.save` / `ir.load`)."""

from __future__ import annotations

# On a linear weight initializer (and on the sparse node that replaced its layer): the weight's
# user-facing name, the torch parameter or the module path the exporter recorded + ".weight".
WEIGHT_NAME = "sparsecc.param"
# On a linear weight initializer: its name in the file the user gave (selectors match it too).
INITIALIZER_NAME = "sparsecc.initializer"
# On a weight initializer matched to a torch parameter: "W" (holds W[out, in]) or "W^T".
LAYOUT = "sparsecc.param_layout"
