"""Fixtures shared by the artifact tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small compiled model saved as .sccpkg, its example input and its output (built once per module)."""
    import sparsecc

    cm = sparsecc.compile("zoo:mlp", "layers.0.weight=block(16,1)@0.9; layers.2.weight=2:4")
    x = next(iter(cm.example_inputs.values()))
    path = tmp_path_factory.mktemp("pkg") / "mlp.sccpkg"
    cm.save(path)
    return path, x, cm(x)
