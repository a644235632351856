"""A write that fails costs the daemon nothing: a run the store refuses is set aside and
the others, and the cursor, are written; the store's own trouble keeps everything for later."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from observer.config import Config
from observer.daemon.serve import Daemon
from observer.metrics.collectors import render
from observer.metrics.resilience import ResilienceCollector
from observer.model import Run, Source
from observer.reading import set_aside as set_aside_cli
from observer.store import set_aside
from observer.store.database import Batch

T = 1_790_000_000_000_000


def run(invocation_id: str, **fields: object) -> Run:
    values: dict[str, object] = {
        "started_usec": T, "finished_usec": T + 1000, "result": "success",
    }  # fmt: skip
    values.update(fields)
    return Run(unit="backup.service", invocation_id=invocation_id, host="web1",
               source=Source.JOURNAL, **values)  # type: ignore[arg-type]  # fmt: skip


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    daemon = Daemon(Config(host="web1"), tmp_path / "observer.db", None, None)
    await daemon.store.open()
    yield daemon
    await daemon.store.close()


def stored(db: Path) -> tuple[str | None, list[str]]:
    with sqlite3.connect(db) as conn:
        cursor = conn.execute("SELECT value FROM state WHERE key = 'journal_cursor'").fetchone()
        runs = [str(r[0]) for r in conn.execute("SELECT invocation_id FROM runs ORDER BY id")]
    return (cursor[0] if cursor else None), runs


async def test_a_run_the_store_refuses_is_set_aside_and_the_rest_written_with_the_cursor(
    daemon: Daemon,
) -> None:
    told: list[list[Run]] = []
    daemon.recorded_hooks.append(told.append)
    # Past SQLite's integers: only a value no parser checked can still get here.
    daemon.pending = Batch(
        runs=[run("a" * 32), run("b" * 32, exit_status=2**64), run("c" * 32)],
        journal_cursor="c1",
    )

    await daemon.flush()

    assert stored(daemon.store.path) == ("c1", ["a" * 32, "c" * 32])
    assert [r.invocation_id for runs in told for r in runs] == ["a" * 32, "c" * 32]
    [kept] = set_aside.read(set_aside.set_aside_file(daemon.store.path))
    assert (kept.unit, kept.invocation_id, kept.what["exit_status"]) == (
        "backup.service", "b" * 32, 2**64,
    )  # fmt: skip
    assert "OverflowError" in kept.error
    assert (daemon.runs_set_aside, daemon.store_errors, daemon.pending) == (1, 0, Batch())
    assert daemon.store_healthy.is_set()
    note = set_aside_cli.note(daemon.store.path)
    assert note == "1 run set aside (the database refused them): see `observer set-aside`"
    exposed = render(ResilienceCollector("web1", lambda: daemon.runs_set_aside).collect())
    assert b'observer_runs_set_aside_total{host="web1"} 1.0' in exposed


async def test_when_the_store_itself_fails_everything_is_kept_and_written_later(
    daemon: Daemon,
) -> None:
    locker = sqlite3.connect(daemon.store.path, isolation_level=None)
    locker.execute("PRAGMA busy_timeout = 0")
    locker.execute("BEGIN EXCLUSIVE")
    await daemon.store.transaction(lambda conn: conn.execute("PRAGMA busy_timeout = 50"))
    batch = Batch(runs=[run("a" * 32)], journal_cursor="c1")
    daemon.pending = batch

    await daemon.flush()

    assert (daemon.store_errors, daemon.runs_set_aside) == (1, 0)
    assert not daemon.store_healthy.is_set()
    assert not daemon._recording()  # no heartbeat, no watchdog while runs wait
    assert daemon.pending == batch
    locker.execute("ROLLBACK")
    locker.close()

    await daemon.flush()

    assert stored(daemon.store.path) == ("c1", ["a" * 32])
    assert daemon._recording()


async def test_a_set_aside_file_that_cannot_be_written_keeps_the_refused_run_in_memory(
    daemon: Daemon,
) -> None:
    os.mkdir(set_aside.set_aside_file(daemon.store.path))  # not a file: appending fails
    refused = run("b" * 32, restarts=-(2**63) - 1)
    daemon.pending = Batch(runs=[run("a" * 32), refused], journal_cursor="c1")

    await daemon.flush()

    assert stored(daemon.store.path) == (None, ["a" * 32])
    assert daemon.pending == Batch(runs=[refused], journal_cursor="c1")
    assert (daemon.store_errors, daemon.runs_set_aside) == (1, 0)
