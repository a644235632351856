"""The daemon's metrics exporters: an HTTP /metrics endpoint and a textfile, both off the loop.

The run metrics are read from the store on a worker thread (after runs are recorded, and
when a look every REFRESH_SECONDS finds the store changed) and rendered there once; a scrape
only adds the daemon's own counters and the jobs' metric files. The HTTP server answers from
its own threads: nothing a scrape does runs on the event loop or talks to D-Bus. The
daemon's counters are copied for those threads when the daemon says something happened:
an idle daemon is not woken for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from observer.config import MetricsConfig
from observer.metrics.collectors import (
    DaemonCollector,
    DaemonHealth,
    RunCollector,
    render,
    render_gzip,
)
from observer.metrics.http import MetricsServer, PageSource, parse_listen
from observer.metrics.job_metrics import JobMetrics, job_metrics_directory
from observer.metrics.resilience import ResilienceCollector
from observer.metrics.snapshot import (
    RunTally,
    Snapshot,
    UnitFold,
    alert_counts,
    read_unit_states,
)
from observer.model import Run, StoreError, journal_cursor_usec
from observer.native import name_thread
from observer.reading import history
from observer.recording.intake import Intake, RunningRuns
from observer.store import database
from observer.web_config import load_web_config

log = logging.getLogger(__name__)

TEXTFILE_NAME = "observer.prom"
# The store is looked at this often when no run ends (other writers, the alerts' and other
# processes', tell nobody; one look is a PRAGMA), and read again at most this often (or
# READING_SPACING times the CPU time the last reading took: in a burst of runs, reading them
# takes a twentieth of a CPU) when runs end. CPU time, not wall time: on a loaded machine a
# reading waits for a core, and twenty times that wait kept a run off /metrics for a
# minute. Never more than REFRESH_SECONDS apart while runs end.
REFRESH_SECONDS = 30.0
MIN_REFRESH_SECONDS = 2.0
READING_SPACING = 20
DEBOUNCE_SECONDS = 0.5
# The daemon's state is copied at most this often while things happen.
POLL_SECONDS = 2.0
BIND_RETRY_SECONDS = 30.0
# Unfinished runs this old are not followed to their end (see RunTally.start).
PENDING_HORIZON_USEC = 7 * 86400 * 1_000_000


def _named_serve(server: MetricsServer) -> None:
    """The listener's thread: named for the kernel, then serving until _close stops it."""
    name_thread()
    server.serve_forever(poll_interval=3600.0)


def refresh_spacing(cpu_seconds: float) -> float:
    """How long after a reading that took ``cpu_seconds`` of CPU the next may begin."""
    return min(REFRESH_SECONDS, max(MIN_REFRESH_SECONDS, READING_SPACING * cpu_seconds))


class _Pending(Protocol):
    journal_cursor: str | None


class DaemonView(Protocol):
    """What the exporters read of the daemon (on the event loop only)."""

    host: str
    runs_recorded: int
    store_errors: int
    runs_set_aside: int

    @property
    def store_writable(self) -> bool: ...

    @property
    def intake(self) -> Intake: ...

    @property
    def pending(self) -> _Pending: ...

    @property
    def journal_queue(self) -> asyncio.Queue[Any]: ...


def write_textfile(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically: readers see the old file or the new one, never half."""
    # A name that does not end in .prom: textfile collectors skip it while it is written.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


class _Collectors:
    """Several collectors as one."""

    def __init__(self, *collectors: Any) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


class JobMetricsCollector:
    """The jobs' own metrics, and how many of their files were rejected and why."""

    def __init__(self, host: str, job_metrics: JobMetrics) -> None:
        self.host = host
        self.job_metrics = job_metrics

    def collect(self) -> Iterator[Metric]:
        families = self.job_metrics.collect()
        rejected = CounterMetricFamily(
            "observer_custom_metrics_rejected",
            "Versions of jobs' metric files left out of the export, by unit and reason.",
            labels=["host", "unit", "reason"],
        )
        for (unit, reason), count in sorted(self.job_metrics.rejections.items()):
            rejected.add_metric([self.host, unit, reason], count)
        files = GaugeMetricFamily(
            "observer_custom_metrics_files",
            "Jobs' metric files exported now.",
            labels=["host"],
        )
        files.add_metric([self.host], self.job_metrics.files)
        yield rejected
        yield files
        yield from families


class MetricsService:
    """Keeps the metrics current while the daemon runs and serves them; one per daemon."""

    def __init__(
        self,
        daemon: DaemonView,
        db_path: Path,
        config: MetricsConfig,
        job_metrics_dir: str = "",
        pages: PageSource | None = None,
    ) -> None:
        self.daemon = daemon
        self.pages = pages
        self.db_path = db_path
        self.listen = parse_listen(config.listen)
        # Read now: a bad file is a configuration error the daemon stops on, not a retry.
        self.web = load_web_config(Path(config.web_config)) if config.web_config else None
        self.textfile = (
            Path(config.textfile_directory, TEXTFILE_NAME) if config.textfile_directory else None
        )
        self.fold = UnitFold(config.fold)
        configured = config.job_metrics_directory or job_metrics_dir
        self.job_metrics = JobMetrics(job_metrics_directory(db_path, configured))
        # Written on the loop (health, _behind) or on the worker thread (_refreshed,
        # _refresh_errors, _vacuumed_seconds) only; render() puts them together.
        self.health = DaemonHealth()
        self._behind = False
        self._refreshed: tuple[float | None, float | None, int | None] = (None, None, None)
        self._refresh_errors = 0
        self._vacuumed_seconds = 0.0
        self.server: MetricsServer | None = None
        self.address: tuple[str, int] | None = None
        self.wake = asyncio.Event()
        self._daemon_changed = asyncio.Event()
        # The run metrics as last rendered, kept compressed only: at 1,000 units the text is
        # 2.7 MiB (a twentieth of the daemon's RSS), gzip's 0.13 MiB; a scrape without
        # gzip (or the textfile) has it decompressed.
        self._snapshot_gzip = render_gzip((), 6)
        self._finished: list[str] = []
        self._finished_lock = threading.Lock()
        self._running: RunningRuns = {}
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="observer-metrics", initializer=name_thread
        )
        self._conn: sqlite3.Connection | None = None
        self._tally: RunTally | None = None
        self._read_as_of: tuple[int, RunningRuns] | None = None
        self._textfile_error: str | None = None
        self._process = ProcessCollector(registry=None)

    # -- called on the event loop --------------------------------------------------------

    def runs_recorded(self, runs: list[Run]) -> None:
        """A hook of the daemon's: runs ended; read the store again soon."""
        with self._finished_lock:
            self._finished.extend(run.key for run in runs)
        self.wake.set()

    def daemon_changed(self) -> None:
        """A hook of the daemon's: it fed events or wrote; copy its state soon."""
        self._daemon_changed.set()

    async def run(self) -> None:
        """A service of the daemon's: serve and refresh until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._poll())
                group.create_task(self._refresh_loop())
                if self.listen is not None:
                    group.create_task(self._serve())
        finally:
            await asyncio.shield(asyncio.to_thread(self._close))

    async def _poll(self) -> None:
        """Copy what the loop knows (runs in progress, counters) for the other threads, after
        the daemon said it changed (a burst makes one copy every POLL_SECONDS)."""
        events = 0
        while True:
            try:
                self._sample(events)
                events = self.daemon.intake.events_fed
            except Exception:  # never let the metrics stop the daemon
                log.exception("metrics: could not read the daemon's state")
            await self._daemon_changed.wait()
            await asyncio.sleep(POLL_SECONDS)
            self._daemon_changed.clear()

    def _sample(self, last_events: int) -> None:
        daemon, intake, now = self.daemon, self.daemon.intake, time.time()
        # The runs the intake sees running: on a central observer, its hosts'.
        running = dict(intake.running())
        if running != self._running:
            self._running = running
            self.wake.set()
        position = self.health.journal_position_usec
        cursor = daemon.pending.journal_cursor
        if cursor is not None:
            position = max(position or 0, journal_cursor_usec(cursor) or 0) or None
        self._behind = not daemon.journal_queue.empty()
        self.health = dataclasses.replace(
            self.health,
            events_processed=intake.events_fed,
            runs_recorded=daemon.runs_recorded,
            store_errors=daemon.store_errors,
            store_writable=daemon.store_writable,
            unattributed_lines=intake.unattributed_lines,
            lost_lines=intake.lost_lines,
            last_event_at=(now if intake.events_fed != last_events else self.health.last_event_at),
            journal_position_usec=position,
        )

    async def _refresh_loop(self) -> None:
        loop = asyncio.get_running_loop()
        not_before = 0.0
        self.wake.set()  # show what is recorded already, from the start
        first = True
        while True:
            # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFRESH_SECONDS):
                    await self.wake.wait()
            # Let a burst of runs end before reading them all at once (but read what is
            # recorded at once when the daemon starts: a scrape may already be waiting).
            if not first:
                await asyncio.sleep(max(DEBOUNCE_SECONDS, not_before - time.monotonic()))
            first = False
            self.wake.clear()
            took = 0.0
            try:
                took = await loop.run_in_executor(
                    self._executor, self._refresh, dict(self._running)
                )
            except Exception:  # a bug here must not stop the recording
                log.exception("metrics: could not refresh the run metrics")
            not_before = time.monotonic() + refresh_spacing(took)

    async def _serve(self) -> None:
        assert self.listen is not None
        while self.server is None:
            try:
                self.server = MetricsServer(self.listen, self, self.web)
            except OSError as e:
                log.error(
                    "cannot serve metrics on %s:%d: %s (trying again in %.0fs)",
                    *self.listen, e.strerror, BIND_RETRY_SECONDS,
                )  # fmt: skip
                await asyncio.sleep(BIND_RETRY_SECONDS)
        address = self.server.server_address
        host, port = str(address[0]), int(address[1])
        self.address = (host, port)
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if self.web is not None and self.web.tls is not None else "http"
        log.info("serving metrics on %s://%s:%d/metrics", scheme, shown, port)
        # No poll interval to speak of: an idle server is not woken every half second to
        # see whether it should stop; _close wakes it.
        thread = threading.Thread(
            target=_named_serve, args=(self.server,), name="observer-http", daemon=True
        )
        thread.start()
        await asyncio.Event().wait()  # until cancelled

    def _close(self) -> None:
        if self.server is not None:
            # shutdown() waits for serve_forever to see the request; the listening socket
            # shut down wakes its wait at once.
            stopper = threading.Thread(target=self.server.shutdown, name="observer-metrics-stop")
            stopper.start()
            with contextlib.suppress(OSError):
                self.server.socket.shutdown(socket.SHUT_RDWR)
            stopper.join()
            self.server.server_close()
        # The connection belongs to the worker thread: close it there, after any refresh.
        self._executor.submit(self._reset_connection)
        self._executor.shutdown(wait=True)

    # -- called on the worker thread -----------------------------------------------------

    def _refresh(self, running: RunningRuns) -> float:
        """Read the run metrics (unless nothing changed); the CPU seconds it took."""
        cpu_began = time.thread_time()
        self._read(running)
        return time.thread_time() - cpu_began

    def _read(self, running: RunningRuns) -> None:
        began = time.monotonic()
        with self._finished_lock:
            finished, self._finished = self._finished, []
        try:
            conn = self._connection()
            # Nothing committed since the last reading and the same runs in progress: the
            # snapshot would be the same (an idle daemon reads nothing).
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            unchanged = (version, running) == self._read_as_of and not finished
            self._read_as_of = (version, running)
            if unchanged:
                self._refreshed = (time.time(), *self._refreshed[1:])
                if self.textfile is not None:
                    self._write_textfile(self.textfile)
                return
            tally = self._tally
            if tally is None:
                tally = RunTally(self.fold)
                tally.start(conn, int(time.time() * 1e6) - PENDING_HORIZON_USEC)
                self._tally = tally
            tally.update(conn, finished)
            units, timers = read_unit_states(conn, running, self.daemon.host, self.fold)
            cursor = database.read_state(conn, "journal_cursor")
            snapshot = Snapshot(
                host=self.daemon.host,
                units=tuple(units),
                timers=tuple(timers),
                runs_by_result=dict(tally.runs_by_result),
                durations=tally.durations(),
                alerts=alert_counts(conn, self.fold),
                taken_at=time.time(),
            )
            vacuumed = history.vacuumed_journal(conn)
            self._vacuumed_seconds = sum(g.until_usec - g.after_usec for g in vacuumed) / 1e6
            # Compressed once here: a gzip scrape (Prometheus asks for one) then compresses
            # only the small live part, sent as a second gzip member after this one.
            self._snapshot_gzip = render_gzip(RunCollector(snapshot).collect(), 6)
        except (sqlite3.Error, OSError, StoreError) as e:
            with self._finished_lock:
                self._finished[:0] = finished  # count them at the next try
            self._reset_connection()
            self._refresh_errors += 1
            log.error("metrics: cannot read the database %s: %s", self.db_path, e)
            return
        committed = journal_cursor_usec(cursor) if cursor else None
        self._refreshed = (time.time(), time.monotonic() - began, committed)
        if self.textfile is not None:
            self._write_textfile(self.textfile)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = database.service_connection(database.open_for_reading(self.db_path))
        return self._conn

    def _reset_connection(self) -> None:
        self._read_as_of = None  # data_version counts per connection
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _write_textfile(self, path: Path) -> None:
        try:
            # No process_* metrics: node_exporter exports its own under those names.
            write_textfile(path, self.render(process=False))
        except OSError as e:
            error = f"{e.strerror or e}"
            if error != self._textfile_error:
                log.error("metrics: cannot write the textfile %s: %s", path, error)
            self._textfile_error = error
            return
        if self._textfile_error is not None:
            log.info("metrics: writing the textfile %s again", path)
        self._textfile_error = None

    # -- called from any thread ----------------------------------------------------------

    def _health(self) -> DaemonHealth:
        health, (refresh_at, refresh_seconds, committed) = self.health, self._refreshed
        position = max(health.journal_position_usec or 0, committed or 0) or None
        lag = 0.0
        if self._behind and position is not None:
            lag = max(0.0, time.time() - position / 1e6)
        return dataclasses.replace(
            health,
            journal_position_usec=position,
            journal_lag_seconds=lag,
            refresh_at=refresh_at,
            refresh_seconds=refresh_seconds,
            refresh_errors=self._refresh_errors,
            journal_vacuumed_seconds=self._vacuumed_seconds,
        )

    def render(self, *, process: bool = True, compressed: bool = False) -> bytes:
        """The whole exposition: the run metrics as last read, then what changes by the second.

        ``compressed``: gzip, as two members (readers of gzip, Prometheus's included, read
        concatenated members as one stream).
        """
        live: list[Any] = [
            DaemonCollector(self.daemon.host, self._health()),
            JobMetricsCollector(self.daemon.host, self.job_metrics),
            ResilienceCollector(self.daemon.host, lambda: self.daemon.runs_set_aside),
        ]
        if process:
            live.append(self._process)
        if compressed:
            return self._snapshot_gzip + render_gzip(_Collectors(*live).collect(), 1)
        return gzip.decompress(self._snapshot_gzip) + render(_Collectors(*live).collect())
