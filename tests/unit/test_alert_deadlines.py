"""When time alone next changes an alert judgement: nothing changes before it, so an idle
daemon may sleep until then (observer/alerts/rules.py next_schedule_change)."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from observer.alert_config import AlertRules
from observer.alerts.rules import (
    TimerFacts,
    UnitAlertState,
    UnitFacts,
    judge_schedule,
    next_schedule_change,
)

SECOND = 1_000_000
HOUR = 3600 * SECOND
T0 = 1_795_000_000 * SECOND

offsets = st.integers(min_value=-48 * HOUR, max_value=48 * HOUR)
maybe = st.one_of(st.none(), offsets.map(lambda o: T0 + o))
seconds = st.sampled_from([0.0, 0.5, 60.0, 300.0, 3600.0, 86400.0])


@st.composite
def situations(draw: st.DrawFn) -> tuple[UnitAlertState, UnitFacts, AlertRules]:
    rules = AlertRules(
        missed_grace=draw(seconds), stale_after=draw(seconds), max_duration=draw(seconds),
        reminder_interval=draw(seconds),
    )  # fmt: skip
    started = draw(maybe)
    running = started is not None and draw(st.booleans())
    timers = tuple(
        TimerFacts(f"t{i}.timer", draw(maybe), draw(maybe)) for i in range(draw(st.integers(0, 2)))
    )
    facts = UnitFacts(
        newest_run_id=None if started is None else 1,
        newest_started_usec=started,
        newest_finished_usec=None if started is None or running else started + SECOND,
        newest_invocation=None if started is None else "a" * 32,
        timers=timers,
        watched_since_usec=T0 - draw(st.integers(0, 24 * HOUR)),
    )
    state = UnitAlertState(
        "backup.service",
        first_seen_usec=T0 - 24 * HOUR,
        failing_usec=draw(maybe),
        last_success_usec=draw(maybe),
        notified_usec=draw(maybe),
    )
    return state, facts, rules


@given(situations(), st.lists(st.integers(1, 96 * HOUR), max_size=8))
def test_no_judgement_changes_before_the_deadline(
    situation: tuple[UnitAlertState, UnitFacts, AlertRules], later: list[int]
) -> None:
    state, facts, rules = situation
    now = T0
    # As the daemon keeps it: judged as of now, and nothing more to make at this instant.
    state, _ = judge_schedule(state, facts, rules, now)
    assume(judge_schedule(state, facts, rules, now) == (state, []))
    deadline = next_schedule_change(state, facts, rules, now)
    for step in later:
        at = now + step
        if deadline is not None and at >= deadline:
            continue
        assert judge_schedule(state, facts, rules, at) == (state, []), (at, deadline)


def test_a_timer_due_later_is_the_deadline_then_its_grace_period() -> None:
    rules = AlertRules(missed_grace=300.0)
    due = T0 + HOUR
    facts = UnitFacts(timers=(TimerFacts("backup.timer", due, None),), watched_since_usec=T0)
    state = UnitAlertState("backup.service", first_seen_usec=T0)
    assert next_schedule_change(state, facts, rules, T0) == due
    awaited, made = judge_schedule(state, facts, rules, due)
    assert made == []
    assert awaited.awaited_usec == due
    assert next_schedule_change(awaited, facts, rules, due) == due + 300 * SECOND + 1
    _, made = judge_schedule(awaited, facts, rules, due + 300 * SECOND + 1)
    assert [alert.kind for alert in made] == ["missed"]


def test_a_unit_with_its_rules_off_has_no_deadline() -> None:
    state = UnitAlertState("backup.service", first_seen_usec=T0)
    rules = AlertRules(stale_after=60.0)._replace(enabled=False)
    assert next_schedule_change(state, UnitFacts(), rules, T0) is None
