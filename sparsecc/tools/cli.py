"""`sparsecc` command line: one subcommand per module in `commands/`.

A user's mistake (`SparseccError`) prints one line and exits 2; `--debug` shows the
traceback instead. Anything else is a bug in sparsecc and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from sparsecc.errors import SparseccError

COMMANDS = ("inspect", "sparsify", "opt", "compile", "run", "bench", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparsecc", description="A sparsity compiler for neural networks.")
    parser.add_argument("--debug", action="store_true", help="tracebacks, debug logs and IR verification")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"sparsecc.tools.commands.{name}")
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
