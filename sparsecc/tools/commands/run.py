"""`sparsecc run PKG --input NAME=file.npy ... [-o out.npz]`: run a compiled artifact."""

from __future__ import annotations

from sparsecc.errors import InputError
from sparsecc.tools import present
from sparsecc.tools.commands.common import add_input_argument, parse_inputs


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "run",
        help="run a .sccpkg on inputs from .npy files",
        epilog="examples:\n  sparsecc run model.sccpkg --input x=x.npy -o outputs.npz",  # the formatter (cli.py) keeps its lines
    )
    parser.add_argument("package", metavar="PKG")
    add_input_argument(parser, help="an input array (repeat for each input)")
    parser.add_argument("-o", "--output", metavar="OUT.npz", help="save the outputs here")
    parser.set_defaults(run=run)


def run(args) -> int:
    import numpy as np

    import sparsecc
    from sparsecc import files

    model = sparsecc.load(args.package)
    feeds = parse_inputs(args.input)
    unknown = set(feeds) - {s.name for s in model.input_specs}
    if unknown:
        raise InputError(
            f"unknown input {sorted(unknown)}; the model's inputs are {[s.name for s in model.input_specs]}"
        )
    outputs = model(**feeds)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    names = [s.name for s in model.output_specs]
    for name, value in zip(names, outputs):
        present.console.print(
            f"{name}: shape {tuple(value.shape)} {value.dtype}, "
            f"mean {float(value.mean()):.6g}, max |x| {float(np.abs(value).max()):.6g}"
        )
    if args.output:
        with files.atomic_path(args.output) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **dict(zip(names, outputs)))
        present.console.print(f"wrote {args.output}")
    return 0
