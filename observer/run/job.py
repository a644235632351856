"""Run one job for `observer run`: its output passes through untouched and is copied aside.

The job's stdout and stderr are pipes read here and written, byte for byte, to observer's
own stdout and stderr (cron's mail, a log file, a terminal); SIGTERM, SIGINT and SIGHUP
are forwarded to it; a timeout sends SIGTERM to its process group, then SIGKILL.
Nothing here touches the store: the caller records what :class:`Job` reports.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import time
from collections.abc import Callable, Iterable
from types import FrameType

from observer.run.capture import STDERR, STDOUT

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Signals Python ignores for itself that a job must get with their default action.
_RESET_FOR_JOB = (signal.SIGPIPE, signal.SIGXFSZ)
READ_SIZE = 65536
# How long output may trail the job's exit (a child it left behind) and still be recorded.
LINGER_SECONDS = 1.0

OutputSink = Callable[[str, bytes, int], None]


class Exit:
    """How the job ended, in systemd's terms, and the status observer exits with (a plain
    class: a dataclass would cost every cron job half a millisecond to create)."""

    __slots__ = ("error", "exit_code", "exit_status", "finished_usec", "result", "status")

    def __init__(
        self,
        result: str,
        exit_code: str | None,
        exit_status: int | None,
        finished_usec: int,
        status: int,
        error: str | None = None,
    ) -> None:
        self.result = result  # success, exit-code, signal, core-dump, timeout
        self.exit_code = exit_code  # exited, killed, dumped
        self.exit_status = exit_status  # the exit status, or the signal number
        self.finished_usec = finished_usec
        self.status = status  # what `observer run` exits with
        self.error = error  # why the job could not be started


class Job:
    """One job: start it, pass its output through, forward signals, enforce a timeout."""

    def __init__(
        self,
        argv: list[str],
        env: dict[bytes, bytes],
        *,
        timeout: float | None = None,
        kill_after: float = 10.0,
    ) -> None:
        self.argv = argv
        self.env = env
        self.timeout = timeout
        self.kill_after = kill_after
        # With a timeout, the job gets its own process group, so that a timeout also ends
        # what it started (as timeout(1) does); otherwise it stays in ours, a terminal's
        # foreground job like the bare command would be.
        self.own_group = timeout is not None
        self.pid: int | None = None
        self.wait_status: int | None = None
        self.exited_usec: int | None = None
        self.timed_out = False
        self.exec_error: OSError | None = None
        self._pipes: dict[int, tuple[str, int]] = {}
        self._poller = select.poll()
        self._wake_r = self._wake_w = -1
        self._pending: list[int] = []
        self._term_at: float | None = None
        self._kill_at: float | None = None
        self._exited_at: float | None = None

    # -- start ---------------------------------------------------------------------------

    def start(self) -> bool:
        """Start the job; False (with ``exec_error`` set) when it cannot be run."""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, _ignore)
        for signum in FORWARDED:
            # A signal the caller ignores (nohup, a background job of sh) stays ignored for
            # the job too: exec keeps ignored signals, but not caught ones.
            if signal.getsignal(signum) != signal.SIG_IGN:
                signal.signal(signum, self._on_signal)
        self._poller.register(self._wake_r, select.POLLIN)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.pid = self._spawn(out_w, err_w)
        except OSError as e:
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            self.exec_error = e
            self.exited_usec = time.time_ns() // 1000
            return False
        os.close(out_w)
        os.close(err_w)
        started = time.monotonic()
        if self.timeout is not None:
            self._term_at = started + self.timeout
        for fd, stream, target in ((out_r, STDOUT, 1), (err_r, STDERR, 2)):
            self._pipes[fd] = (stream, target)
            self._poller.register(fd, select.POLLIN)
        for pending in self._pending:
            self._forward(pending)
        return True

    def _spawn(self, out_w: int, err_w: int) -> int:
        actions = [(os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
        try:
            return self._posix_spawn(self.argv, actions, search=True)
        except OSError as e:
            if e.errno != errno.ENOEXEC or (script := _find(self.argv[0], self.env)) is None:
                raise
            # A script without #! line: run it with sh, as a shell (and cron) would.
            return self._posix_spawn(["/bin/sh", script, *self.argv[1:]], actions, search=False)

    def _posix_spawn(
        self, argv: list[str], actions: list[tuple[int, int, int]], *, search: bool
    ) -> int:
        spawn = os.posix_spawnp if search else os.posix_spawn
        if self.own_group:
            return spawn(
                argv[0], argv, self.env, file_actions=actions, setsigdef=_RESET_FOR_JOB,
                setpgroup=0,
            )  # fmt: skip
        return spawn(argv[0], argv, self.env, file_actions=actions, setsigdef=_RESET_FOR_JOB)

    # -- run -----------------------------------------------------------------------------

    def pump(self, sink: OutputSink | None) -> bool:
        """Pass output through (copying it to ``sink``) until the job has ended.

        Returns True when all output has been passed on; False when a process the job left
        behind still holds its output open past LINGER_SECONDS: call ``pump(None)`` after
        recording to pass the rest on.
        """
        while self._pipes or self.wait_status is None:
            now = time.monotonic()
            lingered = self._exited_at is not None and now >= self._exited_at + LINGER_SECONDS
            if sink is not None and lingered:
                return False
            self._enforce_timeout(now)
            for fd, _ in self._poller.poll(self._poll_timeout_ms(now, sink is not None)):
                if fd == self._wake_r:
                    _drain(fd)
                else:
                    self._read(fd, sink)
            self._reap()
        return True

    def finish(self) -> Exit:
        """How the job ended (call once ``pump`` returned)."""
        finished = self.exited_usec or time.time_ns() // 1000
        if self.exec_error is not None:
            status = 127 if self.exec_error.errno == errno.ENOENT else 126
            reason = os.strerror(self.exec_error.errno or errno.EIO)
            error = f"cannot run {self.argv[0]!r}: {reason}"
            return Exit("exit-code", "exited", status, finished, status, error)
        wait_status = self.wait_status or 0
        if os.WIFSIGNALED(wait_status):
            signum = os.WTERMSIG(wait_status)
            dumped = os.WCOREDUMP(wait_status)
            result = "core-dump" if dumped else "signal"
            exit_code, exit_status, status = "dumped" if dumped else "killed", signum, 128 + signum
        else:
            exit_status = status = os.waitstatus_to_exitcode(wait_status)
            result, exit_code = ("success" if status == 0 else "exit-code"), "exited"
        if self.timed_out:
            result = "timeout"
        return Exit(result, exit_code, exit_status, finished, status)

    def _read(self, fd: int, sink: OutputSink | None) -> None:
        stream, target = self._pipes[fd]
        chunk = os.read(fd, READ_SIZE)
        if not chunk:
            self._stop_reading(fd)
            return
        if sink is not None:
            sink(stream, chunk, time.time_ns() // 1000)
        try:
            _write_all(target, chunk)
        except OSError:
            # Whoever read our output went away: close the job's pipe too, so that the job
            # meets the same end (SIGPIPE) it would meet without observer in between.
            self._stop_reading(fd)

    def _stop_reading(self, fd: int) -> None:
        self._poller.unregister(fd)
        os.close(fd)
        del self._pipes[fd]

    def _reap(self) -> None:
        if self.pid is None or self.wait_status is not None:
            return
        pid, wait_status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return
        self.wait_status = wait_status
        self.exited_usec = time.time_ns() // 1000
        self._exited_at = time.monotonic()
        if not self.own_group:
            self.pid = None  # its PID may be reused now: forward nothing more

    def _enforce_timeout(self, now: float) -> None:
        if self._term_at is not None and now >= self._term_at and self.wait_status is None:
            self._term_at = None
            self.timed_out = True
            self._signal_job(signal.SIGTERM)
            self._kill_at = now + self.kill_after
        if self._kill_at is not None and now >= self._kill_at:
            self._kill_at = None
            self._signal_job(signal.SIGKILL)

    def _poll_timeout_ms(self, now: float, recording: bool) -> int:
        deadlines: list[float] = [d for d in (self._term_at, self._kill_at) if d is not None]
        if recording and self._exited_at is not None:
            deadlines.append(self._exited_at + LINGER_SECONDS)
        if self.wait_status is None:
            deadlines.append(now + 1.0)  # a missed SIGCHLD costs at most a second
        if not deadlines:
            return -1
        return max(0, int((min(deadlines) - now) * 1000) + 1)

    # -- signals -------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.pid is None and self.wait_status is None and self.exec_error is None:
            self._pending.append(signum)  # arrived while the job was being started
            return
        self._forward(signum)

    def _forward(self, signum: int) -> None:
        if self.pid is None:
            return
        if not self.own_group and signum != signal.SIGTERM and _terminal_sends_to_us():
            return  # the terminal sent it to its whole foreground group: the job has it
        self._signal_job(signum)

    def _signal_job(self, signum: int) -> None:
        if self.pid is None:
            return
        try:
            if self.own_group:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        """Close what is left open (once all output has been passed on)."""
        for fd in list(self._pipes):
            self._stop_reading(fd)
        if self._wake_r >= 0:
            signal.set_wakeup_fd(-1)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1


def _ignore(signum: int, frame: FrameType | None) -> None:
    """SIGCHLD only has to wake the poll (through the wakeup fd)."""


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # our stdout was left non-blocking by whoever started us
            select.select([], [fd], [])


def _terminal_sends_to_us() -> bool:
    """Whether we are in the foreground of a terminal (whose ^C reaches the job as well)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def _find(command: str, env: dict[bytes, bytes]) -> str | None:
    """The file posix_spawnp found for ``command`` (to run a script without #! with sh)."""
    if "/" in command:
        return command
    path = os.fsdecode(env.get(b"PATH", b"/bin:/usr/bin"))
    for directory in _nonempty(path.split(":")):
        candidate = os.path.join(directory, command)
        if os.access(candidate, os.X_OK) and os.path.isfile(candidate):
            return candidate
    return None


def _nonempty(parts: Iterable[str]) -> Iterable[str]:
    return (p or "." for p in parts)
