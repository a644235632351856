"""`observer run` under a real cron daemon, and its spooled runs picked up by the real daemon."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.observed import ObserverDaemon
from tests.sandbox import Sandbox
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

OBSERVER = Path(sys.executable).parent / "observer"


def cli_inside(sandbox: Sandbox, db: str, *args: str) -> Any:
    """The CLI run inside the sandbox (SQLite resolves /proc/PID/root back to the host's /)."""
    result = sandbox.run(str(OBSERVER), *args, "--db", db, "--json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def test_a_job_in_a_real_crontab_is_recorded_by_the_wrapper(sandbox: Sandbox) -> None:
    state = "/var/lib/observer-cron-test"
    job = 'echo from cron; echo "HOME=${HOME-unset} TERM=${TERM-unset}" >&2; exit 3'
    crontab = (
        "SHELL=/bin/sh\n"
        'MAILTO=""\n'
        f"* * * * * root {OBSERVER} run --name cron-check --schedule '* * * * *' "
        f"--db {state}/observer.db --spool-dir {state}/spool -- sh -c '{job}'\n"
    )
    sandbox.run("mkdir", "-p", state)
    (sandbox.root / "etc/cron.d/observer-test").write_text(crontab)
    sandbox.systemctl("start", "cron.service")
    db = f"{state}/observer.db"

    # cron starts jobs at the top of each minute.
    def finished() -> list[dict[str, Any]]:
        runs = cli_inside(sandbox, db, "history", "cron-check") or []
        return [run for run in runs if run["finished_at"]]

    runs = wait_for(finished, timeout=150, every=1, what="cron to run the job")

    run = runs[-1]
    assert (run["result"], run["exit_status"], run["source"]) == ("exit-code", 3, "wrapper")
    detail = cli_inside(sandbox, db, "show", str(run["id"]))
    messages = sorted(line["message"] for line in detail["output"])
    assert messages == ["HOME=/root TERM=unset", "from cron"]
    [status] = cli_inside(sandbox, db, "status")
    assert status["unit"] == "cron-check"
    assert status["next_run_at"] is not None
    assert not list((sandbox.root / state.lstrip("/") / "spool").glob("*.json"))


@pytest.fixture
def shared_spool() -> Iterator[Path]:
    """A spool directory that an unprivileged user can write into (tmp_path is root's only)."""
    directory = Path(tempfile.mkdtemp(prefix="observer-test-spool-"))
    directory.chmod(0o1777)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def test_the_daemon_moves_a_spooled_run_into_the_store_exactly_once(
    sandbox: Sandbox, tmp_path: Path, shared_spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBSERVER_SPOOL", str(shared_spool))
    daemon = ObserverDaemon(sandbox, tmp_path)
    try:
        daemon.start()
        sandbox.write_unit("report.service", "[Service]\nType=oneshot\nExecStart=/bin/false\n")
        sandbox.daemon_reload()
        sandbox.start("report.service", wait=False)
        # A user who may not write the database: the run goes to the spool.
        as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]

        def spooled(name: str, script: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                [*as_nobody, str(OBSERVER), "run", "--name", name, "--db", str(daemon.db),
                 "--", "sh", "-c", script],
                capture_output=True, timeout=60, check=False, cwd="/",
            )  # fmt: skip

        wrapped = spooled("nightly", "echo spooled; exit 4")
        assert (wrapped.returncode, wrapped.stdout) == (4, b"spooled\n")
        assert b"kept in" in wrapped.stderr

        [run] = daemon.finished_runs("nightly", 1, timeout=60)
        daemon.finished_runs("report", 1)
        assert not list(shared_spool.glob("*.json"))
        # Another look of the daemon's, after the one that imported it, finds nothing more:
        # one that imports a run spooled later.
        assert spooled("fence", "true").returncode == 0
        daemon.finished_runs("fence", 1, timeout=60)
        assert len(daemon.history("nightly")) == 1
        assert "imported spooled run nightly" in daemon.log()
    finally:
        daemon.close()

    assert (run["result"], run["exit_status"], run["source"]) == ("exit-code", 4, "wrapper")
    assert daemon.output(run["id"], 1) == ["spooled"]
    job_stats = daemon.json("stats", "nightly")
    unit_stats = daemon.json("stats", "report")
    assert set(job_stats) == set(unit_stats)
    assert (job_stats["runs"], job_stats["failures"]) == (
        unit_stats["runs"],
        unit_stats["failures"],
    )
