"""The events systemd's D-Bus signals stand for, decoded from messages as systemd 252 sends them."""

from __future__ import annotations

from dbus_fast import Message, MessageType, Variant
from hypothesis import given
from hypothesis import strategies as st

from observer.recording.bus import (
    MANAGER,
    MANAGER_PATH,
    MATCH_RULES,
    PROPERTIES,
    decode_signal,
    unit_from_path,
    unit_path,
    unwrap,
)
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


def _path_as_systemd_escapes(unit: str) -> str:
    """bus_label_escape: an ASCII letter or digit as itself (not a digit first), any other
    byte as _ and its two hex digits."""
    out = []
    for i, byte in enumerate(unit.encode("utf-8", errors="surrogateescape")):
        plain = chr(byte).isascii() and chr(byte).isalnum() and not (i == 0 and chr(byte).isdigit())
        out.append(chr(byte) if plain else f"_{byte:02x}")
    return "/org/freedesktop/systemd1/unit/" + "".join(out)


@given(st.text())
def test_a_units_object_path_is_systemds_escaping_and_reads_back(unit: str) -> None:
    assert unit_path(unit) == _path_as_systemd_escapes(unit)
    assert unit_from_path(unit_path(unit)) == unit


def test_a_units_object_path_escapes_a_digit_first_and_any_byte_not_a_letter() -> None:
    assert unit_path("backup.service") == BACKUP_PATH
    assert unit_path("2fa-sync@x y.service").removeprefix("/org/freedesktop/systemd1/unit/") == (
        "_32fa_2dsync_40x_20y_2eservice"
    )
    assert unit_path("é.service").endswith("/_c3_a9_2eservice")


def test_variants_within_variants_and_containers_become_plain_values() -> None:
    nested = Variant("v", Variant("v", Variant("t", 5)))
    value = {"a": [Variant("s", "x"), nested], "b": Variant("a{sv}", {"c": Variant("b", True)})}
    assert unwrap(value) == {"a": ["x", 5], "b": {"c": True}}
    assert unwrap(Variant("ay", b"\x01\x02")) == b"\x01\x02"
