"""Turning raw journal entries into events."""

from __future__ import annotations

from observer.recording.events import JobKind, OutputLine, OutputSuppressed, Pid1Record
from observer.recording.journal import parse_entry

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


def test_it_reads_the_condition_a_skipped_start_failed_on() -> None:
    event = parse_entry(
        pid1(
            "39f53479d3a045ac8e11786248231fbf",
            b"backup.service was skipped because of an unmet condition check "
            b"(ConditionVirtualization=!container).",
            INVOCATION_ID=b"",
            JOB_ID=b"44",
            JOB_RESULT=b"done",
        )
    )
    assert isinstance(event, Pid1Record)
    assert (event.kind, event.invocation_id, event.reason, event.job_id) == (
        JobKind.CONDITION_UNMET,
        "",
        "ConditionVirtualization=!container",
        44,
    )


def test_it_reads_a_dependency_failure_without_invocation_and_the_start_limit() -> None:
    dependency = parse_entry(
        pid1("be02cf6855d2428ba40df7e9d022f03d", b"Dependency failed for backup.service.",
             INVOCATION_ID=b"", JOB_RESULT=b"dependency")
    )  # fmt: skip
    limit = parse_entry(
        {**pid1("", b"backup.service: Start request repeated too quickly."),
         "CODE_FUNC": b"unit_test_start_limit"}
    )  # fmt: skip
    assert isinstance(dependency, Pid1Record)
    assert (dependency.kind, dependency.job_result) == (JobKind.START_FAILED, "dependency")
    assert isinstance(limit, Pid1Record)
    assert limit.kind is JobKind.START_LIMIT
    # Other records without an invocation are still not about a run.
    assert parse_entry(pid1("98e322203f7a4ed290d09fe03c09fe15", INVOCATION_ID=b"")) is None


def test_it_reads_what_a_run_consumed_and_leaves_out_what_was_not_accounted() -> None:
    event = parse_entry(
        pid1("ae8f7b866b0347b9af31fe1c80b127c0", b"backup.service: Consumed 3.401s CPU time.",
             CPU_USAGE_NSEC=b"3401107000", IO_METRIC_READ_BYTES=b"18446744073709551615",
             IO_METRIC_WRITE_BYTES=b"4096")
    )  # fmt: skip
    assert isinstance(event, Pid1Record)
    assert (event.kind, event.cpu_usec, event.io_read_bytes, event.io_write_bytes) == (
        JobKind.RESOURCES,
        3_401_107,
        None,
        4096,
    )


def test_it_reads_journalds_record_of_dropped_lines_and_a_managers_start_up() -> None:
    suppressed = parse_entry(
        {
            "__REALTIME_TIMESTAMP": 1_790_000_000_000_000,
            "_PID": 74,
            "_TRANSPORT": b"driver",
            "MESSAGE_ID": b"a596d6fe7bfa4994828e72309e95d61e",
            "MESSAGE": b"Suppressed 96500 messages from chatty.service",
            "N_DROPPED": b"96500",
            "OBJECT_SYSTEMD_UNIT": b"chatty.service",
            "OBJECT_SYSTEMD_INVOCATION_ID": INV.encode(),
        }
    )
    started = parse_entry(
        pid1("eed00a68ffd84e31882105fd973abdd1", b"Startup finished in 925ms.",
             USERSPACE_USEC=b"925000", UNIT=b"", INVOCATION_ID=b"")
    )  # fmt: skip
    assert suppressed == OutputSuppressed("chatty.service", INV, 1_790_000_000_000_000, 96500)
    assert isinstance(started, Pid1Record)
    assert (started.kind, started.userspace_usec) == (JobKind.STARTUP_FINISHED, 925_000)


def test_it_ignores_an_entry_without_time_and_a_drop_not_about_a_service() -> None:
    no_time = {"_PID": 1, "MESSAGE_ID": b"39f53479d3a045ac8e11786248231fbf", "UNIT": b"a.service"}
    dropped = {
        "__REALTIME_TIMESTAMP": 5,
        "_PID": 74,
        "MESSAGE_ID": b"a596d6fe7bfa4994828e72309e95d61e",
        "N_DROPPED": b"12",
    }
    from_a_scope = {**dropped, "OBJECT_SYSTEMD_UNIT": b"session-1.scope"}
    uncounted = {**dropped, "OBJECT_SYSTEMD_UNIT": b"chatty.service", "N_DROPPED": b"many"}

    assert [parse_entry(e) for e in (no_time, dropped, from_a_scope, uncounted)] == [None] * 4
