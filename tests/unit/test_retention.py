"""Retention deletes in chunks, each its own transaction: recording goes on between them."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from observer.model import Run, Source
from observer.store import database, retention, summary, writer
from observer.store.writer import AsyncStore

DAY = 86_400_000_000
NOW = 1_790_000_000_000_000


def old_runs(n: int) -> list[Run]:
    return [
        Run(
            unit=f"job-{i % 3}.service", invocation_id=f"{i:032x}", host="h", source=Source.BUS,
            started_usec=NOW - 100 * DAY + i, finished_usec=NOW - 100 * DAY + i + 5,
            result="success" if i % 7 else "exit-code",
        )
        for i in range(n)
    ]  # fmt: skip


async def test_a_write_goes_in_between_the_chunks_of_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "observer.db"
    with closing(database.open_for_writing(db)) as conn:
        database.write_batch(conn, database.Batch(runs=old_runs(600)))
    monkeypatch.setattr(writer, "PRUNE_CHUNK", 50)
    chunks: list[int] = []
    began = threading.Event()
    real = retention.prune_some

    def counted(conn: sqlite3.Connection, limit: int) -> tuple[int, int]:
        chunks.append(limit)
        began.set()
        return real(conn, limit)

    monkeypatch.setattr(writer, "prune_some", counted)
    async_store = AsyncStore(db)
    await async_store.open()
    try:
        fresh = Run("new.service", f"{10_000:032x}", "h", Source.BUS, NOW, NOW + 1, "success")
        pruning = asyncio.create_task(
            async_store.prune(older_than_usec=NOW - 90 * DAY, keep_per_unit=None)
        )
        assert await asyncio.to_thread(began.wait, 10)
        written = await async_store.write(database.Batch(runs=[fresh]))
        assert not pruning.done()  # the write did not wait for all of retention
        assert await pruning == 600
    finally:
        await async_store.close()

    assert written == [fresh]
    assert len(chunks) == 600 // 50 + 1  # the last finds nothing left
    with closing(database.open_for_reading(db)) as conn:
        assert [s.unit for s in summary.read(conn)] == ["new.service"]
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1


def test_keeping_the_newest_runs_of_each_unit_keeps_exactly_those(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    with closing(database.open_for_writing(db)) as conn:
        database.write_batch(conn, database.Batch(runs=old_runs(30)))
        deleted = retention.prune(conn, older_than_usec=None, keep_per_unit=4, chunk=7)
        kept = conn.execute("SELECT unit, COUNT(*), MIN(id) FROM runs GROUP BY unit").fetchall()
        [first] = summary.read(conn, ["job-0.service"])
    assert deleted == 30 - 3 * 4
    # Runs 0..29 go round the three units: each keeps its newest four.
    assert kept == [("job-0.service", 4, 19), ("job-1.service", 4, 20), ("job-2.service", 4, 21)]
    assert first.runs == 4
