"""Every query the reading commands run walks an index: none scans the runs or sorts them."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from observer.fleet import facts
from observer.metrics import snapshot
from observer.reading import follow, history
from observer.reading.stats import unit_stats
from observer.store import database, hosts
from tests.unit.recorded_runs import NOW_USEC, RUNS, invocation


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = tmp_path / "observer.db"
    writer = database.open_for_writing(db)
    database.write_batch(writer, database.Batch(runs=RUNS))
    writer.close()
    conn = database.open_for_reading(db)
    yield conn
    conn.close()


def plans_of(conn: sqlite3.Connection, call: Callable[[], object]) -> dict[str, list[str]]:
    """The query plan of every statement ``call`` runs (as SQLite runs them, values bound)."""
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        call()
    finally:
        conn.set_trace_callback(None)
    plans = {}
    for sql in statements:
        if sql.lstrip().upper().startswith("SELECT"):
            rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            plans[sql] = [str(row[3]) for row in rows]
    assert plans, "no query ran"
    return plans


CALLS: dict[str, Callable[[sqlite3.Connection], object]] = {
    "history": lambda c: history.unit_history(c, "backup.service", 20),
    "show": lambda c: history.run_detail(c, "2"),
    "show by invocation": lambda c: history.run_detail(c, invocation(2)),
    "last-failure": lambda c: history.last_failure(c, "backup.service"),
    "stats": unit_stats,
    "stats --since": lambda c: unit_stats(c, since_usec=NOW_USEC - 86_400_000_000),
    "status": history.unit_status,
    "runs --since": lambda c: history.recent_runs(c, since_usec=NOW_USEC - 86_400_000_000),
    "runs --failed": lambda c: history.recent_runs(c, failed_only=True, limit=5),
    "runs --failed --unit": lambda c: history.recent_runs(
        c, unit_glob="backup*", failed_only=True, since_usec=0
    ),
    "runs -n": lambda c: history.recent_runs(c, limit=2),
    "resolve a unit": lambda c: history.resolve_unit(c, "backup"),
    "metrics snapshot": lambda c: snapshot.read_unit_states(c, {}),
    "runs --follow, its start": lambda c: (follow.newest_run_id(c), follow.unfinished_run_ids(c)),
    "runs --follow, a look": lambda c: follow.runs_after(c, 3, [1, 2]),
    # A central database: one host's runs, through the (unit, host) indexes.
    "history --host": lambda c: history.unit_history(c, "backup.service", 20, hosts.matcher("h*")),
    "last-failure --host": lambda c: history.last_failure(c, "backup.service", hosts.matcher("h*")),
    "runs --host": lambda c: history.recent_runs(c, limit=5, on=hosts.matcher("host1")),
    "stats --since --host": lambda c: unit_stats(
        c, since_usec=NOW_USEC - 86_400_000_000, host_matches=hosts.matcher("host1")
    ),
    "status --host": lambda c: history.unit_status(c, hosts.matcher("host1")),
    "fleet": facts.host_units,
}


@pytest.mark.parametrize("command", CALLS)
def test_the_reading_commands_neither_scan_nor_sort_the_runs(
    conn: sqlite3.Connection, command: str
) -> None:
    for sql, plan in plans_of(conn, lambda: CALLS[command](conn)).items():
        if " runs" not in sql:
            continue  # timers and output: a row per timer, a run's own lines
        for step in plan:
            # A SCAN in an index's order stops at the LIMIT or the first row it needs.
            scans_table = step.startswith(("SCAN r", "SCAN runs")) and "INDEX" not in step
            assert not scans_table, (sql, plan)
            assert "TEMP B-TREE" not in step, (sql, plan)


def test_a_listing_stops_reading_at_its_limit(conn: sqlite3.Connection) -> None:
    assert [r.id for r in history.recent_runs(conn, limit=2)] == [4, 5]
    assert [r.id for r in history.recent_runs(conn, unit_glob="backup*", limit=3)] == [4, 5, 3]
