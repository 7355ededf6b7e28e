"""Like any tool: `sparsecc --version`, and every command's --help ends with examples."""

from __future__ import annotations

import importlib.metadata

import pytest

from sparsecc.tools import cli


def test_version_names_sparsecc_and_its_runtimes(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first == f"sparsecc {importlib.metadata.version('sparsecc')}"
    assert f"onnxruntime {importlib.metadata.version('onnxruntime')}" in second
    assert second.startswith("onnx ") and "apache-tvm " in second


@pytest.mark.parametrize("command", [None, *cli.COMMANDS])
def test_every_help_has_examples(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"] if command is None else [command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    _, sep, examples = text.partition("\nexamples:\n")
    assert sep, text
    lines = [line for line in examples.splitlines() if line.startswith("  sparsecc ")]
    assert lines, examples  # kept one per line (RawDescriptionHelpFormatter), not re-wrapped
    if command is not None:
        assert all(line.startswith(f"  sparsecc {command}") for line in lines)
