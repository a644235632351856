"""Findings judged against a real SQLite store: stored with the run, alerting like failures."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observer.alert_config import AlertRules, AlertsConfig, ChannelSources, UnitAlerts
from observer.alerts import evidence, outbox
from observer.alerts.rules import FinishedRun
from observer.alerts.secrets import Channel
from observer.alerts.state import AlertLedger
from observer.metrics import collectors, snapshot
from observer.model import Run, Source
from observer.reading import history
from observer.store import database
from tests.unit.recorded_runs import MINUTE, NOW_USEC, SECOND, invocation
from tests.unit.test_query_plans import plans_of

CHANNEL = Channel.of("json://127.0.0.1:9/hook")
UNIT = "health.service"


def config(**rules: object) -> AlertsConfig:
    unit_rules = AlertRules()._replace(**rules)  # type: ignore[arg-type]
    return AlertsConfig(present=True, units=(UnitAlerts(UNIT, unit_rules, ChannelSources()),))


def connect(db: Path) -> sqlite3.Connection:
    conn = database.open_for_writing(db)
    conn.row_factory = sqlite3.Row
    return conn


def ledger(conn: sqlite3.Connection, alerts: AlertsConfig) -> AlertLedger:
    book = AlertLedger(conn, alerts, lambda unit: [CHANNEL])
    book.since(NOW_USEC)
    return book


def record(
    conn: sqlite3.Connection,
    n: int,
    at: int,
    *,
    ok: bool = True,
    seconds: float = 2.0,
    lines: tuple[bytes, ...] = (b"all good",),
) -> None:
    run = Run(
        unit=UNIT, invocation_id=invocation(n), host="host1", source=Source.BUS,
        started_usec=at - int(seconds * SECOND), finished_usec=at,
        result="success" if ok else "exit-code", exit_code="exited", exit_status=0 if ok else 1,
    )  # fmt: skip
    iid = invocation(n)
    stored = [database.StoredLine(iid, i, at, 6, line) for i, line in enumerate(lines)]
    size = sum(len(line) for line in lines)
    counts = database.OutputCounts(iid, len(lines), size, 0, 0, None, at)
    batch = database.Batch(runs=[run], lines=stored, counts={iid: counts})
    database.write_batch(conn, batch)


def alerts(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in conn.execute("SELECT kind, summary FROM alerts ORDER BY id")]


def test_a_success_printing_an_error_line_twice_alerts_once_and_recovers_once(
    tmp_path: Path,
) -> None:
    conn = connect(tmp_path / "observer.db")
    book = ledger(conn, config(fail_output="^ERROR"))
    for n in (1, 2):
        record(conn, n, NOW_USEC + n * MINUTE, lines=(b"resolving", b"ERROR: DNS lookup failed"))
        book.judge_runs(NOW_USEC + n * MINUTE)
    record(conn, 3, NOW_USEC + 3 * MINUTE)
    book.judge_runs(NOW_USEC + 3 * MINUTE)
    assert alerts(conn) == [
        ("failing", "failed 2 times in a row (success, but printed 'ERROR: DNS lookup failed')"),
        ("recovered", "succeeded again after 2 failed runs"),
    ]
    shown = history.run_detail(conn, "2").run
    assert shown.result == "success"
    assert shown.findings == (("fail-output", "printed 'ERROR: DNS lookup failed'"),)
    assert history.run_detail(conn, "3").run.findings == ()


def test_a_job_that_ran_for_seconds_and_ends_in_milliseconds_is_fast_without_a_minimum(
    tmp_path: Path,
) -> None:
    conn = connect(tmp_path / "observer.db")
    book = ledger(conn, config())
    for n in range(1, 11):
        record(conn, n, NOW_USEC + n * MINUTE, seconds=3.0)
    book.judge_runs(NOW_USEC + 11 * MINUTE)
    record(conn, 11, NOW_USEC + 12 * MINUTE, seconds=0.004)
    book.judge_runs(NOW_USEC + 12 * MINUTE)
    assert alerts(conn) == [
        (
            "fast",
            "succeeded in only 4ms, less than 0.1 times the p5 (3.0s) of its last 10 "
            "successful runs",
        )
    ]


def test_a_silenced_units_alerts_are_held_and_told_when_the_silence_ends(tmp_path: Path) -> None:
    conn = connect(tmp_path / "observer.db")
    book = ledger(conn, config(failures=1))
    with conn:
        conn.execute(
            "INSERT INTO alert_silences (pattern, created_usec, until_usec, reason) "
            "VALUES ('health*', ?, ?, 'maintenance')",
            (NOW_USEC, NOW_USEC + 60 * MINUTE),
        )
    record(conn, 1, NOW_USEC + MINUTE, ok=False)
    book.judge_runs(NOW_USEC + MINUTE)
    assert [kind for kind, _ in alerts(conn)] == ["failing"]

    def deliveries() -> list[tuple[str, int | None]]:
        rows = conn.execute("SELECT status, next_attempt_usec FROM alert_deliveries ORDER BY id")
        return [(r[0], r[1]) for r in rows]

    assert deliveries() == [("held", None)]
    book.check(NOW_USEC + 59 * MINUTE)
    assert deliveries() == [("held", None)]
    assert outbox.due_deliveries(conn, NOW_USEC + 59 * MINUTE) == []
    book.check(NOW_USEC + 60 * MINUTE)  # the silence is over: what it held is due now
    assert deliveries() == [("pending", NOW_USEC + 60 * MINUTE)]
    record(conn, 2, NOW_USEC + 61 * MINUTE)
    book.judge_runs(NOW_USEC + 61 * MINUTE)  # and the recovery is told as usual
    assert [status for status, _ in deliveries()] == ["pending", "pending"]


def test_ending_a_silence_early_releases_what_it_held(tmp_path: Path) -> None:
    conn = connect(tmp_path / "observer.db")
    book = ledger(conn, config(failures=1))
    with conn:
        conn.execute(
            "INSERT INTO alert_silences (pattern, created_usec, until_usec, reason) "
            "VALUES ('health*', ?, ?, ''), ('health.service', ?, ?, '')",
            (NOW_USEC, NOW_USEC + 60 * MINUTE, NOW_USEC, NOW_USEC + 120 * MINUTE),
        )
    record(conn, 1, NOW_USEC + MINUTE, ok=False)
    book.judge_runs(NOW_USEC + MINUTE)
    with conn:
        conn.execute("UPDATE alert_silences SET until_usec = ? WHERE id = 2", (NOW_USEC,))
    book.check(NOW_USEC + 2 * MINUTE)
    assert [r[0] for r in conn.execute("SELECT status FROM alert_deliveries")] == ["held"]
    with conn:  # `observer alerts unsilence 1`
        conn.execute("UPDATE alert_silences SET until_usec = ? WHERE id = 1", (NOW_USEC,))
    book.check(NOW_USEC + 3 * MINUTE)
    [due] = outbox.due_deliveries(conn, NOW_USEC + 3 * MINUTE)
    assert due.alert.kind == "failing"


def test_a_unit_failing_one_run_in_three_alerts_on_its_failure_rate_once(tmp_path: Path) -> None:
    conn = connect(tmp_path / "observer.db")
    book = ledger(conn, config(failure_rate=0.3, rate_min_runs=6))
    for n in range(1, 13):
        record(conn, n, NOW_USEC + n * MINUTE, ok=n % 3 != 0)
        book.judge_runs(NOW_USEC + n * MINUTE)
    assert alerts(conn) == [("rate", "failed 2 of its 6 runs in the last 24h (33%, limit 30%)")]
    problems = conn.execute("SELECT unit, kind FROM alert_problems").fetchall()
    assert [tuple(row) for row in problems] == [(UNIT, "rate")]


def _judged(db: Path, runs: list[tuple[bool, float, bool]], step: bool) -> list[object]:
    conn = connect(db)
    book = ledger(conn, config(fail_output="BAD", failure_rate=0.4, rate_min_runs=3))
    for n, (ok, seconds, bad) in enumerate(runs, start=1):
        at = NOW_USEC + n * MINUTE
        record(conn, n, at, ok=ok, seconds=seconds, lines=(b"BAD" if bad else b"ok",))
        if step:
            book.judge_runs(at)
    book.judge_runs(NOW_USEC + (len(runs) + 1) * MINUTE)
    state = [
        [tuple(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]
        for table in ("run_findings", "alert_problems")
    ]
    state[1] = [row[:2] for row in state[1]]  # when a problem opened is when it was judged
    made = [kind for kind, _ in alerts(conn)]
    conn.close()
    return [*state, made]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from([0.002, 2.0, 3.0]), st.booleans()),
                max_size=16))  # fmt: skip
def test_findings_and_problems_judged_run_by_run_equal_those_judged_all_at_once(
    tmp_path_factory: pytest.TempPathFactory, runs: list[tuple[bool, float, bool]]
) -> None:
    base = tmp_path_factory.mktemp("judged")
    stepwise = _judged(base / "step.db", runs, step=True)
    at_once = _judged(base / "once.db", runs, step=False)
    assert stepwise[:2] == at_once[:2]


def test_the_evidence_of_a_run_is_read_through_indexes(tmp_path: Path) -> None:
    conn = connect(tmp_path / "observer.db")
    for n in range(1, 30):
        record(conn, n, NOW_USEC + n * MINUTE)
    run = FinishedRun(29, invocation(29), NOW_USEC, NOW_USEC + 29 * MINUTE, True, "success")
    rules = AlertRules()._replace(fail_output="x")

    def read() -> None:
        for host in (None, "host1"):  # any host's runs, or one host's (a central database)
            recent = evidence.recent_successes(conn, UNIT, run, 20, host)
            evidence.run_findings(conn, UNIT, run, rules, recent, None, host)
            evidence.failure_rate(conn, UNIT, run, 86_400_000_000, host)

    for sql, plan in plans_of(conn, read).items():
        for step in plan:
            assert not (step.startswith("SCAN") and "INDEX" not in step), (sql, plan)
            assert "TEMP B-TREE" not in step, (sql, plan)


def test_alerts_open_problems_and_failed_deliveries_are_exported_as_metrics(
    tmp_path: Path,
) -> None:
    conn = connect(tmp_path / "observer.db")
    book = ledger(conn, config(failures=1))
    record(conn, 1, NOW_USEC + MINUTE, ok=False)
    book.judge_runs(NOW_USEC + MINUTE)
    [due] = outbox.due_deliveries(conn, NOW_USEC + 2 * MINUTE)
    outbox.record_attempt(
        conn, due, NOW_USEC + 2 * MINUTE, 1000, "refused", max_attempts=5, retry_delay_usec=1
    )
    counts = snapshot.alert_counts(conn)
    text = collectors.render(
        collectors.RunCollector(snapshot.Snapshot(host="h1", alerts=counts)).collect()
    ).decode()
    assert 'observer_alerts_total{host="host1",unit="health.service",kind="failing"} 1' in text
    assert 'observer_alert_open{host="host1",unit="health.service",kind="failing"} 1' in text
    assert (
        'observer_alert_deliveries_failed_total{host="h1",channel="json://127.0.0.1:9/…"} 1' in text
    )


def test_on_a_central_database_a_hosts_failure_rate_counts_its_own_runs_only(
    tmp_path: Path,
) -> None:
    conn = connect(tmp_path / "observer.db")
    book = ledger(conn, config(failure_rate=0.5, rate_min_runs=4))
    for n in range(1, 9):  # web2 fails every other run; host1 (record's host) never does
        at = NOW_USEC + n * MINUTE
        record(conn, n, at)
        failed = Run(UNIT, invocation(100 + n), "web2", Source.JOURNAL, started_usec=at - SECOND,
                     finished_usec=at, result="exit-code" if n % 2 else "success")  # fmt: skip
        database.write_batch(conn, database.Batch(runs=[failed]))
    book.judge_runs(NOW_USEC + 10 * MINUTE)
    rated = conn.execute("SELECT host, kind FROM alerts WHERE kind = 'rate'").fetchall()
    assert [tuple(row) for row in rated] == [("web2", "rate")]
