"""Process-wide TVM settings that must be in place before TVM starts its thread pool."""

from __future__ import annotations

import os


def configure_tvm() -> None:
    """Use every core (TVM defaults to half, which is one thread on a 2-core machine).

    A user's own TVM_NUM_THREADS wins. Idempotent; call before the first TVM import.
    """
    os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))
