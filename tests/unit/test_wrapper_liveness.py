"""A run whose `observer run` is gone (SIGKILL) is closed as interrupted; a live one is not."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from observer.model import Run, Source
from observer.run import liveness, spool
from observer.run.spool import RunRecord
from observer.store import database

NOW = time.time_ns() // 1000


def started(invocation: str) -> Run:
    return Run("nightly", invocation * 32, "host1", Source.WRAPPER, started_usec=NOW)


def test_a_run_is_closed_as_interrupted_at_its_last_heartbeat_once_its_wrapper_is_gone(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    conn = database.open_for_writing(db)
    directory = tmp_path / "spool"
    run = started("a")
    spool.write_record(conn, RunRecord(run))
    mark = liveness.LifeMark.create(directory, run, db)
    mark.beat()
    last_seen = os.stat(mark.path).st_mtime_ns // 1000

    assert liveness.close_gone(conn, directory, db) == []  # its wrapper holds the lock
    os.close(mark.fd)  # what SIGKILL does: the lock goes, the mark stays
    [closed] = liveness.close_gone(conn, directory, db)

    assert (closed.invocation_id, closed.result) == (run.invocation_id, "interrupted")
    assert closed.finished_usec == last_seen
    row = conn.execute(
        "SELECT result, finished_usec FROM runs WHERE invocation_id = ?", (run.invocation_id,)
    ).fetchone()
    assert row == ("interrupted", last_seen)
    assert not mark.path.exists()
    assert liveness.close_gone(conn, directory, db) == []


def test_a_mark_held_by_another_live_process_is_left_and_closed_once_that_process_is_killed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    conn = database.open_for_writing(db)
    directory = tmp_path / "spool"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from pathlib import Path\n"
         "from observer.model import Run, Source\n"
         "from observer.run.liveness import LifeMark\n"
         f"LifeMark.create(Path({str(directory)!r}), Run('nightly', 'b' * 32, 'host1', "
         f"Source.WRAPPER, started_usec={NOW}), Path({str(db)!r}))\n"
         "print('ready', flush=True)\n"
         "time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "ready\n"
        assert liveness.close_gone(conn, directory, db) == []
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()

    # The start was never stored (the database was busy): the mark alone makes the run.
    [closed] = liveness.close_gone(conn, directory, db)
    assert (closed.unit, closed.result, closed.started_usec) == ("nightly", "interrupted", NOW)


def test_a_mark_whose_wrapper_spooled_its_end_waits_for_the_import_of_that_end(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    conn = database.open_for_writing(db)
    directory = tmp_path / "spool"
    run = started("c")
    mark = liveness.LifeMark.create(directory, run, db)
    finished = RunRecord(run._replace(finished_usec=NOW + 9, result="success"))
    spool.spool(finished, directory, db)
    os.close(mark.fd)  # killed after spooling its end, before removing its mark

    assert liveness.close_gone(conn, directory, db) == []
    [imported] = spool.import_spooled(conn, directory, db, None)
    assert imported.result == "success"
    assert not mark.path.exists()
    assert liveness.close_gone(conn, directory, db) == []


def test_a_mark_that_is_not_one_is_set_aside_and_one_for_another_database_left_alone(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    conn = database.open_for_writing(db)
    directory = tmp_path / "spool"
    other = liveness.LifeMark.create(directory, started("d"), tmp_path / "other.db")
    os.close(other.fd)
    (directory / "live" / f"{'e' * 32}.live").write_text("{not json")

    assert liveness.close_gone(conn, directory, db) == []
    assert sorted(p.name for p in (directory / "live").iterdir()) == [
        f"{'d' * 32}.live",
        f"{'e' * 32}.bad",
    ]
