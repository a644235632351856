"""`observer run --name NAME -- CMD`: a cron job (or any command) recorded like a unit's run.

The job comes first: its output and exit status pass through unchanged whatever happens
to observer. The run is written into the store when the job has ended; when the store
cannot be written it is spooled (see observer/spool.py) and one warning goes to stderr.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from observer.config_file import OUTPUT_FAILED_MAX_BYTES, OUTPUT_MAX_BYTES, config_to_read
from observer.model import Run, Source, TimerState, boot_id, is_success
from observer.run import liveness, spool
from observer.run.capture import STDERR, OutputCapture
from observer.run.job import Exit, Job
from observer.run.schedule import Schedule
from observer.run.spool import RunRecord
from observer.store.database import Batch, open_for_writing, write_batch

# What a run of a job the lock kept from starting is recorded with.
RESULT_SKIPPED = "skipped"
# How long one write may wait for another writer (the daemon) to finish.
BUSY_TIMEOUT_MS = 3000
# The prefix of a schedule's row in the timers table: `cron:NAME`.
TIMER_PREFIX = "cron:"


class Options:
    """What `observer run` was asked to do (a plain class: a dataclass would cost every
    cron job half a millisecond to create)."""

    __slots__ = (
        "command", "config_path", "db_path", "kill_after", "lock", "metrics_dir", "name",
        "schedule", "spool_dir", "timeout",
    )  # fmt: skip

    def __init__(
        self,
        name: str,
        command: list[str],
        db_path: Path,
        *,
        config_path: Path | None = None,
        spool_dir: Path | None = None,
        metrics_dir: Path | None = None,
        timeout: float | None = None,
        kill_after: float = 10.0,
        lock: bool = False,
        schedule: Schedule | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.db_path = db_path
        self.config_path = config_path
        self.spool_dir = spool_dir
        self.metrics_dir = metrics_dir
        self.timeout = timeout
        self.kill_after = kill_after
        self.lock = lock
        self.schedule = schedule


def run_job(options: Options) -> int:
    """Run the job, record it, and return the status `observer run` exits with."""
    _ensure_standard_fds()
    started = time.time_ns() // 1000
    recorder = Recorder.for_options(options)
    run = Run(
        unit=options.name,
        invocation_id=new_invocation_id(),
        host=recorder.host,
        source=Source.WRAPPER,
        started_usec=started,
        boot_id=boot_id(),
    )
    timer = recorder.timer(options, started)
    lock_fd = None
    if options.lock:
        lock_fd = recorder.lock(options.name)
        if lock_fd is None:
            skipped = run._replace(finished_usec=started, result=RESULT_SKIPPED)
            return _skipped(options.name, recorder, RunRecord(skipped, timer=timer))
    recorder.mark_alive(run)
    metrics_file = recorder.metrics_file(options.name, run.key)
    job = Job(
        options.command,
        _job_environment(metrics_file),
        timeout=options.timeout,
        kill_after=options.kill_after,
    )
    capture = OutputCapture(run.key, recorder.failed_max_bytes)
    end, complete = _run_capturing(
        job, capture, options.name, lambda: recorder.begin(RunRecord(run, timer=timer))
    )
    try:
        if end.error is not None:
            capture.message(STDERR, f"observer: {end.error}", end.finished_usec)
        capture.close(end.finished_usec)
        record = _record(run, end, capture, recorder, timer)
        metrics = recorder.take_metrics(options.name, metrics_file)
        recorder.finish(record.with_metrics(metrics))
    except Exception as e:  # whatever happens to the record, the job's status stands
        _warn(f"cannot record this run of {options.name}: {e!r}")
    if lock_fd is not None and lock_fd >= 0:
        os.close(lock_fd)
    if not complete:
        job.pump(None)  # a process the job left behind still writes: pass the rest on
    job.close()
    return end.status


def _skipped(name: str, recorder: Recorder, skipped: RunRecord) -> int:
    """The lock is held by a run still going: this one is recorded as skipped, and exits 0."""
    recorder.finish(skipped)
    if os.isatty(2):
        os.write(2, f"observer: {name} is still running; skipped\n".encode())
    return 0


def _run_capturing(
    job: Job, capture: OutputCapture, name: str, on_start: Callable[[], None]
) -> tuple[Exit, bool]:
    """Run the job, its output passed through and copied into ``capture``; how it ended,
    and whether all of its output was passed on (see ``Job.pump``)."""
    recording = True

    def record_output(stream: str, chunk: bytes, usec: int) -> None:
        nonlocal recording
        if recording:
            try:
                capture.feed(stream, chunk, usec)
            except Exception as e:  # a bug of ours must not cost the job its output
                recording = False
                _warn(f"cannot record the output of {name}: {e!r}")

    if job.start():
        on_start()
        complete = job.pump(record_output)
    else:
        complete = True
    end = job.finish()
    if end.error is not None:
        os.write(2, f"observer: {end.error}\n".encode())
    return end, complete


def _record(
    run: Run, end: Exit, capture: OutputCapture, recorder: Recorder, timer: TimerState | None
) -> RunRecord:
    finished = run._replace(
        finished_usec=max(end.finished_usec, run.started_usec or 0),
        result=end.result,
        exit_code=end.exit_code,
        exit_status=end.exit_status,
    )
    limit = recorder.max_bytes if is_success(end.result) else recorder.failed_max_bytes
    output = capture.finish(limit)
    return RunRecord(finished, tuple(output.lines), output.counts, timer)


class Recorder:
    """Writes a job's runs into the store, or the spool; warns once when it cannot."""

    def __init__(
        self,
        name: str,
        db_path: Path,
        spool_dir: Path,
        metrics_dir: Path,
        *,
        host: str,
        max_bytes: int,
        failed_max_bytes: int,
    ) -> None:
        self.name = name
        self.db_path = db_path
        self.spool_dir = spool_dir
        self.metrics_dir = metrics_dir
        self.host = host
        self.max_bytes = max_bytes
        self.failed_max_bytes = failed_max_bytes
        self.warned = False
        self._writer: threading.Thread | None = None
        self._mark: liveness.LifeMark | None = None

    @classmethod
    def for_options(cls, options: Options) -> Recorder:
        host, spool_dir, metrics_dir = "", "", ""
        max_bytes, failed_max_bytes = OUTPUT_MAX_BYTES, OUTPUT_FAILED_MAX_BYTES
        try:
            path = config_to_read(options.config_path)
            if path is not None:  # without a file, the defaults (and no TOML reader to import)
                from observer.config import load_config  # noqa: PLC0415

                config = load_config(path)
                host = config.host
                spool_dir, metrics_dir = config.run.spool_dir, config.run.metrics_dir
                max_bytes, failed_max_bytes = (
                    config.output.max_bytes,
                    config.output.failed_max_bytes,
                )
        except Exception as e:  # a bad config must not keep the job from running
            _warn(f"{e} (using the defaults)")
        return cls(
            options.name,
            options.db_path,
            options.spool_dir or spool.default_spool_dir(options.db_path, spool_dir),
            options.metrics_dir or spool.default_metrics_dir(options.db_path, metrics_dir),
            host=host or os.uname().nodename,
            max_bytes=max_bytes,
            failed_max_bytes=failed_max_bytes,
        )

    def timer(self, options: Options, started_usec: int) -> TimerState | None:
        """The row of the timers table that says when the job is due next."""
        if options.schedule is None:
            return None
        try:
            due = options.schedule.next_after(started_usec)
        except Exception as e:  # cronsim missing or broken: the job runs all the same
            _warn(f"cannot compute the next run of {options.name}: {e}")
            return None
        return TimerState(TIMER_PREFIX + options.name, options.name, due, started_usec)

    def lock(self, name: str) -> int | None:
        """Take the job's lock: its fd, None when a run holds it, -1 when it cannot be taken."""
        import fcntl  # noqa: PLC0415

        path = self.spool_dir / "locks" / f"{name}.lock"
        try:
            spool.make_spool_dir(self.spool_dir, "locks")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            _warn(f"cannot take the lock {str(path)!r} ({e.strerror}): running without it")
            return -1
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as e:
            os.close(fd)
            _warn(f"cannot take the lock {str(path)!r} ({e.strerror}): running without it")
            return -1
        return fd

    def mark_alive(self, run: Run) -> None:
        """Hold the run's mark of life, so that the run is closed if this process is killed."""
        # A spool it cannot write: the run is recorded all the same when it ends.
        with contextlib.suppress(OSError):
            self._mark = liveness.LifeMark.create(self.spool_dir, run, self.db_path)

    def metrics_file(self, name: str, invocation_id: str) -> Path | None:
        """A fresh path for this run's JOB_METRICS_FILE, in a directory the job can write."""
        for where in ("metrics", "spool", "tmp"):
            try:
                if where == "metrics":
                    directory = self.metrics_dir / ".running"
                    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
                elif where == "spool":
                    directory = spool.make_spool_dir(self.spool_dir, "running")
                else:
                    directory = Path(os.environ.get("TMPDIR") or "/tmp")
            except OSError:
                continue
            if os.access(directory, os.W_OK | os.X_OK):
                return directory / f"{name}.{invocation_id}.prom"
        return None

    def take_metrics(self, name: str, path: Path | None) -> bytes | None:
        """Move what the job wrote to JOB_METRICS_FILE to NAME.prom; the bytes if that failed."""
        if path is None:
            return None
        try:
            with path.open("rb") as f:
                data = f.read(spool.MAX_METRICS_BYTES + 1)
        except OSError:
            return None  # the job wrote no metrics
        finally:
            path.unlink(missing_ok=True)
        if len(data) > spool.MAX_METRICS_BYTES:
            _warn(f"JOB_METRICS_FILE of {name} is over {spool.MAX_METRICS_BYTES} bytes: ignored")
            return None
        try:
            spool.place_metrics(self.metrics_dir, name, data)
        except OSError as e:
            _warn(f"cannot write {str(self.metrics_dir / (name + '.prom'))!r}: {e.strerror}")
            return data  # kept with the run if it goes to the spool
        return None

    def begin(self, record: RunRecord) -> None:
        """Record that the run started, without making the job wait for the store.

        A thread writes the start, then waits for the end of the run to write it on the same
        connection (SQLite connections stay on the thread that opened them). A job that has
        ended by the time the thread starts (``true``) is written once, with its end.
        """

        def write() -> None:
            conn = None
            try:
                if not self._ended.is_set():
                    conn = self._connect()
                    write_batch(conn, Batch(runs=[record.run], timers=_timers(record)))
            except Exception:  # the end of the run is what counts: it is tried again
                if conn is not None:
                    conn.close()
                conn = None
            while not self._ended.wait(liveness.HEARTBEAT_SECONDS):
                if self._mark is not None:
                    self._mark.beat()
            if self._final is not None:
                self._write(conn, self._final)

        self._final: RunRecord | None = None
        self._ended = threading.Event()
        self._writer = threading.Thread(target=write, name="observer-run-writer", daemon=True)
        self._writer.start()

    def finish(self, record: RunRecord) -> None:
        """Write the finished run into the store, or else into the spool."""
        if self._writer is None:
            self._write(None, record)
            return
        self._final = record
        self._ended.set()
        self._writer.join()

    def _write(self, conn: sqlite3.Connection | None, record: RunRecord) -> None:
        try:
            try:
                if conn is None:
                    conn = self._connect()
                spool.write_record(conn, record)
            except Exception as e:
                stored, recorded = False, self._spool(record, _describe(e))
            else:
                stored = recorded = True
            if recorded and self._mark is not None:
                self._mark.end()  # unrecorded, it stays: the run is closed as interrupted
            if stored and conn is not None:
                self._import_spooled(conn)
        finally:
            if conn is not None:
                conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = open_for_writing(self.db_path)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return conn

    def _import_spooled(self, conn: sqlite3.Connection) -> None:
        if not os.path.isdir(self.spool_dir):
            return
        try:
            spool.import_spooled(
                conn, self.spool_dir, self.db_path, self.metrics_dir, limit=spool.IMPORT_BATCH
            )
            liveness.close_gone(conn, self.spool_dir, self.db_path)
        except Exception as e:  # the daemon will try again
            _warn(f"cannot move spooled runs into {str(self.db_path)!r}: {_describe(e)}")

    def _spool(self, record: RunRecord, problem: str) -> bool:
        """Keep the run in the spool; whether it could."""
        try:
            path = spool.spool(record, self.spool_dir, self.db_path)
        except Exception as e:
            _warn(
                f"cannot record this run of {self.name} in {str(self.db_path)!r} ({problem}) "
                f"nor keep it in {str(self.spool_dir)!r} ({_describe(e)}): it is not recorded"
            )
            return False
        _warn(
            f"cannot record this run of {self.name} in {str(self.db_path)!r} ({problem}); "
            f"kept in {str(path)!r} until the database can take it"
        )
        return True


def _timers(record: RunRecord) -> list[TimerState]:
    return [record.timer] if record.timer is not None else []


def _describe(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


_warned: set[str] = set()


def _warn(message: str) -> None:
    """One line on stderr (cron mails it), written once per message."""
    if message in _warned:
        return
    _warned.add(message)
    with contextlib.suppress(OSError):
        os.write(2, f"observer: {message}\n".encode(errors="backslashreplace"))


def new_invocation_id() -> str:
    """A random 128-bit ID written as 32 hex digits (a UUID4, as systemd's invocation IDs)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


def _ensure_standard_fds() -> None:
    """Fill closed fds 0-2 with /dev/null, so that no pipe of ours can land on them."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _job_environment(metrics_file: Path | None) -> dict[bytes, bytes]:
    """The environment observer was started with, byte for byte, plus JOB_METRICS_FILE.

    It is read from /proc/self/environ because Python itself adds to os.environ
    (LC_CTYPE=C.UTF-8 in cron's C locale), and the job must not see that.
    """
    try:
        with open("/proc/self/environ", "rb") as f:
            entries = f.read().split(b"\0")
        env = dict(e.split(b"=", 1) for e in entries if b"=" in e)
    except OSError:
        env = dict(os.environb)
    env.pop(b"JOB_METRICS_FILE", None)
    if metrics_file is not None:
        env[b"JOB_METRICS_FILE"] = os.fsencode(metrics_file)
    return env
