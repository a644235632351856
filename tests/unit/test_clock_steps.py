"""The wall clock stepped back an hour and forward a day (NTP, an admin, a wrong RTC), with
fixed clocks: the correlator stores no negative duration, and the alert rules make no storm
and no missed-run alert from the step alone. The host's clock is never touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from observer.alert_config import AlertRules
from observer.alerts.rules import (
    AlertKind,
    FinishedRun,
    TimerFacts,
    UnitAlertState,
    UnitFacts,
    judge_run,
    judge_schedule,
)
from observer.model import run_duration_usec
from observer.recording.correlator import Correlator
from observer.recording.events import Event, JobKind, JobNew, JobRemoved, Pid1Record
from tests.unit.test_correlator import feed_all, finished_runs, service, stored, unit_state

SECOND = 1_000_000
HOUR = 3600 * SECOND
DAY = 24 * HOUR
T0 = 1_790_000_000_000_000  # the wall clock at the first start
M0 = 500 * SECOND  # the monotonic clock then (time since boot)
STEPS = {"back-an-hour": -HOUR, "forward-a-day": DAY}


def oneshot_on_bus(
    inv: bytes, start: tuple[int, int], end: tuple[int, int], job: int
) -> list[Event]:
    """A oneshot that ran and succeeded, as the bus told it: (realtime, monotonic) stamps."""
    unit = "backup.service"
    (t_start, m_start), (t_end, m_end) = start, end
    return [
        JobNew(job, unit),
        service(unit, "success"),
        unit_state(
            unit, "activating", "start", inv, t_start,
            InactiveExitTimestamp=t_start, InactiveExitTimestampMonotonic=m_start,
            StateChangeTimestampMonotonic=m_start,
        ),
        service(unit, "success", 1, 0),
        unit_state(
            unit, "inactive", "dead", inv, t_end,
            StateChangeTimestampMonotonic=m_end,
            InactiveEnterTimestamp=t_end, InactiveEnterTimestampMonotonic=m_end,
        ),
        JobRemoved(job, unit, "done"),
    ]  # fmt: skip


@pytest.mark.parametrize("step", STEPS.values(), ids=STEPS.keys())
def test_a_step_during_a_run_leaves_its_duration_as_the_monotonic_clock_measured_it(
    step: int, tmp_path: Path
) -> None:
    inv = bytes(range(1, 17))
    events = oneshot_on_bus(inv, (T0, M0), (T0 + step + 2 * SECOND, M0 + 2 * SECOND), job=7)
    effects = feed_all(Correlator("host"), events)

    [run] = finished_runs(effects)
    assert run.started_usec == T0
    assert run_duration_usec(run.started_usec, run.finished_usec) == 2 * SECOND
    [row] = stored(tmp_path, effects)
    assert row["finished_usec"] - row["started_usec"] == 2 * SECOND


@pytest.mark.parametrize("step", STEPS.values(), ids=STEPS.keys())
def test_a_step_between_runs_still_gives_the_next_run_its_start(step: int) -> None:
    first, second = bytes(range(1, 17)), bytes(range(21, 37))
    correlator = Correlator("host")
    events = oneshot_on_bus(first, (T0, M0), (T0 + SECOND, M0 + SECOND), job=7)
    later = T0 + 10 * SECOND + step  # the wall clock, stepped; monotonic goes on
    events += oneshot_on_bus(
        second, (later, M0 + 10 * SECOND), (later + 3 * SECOND, M0 + 13 * SECOND), job=8
    )
    runs = finished_runs(feed_all(correlator, events))

    assert [(r.started_usec, run_duration_usec(r.started_usec, r.finished_usec)) for r in runs] == [
        (T0, SECOND),
        (later, 3 * SECOND),
    ]


def test_a_run_known_only_from_the_journal_across_a_step_back_has_no_duration_not_a_negative_one(
    tmp_path: Path,
) -> None:
    unit, inv = "backup.service", bytes(range(1, 17)).hex()
    events: list[Event] = [
        Pid1Record(JobKind.STARTING, unit, inv, T0, job_id=7),
        Pid1Record(JobKind.DEACTIVATED, unit, inv, T0 - HOUR + 2 * SECOND),
        Pid1Record(JobKind.STARTED, unit, inv, T0 - HOUR + 2 * SECOND + 100),
    ]
    effects = feed_all(Correlator("host"), events)

    [run] = finished_runs(effects)
    assert run_duration_usec(run.started_usec, run.finished_usec) is None
    # The store merges the records (its start from "Started", after the end): still no
    # negative duration is read from it.
    [row] = stored(tmp_path, effects)
    assert run_duration_usec(row["started_usec"], row["finished_usec"]) is None


# -- the alert rules ----------------------------------------------------------------------

RULES = AlertRules(missed_grace=300, stale_after=2 * 3600, slow_factor=3.0, slow_min_runs=3)


def finished(n: int, started: int, ended: int, ok: bool = True) -> FinishedRun:
    return FinishedRun(n, f"{n:032x}", started, ended, ok, "success" if ok else "exit-code")


def hourly(last: int, wall: int) -> UnitFacts:
    """An hourly timer that fired at ``last`` and the run it started, judged at ``wall``."""
    return UnitFacts(
        newest_run_id=1,
        newest_started_usec=last,
        newest_finished_usec=last + SECOND,
        timers=(TimerFacts("backup.timer", last + HOUR, last),),
        watched_since_usec=T0 - DAY,
    )


def test_a_run_whose_end_is_before_its_start_makes_no_slow_or_fast_alert() -> None:
    state = UnitAlertState("backup.service", first_seen_usec=T0 - DAY)
    recent = [2.0, 2.0, 2.0, 2.0]
    state, alerts = judge_run(state, finished(1, T0, T0 - HOUR + 2 * SECOND), RULES, recent, T0)
    assert alerts == []
    assert finished(1, T0, T0 - HOUR).duration_seconds is None


def test_a_step_back_an_hour_between_runs_makes_no_alert_at_all() -> None:
    state = UnitAlertState("backup.service", first_seen_usec=T0 - DAY, last_success_usec=T0)
    made: list[AlertKind] = []
    # Checked every 30 s from the step (to an hour before the last run) until the timer,
    # recomputed by systemd for the wall clock, fires again an hour later.
    for wall in range(T0 - HOUR + SECOND, T0 + 2 * SECOND, 30 * SECOND):
        state, alerts = judge_schedule(state, hourly(T0, wall), RULES, wall)
        made += [a.kind for a in alerts]
    assert made == []


def test_a_step_forward_a_day_makes_no_missed_run_or_stale_alert_once_the_timer_fires() -> None:
    # systemd fires an elapsed calendar timer at once when the clock jumps past it, and a
    # pass of the alert checks judges new runs before the schedule (alerts/state.py).
    last_success = T0 + SECOND
    state = UnitAlertState(
        "backup.service", first_seen_usec=T0 - DAY, last_success_usec=last_success
    )
    jumped = T0 + 30 * SECOND + DAY
    state, made = judge_run(
        state, finished(2, jumped, jumped + SECOND), RULES, [1.0] * 4, jumped + 2 * SECOND
    )
    kinds = [a.kind for a in made]
    for wall in range(jumped + 2 * SECOND, jumped + 10 * 60 * SECOND, 30 * SECOND):
        state, alerts = judge_schedule(state, hourly(jumped, wall), RULES, wall)
        kinds += [a.kind for a in alerts]
    assert kinds == []


def test_a_failing_unit_across_both_steps_alerts_once_not_at_every_check() -> None:
    rules = RULES._replace(stale_after=0)
    state = UnitAlertState("backup.service", first_seen_usec=T0 - DAY)
    made: list[AlertKind] = []
    walls = [T0, T0 + HOUR, T0 + 30 * SECOND, T0 + DAY, T0 + DAY + HOUR]  # back, then forward
    for n, wall in enumerate(walls, start=1):
        state, alerts = judge_run(
            state, finished(n, wall, wall + SECOND, ok=False), rules, [], wall
        )
        made += [a.kind for a in alerts]
        for check in range(wall, wall + 5 * 60 * SECOND, 30 * SECOND):
            state, alerts = judge_schedule(state, hourly(wall, check), rules, check)
            made += [a.kind for a in alerts]
    assert made == [AlertKind.FAILING]


def test_the_one_duration_is_never_negative() -> None:
    assert run_duration_usec(T0, T0 - 1) is None
    assert run_duration_usec(T0, T0) == 0
    assert run_duration_usec(None, T0) is None
    assert run_duration_usec(T0, None) is None
