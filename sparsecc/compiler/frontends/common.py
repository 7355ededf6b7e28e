"""What every frontend shares: the opset models are brought to, and a muffle for exporters' chatter."""

from __future__ import annotations

import contextlib
import io

OPSET = 23


@contextlib.contextmanager
def quiet():
    """Silence the chatter third-party exporters print to stdout/stderr."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
