"""Users' units as people would try them: a user name with a dot and a dash, a user's own
`observer status`, a user removed while their units have history, a user with no manager."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.observed import ObserverDaemon
from tests.integration.test_users import USER, LingeringUser, oneshot, wait_runs
from tests.receiver import Receiver
from tests.sandbox import Sandbox
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

DOTTED = "a.lice-x"  # useradd allows both; neither may confuse USER/UNIT
OBSERVER = (sys.executable, "-m", "observer")


def test_a_dotted_users_runs_outlive_the_user_in_the_system_database(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    daemon = ObserverDaemon(sandbox, tmp_path, config='[metrics]\nlisten = ""\n')
    try:
        daemon.start()
        user = LingeringUser(sandbox, DOTTED)
        user.write_unit("backup.service", oneshot("echo disk full; exit 2"))
        user.systemctl("daemon-reload", check=True)
        user.install_own_daemon()
        assert user.systemctl("start", "backup.service").returncode != 0

        def system(*args: str) -> list[dict[str, Any]]:
            runs: list[dict[str, Any]] = daemon.json(args[0], "--user", DOTTED, *args[1:])
            return runs

        [run] = wait_runs(system, "backup", 1)
        assert (run["user"], run["unit"], run["exit_status"]) == (DOTTED, "backup.service", 2)
        [same] = daemon.json("history", f"{DOTTED}/backup")
        assert same["id"] == run["id"]
        plain = daemon.cli("history", "backup", check=False)
        assert plain.returncode == 1
        assert f"--user {DOTTED}" in plain.stderr

        # The user reads their own database without naming themselves.
        [own] = wait_runs(user.observer, "backup", 1)
        assert own["user"] == DOTTED
        status = user.run(*OBSERVER, "status").stdout.splitlines()
        assert status[0].startswith("USER")
        assert any(line.split()[:2] == [DOTTED, "backup.service"] for line in status), status
        failure = user.run(*OBSERVER, "last-failure", "backup").stdout
        assert f"User:        {DOTTED}" in failure
        wait_for(
            lambda: "disk full" in user.run(*OBSERVER, "last-failure", "backup").stdout,
            timeout=20, what="the output of the failed run",
        )  # fmt: skip

        # Removed (its manager stopped first), the user's history stays, under their name.
        sandbox.run("loginctl", "disable-linger", DOTTED)
        wait_for(
            lambda: sandbox.run("test", "-e", f"/run/user/{user.uid}/bus", check=False).returncode
            != 0,
            timeout=30, what="the user's manager to stop",
        )  # fmt: skip
        sandbox.run("userdel", "--force", DOTTED)
        [kept] = daemon.json("history", "--user", DOTTED, "backup")
        assert kept["id"] == run["id"]
        assert (DOTTED, "backup.service") in {(s["user"], s["unit"]) for s in daemon.json("status")}
    finally:
        daemon.close()


def test_a_user_without_a_manager_is_told_to_enable_linger_and_their_daemon_waits(
    sandbox: Sandbox,
) -> None:
    carol = LingeringUser(sandbox, "carol", linger=False)
    refused = carol.run(*OBSERVER, "install", "--user", check=False)
    assert refused.returncode == 1
    assert "loginctl enable-linger" in refused.stderr
    # The daemon does not die without the bus: it says why and tries again.
    waiting = carol.run("timeout", "5", *OBSERVER, "daemon", "--user", check=False)
    assert waiting.returncode == 124, waiting.stderr
    assert "cannot use the user bus of carol" in waiting.stderr
    assert "loginctl enable-linger carol" in waiting.stderr


def test_a_users_own_daemon_alerts_on_their_failing_unit_named_as_they_name_it(
    sandbox: Sandbox,
) -> None:
    with Receiver() as receiver:
        alice = LingeringUser(sandbox, USER)
        alice.run("mkdir", "-p", f"{alice.home}/.config/observer")
        alice.run("tee", f"{alice.home}/.config/observer/observer.toml", input=(
            f'[alerts]\nurls = ["{receiver.json_url}"]\ncheck_interval = "1s"\n'
            'retry_delay = "1s"\nfailures = 3\n'
            '[alerts.units."u-bad.service"]\nfailures = 1\n'
        ))  # fmt: skip
        alice.write_unit("u-bad.service", oneshot("echo cannot reach the remote; exit 3"))
        alice.write_unit("u-other.service", oneshot("exit 4"))
        alice.systemctl("daemon-reload", check=True)
        alice.install_own_daemon()
        assert alice.systemctl("start", "u-other.service").returncode != 0
        assert alice.systemctl("start", "u-bad.service").returncode != 0
        receiver.wait_for(1)
        titles = [str(post["title"]) for post in receiver.posts()]
        assert any(f"{USER}/u-bad.service failed" in title for title in titles), titles
        # The other unit failed once of the three failures its rule needs: no alert.
        wait_runs(alice.observer, "u-other", 1)
        alerted = [a["unit"] for a in alice.observer("alerts")]
        assert alerted == [f"{USER}/u-bad.service"]
        # Her commands read her configuration, not the system's.
        tested = alice.run(*OBSERVER, "alerts", "test", check=False)
        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert "sent" in tested.stdout
        assert "observer.toml: ok" in alice.run(*OBSERVER, "check-config").stdout
