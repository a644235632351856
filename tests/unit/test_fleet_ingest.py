"""The fleet's pure parts: run records, the marks that take each received entry once, and
where a line without invocation ID goes; and a central observer's intake as its metrics see it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import struct
import subprocess
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from observer.config import Config, MetricsConfig
from observer.daemon.serve import Daemon
from observer.fleet.ingest import EntryPlace, FleetEntry, Marks, parse_fleet_entry
from observer.fleet.records import RUN_RECORD_MESSAGE_ID, parse_record, record_fields
from observer.fleet.service import RunRecords, native_datagram
from observer.metrics.service import MetricsService
from observer.model import Run, Source
from observer.recording.attribution import HOLD_USEC, RunOutput
from observer.recording.correlator import Correlator
from observer.recording.events import JobKind, OutputLine, Pid1Record
from observer.recording.journal import SYSTEM_ONLY, JournalBatch
from observer.store import database
from observer.store.database import Batch, OutputCounts
from tests.waiting import wait_for_async

RUN = Run(
    unit="backup.service",
    invocation_id="ab" * 16,
    host="web1",
    source=Source.BUS,
    started_usec=1_800_000_000_000_000,
    finished_usec=1_800_000_001_500_000,
    result="exit-code",
    exit_code="exited",
    exit_status=3,
    trigger="backup.timer",
    restarts=0,
    boot_id="cd" * 16,
    cpu_seconds=0.25,
)


def received(fields: dict[str, str], host: str = "web1") -> dict[str, object]:
    """An entry as a Reader returns it from journal-remote's file (raw bytes)."""
    entry: dict[str, object] = {k: v.encode() for k, v in fields.items()}
    entry |= {"_HOSTNAME": host.encode(), "_BOOT_ID": b"cd" * 16}
    entry |= {"__MONOTONIC_TIMESTAMP": 5_000_000, "__REALTIME_TIMESTAMP": RUN.finished_usec}
    entry["__CURSOR"] = "s=1;i=2;b=cd;m=4c4b40;t=1;x=0123456789abcdef"
    return entry


def test_a_run_record_carries_every_fact_of_the_run_back_unchanged() -> None:
    fields = record_fields(RUN, 2, 30)
    assert fields["MESSAGE_ID"] == RUN_RECORD_MESSAGE_ID
    assert fields["MESSAGE"] == "backup.service finished: exit-code, status 3, by backup.timer"
    assert fields["OBSERVER_DURATION_USEC"] == "1500000"
    record = parse_record(received(fields), "web1")
    assert record is not None
    assert record.run == RUN
    assert (record.output_lines, record.output_bytes) == (2, 30)


def test_a_received_run_record_belongs_to_the_host_its_journal_names() -> None:
    entry = parse_fleet_entry(received(record_fields(RUN), host="web7"), SYSTEM_ONLY)
    assert entry is not None
    assert entry.place == EntryPlace("web7", "cd" * 16, 5_000_000, "0123456789abcdef")
    assert entry.event.run.host == "web7"  # type: ignore[union-attr]


def test_a_record_without_unit_or_end_is_no_run() -> None:
    assert parse_record(received({"OBSERVER_INVOCATION_ID": "ab" * 16}), "web1") is None
    unfinished = {k: v for k, v in record_fields(RUN).items() if k != "OBSERVER_FINISHED_USEC"}
    assert parse_record(received(unfinished), "web1") is None


def test_a_multi_line_value_is_sent_with_its_length_in_the_native_protocol() -> None:
    data = native_datagram({"MESSAGE": "a\nb", "OBSERVER_UNIT": "x.service"})
    assert data == b"MESSAGE\n" + struct.pack("<Q", 3) + b"a\nb\nOBSERVER_UNIT=x.service\n"


# A host's entries: times may repeat and go backwards (journald stamps datagrams on arrival).
entries = st.lists(
    st.tuples(st.sampled_from(["web1", "web2"]), st.integers(-2, 3)), min_size=1, max_size=40
)


@given(entries, st.lists(st.integers(0, 39), max_size=10), st.lists(st.integers(0, 39)))
def test_each_entry_is_taken_once_whatever_is_sent_again_and_however_often_it_restarts(
    sent: list[tuple[str, int]], resends: list[int], restarts: list[int]
) -> None:
    clock: dict[str, int] = {}
    places = []
    for i, (host, step) in enumerate(sent):
        clock[host] = clock.get(host, 100) + step
        places.append(EntryPlace(host, "b" * 32, clock[host], f"{i:016x}"))
    arriving: list[EntryPlace] = []
    last: dict[str, EntryPlace] = {}
    for i, place in enumerate(places):
        arriving.append(place)
        last[place.host] = place
        if i in resends:  # journal-upload reconnected: the last entry it sent comes again
            arriving.extend(last.values())
    marks, saved = Marks(), {}
    taken = []
    for n, place in enumerate(arriving):
        if marks.take(place):
            taken.append(place)
        saved.update(marks.changed())
        if n in restarts:  # the central daemon restarts from what it committed
            marks = Marks(saved)
    assert taken == places


class NoStore:
    """A store that holds no run and must not be flushed into mid-batch."""

    async def run_started_before(self, host: str, unit: str, usec: int) -> tuple[None, bool]:
        return None, False

    async def load_output(self, invocation_id: str) -> tuple[list[tuple[int, int]], None, None]:
        return [], None, None


def held_output() -> tuple[Correlator, RunOutput, Batch]:
    correlator = Correlator("web1")
    batch = Batch()
    return correlator, RunOutput(Config(), correlator, NoStore(), lambda: batch), batch  # type: ignore[arg-type]


def record(kind: JobKind, invocation: str, usec: int) -> Pid1Record:
    return Pid1Record(kind=kind, unit="tick.service", invocation_id=invocation, realtime_usec=usec)


def line(usec: int, text: bytes) -> OutputLine:
    return OutputLine(
        invocation_id="", unit="tick.service", realtime_usec=usec, priority=6, message=text
    )


def test_a_line_written_just_before_its_runs_starting_record_goes_to_that_run() -> None:
    correlator, output, batch = held_output()
    correlator.feed(record(JobKind.STARTING, "a" * 32, 1_000_000))
    correlator.feed(record(JobKind.DEACTIVATED, "a" * 32, 1_100_000))

    async def scenario() -> None:
        await output.add_output(line(2_000_000, b"first line of the next run"))
        assert output.held
        correlator.feed(record(JobKind.STARTING, "b" * 32, 2_000_004))
        await output.release_held(2_000_004)

    asyncio.run(scenario())
    assert [(ln.invocation_id, ln.message) for ln in batch.lines] == [
        ("b" * 32, b"first line of the next run")
    ]


def test_a_user_s_line_tagged_only_with_the_uid_waits_for_the_start_of_the_next_run() -> None:
    correlator, output, batch = held_output()
    tick = dataclasses.replace(
        record(JobKind.STARTING, "a" * 32, 1_000_000), unit="alice/t.service"
    )
    correlator.feed(tick)
    correlator.feed(dataclasses.replace(tick, kind=JobKind.DEACTIVATED, realtime_usec=1_100_000))
    uid_only = dataclasses.replace(line(2_000_000, b"cannot reach the remote"), unit="alice/")

    async def scenario() -> None:
        await output.add_output(uid_only)
        assert output.held  # the user's last run ended: perhaps the next one's line
        fails = record(JobKind.STARTING, "b" * 32, 2_000_003)
        correlator.feed(dataclasses.replace(fails, unit="alice/fails.service"))
        await output.release_held(2_000_003)
        await output.add_output(dataclasses.replace(uid_only, realtime_usec=2_000_010))
        await output.add_output(dataclasses.replace(uid_only, realtime_usec=1_100_001))
        await output.release_held(1_100_001 + HOLD_USEC + 1)

    asyncio.run(scenario())
    assert [(ln.invocation_id, ln.realtime_usec) for ln in batch.lines] == [
        ("b" * 32, 2_000_000),  # held, then the start that followed it
        ("b" * 32, 2_000_010),  # a running run's: taken at once
        ("a" * 32, 1_100_001),  # no start after it: the run before
    ]


def test_a_late_line_with_no_start_after_it_goes_to_the_run_before() -> None:
    correlator, output, batch = held_output()
    correlator.feed(record(JobKind.STARTING, "a" * 32, 1_000_000))
    correlator.feed(record(JobKind.DEACTIVATED, "a" * 32, 1_100_000))

    async def scenario() -> None:
        await output.add_output(line(1_100_500, b"late"))
        await output.release_held(1_100_500 + HOLD_USEC // 2)
        assert output.held  # not yet: a start may still come
        await output.release_held(1_100_500 + HOLD_USEC + 1)

    asyncio.run(scenario())
    assert [(ln.invocation_id, ln.message) for ln in batch.lines] == [("a" * 32, b"late")]


def test_a_line_of_a_unit_never_seen_to_start_waits_for_its_start() -> None:
    correlator, output, batch = held_output()

    async def scenario() -> None:
        await output.add_output(line(2_000_000, b"first ever"))
        correlator.feed(record(JobKind.STARTING, "b" * 32, 2_000_003))
        await output.release_held(2_000_003)

    asyncio.run(scenario())
    assert [(ln.invocation_id, ln.message) for ln in batch.lines] == [("b" * 32, b"first ever")]


def test_a_line_of_no_run_at_all_is_counted_once_its_wait_is_over() -> None:
    _, output, batch = held_output()

    async def scenario() -> None:
        await output.add_output(line(9_000_000, b"no run at all"))
        await output.release_held(9_000_000 + HOLD_USEC + 1)

    asyncio.run(scenario())
    assert (batch.lines, output.held, output.unattributed_lines) == ([], [], 1)


def test_held_lines_outlive_a_restart_in_the_committed_state() -> None:
    _, output, _ = held_output()
    output.held = [OutputLine("a" * 32, "tick.service", 5, 6, b"\xff bytes")]
    _, again, _ = held_output()
    again.restore_held(output.held_state())
    assert again.held == output.held


class StoreWithRun(NoStore):
    """A store holding one finished run of tick.service from before the daemon started,
    with 2 lines of its output stored."""

    async def run_started_before(self, host: str, unit: str, usec: int) -> tuple[str, bool]:  # type: ignore[override]
        return "c" * 32, False

    async def load_output(  # type: ignore[override]
        self, invocation_id: str
    ) -> tuple[list[tuple[int, int]], OutputCounts, str]:
        return [(0, 5), (1, 5)], OutputCounts(invocation_id, 2, 10, 0, 0, None, 1), "success"


def test_after_a_restart_a_line_of_a_run_it_never_saw_start_goes_to_the_stored_run() -> None:
    correlator = Correlator("web1")
    batch = Batch()
    output = RunOutput(Config(), correlator, StoreWithRun(), lambda: batch)  # type: ignore[arg-type]
    output.stored_output.add("c" * 32)

    asyncio.run(output.add_output(line(3_000_000, b"third line")))
    # It continues the stored output (seq 2), read from the store without a flush first.
    assert [(ln.invocation_id, ln.seq) for ln in batch.lines] == [("c" * 32, 2)]
    assert batch.counts["c" * 32].lines == 3


def test_the_fleet_setup_script_passes_shellcheck_and_refuses_a_bad_url() -> None:
    script = Path(__file__).resolve().parents[2] / "packaging" / "fleet" / "setup.sh"
    checked = subprocess.run(
        ["shellcheck", str(script)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout
    if os.geteuid() == 0:
        bad = subprocess.run(
            ["bash", str(script), "uploader", "central:19532"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert bad.returncode == 1
        assert "expected a URL" in bad.stderr


def test_a_trigger_told_after_the_record_went_out_writes_the_record_again(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    conn = database.open_for_writing(db)
    untriggered = RUN._replace(trigger=None)
    database.write_batch(conn, Batch(runs=[untriggered]))
    sent: list[dict[str, str]] = []
    records = RunRecords(db, delay=0, send=lambda fields: sent.append(dict(fields)))

    async def scenario() -> None:
        service = asyncio.create_task(records.run())
        records.runs_recorded([untriggered])
        await wait_for_async(lambda: len(sent) >= 1, timeout=30, what="the first record")
        triggered = untriggered._replace(trigger="backup.timer")
        database.write_batch(conn, Batch(runs=[triggered]))
        records.trigger_known(RUN._replace(invocation_id="ef" * 16))  # no record
        records.trigger_known(triggered)  # written in the same go as a wrong one would be
        await wait_for_async(lambda: len(sent) >= 2, timeout=30, what="the record again")
        service.cancel()

    asyncio.run(scenario())
    conn.close()
    assert [f.get("OBSERVER_TRIGGER") for f in sent] == [None, "backup.timer"]


async def test_a_central_observer_shows_a_hosts_run_in_progress_as_running(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    central = Daemon(Config(host="central"), db, None, None, fleet_dir=tmp_path / "remote")
    await central.store.open()
    start_usec = RUN.started_usec or 0
    started = FleetEntry(
        EntryPlace("web7", "cd" * 16, 5_000_000, "0123456789abcdef"),
        Pid1Record(JobKind.STARTING, "backup.service", "ab" * 16, start_usec),
        start_usec,
    )
    consumer = asyncio.create_task(central._consume_journal())
    metrics = MetricsService(central, db, MetricsConfig(listen=""))
    try:
        await central.journal_queue.put(JournalBatch([started], "c1", start_usec))
        async with asyncio.timeout(30):
            await central.flush_wanted.wait()  # the batch is taken: its write is wanted
        await central.flush()
        metrics._sample(0)
        await asyncio.to_thread(metrics._refresh, dict(metrics._running))
        exposition = metrics.render(process=False).decode()
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        metrics._executor.submit(metrics._reset_connection).result()
        metrics._executor.shutdown()
        await central.store.close()

    running = 'observer_running{host="web7",unit="backup.service",user=""} 1.0'
    assert running in exposition
    since = 'observer_running_since_timestamp_seconds{host="web7",unit="backup.service",user=""}'
    assert f"{since} {start_usec / 1e6}" in exposition


def test_a_line_stamped_just_after_its_runs_end_stays_with_it_when_the_next_run_follows() -> None:
    # Seen in CI: a run's only line stamped 62 us after its end, the next run 29 ms later.
    correlator, output, batch = held_output()
    correlator.feed(record(JobKind.STARTING, "a" * 32, 1_000_000))
    correlator.feed(record(JobKind.DEACTIVATED, "a" * 32, 1_100_000))

    async def scenario() -> None:
        await output.add_output(line(1_100_062, b"run"))
        assert output.held  # the next run's first line, perhaps
        correlator.feed(record(JobKind.STARTING, "b" * 32, 1_129_000))
        await output.add_output(line(1_128_000, b"next"))  # 1 ms before its start
        await output.release_held(1_129_000)

    asyncio.run(scenario())
    assert [(ln.invocation_id, ln.message) for ln in batch.lines] == [
        ("a" * 32, b"run"),
        ("b" * 32, b"next"),
    ]


def test_a_users_line_stamped_just_after_a_runs_end_is_not_given_to_the_users_next_unit() -> None:
    # Seen in CI: alice's backup printed its line, u-bad started some ms later.
    correlator, output, batch = held_output()
    backup = dataclasses.replace(
        record(JobKind.STARTING, "a" * 32, 1_000_000), unit="alice/backup.service"
    )
    correlator.feed(backup)
    correlator.feed(dataclasses.replace(backup, kind=JobKind.FINISHED, realtime_usec=1_050_000))
    uid_only = dataclasses.replace(line(1_050_300, b"backing up"), unit="alice/")

    async def scenario() -> None:
        await output.add_output(uid_only)
        assert output.held
        bad = record(JobKind.STARTING, "b" * 32, 1_070_000)
        correlator.feed(dataclasses.replace(bad, unit="alice/u-bad.service"))
        await output.release_held(1_070_000)
        assert not output.held

    asyncio.run(scenario())
    assert [(ln.invocation_id, ln.message) for ln in batch.lines] == [("a" * 32, b"backing up")]


def test_a_line_stamped_before_its_runs_end_but_read_after_it_goes_to_that_run_at_once() -> None:
    correlator, output, batch = held_output()
    correlator.feed(record(JobKind.STARTING, "a" * 32, 1_000_000))
    correlator.feed(record(JobKind.FAILED, "a" * 32, 1_100_000))

    async def scenario() -> None:
        await output.add_output(line(1_099_990, b"last words"))

    asyncio.run(scenario())
    assert not output.held
    assert [(ln.invocation_id, ln.message) for ln in batch.lines] == [("a" * 32, b"last words")]
