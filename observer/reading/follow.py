"""Runs as they finish, read from the store (`observer runs --follow`, `history --follow`).

``FinishedRuns`` is the pure rule (which runs of a reading are newly finished);
``finished_runs`` watches the database file for it. Watching costs a ``stat`` of the file
and a ``PRAGMA data_version`` (SQLite's counter of commits by other connections, read from
the WAL index in shared memory) every ``POLL_SECONDS``: the runs are read only after the
daemon has committed something.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from observer.model import StoreError
from observer.reading import history
from observer.store import database, schema

# How often the file is looked at: a run shows up at most this long after it is recorded.
POLL_SECONDS = 0.2


@dataclass(slots=True)
class FinishedRuns:
    """Which runs have finished since following began, each reported once.

    Runs above ``after_id`` are new; ``pending`` are known runs that had not finished.
    A run is reported when it is first read finished; later updates of its row (output
    that arrives after its end) are not reported again. For a store first seen after
    following began, ``not_before_usec`` leaves out the runs that ended before then
    (the daemon's first start reads days of the journal back).
    """

    after_id: int = 0
    pending: set[int] = field(default_factory=set)
    not_before_usec: int | None = None

    def update(self, runs: Sequence[history.RecordedRun]) -> list[history.RecordedRun]:
        """The newly finished among ``runs`` (those above ``after_id`` and of ``pending``,
        as read now), in the order they finished."""
        finished = []
        read = set()
        for run in runs:
            read.add(run.id)
            if run.id <= self.after_id and run.id not in self.pending:
                continue
            self.after_id = max(self.after_id, run.id)
            if run.running:
                self.pending.add(run.id)
                continue
            self.pending.discard(run.id)
            if self.not_before_usec is None or (run.finished_usec or 0) >= self.not_before_usec:
                finished.append(run)
        self.pending &= read  # the others were deleted (retention) before they finished
        return sorted(finished, key=lambda run: (run.finished_usec or 0, run.id))


def baseline(conn: sqlite3.Connection) -> FinishedRuns:
    """What the store holds now: its runs that have finished are not reported."""
    conn.execute("BEGIN")  # both from one snapshot: a run ending between them is not lost
    try:
        return FinishedRuns(newest_run_id(conn), unfinished_run_ids(conn))
    finally:
        conn.execute("COMMIT")


def newest_run_id(conn: sqlite3.Connection) -> int:
    """The highest run ID in the store (0 when there is none): runs above it are new."""
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM runs").fetchone()[0])


def unfinished_run_ids(conn: sqlite3.Connection) -> set[int]:
    """The runs that have not finished, read through each host's and unit's end index."""
    rows = conn.execute(
        # CROSS JOIN keeps the units outside: one index search each, not a walk of all runs.
        "SELECT r.id FROM unit_summary u CROSS JOIN runs r INDEXED BY runs_by_unit_host_end "
        "ON r.unit = u.unit AND r.host = u.host AND r.finished_usec IS NULL"
    )
    return {int(row[0]) for row in rows}


def runs_after(
    conn: sqlite3.Connection, after_id: int, ids: Iterable[int]
) -> list[history.RecordedRun]:
    """The runs with an ID above ``after_id``, and those of ``ids``, in ID order."""
    return history.runs_by_id(conn, above_id=after_id, ids=ids)


def finished_runs(
    path: Path,
    *,
    interval: float = POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    now_usec: Callable[[], int] = lambda: time.time_ns() // 1000,
    notice: Callable[[str], None] = lambda message: None,
) -> Generator[list[history.RecordedRun], None, None]:
    """Each batch of runs that finished, as the daemon records them, until closed.

    The database may not exist yet, and may be replaced; the daemon may stop and start.
    ``notice`` hears why nothing can be read for now, once per reason.
    """
    began = now_usec()
    watch = _Watch(path)
    tracker: FinishedRuns | None = None
    told = ""
    try:
        while True:
            reason = ""
            try:
                conn, fresh = watch.connection()
                if conn is None:
                    reason = f"no database at {str(path)!r} yet: waiting for the daemon"
                elif watch.changed():
                    if tracker is None or fresh:
                        # A store there from the start: what it holds is the past. One that
                        # appeared later: what ended before following began is.
                        first = tracker is None and watch.opened_at_start
                        tracker = baseline(conn) if first else FinishedRuns(not_before_usec=began)
                    batch = tracker.update(runs_after(conn, tracker.after_id, tracker.pending))
                    if batch:
                        yield batch
            except sqlite3.Error as e:
                watch.close()  # open it again at the next look
                reason = f"cannot read the database {str(path)!r} for now: {e}"
            if reason and reason != told:
                notice(reason)
            told = reason
            sleep(interval)
    finally:
        watch.close()


class _Watch:
    """The database file: opened when it is complete, again when it is replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None
        self.identity: tuple[int, int, bool] | None = None
        self.version: int | None = None
        self.opened_at_start = False
        self._looked = False

    def connection(self) -> tuple[sqlite3.Connection | None, bool]:
        """The open connection (None while there is no usable file), and whether it is of
        another file than before."""
        first_look = not self._looked
        self._looked = True
        identity = _identity(self.path)
        if self.conn is not None and identity != self.identity:
            # Another file (or a -wal file came or went: a reader that could not create one
            # reads an unlocked snapshot, which sees no later commits).
            self.close()
        if self.conn is not None or identity is None:
            return self.conn, False
        conn = _open(self.path)
        if conn is None:
            return None, False
        # As it is with this connection open (which may have made the -wal file).
        identity = _identity(self.path) or identity
        fresh = self.identity is None or identity[:2] != self.identity[:2]
        self.conn, self.identity, self.version = conn, identity, None
        if first_look:
            self.opened_at_start = True
        return conn, fresh

    def changed(self) -> bool:
        """Whether anything was committed since the last look (True at the first)."""
        assert self.conn is not None
        version = int(self.conn.execute("PRAGMA data_version").fetchone()[0])
        changed, self.version = version != self.version, version
        return changed

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
        self.conn = None


def _identity(path: Path) -> tuple[int, int, bool] | None:
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino, os.path.exists(f"{path}-wal")


def _open(path: Path) -> sqlite3.Connection | None:
    """The store open for reading; None while the daemon is still creating or upgrading it."""
    try:
        return database.open_for_reading(path)
    except StoreError:
        if _schema(path) < schema.SCHEMA_VERSION:
            return None
        raise


def _schema(path: Path) -> int:
    """The schema version the file has got to (0: empty); a file that cannot be read raises."""
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=1)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return schema.SCHEMA_VERSION  # not a database being made: the first error stands
