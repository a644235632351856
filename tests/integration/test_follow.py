"""`observer runs --follow` against the real daemon recording a real systemd."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from pathlib import Path
from typing import IO, Any

import pytest

from tests.integration.observed import ObserverDaemon, observer_cmd, oneshot
from tests.sandbox import Sandbox

pytestmark = pytest.mark.integration

# Generous: the line comes within a second of the run's end (bench/follow_idle.py measures it).
WAIT = 60


class Follower:
    """`observer ... --follow` as a process, its lines read as they come."""

    def __init__(self, db: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            observer_cmd(*args, "--follow", "--db", str(db)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, TZ="UTC"),
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: queue.Queue[str] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.lines)),
            threading.Thread(target=self._read, args=(self.process.stderr, self.errors)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()

    @staticmethod
    def _read(stream: IO[str] | None, lines: queue.Queue[str]) -> None:
        assert stream is not None
        for line in stream:
            lines.put(line)

    def following(self) -> str:
        """Its note that it waits for the database to appear: it has begun to follow, and
        prints what ends from now on (a process slow to start under load did not, once)."""
        try:
            note = self.errors.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"the follower said nothing in {WAIT}s") from None
        self.errors.put(note)  # still part of what it said (interrupt)
        return note

    def next_line(self) -> str:
        try:
            return self.lines.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no line from the follower in {WAIT}s") from None

    def next_json(self) -> dict[str, Any]:
        run: dict[str, Any] = json.loads(self.next_line())
        return run

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: the exit status and what it said on stderr."""
        self.process.send_signal(signal.SIGINT)
        self._ended()
        return self.process.returncode, "".join(self.errors.queue)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self._ended()

    def _ended(self) -> None:
        """Wait for the process to end and its output to be read; close the pipes."""
        self.process.wait(timeout=30)
        for reader in self._readers:
            reader.join(timeout=30)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def test_it_prints_each_run_once_as_it_ends_from_before_the_database_exists_and_across_restarts(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    daemon = ObserverDaemon(sandbox, tmp_path)
    sandbox.write_unit("slow.service", oneshot("echo starting; sleep 2; echo done; exit 3"))
    sandbox.write_unit("quick.service", oneshot("echo quick"))
    sandbox.write_unit("other.service", oneshot("echo not followed"))
    sandbox.daemon_reload()
    sandbox.start("quick.service")  # before anything watches: in the journal, not printed
    follower = Follower(daemon.db, "runs", "--json", "--unit", "slow*")
    everything = Follower(daemon.db, "runs", "--json")
    try:
        for each in (follower, everything):
            assert "yet: waiting for the daemon" in each.following()
        daemon.start()  # creates the database, reads the quick run back from the journal
        sandbox.start("other.service")
        sandbox.start("slow.service", wait=False)
        first = follower.next_json()
        assert (first["unit"], first["result"], first["exit_status"]) == (
            "slow.service", "exit-code", 3,
        )  # fmt: skip
        assert first["finished_at"] is not None
        printed = {everything.next_json()["unit"], everything.next_json()["unit"]}
        assert printed == {"other.service", "slow.service"}

        assert daemon.stop() == 0
        daemon.start()
        sandbox.start("slow.service", wait=False)
        second = follower.next_json()
        assert second["unit"] == "slow.service"
        assert second["id"] != first["id"]
        assert everything.next_json()["id"] == second["id"]

        # Only the note that it waited for the database: nothing else, no traceback.
        waited = [f"observer: no database at {str(daemon.db)!r} yet: waiting for the daemon"]
        for each in (follower, everything):
            status, err = each.interrupt()
            assert (status, err.strip().splitlines()) == (0, waited)
            assert each.lines.empty()  # each run once, output arriving late included
    finally:
        follower.close()
        everything.close()
        daemon.close()


def test_history_follow_prints_a_table_row_for_each_run_of_its_unit(
    observed: ObserverDaemon, sandbox: Sandbox
) -> None:
    sandbox.write_unit("nightly.service", oneshot("sleep 2; echo ok"))
    sandbox.write_unit("other.service", oneshot("echo other"))
    sandbox.daemon_reload()
    follower = Follower(observed.db, "history", "nightly")
    try:
        header = follower.next_line().split()
        assert header == ["ID", "STARTED", "DURATION", "RESULT", "EXIT", "TRIGGER"]
        sandbox.start("other.service")
        sandbox.start("nightly.service", wait=False)
        row = follower.next_line().split()
        [run] = observed.finished_runs("nightly", 1)
        assert row[0] == str(run["id"])
        assert row[-3:] == ["success", "0", "-"]
        status, err = follower.interrupt()
        assert (status, err) == (0, "")
        assert follower.lines.empty()
    finally:
        follower.close()
