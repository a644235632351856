"""Records as each systemd release writes them (captured from roots booted by tests/roots.sh)."""

from __future__ import annotations

import pytest

from observer.jobs.apply import calendar_times
from observer.recording.events import JobKind, Pid1Record
from observer.recording.journal import parse_entry

PREVIOUS = "d076dac268c54a6bb9b9f2dd93d17167"
# MESSAGE of the skip record, release by release (src/core/job.c, job_emit_done_message).
SKIPS = {
    252: b"cond.service was skipped because of an unmet condition check "
    b"(ConditionPathExists=/tmp/flag).",
    254: b"cond.service was skipped because of an unmet condition check "
    b"(ConditionPathExists=/tmp/flag).",
    257: b"cond.service skipped, unmet condition check ConditionPathExists=/tmp/flag",
    262: b"cond.service skipped, unmet condition check ConditionPathExists=/tmp/flag",
}
# systemd-analyze calendar --iterations=3 daily, on 252 and on 254 to 262.
CALENDAR_252 = """\
  Original form: daily
Normalized form: *-*-* 00:00:00
    Next elapse: Mon 2026-12-07 00:00:00 UTC
       From now: 13h left
       Iter. #2: Tue 2026-12-08 00:00:00 UTC
       From now: 1 day 13h left
       Iter. #3: Wed 2026-12-09 00:00:00 UTC
       From now: 2 days left
"""
CALENDAR_254 = CALENDAR_252.replace("       Iter. #", "   Iteration #")


def pid1(message_id: str, message: bytes, **fields: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "__REALTIME_TIMESTAMP": 1_796_551_935_396_875,
        "_PID": 1,
        "_BOOT_ID": b"57da6d8df69841ecbdc396ad0e7c5323",
        "MESSAGE_ID": message_id.encode(),
        "MESSAGE": message,
        "_SYSTEMD_UNIT": b"init.scope",
    }
    entry.update(fields)
    return entry


def skip_record(version: int, invocation_id: str) -> dict[str, object]:
    return pid1(
        "39f53479d3a045ac8e11786248231fbf",
        SKIPS[version],
        UNIT=b"cond.service",
        INVOCATION_ID=invocation_id.encode(),
        JOB_TYPE=b"start",
        JOB_RESULT=b"done",
        JOB_ID=b"412",
        CODE_FUNC=b"job_emit_done_message",
    )


@pytest.mark.parametrize("version", sorted(SKIPS))
@pytest.mark.parametrize("invocation_id", ["", PREVIOUS], ids=["unloaded", "previous-run"])
def test_a_skipped_start_is_a_skip_on_every_release_never_a_start_of_the_run_before(
    version: int, invocation_id: str
) -> None:
    event = parse_entry(skip_record(version, invocation_id))

    assert isinstance(event, Pid1Record)
    assert event.kind is JobKind.CONDITION_UNMET
    assert event.reason == "ConditionPathExists=/tmp/flag"


@pytest.mark.parametrize(
    "message",
    [
        b"cond.service was skipped because no trigger condition checks were met.",
        b"cond.service skipped, no trigger condition checks were met",
    ],
)
def test_a_start_skipped_because_no_triggering_condition_held_is_a_skip(message: bytes) -> None:
    entry = skip_record(257, PREVIOUS) | {"MESSAGE": message}

    event = parse_entry(entry)

    assert isinstance(event, Pid1Record)
    assert (event.kind, event.reason) == (
        JobKind.CONDITION_UNMET,
        "no trigger condition checks were met",
    )


@pytest.mark.parametrize(
    ("message_id", "message", "userspace"),
    [
        # a container's start-up, 252 to 262
        ("eed00a68ffd84e31882105fd973abdd1", b"Startup finished in 167ms.", b"167402"),
        # a machine's start-up (src/core/manager.c, manager_notify_finished, v252)
        (
            "b07a249cd024414a82dd00cd181378ff",
            b"Startup finished in 1.2s (kernel) + 2.3s (userspace) = 3.5s.",
            b"2300000",
        ),
        # a soft-reboot, seen on 257 and 262 in a container
        (
            "b07a249cd024414a82dd00cd181378ff",
            b"Soft-reboot finished in 374ms, counter is now at 1.",
            b"374839",
        ),
    ],
    ids=["container", "machine", "soft-reboot"],
)
def test_every_managers_start_up_record_is_a_start_up(
    message_id: str, message: bytes, userspace: bytes
) -> None:
    event = parse_entry(pid1(message_id, message, USERSPACE_USEC=userspace))

    assert isinstance(event, Pid1Record)
    assert event.kind is JobKind.STARTUP_FINISHED
    assert event.userspace_usec == int(userspace)


def test_the_memory_peak_of_the_consumed_record_is_read_from_255_on() -> None:
    entry = pid1(
        "ae8f7b866b0347b9af31fe1c80b127c0",
        b"burn.service: Consumed 1.203s CPU time, 31.4M memory peak.",
        UNIT=b"burn.service",
        INVOCATION_ID=PREVIOUS.encode(),
        CPU_USAGE_NSEC=b"1203000000",
        MEMORY_PEAK=b"32931840",
        MEMORY_SWAP_PEAK=b"0",
    )

    event = parse_entry(entry)

    assert isinstance(event, Pid1Record)
    assert (event.kind, event.cpu_usec, event.memory_peak_bytes) == (
        JobKind.RESOURCES,
        1_203_000,
        32_931_840,
    )


@pytest.mark.parametrize("figure", [b"18446744073709551615", b"9223372036854775808"])
def test_a_figure_systemd_did_not_account_is_none_never_a_huge_number(figure: bytes) -> None:
    entry = pid1(
        "ae8f7b866b0347b9af31fe1c80b127c0",
        b"burn.service: Consumed 1.203s CPU time.",
        UNIT=b"burn.service",
        INVOCATION_ID=PREVIOUS.encode(),
        CPU_USAGE_NSEC=figure,
        IO_METRIC_READ_BYTES=figure,
        MEMORY_PEAK=figure,
    )

    event = parse_entry(entry)

    assert isinstance(event, Pid1Record)
    assert (event.cpu_usec, event.io_read_bytes, event.memory_peak_bytes) == (None, None, None)


@pytest.mark.parametrize("output", [CALENDAR_252, CALENDAR_254], ids=["252", "254-262"])
def test_the_next_times_of_a_calendar_are_read_on_every_release(output: str) -> None:
    assert calendar_times(output) == [
        "Mon 2026-12-07 00:00:00 UTC",
        "Tue 2026-12-08 00:00:00 UTC",
        "Wed 2026-12-09 00:00:00 UTC",
    ]
