"""The systemd sandbox boots a real manager, isolates it from the host and leaves nothing."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from systemd import journal

from tests.conftest import sandbox_or_skip
from tests.roots import SUITES, root_or_skip
from tests.sandbox import Sandbox, SandboxError

pytestmark = pytest.mark.integration

HELLO = "[Service]\nType=oneshot\nExecStart=/bin/echo hello from the sandbox\n"


def _pids_in_pid_namespace(namespace: str) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "ns/pid") == namespace:
                pids.add(int(entry.name))
        except OSError:  # the process ended while we looked
            continue
    return pids


def _pgrep(pattern: str) -> set[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return {int(pid) for pid in found.stdout.split()}


def _start_hello(sandbox: Sandbox) -> None:
    sandbox.write_unit("hello.service", HELLO)
    sandbox.daemon_reload()
    assert sandbox.start("hello.service").returncode == 0


def test_it_boots_a_running_manager_as_pid_1(sandbox: Sandbox) -> None:
    assert sandbox.systemctl("is-system-running").stdout.strip() == "running"
    assert sandbox.run("cat", "/proc/1/comm").stdout.strip() == "systemd"
    assert Path(f"/proc/{sandbox.pid}/comm").read_text().strip() == "systemd"


def test_it_runs_a_written_unit_and_journals_its_output(sandbox: Sandbox) -> None:
    _start_hello(sandbox)

    assert sandbox.unit_property("hello.service", "Result") == "success"
    sandbox.wait_for(
        lambda: "hello from the sandbox" in sandbox.journal("-u", "hello.service", "-o", "cat"),
        timeout=10,
        what="hello.service's output in the sandbox journal",
    )


def test_it_returns_a_failed_start_instead_of_raising(sandbox: Sandbox) -> None:
    sandbox.write_unit("fail.service", "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'exit 3'\n")
    sandbox.daemon_reload()

    assert sandbox.start("fail.service").returncode != 0
    assert sandbox.unit_property("fail.service", "ExecMainStatus") == "3"
    assert sandbox.systemd_run("false", wait=True).returncode != 0


def test_it_keeps_files_written_inside_off_the_host(sandbox: Sandbox) -> None:
    name = f"observer-sandbox-test-{uuid.uuid4().hex}"
    sandbox.run("sh", "-c", f"echo inside > /etc/{name}")
    sandbox.write_unit(f"{name}.service", HELLO)

    assert (sandbox.root / "etc" / name).read_text() == "inside\n"
    assert not Path("/etc", name).exists()
    assert not Path("/etc/systemd/system", f"{name}.service").exists()
    # the sandbox's journal lives on its own file system, not in the host's /var/log/journal
    assert sandbox.journal_dir.stat().st_dev != Path("/var/log/journal").stat().st_dev


def test_it_keeps_a_working_manager_after_daemon_reexec_and_a_dbus_restart(
    sandbox: Sandbox,
) -> None:
    pid = sandbox.pid
    sandbox.daemon_reexec()
    sandbox.restart_dbus()

    assert sandbox.pid == pid
    assert sandbox.systemctl("is-system-running").stdout.strip() == "running"
    _start_hello(sandbox)
    assert sandbox.unit_property("hello.service", "Result") == "success"


async def test_it_serves_the_managers_bus_api_to_the_host_after_a_dbus_restart(
    sandbox: Sandbox,
) -> None:
    sandbox.restart_dbus()
    bus = await MessageBus(bus_address=sandbox.bus_address).connect()
    try:
        reply = await bus.call(
            Message(
                destination="org.freedesktop.systemd1",
                path="/org/freedesktop/systemd1",
                interface="org.freedesktop.DBus.Properties",
                member="Get",
                signature="ss",
                body=["org.freedesktop.systemd1.Manager", "Version"],
            )
        )
    finally:
        bus.disconnect()

    assert reply is not None
    assert reply.message_type == MessageType.METHOD_RETURN, reply.body
    assert reply.body[0].value.split(".")[0].isdigit()


def test_it_lets_a_host_reader_open_its_journal(sandbox: Sandbox) -> None:
    _start_hello(sandbox)

    def messages() -> list[str]:
        reader = journal.Reader(path=str(sandbox.journal_dir))
        try:
            reader.add_match(_SYSTEMD_UNIT="hello.service")
            return [entry["MESSAGE"] for entry in reader]
        finally:
            reader.close()

    found = sandbox.wait_for(messages, timeout=10, what="hello.service's output via a Reader")
    assert found == ["hello from the sandbox"]


def test_it_boots_side_by_side_sandboxes_that_share_no_units(sandbox: Sandbox) -> None:
    with Sandbox.boot() as other:
        for each in (sandbox, other):
            each.systemd_run("sleep", "infinity", unit="sleeper")
        sandbox.systemctl("stop", "sleeper.service")

        assert other.unit_property("sleeper.service", "ActiveState") == "active"
        assert sandbox.unit_property("sleeper.service", "ActiveState") == "inactive"


def test_it_leaves_no_process_behind_after_close(sandbox: Sandbox) -> None:
    namespace = os.readlink(f"/proc/{sandbox.pid}/ns/pid")
    inside = _pids_in_pid_namespace(namespace)
    assert sandbox.pid in inside
    assert sandbox.pid in _pgrep("systemd --system")

    sandbox.close()
    sandbox.close()  # closing twice is harmless

    assert not Path(f"/proc/{sandbox.pid}").exists()
    assert not _pids_in_pid_namespace(namespace)
    assert not sandbox.cgroup.exists()  # the kernel refuses to remove a cgroup still in use
    assert not inside & _pgrep("systemd --system")


def test_it_tears_down_a_sandbox_that_does_not_boot_in_time() -> None:
    sandbox_or_skip()
    created: list[Sandbox] = []

    class RecordingSandbox(Sandbox):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            created.append(self)

    with pytest.raises(SandboxError, match="timed out waiting for"):
        RecordingSandbox.boot(timeout=0)

    assert len(created) == 1
    assert not created[0].cgroup.exists()  # the kernel refuses to remove a cgroup still in use


@pytest.mark.timeout(900)  # a root not cached yet is built first (tests/roots.sh)
@pytest.mark.parametrize("machine", [False, True], ids=["container", "machine"])
@pytest.mark.parametrize("suite", list(SUITES))
def test_it_boots_the_root_of_each_release_with_observer_inside(suite: str, machine: bool) -> None:
    root = root_or_skip(suite)
    with Sandbox.boot(root=root, machine=machine) as sandbox:
        version = sandbox.run("systemctl", "--version").stdout.split()[1]
        environ = Path(f"/proc/{sandbox.pid}/environ").read_bytes().split(b"\0")
        virt = sandbox.run("systemd-detect-virt", "--container", check=False).stdout.strip()
        observer = sandbox.run("/opt/observer/venv/bin/observer", "--version").stdout

        assert sandbox.state() == "running"
        assert version == str(SUITES[suite])
        assert observer.startswith("observer ")
        if machine:
            assert b"container=other" not in environ
            assert not (sandbox.root / ".dockerenv").exists()
            assert not (sandbox.root / "run/systemd/container").exists()
            assert sandbox.unit_property("systemd-udevd.service", "LoadState") == "masked"
            # The one container marker the sandbox cannot hide: its cgroup namespace's root
            # is a nested cgroup (src/basic/virt.c running_in_cgroupns, 252 to 262).
            assert virt == "container-other"
        else:
            assert b"container=other" in environ
            assert virt == "container-other"
