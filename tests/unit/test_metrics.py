"""The run metrics: what the snapshot reads from a real store, how runs are counted, and
what the collectors expose."""

from __future__ import annotations

import dataclasses
import gzip
import re
import sqlite3
import zlib
from contextlib import closing
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from observer.metrics import collectors, snapshot
from observer.metrics.collectors import DaemonCollector, DaemonHealth, RunCollector
from observer.metrics.http import parse_listen
from observer.metrics.service import write_textfile
from observer.metrics.snapshot import Durations, RunTally, Snapshot, TimerSchedule, UnitState
from observer.model import ConfigError, Run, Source, journal_cursor_usec
from observer.store import database, summary
from tests.unit.recorded_runs import HOUR, MINUTE, NOW_USEC, SECOND, invocation


def write(db: Path, *runs: Run) -> None:
    connection = database.open_for_writing(db)
    try:
        for run in runs:
            database.write_batch(connection, database.Batch(runs=[run]))
    finally:
        connection.close()


def run(n: int, unit: str = "sync.service", **known: object) -> Run:
    fields: dict[str, object] = {"source": Source.BUS, "started_usec": NOW_USEC + n * MINUTE}
    fields.update(known)
    return Run(unit=unit, invocation_id=invocation(n), host="host1", **fields)  # type: ignore[arg-type]


def samples(collector: object) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(collector).decode()  # type: ignore[arg-type]
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


# -- reading the store ---------------------------------------------------------------------


def test_it_lists_every_recorded_unit_in_name_order(conn: sqlite3.Connection) -> None:
    assert summary.recorded_units(conn) == [
        "backup.service",
        "backup@home-user.service",
        "nightly-report",
    ]


def test_a_units_state_describes_its_newest_finished_run_and_its_failure_streak(
    conn: sqlite3.Connection,
) -> None:
    state = snapshot.unit_state(conn, "backup.service")

    # Run 4 is still running: the newest finished run is run 3, killed by SIGKILL.
    assert state.last_start_usec == NOW_USEC - 3 * HOUR
    assert state.last_end_usec == NOW_USEC - 55 * MINUTE
    assert state.last_duration_seconds == 2 * HOUR / SECOND + 5 * 60
    assert (state.last_result, state.last_signal, state.last_exit_status) == (
        "signal",
        "KILL",
        None,
    )
    assert state.last_success_usec == NOW_USEC - 48 * HOUR + 1_200_000
    assert state.last_failure_usec == NOW_USEC - 55 * MINUTE
    assert state.consecutive_failures == 2
    assert state.restarts == 1
    assert not state.running


def test_a_unit_runs_while_the_daemon_sees_its_invocation_running(
    conn: sqlite3.Connection,
) -> None:
    state = snapshot.unit_state(conn, "backup.service", running=invocation(4))

    assert state.running
    assert state.running_since_usec == NOW_USEC - 10 * MINUTE


def test_an_unfinished_observer_run_job_counts_as_running(db: Path) -> None:
    write(db, run(7, "nightly-report", source=Source.WRAPPER))
    with closing(database.open_for_reading(db)) as conn:
        state = snapshot.unit_state(conn, "nightly-report")

    assert state.running
    assert state.running_since_usec == NOW_USEC + 7 * MINUTE
    assert state.last_result == "success"


def test_a_unit_that_never_succeeded_has_every_finished_run_in_its_streak(db: Path) -> None:
    write(
        db,
        run(10, finished_usec=NOW_USEC + 11 * MINUTE, result="exit-code", exit_code="exited",
            exit_status=3),
        run(12, finished_usec=NOW_USEC + 13 * MINUTE, result="timeout", exit_code="killed",
            exit_status=15),
    )  # fmt: skip
    with closing(database.open_for_reading(db)) as conn:
        state = snapshot.unit_state(conn, "sync.service")

    assert state.consecutive_failures == 2
    assert state.last_success_usec is None
    assert (state.last_result, state.last_signal) == ("timeout", "TERM")


def test_units_with_only_a_timer_or_a_running_invocation_are_listed(
    conn: sqlite3.Connection,
) -> None:
    units, timers = snapshot.read_unit_states(conn, {("host1", "worker.service"): invocation(99)})

    names = [u.unit for u in units]
    assert names == [
        "backup.service",
        "backup@home-user.service",
        "nightly-report",
        "worker.service",
    ]
    assert timers == [
        TimerSchedule("backup.timer", "backup.service", NOW_USEC + HOUR, NOW_USEC - 10 * MINUTE)
    ]
    worker = units[-1]
    assert worker.running
    assert worker.running_since_usec is None
    assert worker.last_result is None


# -- counting runs -------------------------------------------------------------------------


def test_the_tally_counts_nothing_that_finished_before_it_started(db: Path) -> None:
    tally = RunTally()
    with closing(database.open_for_reading(db)) as conn:
        tally.start(conn, pending_since_usec=0)
        tally.update(conn, [])

    assert tally.runs_by_result == {}
    assert tally.durations() == {}


def test_the_tally_counts_a_run_once_however_often_it_hears_of_it(db: Path) -> None:
    tally = RunTally()
    with closing(database.open_for_reading(db)) as conn:
        tally.start(conn, pending_since_usec=0)
    finished = run(20, finished_usec=NOW_USEC + 20 * MINUTE + 3 * SECOND, result="success")
    write(db, finished)

    with closing(database.open_for_reading(db)) as conn:
        tally.update(conn, [finished.key])
        tally.update(conn, [finished.key])
        tally.update(conn, [])

    assert tally.runs_by_result == {("host1", "sync.service", "success"): 1}
    durations = tally.durations()["host1", "sync.service"]
    assert durations.count == 1
    assert durations.sum_seconds == 3.0


def test_the_tally_follows_a_run_it_saw_begin_to_its_end(db: Path) -> None:
    tally = RunTally()
    with closing(database.open_for_reading(db)) as conn:
        tally.start(conn, pending_since_usec=0)
    # `observer run` writes a job's row when it starts and again when it ends.
    write(db, run(30, "nightly-report", source=Source.WRAPPER))
    with closing(database.open_for_reading(db)) as conn:
        tally.update(conn, [])
    assert tally.runs_by_result == {}
    write(db, run(30, "nightly-report", source=Source.WRAPPER,
                  finished_usec=NOW_USEC + 31 * MINUTE, result="exit-code"))  # fmt: skip

    with closing(database.open_for_reading(db)) as conn:
        tally.update(conn, [])

    assert tally.runs_by_result == {("host1", "nightly-report", "exit-code"): 1}
    assert tally.durations()["host1", "nightly-report"].sum_seconds == 60.0


def test_a_run_that_was_running_when_the_tally_started_is_counted_when_it_ends(
    db: Path,
) -> None:
    tally = RunTally()
    with closing(database.open_for_reading(db)) as conn:
        tally.start(conn, pending_since_usec=NOW_USEC - HOUR)
    # Run 4 of backup.service was running; the daemon's hook reports nothing for it.
    write(db, Run("backup.service", invocation(4), "host1", Source.JOURNAL,
                  finished_usec=NOW_USEC, result="success"))  # fmt: skip

    with closing(database.open_for_reading(db)) as conn:
        tally.update(conn, [])

    assert tally.runs_by_result == {("host1", "backup.service", "success"): 1}


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [(0.05, 0.1), (0.1, 0.1), (0.3, 0.5), (1.0, 1.0), (42.0, 60.0), (5000.0, 7200.0),
     (30000.0, float("inf"))],
)  # fmt: skip
def test_a_duration_lands_in_the_smallest_bucket_that_holds_it(
    db: Path, seconds: float, bucket: float
) -> None:
    tally = RunTally()
    with closing(database.open_for_reading(db)) as conn:
        tally.start(conn, pending_since_usec=0)
    write(
        db, run(40, finished_usec=NOW_USEC + 40 * MINUTE + int(seconds * SECOND), result="success")
    )
    with closing(database.open_for_reading(db)) as conn:
        tally.update(conn, [])

    cumulative = tally.durations()["host1", "sync.service"].buckets
    first = next(i for i, n in enumerate(cumulative) if n)
    assert snapshot.DURATION_BUCKETS[first] == bucket
    assert cumulative[-1] == 1


# -- what is exposed -----------------------------------------------------------------------


SNAPSHOT = Snapshot(
    host="host1",
    units=(
        UnitState(
            "backup.service", last_start_usec=100 * SECOND, last_end_usec=160 * SECOND,
            last_result="exit-code", last_exit_status=3, last_success_usec=50 * SECOND,
            last_failure_usec=160 * SECOND, consecutive_failures=2, restarts=0, running=True,
            running_since_usec=200 * SECOND,
        ),
        UnitState("idle.service"),
    ),
    timers=(TimerSchedule("backup.timer", "backup.service", 300 * SECOND, None),),
    runs_by_result={("", "backup.service", "exit-code"): 2, ("", "backup.service", "success"): 5},
    durations={
        ("", "backup.service"): Durations((0, 0, 0, 0, 0, 0, 7, 7, 7, 7, 7, 7, 7, 7), 300.0)
    },
)  # fmt: skip


def test_the_run_collector_exposes_each_units_state_with_host_and_unit_labels() -> None:
    exposed = samples(RunCollector(SNAPSHOT))
    backup = labels(host="host1", unit="backup.service", user="")

    assert exposed[("observer_last_run_start_timestamp_seconds", backup)] == 100.0
    assert exposed[("observer_last_run_end_timestamp_seconds", backup)] == 160.0
    assert exposed[("observer_last_run_duration_seconds", backup)] == 60.0
    assert exposed[("observer_last_run_success", backup)] == 0.0
    assert exposed[("observer_last_run_exit_status", backup)] == 3.0
    info = labels(host="host1", unit="backup.service", user="", result="exit-code", signal="")
    assert exposed[("observer_last_run_info", info)] == 1.0
    assert exposed[("observer_last_success_timestamp_seconds", backup)] == 50.0
    assert exposed[("observer_last_failure_timestamp_seconds", backup)] == 160.0
    assert exposed[("observer_consecutive_failures", backup)] == 2.0
    assert exposed[("observer_running", backup)] == 1.0
    assert exposed[("observer_running_since_timestamp_seconds", backup)] == 200.0
    assert exposed[("observer_service_restarts", backup)] == 0.0
    timer = labels(host="host1", unit="backup.service", user="", timer="backup.timer")
    assert exposed[("observer_timer_next_trigger_timestamp_seconds", timer)] == 300.0
    assert ("observer_timer_last_trigger_timestamp_seconds", timer) not in exposed


def test_a_unit_without_finished_runs_shows_only_what_is_known() -> None:
    exposed = samples(RunCollector(SNAPSHOT))
    idle = labels(host="host1", unit="idle.service", user="")

    assert {name for name, labelset in exposed if labelset == idle} == {
        "observer_consecutive_failures",
        "observer_running",
        "observer_run_duration_seconds_count",
        "observer_run_duration_seconds_sum",
    }
    # Its counters are there at 0 from the start, so that rate() sees its first run.
    zeros = {
        dict(labelset)["result"]: value
        for (name, labelset), value in exposed.items()
        if name == "observer_runs_total" and ("unit", "idle.service") in labelset
    }
    assert zeros == {"success": 0.0, "exit-code": 0.0, "unknown": 0.0}
    assert exposed[("observer_run_duration_seconds_count", idle)] == 0.0


def test_runs_are_counted_by_result_and_their_durations_are_a_histogram() -> None:
    exposed = samples(RunCollector(SNAPSHOT))

    failed = labels(host="host1", unit="backup.service", user="", result="exit-code")
    assert exposed[("observer_runs_total", failed)] == 2.0
    unit = {"host": "host1", "unit": "backup.service", "user": ""}
    assert exposed[("observer_run_duration_seconds_bucket", labels(**unit, le="30.0"))] == 0.0
    assert exposed[("observer_run_duration_seconds_bucket", labels(**unit, le="60.0"))] == 7.0
    assert exposed[("observer_run_duration_seconds_bucket", labels(**unit, le="+Inf"))] == 7.0
    assert exposed[("observer_run_duration_seconds_count", labels(**unit))] == 7.0
    assert exposed[("observer_run_duration_seconds_sum", labels(**unit))] == 300.0


def test_the_histogram_has_buckets_from_a_tenth_of_a_second_to_six_hours() -> None:
    # A collector of Families (a Metric is one): the library's renderer reads no more.
    text = generate_latest(RunCollector(SNAPSHOT)).decode()  # type: ignore[arg-type]

    bounds = [
        line.split('le="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("observer_run_duration_seconds_bucket")
        and 'unit="backup.service"' in line
    ]
    assert bounds == [
        "0.1", "0.5", "1.0", "5.0", "15.0", "30.0", "60.0", "300.0", "900.0", "1800.0",
        "3600.0", "7200.0", "21600.0", "+Inf",
    ]  # fmt: skip


def test_the_daemon_collector_exposes_its_health_and_build() -> None:
    health = DaemonHealth(
        events_processed=10, runs_recorded=4, store_errors=1, last_event_at=1000.5,
        journal_position_usec=999 * SECOND, journal_lag_seconds=2.5, refresh_at=1001.0,
        refresh_seconds=0.25,
    )  # fmt: skip
    exposed = samples(DaemonCollector("host1", health))
    host = labels(host="host1")

    assert exposed[("observer_events_processed_total", host)] == 10.0
    assert exposed[("observer_runs_recorded_total", host)] == 4.0
    assert exposed[("observer_store_errors_total", host)] == 1.0
    assert exposed[("observer_journal_lag_seconds", host)] == 2.5
    assert exposed[("observer_journal_position_timestamp_seconds", host)] == 999.0
    assert exposed[("observer_last_event_timestamp_seconds", host)] == 1000.5
    assert exposed[("observer_metrics_refresh_duration_seconds", host)] == 0.25
    [build] = [labelset for name, labelset in exposed if name == "observer_build_info"]
    assert dict(build)["version"]


# -- small parts of the exporters ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [("127.0.0.1:9089", ("127.0.0.1", 9089)), ("[::1]:9089", ("::1", 9089)),
     ("0.0.0.0:0", ("0.0.0.0", 0)), ("", None)],
)  # fmt: skip
def test_it_reads_a_listen_address(text: str, address: tuple[str, int] | None) -> None:
    assert parse_listen(text) == address


@pytest.mark.parametrize("text", ["9089", "localhost", ":9089", "host:port", "host:70000"])
def test_a_bad_listen_address_is_an_error_that_shows_the_form(text: str) -> None:
    with pytest.raises(ConfigError, match=re.escape("expected HOST:PORT, like 127.0.0.1:9089")):
        parse_listen(text)


def test_it_reads_the_time_a_journal_cursor_points_at() -> None:
    cursor = "s=4c1d;i=1c4;b=5ce5;m=2a3f;t=61a2b3c4d5e6f;x=9e0d"
    assert journal_cursor_usec(cursor) == 0x61A2B3C4D5E6F
    assert journal_cursor_usec("s=1;i=2") is None


def test_the_textfile_is_replaced_whole_and_readable_by_all(tmp_path: Path) -> None:
    path = tmp_path / "observer.prom"
    path.write_text("old\n")

    write_textfile(path, b"new\n")

    assert path.read_bytes() == b"new\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["observer.prom"]


def test_the_duration_histograms_are_the_librarys_histogram_of_every_unit_made_as_read() -> None:
    series = (
        (["host1", "backup.service", ""], Durations((0, 1, 1, 2, 2, 2, *(3,) * 8), 9.5)),
        (["host2", "sync.service", "alice"], Durations((0,) * 14, 0.0)),
    )  # fmt: skip
    whole = HistogramMetricFamily(
        "observer_run_duration_seconds", "How long.", labels=["host", "unit", "user"]
    )
    for key, counts in series:
        bounds = [*map(repr, snapshot.DURATION_BUCKETS[:-1]), "+Inf"]
        whole.add_metric(
            key, [*zip(bounds, map(float, counts.buckets), strict=True)], counts.sum_seconds
        )

    streamed = collectors.DurationHistograms(series)

    assert list(streamed.samples) == whole.samples
    assert list(streamed.samples) == whole.samples  # made again on each reading
    assert len(whole.samples) == 2 * (14 + 2)
    assert (streamed.name, streamed.type) == (whole.name, whole.type)


def test_the_fast_renderer_writes_what_the_client_library_would() -> None:
    odd = UnitState('backup@My\\x20"Files"\n.service', last_start_usec=1, last_end_usec=2)
    with_odd = dataclasses.replace(SNAPSHOT, units=(*SNAPSHOT.units, odd))

    ours = collectors.render(RunCollector(with_odd).collect()).decode()
    theirs = generate_latest(RunCollector(with_odd)).decode()  # type: ignore[arg-type]

    def parsed(text: str) -> list[tuple[str, str, list[tuple[str, dict[str, str], float]]]]:
        return [
            (f.name, f.type, [(s.name, s.labels, s.value) for s in f.samples])
            for f in text_string_to_metric_families(text)
        ]

    assert parsed(ours) == parsed(theirs)
    assert 'unit="backup@My\\\\x20\\"Files\\"\\n.service"' in ours


def test_the_compressed_rendering_is_the_text_family_by_family_as_one_gzip_member() -> None:
    odd = UnitState('backup@My\\x20"Files"\n.service', last_start_usec=1, last_end_usec=2)
    with_odd = dataclasses.replace(SNAPSHOT, units=(*SNAPSHOT.units, odd))
    text = collectors.render(RunCollector(with_odd).collect())

    packed = collectors.render_gzip(RunCollector(with_odd).collect(), 6)

    assert packed[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed) == text
    one_member = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert one_member.decompress(packed) == text
    assert one_member.eof
    assert one_member.unused_data == b""
    assert gzip.decompress(collectors.render_gzip((), 1)) == b""


def test_a_users_unit_is_its_own_series_with_the_user_label() -> None:
    users_backup = UnitState("alice/backup.service", last_start_usec=1, last_end_usec=2)
    both = dataclasses.replace(
        SNAPSHOT,
        units=(*SNAPSHOT.units, users_backup),
        timers=(TimerSchedule("alice/backup.timer", "alice/backup.service", 5, None),),
        runs_by_result={("", "alice/backup.service", "success"): 1},
    )
    exposed = samples(RunCollector(both))

    system = labels(host="host1", unit="backup.service", user="")
    alices = labels(host="host1", unit="backup.service", user="alice")
    assert exposed[("observer_last_run_start_timestamp_seconds", system)] == 100.0
    assert exposed[("observer_last_run_start_timestamp_seconds", alices)] == 1e-6
    assert exposed[("observer_runs_total", labels(**dict(alices), result="success"))] == 1.0
    timer = labels(host="host1", unit="backup.service", user="alice", timer="backup.timer")
    assert exposed[("observer_timer_next_trigger_timestamp_seconds", timer)] == 5e-6
