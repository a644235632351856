"""Users' own units (`systemctl --user`) of a lingering user in a real systemd: recorded by the
system daemon from the journal, and by the user's own `observer daemon --user`, installed and
run by that user without root."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.observed import ObserverDaemon
from tests.receiver import Receiver
from tests.sandbox import Sandbox
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

USER = "alice"


def oneshot(command: str) -> str:
    return f"[Service]\nType=oneshot\nExecStart=/bin/sh -c '{command}'\n"


class LingeringUser:
    """A user created inside the sandbox whose manager runs without a login (linger), unless
    ``linger`` is false: then it has no manager at all."""

    def __init__(self, sandbox: Sandbox, name: str, *, linger: bool = True) -> None:
        self.sandbox = sandbox
        self.name = name
        sandbox.run("useradd", "--create-home", name)
        # The test's Python lives under /root (0700 on the host): let the user run it. The
        # sandbox's overlay keeps the change inside it.
        sandbox.run("chmod", "o+x", "/root")
        self.uid = int(sandbox.run("id", "-u", name).stdout)
        if linger:
            sandbox.run("loginctl", "enable-linger", name)
            bus = f"/run/user/{self.uid}/bus"
            wait_for(
                lambda: sandbox.run("test", "-S", bus, check=False).returncode == 0,
                timeout=30,
                what=f"the user bus {bus}",
            )
        self.home = Path(f"/home/{name}")

    def run(
        self, *argv: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> Any:
        """Run a command as the user (no root, no capabilities), with their session's env."""
        env = [f"HOME={self.home}", f"USER={self.name}", f"XDG_RUNTIME_DIR=/run/user/{self.uid}"]
        done = self.sandbox.run(
            "setpriv", "--reuid", self.name, "--regid", self.name, "--init-groups",
            "--inh-caps=-all", "env", *env, *argv, check=False, input=input, timeout=timeout,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} as {self.name}: {done.returncode} {done.stderr}")
        return done

    def write_unit(self, name: str, text: str) -> None:
        directory = f"{self.home}/.config/systemd/user"
        self.run("mkdir", "-p", directory)
        self.sandbox.run("tee", f"{directory}/{name}", input=text)
        self.sandbox.run("chown", f"{self.name}:", f"{directory}/{name}")

    def systemctl(self, *args: str, check: bool = False) -> Any:
        return self.run("systemctl", "--user", *args, check=check)

    def install_own_daemon(self, *observer: str) -> Any:
        """`observer install --user` (with ``observer``, default this Python's), until the
        user's observer.service is active."""
        installed = self.run(*(observer or (sys.executable, "-m", "observer")), "install", "--user")
        wait_for(
            lambda: self.systemctl("is-active", "observer.service").stdout.strip() == "active",
            timeout=30, what="the user's observer.service to be active",
        )  # fmt: skip
        return installed

    def observer(self, *args: str) -> Any:
        return json.loads(self.run(sys.executable, "-m", "observer", *args, "--json").stdout)


def user_units(user: LingeringUser) -> None:
    user.write_unit("backup.service", oneshot("echo backing up the home of alice"))
    user.write_unit("u-bad.service", oneshot("echo cannot reach the remote; exit 3"))
    user.write_unit("u-tick.service", oneshot("echo tick"))
    user.write_unit(
        "u-tick.timer", "[Timer]\nOnActiveSec=1s\nAccuracySec=1ms\nRemainAfterElapse=no\n"
    )
    user.systemctl("daemon-reload", check=True)


def wait_runs(read: Any, unit: str, count: int) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        try:
            runs = [r for r in read("history", unit) if r["finished_at"] is not None]
        except (AssertionError, json.JSONDecodeError):
            return None
        return runs if len(runs) >= count else None

    found: list[dict[str, Any]] = wait_for(ready, timeout=30, what=f"{count} runs of {unit}")
    return found


def test_the_system_daemon_records_a_users_units_apart_from_the_systems_and_alerts(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    with Receiver() as receiver:
        config = (
            f'[metrics]\nlisten = ""\n[alerts]\nurls = ["{receiver.json_url}"]\n'
            'check_interval = "1s"\nretry_delay = "1s"\n'
            f'[alerts.units."{USER}/u-bad.service"]\nfailures = 1\n'
        )
        daemon = ObserverDaemon(sandbox, tmp_path, config=config)
        try:
            daemon.start()
            alice = LingeringUser(sandbox, USER)
            user_units(alice)
            sandbox.write_unit("backup.service", oneshot("echo backing up the system"))
            sandbox.daemon_reload()
            sandbox.start("backup.service")
            alice.systemctl("start", "backup.service", check=True)
            assert alice.systemctl("start", "u-bad.service").returncode != 0
            alice.systemctl("start", "u-tick.timer", check=True)

            def read(*args: str) -> list[dict[str, Any]]:
                runs: list[dict[str, Any]] = daemon.json(args[0], "--user", USER, *args[1:])
                return runs

            [bad] = wait_runs(read, "u-bad", 1)
            assert (bad["user"], bad["unit"]) == (USER, "u-bad.service")
            assert (bad["result"], bad["exit_status"]) == ("exit-code", 3)
            assert daemon.output(bad["id"], 1) == ["cannot reach the remote"]
            [tick] = wait_runs(read, "u-tick", 1)
            assert (tick["result"], tick["exit_status"]) == ("success", 0)
            assert daemon.output(tick["id"], 1) == ["tick"]

            # Same name, two units: the user's backup.service never merges with the system's.
            [users_backup] = wait_runs(read, "backup", 1)
            [system_backup] = daemon.finished_runs("backup", 1)
            assert users_backup["id"] != system_backup["id"]
            assert (users_backup["user"], system_backup["user"]) == (USER, None)
            assert daemon.output(users_backup["id"], 1) == ["backing up the home of alice"]
            assert daemon.output(system_backup["id"], 1) == ["backing up the system"]

            status = daemon.json("status")
            marked = {(s["user"], s["unit"]) for s in status}
            assert {(None, "backup.service"), (USER, "backup.service")} <= marked
            assert (USER, "u-bad.service") in marked
            table = daemon.cli("status").stdout
            assert table.splitlines()[0].startswith("USER")

            # The per-user rule (failures = 1) alerts on the first failure.
            receiver.wait_for(1)
            titles = [str(post["title"]) for post in receiver.posts()]
            assert any(f"{USER}/u-bad.service failed" in title for title in titles), titles
            alerted = daemon.json("alerts", "--user", USER)
            assert [a["unit"] for a in alerted] == [f"{USER}/u-bad.service"]
        finally:
            daemon.close()


def test_a_user_without_root_installs_their_own_daemon_that_records_triggers(
    sandbox: Sandbox,
) -> None:
    alice = LingeringUser(sandbox, USER)
    user_units(alice)
    installed = alice.install_own_daemon()
    assert "observer.service" in installed.stdout
    alice.systemctl("start", "backup.service", check=True)
    assert alice.systemctl("start", "u-bad.service").returncode != 0
    alice.systemctl("start", "u-tick.timer", check=True)

    def read(*args: str) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = alice.observer(*args)
        return runs

    [tick] = wait_runs(read, "u-tick", 1)
    assert (tick["user"], tick["unit"], tick["source"]) == (USER, "u-tick.service", "bus")
    assert (tick["result"], tick["exit_status"]) == ("success", 0)

    def triggered() -> bool:
        return bool(read("history", "u-tick")[0]["trigger"] == "u-tick.timer")

    wait_for(triggered, timeout=20, what="the timer as the run's trigger")
    [bad] = wait_runs(read, "u-bad", 1)
    assert (bad["result"], bad["exit_status"]) == ("exit-code", 3)

    def bad_output() -> list[str] | None:
        # A run's output can reach the store a moment after the run itself.
        shown = [str(o["message"]) for o in alice.observer("show", str(bad["id"]))["output"]]
        return shown or None

    assert wait_for(bad_output, timeout=20, what="u-bad's output") == ["cannot reach the remote"]
    [backup] = wait_runs(read, "backup", 1)
    assert backup["user"] == USER
    db = alice.home / ".local/share/observer/observer.db"
    assert alice.run("test", "-f", str(db), check=False).returncode == 0
    # Nothing of the system manager is in the user's database.
    assert {r["user"] for r in read("runs", "--since", "1h")} == {USER}
