"""Faults with real parts: a frozen bus, a killed journald, a vacuumed journal, and a
flood of transient units; each ends with every run that systemd and the journal still
hold recorded exactly once."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from tests.integration.observed import ObserverDaemon
from tests.integration.test_resilience import (
    TICK,
    TICK_SERVICE,
    TICK_TIMER,
    install_script,
    tick_recorded_via_the_bus,
    ticks,
)
from tests.sandbox import Sandbox
from tests.waiting import settled, wait_for

pytestmark = pytest.mark.integration


def journal_invocations(sandbox: Sandbox, unit: str) -> set[str]:
    """The invocations of ``unit`` that PID 1's records in the journal still tell of."""
    lines = sandbox.journal("_PID=1", f"UNIT={unit}", "-o", "json").splitlines()
    return {e["INVOCATION_ID"] for e in map(json.loads, lines) if e.get("INVOCATION_ID")}


def assert_recorded_exactly_once(
    sandbox: Sandbox, daemon: ObserverDaemon, unit: str
) -> list[dict[str, Any]]:
    """Every finished run the journal holds of ``unit`` is stored once, and no other."""
    held = journal_invocations(sandbox, unit)

    def all_finished(runs: list[dict[str, Any]]) -> bool:
        return {r["invocation_id"] for r in runs if r["finished_at"]} >= held

    runs = settled(lambda: daemon.history(unit), all_finished, timeout=60)
    stored = Counter(run["invocation_id"] for run in runs)
    assert {i: n for i, n in stored.items() if n != 1} == {}
    assert set(stored) == held
    return runs


def start_ticking(sandbox: Sandbox, daemon: ObserverDaemon) -> None:
    """tick.service, started every second by tick.timer, seen three times with its timer."""
    sandbox.write_unit("tick.service", TICK_SERVICE)
    sandbox.write_unit("tick.timer", TICK_TIMER)
    install_script(sandbox, "tick", TICK)
    sandbox.daemon_reload()
    sandbox.systemctl("start", "tick.timer")
    wait_for(
        lambda: len([r for r in daemon.history("tick") if r["trigger"] == "tick.timer"]) >= 3,
        timeout=60,
        what="three ticks seen with their timer",
    )


def stop_ticking(sandbox: Sandbox) -> None:
    sandbox.systemctl("stop", "tick.timer")
    sandbox.wait_inactive("tick.service")


def main_pid(sandbox: Sandbox, unit: str) -> str:
    pid = sandbox.unit_property(unit, "MainPID")
    assert pid not in ("", "0"), f"{unit} has no main process"
    return pid


def test_runs_during_ten_seconds_of_a_stopped_dbus_daemon_are_recorded_exactly_once(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    start_ticking(sandbox, observed)
    bus = main_pid(sandbox, "dbus.service")
    sandbox.run("kill", "-STOP", bus)
    try:
        stopped_at = len(ticks(sandbox))
        # Ten ticks (ten seconds) while the bus hears nothing; systemd-run reaches PID 1
        # over its private socket, so a transient run starts too.
        sandbox.systemd_run("/bin/echo", "while the bus slept", unit="frozen-bus")
        wait_for(
            lambda: len(ticks(sandbox)) >= stopped_at + 10,
            timeout=60,
            what="ten ticks while dbus-daemon is stopped",
        )
    finally:
        sandbox.run("kill", "-CONT", bus)
    seen_again = tick_recorded_via_the_bus(sandbox, observed, len(ticks(sandbox)) + 1)
    assert seen_again
    stop_ticking(sandbox)

    runs = assert_recorded_exactly_once(sandbox, observed, "tick.service")
    assert {(run["result"], run["exit_status"]) for run in runs} == {("success", 0)}
    assert len(runs) >= 13
    [frozen] = assert_recorded_exactly_once(sandbox, observed, "frozen-bus.service")
    assert (frozen["result"], frozen["exit_status"]) == ("success", 0)
    assert observed.output(frozen["id"], 1) == ["while the bus slept"]


def test_runs_around_a_killed_and_restarted_journald_are_recorded_exactly_once(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    start_ticking(sandbox, observed)
    before = len(ticks(sandbox))
    sandbox.systemctl("kill", "--signal=KILL", "systemd-journald.service")
    # PID 1 restarts it (Restart=always); its sockets stay open meanwhile.
    wait_for(
        lambda: sandbox.unit_property("systemd-journald.service", "ActiveState") == "active",
        timeout=30,
        what="journald to be restarted",
    )
    sandbox.systemd_run("/bin/echo", "after journald came back", unit="journald-back")
    wait_for(lambda: len(ticks(sandbox)) >= before + 5, timeout=30, what="five more ticks")
    stop_ticking(sandbox)

    runs = assert_recorded_exactly_once(sandbox, observed, "tick.service")
    assert {(run["result"], run["exit_status"]) for run in runs} == {("success", 0)}
    [back] = assert_recorded_exactly_once(sandbox, observed, "journald-back.service")
    assert observed.output(back["id"], 1) == ["after journald came back"]
