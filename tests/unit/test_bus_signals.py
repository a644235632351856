"""The events systemd's D-Bus signals stand for, decoded from messages as systemd 252 sends them."""

from __future__ import annotations

from dbus_fast import Message, MessageType, Variant

from observer.recording.bus import MANAGER, MANAGER_PATH, MATCH_RULES, PROPERTIES, decode_signal
from observer.recording.events import JobNew, JobRemoved, Reloading, UnitGone, UnitProperties

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


def test_a_services_signals_keep_only_the_properties_a_run_is_read_from() -> None:
    unit = {
        "ActiveState": Variant("s", "inactive"),
        "InvocationID": Variant("ay", bytes(range(16))),
        "StateChangeTimestamp": Variant("t", 1_700_000_000_000_000),
        "Conditions": Variant("a(sbbsi)", [["ConditionPathExists", False, False, "/x", 1]]),
        "Job": Variant("(uo)", [0, "/"]),
    }
    service = {
        "Result": Variant("s", "exit-code"),
        "ExecMainStatus": Variant("i", 3),
        "ExecStart": Variant("a(sasbttttuii)", []),
        "MainPID": Variant("u", 0),
    }

    decoded = [
        decode_signal(signal(BACKUP_PATH, PROPERTIES, "PropertiesChanged", "sa{sv}as",
                             [f"org.freedesktop.systemd1.{interface}", values, []]))
        for interface, values in (("Unit", unit), ("Service", service))
    ]  # fmt: skip

    assert decoded == [
        UnitProperties("backup.service", "Unit", {
            "ActiveState": "inactive",
            "InvocationID": bytes(range(16)),
            "StateChangeTimestamp": 1_700_000_000_000_000,
        }),
        UnitProperties("backup.service", "Service", {"Result": "exit-code", "ExecMainStatus": 3}),
    ]  # fmt: skip


def test_the_changes_of_units_that_are_not_services_decode_to_nothing_but_timers() -> None:
    def changed(path: str, interface: str) -> Message:
        values = {"ActiveState": Variant("s", "active"), "Unit": Variant("s", "backup.service")}
        return signal(
            f"/org/freedesktop/systemd1/unit/{path}", PROPERTIES, "PropertiesChanged", "sa{sv}as",
            [f"org.freedesktop.systemd1.{interface}", values, []],
        )  # fmt: skip

    assert decode_signal(changed("system_2eslice", "Unit")) is None
    assert decode_signal(changed("systemd_2djournald_2esocket", "Socket")) is None
    timer = decode_signal(changed("backup_2etimer", "Timer"))
    assert isinstance(timer, UnitProperties)
    assert timer.values["Unit"] == "backup.service"


def test_the_match_rules_ask_for_every_signal_that_decodes_to_an_event() -> None:
    """dbus-daemon sends only what a rule matches: each decoded signal has its rule."""
    for member in ("JobNew", "JobRemoved", "UnitRemoved", "Reloading"):
        assert any(f"member='{member}'" in rule for rule in MATCH_RULES), member
    for interface in ("Unit", "Service", "Timer"):
        assert any(f"arg0='org.freedesktop.systemd1.{interface}'" in r for r in MATCH_RULES)
    assert not any("UnitNew" in rule for rule in MATCH_RULES)
