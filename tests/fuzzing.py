"""Settings shared by the fuzz tests: seeded, bounded, scalable for a longer run by hand.

CI runs each fuzz test with its own small example count and a fixed seed (`derandomize=True`),
so a failure reproduces. `SPARSECC_FUZZ_SCALE=20` multiplies every count for a longer run;
`--hypothesis-show-statistics` then prints, per test, the examples tried and the outcome
events (`event(...)`) each test records.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, event, settings
from hypothesis.control import currently_in_test_context


def fuzz(examples: int) -> settings:
    scale = float(os.environ.get("SPARSECC_FUZZ_SCALE", "1"))
    return settings(
        derandomize=True,
        max_examples=max(1, round(examples * scale)),
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
    )


def one_line(message: str) -> str:
    """`message` after checking it is one line (what the CLI prints) and not a traceback."""
    assert message and len(message.splitlines()) == 1 and "Traceback" not in message, repr(message)
    return message


def outcome(label: str) -> None:
    """Record how an example ended, for the statistics of a longer run (a no-op outside @given)."""
    if currently_in_test_context():
        event(label)
