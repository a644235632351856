"""The facts every part of observer shares: how a run ended, and what counts as success."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from observer.alerts.rules import AlertKind
from observer.model import ProblemKind, boot_id, exit_text, is_failure, is_skipped, is_success
from observer.store import summary

# Every Result systemd 252 gives a service, the wrapper's and observer's own, and unknown.
RESULTS = (
    "success", "exit-code", "signal", "core-dump", "timeout", "watchdog", "start-limit-hit",
    "resources", "protocol", "oom-kill", "condition", "exec-condition", "dependency",
    "interrupted", None,
)  # fmt: skip


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


@pytest.mark.parametrize("result", RESULTS)
def test_success_skipped_and_failure_mean_the_same_in_python_and_in_sql(
    result: str | None,
) -> None:
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute("CREATE TABLE runs (result, finished_usec)")
        conn.execute("INSERT INTO runs VALUES (?, 1)", (result,))
        in_sql = conn.execute(
            f"SELECT COALESCE({summary.SUCCEEDED}, 0), COALESCE({summary.SKIPPED}, 0), "
            f"{summary.FAILED} FROM runs"
        ).fetchone()
    assert tuple(map(bool, in_sql)) == (is_success(result), is_skipped(result), is_failure(result))
    assert [is_success(result), is_skipped(result), is_failure(result)].count(True) == 1


def test_only_success_is_a_success() -> None:
    assert [r for r in RESULTS if is_success(r)] == ["success"]
    assert [r for r in RESULTS if is_skipped(r)] == ["condition", "exec-condition"]


def test_every_problem_kind_is_the_alert_kind_that_opens_it() -> None:
    for kind in ProblemKind:
        assert AlertKind(kind).value == kind.value
        assert AlertKind(kind).is_problem


def test_the_boot_id_is_read_as_the_journal_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "boot_id"
    path.write_text("0f2c7a9e-5b1d-4c3e-9a8b-7d6e5f4a3b2c\n")
    assert boot_id(path) == "0f2c7a9e5b1d4c3e9a8b7d6e5f4a3b2c"
    assert boot_id(tmp_path / "missing") is None
    assert re.fullmatch(r"[0-9a-f]{32}", boot_id() or "")  # this machine's
