"""Faults with real parts: a frozen bus, a killed journald, a vacuumed journal, and a
flood of transient units; each ends with every run that systemd and the journal still
hold recorded exactly once."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.observed import ObserverDaemon, oneshot
from tests.integration.test_resilience import (
    start_ticking,
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
    """Every finished run the journal holds of ``unit`` is stored once, and no other (the
    unit has run: its records are awaited, as journald may index them a moment late)."""

    def all_finished(runs: list[dict[str, Any]]) -> bool:
        held = journal_invocations(sandbox, unit)
        return bool(held) and {r["invocation_id"] for r in runs if r["finished_at"]} >= held

    runs = settled(lambda: daemon.history(unit), all_finished, timeout=60)
    held = journal_invocations(sandbox, unit)
    stored = Counter(run["invocation_id"] for run in runs)
    assert {i: n for i, n in stored.items() if n != 1} == {}
    assert set(stored) == held
    return runs


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
    sandbox.run("/bin/sh", "-c", f"kill -STOP {bus}")  # minbase roots have no /bin/kill
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
        sandbox.run("/bin/sh", "-c", f"kill -CONT {bus}")
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
    # PID 1's own records of the run after journald came back may never reach the new
    # journald (257 and 262 lost all of them under load, its "Started" even when idle): the
    # run is known from the bus, once, and the journal, where it tells of it, agrees.
    [back] = observed.finished_runs("journald-back", 1)
    assert (back["result"], back["exit_status"]) == ("success", 0)
    assert journal_invocations(sandbox, "journald-back.service") <= {back["invocation_id"]}
    assert observed.output(back["id"], 1) == ["after journald came back"]


# -- the journal vacuumed past the cursor while the daemon was down -----------------------


def vacuum_away(sandbox: Sandbox, unit: str) -> None:
    """Rotate and vacuum the journal until it holds nothing of ``unit`` any more."""

    def gone() -> bool:
        sandbox.run("journalctl", "--rotate")
        sandbox.run("journalctl", "--vacuum-time=1s")
        return not journal_invocations(sandbox, unit)

    wait_for(gone, timeout=30, every=0.5, what=f"the journal to hold nothing of {unit}")


def test_a_journal_vacuumed_past_the_cursor_while_the_daemon_was_down_is_told_of(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    config = f'[metrics]\ntextfile_directory = "{metrics}"\n'
    daemon = ObserverDaemon(sandbox, tmp_path, config=config)
    try:
        daemon.start()
        sandbox.write_unit("kept.service", oneshot("echo kept"))
        sandbox.write_unit("lost.service", oneshot("echo lost"))
        sandbox.write_unit("later.service", oneshot("echo later"))
        sandbox.daemon_reload()
        sandbox.start("kept.service")
        [kept] = daemon.finished_runs("kept", 1)
        assert daemon.stop() == 0

        for _ in range(3):
            sandbox.start("lost.service")
        vacuum_away(sandbox, "lost.service")
        sandbox.start("later.service")
        daemon.start()

        [later] = assert_recorded_exactly_once(sandbox, daemon, "later.service")
        assert daemon.output(later["id"], 1) == ["later"]
        assert daemon.history("lost") == []
        assert [run["invocation_id"] for run in daemon.history("kept")] == [kept["invocation_id"]]
        said = "the journal was vacuumed past the last entry observer read: runs between "
        assert said in daemon.log().split(f"--- start {daemon.starts}\n")[-1]
        assert "vacuumed" not in daemon.cli("status").stdout
        [note] = history_notes(daemon)
        assert re.fullmatch(
            r"observer: journal history from \S+ \S+ to \S+ \S+ was vacuumed before observer "
            r"read it: runs in it are not recorded",
            note,
        ), note

        def vacuumed_seconds() -> float:
            path = metrics / "observer.prom"
            text = path.read_text() if path.exists() else ""
            found = re.search(
                r"^observer_journal_vacuumed_seconds_total\{[^}]*\} (\S+)$", text, re.M
            )
            return float(found[1]) if found else 0.0

        assert wait_for(vacuumed_seconds, timeout=30, what="the vacuumed history in metrics") > 0

        # Told once: a restart with the cursor in the journal again finds nothing missing.
        assert daemon.stop() == 0
        daemon.start()
        assert (
            "the journal was vacuumed" not in daemon.log().split(f"--- start {daemon.starts}\n")[-1]
        )
        assert len(history_notes(daemon)) == 1
    finally:
        daemon.close()


def history_notes(daemon: ObserverDaemon) -> list[str]:
    told = daemon.cli("status").stderr.splitlines()
    return [line for line in told if line.startswith("observer: journal history from ")]


# -- a flood of transient units ---------------------------------------------------------

FLOOD = 300


def test_three_hundred_systemd_run_units_make_one_series_and_every_run_is_kept(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    daemon = ObserverDaemon(
        sandbox, tmp_path, config=f'[metrics]\ntextfile_directory = "{metrics}"\n'
    )
    try:
        daemon.start()
        script = f"for i in $(seq 1 {FLOOD}); do systemd-run --quiet --no-block /bin/true; done"
        sandbox.systemd_run("/bin/sh", "-c", script, unit="flood", wait=True)

        def all_recorded() -> list[dict[str, Any]] | None:
            runs = [r for r in daemon.runs("run-*") if r["finished_at"] is not None]
            return runs if len(runs) >= FLOOD else None

        runs = wait_for(all_recorded, timeout=120, what=f"{FLOOD} transient runs recorded")
        # The store keeps every run of every unit: only the metrics fold them.
        assert len({run["unit"] for run in runs}) == len(runs) == FLOOD
        assert {(run["result"], run["exit_status"]) for run in runs} == {("success", 0)}
        named = set(
            re.findall(r"^run-[urp][\w-]+\.service$", "\n".join(r["unit"] for r in runs), re.M)
        )
        assert len(named) == FLOOD, "systemd-run named its units otherwise"

        def folded_runs() -> str | None:
            path = metrics / "observer.prom"
            text = path.read_text() if path.exists() else ""
            counted = re.search(
                r'^observer_runs_total\{[^}]*unit="run-\*\.service"[^}]*result="success"\} (\S+)$',
                text,
                re.M,
            )
            return text if counted and float(counted[1]) == FLOOD else None

        text = wait_for(folded_runs, timeout=60, what=f"{FLOOD} runs counted under run-*.service")
        series = re.findall(r'^\w+\{[^}]*unit="([^"]*)"', text, re.M)
        per_unit = Counter(series)
        # One series per family for all of them: as many lines as one unit has (about 28).
        assert not [unit for unit in per_unit if re.match(r"run-[urp][0-9a-f]", unit)]
        assert per_unit["run-*.service"] <= 40
        # The bound: the sandbox's own units (some 25), each as it was, plus that one fold,
        # at most 40 lines each, whatever the number of transient runs.
        assert len(per_unit) < 40 < FLOOD, per_unit
        assert len(series) <= 40 * len(per_unit)
    finally:
        daemon.close()
