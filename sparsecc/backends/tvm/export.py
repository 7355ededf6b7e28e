"""Write a built TVM library as a shared object for the target's architecture."""

from __future__ import annotations

import shutil

from sparsecc.errors import SparseccError

CROSS_COMPILER = "aarch64-linux-gnu-g++"


def export_library(library, path, family: str) -> None:
    """`library.export_library(path)`, cross-compiled with Debian's g++ for aarch64."""
    if family == "aarch64":
        from tvm.support import cc

        if shutil.which(CROSS_COMPILER) is None:
            raise SparseccError(
                f"cross-compiling for aarch64 needs {CROSS_COMPILER} (apt-get install g++-aarch64-linux-gnu)"
            )
        library.export_library(str(path), fcompile=cc.cross_compiler(CROSS_COMPILER))
    else:
        library.export_library(str(path))
