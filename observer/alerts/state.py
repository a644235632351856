"""The alert rules applied to the store: each unit's state, its runs, its timers, and the root
causes of refused starts (the pure rules of observer/alerts/causes.py).

Everything here is synchronous and runs on the alert service's own thread. It reads with
its own connection and writes through ``write``: in the daemon, the store's one writer
(observer/store/writer.py), so that judging never holds the database's write lock while it
reads a run's evidence or a metrics file. The writes a judgement makes (a unit's new state,
the alerts it makes and their pending deliveries) are gathered and committed in one
transaction: after a crash either all of it is there or none of it is, and the runs are
judged again.
"""

from __future__ import annotations

import fnmatch
import socket
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Protocol, TypeVar

from observer.alert_config import AlertRules, AlertsConfig, parse_clock
from observer.alerts import causes, digest, digest_facts, evidence
from observer.alerts.findings import to_json
from observer.alerts.rules import (
    Alert,
    AlertKind,
    FinishedRun,
    TimerFacts,
    UnitAlertState,
    UnitFacts,
    judge_run,
    judge_schedule,
    next_schedule_change,
)
from observer.alerts.secrets import Channel
from observer.model import ProblemKind, is_success
from observer.reading.render import local_time
from observer.store import database, hosts, summary

# Runs that finished before alerting first started are history: they seed the counts.
SINCE_KEY = "alerts_since_usec"
# Deliveries wait this long for the last lines of output, which can trail a run's end.
DELIVERY_DELAY_USEC = 2_000_000
_AFTER_ALL_RUNS = 2**62
_BATCH = 500
# A delivery's status: to send (outbox.py sends it), or held by a silence until it ends.
PENDING, HELD = "pending", "held"
# The day (local, ISO) of the last daily digest recorded.
DIGEST_KEY = "alerts_digest_day"
# The "unit" of the digest: all of them (its deliveries go to the global channels).
DIGEST_UNIT = "*"
# Starts refused because a named unit failed (the index of failed runs serves the walk).
_REFUSED = (
    f"{summary.FAILED} AND {summary.ORDER_KEY} >= ? AND result = 'dependency' "
    "AND reason IS NOT NULL"
)
_REFUSALS_LIMIT = 10_000
# The newest refused start (order key, run ID) the root-cause pass has seen.
REFUSALS_KEY = "alerts_refusals_seen"
# Kept in alert_problems, one row per open problem, not in alert_state's columns.
_PROBLEM_FIELDS = {
    "rate_usec": ProblemKind.RATE,
    "slower_usec": ProblemKind.SLOWER,
    "cause_usec": ProblemKind.DEPENDENCY,
}
_STATE_FIELDS = [f.name for f in fields(UnitAlertState) if f.name not in _PROBLEM_FIELDS]
_STATE_COLUMNS = ", ".join(_STATE_FIELDS)


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """An alert as recorded, to deliver or to list."""

    id: int
    created_usec: int
    unit: str
    kind: str
    summary: str
    run_id: int | None
    host: str | None = None  # None: written before schema 7, of the daemon's own host


T = TypeVar("T")
# One write to make in the judgement's transaction.
Write = Callable[[sqlite3.Connection], object]


class Writer(Protocol):
    """Runs a function in one write transaction and returns what it returned."""

    def __call__(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...


def writing_on(conn: sqlite3.Connection) -> Writer:
    """A writer that writes with ``conn`` itself (the commands, the tests)."""

    def write(fn: Callable[[sqlite3.Connection], T]) -> T:
        with conn:
            return fn(conn)

    return write


# A unit on a host: alert state is kept per (host, unit) (schema 7), so that web1's failing
# backup.service and web2's healthy one are two alerts' business.
Key = tuple[str, str]


class AlertLedger:
    """Judges runs and schedules against the store and records what they make."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        config: AlertsConfig,
        channels_for: Callable[[str], Sequence[Channel]],
        observes: Callable[[str], bool] = lambda unit: True,
        metrics_dir: Path | None = None,
        settle_usec: int = 0,
        host: str | None = None,
        write: Writer | None = None,
    ) -> None:
        self.conn = conn  # reads only
        self.write = write or writing_on(conn)
        # The writes of the judgement under way (None: none is; each write commits alone).
        self._writes: list[Write] | None = None
        # The daemon's own host: its timers' units, and units named in the rules without runs
        # (None: the host of the newest run, as on a server's own database).
        self._host = host
        self.config = config
        self.channels_for = channels_for
        self.observes = observes
        self.metrics_dir = metrics_dir  # where jobs write $JOB_METRICS_FILE
        # Runs that ended this recently are judged later: their last lines may still come.
        self.settle_usec = settle_usec
        # After check(): when time alone next changes a judgement (a missed run, a stale
        # unit, a reminder, the digest, a silence's end); None: never, the store unchanged.
        self.next_check_usec: int | None = None

    def since(self, now_usec: int) -> int:
        """When alerting first started on this database (set now if it never did)."""
        row = self.conn.execute("SELECT value FROM state WHERE key = ?", (SINCE_KEY,)).fetchone()
        if row is not None:
            return int(row[0])

        def first_start(conn: sqlite3.Connection) -> int:
            conn.execute(
                "INSERT OR IGNORE INTO state (key, value) VALUES (?, ?)", (SINCE_KEY, now_usec)
            )
            row = conn.execute("SELECT value FROM state WHERE key = ?", (SINCE_KEY,))
            return int(row.fetchone()[0])

        return self.write(first_start)

    @contextmanager
    def _judgement(self) -> Iterator[None]:
        """Gather the writes made inside into one transaction, committed at the end (none
        if it raises)."""
        assert self._writes is None, "judgements do not nest"
        writes: list[Write] = []
        self._writes = writes
        try:
            yield
        finally:
            self._writes = None
        if writes:
            self.write(lambda conn: [write(conn) for write in writes])

    def _later(self, write: Write) -> None:
        """Make ``write`` in the judgement under way, or at once in its own transaction."""
        if self._writes is None:
            self.write(write)
        else:
            self._writes.append(write)

    def _execute(self, sql: str, parameters: Sequence[object] = ()) -> None:
        self._later(lambda conn: conn.execute(sql, parameters))

    def _executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        rows = list(rows)
        if rows:
            self._later(lambda conn: conn.executemany(sql, rows))

    def judge_runs(
        self,
        now_usec: int,
        units: Iterable[str | Key] | None = None,
        waiting: Mapping[str, int] | None = None,
    ) -> list[Alert]:
        """Judge the runs that no judgement has seen of ``units``: (host, unit) keys, or unit
        names (on each host with runs of it); default: of every unit on every host.

        A run is judged once it ended the settling time ago, and by then before the earliest
        output line of its host still ``waiting`` for its run (by host): that line may be
        the run's last."""
        since = self.since(now_usec)
        if units is None:
            # A unit's latest end is one index seek: the cost follows units, not runs.
            keys = [
                (str(row[0]), str(row[1]))
                for row in self.conn.execute(
                    "SELECT u.host, u.unit FROM unit_summary u LEFT JOIN alert_state s "
                    "ON s.unit = u.unit AND s.host = u.host "
                    "WHERE (SELECT MAX(r.finished_usec) FROM runs r INDEXED BY "
                    "runs_by_unit_host_end WHERE r.unit = u.unit AND r.host = u.host) "
                    ">= COALESCE(s.seen_finished_usec, ?)",
                    (since,),
                )
            ]
        else:
            keys = [key for unit in units for key in self._keys_of(unit)]
        # Refusals first: the failed unit's own failing alert is folded into theirs.
        alerts = self._judge_refusals(since, now_usec)
        for key in sorted(set(keys)):
            until = now_usec
            if waiting is not None and key[0] in waiting:
                until = min(until, waiting[key[0]])
            alerts += self._judge_unit_runs(key, since, now_usec, until - self.settle_usec)
        return alerts + self._judge_returns(since, now_usec)

    @property
    def host(self) -> str:
        return self._host or hosts.newest_host(self.conn) or socket.gethostname()

    def _keys_of(self, unit: str | Key) -> list[Key]:
        """A (host, unit) key as it is; a unit name as the keys of every host with its runs."""
        if not isinstance(unit, str):
            return [unit]
        rows = self.conn.execute("SELECT host FROM unit_summary WHERE unit = ?", (unit,))
        return [(str(row[0]), unit) for row in rows] or [(self.host, unit)]

    def check(self, now_usec: int, waiting: Mapping[str, int] | None = None) -> list[Alert]:
        """Judge new runs (``judge_runs``), then what time alone makes: missed, stale,
        overdue, reminders; release what ended silences held."""
        self.release_held(now_usec)
        alerts = self.judge_runs(now_usec, waiting=waiting)
        since = self.since(now_usec)
        keys = {(row[0], row[1]) for row in self.conn.execute("SELECT host, unit FROM alert_state")}
        keys.update(
            (self.host, row[0]) for row in self.conn.execute("SELECT DISTINCT service FROM timers")
        )
        for named in self.config.units:  # a rule of a unit applies on every host
            if not set("*?[") & set(named.pattern):
                keys.update(self._keys_of(named.pattern))
        # Every unit's facts in three reads; a unit whose judgement changes nothing costs no
        # write, so an idle pass is these reads and the pure rules.
        problems: dict[Key, dict[str, int]] = {}
        for unit, host, kind, opened in self.conn.execute(
            "SELECT unit, host, kind, opened_usec FROM alert_problems"
        ):
            problems.setdefault((host, unit), {})[kind] = opened
        states = {}
        for host, *row in self.conn.execute(f"SELECT host, {_STATE_COLUMNS} FROM alert_state"):
            states[host, row[0]] = _state_of(row, problems.get((host, row[0]), {}))
        facts = self._all_facts(since)
        configured = {u.pattern for u in self.config.units}
        deadlines = [self._next_digest_usec(now_usec), self._held_until_usec(now_usec)]
        for key in sorted(keys):
            unit = key[1]
            if not self.observes(unit):
                continue
            if key not in facts and unit not in configured:
                continue  # no run, no timer: a mount that took units down, say
            with self._judgement():
                known = states.get(key)
                state = known or self.unit_state(key, since, now_usec)
                unit_facts = facts.get(key) or UnitFacts(watched_since_usec=since)
                rules = self.config.rules_for(unit)
                new_state, made = judge_schedule(state, unit_facts, rules, now_usec)
                if known is None or new_state != state or made:
                    self.record(key[0], state, new_state, made, now_usec)
            alerts += made
            deadlines.append(next_schedule_change(new_state, unit_facts, rules, now_usec))
        self.next_check_usec = min((d for d in deadlines if d is not None), default=None)
        return alerts + self.digest(now_usec)

    def _next_digest_usec(self, now_usec: int) -> int | None:
        """The next time of day the digest is due at, after ``now_usec`` (local time)."""
        if not self.config.digest_at:
            return None
        at, now = parse_clock(self.config.digest_at), local_time(now_usec)
        day = now.date()
        while (due := datetime.combine(day, at).astimezone()) <= now:
            day += timedelta(days=1)
        return int(due.timestamp()) * 1_000_000

    def _held_until_usec(self, now_usec: int) -> int | None:
        """When the first silence in force ends, if it holds deliveries (or might)."""
        held = self.conn.execute(
            "SELECT 1 FROM alert_deliveries WHERE status = ? LIMIT 1", (HELD,)
        ).fetchone()
        if held is None:
            return None
        row = self.conn.execute(
            "SELECT MIN(until_usec) FROM alert_silences WHERE until_usec > ?", (now_usec,)
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def digest(self, now_usec: int) -> list[Alert]:
        """The daily digest, if it is due and not recorded yet today (local time)."""
        if not self.config.digest_at:
            return []
        row = self.conn.execute("SELECT value FROM state WHERE key = ?", (DIGEST_KEY,)).fetchone()
        last = None if row is None else date.fromisoformat(str(row[0]))
        day = digest.due_day(parse_clock(self.config.digest_at), last, local_time(now_usec))
        if day is None:
            return []
        summary_ = digest.title(digest_facts.read(self.conn, "", now_usec))
        alert = Alert(DIGEST_UNIT, AlertKind.DIGEST, summary_)
        with self._judgement():
            self.add_alert(alert, now_usec)
            self._execute(
                "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                (DIGEST_KEY, day.isoformat()),
            )
        return [alert]

    # -- root causes: starts refused because a named unit failed (alerts/causes.py) --------
    # A failed unit is a unit on a host: on a central database web1's failed mount took down
    # web1's jobs, not web2's. One transaction per failed unit.

    def _judge_refusals(self, since: int, now_usec: int) -> list[Alert]:
        """Starts refused because a named unit failed, not seen yet: the failed unit's alert.

        Read as recorded, without waiting for output (a refusal has none), so that they are
        known before the failed unit's own run is judged.
        """
        row = self.conn.execute("SELECT value FROM state WHERE key = ?", (REFUSALS_KEY,))
        seen = row.fetchone()
        mark_usec, mark_id = (since, 0) if seen is None else map(int, str(seen[0]).split(":"))
        by_cause: dict[Key, list[causes.Refusal]] = {}
        for run_id, host, unit, cause, at in self.conn.execute(
            f"SELECT id, host, unit, reason, {summary.ORDER_KEY} FROM runs INDEXED BY "
            f"failed_by_order WHERE {_REFUSED} ORDER BY {summary.ORDER_KEY}, id LIMIT ?",
            (mark_usec, _REFUSALS_LIMIT),
        ).fetchall():
            if (at, run_id) > (mark_usec, mark_id) and self.observes(unit):
                refusal = causes.Refusal(run_id, unit, cause, at)
                by_cause.setdefault((host, cause), []).append(refusal)
            mark_usec, mark_id = max((mark_usec, mark_id), (at, run_id))
        alerts: list[Alert] = []
        mark = f"{mark_usec}:{mark_id}"
        with self._judgement():
            for key, refusals in sorted(by_cause.items()):
                alerts += self._judge_cause(key, refusals, since, now_usec)
            if seen is None or str(seen[0]) != mark:  # an idle check writes nothing
                self._execute(
                    "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (REFUSALS_KEY, mark)
                )
        return alerts

    def _judge_cause(
        self, key: Key, refusals: list[causes.Refusal], since: int, now_usec: int
    ) -> list[Alert]:
        """The refusals ``key``'s failure caused, judged and recorded (in the caller's
        transaction)."""
        host, cause = key
        state = self.unit_state(key, since, now_usec)
        failed = self.conn.execute(
            "SELECT id, result FROM runs INDEXED BY runs_by_unit_host_end "
            "WHERE unit = ? AND host = ? AND finished_usec <= ? "
            "ORDER BY finished_usec DESC LIMIT 1",
            (cause, host, refusals[0].at_usec),
        ).fetchone()
        cause_run = None if failed is None or is_success(failed[1]) else failed[0]
        rules = self.config.rules_for(cause)
        after, made = causes.judge_refusals(state, refusals, rules, now_usec, cause_run)
        self.record(host, state, after, made, now_usec)
        return made

    def _judge_returns(self, since: int, now_usec: int) -> list[Alert]:
        """A failed unit without runs of its own is back when a unit it took down starts."""
        alerts: list[Alert] = []
        for cause, host in self.conn.execute(
            "SELECT p.unit, p.host FROM alert_problems p WHERE p.kind = 'dependency' "
            "AND NOT EXISTS (SELECT 1 FROM unit_summary u WHERE u.unit = p.unit "
            "AND u.host = p.host)"
        ).fetchall():
            with self._judgement():
                state = self.unit_state((host, cause), since, now_usec)
                down = self._took_down(host, state)
                returned = self._first_return(host, down)
                rules = self.config.rules_for(cause)
                after, made = causes.judge_return(state, returned, sorted(down), rules)
                self.record(host, state, after, made, now_usec)
            alerts += made
        return alerts

    def _first_return(self, host: str, down: dict[str, int]) -> causes.Return | None:
        """The first start on ``host`` of a unit taken down, after its last refusal."""
        returned = None
        for unit, last_refused in down.items():
            row = self.conn.execute(
                f"SELECT id, {summary.ORDER_KEY} FROM runs INDEXED BY "
                f"runs_by_unit_host_order WHERE unit = ? AND host = ? "
                f"AND {summary.ORDER_KEY} > ? AND invocation_id IS NOT NULL "
                f"ORDER BY {summary.ORDER_KEY} LIMIT 1",
                (unit, host, last_refused),
            ).fetchone()
            if row is not None and (returned is None or row[1] < returned.at_usec):
                returned = causes.Return(row[0], unit, row[1])
        return returned

    def _took_down(self, host: str, state: UnitAlertState) -> dict[str, int]:
        """The units of ``host`` whose starts were refused because ``state.unit`` failed,
        since its problem opened, with the time of each one's last refusal."""
        down: dict[str, int] = {}
        for unit, at in self.conn.execute(
            f"SELECT unit, {summary.ORDER_KEY} FROM runs INDEXED BY failed_by_order "
            f"WHERE {_REFUSED} AND reason = ? AND host = ? LIMIT ?",
            (state.cause_usec or 0, state.unit, host, _REFUSALS_LIMIT),
        ):
            down[unit] = max(at, down.get(unit, at))
        return down

    # -- reading and writing ---------------------------------------------------------------

    def _judge_unit_runs(
        self, key: Key, since: int, now_usec: int, ended_by_usec: int
    ) -> list[Alert]:
        alerts: list[Alert] = []
        host, unit = key
        rules = self.config.rules_for(unit)
        while True:
            # Evidence and metric files are read outside any write transaction: the
            # judgement's writes are committed together at its end, through the one writer.
            with self._judgement():
                state = before = self.unit_state(key, since, now_usec)
                runs = self._unjudged_runs(host, state, ended_by_usec)
                took_down: Sequence[str] = ()
                if state.cause_usec is not None:
                    took_down = sorted(self._took_down(host, state))
                made: list[Alert] = []
                for unjudged in runs:
                    recent = evidence.recent_successes(
                        self.conn, unit, unjudged, rules.slow_window, host
                    )
                    run = self._with_findings(key, unjudged, rules, recent)
                    rate = None
                    if rules.failure_rate:
                        window = int(rules.rate_window * 1e6)
                        rate = evidence.failure_rate(self.conn, unit, run, window, host)
                    state, judged = judge_run(
                        state, run, rules, recent[0], now_usec, rate, took_down
                    )
                    made += judged
                self.record(host, before, state, made, now_usec)
            alerts += made
            if len(runs) < _BATCH:
                return alerts

    def _with_findings(
        self,
        key: Key,
        run: FinishedRun,
        rules: AlertRules,
        recent: tuple[list[float], list[int]],
    ) -> FinishedRun:
        """The run with its findings, which are stored with it."""
        if run.folded:
            return run
        host, unit = key
        found = evidence.run_findings(self.conn, unit, run, rules, recent, self.metrics_dir, host)
        run = replace(run, findings=tuple(found))
        if found:
            fails = run.succeeded and run.failed(rules)
            row = (run.id, to_json(found), int(fails or not run.succeeded))

            def store(conn: sqlite3.Connection) -> None:
                conn.execute(
                    "INSERT OR REPLACE INTO run_findings (run_id, findings, fails) "
                    "VALUES (?, ?, ?)",
                    row,
                )
                database.note_changed(conn, [unit])

            # Committed at once, not with the judgement: the next run's failure rate reads
            # it. Stored again alike if the judgement is made again after a crash.
            self.write(store)
        return run

    def unit_state(self, key: Key, since: int, now_usec: int) -> UnitAlertState:
        host, unit = key
        row = self.conn.execute(
            f"SELECT {_STATE_COLUMNS} FROM alert_state WHERE unit = ? AND host = ?", (unit, host)
        ).fetchone()
        opened = self.conn.execute(
            "SELECT kind, opened_usec FROM alert_problems WHERE unit = ? AND host = ?",
            (unit, host),
        )
        problems = dict(opened.fetchall())
        if row is not None:
            return _state_of(row, problems)
        # First sight: runs that ended before alerting started count, but alert nobody.
        rows = self.conn.execute(
            "SELECT finished_usec, result FROM runs INDEXED BY runs_by_unit_host_end "
            "WHERE unit = ? AND host = ? AND finished_usec <= ? "
            "ORDER BY finished_usec DESC, id DESC LIMIT 1000",
            (unit, host, since),
        )
        failures, last_success = summary.failure_streak(rows)
        fresh = UnitAlertState(
            unit,
            first_seen_usec=now_usec,
            failures=failures,
            last_success_usec=last_success,
            seen_finished_usec=since,
            seen_run_id=_AFTER_ALL_RUNS,
        )
        return _with_problems(fresh, problems)

    def _unjudged_runs(
        self, host: str, state: UnitAlertState, until_usec: int
    ) -> list[FinishedRun]:
        rows = self.conn.execute(
            "SELECT id, invocation_id, started_usec, finished_usec, result, reason FROM runs "
            "INDEXED BY runs_by_unit_host_end WHERE unit = ? AND host = ? "
            "AND finished_usec IS NOT NULL AND finished_usec <= ? "
            "AND (finished_usec > ? OR (finished_usec = ? AND id > ?)) "
            "ORDER BY finished_usec, id LIMIT ?",
            (state.unit, host, until_usec, state.seen_finished_usec, state.seen_finished_usec,
             state.seen_run_id, _BATCH),
        )  # fmt: skip
        return [
            FinishedRun(
                run_id, invocation, started, finished, is_success(result), result,
                cause=reason if result == "dependency" else None,
            )
            for run_id, invocation, started, finished, result, reason in rows
        ]  # fmt: skip

    def _all_facts(self, since: int) -> dict[Key, UnitFacts]:
        """The facts of every (host, unit) with runs, and of the daemon's host's units with a
        timer, from the kept unit summaries."""
        timers: dict[str, list[TimerFacts]] = {}
        for service, *timer in self.conn.execute(
            "SELECT service, timer, next_elapse_usec, last_trigger_usec FROM timers ORDER BY timer"
        ):
            timers.setdefault(service, []).append(TimerFacts(*timer))
        own = self.host
        facts = {
            (own, unit): UnitFacts(timers=tuple(t), watched_since_usec=since)
            for unit, t in timers.items()
        }
        for host, unit, run_id, started, finished, invocation in self.conn.execute(
            "SELECT u.host, u.unit, r.id, r.started_usec, r.finished_usec, r.invocation_id "
            "FROM unit_summary u JOIN runs r ON r.id = u.newest_run_id"
        ):
            mine = tuple(timers.get(unit, ())) if host == own else ()
            facts[host, unit] = UnitFacts(run_id, started, finished, invocation, mine, since)
        return facts

    def record(
        self,
        host: str,
        before: UnitAlertState,
        after: UnitAlertState,
        alerts: list[Alert],
        now_usec: int,
    ) -> None:
        """Save a unit's state on ``host`` (if it changed, or is new) and its alerts with
        deliveries."""
        key = (after.unit, host)
        exists = self.conn.execute("SELECT 1 FROM alert_state WHERE unit = ? AND host = ?", key)
        if _opened(after) != _opened(before):
            # The dashboard shows open problems.
            self._later(lambda conn: database.note_changed(conn, [after.unit]))
        if after != before or exists.fetchone() is None:
            self._execute(
                f"INSERT OR REPLACE INTO alert_state (host, {_STATE_COLUMNS}) "
                f"VALUES ({', '.join('?' * (1 + len(_STATE_FIELDS)))})",
                [host, *(getattr(after, name) for name in _STATE_FIELDS)],
            )
            for name, kind in _PROBLEM_FIELDS.items():
                opened = getattr(after, name)
                if opened is None:
                    self._execute(
                        "DELETE FROM alert_problems WHERE unit = ? AND host = ? AND kind = ?",
                        (*key, kind),
                    )
                else:
                    self._execute(
                        "INSERT OR REPLACE INTO alert_problems (unit, host, kind, opened_usec) "
                        "VALUES (?, ?, ?, ?)",
                        (*key, kind, opened),
                    )
        for alert in alerts:
            self.add_alert(alert, now_usec, host)

    def add_alert(self, alert: Alert, now_usec: int, host: str | None = None) -> None:
        """Record an alert about ``alert.unit`` on ``host`` (default: the daemon's) and a
        pending delivery to each of its unit's channels."""
        row = (now_usec, alert.unit, str(alert.kind), alert.summary, alert.run_id,
               self.host if host is None else host)  # fmt: skip
        silenced = self.silenced(alert.unit, now_usec)
        # Held while a silence holds the unit: release_held tells it when the silence ends.
        status = PENDING if silenced is None else HELD
        due = now_usec + DELIVERY_DELAY_USEC if silenced is None else None
        channels = [(channel.name, channel.key) for channel in self.channels_for(alert.unit)]

        def insert(conn: sqlite3.Connection) -> None:
            alert_id = conn.execute(
                "INSERT INTO alerts (created_usec, unit, kind, summary, run_id, host) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                row,
            ).lastrowid
            conn.executemany(
                "INSERT OR IGNORE INTO alert_deliveries (alert_id, channel, channel_key, "
                "status, attempts, next_attempt_usec) VALUES (?, ?, ?, ?, 0, ?)",
                [(alert_id, name, key, status, due) for name, key in channels],
            )

        self._later(insert)

    def release_held(self, now_usec: int) -> int:
        """Deliveries held by a silence that has ended (or was ended) are due now."""
        released = []
        for delivery_id, unit in self.conn.execute(
            "SELECT d.id, a.unit FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id "
            "WHERE d.status = ?",
            (HELD,),
        ).fetchall():
            if self.silenced(unit, now_usec) is None:
                released.append((PENDING, now_usec, delivery_id))
        self._executemany(
            "UPDATE alert_deliveries SET status = ?, next_attempt_usec = ? WHERE id = ?", released
        )
        return len(released)

    def silenced(self, unit: str, now_usec: int) -> int | None:
        """The ID of a silence that holds ``unit``'s alerts now, if any does."""
        return active_silence(self.conn, unit, now_usec)


def active_silence(conn: sqlite3.Connection, unit: str, now_usec: int) -> int | None:
    """The ID of the newest silence of ``unit`` (by name or glob) in force at ``now_usec``."""
    for silence_id, pattern in conn.execute(
        "SELECT id, pattern FROM alert_silences WHERE until_usec > ? AND created_usec <= ? "
        "ORDER BY id DESC",
        (now_usec, now_usec),
    ):
        if pattern == unit or fnmatch.fnmatchcase(unit, pattern):
            return int(silence_id)
    return None


def _state_of(row: Sequence[object], problems: dict[str, int]) -> UnitAlertState:
    """A unit's state from its alert_state row and its alert_problems rows."""
    state = UnitAlertState(**dict(zip(_STATE_FIELDS, row, strict=True)))  # type: ignore[arg-type]
    return _with_problems(state, problems)


def _opened(state: UnitAlertState) -> tuple[bool, ...]:
    """Which of a unit's problems are open (what readers show of its alert state)."""
    names = ("failing_usec", "missed_usec", "stale_usec", *_PROBLEM_FIELDS)
    return tuple(getattr(state, name) is not None for name in names)


def _with_problems(state: UnitAlertState, problems: dict[str, int]) -> UnitAlertState:
    opened = {name: problems.get(kind) for name, kind in _PROBLEM_FIELDS.items()}
    return replace(state, **opened)  # type: ignore[arg-type]
