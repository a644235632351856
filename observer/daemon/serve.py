"""`observer daemon`: wires the bus, the journal, the intake (observer/recording/intake.py) and
the store together."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path

from observer.alerts.service import AlertService
from observer.config import Config, dashboard_directory
from observer.daemon.memory import tune_malloc
from observer.daemon.target import bus_hint, bus_name, intake_for, journal_scope, setup_from
from observer.dashboard.service import DashboardService
from observer.dashboard.serving import Pages
from observer.fleet.service import JOURNAL_SOCKET, RunRecords, journal_sender
from observer.inotify import DirectoryWatch
from observer.metrics.service import MetricsService
from observer.model import Run, StoreError
from observer.recording.attribution import LATE_OUTPUT_SECONDS
from observer.recording.bus import BusError, manager_bus
from observer.recording.definition_files import DefinitionReader
from observer.recording.effects import (
    CloseInterrupted,
    Effect,
    ReadCost,
    ReadDefinition,
    RecordRun,
    RecordTimer,
    ResolveJob,
)
from observer.recording.events import Event
from observer.recording.journal import JournalBatch, JournalFollower
from observer.run.service import WrapperRuns
from observer.store import set_aside
from observer.store.database import Batch
from observer.store.definitions import RunDefinition
from observer.store.lost import REBUILT_KEY, DatabaseLost
from observer.store.writer import AsyncStore, RefusedRecord

log = logging.getLogger(__name__)

# How long writes may gather before they are committed together.
FLUSH_DELAY = 0.005
# The least time from the start of one write to the start of the next: in a burst of runs
# each write then takes the start, end, journal records and output of many runs at once
# (a unit's summary is refreshed once per write), not of one or two.
WRITE_INTERVAL = 0.05
RETENTION_INTERVAL = 3600
# Output budgets of ended runs are looked at this often while some may be held.
BUDGETS_INTERVAL = 30.0
# A write under way for longer than this is no progress: the heartbeat is withheld.
WRITE_STALLED_SECONDS = 60.0
# How often the database file is checked while nothing is written (it is before each write).
DATABASE_CHECK_SECONDS = 5.0
# Runs announced to the consumers, remembered so that a rebuild does not announce them again.
ANNOUNCED_KEPT = 20_000
# Allocations between two collections of the youngest objects (Python's default: 700).
GC_YOUNG_THRESHOLD = 20_000


class Daemon:
    """Everything the daemon holds while it runs."""

    def __init__(
        self,
        config: Config,
        db_path: Path,
        bus_address: str | None,
        journal_dir: Path | None,
        user: str | None = None,
        passwd: Path | None = None,
        fleet_dir: Path | None = None,
        journal_socket: Path | None = None,
        root: Path = Path("/"),
    ) -> None:
        self.config = config
        self.host = config.host or socket.gethostname()
        self.store = AsyncStore(db_path)
        self.bus_address = bus_address
        self.journal_dir = fleet_dir or journal_dir
        self.pending = Batch()
        # What it records: its own host's runs, or (fleet_dir) the fleet's received ones.
        self.fleet_dir = fleet_dir
        self.intake = intake_for(config, self.host, fleet_dir, self.store, lambda: self.pending)
        self.flush_wanted = asyncio.Event()
        self.flush_lock = asyncio.Lock()
        self.store_healthy = asyncio.Event()
        self.store_healthy.set()
        self.journal_queue: asyncio.Queue[JournalBatch] = asyncio.Queue(maxsize=4)
        self.bus = manager_bus(user, bus_address, self.on_bus_event, self.on_systemd_back)
        self.bus_name, self.bus_hint = bus_name(user, bus_address), bus_hint(user)
        self.journal_scope = journal_scope(config, user, passwd)
        self.follower: JournalFollower | None = None
        self.definitions = DefinitionReader(root)
        self.tasks: set[asyncio.Task[None]] = set()
        # Called with the runs each write finished for the first time (metrics, alerts,
        # dashboard): they must return quickly and do their own I/O in their own tasks.
        self.recorded_hooks: list[Callable[[list[Run]], None]] = []
        # Called (on the loop, returning at once) after events were fed or a write ended:
        # what copies the daemon's counters waits for this instead of polling them.
        self.changed_hooks: list[Callable[[], None]] = []
        # Long-running coroutines of those consumers, started with the daemon's workers.
        self.services: list[Callable[[], Coroutine[object, object, None]]] = []
        self.store_errors = 0
        self.runs_recorded = 0
        self.runs_set_aside = 0
        self.rebuilds = 0
        # Counts the journal readers replaced: a batch taken from an earlier one is dropped.
        self.journal_generation = 0
        # The journal batch being taken (None: none yet): a stop lets it end first.
        self.taking: asyncio.Future[None] | None = None
        self.started_usec = _now_usec()
        self.announced: dict[str, None] = {}  # insertion-ordered: the oldest go first
        # When runs were last recorded (monotonic): their output budgets are held a while.
        self.last_recorded_at = -math.inf
        # By host, the earliest output line held when the last write began, or held since and
        # given to its run, not stored yet (output_waiting).
        self.held_unstored: dict[str, int] = {}
        # When the write under way began (None: none is): a write that hangs is no progress.
        self.writing_since: float | None = None
        self._wire_services(config, db_path, journal_socket)

    def _wire_services(self, config: Config, db_path: Path, journal_socket: Path | None) -> None:
        """The features' services the configuration asks for, each with its hooks."""
        served = None
        if pages_dir := dashboard_directory(config, db_path):
            pages = DashboardService(pages_dir, db_path, config.dashboard)
            self.recorded_hooks.append(pages.runs_recorded)
            self.services.append(pages.run)
            served = Pages(pages_dir) if config.dashboard.serve else None
        if config.metrics.listen or config.metrics.textfile_directory:
            metrics = MetricsService(
                self, db_path, config.metrics, config.run.metrics_dir, pages=served
            )
            self.recorded_hooks.append(metrics.runs_recorded)
            self.changed_hooks.append(metrics.daemon_changed)
            self.services.append(metrics.run)
        self.records: RunRecords | None = None
        if config.journal.write_runs and self.intake.own_runs:
            self.records = RunRecords(
                db_path, send=journal_sender(journal_socket or JOURNAL_SOCKET)
            )
            self.recorded_hooks.append(self.records.runs_recorded)
            self.services.append(self.records.run)
        if config.alerts.present:
            alerts = AlertService(
                config, db_path, self.host, healthy=self._recording, store=self.store,
                waiting_output=self.output_waiting,
            )  # fmt: skip
            self.recorded_hooks.append(alerts.runs_recorded)
            self.changed_hooks.append(alerts.daemon_changed)
            self.services.append(alerts.run)

    @property
    def store_writable(self) -> bool:
        """Whether the last write committed (the metrics' observer_store_writable)."""
        return self.store_healthy.is_set()

    def output_waiting(self) -> dict[str, int]:
        """By host, the time of the earliest output line read and not yet stored with its
        run: held for a start that may follow it, or given to its run since the last write.
        A run of that host that ended about then may still get it."""
        return earliest_by_host(self.intake.waiting_output(), self.held_unstored)

    def _recording(self, write_limit: float = WRITE_STALLED_SECONDS) -> bool:
        """Whether runs are being recorded: the journal is read, and writes commit (or none
        is pending), none under way for longer than ``write_limit``. The heartbeat and
        the watchdog are only sent while they are."""
        if self.follower is not None and not self.follower.alive:
            return False
        if not self.store_healthy.is_set() and self.pending:
            return False
        writing = self.writing_since
        return writing is None or time.monotonic() - writing < write_limit

    # -- events ------------------------------------------------------------------------

    def feed(self, event: Event) -> None:
        """Run one event of the bus through the intake and queue what follows."""
        for effect in self.intake.feed(event):
            self.apply(effect)

    def apply(self, effect: Effect) -> None:
        match effect:
            case RecordRun(run=run):
                self.pending.runs.append(run)
                if run.trigger is not None and self.records is not None:
                    self.records.trigger_known(run)
            case RecordTimer(timer=timer):
                self.pending.timers.append(timer)
            case CloseInterrupted(host=host, before_usec=before, finished_usec=finished):
                self.pending.interrupted.append((host, before, finished))
                log.info("a new systemd started: closing runs left open from before it")
            case ResolveJob(job_id=job_id, unit=unit):
                self._spawn(self._resolve_job(job_id, unit))
            case ReadCost(unit=unit, invocation_id=invocation_id):
                self._spawn(self._read_cost(unit, invocation_id))
            case ReadDefinition(unit=unit, invocation_id=invocation_id):
                self._spawn(self._read_definition(unit, invocation_id))

    def on_bus_event(self, event: Event) -> None:
        self.feed(event)
        self.flush_wanted.set()
        self._changed()

    def _changed(self) -> None:
        for hook in self.changed_hooks:
            hook()

    def on_systemd_back(self) -> None:
        self._spawn(self._resubscribe())

    async def _resubscribe(self) -> None:
        try:
            await self.bus.subscribe()
            await self._load_timers()
        except (BusError, OSError) as e:
            log.warning("could not subscribe again after systemd came back: %s", e)

    async def _resolve_job(self, job_id: int, unit: str) -> None:
        try:
            details = await self.bus.job_details(job_id, unit)
        except Exception as e:  # the bus went away: the journal still records the run
            log.debug("could not ask about job %d: %s", job_id, e)
            return
        self.on_bus_event(details)

    async def _read_cost(self, unit: str, invocation_id: str) -> None:
        try:
            run = await self.bus.run_cost(unit, invocation_id, self.host)
        except Exception as e:  # the bus went away: the journal may still say it
            log.debug("could not ask what %s cost: %s", unit, e)
            return
        if run is not None:
            self.pending.runs.append(run)
            self.flush_wanted.set()

    async def _read_definition(self, unit: str, invocation_id: str) -> None:
        """Record what defines the unit whose run started (files read only when changed)."""
        try:
            sources = await self.bus.definition_sources(unit)
        except Exception as e:  # the bus went away: the run is recorded without it
            log.debug("could not ask what defines %s: %s", unit, e)
            return
        if sources is None:
            return
        read = self.definitions.read(unit, sources)
        self.pending.definitions.append(
            RunDefinition(invocation_id, unit, self.host, read.definition, read.texts)
        )
        self.flush_wanted.set()

    async def _load_timers(self) -> None:
        for timer in await self.bus.timers():
            self.feed(timer)
        self.flush_wanted.set()

    # -- writing -----------------------------------------------------------------------

    async def flush(self) -> None:
        """Commit what has gathered. A run the store refuses is set aside and the rest
        written; on the store's own trouble what is unwritten is kept and tried again later."""
        async with self.flush_lock:
            batch, self.pending = self.pending, Batch()
            if not batch:
                return
            self.writing_since = time.monotonic()
            try:
                finished = await self._write(batch)
                # What is held now is all that is read and not stored (the lock holds reading).
                self.held_unstored = self.intake.waiting_output()
            except Unwritten as e:
                if isinstance(e.error, DatabaseLost):
                    await self._rebuild(e.error, e.batch)
                else:
                    self._store_failed(e.error, e.batch)
                return
            except Exception as e:  # a bug here must not lose the batch or stop the flusher
                log.exception("could not write a batch")
                self._store_failed(e, batch)
                return
            finally:
                self.writing_since = None
                self._changed()
            if not self.store_healthy.is_set():
                log.warning("the database takes writes again: catching up with the journal")
            self.store_healthy.set()
            self._recorded(finished)

    def _store_failed(self, error: Exception, unwritten: Batch) -> None:
        self.store_errors += 1
        self.store_healthy.clear()
        if self.store_errors == 1 or self.store_errors % 100 == 0:
            log.error("%s (kept in memory, retrying)", error)
        self.pending = unwritten.followed_by(self.pending)

    def _recorded(self, finished: list[Run]) -> None:
        if self.rebuilds:
            finished = [run for run in finished if self._unannounced(run)]
        self._remember_announced(finished)
        self.runs_recorded += len(finished)
        if finished:
            self.last_recorded_at = time.monotonic()
        for run in finished:
            shown = (run.invocation_id or "-")[:12]
            log.info("recorded %s %s: %s", run.unit, shown, run.result or "?")
        if finished:
            for hook in self.recorded_hooks:
                try:
                    hook(finished)
                except Exception:  # a failing consumer never stops the recording
                    log.exception("a consumer of recorded runs failed")

    async def _write(self, batch: Batch) -> list[Run]:
        """Write ``batch`` at once, or (a record refused) run by run."""
        try:
            return await self.store.write(batch)
        except RefusedRecord as e:
            log.warning("%s: writing that batch run by run", e)
        except StoreError as e:
            raise Unwritten(batch, e) from e
        return await self._write_run_by_run(batch)

    async def _write_run_by_run(self, batch: Batch) -> list[Run]:
        """Each run in its own transaction, setting aside those the store refuses, then
        the rest of the batch (its cursor with it)."""
        parts = [Batch(runs=[run]) for run in batch.runs]
        parts += [Batch(records=[run]) for run in batch.records]
        rest = batch.replace(runs=[], records=[])
        finished: list[Run] = []
        for i, part in enumerate(parts):
            try:
                finished += await self.store.write(part)
            except RefusedRecord as e:
                refused = [*part.runs, *part.records]
                entries = [set_aside.run_entry(run, str(e), _now_usec()) for run in refused]
                await self._set_aside(entries, _joined(parts[i:], rest))
            except StoreError as e:
                raise Unwritten(_joined(parts[i:], rest), e) from e
        return finished + await self._write_rest(rest)

    async def _write_rest(self, rest: Batch) -> list[Run]:
        """A batch's output, timers and cursor; if the store refuses them, the cursor alone."""
        try:
            return await self.store.write(rest)
        except RefusedRecord as e:
            left_out: dict[str, object] = {"lines": len(rest.lines), "timers": len(rest.timers),
                        "output_counts": len(rest.counts), "lost": len(rest.lost),
                        "interrupted": len(rest.interrupted)}  # fmt: skip
            entry = set_aside.SetAside(_now_usec(), str(e), None, None, left_out)
            await self._set_aside([entry], rest)
        except StoreError as e:
            raise Unwritten(rest, e) from e
        cursor = Batch(journal_cursor=rest.journal_cursor, state=rest.state)
        try:
            return await self.store.write(cursor)
        except StoreError as e:
            raise Unwritten(cursor, e) from e

    async def _set_aside(self, entries: list[set_aside.SetAside], unwritten: Batch) -> None:
        """Keep refused runs in the file beside the database; if it cannot be written,
        they are not lost: the write stops there and is tried again."""
        path = set_aside.set_aside_file(self.store.path)
        try:
            await asyncio.to_thread(set_aside.append, path, entries)
        except OSError as e:
            raise Unwritten(unwritten, e) from e
        self.runs_set_aside += len(entries)
        for entry in entries:
            log.error(
                "set aside %s %s: %s (see `observer set-aside`)",
                entry.unit or "part of a batch", (entry.invocation_id or "-")[:12], entry.error,
            )  # fmt: skip

    # -- a database lost under the daemon --------------------------------------------------

    async def _watch_database(self) -> None:
        """Check the database file when a file in its directory changed (each write checks
        it too), at most every DATABASE_CHECK_SECONDS: an idle daemon does not wake."""
        watch = DirectoryWatch([self.store.path.parent], DATABASE_CHECK_SECONDS)
        try:
            while True:
                await asyncio.sleep(DATABASE_CHECK_SECONDS)
                await watch.changed()
                try:
                    await self.store.check()
                except DatabaseLost as lost:
                    async with self.flush_lock:
                        await self._rebuild(lost, Batch())
                except StoreError as e:
                    log.debug("could not check the database: %s", e)
        finally:
            watch.close()

    async def _rebuild(self, lost: DatabaseLost, unwritten: Batch) -> None:
        """Open the database at its path again (a new one if it was deleted or corrupt, the
        corrupt one moved aside) and read the journal again from that database's cursor,
        or from the journal's start: the journal is the source of truth (flush_lock held)."""
        log.error("%s: rebuilding the database from the journal", lost)
        # None while replaced: the housekeeping takes a stopped reader for a failed one.
        follower, self.follower = self.follower, None
        if follower is not None:
            await asyncio.to_thread(follower.stop)
        while not self.journal_queue.empty():  # the old reader's: read again from the start
            self.journal_queue.get_nowait()
        self.journal_generation += 1
        try:
            aside = await self.store.reopen(lost)
        except StoreError as e:  # the next write (or check) says so again, and this is retried
            self._store_failed(e, unwritten)
            return
        if aside is not None:
            log.error("moved the corrupt database to %s (kept, never deleted)", aside)
        self.rebuilds += 1
        # What the bus told (timers, costs) is kept; the journal's part is read again.
        self.pending = unwritten.followed_by(self.pending).replace(journal_cursor=None)
        self.pending.state[REBUILT_KEY] = f"{_now_usec()} {lost}"
        self.intake = intake_for(
            self.config, self.host, self.fleet_dir, self.store, lambda: self.pending
        )
        await self.intake.restore()
        cursor = await self.store.read_state("journal_cursor")
        self._follow(cursor, None if cursor else 0)
        self.store_healthy.set()
        if self.intake.own_runs:
            self._spawn(self._resubscribe())
        self.flush_wanted.set()

    def _unannounced(self, run: Run) -> bool:
        """Whether a run a rebuild found is new to the consumers: not announced already,
        nor finished before this daemon started (an earlier one announced it)."""
        finished = run.finished_usec or 0
        return str(run.key) not in self.announced and finished >= self.started_usec

    def _remember_announced(self, runs: list[Run]) -> None:
        for run in runs:
            self.announced[str(run.key)] = None
        while len(self.announced) > ANNOUNCED_KEPT:
            del self.announced[next(iter(self.announced))]

    def _follow(self, cursor: str | None, since_usec: int | None) -> None:
        """Start reading the journal after ``cursor`` (or from ``since_usec``, or its end)."""
        self.follower = JournalFollower(
            self.journal_queue,
            asyncio.get_running_loop(),
            journal_dir=self.journal_dir,
            cursor=cursor,
            since_usec=since_usec,
            scope=self.journal_scope,
            parse=self.intake.parse,
        )
        self.follower.start()
        self._mark_held()

    def _mark_held(self) -> None:
        """Have the reader mark when it has read past the held lines' wait (restored ones
        too), should no further entry come to release them."""
        due = self.intake.held_until()
        if due is not None and self.follower is not None:
            self.follower.mark_when_read_past(due)

    async def _flusher(self) -> None:
        delay = FLUSH_DELAY
        last_write = -math.inf
        while True:
            await self.flush_wanted.wait()
            await asyncio.sleep(max(delay, last_write + WRITE_INTERVAL - time.monotonic()))
            self.flush_wanted.clear()
            last_write = time.monotonic()
            await self.flush()
            if self.store_healthy.is_set():
                delay = FLUSH_DELAY
            else:
                delay = min(max(delay * 2, 0.5), 30.0)
                self.flush_wanted.set()

    async def _consume_journal(self) -> None:
        while True:
            batch = await self.journal_queue.get()
            # Taken whole, even when the daemon stops meanwhile (serve waits for it before
            # its last write): part of a batch written without its cursor would be read
            # again at the next start, and its lines stored twice.
            self.taking = asyncio.ensure_future(self._take(batch))
            await asyncio.shield(self.taking)
            self._mark_held()
            self.flush_wanted.set()
            self._changed()
            # While the store cannot be written, read no further: the journal keeps it.
            await self.store_healthy.wait()

    async def _take(self, batch: JournalBatch) -> None:
        """Feed one journal batch and put what it read, with its cursor, in ``pending``."""
        generation = self.journal_generation
        # A write waits for the whole batch (the flusher can run at any await in it, a store
        # read, say): its lines are committed with its cursor, never before it, which a
        # restart would read again and store twice.
        async with self.flush_lock:
            if generation != self.journal_generation:
                return  # read before a rebuild, which reads it again
            held = self.intake.waiting_output()
            for entry in batch.events:
                for effect in await self.intake.take(entry):
                    self.apply(effect)
            await self.intake.reached(batch.last_usec)
            self.pending.state.update(self.intake.held_state())
            self.pending.state.update(batch.state)
            if batch.cursor is not None:  # None: a mark, read to the journal's end
                self.pending.journal_cursor = batch.cursor
            # Lines released now are unstored until the next write.
            self.held_unstored = earliest_by_host(held, self.held_unstored)

    async def batch_taken(self) -> None:
        """Wait for the journal batch under way, if any, to be taken whole (a failure in it
        was the consumer's to report)."""
        if self.taking is not None:
            await asyncio.gather(self.taking, return_exceptions=True)

    async def _bus_loop(self, connected: asyncio.Event) -> None:
        delay = 0.5
        while True:
            try:
                await self.bus.connect()
                await self._load_timers()
            except (BusError, OSError, EOFError, ConnectionError) as e:
                log.warning("cannot use %s: %s%s", self.bus_name, e, self.bus_hint)
                self.bus.disconnect()
            else:
                delay = 0.5
                connected.set()
                log.info("subscribed to systemd on %s", self.bus_address or "the system bus")
                await self.bus.wait_for_disconnect()
                log.warning("lost %s; reconnecting", self.bus_name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _housekeeping(self) -> None:
        """Prune at start and every RETENTION_INTERVAL, drop old output budgets while runs
        have ended lately, and end (failing the daemon) when the journal reader has: an idle
        daemon wakes for the next prune only."""
        # time.monotonic() counts from boot: a "last prune at 0" would skip the first hour.
        next_prune = time.monotonic()
        while True:
            # The reader of now: a rebuild replaces it (and the one it stopped has ended).
            follower = self.follower
            follower_ended = follower.ended if follower is not None else asyncio.Event()
            now = time.monotonic()
            if now >= next_prune:
                next_prune = now + RETENTION_INTERVAL
                await self._prune()
            wake = next_prune
            if now - self.last_recorded_at < LATE_OUTPUT_SECONDS + BUDGETS_INTERVAL:
                self.intake.forget_old_budgets()
                wake = min(wake, now + BUDGETS_INTERVAL)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wake - time.monotonic())):
                    await follower_ended.wait()
            if follower is not None and follower is self.follower and not follower.alive:
                raise RuntimeError("the journal reader stopped") from follower.failure

    async def _prune(self) -> None:
        retention = self.config.retention
        cutoff = int((time.time() - retention.max_age_days * 86400) * 1e6)
        try:
            deleted = await self.store.prune(
                older_than_usec=cutoff if retention.max_age_days else None,
                keep_per_unit=retention.max_runs_per_unit or None,
            )
        except StoreError as e:
            log.error("retention: %s", e)
            return
        if deleted:
            log.info("retention: deleted %d old runs", deleted)

    async def _watchdog(self, usec: int) -> None:
        # Only while runs are committed: systemd restarts a daemon that reads but cannot write.
        while True:
            await asyncio.sleep(usec / 2e6)
            if self._recording(write_limit=usec / 2e6):
                _notify("WATCHDOG=1")

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- life --------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; write everything gathered before returning."""
        await self.store.open()
        cursor = await self.store.read_state("journal_cursor")
        since = None
        if cursor is None and self.config.journal.backfill_days:
            since = int((time.time() - self.config.journal.backfill_days * 86400) * 1e6)
            log.info(
                "first start: importing runs from the last %d days of the journal",
                self.config.journal.backfill_days,
            )
        await self.intake.restore()
        self._follow(cursor, since)
        connected = asyncio.Event()
        workers = [
            asyncio.create_task(self._flusher()),
            asyncio.create_task(self._consume_journal()),
            asyncio.create_task(
                self._bus_loop(connected) if self.intake.own_runs else _no_bus(connected)
            ),
            asyncio.create_task(self._housekeeping()),
            asyncio.create_task(self._watch_database()),
        ]
        workers.extend(asyncio.create_task(service()) for service in self.services)
        watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        if watchdog_usec > 0:
            workers.append(asyncio.create_task(self._watchdog(watchdog_usec)))
        stopper = asyncio.create_task(stop.wait())
        try:
            ready = asyncio.create_task(connected.wait())
            done, _ = await asyncio.wait(
                [ready, stopper, *workers], return_when=asyncio.FIRST_COMPLETED
            )
            if ready in done:
                _notify("READY=1\nSTATUS=Recording runs")
                log.info("observer daemon ready (database %s)", self.store.path)
                done, _ = await asyncio.wait(
                    [stopper, *workers], return_when=asyncio.FIRST_COMPLETED
                )
            ready.cancel()
            for task in done:
                if task is not stopper:
                    # Workers run until cancelled: one that ends has failed.
                    raise task.exception() or RuntimeError(f"{task.get_name()} ended")
        finally:
            _notify("STOPPING=1")
            for task in [*workers, stopper, *self.tasks]:
                task.cancel()
            await asyncio.gather(*workers, stopper, *self.tasks, return_exceptions=True)
            if self.follower is not None:
                self.follower.stop()
            await self.batch_taken()
            with contextlib.suppress(StoreError):
                await self.flush()
            self.bus.disconnect()
            await self.store.close()


class Unwritten(Exception):
    """A write stopped on the store's own trouble: ``batch`` is what it did not write."""

    def __init__(self, batch: Batch, error: Exception) -> None:
        super().__init__(str(error))
        self.batch = batch
        self.error = error


def _joined(parts: list[Batch], rest: Batch) -> Batch:
    """``parts`` then ``rest``, as one batch to write again."""
    joined = Batch()
    for part in [*parts, rest]:
        joined = joined.followed_by(part)
    return joined


def _now_usec() -> int:
    return time.time_ns() // 1000


async def _no_bus(connected: asyncio.Event) -> None:
    """A central observer listens to no systemd: it is ready at once."""
    connected.set()
    await asyncio.Event().wait()


def _notify(state: str) -> None:
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    from systemd import daemon  # noqa: PLC0415

    daemon.notify(state)


def run(args: argparse.Namespace) -> int:
    """Entry point of `observer daemon`."""
    tune_malloc()
    setup = setup_from(args)
    daemon = Daemon(
        setup.config,
        setup.db_path,
        setup.bus_address,
        setup.journal_dir,
        user=setup.user,
        passwd=setup.passwd,
        fleet_dir=setup.fleet_dir,
        journal_socket=setup.journal_socket,
        root=setup.root,
    )
    db_path, config = setup.db_path, setup.config
    # Runs of `observer run`: spooled ones into the store, finished ones to the consumers.
    wrapper_runs = WrapperRuns(daemon.recorded_hooks, db_path, config, store=daemon.store)
    daemon.services.append(wrapper_runs.run)

    # What was built so far (modules, configuration) lives as long as the daemon: the
    # collector never looks at it again. Each signal of the bus allocates dozens of small
    # objects, nearly all freed at once: collecting the youngest every 700 of them (the
    # default) was a tenth of the event loop's time in a burst of runs.
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await daemon.serve(stop)

    asyncio.run(main())
    return 0


def earliest_by_host(*held: Mapping[str, int]) -> dict[str, int]:
    """By host, the earliest of the times of output lines held in ``held``."""
    waiting: dict[str, int] = {}
    for times in held:
        for host, since in times.items():
            waiting[host] = min(since, waiting.get(host, since))
    return waiting
