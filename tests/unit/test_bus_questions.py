"""What the daemon asks systemd over D-Bus about a run, and what it leaves unasked: a unit
systemd unloaded (a transient one as its run ends) would be loaded again as a stub (LoadState
not-found) to answer, which tells nothing of the run and costs both sides."""

from __future__ import annotations

import asyncio
from typing import Any

from dbus_fast import Message, MessageType, Variant

from observer.recording.bus import MANAGER, MANAGER_PATH, PROPERTIES, SystemdBus
from observer.recording.definitions import DefinitionSources

INVOCATION = bytes(range(16))
BACKUP_PATH = "/org/freedesktop/systemd1/unit/backup_2eservice"


class AnsweringBus(SystemdBus):
    """A bus with no connection: each call is noted and answered in turn."""

    def __init__(self, replies: list[list[Any]]) -> None:
        super().__init__(None, lambda event: None)
        self.replies = replies
        self.asked: list[str] = []

    async def _send_call(self, *args: Any) -> list[Any]:
        self.asked.append(str(args[-1][-1] if args[-1] else args[3]))
        return self.replies.pop(0)


def manager(member: str, signature: str, *body: object) -> Message:
    return Message(
        message_type=MessageType.SIGNAL, path=MANAGER_PATH, interface=MANAGER, member=member,
        signature=signature, body=list(body),
    )  # fmt: skip


def unit_changed() -> Message:
    return Message(
        message_type=MessageType.SIGNAL, path=BACKUP_PATH, interface=PROPERTIES,
        member="PropertiesChanged", signature="sa{sv}as",
        body=["org.freedesktop.systemd1.Unit", {"ActiveState": Variant("s", "active")}, []],
    )  # fmt: skip


REMOVED = manager("UnitRemoved", "so", "backup.service", BACKUP_PATH)
COST: list[list[Any]] = [
    [Variant("ay", INVOCATION)],
    [{"CPUUsageNSec": Variant("t", 2_000_000_000)}],
]
DEFINITION: list[list[Any]] = [
    [Variant("s", "/etc/systemd/system/backup.service")],
    [Variant("as", [])],
    [Variant("a(sasbttttuii)", [["/bin/true", ["/bin/true"], False, 0, 0, 0, 0, 0, 0, 0]])],
]


def cost(bus: SystemdBus) -> float | None:
    run = asyncio.run(bus.run_cost("backup.service", INVOCATION.hex(), "web1"))
    return None if run is None else run.cpu_seconds


def test_the_cost_of_a_unit_systemd_unloaded_is_not_asked_its_definition_is() -> None:
    """Its cost went with it; a unit with a file loads again from it to answer (seen in CI:
    a oneshot unloaded before its question came got no definition at all)."""
    bus = AnsweringBus([*DEFINITION])
    bus._handle(REMOVED)

    assert cost(bus) is None
    assert asyncio.run(bus.definition_sources("backup.service")) == DefinitionSources(
        "/etc/systemd/system/backup.service", (), (("/bin/true",),)
    )
    assert bus.asked == ["FragmentPath", "DropInPaths", "ExecStart"]


def test_a_unit_that_changes_again_is_loaded_and_asked_about() -> None:
    bus = AnsweringBus([*COST, *DEFINITION])
    bus._handle(REMOVED)
    bus._handle(unit_changed())  # its next run begins

    assert cost(bus) == 2.0
    assert asyncio.run(bus.definition_sources("backup.service")) == DefinitionSources(
        "/etc/systemd/system/backup.service", (), (("/bin/true",),)
    )
    assert bus.asked == ["InvocationID", "org.freedesktop.systemd1.Service",
                         "FragmentPath", "DropInPaths", "ExecStart"]  # fmt: skip


def test_units_removed_by_a_daemon_reload_are_still_asked_about() -> None:
    """daemon-reload removes every unit and loads it again at once (no change to signal)."""
    bus = AnsweringBus([*COST])
    for message in (manager("Reloading", "b", True), REMOVED, manager("Reloading", "b", False)):
        bus._handle(message)

    assert cost(bus) == 2.0


def test_a_definition_answered_by_a_stub_is_no_definition() -> None:
    """Unloaded after the question left: systemd answers for a stub it loads to answer."""
    bus = AnsweringBus([[Variant("s", "")], [Variant("as", [])], [Variant("a(sasbttttuii)", [])]])

    assert asyncio.run(bus.definition_sources("backup.service")) is None
