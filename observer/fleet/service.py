"""The daemon's side of run records: one journal entry per finished run (records.py)."""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path

from observer.fleet.records import record_fields
from observer.model import Run, Source
from observer.store import database, definitions

log = logging.getLogger(__name__)

# A run's record is written this long after it ended: by then the output that trails the
# end, and what the run cost (asked of systemd when it ends), are in the store.
RECORD_DELAY_SECONDS = 2.0
# How many written records' runs to remember for a trigger that comes after them.
_REMEMBERED = 4096

_COLUMNS = (
    "r.unit, r.invocation_id, r.host, r.source, r.boot_id, r.trigger, r.started_usec, "
    "r.finished_usec, r.result, r.exit_code, r.exit_status, r.restarts, r.start_key, r.reason, "
    "r.cpu_seconds, r.io_read_bytes, r.io_write_bytes, r.memory_peak_bytes, s.lines, s.bytes"
)


# journald's native protocol socket (systemd.journal-fields(7), "native protocol").
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")


def native_datagram(fields: Mapping[str, str]) -> bytes:
    """An entry in journald's native protocol: ``NAME=value`` lines, or for a value that
    holds a newline, the name, a newline, its length (64-bit little-endian) and the bytes."""
    out = bytearray()
    for name, value in fields.items():
        data = value.encode("utf-8", errors="surrogateescape")
        if b"\n" in data:
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


def journal_sender(path: Path = JOURNAL_SOCKET) -> Callable[[Mapping[str, str]], None]:
    """Sends entries to the journald listening on ``path`` (another systemd's, in tests)."""

    def send(fields: Mapping[str, str]) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(native_datagram(fields), str(path))

    return send


def stored_record(conn: sqlite3.Connection, run: Run) -> dict[str, str] | None:
    """The record of ``run`` as the store holds it now (None: it is gone, or not finished)."""
    key = "invocation_id" if run.invocation_id else "start_key"
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM runs r LEFT JOIN output_stats s "
        f"ON s.invocation_id = r.invocation_id WHERE r.{key} = ?",
        (run.key,),
    ).fetchone()
    if row is None or row[7] is None:
        return None
    stored = Run(
        unit=row[0],
        invocation_id=row[1],
        host=row[2],
        source=Source(row[3]),
        boot_id=row[4],
        trigger=row[5],
        started_usec=row[6],
        finished_usec=row[7],
        result=row[8],
        exit_code=row[9],
        exit_status=row[10],
        restarts=row[11],
        start_key=row[12],
        reason=row[13],
        cpu_seconds=row[14],
        io_read_bytes=row[15],
        io_write_bytes=row[16],
        memory_peak_bytes=row[17],
    )
    fields = record_fields(stored, row[18] or 0, row[19] or 0)
    if (digest := definitions.digest_of_run(conn, stored.invocation_id)) is not None:
        fields["OBSERVER_DEFINITION"] = digest  # what defined it (not read by a central one)
    return fields


class RunRecords:
    """Writes a record of each finished run into the journal, a moment after it ended."""

    def __init__(
        self,
        db_path: Path,
        delay: float = RECORD_DELAY_SECONDS,
        send: Callable[[Mapping[str, str]], None] | None = None,
    ) -> None:
        self.db_path = db_path
        self.delay = delay
        self.send = send or journal_sender()
        self.written = 0
        self.failed = 0
        self._waiting: list[Run] = []
        self._due = asyncio.Event()
        # Runs whose record was written (or is due): a trigger told late writes it again.
        self._written: OrderedDict[str, None] = OrderedDict()

    def runs_recorded(self, runs: list[Run]) -> None:
        self._waiting.extend(runs)
        for run in runs:
            if run.invocation_id:
                self._written[run.invocation_id] = None
        while len(self._written) > _REMEMBERED:
            self._written.popitem(last=False)
        self._due.set()

    def trigger_known(self, run: Run) -> None:
        """The bus named a run's trigger: if its record went out without it, write it again
        (the record replaces the earlier one's facts at a central observer)."""
        if run.invocation_id in self._written:
            self._waiting.append(run)
            self._due.set()

    def _write_waiting(self) -> None:
        runs, self._waiting = self._waiting, []
        if not runs:
            return
        try:
            self._write_now(runs)
        except Exception as e:  # a record that cannot be written never stops the recording
            self._failed(runs, e)

    def _failed(self, runs: list[Run], error: Exception) -> None:
        self.failed += len(runs)
        if self.failed == len(runs) or self.failed % 1000 < len(runs):
            log.warning("could not write %d run records into the journal: %s", len(runs), error)

    def _write_now(self, runs: list[Run]) -> None:
        conn = database.open_for_reading(self.db_path)
        try:
            for run in runs:
                fields = stored_record(conn, run)
                if fields is not None:
                    self.send(fields)
                    self.written += 1
        finally:
            conn.close()

    async def run(self) -> None:
        """Write the records of runs that ended ``delay`` ago; on stop, what still waits."""
        try:
            while True:
                await self._due.wait()
                await asyncio.sleep(self.delay)
                self._due.clear()
                runs, self._waiting = self._waiting, []
                try:
                    await asyncio.to_thread(self._write_now, runs)
                except Exception as e:  # a record that cannot be written never stops it
                    self._failed(runs, e)
        finally:
            self._write_waiting()
