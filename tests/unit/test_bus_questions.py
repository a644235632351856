"""What the daemon asks systemd over D-Bus about a run, and what it leaves unasked: a unit
systemd unloaded (a transient one as its run ends) would be loaded again as a stub (LoadState
not-found) to answer, which tells nothing of the run and costs both sides."""

from __future__ import annotations

import asyncio
from typing import Any

from dbus_fast import Message, MessageType, Variant

from observer.bounds import UINT64_MAX
from observer.recording.bus import (
    MANAGER,
    MANAGER_PATH,
    PROPERTIES,
    QUESTION_CALLS,
    BusError,
    SystemdBus,
)
from observer.recording.definitions import DefinitionSources

INVOCATION = bytes(range(16))
BACKUP_PATH = "/org/freedesktop/systemd1/unit/backup_2eservice"


class AnsweringBus(SystemdBus):
    """A bus with no connection: each call is noted and answered in turn (an error given as
    a reply is raised, as the connection raises systemd's errors)."""

    def __init__(self, replies: list[Any]) -> None:
        super().__init__(None, lambda event: None)
        self.replies = replies
        self.asked: list[str] = []

    async def _send_call(self, *args: Any) -> list[Any]:
        self.asked.append(str(args[-1][-1] if args[-1] else args[3]))
        reply = self.replies.pop(0)
        if isinstance(reply, BusError):
            raise reply
        return list(reply)


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
UNKNOWN = BusError("org.freedesktop.DBus.Error.UnknownProperty", "Unknown property")
# The run's invocation, then CPUUsageNSec, IOReadBytes, IOWriteBytes and MemoryPeak as 252
# answers them: CPU accounted, IO not (2^64-1), no peak memory at all.
COST: list[Any] = [
    [Variant("ay", INVOCATION)],
    [Variant("t", 2_000_000_000)],
    [Variant("t", UINT64_MAX)],
    [Variant("t", UINT64_MAX)],
    UNKNOWN,
]
COST_ASKED = ["InvocationID", "CPUUsageNSec", "IOReadBytes", "IOWriteBytes", "MemoryPeak"]
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
    assert bus.asked == [*COST_ASKED, "FragmentPath", "DropInPaths", "ExecStart"]


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


def test_a_runs_cost_is_each_figure_systemd_has_and_none_it_does_not() -> None:
    """Asked one by one, not with GetAll (300 properties of the Service interface): a figure
    systemd does not know (MemoryPeak before 255) or did not account (2^64-1) is null."""
    bus = AnsweringBus([
        [Variant("ay", INVOCATION)], [Variant("t", 1_500_000_000)], [Variant("t", 4096)],
        [Variant("t", UINT64_MAX)], [Variant("t", 7 * 2**20)],
    ])  # fmt: skip
    run = asyncio.run(bus.run_cost("backup.service", INVOCATION.hex(), "web1"))

    assert run is not None
    assert (run.cpu_seconds, run.io_read_bytes, run.io_write_bytes, run.memory_peak_bytes) == (
        1.5,
        4096,
        None,
        7 * 2**20,
    )
    assert bus.asked == COST_ASKED
    assert (
        cost(AnsweringBus([[Variant("ay", INVOCATION)], UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN]))
        is None
    )


def test_the_cost_of_another_invocation_is_not_kept() -> None:
    """The unit runs again already: its figures are of the new run (asked with the
    invocation, in the same breath)."""
    bus = AnsweringBus([[Variant("ay", bytes(16))], *COST[1:]])

    assert cost(bus) is None
    assert bus.asked == COST_ASKED


def test_a_definition_without_a_command_is_its_files() -> None:
    """Not a service (ExecStart unknown): its files alone; a refused FragmentPath: none."""
    bus = AnsweringBus([[Variant("s", "/etc/systemd/system/a.socket")], [Variant("as", [])],
                        UNKNOWN])  # fmt: skip
    refused = AnsweringBus([UNKNOWN, [Variant("as", [])], [Variant("a(sasbttttuii)", [])]])

    assert asyncio.run(bus.definition_sources("a.socket")) == DefinitionSources(
        "/etc/systemd/system/a.socket", (), ()
    )
    assert asyncio.run(refused.definition_sources("backup.service")) is None


class CountingBus(SystemdBus):
    """A bus whose every call waits a turn of the loop before its answer: how many calls
    were under way at once (one after another: one; sent together: all of them)."""

    def __init__(self, replies: list[Any]) -> None:
        super().__init__(None, lambda event: None)
        self.replies = replies
        self.waiting = 0
        self.most_waiting = 0

    async def _send_call(self, *args: Any) -> list[Any]:
        self.waiting += 1
        await asyncio.sleep(0)  # the answer comes later: other calls may be sent meanwhile
        self.most_waiting = max(self.most_waiting, self.waiting)
        self.waiting -= 1
        return list(self.replies.pop(0))


def test_a_questions_calls_are_sent_together_and_never_more_than_question_calls() -> None:
    """A run's definition, and its invocation with its cost figures, go out at once, not one
    round trip after another; QUESTION_CALLS bounds them (dbus-daemon's 128 pending replies
    a connection hold MAX_CALLS_IN_FLIGHT questions of that many)."""
    definition = CountingBus([[Variant("s", "/etc/systemd/system/backup.service")],
                              [Variant("as", [])], [Variant("a(sasbttttuii)", [])]])  # fmt: skip
    figures = CountingBus([[Variant("ay", INVOCATION)], *[[Variant("t", 1)]] * 4])

    asyncio.run(definition.definition_sources("backup.service"))
    assert cost(figures) is not None

    assert definition.most_waiting == 3
    assert figures.most_waiting == 5 <= QUESTION_CALLS
