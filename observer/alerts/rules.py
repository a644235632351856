"""The alert rules as pure functions: ``(state, what happened, rules, now) -> (state, alerts)``.

No I/O and no clock: the caller reads the store, passes ``now`` and saves the new state and
the alerts in one transaction, so a restart neither forgets a count nor sends twice.

A unit has three problems that stay open until a run succeeds: failing (N runs in a row),
missed (a timer fired or was due and no run started) and stale (no success for too long).
Each sends one alert when it opens, reminders only if configured, and the first success
afterwards sends one recovery. Slow, too fast and overdue are about one run each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from observer.alert_config import AlertRules
from observer.alerts.findings import Finding, FindingKind, too_fast
from observer.model import ProblemKind, is_skipped, run_duration_seconds
from observer.reading.render import local_time
from observer.spans import human_duration
from observer.store.summary import percentile

USEC = 1_000_000
# A run that starts this long before the trigger time it is compared with still counts.
TRIGGER_SLACK_USEC = 2 * USEC
# A run must exceed the recent p95 by this much too before it is slow: 30ms against a p95
# of 5ms is no news.
SLOW_MIN_EXCESS_SECONDS = 1.0


class AlertKind(StrEnum):
    """What an alert is about."""

    FAILING = ProblemKind.FAILING
    RECOVERED = "recovered"
    MISSED = ProblemKind.MISSED
    STALE = ProblemKind.STALE
    SLOW = "slow"
    FAST = "fast"
    OVERDUE = "overdue"
    REMINDER = "reminder"
    RATE = ProblemKind.RATE
    SLOWER = ProblemKind.SLOWER
    DEPENDENCY = ProblemKind.DEPENDENCY
    TEST = "test"
    DIGEST = "digest"  # the daily digest (observer/alerts/digest.py), about every unit

    @property
    def is_problem(self) -> bool:
        return self not in (AlertKind.RECOVERED, AlertKind.TEST, AlertKind.DIGEST)


@dataclass(frozen=True, slots=True)
class UnitAlertState:
    """What the alert rules remember about one unit between runs (and daemon restarts)."""

    unit: str
    first_seen_usec: int  # when alerting began to watch the unit: older triggers are history
    failures: int = 0  # failed runs in a row
    failing_usec: int | None = None  # when the alert about this streak went out
    missed_usec: int | None = None  # the trigger time of the missed run alerted about
    awaited_usec: int | None = None  # the oldest time a timer fired (or was due) with no run yet
    stale_usec: int | None = None  # when the alert about no success went out
    notified_usec: int | None = None  # the last alert or reminder about an open problem
    last_success_usec: int | None = None
    seen_finished_usec: int = 0  # the newest run judged, by (finish time, run ID)
    seen_run_id: int = 0
    overdue_invocation: str | None = None  # a run alerted about while still running
    # Problems that a success alone does not end (kept in alert_problems, not alert_state):
    rate_usec: int | None = None  # when the alert about the failure rate went out
    slower_usec: int | None = None  # when the alert about the duration trend went out
    # The first start of another unit refused because this one failed (observer/alerts/causes):
    # open until it is back; its own failing alert is folded into that one.
    cause_usec: int | None = None

    @property
    def open_problems(self) -> bool:
        opened = (self.failing_usec, self.missed_usec, self.stale_usec, self.cause_usec)
        return any(t is not None for t in opened)


@dataclass(frozen=True, slots=True)
class FinishedRun:
    """What the rules need to know about one finished run."""

    id: int
    invocation_id: str | None  # None for a start systemd refused or skipped
    started_usec: int | None
    finished_usec: int
    succeeded: bool
    result: str | None
    findings: tuple[Finding, ...] = ()
    # The unit whose failure refused this start (result "dependency"): its alert is the one.
    cause: str | None = None

    @property
    def folded(self) -> bool:
        """Refused because a named unit failed: that unit's alert tells it. A refusal whose
        cause is unknown is a failure of its own: someone has to hear of it."""
        return self.result == "dependency" and self.cause is not None

    def failed(self, rules: AlertRules) -> bool:
        """Failed, or (``findings_fail``) succeeded with findings other than a slow trend."""
        if not self.succeeded:
            return True
        return rules.findings_fail and any(f.kind != FindingKind.SLOWER for f in self.findings)

    @property
    def duration_seconds(self) -> float | None:
        return run_duration_seconds(self.started_usec, self.finished_usec)


@dataclass(frozen=True, slots=True)
class TimerFacts:
    """One timer that starts the unit, as the daemon last saw it on the bus."""

    timer: str
    next_elapse_usec: int | None
    last_trigger_usec: int | None


@dataclass(frozen=True, slots=True)
class UnitFacts:
    """What the store says about a unit now, for the checks that need no new run."""

    newest_run_id: int | None = None
    newest_started_usec: int | None = None
    newest_finished_usec: int | None = None  # None while the newest run is running
    newest_invocation: str | None = None
    timers: tuple[TimerFacts, ...] = ()
    # When alerting began on this database: a timer's due times before it are history (the
    # runs of that time may be pruned, or were never recorded).
    watched_since_usec: int = 0

    @property
    def running(self) -> bool:
        return self.newest_run_id is not None and self.newest_finished_usec is None


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert to record and deliver; ``summary`` is a sentence about the unit."""

    unit: str
    kind: AlertKind
    summary: str
    run_id: int | None = None


def judge_run(
    state: UnitAlertState,
    run: FinishedRun,
    rules: AlertRules,
    recent_success_seconds: Sequence[float],
    now_usec: int,
    rate: tuple[int, int] | None = None,
    took_down: Sequence[str] = (),
) -> tuple[UnitAlertState, list[Alert]]:
    """A run finished: count failures, open or close problems, and judge its duration.

    ``recent_success_seconds``: durations of the unit's successful runs before this one,
    newest first. ``rate``: (failed, all) finished runs in ``rate_window`` up to this one.
    ``took_down``: the units whose starts were refused because this one failed, while
    that is open (``state.cause_usec``). A run makes at most one alert: failing, recovered,
    slow, too fast, failure rate, slower.
    """
    state = replace(state, seen_finished_usec=run.finished_usec, seen_run_id=run.id)
    was_overdue = run.invocation_id is not None and state.overdue_invocation == run.invocation_id
    if was_overdue:
        state = replace(state, overdue_invocation=None)
    if is_skipped(run.result):
        # A start skipped by a condition is neither a success nor a failure; it answers
        # its timer all the same (no missed-run alert), being a run of its own.
        return state, []
    if run.folded:
        return state, []  # refused because another unit failed: neither, here
    if run.failed(rules):
        state, alerts = _after_failure(state, run, rules, now_usec)
    else:
        state, alerts = _after_success(state, run, rules, took_down)
    if not alerts and rules.enabled and not was_overdue:
        duration = _duration_alert(state.unit, run, rules, recent_success_seconds)
        if duration is not None:
            alerts.append(duration)
    state, trends = _trends(state, run, rules, rate, now_usec, quiet=bool(alerts))
    return state, alerts + trends


def _after_success(
    state: UnitAlertState, run: FinishedRun, rules: AlertRules, took_down: Sequence[str]
) -> tuple[UnitAlertState, list[Alert]]:
    """A run that did not fail: it recovers what was open, and every count starts again."""
    alerts: list[Alert] = []
    if state.open_problems and rules.enabled:
        summary = _recovery(state, run, took_down)
        alerts.append(Alert(state.unit, AlertKind.RECOVERED, summary, run.id))
    state = replace(
        state,
        failures=0,
        failing_usec=None,
        missed_usec=None,
        awaited_usec=None,
        stale_usec=None,
        notified_usec=None,
        last_success_usec=run.finished_usec,
        cause_usec=None,
    )
    return state, alerts


def _after_failure(
    state: UnitAlertState, run: FinishedRun, rules: AlertRules, now_usec: int
) -> tuple[UnitAlertState, list[Alert]]:
    """A failed run: counted, and the unit is failing once the count reaches the rule's."""
    alerts: list[Alert] = []
    if run.succeeded:  # with findings: it still ran, so it is no missed or stale run
        state = replace(state, missed_usec=None, awaited_usec=None, stale_usec=None)
    state = replace(state, failures=state.failures + 1)
    reached = rules.failures and state.failures >= rules.failures
    if rules.enabled and reached and state.failing_usec is None:
        if state.cause_usec is None:
            alerts.append(Alert(state.unit, AlertKind.FAILING, _failing(state, run), run.id))
        # else folded: the alert about the units it took down told its failure
        state = replace(state, failing_usec=now_usec, notified_usec=now_usec)
    return state, alerts


def _trends(
    state: UnitAlertState,
    run: FinishedRun,
    rules: AlertRules,
    rate: tuple[int, int] | None,
    now_usec: int,
    *,
    quiet: bool,
) -> tuple[UnitAlertState, list[Alert]]:
    """The failure rate and the duration trend: problems of many runs, opened and closed as
    runs come, at most one alert a run (``quiet``: the run made one already; the next run
    tells the change, if it still holds)."""
    if quiet:
        return state, []
    high = (
        rules.failure_rate > 0
        and rate is not None
        and rate[1] >= rules.rate_min_runs
        and rate[0] / rate[1] >= rules.failure_rate
    )
    # Closed only at half the limit: a rate just around it would open and close by turns.
    low = rate is not None and (not rate[1] or rate[0] / rate[1] < rules.failure_rate / 2)
    if rate is not None and state.rate_usec is not None and low:
        summary = f"fails less often again: {rate[0]} of {rate[1]} runs in {_window(rules)}"
        alert = Alert(state.unit, AlertKind.RECOVERED, summary, run.id)
        return replace(state, rate_usec=None), [alert] if rules.enabled else []
    if high and rate is not None and state.rate_usec is None and rules.enabled:
        summary = (
            f"failed {rate[0]} of its {rate[1]} runs in {_window(rules)} "
            f"({rate[0] / rate[1]:.0%}, limit {rules.failure_rate:.0%})"
        )
        alert = Alert(state.unit, AlertKind.RATE, summary, run.id)
        return replace(state, rate_usec=now_usec), [alert]
    slower = next((f for f in run.findings if f.kind == FindingKind.SLOWER), None)
    if run.succeeded and slower is None and state.slower_usec is not None:
        summary = "no longer runs slower than in the 30 days before"
        alert = Alert(state.unit, AlertKind.RECOVERED, summary, run.id)
        return replace(state, slower_usec=None), [alert] if rules.enabled else []
    if slower is not None and state.slower_usec is None and rules.enabled:
        alert = Alert(state.unit, AlertKind.SLOWER, slower.message, run.id)
        return replace(state, slower_usec=now_usec), [alert]
    return state, []


def _window(rules: AlertRules) -> str:
    hours = rules.rate_window / 3600
    if hours.is_integer() and hours <= 72:
        return f"the last {hours:.0f}h"  # "24h" reads better than "1d00h"
    return f"the last {human_duration(rules.rate_window)}"


def judge_schedule(
    state: UnitAlertState, facts: UnitFacts, rules: AlertRules, now_usec: int
) -> tuple[UnitAlertState, list[Alert]]:
    """Time passed: a missed timer run, no success for too long, a run that overstays, or
    a reminder about a problem still open."""
    if not rules.enabled:
        return state, []
    alerts: list[Alert] = []
    if rules.missed_grace and state.missed_usec is None:
        # Remembered, not read from the timer: one that fires more often than the grace
        # period has moved on to its next trigger by the time the grace period is over.
        awaited = _awaited(state, facts, now_usec)
        state = replace(state, awaited_usec=awaited)
        if awaited is not None and now_usec - awaited > rules.missed_grace * USEC:
            timers = ", ".join(t.timer for t in facts.timers) or "its timer"
            summary = (
                f"did not run: {timers} was due at {clock(awaited)} and no run started "
                f"within {human_duration(rules.missed_grace)}"
            )
            alerts.append(Alert(state.unit, AlertKind.MISSED, summary, facts.newest_run_id))
            state = replace(state, missed_usec=awaited, notified_usec=now_usec)
    if rules.stale_after and state.stale_usec is None and not facts.running:
        since = state.last_success_usec
        base = since if since is not None else state.first_seen_usec
        if now_usec - base > rules.stale_after * USEC:
            if since is None:
                summary = f"has not succeeded once in {_ago(base, now_usec)} of watching it"
            else:
                summary = f"has not succeeded for {_ago(since, now_usec)}"
            alerts.append(Alert(state.unit, AlertKind.STALE, summary, facts.newest_run_id))
            state = replace(state, stale_usec=now_usec, notified_usec=now_usec)
    if (
        rules.max_duration
        and facts.running
        and facts.newest_started_usec is not None
        and facts.newest_invocation != state.overdue_invocation
        and now_usec - facts.newest_started_usec > rules.max_duration * USEC
    ):
        summary = (
            f"has been running for {_ago(facts.newest_started_usec, now_usec)}, longer than "
            f"its limit of {human_duration(rules.max_duration)}"
        )
        alerts.append(Alert(state.unit, AlertKind.OVERDUE, summary, facts.newest_run_id))
        state = replace(state, overdue_invocation=facts.newest_invocation)
    if (
        not alerts
        and rules.reminder_interval
        and state.open_problems
        and state.notified_usec is not None
        and now_usec - state.notified_usec >= rules.reminder_interval * USEC
    ):
        alerts.append(
            Alert(state.unit, AlertKind.REMINDER, _reminder(state, now_usec), facts.newest_run_id)
        )
        state = replace(state, notified_usec=now_usec)
    return state, alerts


def next_schedule_change(
    state: UnitAlertState, facts: UnitFacts, rules: AlertRules, now_usec: int
) -> int | None:
    """The first time after ``now_usec`` at which judge_schedule could judge ``state``
    otherwise, the store unchanged (None: never). Each of its conditions, once true, stays
    true as time passes: this is the earliest at which one turns true."""
    if not rules.enabled:
        return None
    times: list[int] = []
    if rules.missed_grace and state.missed_usec is None:
        due_times = [state.awaited_usec] if state.awaited_usec is not None else []
        for timer in facts.timers:
            due_times += [t for t in (timer.last_trigger_usec, timer.next_elapse_usec)
                          if t is not None]  # fmt: skip
        for due in due_times:
            if due >= facts.watched_since_usec and not _ran_at(facts, due):
                times += [due, _past(due, rules.missed_grace)]  # awaited, then missed
    if rules.stale_after and state.stale_usec is None and not facts.running:
        since = state.last_success_usec
        times.append(_past(since if since is not None else state.first_seen_usec,
                           rules.stale_after))  # fmt: skip
    if (
        rules.max_duration
        and facts.running
        and facts.newest_started_usec is not None
        and facts.newest_invocation != state.overdue_invocation
    ):
        times.append(_past(facts.newest_started_usec, rules.max_duration))
    if rules.reminder_interval and state.open_problems and state.notified_usec is not None:
        times.append(state.notified_usec + math.ceil(rules.reminder_interval * USEC))
    return min((t for t in times if t > now_usec), default=None)


def _past(usec: int, seconds: float) -> int:
    """The first microsecond more than ``seconds`` after ``usec``."""
    return usec + math.floor(seconds * USEC) + 1


def _awaited(state: UnitAlertState, facts: UnitFacts, now_usec: int) -> int | None:
    """The oldest time a timer fired or was due at which no run started (nor was running)."""
    due_times = [state.awaited_usec] if state.awaited_usec is not None else []
    for timer in facts.timers:
        due_times += [t for t in (timer.last_trigger_usec, timer.next_elapse_usec) if t is not None]
    unanswered = [
        due
        for due in due_times
        if facts.watched_since_usec <= due <= now_usec and not _ran_at(facts, due)
    ]
    return min(unanswered, default=None)


def _ran_at(facts: UnitFacts, due_usec: int) -> bool:
    """A run started at (or after) ``due_usec``, or one was still running then."""
    started = facts.newest_started_usec
    if started is None:
        return False
    if started >= due_usec - TRIGGER_SLACK_USEC:
        return True
    finished = facts.newest_finished_usec
    return finished is None or finished >= due_usec


def _duration_alert(
    unit: str, run: FinishedRun, rules: AlertRules, recent: Sequence[float]
) -> Alert | None:
    seconds = run.duration_seconds
    if seconds is None:
        return None
    took = human_duration(seconds)
    if rules.max_duration and seconds > rules.max_duration:
        limit = human_duration(rules.max_duration)
        return Alert(unit, AlertKind.SLOW, f"took {took}, longer than its limit of {limit}", run.id)
    window = sorted(recent[: rules.slow_window])
    if rules.slow_factor and len(window) >= rules.slow_min_runs:
        p95 = percentile(window, 95)
        if (
            p95 is not None
            and seconds > rules.slow_factor * p95
            and seconds - p95 >= SLOW_MIN_EXCESS_SECONDS
        ):
            ratio = f"{seconds / p95:.1f} times" if p95 > 0 else "far more than"
            summary = (
                f"took {took}, {ratio} the p95 ({human_duration(p95)}) of its last "
                f"{len(window)} successful runs"
            )
            return Alert(unit, AlertKind.SLOW, summary, run.id)
    fast = too_fast(seconds, recent, rules) if run.succeeded else None
    if fast is not None:
        return Alert(unit, AlertKind.FAST, f"succeeded in only {took}, {fast}", run.id)
    return None


def _failing(state: UnitAlertState, run: FinishedRun) -> str:
    how = f" ({run.result})" if run.result else ""
    if run.succeeded and run.findings:
        how = f" ({run.result}, but {run.findings[0].message})"
    if state.failures == 1:
        return f"failed{how}"
    return f"failed {state.failures} times in a row{how}"


def _recovery(state: UnitAlertState, run: FinishedRun, took_down: Sequence[str]) -> str:
    reasons = []
    failed = f"{state.failures} failed run{'s' if state.failures != 1 else ''}"
    if state.cause_usec is not None:
        down = names(took_down)
        took = f"{failed} that took down {down}" if state.failures else f"taking down {down}"
        reasons.append(took)
    elif state.failing_usec is not None:
        reasons.append(failed)
    if state.missed_usec is not None:
        reasons.append("a missed run")
    if state.stale_usec is not None:
        base = state.last_success_usec or state.first_seen_usec
        reasons.append(f"{_ago(base, run.finished_usec)} without success")
    return "succeeded again after " + " and ".join(reasons)


def names(units: Sequence[str], shown: int = 10) -> str:
    """``a.service, b.service and 3 more units``; ``other units`` when none is known."""
    if not units:
        return "other units"
    listed = ", ".join(units[:shown])
    more = len(units) - shown
    if more > 0:
        listed += f" and {more} more unit{'s' if more != 1 else ''}"
    return listed if len(units) == 1 else f"{len(units)} units ({listed})"


def _reminder(state: UnitAlertState, now_usec: int) -> str:
    if state.cause_usec is not None and state.failing_usec is None:
        return f"still down since it took down other units {_ago(state.cause_usec, now_usec)} ago"
    if state.failing_usec is not None:
        return (
            f"still failing: {state.failures} failed run{'s' if state.failures != 1 else ''} "
            "in a row "
            f"(first alert {_ago(state.failing_usec, now_usec)} ago)"
        )
    if state.missed_usec is not None:
        return f"still has not run since it was due at {clock(state.missed_usec)}"
    base = state.last_success_usec or state.first_seen_usec
    return f"still no successful run for {_ago(base, now_usec)}"


def _ago(then_usec: int, now_usec: int) -> str:
    return human_duration(max(0, now_usec - then_usec) / USEC)


def clock(usec: int) -> str:
    return local_time(usec).strftime("%Y-%m-%d %H:%M:%S %Z")
