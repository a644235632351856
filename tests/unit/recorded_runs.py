"""A real SQLite store with a known set of runs, written the way the daemon writes them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from observer.model import Run, Source, TimerState
from observer.store import database

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
NOW_USEC = int(NOW.timestamp()) * 1_000_000
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE


def invocation(n: int) -> str:
    return f"{n:032x}"


# Inserted in this order, so their IDs are 1 to 6.
RUNS = [
    Run(
        unit="backup.service", invocation_id=invocation(1), host="host1", source=Source.BUS,
        started_usec=NOW_USEC - 48 * HOUR, finished_usec=NOW_USEC - 48 * HOUR + 1_200_000,
        result="success", exit_code="exited", exit_status=0, trigger="backup.timer", restarts=0,
    ),
    Run(
        unit="backup.service", invocation_id=invocation(2), host="host1", source=Source.BUS,
        started_usec=NOW_USEC - 26 * HOUR, finished_usec=NOW_USEC - 26 * HOUR + 184_500_000,
        result="exit-code", exit_code="exited", exit_status=3, trigger="backup.timer", restarts=0,
    ),
    Run(
        unit="backup.service", invocation_id=invocation(3), host="host1", source=Source.JOURNAL,
        started_usec=NOW_USEC - 3 * HOUR, finished_usec=NOW_USEC - 55 * MINUTE,
        result="signal", exit_code="killed", exit_status=9, trigger=None, restarts=1,
    ),
    Run(
        unit="backup.service", invocation_id=invocation(4), host="host1", source=Source.BUS,
        started_usec=NOW_USEC - 10 * MINUTE, trigger="backup.timer",
    ),
    Run(
        unit="backup@home-user.service", invocation_id=invocation(5), host="host1",
        source=Source.BUS, started_usec=NOW_USEC - 30 * MINUTE,
        finished_usec=NOW_USEC - 30 * MINUTE + 350_000, result="success", exit_code="exited",
        exit_status=0,
    ),
    Run(
        unit="nightly-report", invocation_id=invocation(6), host="host1", source=Source.WRAPPER,
        started_usec=NOW_USEC - 5 * HOUR, finished_usec=NOW_USEC - 5 * HOUR + 2 * SECOND,
        result="success", exit_code="exited", exit_status=0,
    ),
]  # fmt: skip

FAILED_RUN_START = NOW_USEC - 26 * HOUR
# Run 2's output: seqs 2-4 and 6 were dropped to stay within the budget.
OUTPUT = [
    database.StoredLine(invocation(2), 0, FAILED_RUN_START + 100_000, 6, b"starting backup"),
    database.StoredLine(invocation(2), 1, FAILED_RUN_START + 200_000, 4, b"bad name \xff\xfe here"),
    database.StoredLine(
        invocation(2), 5, FAILED_RUN_START + 300_000, 3, b"\x1b[31mdisk full\x1b[0m"
    ),
]
OUTPUT_COUNTS = database.OutputCounts(
    invocation(2), lines=7, bytes=200, dropped_lines=4, dropped_bytes=120, head_end=2,
    last_usec=FAILED_RUN_START + 400_000,
)  # fmt: skip
TIMER = TimerState("backup.timer", "backup.service", NOW_USEC + HOUR, NOW_USEC - 10 * MINUTE)


def write_store(path: Path) -> Path:
    """Write the known runs, run 2's output and backup.timer into a new database at ``path``."""
    conn = database.open_for_writing(path)
    try:
        for run in RUNS:
            database.write_batch(conn, database.Batch(runs=[run]))
        database.write_batch(
            conn,
            database.Batch(
                lines=list(OUTPUT),
                counts={invocation(2): OUTPUT_COUNTS},
                timers=[TIMER],
            ),
        )
    finally:
        conn.close()
    return path
