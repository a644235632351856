"""The fleet page (``fleet.html``) of a central database: hosts by units, each cell the last
result of the unit on that host, linked to the unit's page. Written when the database holds
more than one host; it reads the kept summaries and one row per cell, never the history."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from observer.dashboard.views import unit_page
from observer.model import is_skipped
from observer.reading.render import table_time
from observer.store import hosts, summary

FLEET = "fleet.html"


@dataclass(frozen=True, slots=True)
class Cell:
    """One unit on one host: its last result and the CSS class that colours it."""

    result: str  # the newest run's result, "running", or "" (no run there)
    kind: str  # ok, fail, running, skipped, none
    started: str  # when the newest run started, for the cell's title


NO_RUN = Cell("", "none", "")


@dataclass(frozen=True, slots=True)
class FleetRow:
    unit: str
    href: str
    cells: tuple[Cell, ...]  # one per host, in the order of the page's hosts


def fleet_rows(conn: sqlite3.Connection) -> tuple[list[str], list[FleetRow]]:
    """The hosts (columns) and a row per unit, or no hosts when there is only one."""
    if not hosts.several(conn):
        return [], []
    columns = hosts.recorded_hosts(conn)
    by_unit: dict[str, dict[str, Cell]] = {}
    for kept in summary.read(conn):
        # The newest run is not the newest finished one: it is running.
        running = kept.newest_run_id != kept.newest_finished_id
        row = conn.execute(
            "SELECT result, COALESCE(started_usec, finished_usec) FROM runs WHERE id = ?",
            (kept.newest_run_id,),
        ).fetchone()
        cell = NO_RUN
        if row is not None:
            result, started = row
            kind = "running" if running else "fail" if kept.consecutive_failures else "ok"
            if kind == "ok" and is_skipped(result):
                kind = "skipped"
            when = "" if started is None else table_time(started)
            cell = Cell("running" if running else result or "-", kind, when)
        by_unit.setdefault(kept.unit, {})[kept.host] = cell
    rows = [
        FleetRow(unit, unit_page(unit), tuple(cells.get(h, NO_RUN) for h in columns))
        for unit, cells in sorted(by_unit.items())
    ]
    return columns, rows
