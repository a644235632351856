"""Turning raw journal entries into events."""

from __future__ import annotations

from observer.journal import parse_entry
from observer.model import JobKind, OutputLine, Pid1Record

INV = "0f5c1e6b6a2b4a0e9d7c3b2a19080706"


def pid1(message_id: str, message: bytes = b"", **fields: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "__REALTIME_TIMESTAMP": 1_790_000_000_000_000,
        "_PID": 1,
        "MESSAGE_ID": message_id.encode(),
        "MESSAGE": message,
        "UNIT": b"backup.service",
        "INVOCATION_ID": INV.encode(),
        "_SYSTEMD_UNIT": b"init.scope",
    }
    entry.update(fields)
    return entry


def test_it_reads_the_exit_status_pid1_logs_for_a_failed_main_process() -> None:
    event = parse_entry(
        pid1("98e322203f7a4ed290d09fe03c09fe15", EXIT_CODE=b"exited", EXIT_STATUS=4)
    )

    assert isinstance(event, Pid1Record)
    assert (event.kind, event.unit, event.exit_code, event.exit_status) == (
        JobKind.MAIN_EXITED,
        "backup.service",
        "exited",
        4,
    )


def test_it_tells_a_oneshot_finishing_from_a_service_starting() -> None:
    started = parse_entry(pid1("39f53479d3a045ac8e11786248231fbf", b"Started backup.service."))
    finished = parse_entry(pid1("39f53479d3a045ac8e11786248231fbf", b"Finished backup.service."))

    assert isinstance(started, Pid1Record)
    assert isinstance(finished, Pid1Record)
    assert (started.kind, finished.kind) == (JobKind.STARTED, JobKind.FINISHED)


def test_it_accepts_a_message_id_written_as_a_uuid_with_dashes() -> None:
    event = parse_entry(pid1("d9b373ed-55a6-4feb-8242-e02dbe79a49c", UNIT_RESULT=b"timeout"))

    assert isinstance(event, Pid1Record)
    assert (event.kind, event.unit_result) == (JobKind.FAILED, "timeout")


def test_it_keeps_the_raw_bytes_of_a_units_output() -> None:
    event = parse_entry(
        {
            "__REALTIME_TIMESTAMP": 5,
            "_PID": 4242,
            "MESSAGE": b"\xff\xfe not utf-8",
            "PRIORITY": 3,
            "_SYSTEMD_UNIT": b"backup.service",
            "_SYSTEMD_INVOCATION_ID": INV.encode(),
        }
    )

    assert event == OutputLine(INV, "backup.service", 5, 3, b"\xff\xfe not utf-8")


def test_it_ignores_entries_that_are_not_about_a_service_run() -> None:
    kernel = {"__REALTIME_TIMESTAMP": 5, "MESSAGE": b"usb 1-1: new device"}
    scope = {
        "__REALTIME_TIMESTAMP": 5,
        "_PID": 99,
        "MESSAGE": b"hi",
        "_SYSTEMD_UNIT": b"session-1.scope",
        "_SYSTEMD_INVOCATION_ID": INV.encode(),
    }
    unknown_record = pid1("00000000000000000000000000000000")

    assert [parse_entry(e) for e in (kernel, scope, unknown_record)] == [None, None, None]
