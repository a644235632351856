"""Hosts: which hosts' runs a reading command shows (``--host NAME|GLOB``).

Every run names the host it ran on (a server's own database holds one; a central one, see
docs/fleet.md, many). A glob is fnmatch's (``web*``, ``db[12]``), matched case-sensitively
against the name as the host's journal records it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from observer.store import summary

# Which hosts to show; None: every host.
HostMatcher = Callable[[str], bool] | None


def matcher(glob: str | None) -> HostMatcher:
    """A test for host names from ``--host`` (None when not given: every host)."""
    if glob is None:
        return None
    import fnmatch  # noqa: PLC0415 (only with --host: re costs a command's start)
    import re  # noqa: PLC0415

    pattern = re.compile(fnmatch.translate(glob))
    return lambda host: bool(pattern.match(host))


def shows(matches: HostMatcher, host: str) -> bool:
    return matches is None or matches(host)


def recorded_hosts(conn: sqlite3.Connection) -> list[str]:
    """Every host with recorded runs, in name order (from the kept per-host summaries)."""
    rows = conn.execute("SELECT DISTINCT host FROM unit_summary ORDER BY host")
    return [str(row[0]) for row in rows]


def hosts_of(conn: sqlite3.Connection, unit: str, matches: HostMatcher = None) -> list[str]:
    """The hosts with runs of ``unit`` that ``matches`` accepts, in name order."""
    rows = conn.execute("SELECT host FROM unit_summary WHERE unit = ? ORDER BY host", (unit,))
    return [str(row[0]) for row in rows if shows(matches, str(row[0]))]


def newest_host(conn: sqlite3.Connection) -> str | None:
    """The host of the newest run (a server's own database: its host), if any run is kept."""
    row = conn.execute(f"SELECT host FROM runs ORDER BY {summary.NEWEST_FIRST} LIMIT 1").fetchone()
    return None if row is None else str(row[0])


def several(conn: sqlite3.Connection) -> bool:
    """Whether the database holds the runs of more than one host (two index seeks)."""
    first = conn.execute("SELECT MIN(host) FROM unit_summary").fetchone()[0]
    if first is None:
        return False
    row = conn.execute("SELECT 1 FROM unit_summary WHERE host != ? LIMIT 1", (first,))
    return row.fetchone() is not None
