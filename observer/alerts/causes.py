"""Root causes, not alert storms (pure, no I/O): when systemd refuses the starts of units
because a unit they need failed (result ``dependency``, its ``reason`` the failed unit), one
alert names the failed unit and every unit it took down.

The alert is the failed unit's: it opens a problem of that unit (``cause_usec``), and more
refusals while it lasts are folded into it, as is the failed unit's own ``failing`` alert
(rules.judge_run). A unit with runs of its own (a service) is back at its next success,
told by its recovery; one observer records no runs of (a mount, a socket) is back when a
unit it took down starts again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from observer.alert_config import AlertRules
from observer.alerts.rules import Alert, AlertKind, UnitAlertState, clock, names


@dataclass(frozen=True, slots=True)
class Refusal:
    """A start of ``unit`` that systemd refused because ``cause`` had failed."""

    run_id: int
    unit: str
    cause: str
    at_usec: int


@dataclass(frozen=True, slots=True)
class Return:
    """A start of a unit the cause had taken down, after its last refusal: the cause is back."""

    run_id: int
    unit: str
    at_usec: int


def judge_refusals(
    state: UnitAlertState,
    refusals: Sequence[Refusal],
    rules: AlertRules,
    now_usec: int,
    cause_run_id: int | None = None,
) -> tuple[UnitAlertState, list[Alert]]:
    """Starts refused because ``state.unit`` failed: the first ones open its problem with one
    alert naming them all; later ones, while it lasts, are folded into it.

    ``cause_run_id``: the failed unit's own failed run, if it has runs (its facts and output
    are the alert's); else the first refused start is the alert's run.
    """
    mine = [r for r in refusals if r.cause == state.unit]
    if not mine or state.cause_usec is not None:
        return state, []
    state = replace(state, cause_usec=min(r.at_usec for r in mine))
    if not rules.enabled:
        return state, []
    units = sorted({r.unit for r in mine})
    summary = f"failed and took down {names(units)}: " + (
        "its start was refused" if len(units) == 1 else "their starts were refused"
    )
    run_id = cause_run_id if cause_run_id is not None else mine[0].run_id
    alert = Alert(state.unit, AlertKind.DEPENDENCY, summary, run_id)
    return replace(state, notified_usec=now_usec), [alert]


def judge_return(
    state: UnitAlertState,
    returned: Return | None,
    took_down: Sequence[str],
    rules: AlertRules,
) -> tuple[UnitAlertState, list[Alert]]:
    """A unit without runs of its own is back: a unit it took down started again (it has
    what it requires). Told once; a unit with runs is back at its own success instead."""
    if state.cause_usec is None or returned is None:
        return state, []
    state = replace(state, cause_usec=None, notified_usec=None)
    if not rules.enabled:
        return state, []
    summary = (
        f"works again: {returned.unit} started at {clock(returned.at_usec)} "
        f"(it had taken down {names(took_down)})"
    )
    return state, [Alert(state.unit, AlertKind.RECOVERED, summary, returned.run_id)]
