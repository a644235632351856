"""Users' own units: their names in the store, their journal records, whose units a reader sees."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from observer.recording.correlator import Correlator
from observer.recording.events import JobDetails, JobKind, OutputLine, Pid1Record, UnitProperties
from observer.recording.journal import JournalScope, parse_entry
from observer.users import Selection, qualify, qualify_event, split, user_names

INV = "1223d6aa32cc43b8814db9238011d34a"
ALICE = JournalScope(users=lambda uid: "alice" if uid == 1001 else None, user_journals=True)
ALICES_OWN = JournalScope(system=False, users=ALICE.users, user_journals=True)


def user_manager(message_id: str, message: bytes = b"", **fields: object) -> dict[str, object]:
    """A record as alice's manager (uid 1001) writes it (seen on systemd 252)."""
    entry: dict[str, object] = {
        "__REALTIME_TIMESTAMP": 1_796_228_562_016_183,
        "_PID": 107,
        "_UID": b"1001",
        "MESSAGE_ID": message_id.encode(),
        "MESSAGE": message,
        "USER_UNIT": b"backup.service",
        "USER_INVOCATION_ID": INV.encode(),
        "_SYSTEMD_UNIT": b"user@1001.service",
        "_SYSTEMD_USER_UNIT": b"init.scope",
        "_SYSTEMD_OWNER_UID": b"1001",
        "_SYSTEMD_INVOCATION_ID": b"69f4025eccd644fd8f75dec26c848ae4",
    }
    entry.update(fields)
    return entry


def users_line(uid: bytes = b"1001") -> dict[str, object]:
    return {
        "__REALTIME_TIMESTAMP": 1_796_228_562_017_000,
        "_PID": 4242,
        "_UID": uid,
        "MESSAGE": b"backing up",
        "_SYSTEMD_UNIT": f"user@{uid.decode()}.service".encode(),
        "_SYSTEMD_USER_UNIT": b"backup.service",
        "_SYSTEMD_OWNER_UID": uid,
        "_SYSTEMD_INVOCATION_ID": INV.encode(),
    }


@given(st.from_regex(r"[a-z_][a-z0-9_-]{0,30}", fullmatch=True), st.from_regex(
    r"[A-Za-z0-9:_.@\\-]{1,60}\.service", fullmatch=True
))  # fmt: skip
def test_a_users_unit_name_splits_back_into_user_and_unit(user: str, unit: str) -> None:
    assert split(qualify(user, unit)) == (user, unit)
    assert split(qualify(None, unit)) == (None, unit)
    assert qualify(user, unit) != unit


def test_a_user_managers_record_names_the_users_unit() -> None:
    event = parse_entry(
        user_manager("98e322203f7a4ed290d09fe03c09fe15", EXIT_CODE=b"exited", EXIT_STATUS=3),
        ALICE,
    )

    assert isinstance(event, Pid1Record)
    assert (event.kind, event.unit, event.invocation_id, event.exit_status) == (
        JobKind.MAIN_EXITED,
        "alice/backup.service",
        INV,
        3,
    )


def test_a_user_units_output_is_found_by_its_invocation_id() -> None:
    event = parse_entry(users_line(), ALICE)

    assert isinstance(event, OutputLine)
    assert (event.unit, event.invocation_id, event.message) == (
        "alice/backup.service",
        INV,
        b"backing up",
    )


def test_users_not_observed_and_the_system_only_scope_read_nothing_of_users() -> None:
    record = user_manager("d9b373ed55a64feb8242e02dbe79a49c", UNIT_RESULT=b"exit-code")
    assert parse_entry(record) is None
    assert parse_entry(users_line()) is None
    assert parse_entry(users_line(b"1002"), ALICE) is None


def test_a_users_own_daemon_reads_neither_pid1_nor_the_system_units_output() -> None:
    pid1 = {
        "__REALTIME_TIMESTAMP": 1,
        "_PID": 1,
        "MESSAGE_ID": b"98e322203f7a4ed290d09fe03c09fe15",
        "UNIT": b"backup.service",
        "INVOCATION_ID": INV.encode(),
    }
    system_line = {"__REALTIME_TIMESTAMP": 1, "_PID": 9, "_SYSTEMD_UNIT": b"backup.service"}
    assert parse_entry(pid1, ALICES_OWN) is None
    assert parse_entry(system_line, ALICES_OWN) is None
    assert isinstance(parse_entry(users_line(), ALICES_OWN), OutputLine)


def test_a_user_managers_start_up_closes_runs_only_for_the_users_own_daemon() -> None:
    startup = user_manager("eed00a68ffd84e31882105fd973abdd1", USERSPACE_USEC=b"1000")
    assert parse_entry(startup, ALICE) is None
    event = parse_entry(startup, ALICES_OWN)
    assert isinstance(event, Pid1Record)
    assert event.kind is JobKind.STARTUP_FINISHED


def test_a_user_managers_bus_events_get_the_stored_names() -> None:
    timer = qualify_event(UnitProperties("backup.timer", "Timer", {"Unit": "backup.service"}), "a")
    job = qualify_event(JobDetails(7, "backup.service", "start", "backup.timer"), "a")

    assert isinstance(timer, UnitProperties)
    assert isinstance(job, JobDetails)
    assert (timer.unit, timer.values["Unit"]) == ("a/backup.timer", "a/backup.service")
    assert (job.unit, job.trigger) == ("a/backup.service", "backup.timer")


def test_user_names_come_from_a_passwd_file_and_a_uid_without_one_is_its_number(
    tmp_path: Path,
) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n")
    names = user_names(lambda user: user != "bob", passwd)
    assert names(1001) == "alice"
    assert names(1002) == "1002"
    passwd.write_text(passwd.read_text() + "bob:x:1002:1002::/home/bob:/bin/sh\n")
    assert names(1002) is None  # created since, and not observed


def test_a_reader_sees_the_systems_units_and_their_own_unless_they_pick_a_user() -> None:
    root, alice, picked = Selection(), Selection(reader="alice"), Selection(user="bob")

    assert [root.shows(u) for u in ("backup.service", "alice/backup.service")] == [True, False]
    assert [alice.shows(u) for u in ("backup.service", "alice/x", "bob/x")] == [True, True, False]
    assert [picked.shows(u) for u in ("backup.service", "bob/x")] == [False, True]
    assert alice.keys("backup.service") == ["alice/backup.service", "backup.service"]
    assert picked.keys("backup.service") == ["bob/backup.service"]


def test_a_users_line_journald_could_not_tag_goes_to_the_users_run_started_last() -> None:
    # A process that exited before journald read its cgroup: only _UID is left.
    bare = {"__REALTIME_TIMESTAMP": 50, "_PID": 153, "_UID": b"1001", "_TRANSPORT": b"stdout"}
    line = parse_entry(bare, ALICE)
    assert isinstance(line, OutputLine)
    assert (line.unit, line.invocation_id) == ("alice/", "")
    assert parse_entry(bare) is None
    assert parse_entry({**bare, "_UID": b"1002"}, ALICE) is None

    correlator = Correlator("host1")
    for usec, unit, inv in ((10, "alice/a.service", "a" * 32), (40, "alice/b.service", "b" * 32)):
        record = Pid1Record(JobKind.STARTING, unit, inv, usec)
        correlator.feed(record)
    correlator.feed(Pid1Record(JobKind.STARTING, "backup.service", "c" * 32, 45))
    assert correlator.user_run_at("alice/", 50) == ("alice/b.service", "b" * 32)
    assert correlator.user_run_at("alice/", 20) == ("alice/a.service", "a" * 32)
    assert correlator.user_run_at("alice/", 5) is None
    assert correlator.user_run_at("bob/", 50) is None
