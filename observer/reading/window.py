"""What the pictures of the day read: the runs that fall in a window of time, and the timers'
next starts with each unit's usual duration. Read-only, like ``history``."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable, Sequence

from observer import users
from observer.reading import history
from observer.reading.history import RecordedRun
from observer.reading.stats import summaries
from observer.reading.upcoming import Scheduled
from observer.store import hosts

# Runs still going at the window's start, found through the (unit, finished_usec) index.
_BEGAN_BEFORE = (
    "r.unit = ? AND (r.finished_usec IS NULL OR r.finished_usec > ?) "
    "AND COALESCE(r.started_usec, r.finished_usec) < ?"
)


def units_matching(
    conn: sqlite3.Connection, globs: Sequence[str], selection: users.Selection
) -> list[str]:
    """The recorded units ``selection`` shows whose name one of ``globs`` matches (none: all)."""
    matchers = [history.unit_matcher(glob) for glob in globs or ["*"]]
    return [
        unit
        for unit in history.recorded_units(conn)
        if selection.shows(unit) and any(matches(users.unit_of(unit)) for matches in matchers)
    ]


def runs_in_window(
    conn: sqlite3.Connection,
    start_usec: int,
    units: Sequence[str],
    on: hosts.HostMatcher = None,
) -> list[RecordedRun]:
    """The runs of ``units`` on the hosts ``on`` accepts that started since ``start_usec``,
    or started before it and ended after it (or still run)."""
    wanted = set(units)
    every_unit = on is None and wanted.issuperset(history.recorded_units(conn))
    # Every unit on every host: one walk of the runs in time order (a busy day at a million
    # runs holds 130,000: 1.9 CPU-s, against 3.5 merging a walk per unit); else a walk per
    # unit, of the units asked for.
    started = [
        run
        for run in history.recent_runs(
            conn, since_usec=start_usec, selection=None if every_unit else users.ALL, on=on
        )
        if run.unit in wanted
    ]
    return started + [run for unit in units for run in _began_before(conn, unit, start_usec, on)]


def _began_before(
    conn: sqlite3.Connection, unit: str, start_usec: int, on: hosts.HostMatcher
) -> list[RecordedRun]:
    # The private row reader of history: this is the one query of the window it lacks.
    rows = conn.execute(
        f"SELECT {history._RUN_COLUMNS} FROM {history._RUNS_FROM} WHERE {_BEGAN_BEFORE}",
        (unit, start_usec, start_usec),
    )
    runs = (history._recorded_run(row) for row in rows)
    return [run for run in runs if hosts.shows(on, run.host)]


def scheduled(
    conn: sqlite3.Connection, shows: Callable[[str], bool], on: hosts.HostMatcher = None
) -> list[Scheduled]:
    """The timers' next starts (the daemon stores them), soonest first, with each service's
    median duration on the host: of the services ``shows`` accepts, on a host ``on`` accepts."""
    host = timers_host(conn)
    if not hosts.shows(on, host):
        return []
    timers = conn.execute(
        "SELECT timer, service, next_elapse_usec FROM timers "
        "WHERE next_elapse_usec IS NOT NULL ORDER BY next_elapse_usec, timer"
    ).fetchall()
    chosen = [(str(t), str(s), int(n)) for t, s, n in timers if shows(str(s))]
    kept = summaries(conn, sorted({s for _, s, _ in chosen}), lambda h: h == host)
    p50 = {k.unit: k.duration_p50_seconds for k in kept}
    return [Scheduled(t, s, host, n, p50.get(s)) for t, s, n in chosen]


def timer_services(conn: sqlite3.Connection) -> set[str]:
    """The services a timer starts (of the daemon's own host: see ``timers_host``)."""
    return {str(row[0]) for row in conn.execute("SELECT DISTINCT service FROM timers")}


def timers_host(conn: sqlite3.Connection) -> str:
    """The host whose timers the database holds: the daemon's own (its runs' host, or this
    machine before any run); a central database receives no timers."""
    return hosts.newest_host(conn) or socket.gethostname()
