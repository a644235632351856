"""The alert service inside the daemon: judges runs, checks schedules, delivers, pings.

Nothing here delays the recording of runs: the daemon's hook only notes which units had
runs end; judging reads on this service's own thread and connection and writes through the
store's one writer (``store``: a judgement's writes are one short transaction there, made
after its reads), and each delivery attempt runs on a sender thread with a time limit, so a
slow or broken channel delays nothing but its own retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from observer.alerts import outbox, send
from observer.alerts.message import compose
from observer.alerts.rules import Alert
from observer.alerts.secrets import Channel, read_channels, read_urls, redact
from observer.alerts.state import AlertLedger, StoredAlert, writing_on
from observer.config import Config
from observer.metrics.job_metrics import job_metrics_directory
from observer.model import ConfigError, Run, StoreError
from observer.native import name_thread
from observer.spans import human_duration
from observer.store import database
from observer.store.writer import AsyncStore

log = logging.getLogger(__name__)

T = TypeVar("T")
POLL_SECONDS = 5.0
# A run's last lines can reach the journal after its end: its output is judged this later.
OUTPUT_SETTLE_SECONDS = 2.0
SETTLE_USEC = int(OUTPUT_SETTLE_SECONDS * 1e6)
PRUNE_INTERVAL_SECONDS = 3600.0
_ERROR_BACKOFF_SECONDS = (1.0, 60.0)


Key = tuple[str, str]  # (host, unit)


def settled_units(
    ended: dict[Key, int],
    now_usec: int,
    settle_usec: int,
    waiting: Mapping[str, int] | None = None,
) -> tuple[dict[Key, int], float | None]:
    """Of units whose runs ended (the newest end of each), those settled by ``now_usec``:
    ended ``settle_usec`` ago or more, and that long before the earliest output line of
    their host still ``waiting`` for its run. Also the seconds until time alone settles
    the next of the others; None when none will (none left, or they wait for output)."""
    waiting = waiting or {}
    settled: dict[Key, int] = {}
    by_time: list[int] = []
    for key, end in ended.items():
        line_usec = waiting.get(key[0])
        if line_usec is not None and end + settle_usec > line_usec:
            continue  # a line of its host is not yet stored with its run: time changes nothing
        if end + settle_usec <= now_usec:
            settled[key] = end
        else:
            by_time.append(end)
    wait = (min(by_time) + settle_usec - now_usec) / 1e6 if by_time else None
    return settled, wait


class _Running:
    """An attempt past its time limit whose thread still runs: it may yet deliver."""

    def __init__(self, note: str, sending: asyncio.Future[str | None]) -> None:
        self.note = note
        self.sending = sending

    async def outcome(self) -> str | None:
        """What the attempt came to, once its thread ends."""
        return await self.sending


def now_usec() -> int:
    return time.time_ns() // 1000


def load_channels(
    config: Config, *, in_child: bool = True
) -> tuple[list[Channel], dict[str, list[Channel]]]:
    """The global channels and each [alerts.units] table's own; refuses URLs apprise cannot use.

    ``in_child``: apprise is asked in a child process (the daemon, which then loads apprise
    only when it first sends), else in this one (a command about to send anyway).
    """
    alerts = config.alerts
    global_channels = read_channels(alerts.channels)
    per_pattern = {
        unit.pattern: read_channels(unit.channels, f'alerts.units."{unit.pattern}"')
        for unit in alerts.units
        if unit.channels
    }
    placed = [(where, c) for where, cs in [("alerts", global_channels), *per_pattern.items()]
              for c in cs]  # fmt: skip
    urls = [channel.url for _, channel in placed]
    verdicts = send.check_urls_in_child(urls) if in_child else [send.check_url(u) for u in urls]
    for (where, channel), understood in zip(placed, verdicts, strict=True):
        if not understood:
            raise ConfigError(
                f"[{where}]: apprise does not understand the notification URL {channel.name} "
                "(see https://github.com/caronc/apprise/wiki for the URL of each service)"
            )
    return global_channels, per_pattern


def load_heartbeat(config: Config) -> str | None:
    """The heartbeat URL, if one is configured; only http and https are pinged."""
    urls = read_urls(config.alerts.heartbeat, "alerts.heartbeat")
    if not urls:
        return None
    if len(urls) > 1:
        raise ConfigError("alerts: heartbeat: expected one URL, found several")
    if urlsplit(urls[0]).scheme not in ("http", "https"):
        raise ConfigError(f"alerts: heartbeat URL {redact(urls[0])}: expected http:// or https://")
    return urls[0]


class AlertService:
    """One per daemon: ``runs_recorded`` is its hook, ``run`` its service."""

    def __init__(
        self,
        config: Config,
        db_path: Path,
        host: str,
        healthy: Callable[[], bool] = lambda: True,
        clock: Callable[[], int] = now_usec,
        store: AsyncStore | None = None,
        waiting_output: Callable[[], Mapping[str, int]] = dict,
    ) -> None:
        self.config = config
        # The daemon's one writer; None: this service writes with its own connection (tests).
        self.store = store
        self.alerts = config.alerts
        self.db_path = db_path
        self.host = host
        self.healthy = healthy
        self.clock = clock
        # By host, the time of the earliest output line read and not yet stored with its run
        # (the daemon's): runs that ended about then are judged once it is.
        self.waiting_output = waiting_output
        self.global_channels, self.unit_channels = load_channels(config)
        self.heartbeat_url = load_heartbeat(config)
        self.by_key = {c.key: c for c in self.global_channels}
        for channels in self.unit_channels.values():
            self.by_key.update((c.key, c) for c in channels)
        self._db_thread = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="observer-alerts", initializer=name_thread
        )
        self._conn: sqlite3.Connection | None = None
        self._ledger: AlertLedger | None = None
        # (host, unit) of recorded runs not yet judged: the newest end among them.
        self._ended: dict[Key, int] = {}
        self._judge_wanted = asyncio.Event()
        self._send_wanted = asyncio.Event()
        self._busy: set[int] = set()
        # Channels with an attempt still running (past its time limit, perhaps): none of
        # their deliveries is tried again until it ends, so a late success is not doubled
        # and a hung channel holds one thread, not one per attempt.
        self._sending: set[str] = set()
        self.alerts_made = 0
        self.attempts_failed = 0
        # The store's data_version when the last check began (None: check), and when time
        # alone next changes a judgement (on the service's thread only).
        self._checked_version: int | None = None
        self._next_check_usec: int | None = None

    def channels_for(self, unit: str) -> list[Channel]:
        """Where a unit's alerts go: its own table's channels, or the global ones."""
        entry = self.alerts.unit_table(unit)
        if entry is not None and entry.pattern in self.unit_channels:
            return self.unit_channels[entry.pattern]
        return self.global_channels

    # -- called on the event loop --------------------------------------------------------

    def runs_recorded(self, runs: list[Run]) -> None:
        """A hook of the daemon's: these runs ended; judge their units once settled."""
        now = self.clock()
        for run in runs:
            # A run stamped in the future (a clock stepped back) waits no longer than one
            # that ended now.
            ended = now if run.finished_usec is None else min(run.finished_usec, now)
            key = (run.host, run.unit)
            self._ended[key] = max(self._ended.get(key, ended), ended)
        self._judge_wanted.set()

    def daemon_changed(self) -> None:
        """A hook of the daemon's: it read or stored something; output a run waited for may
        be stored now."""
        if self._ended:
            self._judge_wanted.set()

    async def run(self) -> None:
        """A service of the daemon's: runs until cancelled."""
        try:
            await self._open_store()
            channels = [c.name for c in self.by_key.values()]
            log.info("alerts: sending to %s", ", ".join(channels) if channels else "no channel")
            async with asyncio.TaskGroup() as group:
                group.create_task(self._judge_loop())
                group.create_task(self._check_loop())
                group.create_task(self._deliver_loop(group))
                if self.heartbeat_url is not None:
                    group.create_task(self._heartbeat_loop(self.heartbeat_url))
        finally:
            await asyncio.shield(asyncio.get_running_loop().run_in_executor(
                self._db_thread, self._close
            ))  # fmt: skip
            self._db_thread.shutdown(wait=False)

    async def _open_store(self) -> None:
        delay = _ERROR_BACKOFF_SECONDS[0]
        while True:
            try:
                await self._db(self._open)
                return
            except Exception as e:  # the runs are still recorded: alerts wait for the store
                log.error("alerts: cannot open the store: %s (retrying in %.0fs)", e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _ERROR_BACKOFF_SECONDS[1])

    async def _judge_loop(self) -> None:
        """Judge each unit's recorded runs once they are settled (their last lines may still
        come): a run recorded while others wait is judged at its own time, not theirs."""
        delay = _ERROR_BACKOFF_SECONDS[0]
        while True:
            await self._judge_wanted.wait()
            waiting = self.waiting_output()
            units, wait = settled_units(self._ended, self.clock(), SETTLE_USEC, waiting)
            if not units:
                if wait is None:
                    self._judge_wanted.clear()  # set again by a run or the daemon's change
                else:
                    await asyncio.sleep(wait)
                continue
            for key in units:
                del self._ended[key]
            try:
                made = await self._db(self._judge_runs, set(units), waiting)
            except Exception as e:  # alerts never stop the recording: log, retry later
                names = ", ".join(f"{unit} on {host}" for host, unit in sorted(units))
                log.error("alerts: cannot judge runs of %s: %s (retrying)", names, e)
                for key, ended in units.items():
                    self._ended[key] = max(self._ended.get(key, ended), ended)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _ERROR_BACKOFF_SECONDS[1])
                continue
            delay = _ERROR_BACKOFF_SECONDS[0]
            self._made(made)

    async def _check_loop(self) -> None:
        last_prune, checked = 0.0, False
        while True:
            # First wait: after a restart, the runs that ended meanwhile are still being read
            # from the journal and the timers from the bus; judged too early, they look missed.
            await asyncio.sleep(self.alerts.check_interval)
            try:
                now = self.clock()
                wanted = await self._db(self._check_wanted, now)
                if wanted is not None:
                    made = await self._db(self._check, now, wanted, self.waiting_output())
                    self._made(made)
                    self._send_wanted.set()  # a silence's end may have released deliveries
                # Tests wait for this line: by then, what ended before now (less the settling
                # time) is judged, and what time alone makes as of now is made.
                log.debug("alerts: checked as of %d", now)
                if not checked:
                    checked = True
                    log.info("alerts: first check made")
                if time.monotonic() - last_prune > PRUNE_INTERVAL_SECONDS:
                    last_prune = time.monotonic()
                    await self._prune()
            except Exception as e:
                self._checked_version = None  # the whole check again at the next round
                log.error("alerts: cannot check schedules: %s (retrying)", e)

    async def _prune(self) -> None:
        days = self.config.retention.max_age_days
        if days:
            cutoff = self.clock() - days * 86400 * 1_000_000
            deleted = await self._write(lambda conn: outbox.prune_alerts(conn, cutoff))
            if deleted:
                log.info("alerts: deleted %d alerts older than %d days", deleted, days)

    def _made(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self.alerts_made += 1
            log.warning("alert: %s %s (%s)", alert.unit, alert.summary, alert.kind)
        if alerts:
            self._send_wanted.set()

    # -- delivery --------------------------------------------------------------------------

    async def _deliver_loop(self, group: asyncio.TaskGroup) -> None:
        """Start what is due, then sleep until the next delivery is due or one is added (a
        new alert, an attempt's end, a check that released held ones)."""
        while True:
            wait: float | None = None
            try:
                now = self.clock()
                due = await self._db(self._due, now, set(self._busy))
                for delivery in due:
                    if delivery.channel_key in self._sending:
                        continue
                    self._busy.add(delivery.id)
                    self._sending.add(delivery.channel_key)
                    group.create_task(self._deliver(delivery))
                next_usec = await self._db(lambda: outbox.next_due_usec(self._connection()))
                # One due now is under way (or its channel is): its end wakes this loop.
                if next_usec is not None and next_usec > now:
                    wait = (next_usec - now) / 1e6
            except Exception as e:
                log.error("alerts: cannot read pending deliveries: %s (retrying)", e)
                wait = POLL_SECONDS
            self._send_wanted.clear()
            # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if wait is None else max(wait, 0.05)):
                    await self._send_wanted.wait()

    async def _deliver(self, delivery: outbox.Delivery) -> None:
        try:
            await self._attempt(delivery)
        except Exception as e:
            log.error("alerts: cannot deliver alert %d: %s", delivery.alert.id, e)
            await asyncio.sleep(POLL_SECONDS)  # it stays pending: tried again
        finally:
            self._busy.discard(delivery.id)
            self._sending.discard(delivery.channel_key)
            self._send_wanted.set()

    async def _attempt(self, delivery: outbox.Delivery) -> None:
        channel = self.by_key.get(delivery.channel_key)
        started, clock_start = self.clock(), time.monotonic()
        attempts_left = self.alerts.max_attempts
        sent: str | _Running | None = "this channel is no longer configured"
        if channel is None:
            attempts_left = 0
        else:
            sent = await self._send(delivery.alert, channel)
        if isinstance(sent, _Running):
            # Shown as the attempt's error meanwhile; it is replaced by what the attempt
            # comes to once its thread ends (and only then is the delivery tried again).
            log.warning("alert %d to %s: %s", delivery.alert.id, delivery.channel, sent.note)
            await self._store_attempt(delivery, started, clock_start, sent.note, attempts_left)
            self._send_wanted.set()  # its retry's time is set: looked at then, not sent
            sent = await sent.outcome()
        error = sent
        status = await self._store_attempt(delivery, started, clock_start, error, attempts_left)
        attempt = delivery.attempts + 1
        if error is None:
            log.info("alert %d delivered to %s", delivery.alert.id, delivery.channel)
        else:
            self.attempts_failed += 1
            then = "will retry" if status == outbox.PENDING else "giving up"
            log.warning(
                "alert %d to %s: attempt %d failed, %s: %s",
                delivery.alert.id, delivery.channel, attempt, then, error,
            )  # fmt: skip

    async def _store_attempt(
        self,
        delivery: outbox.Delivery,
        started: int,
        clock_start: float,
        error: str | None,
        attempts_left: int,
    ) -> str:
        """Record the delivery's next attempt (again: the same one, as it ends late)."""
        duration = int((time.monotonic() - clock_start) * 1_000_000)
        return await self._write(
            lambda conn: outbox.record_attempt(
                conn, delivery, started, duration, error,
                max_attempts=attempts_left, retry_delay_usec=int(self.alerts.retry_delay * 1e6),
            )
        )  # fmt: skip

    async def _send(self, alert: StoredAlert, channel: Channel) -> str | _Running | None:
        """One attempt: compose the message from the store, send it within the time limit
        (past it: the attempt still running, its outcome unknown)."""
        host, lines = self.host, self.alerts.output_lines
        try:
            message = await self._db(lambda: compose(self._connection(), alert, host, lines))
        except (sqlite3.Error, StoreError):
            raise  # the store's trouble, not the channel's: the delivery stays pending
        except Exception as e:
            log.exception("alerts: cannot compose alert %d", alert.id)
            return f"cannot compose the message: {type(e).__name__}: {e}"
        timeout = self.alerts.send_timeout
        sending = asyncio.wrap_future(send.in_thread(send.notify, channel, message))
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(sending)
        except TimeoutError:
            note = (
                f"no answer within {human_duration(timeout)}: outcome unknown, not tried "
                "again while the attempt runs"
            )
            return _Running(note, sending)

    # -- heartbeat -------------------------------------------------------------------------

    async def _heartbeat_loop(self, url: str) -> None:
        interval = self.alerts.heartbeat_interval
        timeout = min(10.0, interval)
        failing = False
        while True:
            if self.healthy():
                try:
                    async with asyncio.timeout(timeout + 5):
                        error = await asyncio.wrap_future(send.in_thread(send.ping, url, timeout))
                except TimeoutError:
                    error = f"no answer within {human_duration(timeout)}"
                if error is not None and not failing:
                    log.warning("heartbeat to %s failed: %s", redact(url), error)
                elif error is None and failing:
                    log.info("heartbeat to %s works again", redact(url))
                failing = error is not None
            else:
                log.warning("heartbeat withheld: the daemon is not recording runs")
            await asyncio.sleep(interval)

    # -- the store, on this service's own thread ---------------------------------------------

    def _open(self) -> None:
        if self.store is None:
            self._conn = database.open_for_writing(self.db_path)
            self._conn.row_factory = sqlite3.Row
        else:
            self._conn = database.open_for_reading(self.db_path)
        database.service_connection(self._conn)
        configured = self.config.metrics.job_metrics_directory or self.config.run.metrics_dir
        self._ledger = AlertLedger(
            self._conn, self.alerts, self.channels_for, self.config.observe.observes,
            metrics_dir=job_metrics_directory(self.db_path, configured),
            settle_usec=SETTLE_USEC, host=self.host,
            write=None if self.store is None else self.store.transaction_from_thread,
        )  # fmt: skip
        # Alerting starts now, not at the first judgement: that waits a moment for output.
        self._ledger.since(self.clock())

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the alert store is not open")
        return self._conn

    def _ledger_(self) -> AlertLedger:
        if self._ledger is None:
            raise StoreError("the alert store is not open")
        return self._ledger

    def _judge_runs(self, units: set[Key], waiting: Mapping[str, int]) -> list[Alert]:
        return self._ledger_().judge_runs(self.clock(), units, waiting)

    def _check_wanted(self, now: int) -> bool | None:
        """Whether a check could make anything (None: not): True when the store changed
        since the last one began (any writer: a run, a timer, a silence, this service's own
        writes), False when time reached a deadline it left. An idle round is one PRAGMA."""
        version = int(self._connection().execute("PRAGMA data_version").fetchone()[0])
        changed, self._checked_version = version != self._checked_version, version
        deadline = self._next_check_usec
        if changed or (deadline is not None and now >= deadline):
            return changed
        return None

    def _check(self, now: int, store_changed: bool, waiting: Mapping[str, int]) -> list[Alert]:
        ledger = self._ledger_()
        made = ledger.check(now, waiting)
        deadline = ledger.next_check_usec
        if store_changed:
            # Runs that ended within the settling time were left for later: check again then.
            settled = now + SETTLE_USEC + 1
            deadline = settled if deadline is None else min(deadline, settled)
        self._next_check_usec = deadline
        return made

    def _due(self, now: int, busy: set[int]) -> list[outbox.Delivery]:
        return outbox.due_deliveries(self._connection(), now, busy)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """One transaction: through the daemon's writer, or on this service's connection."""
        if self.store is not None:
            return await self.store.transaction(fn)
        return await self._db(lambda: writing_on(self._connection())(fn))

    async def _db(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, fn, *args)
