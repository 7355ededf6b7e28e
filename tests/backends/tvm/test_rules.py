"""The kernel rule chain: one decision per layer, a reason when a rule declines, unique labels."""

import itertools

import numpy as np
import pytest

from sparsecc.backends.tvm.kernels.rules import RULES, plan
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.ops import BsrFormat, CsrFormat, NmFormat

TARGETS = [resolve_target(name) for name in ("cpu", "x86_64", "aarch64", "cuda:sm_90")]
FORMATS = [
    None,
    CsrFormat(),
    NmFormat(2, 4),
    NmFormat(1, 4),
    *(BsrFormat(b) for b in ((16, 1), (1, 16), (4, 4), (8, 1))),
]


def test_every_kernel_has_one_unique_label():
    """No two (rule, format) pairs that some target builds share a label."""
    built = {}
    for target, fmt in itertools.product(TARGETS, FORMATS):
        for rule in RULES:
            if rule.serves(fmt) and rule.declines(fmt, (768, 768), 128, target) is None:
                label = rule.label(fmt, (768, 768), target)
                key = (rule.name, fmt, target.family)
                assert built.setdefault(label, key) == key, f"{label} names {built[label]} and {key}"


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
@pytest.mark.parametrize("m", [1, 4, 128])
def test_every_format_gets_a_kernel_on_every_target(target, m):
    for fmt in FORMATS:
        chosen = plan(fmt, (768, 768), m, target)
        assert chosen.reason and chosen.rule.serves(chosen.fmt)
        assert chosen.fmt in (fmt, None)  # the format itself, or dense with the reason


def test_what_declines_and_why():
    cpu, aarch64 = resolve_target("cpu"), resolve_target("aarch64")
    assert plan(None, (768, 768), 1, cpu).rule.name == "gemv_cpu"
    assert plan(None, (768, 768), 128, cpu).rule.name == "dense_cpu"
    one_token = plan(CsrFormat(), (768, 768), 1, aarch64)  # x86 has decode kernels for 1-4 tokens
    assert one_token.fmt is None and "one token" in one_token.reason
    odd = plan(NmFormat(2, 4), (100, 768), 128, cpu)
    assert odd.fmt is None and "100x768" in odd.reason
    arm = plan(NmFormat(2, 4), (768, 768), 128, aarch64)
    assert arm.fmt is None and arm.runs == "dense" and "needs an x86 lane permute" in arm.reason


def test_unknown_token_count_assumes_many():
    """The cost model may not know M (dynamic shapes): no rule that needs few tokens takes it."""
    chosen = plan(None, (768, 768), None, resolve_target("cpu"))
    assert chosen.rule.name == "dense_cpu" and "gemv_cpu: it takes 1-4 tokens" in chosen.reason


def test_efficiencies_are_calibrated_fractions():
    for target, fmt, rule in itertools.product(TARGETS, FORMATS, RULES):
        if rule.serves(fmt) and rule.declines(fmt, (768, 768), 128, target) is None:
            assert 0 < rule.efficiency(fmt, (768, 768), 128, target) <= 1.0
    assert np.isfinite(
        [r.efficiency(None, (768, 768), 128, TARGETS[0]) for r in RULES if r.serves(None)]
    ).all()
