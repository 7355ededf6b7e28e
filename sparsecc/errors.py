"""User-facing errors.

Anything a user can cause (a bad spec, an unreadable model, a wrong input) raises a
subclass of `SparseccError`. The CLI prints its message as one line and exits 2;
every other exception is a bug in sparsecc and keeps its traceback.
"""

from __future__ import annotations


class SparseccError(Exception):
    """A mistake in what the user gave us; the message says what and how to fix it."""


class SpecError(SparseccError):
    """The sparsity spec is malformed or does not fit the model."""


class ModelError(SparseccError):
    """The model cannot be read, exported or is not a valid ONNX model."""


class UnsupportedOpError(SparseccError):
    """The model uses an op that a pass or backend cannot handle."""


class InputError(SparseccError):
    """A runtime input has the wrong name, shape or dtype."""


class ArtifactError(SparseccError):
    """A compiled artifact is corrupted, truncated or built for another target."""


class VerificationError(SparseccError):
    """A `sparsecc` op in the IR breaks its contract (shapes, dtypes, index ranges)."""


class PipelineError(SparseccError):
    """A pass pipeline string is malformed or a pass failed."""


class ScheduleRuleError(Exception):
    """A schedule rule crashed (a bug in sparsecc, raised in debug mode and in the tests)."""
