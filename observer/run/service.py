"""The daemon's side of `observer run`: spooled runs into the store, finished runs to consumers.

`observer run` writes its runs into the database itself, so the daemon does not see them
end. This service looks every few seconds for wrapper runs that finished (by row ID for new
rows, by invocation ID for rows it saw running) and hands them to the daemon's
``recorded_hooks`` (metrics, alerts, dashboard), as it does for the units' runs. It also
moves runs that `observer run` had to spool into the store, and closes as ``interrupted``
the runs whose `observer run` is gone (observer/run/liveness.py). It keeps one connection
to read; in the daemon (``store``) it writes through the store's one writer. A look is
skipped, its thread not woken, when a few stats on the loop say it would find nothing: the
database and the spool unchanged since the last look, no mark of life, no wrapper run open.
With no mark of life and no wrapper run open it does not look again until a file in the
database's directory or the spool changes (observer/inotify.py): an idle daemon sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from observer.config import Config
from observer.inotify import DirectoryWatch
from observer.model import Run, Source
from observer.native import name_thread
from observer.run import liveness, spool
from observer.store.database import open_for_reading, open_for_writing, service_connection
from observer.store.writer import AsyncStore

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 5.0
# Runs left unfinished by a wrapper that was killed are not waited for after this long.
RUNNING_HORIZON_USEC = 7 * 86400 * 1_000_000
_COLUMNS = (
    "id, unit, invocation_id, host, boot_id, trigger, started_usec, finished_usec, result, "
    "exit_code, exit_status, restarts"
)


class WrapperRuns:
    """Finds finished runs of `observer run` and imports spooled ones, for the daemon."""

    def __init__(
        self,
        hooks: list[Callable[[list[Run]], None]],
        db_path: Path,
        config: Config,
        interval: float = INTERVAL_SECONDS,
        store: AsyncStore | None = None,
    ) -> None:
        self.hooks = hooks
        # The daemon's one writer; None: this service writes with its own connection (tests).
        self.store = store
        self.db_path = db_path
        self.spool_dir = spool.default_spool_dir(db_path, config.run.spool_dir)
        self.metrics_dir = spool.default_metrics_dir(db_path, config.run.metrics_dir)
        self.interval = interval
        self.max_id: int | None = None
        self.running: set[str] = set()
        self.failures = 0
        self.conn: sqlite3.Connection | None = None
        self.conn_thread = 0
        self.reported: set[str] = set()  # spool files already reported as unreadable
        # What the files a look reads looked like when the last one began (None: look).
        self._seen: tuple[tuple[int, int] | None, ...] | None = None

    async def run(self) -> None:
        """A service of the daemon's: runs until cancelled, never fails."""
        # One thread for every look: the connection it keeps may only be used on it.
        executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="observer-run", initializer=name_thread
        )
        loop = asyncio.get_running_loop()
        live = self.spool_dir / spool.LIVE_DIR
        watch = DirectoryWatch([self.db_path.parent, self.spool_dir, live], self.interval)
        try:
            while True:
                try:
                    finished = []
                    if self.look_wanted():
                        finished = await loop.run_in_executor(executor, self.step)
                except Exception as e:  # the store may be unwritable for a while
                    self._seen = None  # look again at the next round
                    self.failures += 1
                    if self.failures == 1 or self.failures % 100 == 0:
                        log.warning("observer run's runs: %s (retrying)", e)
                else:
                    self.failures = 0
                    if finished:
                        self._tell(finished)
                await asyncio.sleep(self.interval)  # a look at most every interval
                if not (self.failures or self.running or _has_entries(live)):
                    await watch.changed()  # nothing to look at until a file there changes
        finally:
            watch.close()
            executor.submit(self.close)
            executor.shutdown(wait=False)

    def look_wanted(self) -> bool:
        """Whether a look could find anything (on the loop: a few stats, no thread)."""
        live = self.spool_dir / spool.LIVE_DIR
        wal = self.db_path.with_name(f"{self.db_path.name}-wal")
        seen = tuple(_looks(path) for path in (self.db_path, wal, self.spool_dir, live))
        changed, self._seen = seen != self._seen, seen
        return changed or bool(self.running) or _has_entries(live)

    def step(self) -> list[Run]:
        """One look (in a worker thread): import spooled runs, close those whose wrapper is
        gone, then find finished ones."""
        if self.conn is not None and self.conn_thread != threading.get_ident():
            self.conn = None  # opened on another thread (a test's first look): not usable here
        if self.conn is None:
            opener = open_for_writing if self.store is None else open_for_reading
            self.conn = service_connection(opener(self.db_path))
            self.conn_thread = threading.get_ident()
        conn = self.conn
        try:
            if self.store is None:
                imported = self._import(conn)
            else:
                imported = self.store.transaction_from_thread(self._import)
            return imported + self._newly_finished(conn, {r.key for r in imported})
        except BaseException:
            self.close()  # opened afresh at the next look
            raise

    def _import(self, conn: sqlite3.Connection) -> list[Run]:
        """Import spooled runs and close those whose wrapper is gone, writing with ``conn``."""
        imported = spool.import_spooled(
            conn, self.spool_dir, self.db_path, self.metrics_dir, reported=self.reported
        )
        for run in imported:
            log.info("imported spooled run %s %s", run.unit, run.key[:12])
        return imported + liveness.close_gone(conn, self.spool_dir, self.db_path, self.reported)

    def close(self) -> None:
        """Close the connection (the daemon is stopping)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _newly_finished(self, conn: sqlite3.Connection, told: set[str]) -> list[Run]:
        conn.row_factory = sqlite3.Row
        self.running -= told
        if self.max_id is None:
            self.max_id = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM runs").fetchone()[0])
            horizon = time.time_ns() // 1000 - RUNNING_HORIZON_USEC
            running = conn.execute(
                "SELECT invocation_id FROM runs WHERE source = ? AND finished_usec IS NULL "
                "AND started_usec >= ?",
                (str(Source.WRAPPER), horizon),
            )
            self.running = {row[0] for row in running}
            return []
        rows = list(
            conn.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE id > ? AND source = ? ORDER BY id",
                (self.max_id, str(Source.WRAPPER)),
            )
        )
        self.max_id = max([self.max_id, *(int(row["id"]) for row in rows)])
        if self.running:
            marks = ", ".join("?" * len(self.running))
            rows += conn.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE invocation_id IN ({marks}) "
                "AND finished_usec IS NOT NULL",
                sorted(self.running),
            )
        finished = []
        for row in rows:
            invocation_id = row["invocation_id"]
            if row["finished_usec"] is None:
                self.running.add(invocation_id)
                continue
            self.running.discard(invocation_id)
            if invocation_id not in told:
                told.add(invocation_id)
                finished.append(_run(row))
        return finished

    def _tell(self, runs: list[Run]) -> None:
        for hook in self.hooks:
            try:
                hook(runs)
            except Exception:  # a failing consumer never stops the recording
                log.exception("a consumer of recorded runs failed")


def _looks(path: Path) -> tuple[int, int] | None:
    """A file's or directory's modification time and size (None: not there)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size


def _has_entries(directory: Path) -> bool:
    try:
        with os.scandir(directory) as entries:
            return any(True for _ in entries)
    except OSError:
        return False


def _run(row: sqlite3.Row) -> Run:
    return Run(
        unit=row["unit"],
        invocation_id=row["invocation_id"],
        host=row["host"],
        source=Source.WRAPPER,
        started_usec=row["started_usec"],
        finished_usec=row["finished_usec"],
        result=row["result"],
        exit_code=row["exit_code"],
        exit_status=row["exit_status"],
        trigger=row["trigger"],
        restarts=row["restarts"],
        boot_id=row["boot_id"],
    )
