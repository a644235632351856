"""`runs --follow`: which runs are newly finished (pure), and the watch of a real file."""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import pytest
from hypothesis import given
from hypothesis import strategies as st

from observer.model import Run, Source, StoreError
from observer.reading import follow
from observer.reading.history import RecordedRun
from observer.store import database, schema
from tests.unit.recorded_runs import NOW_USEC, SECOND, invocation, write_store
from tests.waiting import wait_for


def recorded(run_id: int, finished_usec: int | None, result: str | None = None) -> RecordedRun:
    return RecordedRun(
        id=run_id, unit="a.service", invocation_id=invocation(run_id), host="h", source="bus",
        boot_id=None, trigger=None, started_usec=0, finished_usec=finished_usec, result=result,
        exit_status=None, signal=None, restarts=None, output_truncated=False,
    )  # fmt: skip


def test_it_reports_a_run_once_when_it_finishes_and_not_while_it_runs() -> None:
    tracker = follow.FinishedRuns(after_id=2, pending={2})
    assert tracker.update([recorded(2, None), recorded(3, None)]) == []
    assert tracker.pending == {2, 3}
    done = [recorded(2, 50, "success"), recorded(3, 40, "exit-code")]
    assert tracker.update(done) == [done[1], done[0]]  # in the order they finished
    assert tracker.pending == set()
    assert tracker.update(done) == []  # output arriving later changes the rows again


def test_it_forgets_a_pending_run_that_was_deleted() -> None:
    tracker = follow.FinishedRuns(after_id=5, pending={1, 4})
    assert tracker.update([recorded(4, None)]) == []
    assert tracker.pending == {4}


def test_it_leaves_out_runs_that_ended_before_following_began_in_a_new_store() -> None:
    tracker = follow.FinishedRuns(not_before_usec=100)
    runs = [recorded(1, 10, "success"), recorded(2, 150, "success"), recorded(3, None)]
    assert tracker.update(runs) == [runs[1]]
    assert (tracker.after_id, tracker.pending) == (3, {3})


# A history of writes: each step starts a run, finishes one, or rewrites a finished one.
_STEPS = st.lists(st.sampled_from(["start", "finish", "touch", "look"]), max_size=60)


@given(before=st.integers(0, 5), steps=_STEPS)
def test_it_reports_every_run_that_finishes_exactly_once_whenever_it_looks(
    before: int, steps: list[str]
) -> None:
    rows: dict[int, RecordedRun] = {}
    clock = 0

    def write(step: str) -> None:
        nonlocal clock
        clock += 1
        running = [r for r in rows.values() if r.running]
        done = [r for r in rows.values() if not r.running]
        if step == "start":
            rows[len(rows) + 1] = recorded(len(rows) + 1, None)
        elif step == "finish" and running:
            rows[running[0].id] = running[0]._replace(finished_usec=clock)
        elif step == "touch" and done:
            rows[done[-1].id] = done[-1]._replace(output_truncated=True)

    for _ in range(before):
        write("start")
    write("finish")
    finished_before = {r.id for r in rows.values() if not r.running}
    tracker = follow.FinishedRuns(max(rows, default=0), {r.id for r in rows.values() if r.running})
    reported: list[RecordedRun] = []

    def look() -> None:
        wanted = [r for r in rows.values() if r.id > tracker.after_id or r.id in tracker.pending]
        reported.extend(tracker.update(sorted(wanted, key=lambda r: r.id)))

    for step in steps:
        if step == "look":
            look()
        else:
            write(step)
    look()
    ids = [r.id for r in reported]
    assert set(ids) == {r.id for r in rows.values() if not r.running} - finished_before
    assert len(ids) == len(set(ids))
    assert all(not r.running for r in reported)


def run(n: int, finished_usec: int | None) -> Run:
    return Run(
        unit="new.service", invocation_id=invocation(100 + n), host="host1", source=Source.BUS,
        started_usec=NOW_USEC, finished_usec=finished_usec,
        result=None if finished_usec is None else "success",
        exit_code=None if finished_usec is None else "exited",
        exit_status=None if finished_usec is None else 0,
    )  # fmt: skip


class Script:
    """A sleep that writes the next step into the store instead of waiting."""

    def __init__(self, steps: Sequence[Callable[[], object]]) -> None:
        self.steps = list(steps)

    def __call__(self, seconds: float) -> None:
        if self.steps:
            self.steps.pop(0)()


def write(path: Path, *runs: Run, batch: database.Batch | None = None) -> None:
    conn = database.open_for_writing(path)
    try:
        database.write_batch(conn, batch or database.Batch(runs=list(runs)))
    finally:
        conn.close()


def replace(path: Path, *runs: Run) -> None:
    """Delete the store and make a new one in its place."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    write(path, *runs)


def test_it_follows_a_store_from_before_it_exists_to_its_replacement(tmp_path: Path) -> None:
    path = tmp_path / "observer.db"
    notices: list[str] = []
    script = Script(
        [
            lambda: None,
            lambda: write_store(path),  # the daemon's first start: days of runs read back
            lambda: write(path, run(1, None)),
            lambda: write(path, run(1, NOW_USEC + 2 * SECOND)),
            lambda: write(path, run(1, NOW_USEC + 2 * SECOND), run(2, NOW_USEC + 3 * SECOND)),
            lambda: write(  # output arriving after the end
                path,
                batch=database.Batch(
                    lines=[database.StoredLine(invocation(101), 0, NOW_USEC, 6, b"x")]
                ),
            ),
            lambda: replace(path, run(3, NOW_USEC + 4 * SECOND)),
        ]
    )
    batches = follow.finished_runs(
        path, sleep=script, now_usec=lambda: NOW_USEC, notice=notices.append
    )
    seen = [[r.invocation_id for r in next(batches)] for _ in range(3)]
    batches.close()
    assert seen == [[invocation(101)], [invocation(102)], [invocation(103)]]
    assert notices == [f"no database at {str(path)!r} yet: waiting for the daemon"]


def test_it_reports_nothing_of_what_a_store_held_when_following_began(tmp_path: Path) -> None:
    path = write_store(tmp_path / "observer.db")  # run 4 is still running
    finish_4 = store_run(path, 4)._replace(
        finished_usec=NOW_USEC, result="success", exit_code="exited"
    )
    script = Script([lambda: None, lambda: write(path, finish_4)])
    batches = follow.finished_runs(path, sleep=script, now_usec=lambda: NOW_USEC)
    assert [r.id for r in next(batches)] == [4]
    batches.close()


def store_run(path: Path, run_id: int) -> Run:
    conn = database.open_for_reading(path)
    try:
        row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    finally:
        conn.close()
    return Run(
        unit=row["unit"], invocation_id=row["invocation_id"], host=row["host"],
        source=Source(row["source"]), started_usec=row["started_usec"], trigger=row["trigger"],
    )  # fmt: skip


def test_it_stops_at_a_store_of_a_newer_schema(tmp_path: Path) -> None:
    path = write_store(tmp_path / "observer.db")
    conn = database.open_for_writing(path)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="schema"):
        next(follow.finished_runs(path, sleep=lambda s: None))


# -- the command, as a process -----------------------------------------------------------


def follow_process(db: Path, *args: str, stdout: int = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "observer", "runs", "--follow", "--db", str(db), *args],
        stdout=stdout, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


class Lines:
    """A stream's lines as a reader thread gets them, so that a test waits for each with a
    deadline instead of blocking on a read that may never return."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.queue: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.stream:
            self.queue.put(line)

    def get(self, timeout: float) -> str | None:
        """The next line, or None when none came within ``timeout`` seconds."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def next(self, what: str, timeout: float = 30) -> str:
        line = self.get(timeout)
        if line is None:
            raise AssertionError(f"no line within {timeout} s: expected {what}")
        return line

    def close(self) -> None:
        """Once the writer is gone: the reader reaches the end, then the stream is closed."""
        self.reader.join(timeout=30)
        self.stream.close()


def follower_caught_up(db: Path, lines: Lines) -> None:
    """Write finished runs of new.service until the follower prints one, and read the lines
    it owes for the others: its baseline was read by then, so runs written next are new."""
    written: list[int] = []

    def printed() -> str | None:
        written.append(len(written) + 10)
        write(db, run(written[-1], NOW_USEC))
        return lines.get(timeout=1)  # not a deadline: no line yet, another run is written

    first = json.loads(wait_for(printed, timeout=60, what="the follower to print a run", every=0))
    # Those written after the first it printed are owed (run n's invocation ID is 100 + n).
    for _ in range(written[-1] - (int(first["invocation_id"], 16) - 100)):
        assert json.loads(lines.next("a primer run"))["unit"] == "new.service"


def test_the_command_prints_one_json_object_a_line_and_ends_quietly_on_ctrl_c(
    tmp_path: Path,
) -> None:
    db = write_store(tmp_path / "observer.db")
    process = follow_process(db, "--json", "--unit", "new")
    assert process.stdout is not None
    assert process.stderr is not None
    lines = Lines(process.stdout)
    try:
        follower_caught_up(db, lines)
        write(db, run(1, NOW_USEC), run(2, None)._replace(unit="other.service"))
        line = lines.next("run 1 of new.service")
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        err = process.stderr.read()
    finally:
        process.kill()
        process.wait()
        lines.close()
        process.stderr.close()
    assert json.loads(line)["invocation_id"] == invocation(101)
    assert json.loads(line).keys() >= {"id", "unit", "result", "finished_at", "duration_seconds"}
    assert (process.returncode, err) == (0, "")


def test_the_command_ends_quietly_when_its_reader_goes_away(tmp_path: Path) -> None:
    db = write_store(tmp_path / "observer.db")
    read_end, write_end = os.pipe()
    head = subprocess.Popen(["head", "-n", "1"], stdin=read_end, stdout=subprocess.PIPE)
    process = follow_process(db, stdout=write_end)
    os.close(read_end)
    os.close(write_end)
    runs = itertools.count(1)

    def ended() -> bool:
        # The follower prints only runs that end after it read its baseline: write until
        # one meets the closed pipe and the follower ends.
        write(db, run(next(runs), NOW_USEC))
        try:
            process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return False
        return True

    try:
        out, _ = head.communicate(timeout=30)  # the table's header line
        wait_for(ended, timeout=60, what="the follower to end at a closed pipe", every=0)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
        head.kill()
    assert out.decode().split() == [
        "ID",
        "UNIT",
        "STARTED",
        "DURATION",
        "RESULT",
        "EXIT",
        "TRIGGER",
    ]
    assert (process.returncode, err) == (0, "")


def test_the_command_refuses_options_that_choose_past_runs(tmp_path: Path) -> None:
    db = write_store(tmp_path / "observer.db")
    result = subprocess.run(
        [sys.executable, "-m", "observer", "history", "backup", "-f", "-n", "3", "--db", str(db)],
        check=False, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert "--follow prints runs as they finish" in result.stderr


def test_it_opens_the_store_once_while_nothing_else_has_it_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_store(tmp_path / "observer.db")  # closed: no -wal file until a reader opens it
    opened: list[Path] = []
    real_open = database.open_for_reading

    def counting_open(db: Path) -> sqlite3.Connection:
        opened.append(db)
        return real_open(db)

    monkeypatch.setattr(database, "open_for_reading", counting_open)
    looks = Script([lambda: None] * 5 + [lambda: write(path, run(1, NOW_USEC))])
    batches = follow.finished_runs(path, sleep=looks, now_usec=lambda: NOW_USEC)
    assert [r.invocation_id for r in next(batches)] == [invocation(101)]
    batches.close()
    assert opened == [path]
