"""A database deleted, replaced or corrupted under the running daemon is noticed before the
next write, said, and replaced by a new one that the journal fills again."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from observer.config import Config
from observer.daemon.serve import Daemon
from observer.model import Run, Source
from observer.reading import store_health
from observer.store import database
from observer.store.database import Batch
from observer.store.lost import REBUILT_KEY, DatabaseLost, is_corruption


def run(invocation_id: str) -> Run:
    now = time.time_ns() // 1000
    return Run(unit="backup.service", invocation_id=invocation_id, host="web1",
               source=Source.JOURNAL, started_usec=now - 1000, finished_usec=now,
               result="success")  # fmt: skip


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    daemon = Daemon(Config(host="web1"), tmp_path / "observer.db", None, None)
    followed: list[tuple[str | None, int | None]] = []
    # The journal is read again from its start; here no journal is read at all.
    daemon._follow = lambda cursor, since_usec: followed.append((cursor, since_usec))  # type: ignore[method-assign]
    daemon.followed = followed  # type: ignore[attr-defined]
    await daemon.store.open()
    daemon.pending = Batch(runs=[run("a" * 32)], journal_cursor="c1")
    await daemon.flush()
    yield daemon
    await daemon.store.close()


def stored(db: Path) -> tuple[str | None, list[str], str | None]:
    with sqlite3.connect(db) as conn:
        cursor = database.read_state(conn, "journal_cursor")
        runs = [str(r[0]) for r in conn.execute("SELECT invocation_id FROM runs ORDER BY id")]
        return cursor, runs, database.read_state(conn, REBUILT_KEY)


async def write_after(daemon: Daemon) -> None:
    """A write finds the database lost: it is rebuilt and the write done in the new one."""
    daemon.pending = Batch(runs=[run("b" * 32)], journal_cursor="c2")
    await daemon.flush()
    await daemon.flush()


async def test_a_deleted_database_is_rebuilt_at_its_path_from_the_journal_start(
    daemon: Daemon,
) -> None:
    db = daemon.store.path
    os.unlink(db)

    await write_after(daemon)

    cursor, runs, rebuilt = stored(db)
    # No cursor until the journal read again from its start gives one: a restart meanwhile
    # reads it from the start again too.
    assert (cursor, runs) == (None, ["b" * 32])
    assert rebuilt is not None
    assert "was deleted" in rebuilt
    assert daemon.followed == [(None, 0)]  # type: ignore[attr-defined]
    assert daemon.rebuilds == 1
    assert daemon.store_writable
    assert list(db.parent.glob("*.corrupt-*")) == []


async def test_a_database_whose_first_page_is_garbage_is_moved_aside_and_rebuilt(
    daemon: Daemon,
) -> None:
    db = daemon.store.path
    with db.open("r+b") as f:
        f.write(os.urandom(4096))

    await write_after(daemon)

    [aside] = db.parent.glob("observer.db.corrupt-*")
    assert aside.read_bytes()[:16] != b"SQLite format 3\x00"  # kept as it was found
    cursor, runs, rebuilt = stored(db)
    assert (cursor, runs) == (None, ["b" * 32])
    assert rebuilt is not None
    assert "corrupt" in rebuilt


async def test_a_truncated_database_is_moved_aside_and_rebuilt(daemon: Daemon) -> None:
    db = daemon.store.path
    await daemon.store.transaction(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
    os.truncate(db, db.stat().st_size // 2)

    await write_after(daemon)

    assert len(list(db.parent.glob("observer.db.corrupt-*"))) == 1
    assert stored(db)[:2] == (None, ["b" * 32])


async def test_the_check_between_writes_finds_a_database_replaced_by_another_file(
    daemon: Daemon, tmp_path: Path
) -> None:
    other = tmp_path / "other.db"
    database.open_for_writing(other).close()
    os.rename(other, daemon.store.path)

    with pytest.raises(DatabaseLost, match="replaced by another file"):
        await daemon.store.check()


async def test_runs_a_rebuild_finds_again_are_not_announced_again(daemon: Daemon) -> None:
    told: list[str | None] = []
    daemon.recorded_hooks.append(lambda runs: told.extend(r.invocation_id for r in runs))
    os.unlink(daemon.store.path)
    await write_after(daemon)
    daemon.pending = Batch(runs=[run("a" * 32), run("b" * 32), run("c" * 32)])

    await daemon.flush()

    assert told == ["b" * 32, "c" * 32]


async def test_status_says_the_database_was_rebuilt(daemon: Daemon) -> None:
    os.unlink(daemon.store.path)
    await write_after(daemon)

    conn = database.open_for_reading(daemon.store.path)
    try:
        [note] = store_health.notes(conn, daemon.store.path)
    finally:
        conn.close()
    assert note.startswith("the database was rebuilt from the journal at ")
    assert "runs the journal no longer held then are not in it" in note


def test_sqlite_saying_malformed_or_not_a_database_is_corruption(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    with pytest.raises(sqlite3.DatabaseError) as raised:
        sqlite3.connect(garbage).execute("PRAGMA user_version").fetchone()
    assert is_corruption(raised.value)
    assert not is_corruption(sqlite3.OperationalError("database is locked"))
    assert not is_corruption(OverflowError("Python int too large"))
