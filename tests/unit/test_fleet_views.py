"""A central database: several hosts' runs of the same units, written through the store,
read by `observer fleet`, `--host`, `status`, the alert ledger and the metrics."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import time_machine
from hypothesis import given
from hypothesis import strategies as st

from observer.__main__ import main
from observer.alert_config import AlertsConfig
from observer.alerts import outbox
from observer.alerts.message import compose
from observer.alerts.secrets import Channel
from observer.alerts.state import AlertLedger
from observer.fleet import views
from observer.metrics import collectors, snapshot
from observer.model import Run, Source, TimerState
from observer.store import database, schema, summary
from tests.unit.recorded_runs import HOUR, MINUTE, NOW, NOW_USEC, SECOND

CHANNEL = Channel.of("json://127.0.0.1:9/hook")


@pytest.fixture(autouse=True)
def now(utc: None) -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def hourly(host: str, unit: str, first: int, results: list[str]) -> list[Run]:
    """A unit's runs on a host, one an hour, the last one ``len(results) - 1`` hours after
    ``first`` (a time in hours before NOW)."""
    return [
        Run(
            unit=unit, invocation_id=hashlib.md5(f"{host} {unit} {n}".encode()).hexdigest(),
            host=host, source=Source.JOURNAL,
            started_usec=NOW_USEC - (first - n) * HOUR,
            finished_usec=NOW_USEC - (first - n) * HOUR + 3 * SECOND,
            result=result, exit_code="exited", exit_status=0 if result == "success" else 1,
        )
        for n, result in enumerate(results)
    ]  # fmt: skip


@pytest.fixture
def central(tmp_path: Path) -> Path:
    """backup.service every hour on three hosts: web1 fine, web2 failing now, db2 silent
    since five hours; sync.service on web1 only."""
    db = tmp_path / "central.db"
    runs = [
        *hourly("web1", "backup.service", 5, ["success"] * 6),
        *hourly("web2", "backup.service", 5, ["success"] * 4 + ["exit-code"] * 2),
        *hourly("db2", "backup.service", 10, ["success"] * 6),
        *hourly("web1", "sync.service", 3, ["exit-code", "success", "success", "success"]),
    ]
    with closing(database.open_for_writing(db)) as conn:
        database.write_batch(conn, database.Batch(runs=runs))
    return db


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# -- the rule of silence -------------------------------------------------------------------


def cell(starts: list[int], failures: int = 0, running: bool = False) -> views.HostUnit:
    return views.HostUnit("web1", "backup.service", len(starts), failures, failures, running,
                          tuple(starts))  # fmt: skip


def test_a_unit_is_silent_once_twice_its_usual_interval_passed_without_a_start() -> None:
    starts = [NOW_USEC - n * HOUR for n in range(5)]
    assert views.standing(cell(starts), NOW_USEC + 2 * HOUR) == views.Standing.OK
    assert views.standing(cell(starts), NOW_USEC + 2 * HOUR + 1) == views.Standing.SILENT
    # Running now, it is not silent, whatever its habit.
    assert views.standing(cell(starts, running=True), NOW_USEC + 9 * HOUR) == views.Standing.OK


def test_a_unit_whose_timer_was_due_a_minute_ago_without_a_start_is_silent() -> None:
    due = dataclasses.replace(cell([NOW_USEC - HOUR]), timer_due_usec=NOW_USEC)
    assert views.standing(due, NOW_USEC + views.MIN_LATE_USEC) == views.Standing.OK
    assert views.standing(due, NOW_USEC + views.MIN_LATE_USEC + 1) == views.Standing.SILENT
    started = dataclasses.replace(due, starts_usec=(NOW_USEC + 1, NOW_USEC - HOUR))
    assert views.standing(started, NOW_USEC + HOUR) == views.Standing.OK


def test_a_unit_with_fewer_than_three_starts_has_no_habit_and_is_never_silent() -> None:
    starts = [NOW_USEC, NOW_USEC - MINUTE]
    assert views.standing(cell(starts, failures=1), NOW_USEC + 100 * HOUR) == "failing"


@given(
    gaps=st.lists(st.integers(1, 10 * HOUR), min_size=2, max_size=25),
    after=st.integers(0, 50 * HOUR),
)
def test_silence_follows_the_median_gap_times_the_grace_and_a_minute_at_least(
    gaps: list[int], after: int
) -> None:
    starts = [NOW_USEC]
    for gap in gaps:
        starts.append(starts[-1] - gap)
    starts = starts[: views.RECENT_STARTS]
    median = sorted(a - b for a, b in itertools.pairwise(starts))
    usual = (median[(len(median) - 1) // 2] + median[len(median) // 2]) / 2
    late = max(int(int(usual) * views.GRACE), int(usual) + views.MIN_LATE_USEC)
    silent = views.standing(cell(starts), NOW_USEC + after) == views.Standing.SILENT
    assert silent == (after > late)


# -- observer fleet ------------------------------------------------------------------------


def test_fleet_names_the_failing_host_and_the_silent_one(
    capsys: pytest.CaptureFixture[str], central: Path
) -> None:
    assert run_cli(capsys, "fleet", "--db", str(central)) == (
        0,
        "backup.service: 1 of 3 hosts ok, 1 failing (web2), 1 silent (db2)\n"
        "sync.service: 1 of 1 host ok\n",
        "",
    )


def test_fleet_json_has_the_agreed_shape(capsys: pytest.CaptureFixture[str], central: Path) -> None:
    status, out, _ = run_cli(capsys, "fleet", "backup*", "--json", "--db", str(central))
    assert status == 0
    assert json.loads(out) == {
        "units": [
            {"unit": "backup.service", "user": None, "hosts": 3, "ok": ["web1"],
             "failing": ["web2"], "silent": ["db2"], "runs": 18, "failures": 2},
        ],
        "hosts": [
            {"host": "db2", "last_run_usec": NOW_USEC - 5 * HOUR, "units": 1},
            {"host": "web1", "last_run_usec": NOW_USEC, "units": 1},
            {"host": "web2", "last_run_usec": NOW_USEC, "units": 1},
        ],
    }  # fmt: skip


def test_fleet_on_some_hosts_only(capsys: pytest.CaptureFixture[str], central: Path) -> None:
    _, out, _ = run_cli(capsys, "fleet", "--host", "web*", "--db", str(central))
    assert out.splitlines()[0] == "backup.service: 1 of 2 hosts ok, 1 failing (web2)"


# -- --host and the HOST column ------------------------------------------------------------


def test_status_shows_a_host_column_and_a_row_per_host(
    capsys: pytest.CaptureFixture[str], central: Path
) -> None:
    _, out, _ = run_cli(capsys, "status", "--db", str(central))
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["HOST", "UNIT", "LAST"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["db2", "backup.service", "success"],
        ["web1", "backup.service", "success"],
        ["web2", "backup.service", "exit-code"],
        ["web1", "sync.service", "success"],
    ]
    _, out, _ = run_cli(capsys, "status", "--json", "--host", "web2", "--db", str(central))
    [web2] = json.loads(out)
    assert (web2["host"], web2["unit"], web2["consecutive_failures"]) == (
        "web2",
        "backup.service",
        2,
    )


def test_history_and_runs_of_one_host(capsys: pytest.CaptureFixture[str], central: Path) -> None:
    _, out, _ = run_cli(
        capsys, "history", "backup", "--host", "db2", "--json", "--db", str(central)
    )
    runs = json.loads(out)
    assert [run["host"] for run in runs] == ["db2"] * 6
    _, out, _ = run_cli(capsys, "history", "backup", "-n", "4", "--db", str(central))
    # Equal start times: the newer row first, as on one host.
    assert [line.split()[0] for line in out.splitlines()] == ["HOST", *["web2", "web1"] * 2]
    _, out, _ = run_cli(
        capsys, "runs", "--since", "2h", "--host", "web[12]", "--json", "--db", str(central)
    )
    assert sorted((r["host"], r["unit"]) for r in json.loads(out)) == sorted(
        [(h, u) for h in ("web1", "web2") for u in ("backup.service",) for _ in range(3)]
        + [("web1", "sync.service")] * 3
    )


def test_last_failure_show_and_stats_keep_to_the_host_asked_for(
    capsys: pytest.CaptureFixture[str], central: Path
) -> None:
    db = str(central)
    _, out, _ = run_cli(capsys, "last-failure", "backup", "--host", "web2", "--json", "--db", db)
    failed = json.loads(out)
    assert (failed["host"], failed["result"]) == ("web2", "exit-code")
    status, _, err = run_cli(capsys, "last-failure", "backup", "--host", "web1", "--db", db)
    assert (status, err) == (1, "observer: no failed run of 'backup.service' is recorded there\n")
    status, _, err = run_cli(capsys, "show", str(failed["id"]), "--host", "db2", "--db", db)
    assert (status, "ran on 'web2'" in err) == (1, True)
    status, _, err = run_cli(capsys, "history", "sync", "--host", "db2", "--db", db)
    assert (status, "it has runs on web1" in err) == (1, True)
    _, out, _ = run_cli(capsys, "stats", "backup", "--json", "--db", db)
    assert [(s["host"], s["failures"]) for s in json.loads(out)] == [
        ("db2", 0),
        ("web1", 0),
        ("web2", 2),
    ]


# -- alerts and metrics per host -----------------------------------------------------------


def test_one_hosts_failing_unit_is_its_own_alert_naming_the_host(central: Path) -> None:
    with closing(database.open_for_writing(central)) as conn:
        conn.row_factory = sqlite3.Row
        book = AlertLedger(conn, AlertsConfig(present=True), lambda unit: [CHANNEL], host="hub")
        book.since(NOW_USEC - 3 * HOUR)  # alerting began before web2's two failures
        alerts = book.judge_runs(NOW_USEC + MINUTE)
        assert [(a.unit, a.kind) for a in alerts] == [("backup.service", "failing")]
        [due] = outbox.due_deliveries(conn, NOW_USEC + 2 * MINUTE)
        message = compose(conn, due.alert, "hub", 3)
        states = conn.execute(
            "SELECT host, failures, failing_usec IS NOT NULL FROM alert_state "
            "WHERE unit = 'backup.service' ORDER BY host"
        ).fetchall()
        counts = snapshot.alert_counts(conn)
        units, _ = snapshot.read_unit_states(conn, {}, "hub")
    assert message.title.startswith("[web2] backup.service failed 2 times in a row")
    assert message.body.startswith("backup.service on web2 failed")
    # db2's runs ended before alerting began: nothing of it to judge yet.
    assert [tuple(row) for row in states] == [("web1", 0, 0), ("web2", 2, 1)]
    text = collectors.render(
        collectors.RunCollector(snapshot.Snapshot(host="hub", units=tuple(units), alerts=counts))
        .collect()
    ).decode()  # fmt: skip
    assert 'observer_alert_open{host="web2",unit="backup.service",kind="failing"} 1' in text
    assert 'observer_consecutive_failures{host="web2",unit="backup.service",user=""} 2.0' in text
    assert 'observer_consecutive_failures{host="db2",unit="backup.service",user=""} 0.0' in text
    assert 'host="hub"' not in text


# -- schema 7 ------------------------------------------------------------------------------


def test_schema_7_keeps_every_alert_row_of_an_older_database_under_its_host(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.executescript(schema.BASE_SCHEMA)
        for step in schema.MIGRATIONS[:5]:
            conn.executescript(step) if isinstance(step, str) else step(conn)
        conn.execute(
            "INSERT INTO runs (unit, invocation_id, host, source, started_usec, finished_usec, "
            "result) VALUES ('a.service', ?, 'vm', 'bus', ?, ?, 'exit-code')",
            ("1" * 32, NOW_USEC, NOW_USEC + 1),
        )
        conn.execute(
            "INSERT INTO alert_state VALUES ('a.service', 3, 5, NULL, NULL, NULL, 5, NULL, "
            "?, 1, NULL, 1)",
            (NOW_USEC,),
        )
        conn.execute("INSERT INTO alert_state VALUES ('timer-only.service', 0, NULL, 7, "
                     "NULL, NULL, 7, NULL, 0, 0, NULL, 1)")  # fmt: skip
        conn.execute("INSERT INTO alert_problems VALUES ('a.service', 'rate', 9)")
        conn.execute("INSERT INTO alerts VALUES (1, 5, 'a.service', 'failing', 'failed', 1)")
        conn.execute("PRAGMA user_version = 6")
        conn.commit()
    with closing(database.open_for_writing(db)) as conn:
        step = schema.MIGRATIONS[5]
        assert callable(step)
        step(conn)  # again (a second process upgrading at once): nothing changes
        states = conn.execute("SELECT unit, host, failures FROM alert_state ORDER BY unit")
        assert states.fetchall() == [("a.service", "vm", 3), ("timer-only.service", "vm", 0)]
        problems = conn.execute("SELECT * FROM alert_problems").fetchall()
        assert problems == [("a.service", "vm", "rate", 9)]
        assert conn.execute("SELECT host FROM alerts").fetchall() == [("vm",)]
        [kept] = summary.read(conn)
        assert (kept.host, kept.unit, kept.failures) == ("vm", "a.service", 1)
    database.open_for_reading(db).close()


def test_the_dashboard_shows_a_unit_of_several_hosts_once_at_its_worst_host(
    capsys: pytest.CaptureFixture[str], central: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    status, _, err = run_cli(capsys, "report", "--db", str(central), "--output", str(site))
    assert (status, err) == (0, "")
    index = (site / "index.html").read_text()
    assert index.count("backup.service</a>") == 1
    page = next(site.glob("unit*backup.service*.html")).read_text()
    assert all(host in page for host in ("web1", "web2", "db2"))
    assert 'href="fleet.html"' in index
    fleet = (site / "fleet.html").read_text()
    assert "<th>db2</th><th>web1</th><th>web2</th>" in fleet
    backup = next(line for line in fleet.splitlines() if ">backup.service</a>" in line)
    assert [cell.split(">")[-1] for cell in backup.split("</td>")[1:4]] == [
        "success",
        "success",
        "exit-code",
    ]
    assert backup.count('class="result fail"') == 1
    sync = next(line for line in fleet.splitlines() if ">sync.service</a>" in line)
    assert sync.count('class="result none"') == 2


def test_on_a_servers_own_database_a_unit_whose_timer_passed_is_silent(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "observer.db"
    timer = TimerState("backup.timer", "backup.service", NOW_USEC - 10 * MINUTE, None)
    with closing(database.open_for_writing(db)) as conn:
        runs = hourly("vm", "backup.service", 1, ["success"])
        database.write_batch(conn, database.Batch(runs=runs))
        database.write_batch(conn, database.Batch(timers=[timer]))
    assert run_cli(capsys, "fleet", "--db", str(db))[1] == (
        "backup.service: 0 of 1 host ok, 1 silent (vm)\n"
    )
