"""The kept per-unit summaries equal a full recomputation from the runs, whatever happened."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observer.model import Run, Source
from observer.store import database, retention, schema, summary

UNITS = ("a.service", "b.service", "c@x.service")
# A central database holds several hosts' runs of the same units (docs/fleet.md).
HOSTS = ("host1", "web2")
RESULTS = (None, "success", "success", "exit-code", "signal", "timeout", "condition",
           "exec-condition", "dependency", "interrupted")  # fmt: skip
BASE = 1_790_000_000_000_000


def invocation(n: int) -> str:
    return f"{n:032x}"


@st.composite
def partial_runs(draw: st.DrawFn) -> Run:
    """What one source may report of a run: any subset of its facts, at any time."""
    n = draw(st.integers(0, 11))
    started = draw(st.one_of(st.none(), st.integers(0, 50)))
    finished = draw(st.one_of(st.none(), st.integers(0, 60)))
    if started is not None and finished is not None and finished < started:
        started, finished = finished, started
    # Some runs are starts systemd refused: no invocation ID, a start key instead.
    refused = n >= 9
    host = HOSTS[n % 4 // 2]  # and to one host; each unit has runs on both
    return Run(
        unit=UNITS[n % len(UNITS)],  # an invocation belongs to one unit
        invocation_id=None if refused else invocation(n),
        start_key=f"{host}:{UNITS[n % len(UNITS)]}:{n}" if refused else None,
        cpu_seconds=draw(st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.5, 7.0]))),
        memory_peak_bytes=draw(st.one_of(st.none(), st.sampled_from([0, 4096, 1 << 20]))),
        host=host,
        source=draw(st.sampled_from(list(Source))),
        started_usec=None if started is None else BASE + started * 1_000_000,
        finished_usec=None if finished is None else BASE + finished * 1_000_000,
        result=draw(st.sampled_from(RESULTS)) if finished is not None else None,
    )


writes = st.lists(partial_runs(), min_size=1, max_size=4).map(lambda runs: ("write", runs))
seconds = st.integers(0, 60).map(lambda s: BASE + s * 1_000_000)
# A batch of runs with run records (their facts replace those known) and a new systemd
# (the runs it interrupted are closed).
batches = st.builds(
    database.Batch,
    runs=st.lists(partial_runs(), max_size=3),
    records=st.lists(partial_runs(), max_size=2),
    interrupted=st.lists(
        st.tuples(st.sampled_from(HOSTS), seconds, st.one_of(st.none(), seconds)), max_size=1
    ),
).map(lambda batch: ("batch", batch))
prunes = st.tuples(
    st.one_of(st.none(), st.integers(0, 60).map(lambda s: BASE + s * 1_000_000)),
    st.one_of(st.none(), st.integers(1, 4)),
).map(lambda limits: ("prune", limits))


def expected(conn: sqlite3.Connection, unit: str, host: str = "h") -> summary.UnitSummary | None:
    """The summary as observer/store/summary.py defines it, from every row, in Python."""
    rows = [
        dict(zip(("id", "started", "finished", "result", "cpu", "memory"), row, strict=True))
        for row in conn.execute(
            "SELECT id, started_usec, finished_usec, result, cpu_seconds, memory_peak_bytes "
            "FROM runs WHERE unit = ? AND host = ?",
            (unit, host),
        )
    ]
    if not rows:
        return None

    def newest_first(row: dict[str, int | None]) -> tuple[int, int, int]:
        key = row["started"] if row["started"] is not None else row["finished"]
        return (0, -key, -row["id"]) if key is not None else (1, 0, -row["id"])  # type: ignore[operator]

    ordered = sorted(rows, key=newest_first)
    finished = [r for r in ordered if r["finished"] is not None]
    skipped = [r for r in finished if r["result"] in ("condition", "exec-condition")]
    succeeded = [r for r in finished if r["result"] == "success"]
    failed = [r for r in finished if r["result"] != "success" and r not in skipped]
    streak = 0
    for row in finished:
        if row["result"] == "success":
            break
        streak += row not in skipped
    by_end = sorted(
        [r for r in finished if r not in skipped],
        key=lambda r: (r["finished"], r["result"] is not None, r["result"] or "",
                       r["started"] is not None, r["started"] or 0, r["id"]),
        reverse=True,
    )[: summary.DURATION_WINDOW]  # fmt: skip
    # Sources merged (or a clock step) may put an end before a start: its duration is
    # unknown, and left out.
    durations = sorted(
        (r["finished"] - r["started"]) / 1e6
        for r in by_end
        if r["started"] is not None and r["finished"] >= r["started"]
    )
    costed = sorted(
        [r for r in finished if r["cpu"] is not None or r["memory"] is not None],
        key=lambda r: (r["finished"], r["id"]),
        reverse=True,
    )[: summary.DURATION_WINDOW]
    cpu = sorted(r["cpu"] for r in costed if r["cpu"] is not None)
    memory = sorted(r["memory"] for r in costed if r["memory"] is not None)
    week_p50, earlier_p50 = expected_trend(finished)
    return summary.UnitSummary(
        unit=unit,
        runs=len(finished),
        successes=len(succeeded),
        failures=len(failed),
        newest_run_id=ordered[0]["id"],
        newest_finished_id=finished[0]["id"] if finished else None,
        last_success_usec=max((r["finished"] for r in succeeded), default=None),
        last_failure_usec=max((r["finished"] for r in failed), default=None),
        consecutive_failures=streak,
        duration_p50_seconds=summary.percentile(durations, 50),
        duration_p95_seconds=summary.percentile(durations, 95),
        duration_max_seconds=durations[-1] if durations else None,
        skipped=len(skipped),
        cpu_p50_seconds=summary.percentile(cpu, 50),
        cpu_p95_seconds=summary.percentile(cpu, 95),
        memory_peak_p50_bytes=summary.percentile(memory, 50),  # type: ignore[arg-type]
        memory_peak_p95_bytes=summary.percentile(memory, 95),  # type: ignore[arg-type]
        host=host,
        trend_week_p50_seconds=week_p50,
        trend_earlier_p50_seconds=earlier_p50,
    )


def expected_trend(finished: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """The trend's medians as of the newest end: the 7 days before it and the 30 before."""
    if not finished:
        return None, None
    end = max(r["finished"] for r in finished) + 1
    day = 86_400 * 1_000_000

    def period(start: int, stop: int) -> float | None:
        successes = sorted(
            (r for r in finished if r["result"] == "success" and r["started"] is not None
             and start <= r["finished"] < stop),
            key=lambda r: (r["finished"], r["started"], r["id"]),
            reverse=True,
        )[: summary.TREND_LIMIT]  # fmt: skip
        durations = sorted(max(0, r["finished"] - r["started"]) / 1e6 for r in successes)
        if len(durations) < 3:
            return None
        middle = len(durations) // 2
        if len(durations) % 2:
            return float(durations[middle])
        return float(durations[middle - 1] + durations[middle]) / 2

    return period(end - 7 * day, end), period(end - 37 * day, end - 7 * day)


@pytest.fixture
def small_window(monkeypatch: pytest.MonkeyPatch) -> None:
    # A window smaller than a unit's runs, so that the newest-N cut is exercised.
    monkeypatch.setattr(summary, "DURATION_WINDOW", 3)


@pytest.mark.usefixtures("small_window")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.one_of(writes, writes, batches, prunes), min_size=1, max_size=12))
def test_kept_summaries_equal_a_full_recomputation_after_any_writes_and_retention(
    steps: list[tuple[str, object]],
) -> None:
    # A write refreshes only the summaries whose runs it changed, from their kept counts.
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.executescript(schema.SCHEMA)
        for kind, step in steps:
            if kind == "write":
                assert isinstance(step, list)
                database.write_batch(conn, database.Batch(runs=step))
            elif kind == "batch":
                assert isinstance(step, database.Batch)
                database.write_batch(conn, step)
            else:
                assert isinstance(step, tuple)
                older_than, keep = step
                retention.prune(conn, older_than_usec=older_than, keep_per_unit=keep, chunk=2)
            kept = {s.key: s for s in summary.read(conn)}
            for unit in UNITS:
                for host in HOSTS:
                    assert kept.get((host, unit)) == expected(conn, unit, host), (kind, step)


@st.composite
def runs_over_weeks(draw: st.DrawFn) -> Run:
    """A finished run of one of two units on one host, ending on any of 45 days."""
    n = draw(st.integers(0, 10_000))
    day = draw(st.integers(0, 45))
    finished = BASE + day * 86_400_000_000 + draw(st.integers(0, 3)) * 1_000_000
    return Run(
        unit=UNITS[n % 2], invocation_id=invocation(n), host="host1", source=Source.BUS,
        started_usec=finished - draw(st.sampled_from([1, 2, 5, 30])) * 1_000_000,
        finished_usec=finished, result=draw(st.sampled_from(["success", "success", "exit-code"])),
    )  # fmt: skip


@pytest.fixture
def small_trend_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fewer successes than a period holds, so that the newest-N cut is exercised.
    monkeypatch.setattr(summary, "TREND_LIMIT", 4)


@pytest.mark.usefixtures("small_trend_limit")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(st.lists(runs_over_weeks(), min_size=1, max_size=8), min_size=1, max_size=5),
    kept_days=st.one_of(st.none(), st.integers(0, 45)),
)
def test_the_kept_trend_equals_a_recomputation_over_weeks_of_runs(
    batches: list[list[Run]], kept_days: int | None
) -> None:
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.executescript(schema.SCHEMA)
        for batch in batches:
            unique = list({run.invocation_id: run for run in batch}.values())
            database.write_batch(conn, database.Batch(runs=unique))
        if kept_days is not None:  # retention moves the newest end of no unit but its periods
            older_than = BASE + kept_days * 86_400_000_000
            retention.prune(conn, older_than_usec=older_than, keep_per_unit=None, chunk=3)
        kept = {s.key: s for s in summary.read(conn)}
        for unit in UNITS[:2]:
            assert kept.get(("host1", unit)) == expected(conn, unit, "host1")


def test_a_migration_fills_the_summaries_of_an_older_database(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.executescript(schema.BASE_SCHEMA + str(schema.MIGRATIONS[0]))
        for n, result in enumerate(["success", "exit-code", "exit-code"]):
            conn.execute(
                "INSERT INTO runs (unit, invocation_id, host, source, started_usec, "
                "finished_usec, result) VALUES ('a.service', ?, 'h', 'bus', ?, ?, ?)",
                (invocation(n), BASE + n, BASE + n + 2_000_000, result),
            )
        conn.execute("PRAGMA user_version = 2")
        conn.commit()

    with closing(database.open_for_writing(db)) as conn:
        [kept] = summary.read(conn)
        assert kept == expected(conn, "a.service")
        assert (kept.runs, kept.failures, kept.consecutive_failures) == (3, 2, 2)


def test_schema_5_rebuilds_runs_keeping_every_row_and_takes_starts_without_invocation(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.executescript(schema.BASE_SCHEMA + "".join(str(s) for s in schema.MIGRATIONS[:3]))
        conn.execute(
            "INSERT INTO runs (id, unit, invocation_id, host, source, started_usec, "
            "finished_usec, result) VALUES (7, 'a.service', ?, 'h', 'bus', ?, ?, 'exec-condition')",
            (invocation(1), BASE, BASE + 1),
        )
        conn.execute("PRAGMA user_version = 4")
        conn.commit()
    with closing(database.open_for_writing(db)) as conn:
        # The step again (a second process upgrading at the same time) changes nothing.
        step = schema.MIGRATIONS[3]
        assert callable(step)
        step(conn)
        skip = Run(
            "a.service", None, "h", Source.JOURNAL, started_usec=BASE + 5,
            finished_usec=BASE + 5, result="condition", start_key="h:a.service:5",
        )  # fmt: skip
        database.write_batch(conn, database.Batch(runs=[skip, skip]))
        rows = conn.execute("SELECT id, invocation_id, result FROM runs ORDER BY id").fetchall()
        [kept] = summary.read(conn)
    assert rows == [(7, invocation(1), "exec-condition"), (8, None, "condition")]
    assert (kept.runs, kept.skipped, kept.failures) == (2, 2, 0)


@dataclass(frozen=True)
class _Placed:
    id: int
    started_usec: int | None
    finished_usec: int | None


@settings(max_examples=200, deadline=None)
@given(
    times=st.lists(
        st.tuples(st.one_of(st.none(), st.integers(0, 5)), st.one_of(st.none(), st.integers(0, 5))),
        max_size=12,
    )
)
def test_newest_first_sorts_in_python_as_the_sql_order_does(
    times: list[tuple[int | None, int | None]],
) -> None:
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, started_usec, finished_usec)")
        conn.executemany("INSERT INTO runs (started_usec, finished_usec) VALUES (?, ?)", times)
        in_sql = [
            row[0] for row in conn.execute(f"SELECT id FROM runs ORDER BY {summary.NEWEST_FIRST}")
        ]
        runs = [_Placed(*row) for row in conn.execute("SELECT * FROM runs ORDER BY random()")]
    assert [run.id for run in sorted(runs, key=summary.newest_first)] == in_sql


@given(results=st.lists(st.sampled_from(RESULTS)))
def test_the_failure_streak_equals_a_count_over_every_run_before_the_newest_success(
    results: list[str | None],
) -> None:
    successes = [i for i, result in enumerate(results) if result == "success"]
    ended_by = successes[0] if successes else None
    before = results if ended_by is None else results[:ended_by]
    failed = sum(1 for result in before if result not in ("condition", "exec-condition"))
    assert summary.failure_streak(enumerate(results)) == (failed, ended_by)


def test_the_failure_streak_reads_no_run_past_the_success_that_ends_it() -> None:
    def runs() -> Iterator[tuple[int, str | None]]:
        yield from [(3, "exit-code"), (2, "condition"), (1, "success")]
        raise AssertionError("read past the success")

    assert summary.failure_streak(runs()) == (1, 1)
