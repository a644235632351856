"""Runs that can never end, output journald dropped, and what a run cost."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import sandbox_or_skip
from tests.integration.observed import ObserverDaemon, oneshot
from tests.sandbox import Sandbox
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def kept_journal() -> Iterator[Path]:
    """A journal directory that outlives a sandbox (not under /tmp: see Sandbox.boot)."""
    sandbox_or_skip()
    path = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="observer-test-journal-"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_a_run_cut_by_a_crash_of_systemd_is_closed_as_interrupted_by_the_next_systemd(
    kept_journal: Path, tmp_path: Path
) -> None:
    with Sandbox.boot(journal=kept_journal) as first:
        first.write_unit("backup.service", oneshot("echo copying; sleep 600"))
        first.daemon_reload()
        daemon = ObserverDaemon(first, tmp_path)
        try:
            daemon.start()
            first.start("backup.service", wait=False)
            [running] = wait_for(
                lambda: [r for r in daemon.history("backup") if r["started_at"]],
                timeout=30,
                what="the backup to be seen running",
            )
            assert running["result"] is None
            daemon.output(running["id"], 1)
            # A daemon that merely restarts leaves the live run alone.
            assert daemon.stop() == 0
            daemon.start()
            assert daemon.history("backup")[0]["finished_at"] is None
        finally:
            daemon.close()
        first.kill()

    second_booted = datetime.now().astimezone()
    with Sandbox.boot(journal=kept_journal) as second:
        daemon = ObserverDaemon(second, tmp_path)
        try:
            daemon.start()
            [run] = daemon.finished_runs("backup", 1)
            assert run["id"] == running["id"]
            assert run["result"] == "interrupted"
            # It ends at the last thing the journal holds of the first systemd: no later
            # than its own output line, long before the second systemd was up.
            shown = daemon.json("show", str(run["id"]))
            [line] = [o for o in shown["output"] if o["message"] == "copying"]
            finished = datetime.fromisoformat(run["finished_at"])
            assert finished >= datetime.fromisoformat(line["time"])
            assert finished >= datetime.fromisoformat(run["started_at"])
            assert finished < second_booted
            assert daemon.json("stats", "backup")["failures"] == 1
            # A run of the new systemd is not touched by it.
            second.write_unit("backup.service", oneshot("echo copied"))
            second.daemon_reload()
            second.start("backup.service")
            runs = daemon.finished_runs("backup", 2)
            assert [r["result"] for r in runs] == ["success", "interrupted"]
        finally:
            daemon.close()


def test_lines_journald_dropped_are_counted_on_the_run_that_printed_them(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    # A burst of 1,000 lines per 2 s (journald scales it up by the free disk space): of
    # 100,000 lines printed at once most are dropped, and journald says so only when the
    # unit's next line comes after the window, here from its next run.
    # journald reads a unit's LogRateLimit* from its cgroup, found from the process that
    # printed: a run that had exited by the time journald read its lines (seq does in a
    # few ms) is judged by journald.conf's limit (30 s), which holds its count back
    # (v252 src/journal/journald-context.c). So each run lives until journald has read
    # its first line with its cgroup (the line then has the run's invocation ID).
    read = "journalctl -q -n 1 _SYSTEMD_INVOCATION_ID=$$INVOCATION_ID | grep -q ."
    sandbox.write_unit(
        "chatty.service",
        oneshot(
            f"seq 1 100000; until {read}; do sleep 0.05; done",
            "LogRateLimitIntervalSec=2s\nLogRateLimitBurst=1000\nTimeoutStartSec=60\n",
        ),
    )
    sandbox.daemon_reload()
    sandbox.start("chatty.service")
    [first] = observed.finished_runs("chatty", 1)
    wait_for(
        lambda: sandbox.journal("-u", "chatty.service", "-n", "1", "-o", "cat").strip() != "1",
        timeout=10,
        what="journald to store the burst",
    )
    wait_for(lambda: _seconds_since(first["finished_at"]) > 3, timeout=10, what="the window")
    sandbox.start("chatty.service")
    observed.finished_runs("chatty", 2)

    def told() -> int:
        """What journald's "Suppressed N messages" records of the unit add up to."""
        records = sandbox.journal(
            "MESSAGE_ID=a596d6fe7bfa4994828e72309e95d61e", "OBJECT_SYSTEMD_UNIT=chatty.service",
            "-o", "json",
        )  # fmt: skip
        return sum(int(json.loads(line)["N_DROPPED"]) for line in records.splitlines())

    def counted() -> int | None:
        # Each record is added to one run, once: to the run that printed just before it.
        lost = [observed.json("show", str(r["id"]))["output_lost_lines"] or 0
                for r in observed.history("chatty")]  # fmt: skip
        said = told()
        return sum(lost) if sum(lost) and sum(lost) == said else None

    wait_for(counted, timeout=60, every=1, what="the lines journald dropped")
    detail = observed.json("show", str(first["id"]))
    dropped = detail["output_lost_lines"]
    assert isinstance(dropped, int)
    # journald reads a stream after the process wrote it: on an idle machine this run's
    # record says exactly 100,000 - what it stored; a busy journald can still be reading it
    # when the next run prints, and one record then covers lines of both.
    assert dropped > 0
    marker = f"[... journald dropped {dropped} lines (rate limit) ...]"
    assert [o["lost_lines"] for o in detail["output"] if "lost_lines" in o] == [dropped]
    assert marker in [o["message"] for o in detail["output"]]
    assert marker in observed.cli("show", str(first["id"])).stdout


def test_it_records_what_a_run_cost_as_systemd_accounted_it(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    sandbox.write_unit(
        "crunch.service",
        oneshot(
            "i=0; while [ $i -lt 1500000 ]; do i=$((i+1)); done; "
            "head -c 3000000 /dev/urandom > /var/tmp/crunch.out; sync"
        ),
    )
    sandbox.daemon_reload()
    sandbox.start("crunch.service")
    [run] = observed.finished_runs("crunch", 1)
    # systemd logs "Consumed N CPU time" (above 1 s of CPU): the same figure as the unit's
    # CPUUsageNSec, which it keeps while the unit stays loaded.
    accounted = sandbox.journal("-u", "crunch.service", "-o", "cat", "--grep", "Consumed")
    assert "CPU time" in accounted

    def costed() -> dict[str, object] | None:
        shown: dict[str, object] = observed.json("show", str(run["id"]))
        return shown if shown["cpu_seconds"] is not None else None

    shown = costed() or wait_for(costed, timeout=20, what="the run's cost")
    cpu = shown["cpu_seconds"]
    assert isinstance(cpu, float)
    assert cpu > 1.0
    # This sandbox's cgroup has no io or memory controller: systemd accounts neither
    # (IOWriteBytes is UINT64_MAX, MemoryPeak does not exist in 252), so neither does
    # observer.
    io_written = sandbox.unit_property("crunch.service", "IOWriteBytes")
    if io_written in ("18446744073709551615", "[not set]"):
        assert shown["io_write_bytes"] is None
    else:
        assert shown["io_write_bytes"] == int(io_written)
    assert shown["memory_peak_bytes"] is None
    assert "CPU" in observed.cli("show", str(run["id"])).stdout
    stats = observed.json("stats", "crunch")
    assert stats["cpu_p50_seconds"] == stats["cpu_p95_seconds"] == cpu


def _seconds_since(iso: str) -> float:
    return (datetime.now().astimezone() - datetime.fromisoformat(iso)).total_seconds()
