"""The daemon's store: one worker thread owns the SQLite connection."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from array import array
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from observer.model import Run, StoreError
from observer.native import name_thread
from observer.store.database import (
    Batch,
    OutputCounts,
    load_output,
    open_for_writing,
    read_state,
    read_states,
    recent_output,
    run_started_before,
    service_connection,
    write_batch,
)
from observer.store.lost import (
    DatabaseLost,
    WatchedFile,
    is_corruption,
    move_aside,
    remove_stale_wal,
)
from observer.store.retention import PRUNE_CHUNK, plan_prune, prune_orphan_output, prune_some

T = TypeVar("T")


class AsyncStore:
    """The daemon's store: one connection owned by one worker thread, so that SQLite's
    waits never block the event loop and every write is one transaction in order.

    (aiosqlite offers no public way to run a whole transaction function on its thread,
    and this keeps a single write path shared with `observer run` and the tests.)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="observer-store", initializer=name_thread
        )
        self._conn: sqlite3.Connection | None = None
        # The file the connection opened, checked before each write (lost.py says why).
        self._watched: WatchedFile | None = None
        # A lost database that could not be replaced yet: every write says so until it is.
        self._lost: DatabaseLost | None = None

    async def open(self) -> None:
        await self._call(self._open)

    def _open(self, *, wal: bool = True) -> None:
        self._conn = open_shared(self.path, wal=wal)
        self._watched = WatchedFile(self.path)

    async def close(self) -> None:
        await self._call(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # A corrupt file may refuse even the checkpoint of closing: it is closed anyway.
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        if self._watched is not None:
            self._watched.close()  # after the connection: see WatchedFile
            self._watched = None

    async def write(self, batch: Batch) -> list[Run]:
        """Write one batch atomically; the runs it finished for the first time."""
        return await self._call(lambda: write_batch(self._checked(), batch))

    async def check(self) -> None:
        """Raise DatabaseLost if the database was deleted, replaced or corrupted."""
        await self._call(self._checked)

    async def reopen(self, lost: DatabaseLost) -> Path | None:
        """Close the lost database, move a corrupt one aside (where to is returned) and
        open the file at the path: another one put there, or a new one."""
        return await self._call(self._reopen, lost)

    def _reopen(self, lost: DatabaseLost) -> Path | None:
        self._lost = lost
        self._close()
        aside = move_aside(self.path) if lost.corrupt else None
        if not self.path.exists():
            remove_stale_wal(self.path)
        # Until the daemon restarts, without a -wal and -shm: its other connections to the
        # lost file (metrics, alerts) name the same paths, and the last of them to close
        # would delete the new database's log as the lost one's (SQLite deletes by name).
        self._open(wal=False)
        self._lost = None
        return aside

    def _checked(self) -> sqlite3.Connection:
        """The connection, once the file it writes is found to be still the database's."""
        if self._lost is not None:
            raise self._lost
        if self._watched is not None:
            self._watched.check()
        return self._connection()

    async def read_state(self, key: str) -> str | None:
        return await self._call(read_state, self._connection(), key)

    async def run_started_before(self, host: str, unit: str, usec: int) -> tuple[str | None, bool]:
        return await self._call(run_started_before, self._connection(), host, unit, usec)

    async def read_states(self, prefix: str) -> dict[str, str]:
        return await self._call(read_states, self._connection(), prefix)

    async def load_output(
        self, invocation_id: str
    ) -> tuple[list[tuple[int, int]], OutputCounts | None, str | None]:
        return await self._call(load_output, self._connection(), invocation_id)

    async def recent_output(self, since_usec: int) -> array[int]:
        return await self._call(recent_output, self._connection(), since_usec)

    async def prune(self, *, older_than_usec: int | None, keep_per_unit: int | None) -> int:
        """Retention, a chunk per job: the daemon's writes go on between the chunks."""
        conn = self._connection()
        await self._call(
            lambda: plan_prune(conn, older_than_usec=older_than_usec, keep_per_unit=keep_per_unit)
        )
        deleted = 0
        while True:
            listed, n = await self._call(prune_some, conn, PRUNE_CHUNK)
            deleted += n
            if not listed:
                break
        if older_than_usec is not None:
            await self._call(prune_orphan_output, conn, older_than_usec)
        return deleted

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is not open")
        return self._conn

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one transaction on the writer's thread (another service's writes)."""
        return await self._call(lambda: in_transaction(self._checked(), fn))

    def transaction_from_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``transaction``, for a worker thread of another service (never the event loop):
        it waits for the writer, which takes its turn between the daemon's own writes."""
        future = self._executor.submit(lambda: in_transaction(self._checked(), fn))
        try:
            return future.result()
        except Exception as e:
            raise self._error(e) from e

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except StoreError:
            raise
        except Exception as e:
            raise self._error(e) from e

    def _error(self, e: Exception) -> StoreError:
        """The store's trouble (retried), or a record it refused (RefusedRecord: set aside)."""
        if isinstance(e, StoreError):
            return e
        if is_corruption(e):
            return DatabaseLost(f"the database {str(self.path)!r} is corrupt: {e}", corrupt=True)
        if is_store_trouble(e):
            return StoreError(f"cannot write to {str(self.path)!r}: {e}")
        return RefusedRecord(f"{str(self.path)!r} refused a record: {type(e).__name__}: {e}")


class RefusedRecord(StoreError):
    """The database refused what it was given (a value, a constraint), not for any trouble of
    its own: writing the same again cannot help."""


def is_store_trouble(e: BaseException) -> bool:
    """Whether an error is the database's (locked, full, unreadable: retry later) rather than
    the record's (a value it cannot hold, a constraint broken: set the record aside)."""
    if isinstance(e, sqlite3.OperationalError | sqlite3.InternalError | OSError | MemoryError):
        return True
    # "database disk image is malformed", "file is not a database": DatabaseError itself.
    return type(e) is sqlite3.DatabaseError


def in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn(conn)`` committed as one transaction (rolled back if it raises)."""
    with conn:
        return fn(conn)


def open_shared(path: Path, *, wal: bool = True) -> sqlite3.Connection:
    conn = open_for_writing(path, wal=wal)
    conn.close()
    conn = sqlite3.connect(path, timeout=10, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA synchronous = NORMAL")
    return service_connection(conn)
