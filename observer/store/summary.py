"""Per-unit state kept beside the runs: what `status`, `stats` and the metrics ask of a unit.

A summary is kept per host and unit (schema 7): on a central database (docs/fleet.md) web1's
backup.service and web2's are two rows; on a server's own database every run has the one
host, and there is one row per unit as before.

It is derived state with one code path: ``refresh`` computes a (host, unit)'s row from the
runs table, and every writer calls it in the transaction that changed the unit's runs
(``store.write_batch``, ``store.prune``, the migration that creates the table). Each query
walks an index of the host's runs of the unit and stops as soon as it has its answer, so the
cost of a refresh follows those runs (bounded by retention), never the whole history. A
write refreshes only the units whose runs it changed in what a summary reads (``Changes``:
each run's facts before it and after), and counts theirs as kept plus what it changed: its
refresh reads the windows below and the failure streak, not every run of the unit (one with
no row kept is counted from its runs).

Durations: p50, p95 and max are exact over the unit's newest ``DURATION_WINDOW`` finished
runs (by their end), read from an index without touching the table.

The trend (schema 8): the median duration of the successes that ended in the 7 days before
the unit's newest end and the median of those of the 30 days before that, each over its
newest ``TREND_LIMIT`` successes; the alert rule ``slower`` judges a run by the same
``trend_periods`` at the run's end. Kept as of the newest end, it changes only when the
unit's runs do, so a refresh keeps it exact: `observer stats` reads it, no walk. A unit
with fewer than ``TREND_MIN_RUNS`` successes in all has no trend, and its refresh walks no
period.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence

from observer.model import (
    SKIPPED_RESULTS,
    SUCCESS_RESULTS,
    is_skipped,
    is_success,
    run_duration_seconds,
)
from observer.records import NamedTuple

# typing.TYPE_CHECKING would import typing (a reading command's start); mypy takes this as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol, TypeVar

    _Key = TypeVar("_Key")

    class PlacedRun(Protocol):
        """What places a run in the history: its times and its ID."""

        @property
        def id(self) -> int: ...
        @property
        def started_usec(self) -> int | None: ...
        @property
        def finished_usec(self) -> int | None: ...


# How many of a unit's newest finished runs its duration percentiles are taken over.
DURATION_WINDOW = 1000
# The trend compares the newest this many successes of each period at most, and needs
# TREND_MIN_RUNS of each.
TREND_LIMIT = 1000
TREND_MIN_RUNS = 3
DAY_USEC = 86_400 * 1_000_000

# A run's place in the history: its start, or its end when no source saw it start.
ORDER_KEY = "COALESCE(started_usec, finished_usec)"
# Newest first: SQLite sorts NULL below every value, so runs without a time come last, and
# runs of the same time newest ID first. ``newest_first`` is the same order in Python.
NEWEST_FIRST = f"{ORDER_KEY} DESC, id DESC"


def _result_in(results: frozenset[str]) -> str:
    # Spelled as literals, not parameters: a partial index (FAILED) takes no parameters.
    return "result IN ({})".format(", ".join(f"'{r}'" for r in sorted(results)))


# In SQL what model.is_success, is_skipped and is_failure are in Python, from the same sets.
SUCCEEDED = _result_in(SUCCESS_RESULTS)
SKIPPED = _result_in(SKIPPED_RESULTS)
# A finished run that did not succeed and was not skipped (also one whose result is unknown).
FAILED = (
    f"finished_usec IS NOT NULL AND (result IS NULL OR NOT "
    f"{_result_in(SUCCESS_RESULTS | SKIPPED_RESULTS)})"
)

TABLE = """
CREATE TABLE IF NOT EXISTS unit_summary (
    unit TEXT NOT NULL,
    host TEXT NOT NULL,
    runs INTEGER NOT NULL,
    successes INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    newest_run_id INTEGER,
    newest_finished_id INTEGER,
    last_success_usec INTEGER,
    last_failure_usec INTEGER,
    consecutive_failures INTEGER NOT NULL,
    duration_p50_seconds REAL,
    duration_p95_seconds REAL,
    duration_max_seconds REAL,
    skipped INTEGER NOT NULL DEFAULT 0,
    cpu_p50_seconds REAL,
    cpu_p95_seconds REAL,
    memory_peak_p50_bytes INTEGER,
    memory_peak_p95_bytes INTEGER,
    trend_week_p50_seconds REAL,
    trend_earlier_p50_seconds REAL,
    PRIMARY KEY (unit, host)
) WITHOUT ROWID;
"""

# The indexes the summary and the listings walk. An index on an expression serves a query
# only when the query spells the same expression: always use ORDER_KEY and FAILED.
INDEXES = f"""
DROP INDEX IF EXISTS runs_by_unit;
DROP INDEX IF EXISTS runs_by_start;
CREATE INDEX IF NOT EXISTS runs_by_unit_order ON runs (unit, {ORDER_KEY});
CREATE INDEX IF NOT EXISTS runs_by_order ON runs ({ORDER_KEY});
CREATE INDEX IF NOT EXISTS runs_by_unit_end ON runs (unit, finished_usec, result, started_usec);
CREATE INDEX IF NOT EXISTS failed_by_unit_order ON runs (unit, {ORDER_KEY}) WHERE {FAILED};
CREATE INDEX IF NOT EXISTS failed_by_order ON runs ({ORDER_KEY}) WHERE {FAILED};
"""
# Schema 7: the same walks for one host's runs of a unit (the summaries, `--host`).
HOST_INDEXES = f"""
CREATE INDEX IF NOT EXISTS runs_by_unit_host_order ON runs (unit, host, {ORDER_KEY});
CREATE INDEX IF NOT EXISTS runs_by_unit_host_end ON runs
    (unit, host, finished_usec, result, started_usec);
"""


class UnitSummary(NamedTuple):
    """One unit's kept state; times in microseconds since the epoch."""

    unit: str
    runs: int  # finished runs: successes, failures and skipped starts
    successes: int
    failures: int
    newest_run_id: int | None  # the newest run, finished or not
    newest_finished_id: int | None
    last_success_usec: int | None  # the latest end of a successful run
    last_failure_usec: int | None  # the latest end of a failed run
    consecutive_failures: int  # failed runs since the newest success, newest first
    duration_p50_seconds: float | None
    duration_p95_seconds: float | None
    duration_max_seconds: float | None
    skipped: int = 0  # condition, exec-condition: neither success nor failure
    cpu_p50_seconds: float | None = None  # over the runs whose cost systemd accounted
    cpu_p95_seconds: float | None = None
    memory_peak_p50_bytes: int | None = None
    memory_peak_p95_bytes: int | None = None
    host: str = ""
    # The trend's medians as of the newest end (None: not TREND_MIN_RUNS successes).
    trend_week_p50_seconds: float | None = None
    trend_earlier_p50_seconds: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.host, self.unit)

    @property
    def trend(self) -> float | None:
        """The week's median duration over that of the 30 days before it (None: unknown)."""
        return trend_of(self.trend_week_p50_seconds, self.trend_earlier_p50_seconds)


_COLUMNS = (
    "unit, runs, successes, failures, newest_run_id, newest_finished_id, last_success_usec, "
    "last_failure_usec, consecutive_failures, duration_p50_seconds, duration_p95_seconds, "
    "duration_max_seconds, skipped, cpu_p50_seconds, cpu_p95_seconds, memory_peak_p50_bytes, "
    "memory_peak_p95_bytes, host, trend_week_p50_seconds, trend_earlier_p50_seconds"
)


def newest_first(run: PlacedRun) -> tuple[int, int, int]:
    """The sort key of ``NEWEST_FIRST`` (ascending): to merge runs read in that order."""
    key = run.started_usec if run.started_usec is not None else run.finished_usec
    return (0, -key, -run.id) if key is not None else (1, 0, -run.id)


def failure_streak(runs: Iterable[tuple[_Key, str | None]]) -> tuple[int, _Key | None]:
    """The failed runs in a row at the head of ``runs``, (key, Result) newest first, and the
    key of the success that ended the streak (None: no success). Skipped starts neither count
    nor end it. It reads ``runs`` only up to that success."""
    streak = 0
    for key, result in runs:
        if is_success(result):
            return streak, key
        if not is_skipped(result):
            streak += 1
    return streak, None


# What a run adds to its unit's counts: (finished runs, successes, skipped starts).
Counted = tuple[int, int, int]
# The facts of a run a summary reads, besides its ID, unit and host.
FACTS = "started_usec, finished_usec, result, cpu_seconds, memory_peak_bytes"
Facts = tuple[int | None, int | None, str | None, float | None, int | None]


def counted(facts: Facts | None) -> Counted:
    """What a run with these facts (None: no run) adds to the counts (the SQL of ``_COUNTS``)."""
    if facts is None or facts[1] is None:
        return (0, 0, 0)
    return (1, int(is_success(facts[2])), int(is_skipped(facts[2])))


class Changes:
    """The runs a write touches, each with its facts before the write (None: a new run), so
    that the refresh after it knows which summaries changed and by what counts."""

    __slots__ = ("before",)

    def __init__(self) -> None:
        self.before: dict[int, Facts | None] = {}

    def note(self, run_id: int, facts: Facts | None) -> None:
        """Before a change to run ``run_id``: what it was (the first note of a run counts)."""
        self.before.setdefault(run_id, facts)

    def added(self, conn: sqlite3.Connection) -> dict[tuple[str, str], Counted]:
        """Per (host, unit) of a run whose facts changed, what the changes add to its counts
        (every key of a changed run is there, zeros included); a key whose runs changed
        nothing the summary reads is not."""
        added: dict[tuple[str, str], Counted] = {}
        ids = list(self.before)
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            rows = conn.execute(
                f"SELECT id, host, unit, {FACTS} FROM runs "
                f"WHERE id IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            for run_id, host, unit, *now in rows:
                was = self.before[run_id]
                if tuple(now) == was:
                    continue
                new, old = counted(tuple(now)), counted(was)
                n = added.get((host, unit), (0, 0, 0))
                added[host, unit] = (n[0] + new[0] - old[0], n[1] + new[1] - old[1],
                                     n[2] + new[2] - old[2])  # fmt: skip
        return added


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile ``q`` (0 < q <= 100) of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (not empty): the middle one, or the mean of the two middle."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def trend_median(durations: Sequence[float]) -> float | None:
    """A period's median for the trend; None with fewer than TREND_MIN_RUNS successes."""
    return median(durations) if len(durations) >= TREND_MIN_RUNS else None


def trend_of(week_p50: float | None, earlier_p50: float | None) -> float | None:
    """The trend from the two periods' medians: None without both, or of no earlier time."""
    if week_p50 is None or earlier_p50 is None or earlier_p50 <= 0:
        return None
    return float(week_p50 / earlier_p50)


def of_host(host: str | None) -> tuple[str, str, tuple[str, ...]]:
    """The index of a unit's runs by end, the condition on the host and its parameter, for
    a host (None: any host's runs)."""
    if host is None:
        return "runs_by_unit_end", "", ()
    return "runs_by_unit_host_end", "AND r.host = ? ", (host,)


def success_seconds_between(
    conn: sqlite3.Connection, unit: str, start_usec: int, end_usec: int, host: str | None = None
) -> list[float]:
    """Durations of the unit's (newest ``TREND_LIMIT``) successes that ended in a range."""
    index, on_host, named = of_host(host)
    rows = conn.execute(
        f"SELECT r.started_usec, r.finished_usec FROM runs r INDEXED BY {index} "
        f"WHERE r.unit = ? {on_host}AND r.finished_usec >= ? AND r.finished_usec < ? "
        f"AND r.{SUCCEEDED} AND r.started_usec IS NOT NULL "
        "ORDER BY r.finished_usec DESC LIMIT ?",
        (unit, *named, start_usec, end_usec, TREND_LIMIT),
    )
    durations = (run_duration_seconds(started, finished) for started, finished in rows)
    return [seconds for seconds in durations if seconds is not None]


def trend_periods(
    conn: sqlite3.Connection, unit: str, end_usec: int, host: str | None = None
) -> tuple[list[float], list[float]]:
    """Durations of the successes of the 7 days before ``end_usec`` and of the 30 before
    (of one host's runs, given a ``host``)."""
    week = success_seconds_between(conn, unit, end_usec - 7 * DAY_USEC, end_usec, host)
    earlier_end = end_usec - 7 * DAY_USEC
    return week, success_seconds_between(conn, unit, earlier_end - 30 * DAY_USEC, earlier_end, host)


def _kept_trend(
    conn: sqlite3.Connection, host: str, unit: str, newest_end: int | None, successes: int
) -> tuple[float | None, ...]:
    """The trend's two medians as of ``newest_end``, the newest end of ``host``'s runs of
    ``unit``; no walk when the unit has not the successes for one (a period's are a part)."""
    if newest_end is None or successes < TREND_MIN_RUNS:
        return None, None
    return tuple(map(trend_median, trend_periods(conn, unit, newest_end + 1, host)))


# Per (unit, host): the counts (a walk of its runs by end) and the newest ends of a success,
# of a failure and of any run (each a seek from the newest end that stops at its answer).
_NEWEST_END = (
    "(SELECT finished_usec FROM runs INDEXED BY runs_by_unit_host_end WHERE unit = :unit "
    "AND host = :host AND {} ORDER BY finished_usec DESC LIMIT 1)"
)
_ENDS = ", ".join(
    _NEWEST_END.format(wanted)
    for wanted in (
        f"finished_usec IS NOT NULL AND {SUCCEEDED}",
        FAILED,
        "finished_usec IS NOT NULL",
    )
)
_COUNTED = (
    "COUNT(finished_usec)",
    f"TOTAL(finished_usec IS NOT NULL AND {SUCCEEDED})",
    f"TOTAL(finished_usec IS NOT NULL AND {SKIPPED})",
)
_OF_UNIT = "FROM runs INDEXED BY runs_by_unit_host_end WHERE unit = :unit AND host = :host"
_COUNTS = f"SELECT {', '.join(_COUNTED)}, {_ENDS} {_OF_UNIT}"
# The same from the kept counts plus what a write added (:runs, :successes, :skipped),
# counted from the runs only when no row is kept (COALESCE reads its second value only then).
_KEPT_COUNTS = (
    "SELECT {}, {} FROM (SELECT 1) "
    "LEFT JOIN unit_summary kept ON kept.unit = :unit AND kept.host = :host"
).format(
    ", ".join(
        f"COALESCE(kept.{column} + :{column}, (SELECT {counted} {_OF_UNIT}))"
        for column, counted in zip(("runs", "successes", "skipped"), _COUNTED, strict=True)
    ),
    _ENDS,
)
# The window of durations: the start and end of each run in it (model.run_duration_seconds
# makes a duration of them, the one place that does). The window is the index's own order,
# ties between equal ends included: nothing to sort but its DURATION_WINDOW values at most.
_DURATIONS = (
    "SELECT started_usec, finished_usec FROM runs INDEXED BY runs_by_unit_host_end "
    "WHERE unit = ? AND host = ? AND finished_usec IS NOT NULL "
    f"AND NOT COALESCE({SKIPPED}, 0) "
    "ORDER BY finished_usec DESC, result DESC, started_usec DESC, id DESC LIMIT ?"
)


def _newest(conn: sqlite3.Connection, host: str, unit: str) -> tuple[int, int | None, int] | None:
    """The newest run's ID, the newest finished run's and the failure streak, in one walk
    newest first that stops at the newest success; None when ``host`` has no run of ``unit``."""
    walk = conn.execute(
        "SELECT id, finished_usec IS NOT NULL, result FROM runs INDEXED BY "
        f"runs_by_unit_host_order WHERE unit = ? AND host = ? ORDER BY {NEWEST_FIRST}",
        (unit, host),
    )
    head = walk.fetchone()
    if head is None:
        return None
    finished = ((run_id, result) for run_id, done, result in itertools.chain([head], walk) if done)
    first = next(finished, None)
    if first is None:
        return int(head[0]), None, 0
    streak, _ = failure_streak(itertools.chain([first], finished))
    return int(head[0]), int(first[0]), streak


def _counts(
    conn: sqlite3.Connection, host: str, unit: str, added: Counted | None
) -> tuple[int, int, int, int | None, int | None, int | None]:
    """The counts of ``host``'s runs of ``unit`` (those kept plus ``added``, when given and a
    row is kept) and the newest ends of a success, of a failure and of any run."""
    named: dict[str, str | int] = {"unit": unit, "host": host}
    if added is None:
        counts = conn.execute(_COUNTS, named).fetchone()
    else:
        named.update(zip(("runs", "successes", "skipped"), added, strict=True))
        counts = conn.execute(_KEPT_COUNTS, named).fetchone()
    runs, successes, skipped, *ends = counts
    return int(runs), int(successes), int(skipped), *ends


def compute(
    conn: sqlite3.Connection, host: str, unit: str, added: Counted | None = None
) -> UnitSummary | None:
    """The summary of ``host``'s runs of ``unit``; None when it has none. Its counts are
    those kept plus ``added`` when given (what a write changed, ``Changes``), else counted
    from the runs."""
    key = (unit, host)
    newest = _newest(conn, host, unit)
    if newest is None:
        return None
    newest_run, newest_finished, streak = newest
    runs, successes, skipped, last_success, last_failure, newest_end = _counts(
        conn, host, unit, added
    )
    durations = sorted(
        seconds
        for started, finished in conn.execute(_DURATIONS, (*key, DURATION_WINDOW))
        if (seconds := run_duration_seconds(started, finished)) is not None
    )
    costs = conn.execute(
        "SELECT cpu_seconds, memory_peak_bytes FROM runs INDEXED BY runs_by_unit_host_end "
        "WHERE unit = ? AND host = ? AND finished_usec IS NOT NULL AND (cpu_seconds IS NOT NULL "
        "OR memory_peak_bytes IS NOT NULL) ORDER BY finished_usec DESC, id DESC LIMIT ?",
        (*key, DURATION_WINDOW),
    ).fetchall()
    cpu = sorted(float(c) for c, _ in costs if c is not None)
    memory = sorted(int(m) for _, m in costs if m is not None)
    week_p50, earlier_p50 = _kept_trend(conn, host, unit, newest_end, successes)
    return UnitSummary(
        unit=unit,
        runs=runs,
        successes=successes,
        failures=runs - successes - skipped,
        newest_run_id=newest_run,
        newest_finished_id=newest_finished,
        last_success_usec=last_success,
        last_failure_usec=last_failure,
        consecutive_failures=streak,
        duration_p50_seconds=percentile(durations, 50),
        duration_p95_seconds=percentile(durations, 95),
        duration_max_seconds=durations[-1] if durations else None,
        skipped=skipped,
        cpu_p50_seconds=percentile(cpu, 50),
        cpu_p95_seconds=percentile(cpu, 95),
        memory_peak_p50_bytes=_whole(percentile(memory, 50)),
        memory_peak_p95_bytes=_whole(percentile(memory, 95)),
        host=host,
        trend_week_p50_seconds=week_p50,
        trend_earlier_p50_seconds=earlier_p50,
    )


def _whole(value: float | None) -> int | None:
    return None if value is None else int(value)


def refresh(
    conn: sqlite3.Connection,
    keys: Iterable[tuple[str, str]],
    added: Mapping[tuple[str, str], Counted] | None = None,
) -> None:
    """Recompute the summaries of ``keys``, (host, unit) pairs (in the caller's transaction);
    those in ``added`` from their kept counts plus what it says the caller added to them."""
    for host, unit in sorted(set(keys)):
        summary = compute(conn, host, unit, None if added is None else added.get((host, unit)))
        if summary is None:
            conn.execute("DELETE FROM unit_summary WHERE unit = ? AND host = ?", (unit, host))
            continue
        conn.execute(
            f"INSERT OR REPLACE INTO unit_summary ({_COLUMNS}) "
            f"VALUES ({', '.join('?' * 20)})",
            (
                summary.unit, summary.runs, summary.successes, summary.failures,
                summary.newest_run_id, summary.newest_finished_id, summary.last_success_usec,
                summary.last_failure_usec, summary.consecutive_failures,
                summary.duration_p50_seconds, summary.duration_p95_seconds,
                summary.duration_max_seconds, summary.skipped, summary.cpu_p50_seconds,
                summary.cpu_p95_seconds, summary.memory_peak_p50_bytes,
                summary.memory_peak_p95_bytes, summary.host, summary.trend_week_p50_seconds,
                summary.trend_earlier_p50_seconds,
            ),
        )  # fmt: skip


def rebuild(conn: sqlite3.Connection) -> None:
    """Recompute every summary (after a migration, or to repair)."""
    conn.execute("DELETE FROM unit_summary")
    refresh(conn, recorded_keys(conn))


def recorded_units(conn: sqlite3.Connection) -> list[str]:
    """Every unit with a recorded run, in name order (one index seek per unit)."""
    units: list[str] = []
    row = conn.execute("SELECT MIN(unit) FROM runs").fetchone()
    while row is not None and row[0] is not None:
        units.append(row[0])
        row = conn.execute("SELECT MIN(unit) FROM runs WHERE unit > ?", (row[0],)).fetchone()
    return units


def recorded_keys(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """Every (host, unit) with a recorded run, by unit then host (one index seek each)."""
    keys: list[tuple[str, str]] = []
    for unit in recorded_units(conn):
        row = conn.execute("SELECT MIN(host) FROM runs WHERE unit = ?", (unit,)).fetchone()
        while row is not None and row[0] is not None:
            keys.append((row[0], unit))
            row = conn.execute(
                "SELECT MIN(host) FROM runs WHERE unit = ? AND host > ?", (unit, row[0])
            ).fetchone()
    return keys


def read(
    conn: sqlite3.Connection,
    units: Iterable[str] | None = None,
    host_matches: Callable[[str], bool] | None = None,
) -> list[UnitSummary]:
    """The kept summaries of ``units`` (default: every unit with runs), by unit then host;
    only the hosts ``host_matches`` accepts, when given."""
    if units is None:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM unit_summary ORDER BY unit, host").fetchall()
    else:
        rows = [
            row
            for unit in sorted(set(units))
            for row in conn.execute(
                f"SELECT {_COLUMNS} FROM unit_summary WHERE unit = ? ORDER BY host", (unit,)
            )
        ]
    kept = [UnitSummary(*tuple(row)) for row in rows]
    return kept if host_matches is None else [s for s in kept if host_matches(s.host)]
