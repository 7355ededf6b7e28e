"""Suite-wide settings: verify the IR after every pass, failing schedule rules fail, two TVM threads."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TVM_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def verify_ir_after_every_pass(monkeypatch):
    """Like TVM's well-formedness instrument: every pipeline run checks the IR after each pass."""
    monkeypatch.setenv("SPARSECC_VERIFY_EACH", "1")


@pytest.fixture(autouse=True)
def schedule_rules_fail_loudly(monkeypatch):
    """A schedule rule that raises fails the build instead of being logged and skipped (as --debug)."""
    monkeypatch.setenv("SPARSECC_DEBUG", "1")
