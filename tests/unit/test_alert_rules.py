"""The alert rules as pure functions, at fixed times: no store, no clock, no network."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

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

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
T0 = 1_795_000_000 * SECOND
RULES = AlertRules()


def fresh(unit: str = "backup.service") -> UnitAlertState:
    return UnitAlertState(unit, first_seen_usec=T0)


def run(n: int, ok: bool, seconds: float = 1.0, at: int | None = None) -> FinishedRun:
    finished = at if at is not None else T0 + n * HOUR
    return FinishedRun(
        id=n,
        invocation_id=f"{n:032x}",
        started_usec=finished - int(seconds * SECOND),
        finished_usec=finished,
        succeeded=ok,
        result="success" if ok else "exit-code",
    )


def feed(
    state: UnitAlertState, outcomes: list[bool], rules: AlertRules = RULES
) -> tuple[UnitAlertState, list[AlertKind]]:
    kinds: list[AlertKind] = []
    for n, ok in enumerate(outcomes, start=1):
        finished = run(n, ok)
        state, alerts = judge_run(state, finished, rules, [], finished.finished_usec)
        kinds += [a.kind for a in alerts]
    return state, kinds


def test_two_failures_in_a_row_make_exactly_one_alert() -> None:
    state, kinds = feed(fresh(), [False, False])
    assert kinds == [AlertKind.FAILING]
    assert state.failures == 2
    assert state.failing_usec == T0 + 2 * HOUR


def test_a_single_failure_makes_no_alert() -> None:
    _, kinds = feed(fresh(), [False, True, False, True])
    assert kinds == []


def test_the_first_success_after_the_alert_makes_one_recovery_and_no_more() -> None:
    state, kinds = feed(fresh(), [False, False, False, True, True])
    assert kinds == [AlertKind.FAILING, AlertKind.RECOVERED]
    assert state.failures == 0
    assert not state.open_problems


def test_it_stays_quiet_while_a_unit_keeps_failing_without_a_reminder_interval() -> None:
    state, kinds = feed(fresh(), [False] * 10)
    assert kinds == [AlertKind.FAILING]
    later, alerts = judge_schedule(state, UnitFacts(), RULES, T0 + 1000 * HOUR)
    assert alerts == []
    assert later == state


def test_a_reminder_repeats_the_alert_at_its_interval_while_failing() -> None:
    rules = RULES._replace(reminder_interval=6 * 3600)
    state, _ = feed(fresh(), [False, False], rules)
    alerted = state.failing_usec
    assert alerted is not None
    state, too_soon = judge_schedule(state, UnitFacts(), rules, alerted + 5 * HOUR)
    state, reminded = judge_schedule(state, UnitFacts(), rules, alerted + 6 * HOUR)
    state, again = judge_schedule(state, UnitFacts(), rules, alerted + 7 * HOUR)
    assert too_soon == []
    assert again == []
    assert [a.kind for a in reminded] == [AlertKind.REMINDER]
    assert reminded[0].summary.startswith("still failing: 2 failed runs in a row")


def test_a_per_unit_threshold_of_one_alerts_on_the_first_failure_and_zero_never() -> None:
    _, once = feed(fresh(), [False], RULES._replace(failures=1))
    _, never = feed(fresh(), [False] * 5, RULES._replace(failures=0))
    assert once == [AlertKind.FAILING]
    assert never == []


def test_a_disabled_unit_counts_failures_but_alerts_nobody() -> None:
    state, kinds = feed(fresh(), [False, False, True], RULES._replace(enabled=False))
    assert kinds == []
    assert state.failures == 0
    assert state.last_success_usec == T0 + 3 * HOUR


def test_the_alert_summary_names_the_streak_and_the_result() -> None:
    state, _ = feed(fresh(), [False])
    _, [alert] = judge_run(state, run(2, False), RULES, [], T0 + 2 * HOUR)
    assert alert.summary == "failed 2 times in a row (exit-code)"
    assert alert.run_id == 2


def test_the_recovery_says_what_it_recovers_from() -> None:
    state, _ = feed(fresh(), [False, False, False])
    _, [alert] = judge_run(state, run(4, True), RULES, [], T0 + 4 * HOUR)
    assert alert.summary == "succeeded again after 3 failed runs"


def test_a_timer_that_fired_without_a_run_is_one_missed_run() -> None:
    trigger = T0 + HOUR
    facts = UnitFacts(timers=(TimerFacts("backup.timer", trigger + HOUR, trigger),))
    rules = RULES._replace(missed_grace=60)
    state, early = judge_schedule(fresh(), facts, rules, trigger + 30 * SECOND)
    state, missed = judge_schedule(state, facts, rules, trigger + 2 * MINUTE)
    later = UnitFacts(timers=(TimerFacts("backup.timer", trigger + 2 * HOUR, trigger + HOUR),))
    state, again = judge_schedule(state, later, rules, trigger + HOUR + 2 * MINUTE)
    assert early == []
    assert again == []
    assert [a.kind for a in missed] == [AlertKind.MISSED]
    assert "backup.timer was due at" in missed[0].summary
    assert state.missed_usec == trigger


def test_a_timer_firing_more_often_than_the_grace_without_runs_is_a_missed_run() -> None:
    rules = RULES._replace(missed_grace=3)
    state, made = fresh(), []
    for n in range(1, 6):  # fires every 2 s; each check sees only its newest trigger
        fired = T0 + n * 2 * SECOND
        facts = UnitFacts(timers=(TimerFacts("report.timer", fired + 2 * SECOND, fired),))
        state, alerts = judge_schedule(state, facts, rules, fired + SECOND)
        made += alerts
    assert [a.kind for a in made] == [AlertKind.MISSED]
    assert state.missed_usec == T0 + 2 * SECOND


def test_a_run_after_a_trigger_forgets_it_before_the_grace_is_over() -> None:
    rules = RULES._replace(missed_grace=60)
    fired = T0 + HOUR
    facts = UnitFacts(timers=(TimerFacts("backup.timer", fired + HOUR, fired),))
    state, _ = judge_schedule(fresh(), facts, rules, fired + SECOND)
    assert state.awaited_usec == fired
    ran = replace(facts, newest_run_id=1, newest_started_usec=fired + 2 * SECOND)
    state, alerts = judge_schedule(state, ran, rules, fired + 2 * MINUTE)
    assert alerts == []
    assert state.awaited_usec is None


def test_a_timer_whose_run_started_is_not_missed() -> None:
    trigger = T0 + HOUR
    facts = UnitFacts(
        newest_run_id=7,
        newest_started_usec=trigger + 50_000,
        newest_finished_usec=trigger + SECOND,
        newest_invocation="7" * 32,
        timers=(TimerFacts("backup.timer", trigger + HOUR, trigger),),
    )
    _, alerts = judge_schedule(fresh(), facts, RULES, trigger + HOUR - SECOND)
    assert alerts == []


def test_a_start_skipped_by_a_condition_is_neither_a_failure_nor_a_success() -> None:
    state, kinds = feed(fresh(), [False])
    skipped = replace(run(2, False), invocation_id=None, result="condition")
    state, alerts = judge_run(state, skipped, RULES, [], skipped.finished_usec)
    assert alerts == []
    assert state.failures == 1
    state, kinds = feed(state, [False])
    assert kinds == [AlertKind.FAILING]


def test_a_timer_whose_start_was_recorded_skipped_or_refused_is_not_missed() -> None:
    trigger = T0 + HOUR
    rules = RULES._replace(missed_grace=60)
    # A start that got no invocation (a condition, a dependency, the start limit) is stored
    # as a run at the time systemd refused it: the run itself is the news.
    facts = UnitFacts(
        newest_run_id=8,
        newest_started_usec=trigger + 1_000,
        newest_finished_usec=trigger + 1_000,
        newest_invocation=None,
        timers=(TimerFacts("backup.timer", trigger + HOUR, trigger),),
    )
    state, alerts = judge_schedule(fresh(), facts, rules, trigger + 2 * MINUTE)
    assert alerts == []
    assert state.missed_usec is None


def test_a_trigger_while_the_previous_run_was_still_running_is_not_missed() -> None:
    trigger = T0 + HOUR
    facts = UnitFacts(
        newest_run_id=7,
        newest_started_usec=trigger - 10 * MINUTE,
        newest_finished_usec=trigger + 30 * MINUTE,
        newest_invocation="7" * 32,
        timers=(TimerFacts("backup.timer", trigger + 2 * HOUR, trigger),),
    )
    _, alerts = judge_schedule(fresh(), facts, RULES, trigger + HOUR)
    assert alerts == []


def test_a_due_time_that_passed_without_the_timer_firing_is_a_missed_run() -> None:
    due = T0 + HOUR
    facts = UnitFacts(timers=(TimerFacts("backup.timer", due, None),))
    _, alerts = judge_schedule(fresh(), facts, RULES, due + 6 * MINUTE)
    assert [a.kind for a in alerts] == [AlertKind.MISSED]


def test_triggers_from_before_alerting_started_are_history() -> None:
    timers = (TimerFacts("backup.timer", T0 + HOUR, T0 - HOUR),)
    facts = UnitFacts(timers=timers, watched_since_usec=T0)
    _, alerts = judge_schedule(fresh(), facts, RULES, T0 + 10 * MINUTE)
    assert alerts == []


def test_a_success_after_a_missed_run_is_a_recovery() -> None:
    facts = UnitFacts(timers=(TimerFacts("backup.timer", T0 + 2 * HOUR, T0 + HOUR),))
    state, _ = judge_schedule(fresh(), facts, RULES, T0 + HOUR + 10 * MINUTE)
    _, [alert] = judge_run(state, run(2, True), RULES, [], T0 + 2 * HOUR)
    assert alert.kind == AlertKind.RECOVERED
    assert alert.summary == "succeeded again after a missed run"


def test_no_success_for_longer_than_stale_after_is_one_stale_alert() -> None:
    rules = RULES._replace(stale_after=26 * 3600)
    state, _ = feed(fresh(), [True])  # succeeded at T0 + 1h
    facts = UnitFacts(newest_run_id=1, newest_started_usec=T0, newest_finished_usec=T0 + HOUR)
    state, fresh_enough = judge_schedule(state, facts, rules, T0 + 26 * HOUR)
    state, stale = judge_schedule(state, facts, rules, T0 + 28 * HOUR)
    state, again = judge_schedule(state, facts, rules, T0 + 60 * HOUR)
    assert fresh_enough == []
    assert again == []
    assert [(a.kind, a.summary) for a in stale] == [
        (AlertKind.STALE, "has not succeeded for 1d03h")
    ]


def test_a_unit_that_never_succeeded_goes_stale_from_when_alerting_first_saw_it() -> None:
    rules = RULES._replace(stale_after=3600)
    _, [alert] = judge_schedule(fresh(), UnitFacts(), rules, T0 + 2 * HOUR)
    assert alert.summary == "has not succeeded once in 2h00m of watching it"


def test_a_running_unit_is_not_stale() -> None:
    rules = RULES._replace(stale_after=3600)
    running = UnitFacts(newest_run_id=1, newest_started_usec=T0, newest_invocation="1" * 32)
    _, alerts = judge_schedule(fresh(), running, rules, T0 + 10 * HOUR)
    assert alerts == []


def test_a_run_longer_than_its_limit_is_slow() -> None:
    rules = RULES._replace(max_duration=600)
    _, [alert] = judge_run(fresh(), run(1, True, seconds=900), rules, [], T0)
    assert (alert.kind, alert.summary) == (
        AlertKind.SLOW,
        "took 15m00s, longer than its limit of 10m00s",
    )


def test_a_run_three_times_the_recent_p95_is_slow_once_there_are_ten_runs() -> None:
    history = [10.0] * 19 + [12.0]
    _, [alert] = judge_run(fresh(), run(1, True, seconds=40), RULES, history, T0)
    _, too_few = judge_run(fresh(), run(1, True, seconds=40), RULES, history[:9], T0)
    _, normal = judge_run(fresh(), run(1, True, seconds=25), RULES, history, T0)
    assert alert.kind == AlertKind.SLOW
    assert alert.summary == "took 40.0s, 4.0 times the p95 (10.0s) of its last 20 successful runs"
    assert too_few == []
    assert normal == []


def test_a_few_milliseconds_over_a_tiny_p95_are_not_slow() -> None:
    _, alerts = judge_run(fresh(), run(1, True, seconds=0.05), RULES, [0.005] * 20, T0)
    assert alerts == []


def test_a_success_shorter_than_the_minimum_is_too_fast() -> None:
    rules = RULES._replace(min_duration=5)
    _, [alert] = judge_run(fresh(), run(1, True, seconds=0.2), rules, [], T0)
    _, failed = judge_run(fresh(), run(1, False, seconds=0.2), rules, [], T0)
    assert (alert.kind, alert.summary) == (
        AlertKind.FAST,
        "succeeded in only 200ms, less than its minimum of 5.0s",
    )
    assert failed == []


def test_a_run_overstaying_its_limit_is_told_once_while_running_and_not_again_at_its_end() -> None:
    rules = RULES._replace(max_duration=600)
    running = UnitFacts(newest_run_id=1, newest_started_usec=T0, newest_invocation=f"{1:032x}")
    state, early = judge_schedule(fresh(), running, rules, T0 + 5 * MINUTE)
    state, overdue = judge_schedule(state, running, rules, T0 + 11 * MINUTE)
    state, again = judge_schedule(state, running, rules, T0 + 20 * MINUTE)
    _, at_end = judge_run(state, run(1, True, seconds=1800, at=T0 + 30 * MINUTE), rules, [], T0)
    assert early == []
    assert again == []
    assert at_end == []
    assert [a.kind for a in overdue] == [AlertKind.OVERDUE]


@given(st.lists(st.booleans(), max_size=40), st.integers(min_value=1, max_value=5))
def test_alerts_and_recoveries_alternate_and_match_the_streaks(
    outcomes: list[bool], threshold: int
) -> None:
    rules = RULES._replace(failures=threshold, slow_factor=0)
    _, kinds = feed(fresh(), outcomes, rules)
    # Expected: one FAILING when a streak reaches the threshold, one RECOVERED when it ends.
    expected: list[AlertKind] = []
    streak = 0
    for ok in outcomes:
        if ok:
            if streak >= threshold:
                expected.append(AlertKind.RECOVERED)
            streak = 0
        else:
            streak += 1
            if streak == threshold:
                expected.append(AlertKind.FAILING)
    assert kinds == expected
