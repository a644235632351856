"""Fixtures of the integration tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.integration.observed import ObserverDaemon
from tests.sandbox import MACHINE_VARIABLE, ROOT_VARIABLE, Sandbox, SandboxError

# What cannot run when sandboxes boot another release's root ($OBSERVER_TEST_ROOT): these
# run this checkout (its Python, venv or packaging/) inside the sandbox, and that root holds
# none of it. test_releases_services.py runs their systemd side (a user's own daemon, the
# fleet's setup.sh) on each release with observer installed inside on its own Python.
CHECKOUT_INSIDE = "runs this checkout's Python or packaging/ inside the sandbox, not in this root"
HOST_ROOT_ONLY = {
    "test_install.py": "install.sh from this checkout: " + CHECKOUT_INSIDE,
    "test_user_install.py": CHECKOUT_INSIDE,
    "test_user_jobs.py": CHECKOUT_INSIDE,
    "test_user_scenarios.py": CHECKOUT_INSIDE,
    "test_service.py": CHECKOUT_INSIDE,
    "test_fleet.py": CHECKOUT_INSIDE,
    "test_users.py::test_a_user_without_root_installs_their_own_daemon_that_records_triggers": (
        CHECKOUT_INSIDE
    ),
    "test_wrapper.py::test_a_job_in_a_real_crontab_is_recorded_by_the_wrapper": (
        "needs cron inside, and " + CHECKOUT_INSIDE
    ),
    "test_alerts.py::test_observer_alerts_test_reads_its_urls_from_a_systemd_credential": (
        CHECKOUT_INSIDE
    ),
    "test_deb.py": "it boots the bookworm and trixie roots itself, once, in the host's run",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip, naming why, what cannot run on the root named by $OBSERVER_TEST_ROOT."""
    named = os.environ.get(ROOT_VARIABLE, "")
    if named in ("", "/"):
        return
    for item in items:
        file = item.path.name
        test = f"{file}::{getattr(item, 'originalname', item.name)}"
        if reason := HOST_ROOT_ONLY.get(test) or HOST_ROOT_ONLY.get(file):
            item.add_marker(pytest.mark.skip(reason=f"{ROOT_VARIABLE}={named}: {reason}"))


# A failing test's report ends with the last lines of each daemon log it left: CI keeps only
# what pytest prints.
_LOG_TAIL_LINES = 60


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    funcargs = getattr(item, "funcargs", {})
    workdir = funcargs.get("tmp_path")
    if report.failed and isinstance(workdir, Path):
        for log in sorted(workdir.rglob("daemon.log")):
            lines = log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
            report.sections.append((f"daemon log {log.relative_to(workdir)}", "\n".join(lines)))
    sandbox = funcargs.get("sandbox")
    if report.failed and report.when == "call" and isinstance(sandbox, Sandbox):
        report.sections.append(("the sandbox's journal and timers", _sandbox_state(sandbox)))
    return report


def _sandbox_state(sandbox: Sandbox) -> str:
    """What the sandbox's systemd did lately (its fixture is still up during the call)."""
    try:
        journal = sandbox.journal("-n", str(_LOG_TAIL_LINES), "-o", "short-precise")
        timers = sandbox.systemctl("list-timers", "--all", check=False).stdout
    except (SandboxError, OSError, subprocess.SubprocessError) as e:
        return f"could not read it: {e}"
    return f"{journal}\n{timers}"


def pytest_report_header() -> str:
    """Which root the sandboxes boot, so that a run's log says which systemd it tested."""
    root = os.environ.get(ROOT_VARIABLE) or "the host"
    kind = "machines" if os.environ.get(MACHINE_VARIABLE) == "1" else "containers"
    return f"sandboxes boot: {root}'s root ({ROOT_VARIABLE}), as {kind} ({MACHINE_VARIABLE})"


@pytest.fixture
def observed(sandbox: Sandbox, tmp_path: Path) -> Iterator[ObserverDaemon]:
    """The real daemon recording a fresh sandbox, stopped after the test."""
    daemon = ObserverDaemon(sandbox, tmp_path)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.close()
