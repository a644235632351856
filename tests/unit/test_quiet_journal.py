"""A run's last line read after its run ended, with no invocation ID (its process was gone
when journald read it), is held for a start that may follow it. On a journal where nothing
more is written, the reader marks the moment it has read past the line; the line then goes
to the run before it and is stored, and until then alerts leave the run unjudged."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from observer.config import Config
from observer.daemon.serve import Daemon
from observer.recording.events import JobKind, OutputLine, Pid1Record
from observer.recording.journal import QUIET_MARGIN_USEC, JournalBatch, JournalFollower
from tests.waiting import wait_for_async

RUN = "a" * 32


def now_usec() -> int:
    return time.time_ns() // 1000


async def test_an_idle_journal_is_marked_once_read_past_the_time_asked(tmp_path: Path) -> None:
    queue: asyncio.Queue[JournalBatch] = asyncio.Queue()
    follower = JournalFollower(
        queue, asyncio.get_running_loop(), journal_dir=tmp_path, cursor=None, since_usec=None
    )
    follower.start()
    try:
        wanted = now_usec() + 300_000
        follower.mark_when_read_past(wanted)
        async with asyncio.timeout(30):
            mark = await queue.get()
        # Read to the end at least the margin after the time asked: nothing stamped before
        # it can still come.
        assert (mark.events, mark.cursor) == ([], None)
        assert mark.last_usec is not None
        assert mark.last_usec >= wanted
        assert now_usec() >= wanted + QUIET_MARGIN_USEC
        assert queue.empty()  # one mark for one request
    finally:
        await asyncio.to_thread(follower.stop)
    assert not follower.alive


def stored_lines(db: Path) -> list[tuple[str, bytes]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT invocation_id, message FROM output ORDER BY seq")
        return [(str(i), bytes(m)) for i, m in rows]


async def test_a_held_last_line_on_a_quiet_journal_is_stored_with_its_run(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    journal = tmp_path / "journal"
    journal.mkdir()
    daemon = Daemon(Config(host="web1"), db, None, journal)
    await daemon.store.open()
    t = now_usec()
    # The run ended at t + 100 ms; its last line was read by journald 100 ms later.
    entries: list[object] = [
        Pid1Record(kind=JobKind.STARTING, unit="tick.service", invocation_id=RUN, realtime_usec=t),
        Pid1Record(
            kind=JobKind.DEACTIVATED, unit="tick.service", invocation_id=RUN,
            realtime_usec=t + 100_000,
        ),
        OutputLine("", "tick.service", t + 200_000, 3, b"ERROR: disk full"),
    ]  # fmt: skip
    workers = [
        asyncio.create_task(daemon._flusher()),
        asyncio.create_task(daemon._consume_journal()),
    ]
    daemon._follow(None, None)
    try:
        await daemon.journal_queue.put(JournalBatch(entries, "c1", t + 200_000))
        await wait_for_async(
            lambda: daemon.output_waiting() == {"web1": t + 200_000}, timeout=30,
            what="the line held, its host's runs waiting for it",
        )  # fmt: skip
        # Nothing more is written to the journal: the reader's mark releases the line.
        await wait_for_async(
            lambda: stored_lines(db) == [(RUN, b"ERROR: disk full")], timeout=30,
            what="the line stored with the run before it",
        )  # fmt: skip
        await wait_for_async(
            lambda: daemon.output_waiting() == {}, timeout=30, what="nothing waiting any more"
        )
    finally:
        assert daemon.follower is not None
        await asyncio.to_thread(daemon.follower.stop)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await daemon.store.close()
