"""Numbers from outside that SQLite cannot hold cost a fact, never the write."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from observer.bounds import REJECTED
from observer.fleet.records import parse_record
from observer.metrics.collectors import render
from observer.metrics.resilience import ResilienceCollector
from observer.recording.bus import bounded
from observer.recording.correlator import Correlator
from observer.recording.effects import RecordRun
from observer.recording.events import Pid1Record
from observer.recording.journal import parse_entry
from observer.store.database import Batch, open_for_writing, write_batch

INV = "0f5c1e6b6a2b4a0e9d7c3b2a19080706"
T0 = 1_790_000_000_000_000
STARTING, MAIN_EXITED, FAILED = (
    "7d4958e842da4a758f6c1cdc7b36dcc5",
    "98e322203f7a4ed290d09fe03c09fe15",
    "d9b373ed55a64feb8242e02dbe79a49c",
)


@pytest.fixture(autouse=True)
def no_rejections() -> Iterator[None]:
    REJECTED.clear()
    yield
    REJECTED.clear()


def pid1(message_id: str, usec: int, **fields: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "__REALTIME_TIMESTAMP": usec,
        "_PID": b"1",
        "MESSAGE_ID": message_id.encode(),
        "MESSAGE": b"",
        "UNIT": b"backup.service",
        "INVOCATION_ID": INV.encode(),
    }
    entry.update(fields)
    return entry


def stored_run(tmp_path: Path, entries: list[dict[str, object]]) -> sqlite3.Row:
    correlator = Correlator("host")
    runs = []
    for entry in entries:
        event = parse_entry(entry)
        assert isinstance(event, Pid1Record)
        runs += [e.run for e in correlator.feed(event) if isinstance(e, RecordRun)]
    conn = open_for_writing(tmp_path / "observer.db")
    conn.row_factory = sqlite3.Row
    write_batch(conn, Batch(runs=runs))
    rows: list[sqlite3.Row] = conn.execute("SELECT * FROM runs").fetchall()
    conn.close()
    [row] = rows
    return row


def test_a_run_whose_exit_status_is_past_2_63_is_stored_with_the_status_unknown(
    tmp_path: Path,
) -> None:
    row = stored_run(
        tmp_path,
        [
            pid1(STARTING, T0, JOB_ID=b"18446744073709551615"),
            pid1(
                MAIN_EXITED,
                T0 + 1000,
                EXIT_CODE=b"exited",
                EXIT_STATUS=b"18446744073709551616",
                N_RESTARTS=b"-9223372036854775809",
            ),
            pid1(FAILED, T0 + 2000, UNIT_RESULT=b"exit-code"),
        ],
    )

    assert (row["result"], row["exit_code"], row["exit_status"]) == ("exit-code", "exited", None)
    assert REJECTED.counts() == {
        ("journal", "EXIT_STATUS"): 1,
        ("journal", "JOB_ID"): 1,
        ("journal", "N_RESTARTS"): 1,
    }


def test_the_largest_number_sqlite_holds_is_kept() -> None:
    event = parse_entry(pid1(MAIN_EXITED, T0, EXIT_STATUS=str(2**63 - 1).encode()))

    assert isinstance(event, Pid1Record)
    assert event.exit_status == 2**63 - 1
    assert REJECTED.counts() == {}


def test_an_entry_whose_time_is_out_of_range_is_no_event_and_is_counted() -> None:
    assert parse_entry(pid1(MAIN_EXITED, 2**64)) is None
    assert REJECTED.counts() == {("journal", "__REALTIME_TIMESTAMP"): 1}


def test_a_suppressed_count_below_zero_is_no_event() -> None:
    entry = {
        "__REALTIME_TIMESTAMP": T0,
        "_PID": b"44",
        "MESSAGE_ID": b"a596d6fe7bfa4994828e72309e95d61e",
        "OBJECT_SYSTEMD_UNIT": b"backup.service",
        "N_DROPPED": b"-5",
    }

    assert parse_entry(entry) is None
    assert REJECTED.counts() == {("journal", "N_DROPPED"): 1}


def test_a_bus_property_past_2_63_is_unknown_but_systemds_none_is_kept() -> None:
    values = bounded({"NRestarts": 2**63, "LastTriggerUSec": 2**64 - 1, "Result": "success"})

    assert values == {"NRestarts": None, "LastTriggerUSec": 2**64 - 1, "Result": "success"}
    assert REJECTED.counts() == {("bus", "NRestarts"): 1}


def test_a_fleet_run_record_with_numbers_out_of_range_keeps_the_run() -> None:
    entry = {
        "MESSAGE_ID": b"71d497fee0e04d0f9551d56b2c22bf21",
        "OBSERVER_UNIT": b"backup.service",
        "OBSERVER_INVOCATION_ID": INV.encode(),
        "OBSERVER_STARTED_USEC": str(T0).encode(),
        "OBSERVER_FINISHED_USEC": str(T0 + 5).encode(),
        "OBSERVER_EXIT_STATUS": b"18446744073709551615",
        "OBSERVER_RESTARTS": b"-99999999999999999999",
        "OBSERVER_CPU_SECONDS": b"inf",
    }

    record = parse_record(entry, "web1")

    assert record is not None
    assert (record.run.exit_status, record.run.restarts, record.run.cpu_seconds) == (None,) * 3
    assert record.run.finished_usec == T0 + 5
    assert set(REJECTED.counts()) == {
        ("fleet", "OBSERVER_EXIT_STATUS"),
        ("fleet", "OBSERVER_RESTARTS"),
        ("fleet", "OBSERVER_CPU_SECONDS"),
    }


def test_rejected_numbers_are_exported_by_source_and_field() -> None:
    parse_entry(pid1(MAIN_EXITED, T0, EXIT_STATUS=b"18446744073709551615"))
    parse_entry(pid1(MAIN_EXITED, T0, EXIT_STATUS=b"18446744073709551615"))

    exposed = render(ResilienceCollector("web1", lambda: 0).collect())

    assert (
        b'observer_input_rejected_total{host="web1",source="journal",field="EXIT_STATUS"} 2.0'
        in exposed
    )
