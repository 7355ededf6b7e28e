"""`sparsecc` command line: one subcommand per module in `commands/`.

A user's mistake (`SparseccError`) prints one line and exits 2; `--debug` shows the
traceback instead. Anything else is a bug in sparsecc and keeps its traceback.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
import sys

from sparsecc.errors import SparseccError

COMMANDS = ("inspect", "sparsify", "opt", "search-heads", "compile", "run", "generate", "bench", "demo")


EPILOG = """examples:
  sparsecc inspect model.onnx
  sparsecc sparsify model.onnx --spec '*ffn*=block(1,16)@0.9; *attn*=2:4' -o model.sparse.onnx
  sparsecc compile model.sparse.onnx --spec existing -o model.sccpkg
  sparsecc run model.sccpkg --input x=x.npy

'sparsecc COMMAND --help' shows each command's options and examples."""

# every command's epilog holds examples, one per line: printed as written
_HelpFormatter = argparse.RawDescriptionHelpFormatter


def version_text() -> str:
    """`sparsecc 0.1.0`, then the versions of the runtimes it drives (package metadata: no imports)."""
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    parts = ", ".join(f"{name} {version(name)}" for name in ("onnx", "onnxruntime", "apache-tvm"))
    return f"sparsecc {version('sparsecc')}\n{parts}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsecc",
        description="A sparsity compiler for neural networks.",
        epilog=EPILOG,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_argument("--debug", action="store_true", help="tracebacks, debug logs and IR verification")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step")
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        parser_class=functools.partial(argparse.ArgumentParser, formatter_class=_HelpFormatter),
    )
    for name in COMMANDS:
        module = importlib.import_module(f"sparsecc.tools.commands.{name.replace('-', '_')}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.debug:  # schedule rules and other checked steps fail loudly instead of logging and declining
        os.environ["SPARSECC_DEBUG"] = "1"
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from sparsecc.tools import present

    try:
        return int(args.run(args) or 0)
    except SparseccError as error:
        if args.debug:
            raise
        present.error(str(error))
        return 2
    except KeyboardInterrupt:
        present.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
