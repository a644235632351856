"""The events systemd's D-Bus signals stand for, decoded from messages as systemd 252 sends them."""

from __future__ import annotations

from dbus_fast import Message, MessageType, Variant

from observer.model import JobNew, JobRemoved, Reloading, UnitGone, UnitProperties
from observer.recording.bus import MANAGER, MANAGER_PATH, PROPERTIES, decode_signal

BACKUP_PATH = "/org/freedesktop/systemd1/unit/backup_2eservice"


def signal(path: str, interface: str, member: str, signature: str, body: list[object]) -> Message:
    return Message(
        message_type=MessageType.SIGNAL,
        path=path,
        interface=interface,
        member=member,
        signature=signature,
        body=body,
    )


def manager(member: str, signature: str, *body: object) -> Message:
    return signal(MANAGER_PATH, MANAGER, member, signature, list(body))


def test_each_manager_signal_observer_listens_to_becomes_its_event() -> None:
    job = "/org/freedesktop/systemd1/job/7"
    messages = [
        manager("JobNew", "uos", 7, job, "backup.service"),
        manager("JobRemoved", "uoss", 7, job, "backup.service", "done"),
        manager("UnitRemoved", "so", "backup.service", BACKUP_PATH),
        manager("Reloading", "b", True),
    ]

    assert [decode_signal(m) for m in messages] == [
        JobNew(7, "backup.service"),
        JobRemoved(7, "backup.service", "done"),
        UnitGone("backup.service"),
        Reloading(True),
    ]


def test_a_units_changed_properties_keep_their_interface_and_values() -> None:
    changed = signal(
        BACKUP_PATH,
        PROPERTIES,
        "PropertiesChanged",
        "sa{sv}as",
        ["org.freedesktop.systemd1.Unit", {"ActiveState": Variant("s", "active")}, []],
    )

    assert decode_signal(changed) == UnitProperties(
        "backup.service", "Unit", {"ActiveState": "active"}
    )


def test_signals_observer_does_not_use_decode_to_nothing() -> None:
    other_member = manager("StartupFinished", "tttttt", 1, 2, 3, 4, 5, 6)
    other_interface = signal(MANAGER_PATH, "org.example.Other", "JobNew", "uos", [7, "/x", "a"])
    not_a_unit = signal(
        MANAGER_PATH, PROPERTIES, "PropertiesChanged", "sa{sv}as",
        ["org.freedesktop.systemd1.Manager", {}, []],
    )  # fmt: skip
    foreign = signal(
        BACKUP_PATH, PROPERTIES, "PropertiesChanged", "sa{sv}as", ["org.example.Other", {}, []]
    )

    assert [decode_signal(m) for m in (other_member, other_interface, not_a_unit, foreign)] == [
        None
    ] * 4
