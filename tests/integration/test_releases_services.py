"""More scenarios that depend on systemd's behaviour, on each release's root (tests/roots.sh):
the start limit, a job with a credential, a user's own manager and the fleet.

As in test_releases.py, observer runs inside the sandbox on that release's Python and
libsystemd (/opt/observer/venv), as a server runs it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_releases import OBSERVER, InsideObserver
from tests.integration.test_users import LingeringUser
from tests.roots import SUITES, root_or_skip
from tests.sandbox import Sandbox
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900),
    pytest.mark.parametrize("suite", list(SUITES)),
]

FLAKY = "[Unit]\nStartLimitBurst=2\nStartLimitIntervalSec=1h\n[Service]\nType=oneshot\n"
FLAKY += "ExecStart=/bin/sh -c 'exit 1'\n"
SECRET = "release-token-5e1d"
JOBS = """\
[jobs.tick]
command = 'sha256sum "$CREDENTIALS_DIRECTORY/token" | cut -c1-64'
schedule = "every 2s"
credentials = { token = "/etc/observer/credentials/token" }
"""
USER_UNIT = "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo backing up the home; exit 4'\n"
FLEET = Path(__file__).resolve().parents[2] / "packaging" / "fleet"
# Where setup.sh is copied in each root (the checkout is not in another release's root).
FLEET_INSIDE = "/opt/observer-fleet"
CENTRAL_DB = "/var/lib/observer-central.db"
FLEET_RUNS = 3


def test_a_start_refused_by_the_start_limit_is_a_run_of_its_own(suite: str, tmp_path: Path) -> None:
    root = root_or_skip(suite)
    started = time.monotonic()
    with Sandbox.boot(root=root, share=[]) as sandbox:
        sandbox.write_unit("flaky.service", FLAKY)
        sandbox.daemon_reload()
        observer = InsideObserver(sandbox, tmp_path / "daemon.log")
        try:
            observer.start()
            for _ in range(3):
                sandbox.start("flaky.service")
            runs = observer.runs_until(
                "flaky.service", lambda r: sum(1 for x in r if x["result"]) >= 3, "three ended runs"
            )
        finally:
            observer.close()

    assert [r["result"] for r in runs] == ["start-limit-hit", "exit-code", "exit-code"]
    refused, ran = runs[0], runs[1]
    assert (refused["invocation_id"], refused["exit_status"]) == (None, None)
    assert (ran["invocation_id"] is not None, ran["exit_status"]) == (True, 1)
    print(f"{suite}: start limit in {time.monotonic() - started:.1f} s")


def test_a_job_applied_with_a_credential_runs_on_schedule_and_reads_it(
    suite: str, tmp_path: Path
) -> None:
    root = root_or_skip(suite)
    started = time.monotonic()
    with Sandbox.boot(root=root, share=[]) as sandbox:
        credential = sandbox.root / "etc/observer/credentials/token"
        credential.parent.mkdir(parents=True)
        credential.write_text(SECRET)
        credential.chmod(0o600)
        (sandbox.root / "etc/observer/jobs.toml").write_text(JOBS)
        observer = InsideObserver(sandbox, tmp_path / "daemon.log")
        try:
            observer.start()
            applied = sandbox.run(OBSERVER, "jobs", "apply").stdout
            runs = observer.runs_until(
                "tick.service",
                lambda r: sum(1 for run in r if run["finished_at"]) >= 2,
                "two finished runs of the job",
            )
            ran = next(run for run in runs if run["finished_at"])
            lines = sandbox.wait_for(
                lambda: observer.show(ran["id"]).get("output") or [], 20, what="the job's output"
            )
        finally:
            observer.close()

    assert "added tick (tick.service, tick.timer)" in applied
    assert {(r["result"], r["trigger"]) for r in runs if r["finished_at"]} == {
        ("success", "tick.timer")
    }
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    assert [line["message"] for line in lines] == [digest]  # the job read its credential
    print(f"{suite}: job with a credential in {time.monotonic() - started:.1f} s")


def test_a_users_own_daemon_records_their_units_in_their_own_database(suite: str) -> None:
    root = root_or_skip(suite)
    started = time.monotonic()
    with Sandbox.boot(root=root, share=[]) as sandbox:
        alice = LingeringUser(sandbox, "alice")
        alice.write_unit("backup.service", USER_UNIT)
        alice.systemctl("daemon-reload", check=True)
        # `observer install --user`: a user unit running `observer daemon --user`.
        alice.install_own_daemon(OBSERVER)
        unit = alice.run("cat", f"{alice.home}/.config/systemd/user/observer.service").stdout
        alice.systemctl("start", "backup.service")

        def finished() -> list[dict[str, Any]]:
            shown = alice.run(OBSERVER, "history", "backup", "--json", check=False)
            runs = json.loads(shown.stdout) if shown.returncode == 0 else []
            return [run for run in runs if run["finished_at"]]

        def output() -> list[str]:
            shown = json.loads(alice.run(OBSERVER, "show", str(run["id"]), "--json").stdout)
            return [line["message"] for line in shown["output"]]

        [run] = wait_for(finished, timeout=30, what="alice's backup run in her database")
        # Its output may be stored after the run's end.
        lines = wait_for(output, timeout=20, what="the output of alice's backup run")
        everything = json.loads(alice.run(OBSERVER, "runs", "--since", "1h", "--json").stdout)

    assert "ExecStart=/opt/observer/venv/bin/python" in unit
    assert "-m observer daemon --user" in unit
    assert (run["user"], run["unit"]) == ("alice", "backup.service")
    assert (run["result"], run["exit_status"]) == ("exit-code", 4)
    assert lines == ["backing up the home"]
    assert {r["user"] for r in everything} == {"alice"}  # nothing of the system's manager
    print(f"{suite}: user manager in {time.monotonic() - started:.1f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fleet_host(root: Path, name: str) -> Sandbox:
    """A sandbox of ``root`` named ``name``, holding packaging/fleet/."""
    sandbox = Sandbox.boot(root=root, share=[])
    try:
        sandbox.run("hostnamectl", "set-hostname", name)
        shutil.copytree(FLEET, sandbox.root / FLEET_INSIDE.lstrip("/"))
    except BaseException:
        sandbox.close()
        raise
    return sandbox


def setup_sh(sandbox: Sandbox, suite: str, *args: str) -> None:
    """packaging/fleet/setup.sh inside; it installs systemd-journal-remote from the release's
    archive (the root's package lists may be older than the archive: updated then)."""
    if suite == "bookworm-backports":
        # Its systemd-journal-remote must match the backported systemd: plain apt-get
        # install (setup.sh's) wants bookworm's and fails; an admin names the suite.
        install = ("apt-get", "install", "-y", "-qq", "-t", suite, "systemd-journal-remote")
        sandbox.run("env", "DEBIAN_FRONTEND=noninteractive", *install, timeout=300)
    argv = ("bash", f"{FLEET_INSIDE}/setup.sh", *args)
    if sandbox.run(*argv, check=False, timeout=300).returncode != 0:
        sandbox.run("apt-get", "update", "-qq", timeout=300)
        sandbox.run(*argv, timeout=300)


def central_runs(hub: Sandbox) -> list[tuple[str, str | None, str | None]]:
    """(host, invocation ID, result) of each run of job-x.service the centre holds."""
    # Read inside: SQLite resolves /proc/PID/root, the sandbox's root seen from the host.
    shown = hub.run(
        "env", f"OBSERVER_DB={CENTRAL_DB}", OBSERVER, "history", "job-x",
        "--json", check=False,
    )  # fmt: skip
    runs = json.loads(shown.stdout) if shown.returncode == 0 else []
    return [(run["host"], run["invocation_id"], run["result"]) for run in runs]


def test_a_central_observer_records_each_run_of_an_uploading_host_once(
    suite: str, tmp_path: Path
) -> None:
    root = root_or_skip(suite)
    started = time.monotonic()
    port = free_port()
    with fleet_host(root, "hub") as hub, fleet_host(root, "web1") as web1:
        central = InsideObserver(hub, tmp_path / "central.log")
        own = InsideObserver(web1, tmp_path / "web1.log")
        try:
            setup_sh(hub, suite, "receiver", f"127.0.0.1:{port}")
            own.start()
            setup_sh(web1, suite, "uploader", f"http://127.0.0.1:{port}")
            central.start("--fleet-dir", "/var/log/journal/remote", "--db", CENTRAL_DB)
            web1.write_unit("job-x.service", "[Service]\nType=oneshot\nExecStart=/bin/true\n")
            web1.daemon_reload()
            for _ in range(FLEET_RUNS):
                web1.start("job-x.service")
            wait_for(
                lambda: len(runs := central_runs(hub)) >= FLEET_RUNS and all(r for *_, r in runs),
                timeout=60,
                what=f"{FLEET_RUNS} finished runs of web1 at the centre",
            )
            own_runs = own.runs_until(  # ended: a run is listed from its start on
                "job-x.service", lambda r: sum(1 for x in r if x["result"]) >= FLEET_RUNS, "own"
            )
        finally:
            central.close()
            own.close()
        at_centre = central_runs(hub)

    # Each run once, as web1's own observer recorded it.
    invocations = {r["invocation_id"] for r in own_runs if r["result"] == "success"}
    assert len(invocations) == FLEET_RUNS
    assert None not in invocations
    assert sorted(at_centre) == sorted(("web1", i, "success") for i in invocations)
    print(f"{suite}: fleet in {time.monotonic() - started:.1f} s")
