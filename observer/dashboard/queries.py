"""What the dashboard asks of the store besides ``history``: versions, counts, hosts, counters.

Each takes a connection from ``store.open_for_reading`` and walks an index of one unit (or
reads the small ``unit_changes`` table): none reads the whole history.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from observer.store import summary

# Spelled as the index is (observer/store/summary.py), so that the query walks it.


@dataclass(frozen=True, slots=True)
class OutputSummary:
    """A run's output counters: they change whenever its stored output does."""

    lines: int
    bytes: int
    dropped_lines: int
    dropped_bytes: int
    last_usec: int


def unit_versions(conn: sqlite3.Connection) -> dict[str, int]:
    """Per unit, a version that grows whenever any of its runs or their output changes.

    A unit missing from the answer has version 0: nothing changed since the database gained
    the versions (schema 4).
    """
    return {row[0]: int(row[1]) for row in conn.execute("SELECT unit, version FROM unit_changes")}


def run_count(conn: sqlite3.Connection, unit: str) -> int:
    """How many runs of ``unit`` are recorded, finished or not (a walk of its index)."""
    row = conn.execute("SELECT COUNT(*) FROM runs WHERE unit = ?", (unit,)).fetchone()
    return int(row[0])


def unit_hosts(conn: sqlite3.Connection, unit: str) -> list[str]:
    """The host names runs of ``unit`` were recorded on, in name order."""
    rows = conn.execute("SELECT DISTINCT host FROM runs WHERE unit = ? ORDER BY host", (unit,))
    return [row[0] for row in rows]


def output_summaries(conn: sqlite3.Connection, unit: str, limit: int) -> dict[str, OutputSummary]:
    """The output counters of the newest ``limit`` runs of ``unit``, by invocation ID."""
    rows = conn.execute(
        "SELECT s.invocation_id, s.lines, s.bytes, s.dropped_lines, s.dropped_bytes, s.last_usec "
        "FROM (SELECT r.invocation_id FROM runs r WHERE r.unit = ? "
        f"ORDER BY {summary.NEWEST_FIRST} LIMIT ?) AS newest "
        "JOIN output_stats s ON s.invocation_id = newest.invocation_id",
        (unit, limit),
    )
    return {row[0]: OutputSummary(*(int(v) for v in row[1:])) for row in rows}
