"""The scenarios that depend on systemd's behaviour, on each release's root (tests/roots.sh).

observer runs inside the sandbox as a server runs it: that release's Python and libsystemd,
the venv tests/roots.sh installed (/opt/observer/venv), the default bus and journal.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.roots import SUITES, root_or_skip
from tests.sandbox import CLEAN_ENV, Sandbox

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

OBSERVER = "/opt/observer/venv/bin/observer"
# In the kept journal directory, so that the database outlives a crash as a disk would
# (journald reads only *.journal files there).
DB = "/var/log/journal/observer-test.db"
ONESHOT = "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo out of {unit}; exit 3'\n"
CONDITION = "[Unit]\nConditionPathExists=/etc/observer-flag\n[Service]\nType=oneshot\n"
CONDITION += "ExecStart=/bin/true\n"
DEPENDENT = "[Unit]\nRequires=broken.service\nAfter=broken.service\n[Service]\nType=oneshot\n"
DEPENDENT += "ExecStart=/bin/true\n"
LONG = "[Service]\nType=oneshot\nExecStart=/bin/sleep 600\n"
NOT_ACCOUNTED = 2**63
PID1_TEXT = ("journalctl", "--no-pager", "-o", "cat", "_PID=1")


class InsideObserver:
    """`observer daemon` run inside a sandbox with its release's Python; the CLI likewise."""

    def __init__(self, sandbox: Sandbox, log_path: Path) -> None:
        self.sandbox = sandbox
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *options: str) -> None:
        argv = ["nsenter", "-t", str(self.sandbox.pid), "-a", OBSERVER, "daemon", "--db", DB]
        argv += options
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*argv, "--listen", ""], stdout=log, stderr=log, env=CLEAN_ENV
            )
        self.sandbox.wait_for(
            lambda: "observer daemon ready" in self.log_path.read_text(errors="replace"),
            30,
            what=f"the daemon inside to be ready (log: {self.log_path})",
        )

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(30)
            self.process = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The release's `observer` CLI inside, on the daemon's database."""
        return self.sandbox.run("env", f"OBSERVER_DB={DB}", OBSERVER, *args, check=check)

    def history(self, unit: str) -> list[dict[str, Any]]:
        result = self.cli("history", unit, "--json", check=False)
        if result.returncode == 1 and "no runs recorded" in result.stderr:
            return []
        assert result.returncode == 0, result.stderr
        runs: list[dict[str, Any]] = json.loads(result.stdout)
        return runs

    def show(self, run_id: int) -> dict[str, Any]:
        shown = self.cli("show", str(run_id), "--json")
        return dict(json.loads(shown.stdout)) if shown.stdout.startswith("{") else {}

    def runs_until(self, unit: str, ready: Any, what: str) -> list[dict[str, Any]]:
        return self.sandbox.wait_for(
            lambda: (runs := self.history(unit)) and ready(runs) and runs, 30, what=what
        )


@pytest.fixture
def kept_journal() -> Iterator[Path]:
    """A journal directory (and the database) that outlives a sandbox, not under /tmp."""
    directory = Path(tempfile.mkdtemp(prefix="observer-releases-", dir="/var/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=list(SUITES))
def root(request: pytest.FixtureRequest) -> Path:
    return root_or_skip(str(request.param))


def boot(root: Path, journal: Path, machine: bool = False) -> Sandbox:
    sandbox = Sandbox.boot(root=root, machine=machine, journal=journal, share=[])
    for name, text in {
        "out.service": ONESHOT.format(unit="out.service"),
        "cond.service": CONDITION,
        "broken.service": "[Service]\nType=oneshot\nExecStart=/bin/false\n",
        "dependent.service": DEPENDENT,
        "long.service": LONG,
    }.items():
        sandbox.write_unit(name, text)
    sandbox.daemon_reload()
    return sandbox


def test_runs_skips_and_dependency_failures_are_recorded(
    root: Path, kept_journal: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    with boot(root, kept_journal) as sandbox:
        observer = InsideObserver(sandbox, tmp_path / "daemon.log")
        try:
            observer.start()
            sandbox.start("out.service")
            sandbox.run("touch", "/etc/observer-flag")
            sandbox.start("cond.service")
            sandbox.run("rm", "/etc/observer-flag")
            sandbox.start("cond.service")  # skipped: its record names the run before
            sandbox.start("dependent.service")

            out = observer.runs_until("out.service", lambda r: r[0]["finished_at"], "out")[0]
            conds = observer.runs_until(
                "cond.service", lambda r: sum(1 for x in r if x["result"]) >= 2, "two ended runs"
            )
            dependent = observer.runs_until("dependent.service", bool, "dependent")[0]
            lines: list[dict[str, Any]] = sandbox.wait_for(
                lambda: observer.show(out["id"]).get("output") or [], 20, what="out's output"
            )
        finally:
            observer.close()

    assert (out["result"], out["exit_status"]) == ("exit-code", 3)
    assert [line["message"] for line in lines] == ["out of out.service"]
    skip, ran = conds[0], conds[1]
    assert (skip["result"], skip["reason"]) == (
        "condition",
        "ConditionPathExists=/etc/observer-flag",
    )
    assert skip["invocation_id"] is None
    assert (ran["result"], ran["finished_at"] is not None) == ("success", True)
    assert (dependent["result"], dependent["reason"]) == ("dependency", "broken.service")
    for run in (out, ran):
        for field in ("cpu_seconds", "io_read_bytes", "io_write_bytes", "memory_peak_bytes"):
            assert run[field] is None or 0 <= run[field] < NOT_ACCOUNTED, (field, run[field])
    print(f"{root.parent.name}: recording scenarios in {time.monotonic() - started:.1f} s")


@pytest.mark.parametrize("machine", [False, True], ids=["container", "machine"])
def test_a_run_cut_by_a_crash_is_closed_as_interrupted_by_the_next_boot(
    root: Path, machine: bool, kept_journal: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    with boot(root, kept_journal, machine) as first:
        observer = InsideObserver(first, tmp_path / "daemon.log")
        observer.start()
        first.start("long.service", wait=False)
        observer.runs_until("long.service", lambda r: r[0]["result"] is None, "a running run")
        first.kill()  # the daemon inside dies with it
        observer.close()
    with boot(root, kept_journal, machine) as second:
        observer = InsideObserver(second, tmp_path / "daemon.log")
        try:
            observer.start()
            cut = observer.runs_until(
                "long.service", lambda r: r[0]["finished_at"], "the cut run to be closed"
            )[0]
        finally:
            observer.close()

    assert cut["result"] == "interrupted"
    print(f"{root.parent.name}: crash scenario in {time.monotonic() - started:.1f} s")


def pid1_text(sandbox: Sandbox) -> str:
    """PID 1's journal records as text; "" while journalctl does not answer: in the middle
    of a soft-reboot it can hang (CI21: a minute, on 257), and the next try answers."""
    try:
        return sandbox.run(*PID1_TEXT, check=False, timeout=10).stdout
    except subprocess.TimeoutExpired:
        return ""


def test_a_soft_reboot_ends_runs_as_systemd_logged_and_recording_goes_on(
    root: Path, kept_journal: Path, tmp_path: Path
) -> None:
    version = SUITES[root.parent.name]
    if version < 256:
        pytest.skip(f"systemd {version} has no soft-reboot in a container (256 on)")
    with boot(root, kept_journal) as sandbox:
        observer = InsideObserver(sandbox, tmp_path / "daemon.log")
        try:
            observer.start()
            sandbox.start("long.service", wait=False)
            observer.runs_until("long.service", lambda r: r[0]["result"] is None, "a running run")
            observer.close()
            sandbox.systemctl("soft-reboot", "--no-block")
            # The manager logs "Soft-reboot finished" (b07a249c...) once it is back.
            sandbox.wait_for(
                lambda: "Soft-reboot finished" in pid1_text(sandbox),
                30,
                what="the soft-reboot to finish",
            )
            observer.start()
            sandbox.start("out.service")
            cut = observer.runs_until(
                "long.service", lambda r: r[0]["finished_at"], "the cut run to be closed"
            )[0]
            after = observer.runs_until("out.service", lambda r: r[0]["finished_at"], "out")
        finally:
            observer.close()

    # A soft-reboot stops units in order: the run ends as systemd logged it (SIGTERM), and
    # the start-up record (b07a249c...) after it closes nothing that had already ended.
    assert cut["result"] == "signal"
    assert [(r["result"], r["exit_status"]) for r in after] == [("exit-code", 3)]
