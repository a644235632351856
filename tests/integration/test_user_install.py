"""A user without root installs observer with pip into a venv of their own, from a copy of
this repository, and `observer install --user` from that venv records their runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_users import USER, LingeringUser, oneshot, wait_runs
from tests.sandbox import Sandbox

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[2]
# What a user of Debian 12 has: the system's Python, not the one running the tests.
PYTHON = "/usr/bin/python3"


def test_a_user_pip_installs_observer_in_a_venv_and_their_daemon_records_runs(
    sandbox: Sandbox,
) -> None:
    alice = LingeringUser(sandbox, USER)
    source = alice.home / "observer"
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPOSITORY, capture_output=True, text=True, check=True
    ).stdout.split()
    # The tracked files as they are in this checkout, copied in as the user's own clone.
    sandbox.run("mkdir", str(source))
    sandbox.run("tar", "-C", str(REPOSITORY), "-cf", "/tmp/observer.tar", *files, timeout=120)
    sandbox.run("tar", "-C", str(source), "-xf", "/tmp/observer.tar")
    sandbox.run("chown", "-R", f"{USER}:", str(source))
    venv = alice.home / ".local/share/observer/venv"
    alice.run(PYTHON, "-m", "venv", str(venv))
    installed = alice.run(
        f"{venv}/bin/pip", "install", "--no-cache-dir", str(source), timeout=900, check=False
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    print(installed.stdout)  # where each package came from (pytest -s)
    observer = f"{venv}/bin/observer"
    alice.install_own_daemon(observer)
    unit = alice.run("cat", f"{alice.home}/.config/systemd/user/observer.service").stdout
    assert f"ExecStart={venv}/bin/python" in unit
    alice.write_unit("u-bad.service", oneshot("echo cannot reach the remote; exit 3"))
    alice.systemctl("daemon-reload", check=True)
    assert alice.systemctl("start", "u-bad.service").returncode != 0

    def read(*args: str) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = json.loads(alice.run(observer, *args, "--json").stdout)
        return runs

    [bad] = wait_runs(read, "u-bad", 1)
    assert (bad["user"], bad["result"], bad["exit_status"]) == (USER, "exit-code", 3)
    # Nothing of the tests' environment is used: the daemon runs the venv's observer.
    pid = alice.systemctl("show", "-P", "MainPID", "observer.service").stdout.strip()
    command = sandbox.run("cat", f"/proc/{pid}/cmdline").stdout.split("\0")
    assert command[0].startswith(f"{venv}/bin/python"), command
