"""An alert as people read it: the host, the unit, what happened, the run's facts, the last
lines of its output and the command that shows all of it."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from observer.alerts import digest, digest_facts
from observer.alerts.rules import AlertKind
from observer.alerts.state import StoredAlert
from observer.model import exit_text
from observer.output import dropped_marker, lost_marker, printable
from observer.reading import history, render
from observer.spans import human_duration
from observer.store import definitions

# Long lines are cut: chat services limit a message to a few thousand characters.
LINE_LIMIT = 300
_NOTIFY_TYPES = {
    AlertKind.RECOVERED: "success",
    AlertKind.SLOW: "warning",
    AlertKind.FAST: "warning",
    AlertKind.SLOWER: "warning",
    AlertKind.TEST: "info",
    AlertKind.DIGEST: "info",
}


@dataclass(frozen=True, slots=True)
class Message:
    """What a channel receives; ``notify_type`` is apprise's: info, success, warning, failure."""

    title: str
    body: str
    notify_type: str


def compose(conn: sqlite3.Connection, alert: StoredAlert, host: str, output_lines: int) -> Message:
    """The message of a recorded alert, with the facts of its run as the store has them now.

    ``conn`` must return rows by name (``sqlite3.Row``), as history's queries read them.
    ``host`` is the daemon's: an alert names its own (on a central database, the run's).
    """
    host = alert.host or host
    try:
        kind = AlertKind(alert.kind)
    except ValueError:  # written by a newer observer
        kind = AlertKind.REMINDER
    if kind is AlertKind.DIGEST:  # its 24 hours, read again as the store has them
        facts = digest_facts.read(conn, host, alert.created_usec)
        text = digest.body(facts, _time(alert.created_usec))
        return Message(f"[{host}] {digest.title(facts)}", text, "info")
    title = f"[{host}] {alert.unit} {alert.summary}"
    lines = [f"{alert.unit} on {host} {alert.summary}.", ""]
    if alert.run_id is None:
        lines.append("No run of it is recorded.")
    else:
        try:
            detail = history.run_detail(conn, str(alert.run_id))
        except history.NoSuchRunError:
            lines.append(f"Run {alert.run_id} is no longer recorded.")
        else:
            if detail.run.unit != alert.unit:  # a refused start of a unit it took down
                lines += [f"The first refused start, of {detail.run.unit}:", ""]
            lines += _change_lines(conn, detail)
            lines += _run_facts(detail, kind, output_lines)
            if detail.run.unit != alert.unit:
                lines.append(f"Why {alert.unit} failed: journalctl -u {alert.unit}")
    return Message(title, "\n".join(lines), _NOTIFY_TYPES.get(kind, "failure"))


def test_message(host: str, channel: str) -> Message:
    """What `observer alerts test` sends."""
    return Message(
        f"[{host}] observer test notification",
        f"This is a test from observer on {host}: alerts sent to {channel} arrive.",
        "info",
    )


def _run_facts(detail: history.RunDetail, kind: AlertKind, output_lines: int) -> list[str]:
    run = detail.run
    which = "Last run" if kind in (AlertKind.MISSED, AlertKind.STALE) else "Run"
    result = "still running" if run.running else render.cell(run.result or "unknown")
    facts = [
        (which, f"{run.id} ({run.invocation_id})" if run.invocation_id else str(run.id)),
        ("Result", result),
        ("Exit status", exit_text(run.exit_status, run.signal)),
        ("Started", _time(run.started_usec)),
        ("Duration", human_duration(run.duration_seconds)),
        ("Trigger", render.cell(run.trigger or "-")),
    ]
    width = max(len(name) for name, _ in facts) + 2
    lines = [f"{name + ':':<{width}}{value}" for name, value in facts]
    if run.findings:
        lines += ["", "Findings:"]
        lines += [f"  {printable(message.encode())} ({kind})" for kind, message in run.findings]
    shown = _last_lines(detail, output_lines)
    lines.append("")
    if shown:
        kept = sum(1 for entry in shown if isinstance(entry, history.LoggedLine))
        lines.append(f"Last {kept} of {detail.output_lines} lines of output:")
        for entry in shown:
            if isinstance(entry, history.DroppedLines):
                lines.append(f"  {dropped_marker(entry.lines)}")
            elif isinstance(entry, history.LostLines):
                lines.append(f"  {lost_marker(entry.lines)}")
            else:
                text = printable(entry.message)
                if len(text) > LINE_LIMIT:
                    text = text[:LINE_LIMIT] + "…"
                lines.append(f"  {text}")
    else:
        lines.append("No output recorded.")
    lines += ["", f"Full run: observer show {run.id}"]
    return lines


# How far back a failure looks for the change it may follow.
_CHANGE_LOOKBACK = 100


def _change_lines(conn: sqlite3.Connection, detail: history.RunDetail) -> list[str]:
    """A line saying the run is the first failure since its definition changed, if it is."""
    if not detail.run.failed:
        return []
    runs = history.unit_history(conn, detail.run.unit, _CHANGE_LOOKBACK)
    changed = first_failure_since_change([r for r in runs if r.host == detail.run.host], detail.run)
    if changed is None:
        return []
    found = render.definition_changes(definitions.of_run(conn, changed.invocation_id))
    return [
        change_sentence(detail.run.unit, found, _change_time(changed, detail.run)),
        *(f"  {change}" for change in found),
        f"  Run {changed.id} was the first with the change: observer show {changed.id}",
        "",
    ]


def _change_time(changed: history.RecordedRun, failed: history.RecordedRun) -> str:
    """When the first run with a change started: its time of day, with its date when the
    failure came on another day."""
    at = render.local_time(changed.started_usec or 0)
    same_day = at.date() == render.local_time(failed.started_usec or 0).date()
    return at.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M")


def first_failure_since_change(
    newest_first: Sequence[history.RecordedRun], failed: history.RecordedRun
) -> history.RecordedRun | None:
    """The first run after its unit's definition changed, when ``failed`` is the first
    failure since then (``newest_first``: the unit's runs on one host)."""
    older = itertools.dropwhile(lambda run: run.id != failed.id, newest_first)
    for run in older:
        if run.id != failed.id and run.failed:
            return None
        if run.definition_changed:
            return run
    return None


def change_sentence(unit: str, changes: Sequence[str], at: str) -> str:
    """``First failure since backup.service's drop-in changed at 14:02.``"""
    parts = dict.fromkeys(
        next((p for p in _PARTS if change.startswith(p)), "definition") for change in changes
    )
    what = " and ".join(parts) if parts else "definition"
    return f"First failure since {unit}'s {what} changed at {at}."


# The parts of a definition a change names (observer/recording/definitions.py's wording).
_PARTS = ("unit file", "drop-in", "command", "script")


def _last_lines(
    detail: history.RunDetail, count: int
) -> list[history.LoggedLine | history.DroppedLines | history.LostLines]:
    shown: list[history.LoggedLine | history.DroppedLines | history.LostLines] = []
    kept = 0
    for entry in reversed(detail.output):
        if isinstance(entry, history.LoggedLine):
            if kept == count:
                break
            kept += 1
        shown.append(entry)
    shown.reverse()
    while shown and isinstance(shown[0], history.DroppedLines):
        shown.pop(0)
    return shown


def _time(usec: int | None) -> str:
    return "-" if usec is None else render.local_time(usec).strftime("%Y-%m-%d %H:%M:%S %Z")
