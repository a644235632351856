"""The facts the fleet views judge, read from the store: per host and unit, its kept summary
and its newest starts. The cost follows hosts times units, never the runs (one summary row and
one short index walk each)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from observer.fleet.views import RECENT_STARTS, HostUnit
from observer.store import hosts, summary


def host_units(
    conn: sqlite3.Connection,
    shows_unit: Callable[[str], bool] = lambda unit: True,
    on: hosts.HostMatcher = None,
) -> list[HostUnit]:
    """Every (host, unit) with runs that ``shows_unit`` and ``on`` accept."""
    # Timers are the daemon's own host's (the bus tells only it): used on a database of one.
    due: dict[str, int] = {}
    if not hosts.several(conn):
        due = {
            str(service): int(usec)
            for service, usec in conn.execute(
                "SELECT service, MIN(next_elapse_usec) FROM timers "
                "WHERE next_elapse_usec IS NOT NULL GROUP BY service"
            )
        }
    cells = []
    for kept in summary.read(conn, host_matches=on):
        if not shows_unit(kept.unit):
            continue
        starts = tuple(
            int(row[0])
            for row in conn.execute(
                f"SELECT {summary.ORDER_KEY} FROM runs INDEXED BY runs_by_unit_host_order "
                f"WHERE unit = ? AND host = ? AND {summary.ORDER_KEY} IS NOT NULL "
                f"ORDER BY {summary.ORDER_KEY} DESC LIMIT ?",
                (kept.unit, kept.host, RECENT_STARTS),
            )
        )
        newest = conn.execute(
            "SELECT finished_usec IS NULL FROM runs WHERE id = ?", (kept.newest_run_id,)
        ).fetchone()
        cells.append(
            HostUnit(
                host=kept.host,
                unit=kept.unit,
                runs=kept.runs,
                failures=kept.failures,
                consecutive_failures=kept.consecutive_failures,
                running=bool(newest and newest[0]),
                starts_usec=starts,
                timer_due_usec=due.get(kept.unit),
            )
        )
    return cells
