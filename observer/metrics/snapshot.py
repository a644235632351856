"""What the run metrics show, as plain data: unit states read from the store, runs counted.

Built on a worker thread (``read_unit_states``, ``RunTally``) so that a scrape never touches
the store or D-Bus; ``collectors`` turns a ``Snapshot`` into metric families.
"""

from __future__ import annotations

import bisect
import dataclasses
import fnmatch
import math
import re
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from observer.config import fold_rule
from observer.model import exit_facts, run_duration_seconds
from observer.reading import problems
from observer.store import summary
from observer.users import unit_of, user_of

# Upper bounds (seconds) of the run duration histogram: jobs take from a blink to hours.
DURATION_BUCKETS = (
    0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, math.inf,
)  # fmt: skip
_COLUMNS = "id, invocation_id, unit, host, source, started_usec, finished_usec, result, exit_code, "
_COLUMNS += "exit_status, restarts, cpu_seconds, io_read_bytes, io_write_bytes, "
_COLUMNS += "memory_peak_bytes, output_lost_lines"


@dataclass(frozen=True, slots=True)
class UnitState:
    """What the metrics say about one unit: its newest finished run and where it stands."""

    unit: str
    last_start_usec: int | None = None
    last_end_usec: int | None = None
    last_result: str | None = None
    last_exit_status: int | None = None  # only when the main process exited
    last_signal: str | None = None  # KILL, TERM, ... when a signal ended it
    last_success_usec: int | None = None  # end of the newest successful run
    last_failure_usec: int | None = None  # end of the newest failed run
    consecutive_failures: int = 0
    restarts: int | None = None
    running: bool = False
    running_since_usec: int | None = None
    # CPU seconds, bytes read, bytes written, peak memory of the newest finished run.
    last_cost: tuple[float | None, int | None, int | None, int | None] = (None,) * 4
    last_output_lost_lines: int | None = None
    host: str = ""  # the host whose runs these are ("": the daemon's own)

    @property
    def last_duration_seconds(self) -> float | None:
        return run_duration_seconds(self.last_start_usec, self.last_end_usec)


@dataclass(frozen=True, slots=True)
class TimerSchedule:
    """A timer and the unit it starts, with when it fired last and fires next."""

    timer: str
    unit: str
    next_usec: int | None
    last_usec: int | None


@dataclass(frozen=True, slots=True)
class Durations:
    """One unit's duration histogram: cumulative counts per bucket of DURATION_BUCKETS."""

    buckets: tuple[int, ...]
    sum_seconds: float

    @property
    def count(self) -> int:
        return self.buckets[-1]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the run metrics show, as of ``taken_at`` (seconds since the epoch).

    ``host`` is the daemon's own; each unit's state, run counts and durations carry the
    host of their runs (on a central database, many).
    """

    host: str
    units: tuple[UnitState, ...] = ()
    timers: tuple[TimerSchedule, ...] = ()
    runs_by_result: Mapping[tuple[str, str, str], int] = field(default_factory=dict)  # host, unit
    durations: Mapping[tuple[str, str], Durations] = field(default_factory=dict)  # host, unit
    alerts: AlertCounts | None = None
    taken_at: float = 0.0


@dataclass(frozen=True, slots=True)
class AlertCounts:
    """What the alert service recorded: alerts by (host, unit, kind), the open problems by
    (host, unit), and failed delivery attempts by channel (as kept: alerts live as long as
    runs)."""

    made: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    open: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    failed_attempts: Mapping[str, int] = field(default_factory=dict)


def alert_counts(conn: sqlite3.Connection, fold: UnitFold | None = None) -> AlertCounts:
    """Read from the alert tables: a few rows per unit that ever alerted (or per fold)."""
    fold = fold or UnitFold()
    made: dict[tuple[str, str, str], int] = {}
    for host, unit, kind, n in conn.execute(
        "SELECT host, unit, kind, COUNT(*) FROM alerts GROUP BY host, unit, kind"
    ):
        alerted = (str(host), fold(str(unit)), str(kind))
        made[alerted] = made.get(alerted, 0) + int(n)
    opened: dict[tuple[str, str], tuple[str, ...]] = {}
    for (host, unit), kinds in problems.open_problems(conn).items():
        folded = (host, fold(unit))
        opened[folded] = tuple(dict.fromkeys((*opened.get(folded, ()), *kinds)))
    failed = {
        str(channel): int(n)
        for channel, n in conn.execute(
            "SELECT d.channel, COUNT(*) FROM alert_attempts a "
            "JOIN alert_deliveries d ON d.id = a.delivery_id WHERE a.error IS NOT NULL "
            "GROUP BY d.channel"
        )
    }
    return AlertCounts(made, opened, failed)


@dataclass(frozen=True, slots=True)
class FinishedRun:
    """A run as the store holds it once every source has been merged."""

    id: int
    invocation_id: str
    unit: str
    source: str
    host: str
    started_usec: int | None
    finished_usec: int | None
    result: str | None

    @property
    def finished(self) -> bool:
        return self.finished_usec is not None

    @property
    def duration_seconds(self) -> float | None:
        return run_duration_seconds(self.started_usec, self.finished_usec)


# -- folding units into one series -------------------------------------------------------


class UnitFold:
    """Which units the metrics show as one series: ``[metrics] fold``.

    Each rule is ``GLOB`` or ``NAME=GLOB``: a unit whose name matches ``GLOB`` is shown as
    ``NAME`` (default: the glob itself), so that a flood of transient units makes one series,
    not one each. A user's unit (``alice/x.service``) keeps its user. The first rule that
    matches wins.
    """

    def __init__(self, rules: Iterable[str] = ()) -> None:
        self.rules = tuple(fold_rule(rule) for rule in rules)
        self._patterns = [(name, re.compile(fnmatch.translate(glob))) for name, glob in self.rules]
        self._folded: dict[str, str] = {}

    def __call__(self, key: str) -> str:
        """The stored unit ``key`` as the metrics name it (itself when no rule matches)."""
        folded = self._folded.get(key)
        if folded is None:
            folded = self._fold(key)
            if len(self._folded) < 1_000_000:  # a cache, bounded whatever the store holds
                self._folded[key] = folded
        return folded

    def _fold(self, key: str) -> str:
        unit = unit_of(key)
        for name, pattern in self._patterns:
            if pattern.match(unit):
                user = user_of(key)
                return f"{user}/{name}" if user else name
        return key


# -- reading the store ---------------------------------------------------------------------


def unit_state(
    conn: sqlite3.Connection, unit: str, running: str | None = None, host: str | None = None
) -> UnitState:
    """One unit's state on ``host`` (default: the host of its newest runs); ``running`` is
    the invocation the daemon sees running, if any."""
    kept = [s for s in summary.read(conn, [unit]) if host is None or s.host == host]
    return _state_of(conn, kept[-1] if kept else None, unit, running, host or "")


def _state_of(
    conn: sqlite3.Connection,
    kept: summary.UnitSummary | None,
    unit: str,
    running: str | None,
    host: str,
) -> UnitState:
    """A unit's state from its kept summary and two rows looked up by their keys."""
    if kept is None:
        return UnitState(unit=unit, running=running is not None, host=host)
    if running is None and kept.newest_run_id is not None:
        # `observer run` jobs are not seen by the daemon: their open row says they run.
        newest = conn.execute(
            "SELECT invocation_id FROM runs WHERE id = ? AND finished_usec IS NULL "
            "AND source = 'wrapper'",
            (kept.newest_run_id,),
        ).fetchone()
        running = None if newest is None else str(newest[0])
    running_since = None
    if running is not None:
        row = conn.execute(
            "SELECT started_usec FROM runs WHERE invocation_id = ?", (running,)
        ).fetchone()
        running_since = None if row is None else row[0]
    state = UnitState(
        unit=unit,
        host=kept.host,
        last_success_usec=kept.last_success_usec,
        last_failure_usec=kept.last_failure_usec,
        consecutive_failures=kept.consecutive_failures,
        running=running is not None,
        running_since_usec=running_since,
    )
    if kept.newest_finished_id is None:
        return state
    newest = conn.execute(
        f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (kept.newest_finished_id,)
    ).fetchone()
    if newest is None:
        return state
    exit_status, signal = exit_facts(newest["exit_code"], newest["exit_status"])
    return dataclasses.replace(
        state,
        last_start_usec=newest["started_usec"],
        last_end_usec=newest["finished_usec"],
        last_result=newest["result"],
        last_exit_status=exit_status,
        last_signal=signal,
        restarts=newest["restarts"],
        last_cost=(
            newest["cpu_seconds"],
            newest["io_read_bytes"],
            newest["io_write_bytes"],
            newest["memory_peak_bytes"],
        ),
        last_output_lost_lines=newest["output_lost_lines"],
    )


def timer_schedules(conn: sqlite3.Connection) -> list[TimerSchedule]:
    """Every timer the daemon knows, with the unit it starts."""
    rows = conn.execute(
        "SELECT timer, service, next_elapse_usec, last_trigger_usec FROM timers ORDER BY timer"
    )
    return [TimerSchedule(str(r[0]), str(r[1]), r[2], r[3]) for r in rows]


def read_unit_states(
    conn: sqlite3.Connection,
    running: Mapping[tuple[str, str], str],
    host: str | None = None,
    fold: UnitFold | None = None,
) -> tuple[list[UnitState], list[TimerSchedule]]:
    """The state of every (host, unit) with runs or seen running (``running``: (host, unit)
    -> invocation ID), and of every unit of ``host`` (the daemon's; default: the host of the
    newest run) with a timer; every timer. Units ``fold`` puts together make one state: that
    of the newest run of any of them."""
    fold = fold or UnitFold()
    timers = timer_schedules(conn)
    kept = {s.key: s for s in summary.read(conn)}
    if host is None:
        newest = max(kept.values(), key=lambda s: s.newest_run_id or 0, default=None)
        host = "" if newest is None else newest.host
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key in {*kept, *running, *((host, t.unit) for t in timers)}:
        groups.setdefault((key[0], fold(key[1])), []).append(key)
    states = []
    for folded in sorted(groups, key=lambda key: (key[1], key[0])):
        members = groups[folded]
        states.append(_group_state(conn, folded, [kept[k] for k in members if k in kept], [
            running[k] for k in members if k in running
        ]))  # fmt: skip
    return states, timers


def _group_state(
    conn: sqlite3.Connection,
    key: tuple[str, str],
    kept: list[summary.UnitSummary],
    running: list[str],
) -> UnitState:
    """The state of the units folded into ``key`` (mostly one): their newest finished run's,
    with the latest success and failure of any of them."""
    newest = max(kept, key=lambda s: s.newest_finished_id or 0, default=None)
    state = _state_of(conn, newest, key[1], min(running, default=None), key[0])
    if len(kept) < 2:
        return state
    return dataclasses.replace(
        state,
        last_success_usec=max((s.last_success_usec or 0 for s in kept), default=0) or None,
        last_failure_usec=max((s.last_failure_usec or 0 for s in kept), default=0) or None,
    )


def finished_runs(conn: sqlite3.Connection, invocation_ids: Iterable[str]) -> list[FinishedRun]:
    """The stored (merged) rows of some invocations; unknown ones are left out."""
    rows = []
    for invocation_id in invocation_ids:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM runs WHERE invocation_id = ?", (invocation_id,)
        ).fetchone()
        if row is not None:
            rows.append(_finished_run(row))
    return rows


def runs_after(conn: sqlite3.Connection, after_id: int) -> list[FinishedRun]:
    """Rows inserted after row ``after_id`` (by any writer), oldest first."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM runs WHERE id > ? ORDER BY id", (after_id,))
    return [_finished_run(row) for row in rows]


def _finished_run(row: sqlite3.Row) -> FinishedRun:
    return FinishedRun(
        id=row["id"],
        # A start without invocation (refused, skipped) is known by its row.
        invocation_id=row["invocation_id"] or f"run:{row['id']}",
        unit=row["unit"],
        source=row["source"],
        host=row["host"],
        started_usec=row["started_usec"],
        finished_usec=row["finished_usec"],
        result=row["result"],
    )


# -- counting runs -------------------------------------------------------------------------


class RunTally:
    """Runs counted by result, and their durations, since the daemon started.

    Counters must never go down, while the store forgets old runs: so runs are counted as
    they finish, once each, whoever wrote them (the daemon, or `observer run` straight into
    the store). Rows finished before the tally started are not counted. Not thread-safe:
    one worker thread owns it.
    """

    # Invocations counted are remembered this long, so that two ways of hearing of one
    # run (a daemon hook and a scan of new rows) count it once.
    MEMORY = 65536

    def __init__(self, fold: UnitFold | None = None) -> None:
        self.fold = fold or UnitFold()  # units counted together, by the name they are shown as
        self.last_id = 0
        self.pending: dict[str, int] = {}  # unfinished runs seen: invocation ID -> row ID
        self.counted: dict[str, None] = {}
        self.runs_by_result: dict[tuple[str, str, str], int] = {}  # (host, unit, result)
        self._buckets: dict[tuple[str, str], list[int]] = {}  # (host, unit)
        self._sums: dict[tuple[str, str], float] = {}

    def start(self, conn: sqlite3.Connection, pending_since_usec: int) -> None:
        """Begin from the store as it is: count nothing already finished."""
        row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM runs").fetchone()
        self.last_id = int(row[0])
        rows = conn.execute(
            "SELECT invocation_id, id FROM runs WHERE finished_usec IS NULL AND started_usec >= ?",
            (pending_since_usec,),
        )
        self.pending = {str(r[0]): int(r[1]) for r in rows}

    def update(self, conn: sqlite3.Connection, finished_ids: Iterable[str]) -> None:
        """Count runs finished since the last update.

        ``finished_ids`` are invocations the daemon just recorded as finished.
        """
        new_rows = runs_after(conn, self.last_id)
        if new_rows:
            self.last_id = max(self.last_id, new_rows[-1].id)
        wanted = set(finished_ids) | set(self.pending)
        wanted.difference_update(r.invocation_id for r in new_rows)
        for run in [*new_rows, *finished_runs(conn, sorted(wanted))]:
            if not run.finished:
                self.pending[run.invocation_id] = run.id
                continue
            self.pending.pop(run.invocation_id, None)
            if run.invocation_id not in self.counted:
                self._count(run)
        # Pending runs deleted by retention are gone for good.
        found = {r.invocation_id for r in new_rows} | wanted
        for invocation_id in [i for i in self.pending if i not in found]:
            del self.pending[invocation_id]

    def _count(self, run: FinishedRun) -> None:
        self.counted[run.invocation_id] = None
        while len(self.counted) > self.MEMORY:
            del self.counted[next(iter(self.counted))]
        shown = self.fold(run.unit)
        key = (run.host, shown, run.result or "unknown")
        self.runs_by_result[key] = self.runs_by_result.get(key, 0) + 1
        duration = run.duration_seconds
        if duration is None:
            return
        unit = (run.host, shown)
        buckets = self._buckets.setdefault(unit, [0] * len(DURATION_BUCKETS))
        buckets[bisect.bisect_left(DURATION_BUCKETS, duration)] += 1
        self._sums[unit] = self._sums.get(unit, 0.0) + duration

    def durations(self) -> dict[tuple[str, str], Durations]:
        """A frozen copy of the histograms (cumulative, as Prometheus wants them)."""
        frozen = {}
        for unit, buckets in self._buckets.items():
            cumulative, total = [], 0
            for n in buckets:
                total += n
                cumulative.append(total)
            frozen[unit] = Durations(tuple(cumulative), self._sums.get(unit, 0.0))
        return frozen
