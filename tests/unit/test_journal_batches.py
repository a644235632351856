"""The daemon commits a journal batch whole, with its cursor: the flusher running in the
middle of one (at any await: a store read, say) commits none of it, since after a crash the
batch is read again from the cursor and its lines would be stored twice."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from observer.config import Config
from observer.daemon.serve import Daemon
from observer.recording.events import OutputLine
from observer.recording.intake import LocalIntake
from observer.recording.journal import JournalBatch

NEW = "b" * 32
T = 1_700_000_000_000_000
Committed = tuple[str | None, list[tuple[str, int, bytes]]]


def committed(db: Path) -> Committed:
    with sqlite3.connect(db) as conn:
        cursor = conn.execute("SELECT value FROM state WHERE key = 'journal_cursor'").fetchone()
        lines = conn.execute("SELECT invocation_id, seq, message FROM output ORDER BY 1, 2")
        return (cursor[0] if cursor else None), [(str(i), int(s), bytes(m)) for i, s, m in lines]


async def opened(db: Path) -> tuple[Daemon, LocalIntake]:
    """A daemon on a fresh database, and its intake (whose add_output a test wraps)."""
    daemon = Daemon(Config(host="web1"), db, None, None)
    await daemon.store.open()
    intake = daemon.intake
    assert isinstance(intake, LocalIntake)
    return daemon, intake


# One batch of two lines of one run, read up to the cursor "c1".
TWO_LINES = JournalBatch(
    [
        OutputLine(NEW, "new.service", T, 6, b"one"),
        OutputLine(NEW, "new.service", T + 1, 6, b"two"),
    ],
    "c1",
)


async def test_the_flusher_running_in_the_middle_of_a_batch_commits_none_of_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    daemon, intake = await opened(db)
    add = intake.host.output.add_output
    seen: list[Committed] = []
    both_read = asyncio.Event()

    async def add_and_yield(line: OutputLine) -> None:
        await add(line)
        daemon.flush_wanted.set()
        await asyncio.sleep(0.05)  # as a store read would: the flusher's turn to run
        seen.append(committed(db))  # what a crash at this moment would leave
        if len(seen) == 2:
            both_read.set()

    intake.host.output.add_output = add_and_yield  # type: ignore[method-assign]
    workers = [
        asyncio.create_task(daemon._flusher()),
        asyncio.create_task(daemon._consume_journal()),
    ]
    try:
        await daemon.journal_queue.put(TWO_LINES)
        async with asyncio.timeout(60):
            await both_read.wait()
        await daemon.flush()  # waits for the batch to end, then commits it with its cursor
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await daemon.store.close()

    assert seen == [(None, []), (None, [])]
    assert committed(db) == ("c1", [(NEW, 0, b"one"), (NEW, 1, b"two")])


async def test_a_stop_in_the_middle_of_a_batch_lets_it_end_and_commits_it_whole(
    tmp_path: Path,
) -> None:
    """As serve() stops: its workers are cancelled while a batch waits on a store read; the
    batch still ends, and the last write commits all of it with its cursor. Cut short, the
    first line would be committed without the cursor, read again at the next start and
    stored twice."""
    db = tmp_path / "observer.db"
    daemon, intake = await opened(db)
    add = intake.host.output.add_output
    first_taken, store_answers = asyncio.Event(), asyncio.Event()

    async def add_then_wait(line: OutputLine) -> None:
        await add(line)
        first_taken.set()
        await store_answers.wait()  # as a slow store read would

    intake.host.output.add_output = add_then_wait  # type: ignore[method-assign]
    consumer = asyncio.create_task(daemon._consume_journal())
    try:
        await daemon.journal_queue.put(TWO_LINES)
        async with asyncio.timeout(60):
            await first_taken.wait()
        consumer.cancel()  # the daemon stops
        await asyncio.gather(consumer, return_exceptions=True)
        store_answers.set()
        async with asyncio.timeout(60):
            await daemon.batch_taken()
        await daemon.flush()
    finally:
        consumer.cancel()
        await daemon.store.close()

    assert committed(db) == ("c1", [(NEW, 0, b"one"), (NEW, 1, b"two")])
