"""Root causes against a real SQLite store at fixed times: starts refused because a unit they
need failed make one alert naming that unit and all it took down, and one recovery."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observer.alert_config import AlertsConfig
from observer.alerts.secrets import Channel
from observer.alerts.state import AlertLedger
from observer.model import Run, Source
from observer.store import database
from tests.unit.recorded_runs import MINUTE, NOW_USEC, SECOND, invocation
from tests.unit.test_query_plans import plans_of

pytestmark = pytest.mark.usefixtures("utc")
CHANNEL = Channel.of("json://127.0.0.1:9/hook")
DEPENDENTS = ("a.service", "b.service", "c.service")


def connect(db: Path) -> sqlite3.Connection:
    conn = database.open_for_writing(db)
    conn.row_factory = sqlite3.Row
    return conn


def ledger(conn: sqlite3.Connection) -> AlertLedger:
    book = AlertLedger(conn, AlertsConfig(present=True), lambda unit: [CHANNEL])
    book.since(NOW_USEC)
    return book


def ran(
    conn: sqlite3.Connection, n: int, unit: str, at: int, ok: bool = True, host: str = "h"
) -> None:
    run = Run(
        unit=unit, invocation_id=invocation(n), host=host, source=Source.BUS,
        started_usec=at - SECOND, finished_usec=at, result="success" if ok else "exit-code",
        exit_code="exited", exit_status=0 if ok else 1,
    )  # fmt: skip
    database.write_batch(conn, database.Batch(runs=[run]))


def refused(
    conn: sqlite3.Connection, unit: str, at: int, cause: str | None, host: str = "h"
) -> None:
    run = Run(
        unit=unit, invocation_id=None, host=host, source=Source.JOURNAL, started_usec=at,
        finished_usec=at, result="dependency", reason=cause, start_key=f"{host}:{unit}:{at}",
    )  # fmt: skip
    database.write_batch(conn, database.Batch(runs=[run]))


def alerts(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    rows = conn.execute("SELECT unit, kind, summary FROM alerts ORDER BY id")
    return [(r[0], r[1], r[2]) for r in rows]


def test_three_units_refused_because_a_service_failed_make_one_alert_and_one_recovery(
    tmp_path: Path,
) -> None:
    conn = connect(tmp_path / "observer.db")
    book = ledger(conn)
    at = NOW_USEC + MINUTE
    ran(conn, 1, "prepare.service", at, ok=False)
    for unit in DEPENDENTS:
        refused(conn, unit, at + 1000, "prepare.service")
    book.judge_runs(at + 10 * SECOND)
    # Again: the failed unit fails a second time and the dependents are refused again.
    ran(conn, 2, "prepare.service", at + MINUTE, ok=False)
    for unit in DEPENDENTS:
        refused(conn, unit, at + MINUTE + 1000, "prepare.service")
    book.judge_runs(at + MINUTE + 10 * SECOND)
    book.check(at + MINUTE + 20 * SECOND)
    ran(conn, 3, "prepare.service", at + 2 * MINUTE)
    book.judge_runs(at + 2 * MINUTE + 10 * SECOND)
    assert alerts(conn) == [
        (
            "prepare.service",
            "dependency",
            "failed and took down 3 units (a.service, b.service, c.service): "
            "their starts were refused",
        ),
        (
            "prepare.service",
            "recovered",
            "succeeded again after 2 failed runs that took down 3 units "
            "(a.service, b.service, c.service)",
        ),
    ]
    [alert_run] = conn.execute("SELECT run_id FROM alerts WHERE kind = 'dependency'").fetchone()
    assert alert_run == 1  # the failed unit's own run: its output says why
    assert conn.execute("SELECT * FROM alert_problems").fetchall() == []


def test_on_a_central_database_each_host_s_failed_unit_names_only_that_host_s_units(
    tmp_path: Path,
) -> None:
    conn = connect(tmp_path / "observer.db")
    book = ledger(conn)
    at = NOW_USEC + MINUTE
    ran(conn, 1, "prepare.service", at, ok=False, host="web1")
    ran(conn, 2, "prepare.service", at, ok=False, host="web2")
    for unit in DEPENDENTS[:2]:
        refused(conn, unit, at + 1000, "prepare.service", host="web1")
    refused(conn, DEPENDENTS[2], at + 2000, "prepare.service", host="web2")
    book.judge_runs(at + 10 * SECOND)
    rows = conn.execute("SELECT host, unit, kind, summary FROM alerts ORDER BY host, id").fetchall()
    assert [tuple(row) for row in rows] == [
        ("web1", "prepare.service", "dependency",
         "failed and took down 2 units (a.service, b.service): their starts were refused"),
        ("web2", "prepare.service", "dependency",
         "failed and took down c.service: its start was refused"),
    ]  # fmt: skip
    ran(conn, 3, "prepare.service", at + MINUTE, host="web2")
    book.judge_runs(at + MINUTE + 10 * SECOND)
    opened = conn.execute("SELECT host, unit, kind FROM alert_problems").fetchall()
    assert [tuple(row) for row in opened] == [("web1", "prepare.service", "dependency")]


def test_a_failed_mount_alerts_once_and_is_back_when_a_unit_it_took_down_starts(
    tmp_path: Path,
) -> None:
    conn = connect(tmp_path / "observer.db")
    book = ledger(conn)
    at = NOW_USEC + MINUTE
    for unit in DEPENDENTS:
        refused(conn, unit, at, "mnt-backup.mount")
    book.judge_runs(at + 10 * SECOND)
    refused(conn, "a.service", at + MINUTE, "mnt-backup.mount")
    book.judge_runs(at + MINUTE + 10 * SECOND)
    book.check(at + MINUTE + 20 * SECOND)  # no stale or missed alert about a mount
    ran(conn, 1, "b.service", at + 2 * MINUTE)
    book.judge_runs(at + 2 * MINUTE + 10 * SECOND)
    book.judge_runs(at + 3 * MINUTE)
    assert alerts(conn) == [
        (
            "mnt-backup.mount",
            "dependency",
            "failed and took down 3 units (a.service, b.service, c.service): "
            "their starts were refused",
        ),
        (
            "mnt-backup.mount",
            "recovered",
            "works again: b.service started at 2026-11-23 15:02:59 UTC "
            "(it had taken down 3 units (a.service, b.service, c.service))",
        ),
    ]


def test_a_refusal_whose_cause_is_unknown_is_a_failure_of_the_refused_unit(
    tmp_path: Path,
) -> None:
    conn = connect(tmp_path / "observer.db")
    book = ledger(conn)
    for n in (1, 2):
        refused(conn, "report.service", NOW_USEC + n * MINUTE, None)
        book.judge_runs(NOW_USEC + n * MINUTE + 10 * SECOND)
    assert alerts(conn) == [("report.service", "failing", "failed 2 times in a row (dependency)")]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.sampled_from(["fail", "refuse", "ok", "judge"]), st.sampled_from(DEPENDENTS)),
        max_size=20,
    )
)
def test_whatever_the_order_an_outage_is_told_at_most_once_a_kind_and_its_end_once(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, str]]
) -> None:
    conn = connect(tmp_path_factory.mktemp("causes") / "observer.db")
    book = ledger(conn)
    at = NOW_USEC
    down = False  # prepare.service failed and has not succeeded since
    for n, (step, unit) in enumerate(steps, start=1):
        at += MINUTE
        if step == "fail":
            ran(conn, n, "prepare.service", at, ok=False)
            down = True
        elif step == "refuse" and down:
            refused(conn, unit, at, "prepare.service")
        elif step == "ok":
            ran(conn, n, "prepare.service", at)
            down = False
        book.judge_runs(at + 10 * SECOND)
    kinds = [kind for unit, kind, _ in alerts(conn) if unit == "prepare.service"]
    # Each outage: at most one failing alert and one naming what it took down (the failing
    # alert is folded into that one when the refusals come first), then one recovery.
    outages = " ".join(kinds).split("recovered")
    for outage in outages[:-1]:
        assert outage.split() in (["failing"], ["dependency"], ["failing", "dependency"])
    assert outages[-1].split() in ([], ["failing"], ["dependency"], ["failing", "dependency"])
    assert not [a for a in alerts(conn) if a[0] in DEPENDENTS]
    conn.close()


def test_the_refusals_are_read_through_indexes(tmp_path: Path) -> None:
    conn = connect(tmp_path / "observer.db")
    book = ledger(conn)
    for n in range(1, 20):
        refused(conn, "a.service", NOW_USEC + n * MINUTE, "mnt-backup.mount")
        ran(conn, n, "b.service", NOW_USEC + n * MINUTE)
    plans = plans_of(conn, lambda: book.judge_runs(NOW_USEC + 30 * MINUTE))
    # (Open problems, a row each, are read whole: they are few.)
    mine = {s: p for s, p in plans.items() if "dependency" in s and "alert_problems" not in s}
    assert len(mine) >= 2
    for sql, plan in mine.items():
        for step in plan:
            assert not (step.startswith("SCAN") and "INDEX" not in step), (sql, plan)
            assert "TEMP B-TREE" not in step, (sql, plan)
