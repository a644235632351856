"""The correlator, fed the event sequences systemd 252 was seen to send, in every order."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from observer.model import Run, Source
from observer.recording import correlator as correlator_module
from observer.recording import refused as refused_module
from observer.recording import starts as starts_module
from observer.recording.correlator import Correlator
from observer.recording.effects import CloseInterrupted, Effect, RecordRun, RecordTimer, ResolveJob
from observer.recording.events import (
    Event,
    JobDetails,
    JobKind,
    JobNew,
    JobRemoved,
    Pid1Record,
    Reloading,
    UnitGone,
    UnitProperties,
)
from observer.recording.starts import Starts
from observer.store.database import Batch, open_for_writing, write_batch
from observer.store.schema import SCHEMA

INV = bytes(range(1, 17))
INV_HEX = INV.hex()
OLD = bytes(range(101, 117))
T0 = 1_790_000_000_000_000


def service(unit: str, result: str, code: int = 0, status: int = 0, **extra: object) -> Event:
    values: dict[str, object] = {
        "Result": result,
        "ExecMainCode": code,
        "ExecMainStatus": status,
        "NRestarts": 0,
    }
    values.update(extra)
    return UnitProperties(unit, "Service", values)


def unit_state(unit: str, active: str, sub: str, inv: bytes, at: int, **extra: object) -> Event:
    values: dict[str, object] = {
        "ActiveState": active,
        "SubState": sub,
        "InvocationID": inv,
        "StateChangeTimestamp": at,
    }
    values.update(extra)
    return UnitProperties(unit, "Unit", values)


def failing_oneshot_on_bus(unit: str = "backup.service") -> list[Event]:
    """What the bus carried for a oneshot that exited 3 (a new ID shows while still inactive)."""
    return [
        JobNew(7, unit),
        service(unit, "success"),
        unit_state(unit, "inactive", "dead", INV, T0 - 5_000_000),
        service(unit, "success"),
        unit_state(unit, "activating", "start", INV, T0, InactiveExitTimestamp=T0),
        service(unit, "exit-code", 1, 3),
        unit_state(
            unit, "failed", "failed", INV, T0 + 2_000_000, InactiveEnterTimestamp=T0 + 2_000_000
        ),
        JobRemoved(7, unit, "failed"),
    ]


def failing_oneshot_in_journal(unit: str = "backup.service") -> list[Event]:
    return [
        Pid1Record(JobKind.STARTING, unit, INV_HEX, T0 + 100, job_id=7),
        Pid1Record(
            JobKind.MAIN_EXITED, unit, INV_HEX, T0 + 1_999_000, exit_code="exited", exit_status=3
        ),
        Pid1Record(JobKind.FAILED, unit, INV_HEX, T0 + 2_000_100, unit_result="exit-code"),
        Pid1Record(JobKind.START_FAILED, unit, INV_HEX, T0 + 2_000_200),
    ]


def feed_all(correlator: Correlator, events: list[Event]) -> list[Effect]:
    effects: list[Effect] = []
    for event in events:
        effects.extend(correlator.feed(event))
    return effects


def stored(tmp_path: Path, effects: list[Effect]) -> list[sqlite3.Row]:
    conn = open_for_writing(tmp_path / "observer.db")
    conn.row_factory = sqlite3.Row
    write_batch(conn, Batch(runs=[e.run for e in effects if isinstance(e, RecordRun)]))
    rows = conn.execute("SELECT * FROM runs ORDER BY id").fetchall()
    conn.close()
    return rows


def finished_runs(effects: list[Effect]) -> list[Run]:
    return [e.run for e in effects if isinstance(e, RecordRun) and e.run.finished]


def test_it_records_exit_status_of_a_failed_oneshot_from_the_bus(tmp_path: Path) -> None:
    effects = feed_all(Correlator("host"), failing_oneshot_on_bus())

    [run] = finished_runs(effects)
    assert (run.result, run.exit_code, run.exit_status) == ("exit-code", "exited", 3)
    assert (run.started_usec, run.finished_usec) == (T0, T0 + 2_000_000)
    assert run.invocation_id == INV_HEX


def test_it_does_not_end_a_run_on_the_stale_state_shown_with_a_new_invocation_id() -> None:
    correlator = Correlator("host")
    events = failing_oneshot_on_bus()[:3]  # the new ID arrives while the unit is inactive

    assert finished_runs(feed_all(correlator, events)) == []


def test_it_rebuilds_a_failed_run_from_the_journal_alone(tmp_path: Path) -> None:
    effects = feed_all(Correlator("host"), failing_oneshot_in_journal())

    [row] = stored(tmp_path, effects)
    assert (row["result"], row["exit_code"], row["exit_status"]) == ("exit-code", "exited", 3)
    assert (row["started_usec"], row["finished_usec"]) == (T0 + 100, T0 + 2_000_100)


def test_it_records_a_run_killed_by_a_signal() -> None:
    unit = "sleeper.service"
    events = [
        service(unit, "success"),
        unit_state(unit, "active", "running", INV, T0, InactiveExitTimestamp=T0),
        service(unit, "signal", 2, 9),
        unit_state(unit, "failed", "failed", INV, T0 + 5),
    ]
    [run] = finished_runs(feed_all(Correlator("host"), events))
    assert (run.result, run.exit_code, run.exit_status) == ("signal", "killed", 9)


def test_it_takes_the_trigger_from_the_job_whatever_order_the_answer_comes_in(
    tmp_path: Path,
) -> None:
    correlator = Correlator("host")
    effects = feed_all(correlator, failing_oneshot_on_bus())
    assert ResolveJob(7, "backup.service") in effects
    effects += correlator.feed(JobDetails(7, "backup.service", "start", "backup.timer"))

    [row] = stored(tmp_path, effects)
    assert row["trigger"] == "backup.timer"


def test_it_leaves_the_trigger_empty_for_a_manual_start(tmp_path: Path) -> None:
    correlator = Correlator("host")
    effects = feed_all(correlator, failing_oneshot_on_bus())
    effects += correlator.feed(JobDetails(7, "backup.service", "start", None))

    [row] = stored(tmp_path, effects)
    assert row["trigger"] is None


def test_it_links_a_trigger_through_the_job_id_of_the_journal_record(tmp_path: Path) -> None:
    correlator = Correlator("host")
    effects = correlator.feed(JobDetails(7, "backup.service", "start", "backup.timer"))
    effects += feed_all(correlator, failing_oneshot_in_journal())

    [row] = stored(tmp_path, effects)
    assert row["trigger"] == "backup.timer"


def test_a_restarted_service_gets_one_run_per_invocation_with_its_own_start() -> None:
    unit = "daemon.service"
    second = bytes(range(201, 217))
    events = [
        service(unit, "success"),
        unit_state(unit, "active", "running", INV, T0, InactiveExitTimestamp=T0),
        service(unit, "exit-code", 1, 1),
        unit_state(unit, "activating", "auto-restart", INV, T0 + 10_000_000),
        service(unit, "success", NRestarts=1),
        unit_state(unit, "activating", "start", second, T0 + 10_100_000, InactiveExitTimestamp=T0),
        unit_state(unit, "active", "running", second, T0 + 10_200_000),
    ]
    effects = feed_all(Correlator("host"), events)

    [crash] = finished_runs(effects)
    assert (crash.result, crash.exit_status, crash.finished_usec) == (
        "exit-code",
        1,
        T0 + 10_000_000,
    )
    starts = [
        e.run for e in effects if isinstance(e, RecordRun) and e.run.invocation_id == second.hex()
    ]
    assert starts[0].started_usec == T0 + 10_100_000


def test_units_removed_during_a_reload_keep_their_running_invocation() -> None:
    unit = "backup.service"
    correlator = Correlator("host")
    events = failing_oneshot_on_bus()
    feed_all(correlator, events[:5])
    feed_all(correlator, [Reloading(True), UnitGone(unit), Reloading(False)])

    [run] = finished_runs(feed_all(correlator, events[5:]))
    assert run.started_usec == T0


def test_it_ignores_units_that_are_not_observed() -> None:
    correlator = Correlator("host", observes=lambda unit: unit != "backup.service")

    assert feed_all(correlator, failing_oneshot_on_bus() + failing_oneshot_in_journal()) == []


def test_it_records_a_timer_schedule_for_the_service_it_starts() -> None:
    correlator = Correlator("host")
    effects = correlator.feed(
        UnitProperties(
            "nightly.timer",
            "Timer",
            {"Unit": "backup.service", "NextElapseUSecRealtime": T0, "LastTriggerUSec": T0 - 1},
        )
    )
    [effect] = effects
    assert isinstance(effect, RecordTimer)
    assert (effect.timer.service, effect.timer.next_elapse_usec) == ("backup.service", T0)


@st.composite
def interleavings(draw: st.DrawFn) -> list[Event]:
    """The bus and the journal stream, merged in any order that keeps each stream's own."""
    bus, journal = failing_oneshot_on_bus(), failing_oneshot_in_journal()
    journal.insert(0, JobDetails(7, "backup.service", "start", "backup.timer"))
    picks = draw(st.permutations([0] * len(bus) + [1] * len(journal)))
    merged: list[Event] = []
    for pick in picks:
        merged.append(bus.pop(0) if pick == 0 else journal.pop(0))
    return merged


@settings(max_examples=150, deadline=None)
@given(events=interleavings())
def test_the_stored_run_is_the_same_whatever_order_the_sources_report_it(
    events: list[Event],
) -> None:
    effects = feed_all(Correlator("host"), events)
    runs = [e.run for e in effects if isinstance(e, RecordRun)]
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    conn.executescript(SCHEMA)
    write_batch(conn, Batch(runs=runs))
    [row] = conn.execute("SELECT * FROM runs").fetchall()
    assert (row["result"], row["exit_code"], row["exit_status"]) == ("exit-code", "exited", 3)
    assert row["trigger"] == "backup.timer"
    assert row["started_usec"] == T0
    assert row["finished_usec"] in (T0 + 2_000_000, T0 + 2_000_100)


@st.composite
def jobs_and_starts(draw: st.DrawFn) -> list[Event]:
    """Runs of three units given jobs from the bus (JobNew, then the new invocation) or
    from the journal ("Starting" with its JOB_ID), earlier runs' ends, and refused starts
    with their jobs, some sharing a job ID, more of them than the correlator remembers."""
    events: list[Event] = []
    begun: list[tuple[str, str]] = []
    for n in range(draw(st.integers(0, 40))):
        unit = f"u{draw(st.integers(0, 2))}.service"
        job = draw(st.integers(1, 12))
        inv = n.to_bytes(16, "big")
        how = draw(st.sampled_from(["bus", "journal", "condition", "start limit", "end"]))
        if how == "end" and begun:  # an earlier run's end, read late: it is touched again
            ended_unit, ended = draw(st.sampled_from(begun))
            events.append(Pid1Record(JobKind.DEACTIVATED, ended_unit, ended, T0 + n))
        elif how == "bus":
            begun.append((unit, inv.hex()))
            events += [JobNew(job, unit), unit_state(unit, "activating", "start", inv, T0 + n)]
        elif how in ("journal", "end"):
            begun.append((unit, inv.hex()))
            events.append(Pid1Record(JobKind.STARTING, unit, inv.hex(), T0 + n, job_id=job))
        elif how == "condition":  # at times the same record again (a journal read twice)
            at = T0 + draw(st.sampled_from([n, n % 3]))
            events.append(Pid1Record(JobKind.CONDITION_UNMET, unit, "", at, job_id=job))
        else:  # refused, then its job named by the "Failed to start" after it
            limit = Pid1Record(JobKind.START_LIMIT, unit, "", T0 + n)
            failed = Pid1Record(JobKind.START_FAILED, unit, inv.hex(), T0 + n, job_id=job)
            events += [limit, failed]
    return events


@settings(max_examples=200, deadline=None)
@given(events=jobs_and_starts())
def test_the_runs_and_refusals_of_a_job_or_unit_are_those_a_walk_over_all_finds(
    events: list[Event],
) -> None:
    correlator = Correlator("host")
    refused = correlator._refused
    memory = mock.patch.object(correlator_module, "_MEMORY", 16)
    with memory, mock.patch.object(refused_module, "_MEMORY", 8):
        for event in events:
            correlator.feed(event)
            for job in range(1, 13):
                walked = [i for i in correlator._invocations.values() if i.job_id == job]
                assert sorted(map(id, correlator.invocations_of_job(job))) == sorted(
                    map(id, walked)
                )
                skips = [s for s in refused.skips.values() if s.job_id == job]
                untriggered = [s for s in skips if s.run.trigger is None]
                assert sorted(map(id, refused.of_job(job))) == sorted(map(id, untriggered))
            for unit in ("u0.service", "u1.service", "u2.service"):
                runs = [i for i in correlator._invocations.values() if i.unit == unit]
                assert correlator.runs_of_unit(unit) == runs
                newest = [s for s in refused.skips.values() if s.run.unit == unit][-1:]
                untriggered_walked = next((s for s in newest if s.run.trigger is None), None)
                assert refused.newest_untriggered(unit) is untriggered_walked


def test_a_job_s_trigger_reaches_its_run_among_thousands_remembered() -> None:
    correlator = Correlator("host")
    for n in range(5000):
        correlator.feed(Pid1Record(JobKind.STARTING, "a.service", f"{n:032x}", T0 + n, job_id=n))
    effects = correlator.feed(JobDetails(4999, "a.service", "start", "a.timer"))
    assert [(e.run.invocation_id, e.run.trigger) for e in effects if isinstance(e, RecordRun)] == [
        (f"{4999:032x}", "a.timer")
    ]
    # The oldest were forgotten, with their jobs.
    assert correlator.feed(JobDetails(0, "a.service", "start", "a.timer")) == []


@settings(max_examples=200, deadline=None)
@given(
    notes=st.lists(
        st.tuples(
            st.sampled_from(["a.service", "alice/a.service", "alice/b.service", "bob/a.service"]),
            st.integers(0, 30),
            st.integers(0, 100),
        ),
        max_size=40,
    )
)
def test_a_users_starts_are_those_a_walk_over_every_start_finds(
    notes: list[tuple[str, int, int]],
) -> None:
    starts = Starts()
    with mock.patch.object(starts_module, "_UNITS", 2):
        for unit, invocation, usec in notes:
            starts.note(unit, f"{invocation:032x}", T0 + usec)
            for user in ("alice/", "bob/", "carol/"):
                walked = [(t, u, i) for u, t, i in starts.all() if u.startswith(user)]
                assert sorted(starts.of_user(user)) == sorted(walked)


def test_a_line_without_invocation_id_belongs_to_the_run_of_its_unit_at_that_time() -> None:
    correlator = Correlator("host")
    second = "f" * 32
    feed_all(
        correlator,
        [
            Pid1Record(JobKind.STARTING, "backup.service", INV_HEX, T0),
            Pid1Record(JobKind.DEACTIVATED, "backup.service", INV_HEX, T0 + 10),
            Pid1Record(JobKind.STARTING, "backup.service", second, T0 + 100),
        ],
    )

    assert correlator.invocation_at("backup.service", T0 + 5) == INV_HEX
    assert correlator.invocation_at("backup.service", T0 + 150) == second
    assert correlator.invocation_at("other.service", T0) is None


def test_output_of_a_unit_unloaded_after_its_run_is_still_attributed() -> None:
    correlator = Correlator("host")
    feed_all(
        correlator,
        [
            Pid1Record(JobKind.STARTING, "late.service", INV_HEX, T0),
            Pid1Record(JobKind.FINISHED, "late.service", INV_HEX, T0 + 10),
            UnitGone("late.service"),
        ],
    )

    assert correlator.invocation_at("late.service", T0 + 1_000_000) == INV_HEX


def test_a_timer_that_fired_just_before_a_run_is_its_trigger_when_the_job_was_gone() -> None:
    unit = "poll.service"
    correlator = Correlator("host")
    correlator.feed(
        UnitProperties("poll.timer", "Timer", {"Unit": unit, "LastTriggerUSec": T0 - 1_000})
    )
    events = [
        JobNew(9, unit),
        service(unit, "success"),
        unit_state(unit, "active", "running", INV, T0, InactiveExitTimestamp=T0),
        JobRemoved(9, unit, "done"),
        JobDetails(9, unit, "unknown", None),
    ]
    effects = feed_all(correlator, events)

    triggers = [e.run.trigger for e in effects if isinstance(e, RecordRun) and e.run.trigger]
    assert triggers == ["poll.timer"]


def test_a_timer_that_fired_long_before_a_manual_start_is_not_its_trigger() -> None:
    unit = "poll.service"
    correlator = Correlator("host")
    correlator.feed(
        UnitProperties("poll.timer", "Timer", {"Unit": unit, "LastTriggerUSec": T0 - 60_000_000})
    )
    events = [
        JobNew(9, unit),
        service(unit, "success"),
        unit_state(unit, "active", "running", INV, T0, InactiveExitTimestamp=T0),
        JobDetails(9, unit, "unknown", None),
    ]
    effects = feed_all(correlator, events)

    assert [e.run.trigger for e in effects if isinstance(e, RecordRun) and e.run.trigger] == []


def test_a_timer_firing_is_the_trigger_of_one_run_only() -> None:
    unit = "poll.service"
    second = bytes(range(201, 217))
    correlator = Correlator("host")
    correlator.feed(
        UnitProperties("poll.timer", "Timer", {"Unit": unit, "LastTriggerUSec": T0 - 1_000})
    )
    events = [
        service(unit, "success"),
        unit_state(unit, "active", "running", INV, T0, InactiveExitTimestamp=T0),
        service(unit, "success"),
        unit_state(unit, "inactive", "dead", INV, T0 + 100_000),
        JobNew(10, unit),
        service(unit, "success"),
        unit_state(
            unit, "active", "running", second, T0 + 500_000, InactiveExitTimestamp=T0 + 500_000
        ),
        JobDetails(10, unit, "unknown", None),
    ]
    effects = feed_all(correlator, events)

    assert [e.run.trigger for e in effects if isinstance(e, RecordRun) and e.run.trigger] == []


def refused(kind: JobKind, at: int, unit: str = "backup.service", **fields: object) -> Pid1Record:
    return Pid1Record(kind, unit, "", at, **fields)  # type: ignore[arg-type]


def test_a_dependency_failure_names_the_unit_that_failed_just_before_and_gets_a_key() -> None:
    correlator = Correlator("h")
    correlator.feed(
        Pid1Record(JobKind.START_FAILED, "mnt-backup.mount", INV_HEX, T0, job_result="failed")
    )
    [effect] = correlator.feed(refused(JobKind.START_FAILED, T0 + 10, job_result="dependency"))
    assert isinstance(effect, RecordRun)
    run = effect.run
    assert (run.result, run.reason, run.invocation_id) == ("dependency", "mnt-backup.mount", None)
    assert run.start_key == f"h:backup.service:{T0 + 10}"
    assert run.started_usec == run.finished_usec == T0 + 10


def test_a_skipped_start_gets_its_trigger_from_the_job_in_either_order() -> None:
    for job_first in (True, False):
        correlator = Correlator("h")
        skip = refused(JobKind.CONDITION_UNMET, T0, job_id=44, reason="ConditionPathExists=/x")
        details = JobDetails(44, "backup.service", "start", "backup.timer")
        effects = [*correlator.feed(details), *correlator.feed(skip)] if job_first else [
            *correlator.feed(skip), *correlator.feed(details)]  # fmt: skip
        runs = [e.run for e in effects if isinstance(e, RecordRun)]
        assert runs[-1].trigger == "backup.timer"
        assert {r.start_key for r in runs} == {f"h:backup.service:{T0}"}


def test_a_start_limit_refusal_is_a_run_and_its_stale_failure_record_is_not() -> None:
    correlator = Correlator("h")
    effects = correlator.feed(refused(JobKind.START_LIMIT, T0))
    stale = correlator.feed(
        Pid1Record(JobKind.FAILED, "backup.service", INV_HEX, T0 + 1,
                   unit_result="start-limit-hit")
    )  # fmt: skip
    [record] = [e for e in effects if isinstance(e, RecordRun)]
    assert record.run.result == "start-limit-hit"
    assert stale == []


def test_a_managers_start_up_closes_what_was_open_before_it() -> None:
    correlator = Correlator("h")
    correlator.feed(Pid1Record(JobKind.STARTING, "backup.service", INV_HEX, T0))
    assert correlator.running() == {"backup.service": INV_HEX}
    [effect] = correlator.feed(
        Pid1Record(JobKind.STARTUP_FINISHED, "", "", T0 + 10_000_000,
                   userspace_usec=1_000_000, previous_usec=T0 + 5)
    )  # fmt: skip
    assert effect == CloseInterrupted("h", T0 + 9_000_000, T0 + 5)
    assert correlator.running() == {}


def test_closing_interrupted_runs_leaves_newer_and_finished_runs_alone(tmp_path: Path) -> None:
    conn = open_for_writing(tmp_path / "observer.db")
    runs = [
        Run("a.service", "a" * 32, "h", Source.BUS, started_usec=T0),
        Run("b.service", "b" * 32, "h", Source.BUS, started_usec=T0, finished_usec=T0 + 1,
            result="success"),
        Run("c.service", "c" * 32, "h", Source.BUS, started_usec=T0 + 20),
        Run("d.service", "d" * 32, "other", Source.BUS, started_usec=T0),
    ]  # fmt: skip
    write_batch(conn, Batch(runs=runs))
    closed = write_batch(conn, Batch(interrupted=[("h", T0 + 10, T0 + 5)]))
    again = write_batch(conn, Batch(interrupted=[("h", T0 + 10, T0 + 5)]))
    rows = dict(conn.execute("SELECT unit, result FROM runs"))
    assert [(r.unit, r.result, r.finished_usec) for r in closed] == [
        ("a.service", "interrupted", T0 + 5)
    ]
    assert again == []
    assert rows == {"a.service": "interrupted", "b.service": "success", "c.service": None,
                    "d.service": None}  # fmt: skip


def test_the_journal_alone_gives_a_transient_runs_start_restarts_and_consumption() -> None:
    unit = "run-u7.service"
    effects = feed_all(
        Correlator("host"),
        [
            Pid1Record(JobKind.RESTART_SCHEDULED, unit, OLD.hex(), T0, restarts=1),
            Pid1Record(JobKind.STARTED, unit, INV_HEX, T0 + 100),
            Pid1Record(JobKind.RESTART_SCHEDULED, unit, INV_HEX, T0 + 200, restarts=2),
            Pid1Record(
                JobKind.RESOURCES, unit, INV_HEX, T0 + 300, cpu_usec=1_500_000, io_read_bytes=4096
            ),
        ],
    )

    runs = [e.run for e in effects if isinstance(e, RecordRun)]
    assert {run.invocation_id for run in runs} == {INV_HEX}  # no run for an unknown restart
    assert [(r.started_usec, r.restarts, r.cpu_seconds, r.io_read_bytes) for r in runs] == [
        (T0 + 100, None, None, None),
        (None, 2, None, None),
        (None, None, 1.5, 4096),
    ]
    assert {run.source for run in runs} == {Source.JOURNAL}
