"""Retention: delete runs past the age and per-unit limits, a chunk per transaction."""

from __future__ import annotations

import sqlite3

from observer.store import database, summary


def prune(
    conn: sqlite3.Connection,
    *,
    older_than_usec: int | None,
    keep_per_unit: int | None,
    chunk: int | None = None,
) -> int:
    """Delete runs (and their output) past the retention limits; return how many runs.

    Runs are deleted ``chunk`` at a time (default ``PRUNE_CHUNK``), each in its own
    transaction, so that writers wait at most for one chunk.
    """
    plan_prune(conn, older_than_usec=older_than_usec, keep_per_unit=keep_per_unit)
    deleted = 0
    while True:
        listed, n = prune_some(conn, chunk or PRUNE_CHUNK)
        deleted += n
        if not listed:
            break
    if older_than_usec is not None:
        prune_orphan_output(conn, older_than_usec)
    return deleted


# Runs deleted in one transaction of retention: each refreshes its units' summaries.
PRUNE_CHUNK = 500


def plan_prune(
    conn: sqlite3.Connection, *, older_than_usec: int | None, keep_per_unit: int | None
) -> None:
    """List the runs past the retention limits in this connection's temporary table."""
    with conn:
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS doomed "
            "(id INTEGER PRIMARY KEY, invocation_id TEXT, unit TEXT, host TEXT)"
        )
        conn.execute("DELETE FROM doomed")
        if older_than_usec is not None:
            # A run ends after it starts: the index on the start finds every candidate.
            conn.execute(
                "INSERT OR IGNORE INTO doomed SELECT id, invocation_id, unit, host FROM runs "
                f"WHERE {summary.ORDER_KEY} < ? AND COALESCE(finished_usec, started_usec) < ?",
                (older_than_usec, older_than_usec),
            )
        if keep_per_unit is not None:
            # Per host and unit: on a central database each host keeps its own history.
            for host, unit in summary.recorded_keys(conn):
                oldest_kept = conn.execute(
                    f"SELECT {summary.ORDER_KEY}, id FROM runs WHERE unit = ? AND host = ? "
                    f"ORDER BY {summary.NEWEST_FIRST} LIMIT 1 OFFSET ?",
                    (unit, host, keep_per_unit - 1),
                ).fetchone()
                if oldest_kept is None:
                    continue
                # Newest first puts runs without any time (NULL) after all others.
                key, run_id = oldest_kept
                older = f"{summary.ORDER_KEY} IS NULL AND id < ?"
                params: tuple[object, ...] = (unit, host, run_id)
                if key is not None:
                    older = f"{summary.ORDER_KEY} IS NULL OR {summary.ORDER_KEY} < ? OR "
                    older += f"({summary.ORDER_KEY} = ? AND id < ?)"
                    params = (unit, host, key, key, run_id)
                conn.execute(
                    "INSERT OR IGNORE INTO doomed SELECT id, invocation_id, unit, host FROM runs "
                    f"WHERE unit = ? AND host = ? AND ({older})",
                    params,
                )


def prune_some(conn: sqlite3.Connection, limit: int) -> tuple[int, int]:
    """Delete up to ``limit`` of the runs ``plan_prune`` listed, in one transaction; how many
    were listed and how many of them were still there to delete."""
    with conn:
        rows = conn.execute(
            "SELECT id, invocation_id, unit, host FROM doomed LIMIT ?", (limit,)
        ).fetchall()
        run_ids = [(row[0],) for row in rows]
        # A start systemd refused has no invocation ID, and no output.
        ids = [(row[1],) for row in rows if row[1] is not None]
        conn.executemany("DELETE FROM run_findings WHERE run_id = ?", run_ids)
        cursor = conn.executemany("DELETE FROM runs WHERE id = ?", run_ids)
        deleted = cursor.rowcount
        for table in ("output", "output_stats", "run_definitions"):
            conn.executemany(f"DELETE FROM {table} WHERE invocation_id = ?", ids)
        conn.executemany("DELETE FROM doomed WHERE id = ?", run_ids)
        keys = {(str(row[3]), str(row[2])) for row in rows}
        summary.refresh(conn, keys)
        database.note_changed(conn, {unit for _, unit in keys})
    return len(rows), max(0, int(deleted))


def prune_orphan_output(conn: sqlite3.Connection, older_than_usec: int) -> None:
    """Delete output whose run was never recorded (an unobserved or vanished invocation)."""
    orphans = (
        "SELECT invocation_id FROM output_stats WHERE last_usec < ? "
        "AND invocation_id NOT IN "
        "(SELECT invocation_id FROM runs WHERE invocation_id IS NOT NULL)"
    )
    with conn:
        conn.execute(f"DELETE FROM output WHERE invocation_id IN ({orphans})", (older_than_usec,))
        conn.execute(
            f"DELETE FROM output_stats WHERE invocation_id IN ({orphans})", (older_than_usec,)
        )
