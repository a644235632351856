"""The facts every part of observer shares: how a run ended, and what counts as success."""

from __future__ import annotations

import pytest

from observer.model import exit_text


@pytest.mark.parametrize(
    ("exit_status", "signal", "shown"),
    [
        (0, None, "0"),
        (3, None, "3"),
        (None, "KILL", "SIGKILL"),
        (None, "99", "signal 99"),
        (None, None, "-"),
    ],
)
def test_it_writes_a_runs_end_as_its_exit_status_or_the_signal_that_killed_it(
    exit_status: int | None, signal: str | None, shown: str
) -> None:
    assert exit_text(exit_status, signal) == shown
