"""Waiting for the entries of directories to change, without polling: Linux's inotify.

The daemon watches files that other processes write or remove (the database's directory,
`observer run`'s spool) by sleeping until the kernel says something in those directories
changed, instead of looking every few seconds: an idle daemon does not wake for them.
Where inotify cannot be had (a libc without it, the limit of instances or watches reached),
a watch waits its fallback interval instead, as a poll would; the caller looks either way.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from observer.native import libc

log = logging.getLogger(__name__)

# <sys/inotify.h>: what happens to a watched directory's entries, or to the directory.
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
CHANGES = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
    | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
)  # fmt: skip
_READ_BYTES = 64 * 1024


class DirectoryWatch:
    """Says when something in some directories changed: a file written, created, removed,
    renamed or its permissions changed, or the directory itself created, moved or removed.

    A directory that is not there is watched through its nearest ancestor that is, so that
    its creation counts. Changes are counted from the watch's creation: look at what it
    watches after creating it, then wait with :meth:`changed` before each next look.
    """

    def __init__(self, directories: Sequence[Path], fallback_seconds: float) -> None:
        self.directories = tuple(directories)
        self.fallback_seconds = fallback_seconds
        self._libc = libc()
        self._fd = _inotify_init(self._libc)
        self._add_watches()

    @property
    def polling(self) -> bool:
        """Whether this watch only waits its fallback interval (no inotify to be had)."""
        return self._fd is None

    async def changed(self) -> None:
        """Wait until something changed since the last call (without inotify: wait the
        fallback interval)."""
        if self._fd is None:
            await asyncio.sleep(self.fallback_seconds)
            return
        self._add_watches()  # a directory created, or removed and made again, since the last
        if self._fd is None or self._drain():
            return
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self._fd, _set_once, ready)
        try:
            await ready
        finally:
            loop.remove_reader(self._fd)
        self._drain()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _add_watches(self) -> None:
        """Watch each directory, or its nearest ancestor that exists (adding a watch a
        second time changes nothing)."""
        if self._fd is None:
            return
        for directory in self.directories:
            target = _nearest_existing(directory)
            if not _add_watch(self._libc, self._fd, target):
                log.warning("cannot watch %s for changes: looking every %.0fs instead",
                            target, self.fallback_seconds)  # fmt: skip
                self.close()
                return

    def _drain(self) -> bool:
        """Read the queued events (what they say does not matter); whether there were any."""
        assert self._fd is not None
        read = False
        while True:
            try:
                events = os.read(self._fd, _READ_BYTES)
            except BlockingIOError:
                return read
            except OSError:
                return True  # the caller looks; the next wait tries again
            if not events:
                return read
            read = True


def _set_once(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _nearest_existing(directory: Path) -> Path:
    target = directory.absolute()
    while not target.is_dir() and target != target.parent:
        target = target.parent
    return target


def _inotify_init(libc: ctypes.CDLL | None) -> int | None:
    """A non-blocking inotify instance; None without inotify (or past the limit of them)."""
    init = getattr(libc, "inotify_init1", None)
    if init is None:
        return None
    fd = int(init(os.O_NONBLOCK | os.O_CLOEXEC))
    if fd < 0:
        log.warning("no inotify instance (%s): looking for changes every few seconds instead",
                    os.strerror(ctypes.get_errno()))  # fmt: skip
        return None
    return fd


def _add_watch(libc: ctypes.CDLL | None, fd: int, directory: Path) -> bool:
    """Watch ``directory`` on ``fd``; False when it cannot be (past the limit of watches,
    not readable). One that went away meanwhile counts as watched: the next wait looks
    for it again."""
    add = getattr(libc, "inotify_add_watch", None)
    if add is None:
        return False
    if int(add(fd, os.fsencode(directory), CHANGES)) >= 0:
        return True
    return ctypes.get_errno() in (errno.ENOENT, errno.ENOTDIR)
