"""Measured head-mode costs: each mode's PatternAttention kernel timed against dense attention."""

import time

import pytest

pytest.importorskip("tvm")

from sparsecc.backends.tvm.pattern_costs import measured_costs
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.errors import PipelineError
from sparsecc.sparsity.attention_patterns import HeadPattern, TokenLayout, density

LAYOUT = TokenLayout(4, 256, 8)  # 1032 tokens: diag keeps 26% of the scores


def test_measured_costs_are_sane_and_cached():
    patterns = {"diag": HeadPattern("diag")}
    costs = measured_costs(patterns, LAYOUT, resolve_target("cpu"), head_dim=64)
    assert costs["full"] == 1.0 and costs["skip"] == 0.0
    # diag computes ~26% of dense's scores; a generous margin for a shared host's noise
    assert density(patterns["diag"], LAYOUT) < 0.3
    assert 0.0 < costs["diag"] < 0.85, costs
    started = time.perf_counter()
    assert measured_costs(patterns, LAYOUT, resolve_target("cpu"), head_dim=64) == costs
    assert time.perf_counter() - started < 0.5  # measured once per process


@pytest.mark.parametrize(
    ("target", "head_dim", "message"),
    [("aarch64", 64, "does not run here"), ("cpu", 18, "not whole vectors")],
)
def test_what_cannot_be_timed_here_is_a_one_line_error(target, head_dim, message):
    with pytest.raises(PipelineError, match=message) as error:
        measured_costs({"diag": HeadPattern("diag")}, LAYOUT, resolve_target(target), head_dim)
    assert "\n" not in str(error.value)
