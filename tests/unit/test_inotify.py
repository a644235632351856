"""DirectoryWatch: a wait that ends when a watched directory's entries change, not before."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from observer import inotify
from observer.inotify import DirectoryWatch

# Long enough never to be reached on a slow machine: a wait that should end ends at once.
WAIT = 30.0


async def _pending_after_idle_turns(task: asyncio.Task[None]) -> bool:
    """Whether ``task`` is still waiting after the loop has run everything it had to do."""
    for _ in range(20):
        await asyncio.sleep(0)
    return not task.done()


def _changes(tmp_path: Path) -> dict[str, Callable[[], object]]:
    target = tmp_path / "observer.db"
    target.write_bytes(b"x")
    return {
        "written": lambda: target.write_bytes(b"more"),
        "created": (tmp_path / "new").touch,
        "removed": target.unlink,
        "replaced": lambda: os.replace(tmp_path / "other", target),
        "chmod": lambda: target.chmod(0o600),
    }


@pytest.mark.parametrize("change", ["written", "created", "removed", "replaced", "chmod"])
def test_a_change_in_the_directory_ends_the_wait_and_nothing_else_does(
    tmp_path: Path, change: str
) -> None:
    (tmp_path / "other").write_bytes(b"y")
    make = _changes(tmp_path)[change]

    async def scenario() -> None:
        watch = DirectoryWatch([tmp_path], fallback_seconds=3600)
        assert not watch.polling
        (tmp_path / "other").write_bytes(b"before the first wait")  # counts: after creation
        await asyncio.wait_for(watch.changed(), WAIT)
        waiting = asyncio.ensure_future(watch.changed())
        assert await _pending_after_idle_turns(waiting)  # what came before was used up
        make()
        await asyncio.wait_for(waiting, WAIT)
        watch.close()

    asyncio.run(scenario())


def test_a_directory_made_later_is_watched_through_its_parent_then_itself(tmp_path: Path) -> None:
    spool = tmp_path / "spool" / "live"

    async def scenario() -> None:
        watch = DirectoryWatch([spool], fallback_seconds=3600)
        waiting = asyncio.ensure_future(watch.changed())
        assert await _pending_after_idle_turns(waiting)
        spool.mkdir(parents=True)
        await asyncio.wait_for(waiting, WAIT)
        while True:  # the parents' creation may come as more than one wake
            waiting = asyncio.ensure_future(watch.changed())
            if await _pending_after_idle_turns(waiting):
                break
        (spool / "run.live").touch()
        await asyncio.wait_for(waiting, WAIT)
        watch.close()

    asyncio.run(scenario())


def test_a_file_in_a_subdirectory_does_not_count(tmp_path: Path) -> None:
    (tmp_path / "pages").mkdir()

    async def scenario() -> None:
        watch = DirectoryWatch([tmp_path], fallback_seconds=3600)
        waiting = asyncio.ensure_future(watch.changed())
        (tmp_path / "pages" / "index.html").write_text("deeper")
        assert await _pending_after_idle_turns(waiting)
        (tmp_path / "observer.db-wal").write_bytes(b"here")  # the change that counts
        await asyncio.wait_for(waiting, WAIT)
        watch.close()

    asyncio.run(scenario())


def test_without_inotify_a_wait_lasts_the_fallback_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inotify, "_inotify_init", lambda libc: None)

    async def scenario() -> float:
        watch = DirectoryWatch([tmp_path], fallback_seconds=0.05)
        assert watch.polling
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.wait_for(watch.changed(), WAIT)
        return loop.time() - began

    assert asyncio.run(scenario()) >= 0.05


def test_a_directory_it_cannot_watch_makes_it_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inotify, "_add_watch", lambda libc, fd, directory: False)
    watch = DirectoryWatch([tmp_path], fallback_seconds=5)
    assert watch.polling
