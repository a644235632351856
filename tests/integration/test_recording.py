"""The real daemon records runs of a real systemd; the real CLI reads them back."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.observed import ObserverDaemon, oneshot
from tests.integration.prometheus import free_port
from tests.sandbox import Sandbox
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def test_it_records_a_successful_run_with_its_output(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    sandbox.write_unit("backup.service", oneshot("echo copying; echo done >&2"))
    sandbox.daemon_reload()
    sandbox.start("backup.service")

    [run] = observed.finished_runs("backup", 1)
    assert run["unit"] == "backup.service"
    assert (run["result"], run["exit_status"], run["signal"]) == ("success", 0, None)
    assert run["trigger"] is None
    assert run["duration_seconds"] >= 0
    assert observed.output(run["id"], 2) == ["copying", "done"]


def test_it_records_the_exit_status_of_a_failed_run(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    sandbox.write_unit("sync.service", oneshot("echo cannot reach server; exit 3"))
    sandbox.daemon_reload()
    sandbox.start("sync.service")

    [run] = observed.finished_runs("sync.service", 1)
    assert (run["result"], run["exit_status"]) == ("exit-code", 3)
    assert observed.output(run["id"], 1) == ["cannot reach server"]
    failure = observed.json("last-failure", "sync")
    assert failure["id"] == run["id"]
    assert failure["output"][0]["message"] == "cannot reach server"


def test_it_records_a_run_killed_by_a_signal_and_one_that_timed_out(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    sandbox.write_unit("killed.service", oneshot("kill -KILL $$$$"))
    sandbox.write_unit("slow.service", oneshot("sleep 30", "TimeoutStartSec=1\n"))
    sandbox.daemon_reload()
    sandbox.start("killed.service")
    sandbox.start("slow.service")

    [killed] = observed.finished_runs("killed", 1)
    assert (killed["result"], killed["signal"], killed["exit_status"]) == ("signal", "KILL", None)
    [slow] = observed.finished_runs("slow", 1)
    assert slow["result"] == "timeout"
    assert slow["signal"] == "TERM"
    assert 0.9 < slow["duration_seconds"] < 10


def test_it_names_the_timer_that_started_a_run_and_none_for_a_manual_start(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    sandbox.write_unit("renew.service", oneshot("echo renewed"))
    sandbox.write_unit("renew.timer", "[Timer]\nOnActiveSec=1\nAccuracySec=1ms\n")
    sandbox.daemon_reload()
    sandbox.systemctl("start", "renew.timer")
    [by_timer] = observed.finished_runs("renew", 1)
    sandbox.start("renew.service")

    runs = observed.finished_runs("renew", 2)
    assert by_timer["trigger"] == "renew.timer"
    assert runs[0]["trigger"] is None


def test_it_records_template_instances_with_escaped_names(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    sandbox.write_unit("backup@.service", oneshot("echo backing up %f"))
    sandbox.daemon_reload()
    instance = sandbox.run(
        "systemd-escape", "--template=backup@.service", "--path", "/home/user/My Files"
    ).stdout.strip()
    sandbox.start(instance)
    sandbox.start("backup@home-user.service")

    [escaped] = observed.finished_runs(instance, 1)
    assert escaped["unit"] == instance == "backup@home-user-My\\x20Files.service"
    assert observed.output(escaped["id"], 1) == ["backing up /home/user/My Files"]
    [plain] = observed.finished_runs("backup@home-user", 1)
    assert plain["result"] == "success"


def test_it_records_each_crash_of_a_long_running_service_restarted_by_systemd(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    sandbox.write_unit(
        "worker.service",
        "[Unit]\nStartLimitIntervalSec=0\n[Service]\n"
        "ExecStart=/bin/sh -c 'echo working; sleep 0.5; echo crashed; exit 1'\n"
        "Restart=on-failure\nRestartSec=200ms\n",
    )
    sandbox.daemon_reload()
    sandbox.start("worker.service")

    runs = observed.finished_runs("worker", 3, timeout=30)
    sandbox.systemctl("stop", "worker.service")
    assert all(r["result"] == "exit-code" and r["exit_status"] == 1 for r in runs[:3])
    assert len({r["invocation_id"] for r in runs}) == len(runs)
    for earlier, later in zip(runs[1:], runs, strict=False):
        assert earlier["finished_at"] <= later["started_at"]


def test_it_keeps_the_start_and_end_of_long_output_and_shows_bad_bytes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    daemon = ObserverDaemon(
        sandbox, tmp_path, config="[output]\nmax_bytes = 4000\nfailed_max_bytes = 8000\n"
    )
    try:
        daemon.start()
        sandbox.write_unit("chatty.service", oneshot("seq 1 5000"))
        script = sandbox.root / "usr/local/bin/print-binary"
        script.write_text("#!/bin/sh\nprintf '\\377\\376 raw \\033[31m red\\n'\nexit 2\n")
        script.chmod(0o755)
        sandbox.write_unit("binary.service", oneshot("/usr/local/bin/print-binary"))
        sandbox.daemon_reload()
        sandbox.start("chatty.service")
        sandbox.start("binary.service")

        [chatty] = daemon.finished_runs("chatty", 1)

        def complete() -> list[str] | None:
            messages = [o["message"] for o in daemon.json("show", str(chatty["id"]))["output"]]
            return messages if messages and messages[-1] == "5000" else None

        messages = wait_for(complete, timeout=20, what="the end of chatty's output")
        assert daemon.history("chatty")[0]["output_truncated"] is True
        assert messages[:3] == ["1", "2", "3"]
        assert any("dropped" in m for m in messages)
        assert sum(len(m) for m in messages if "dropped" not in m) <= 4000
        [binary] = daemon.finished_runs("binary", 1)
        assert daemon.output(binary["id"], 1) == ["\\xff\\xfe raw \\x1b[31m red"]
        assert "\\xff\\xfe raw" in daemon.cli("show", str(binary["id"])).stdout
    finally:
        daemon.close()


def test_output_written_after_the_unit_ended_still_belongs_to_its_run(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    # The background child outlives the main process and writes after the unit is gone.
    sandbox.write_unit(
        "late.service",
        oneshot("(sleep 1; echo late line) & echo early line", "KillMode=none\n"),
    )
    sandbox.daemon_reload()
    sandbox.start("late.service")
    [run] = observed.finished_runs("late", 1)

    def late_line() -> bool:
        return [o["message"] for o in observed.json("show", str(run["id"]))["output"]] == [
            "early line",
            "late line",
        ]

    wait_for(late_line, timeout=20, what="the late line")


def test_runs_that_ended_while_the_daemon_was_down_are_rebuilt_from_the_journal(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    sandbox.write_unit("nightly.service", oneshot("echo run"))
    sandbox.daemon_reload()
    sandbox.start("nightly.service")
    observed.finished_runs("nightly", 1)
    assert observed.stop() == 0

    for _ in range(5):
        sandbox.start("nightly.service")
    observed.start()

    runs = observed.finished_runs("nightly", 6)
    assert len(runs) == 6
    assert all(r["result"] == "success" for r in runs)
    assert all(r["started_at"] is not None for r in runs)

    def six_lines() -> list[list[str]] | None:
        shown = [observed.json("show", str(run["id"]))["output"] for run in runs]
        outputs = [[str(o["message"]) for o in output] for output in shown]
        return outputs if sum(map(len, outputs)) >= 6 else None

    # Six lines in all, then each run's own: a line given to the wrong run shows as one
    # run with two lines and one with none, and says where each went.
    outputs = wait_for(six_lines, timeout=20, what="the six runs' lines")
    assert outputs == [["run"]] * 6, _where_lines_went(sandbox, observed, runs)


def _where_lines_went(
    sandbox: Sandbox, observed: ObserverDaemon, runs: list[dict[str, Any]]
) -> str:
    """Each run's times and lines as recorded, and the unit's journal entries in the order
    journald wrote them, with its own stamp (__REALTIME) beside the sender's."""
    said = ["runs, newest first:"]
    for run in runs:
        shown = observed.json("show", str(run["id"]))
        lines = [(o["message"], o.get("time")) for o in shown["output"]]
        said.append(f"  {run['invocation_id']} {run['started_at']} - {run['finished_at']}: {lines}")
    said.append("journal (__REALTIME, _SOURCE_REALTIME, _PID, INVOCATION_ID, MESSAGE):")
    raw = sandbox.journal(
        "-o", "json", "UNIT=nightly.service", "+", "_SYSTEMD_UNIT=nightly.service"
    )
    for text in raw.splitlines():
        entry = json.loads(text)
        said.append(
            "  {} {} {} {} {}".format(
                entry.get("__REALTIME_TIMESTAMP"),
                entry.get("_SOURCE_REALTIME_TIMESTAMP"),
                entry.get("_PID"),
                entry.get("INVOCATION_ID") or entry.get("_SYSTEMD_INVOCATION_ID"),
                entry.get("MESSAGE"),
            )
        )
    return "\n".join(said)


def test_it_names_the_timer_that_started_a_simple_service(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    # A Type=simple start job ends right after the fork, often before it can be asked
    # what triggered it: the timer's own last trigger time still names it.
    sandbox.write_unit("poller.service", "[Service]\nExecStart=/bin/sleep 0.3\n")
    sandbox.write_unit("poller.timer", "[Timer]\nOnActiveSec=1\nAccuracySec=1ms\n")
    sandbox.daemon_reload()
    sandbox.systemctl("start", "poller.timer")

    [run] = observed.finished_runs("poller", 1)
    assert (run["result"], run["trigger"]) == ("success", "poller.timer")


def test_the_daemons_threads_tell_the_kernel_which_part_each_is(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # top -H, ps -L and /proc/PID/task/TID/comm show the store's writer, the journal's
    # reader, the metrics' readings and their listener, and `observer run`'s runs by name.
    port = free_port()
    daemon = ObserverDaemon(sandbox, tmp_path, config=f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    wanted = {"obs-store_0", "obs-journal", "obs-metrics_0", "obs-http", "obs-run_0"}
    try:
        daemon.start()
        assert daemon.process is not None
        tasks = Path(f"/proc/{daemon.process.pid}/task")

        def names() -> set[str]:
            found = set()
            for task in tasks.iterdir():
                with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                    found.add((task / "comm").read_text().strip())
            return found

        wait_for(lambda: wanted <= names(), timeout=30, what=f"threads named {sorted(wanted)}")
    finally:
        daemon.close()
