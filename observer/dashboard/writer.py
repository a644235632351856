"""Pages as files: each written atomically, and a long run of them by a process of its own.

Creating a file costs the kernel about as much as rendering the page costs Python. So once a
generation has many pages to write, it hands them, in order, to a child process
(``python -m observer.dashboard.writer``), which writes them on the other core while the
generation renders the next ones. A thread would not do: each of its system calls must take
the interpreter lock back from the rendering.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from observer.model import ObserverError

TEMP_PREFIX = ".observer-"
TEMP_SUFFIX = ".tmp"
# Pages a generation writes itself before it starts a writer process: a rewrite after a few
# runs never pays for starting one.
SPAWN_AFTER = 300
_FRAME = struct.Struct("<II")  # the length of the path, then of the data
_BUFFER = 64 * 1024
_PIPE = 1024 * 1024  # Linux's default limit for an unprivileged process


class DashboardError(ObserverError):
    """The dashboard's directory cannot be created or written."""


def write_atomically(path: Path, data: bytes) -> None:
    """Write a temporary file beside ``path``, then rename it over ``path``."""
    try:
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as e:
        raise DashboardError(f"cannot write in {str(path.parent)!r}: {e.strerror}") from e
    try:
        with os.fdopen(fd, "wb") as file:
            # Pages hold job output, which can hold secrets: as readable as the database.
            os.fchmod(file.fileno(), 0o640)
            file.write(data)
        os.replace(temp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise DashboardError(f"cannot write {str(path)!r}: {e.strerror}") from e


class Writer:
    """Writes files in the order given: the first ``spawn_after`` with ``write``, the rest
    in a writer process. Call ``close`` to wait for them all, ``abandon`` to stop."""

    def __init__(
        self, write: Callable[[Path, bytes], None], spawn_after: int | None = None
    ) -> None:
        self._write = write
        self._left = SPAWN_AFTER if spawn_after is None else spawn_after
        self._child: subprocess.Popen[bytes] | None = None

    def put(self, path: Path, data: bytes) -> None:
        if self._child is None and self._left > 0:
            self._left -= 1
            self._write(path, data)
            return
        child = self._child or self._spawn()
        stream: IO[bytes] = child.stdin  # type: ignore[assignment]
        name = os.fsencode(path)
        try:
            stream.write(_FRAME.pack(len(name), len(data)))
            stream.write(name)
            stream.write(data)
        except BrokenPipeError:
            self.close()  # the writer stopped at a failure: close says which
            raise DashboardError("the page writer stopped") from None

    def close(self) -> None:
        """Wait until every file given is written; raise the first failure."""
        child, self._child = self._child, None
        if child is None:
            return
        with contextlib.suppress(BrokenPipeError):
            child.stdin.close()  # type: ignore[union-attr]
        failure = child.stdout.read().decode(errors="replace")  # type: ignore[union-attr]
        child.stdout.close()  # type: ignore[union-attr]
        status = child.wait()
        if failure or status != 0:
            raise DashboardError(failure or f"the page writer exited with status {status}")

    def abandon(self) -> None:
        """Stop at once: files given and not yet written may not be written."""
        child, self._child = self._child, None
        if child is not None:
            child.kill()
            child.wait()
            for stream in (child.stdin, child.stdout):
                with contextlib.suppress(OSError):
                    stream.close()  # type: ignore[union-attr]

    def _spawn(self) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "observer.dashboard.writer"]
        try:
            self._child = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=_BUFFER
            )
        except OSError as e:
            raise DashboardError(f"cannot start the page writer: {e.strerror}") from e
        # A pipe that holds many pages, so that neither side waits for the other: with the
        # default 64 KiB, the two would take turns instead of working at once.
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(self._child.stdin.fileno(), fcntl.F_SETPIPE_SZ, _PIPE)  # type: ignore[union-attr]
        return self._child


def main() -> int:
    """The writer process: frames from stdin to files; the first failure to stdout."""
    # What write_atomically does in as few system calls as can be (open, write, close,
    # rename): files are created 0640 under this umask, temporary names need no randomness.
    os.umask(0o027)
    stdin = sys.stdin.buffer
    temp_name = f"{TEMP_PREFIX}writer-{os.getpid()}{TEMP_SUFFIX}"
    while header := stdin.read(_FRAME.size):
        if len(header) < _FRAME.size:
            return 1  # the generation was killed mid-page
        name_size, data_size = _FRAME.unpack(header)
        path = os.fsdecode(stdin.read(name_size))
        data = stdin.read(data_size)
        if len(data) < data_size:
            return 1
        try:
            _write(path, os.path.join(os.path.dirname(path), temp_name), data)
        except DashboardError as e:
            sys.stdout.write(str(e))
            return 1
    return 0


def _write(path: str, temp: str, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            fd = os.open(temp, flags, 0o640)
        except FileExistsError:  # left by a writer of the same process ID that was killed
            os.unlink(temp)
            fd = os.open(temp, flags, 0o640)
    except OSError as e:
        raise DashboardError(f"cannot write in {os.path.dirname(path)!r}: {e.strerror}") from e
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(temp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise DashboardError(f"cannot write {path!r}: {e.strerror}") from e


if __name__ == "__main__":
    sys.exit(main())
