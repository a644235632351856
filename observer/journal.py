"""journald: follow the journal from a saved cursor and turn entries into events.

A journal Reader must stay on one thread for its whole life, and reading a long backlog
would block the event loop: one thread owns the Reader and hands batches to the loop,
waiting when the daemon falls behind.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from observer.model import JobKind, OutputLine, Pid1Record

log = logging.getLogger(__name__)

# MESSAGE_IDs of the records PID 1 writes about a unit's jobs and runs (systemd 252).
MESSAGE_KINDS = {
    "7d4958e842da4a758f6c1cdc7b36dcc5": JobKind.STARTING,
    "39f53479d3a045ac8e11786248231fbf": JobKind.STARTED,
    "be02cf6855d2428ba40df7e9d022f03d": JobKind.START_FAILED,
    "98e322203f7a4ed290d09fe03c09fe15": JobKind.MAIN_EXITED,
    "7ad2d189f7e94e70a38c781354912448": JobKind.DEACTIVATED,
    "d9b373ed55a64feb8242e02dbe79a49c": JobKind.FAILED,
    "0e4284a0caca4bfc81c0bb6786972673": JobKind.CONDITION_SKIPPED,
    "5eb03494b6584870a536b337290809b3": JobKind.RESTART_SCHEDULED,
}

BATCH_SIZE = 1000


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    return None


def _number(value: object) -> int | None:
    text = _text(value)
    if text is None:
        return value if isinstance(value, int) else None
    try:
        return int(text)
    except ValueError:
        return None


def _message(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", errors="surrogateescape")
    if isinstance(value, list):  # a field set twice in one entry: keep all of it
        return b"\n".join(_message(v) for v in value)
    return b""


def parse_entry(entry: Mapping[str, object]) -> Pid1Record | OutputLine | None:
    """The event a raw journal entry stands for, or None when it is not about a service.

    ``entry`` maps field names to raw bytes (numbers may come as int), with
    ``__REALTIME_TIMESTAMP`` in microseconds.
    """
    realtime = _number(entry.get("__REALTIME_TIMESTAMP"))
    if realtime is None:
        return None
    pid = _number(entry.get("_PID"))
    if pid == 1:
        kind = MESSAGE_KINDS.get((_text(entry.get("MESSAGE_ID")) or "").replace("-", ""))
        unit = _text(entry.get("UNIT"))
        invocation_id = _text(entry.get("INVOCATION_ID"))
        if kind is None or not unit or not invocation_id:
            return None
        # One MESSAGE_ID covers "Started X." and a oneshot's "Finished X." (never localized).
        if kind is JobKind.STARTED and _message(entry.get("MESSAGE")).startswith(b"Finished "):
            kind = JobKind.FINISHED
        return Pid1Record(
            kind=kind,
            unit=unit,
            invocation_id=invocation_id,
            realtime_usec=realtime,
            boot_id=_text(entry.get("_BOOT_ID")),
            exit_code=_text(entry.get("EXIT_CODE")),
            exit_status=_number(entry.get("EXIT_STATUS")),
            unit_result=_text(entry.get("UNIT_RESULT")),
            job_id=_number(entry.get("JOB_ID")),
            restarts=_number(entry.get("N_RESTARTS")),
        )
    unit = _text(entry.get("_SYSTEMD_UNIT"))
    if not unit or not unit.endswith(".service"):
        return None
    # Empty when the process exited before journald read its cgroup: the daemon then
    # attributes the line by unit and time.
    invocation_id = _text(entry.get("_SYSTEMD_INVOCATION_ID")) or ""
    priority = _number(entry.get("PRIORITY"))
    return OutputLine(
        invocation_id=invocation_id,
        unit=unit,
        realtime_usec=realtime,
        priority=6 if priority is None else priority,
        message=_message(entry.get("MESSAGE")),
    )


@dataclass(frozen=True, slots=True)
class JournalBatch:
    """Events read from the journal, and the cursor of the last entry read."""

    events: list[Pid1Record | OutputLine]
    cursor: str


def _identity(value: object) -> object:
    return value


class JournalFollower:
    """Reads the journal on its own thread and puts batches on an asyncio queue."""

    def __init__(
        self,
        queue: asyncio.Queue[JournalBatch],
        loop: asyncio.AbstractEventLoop,
        *,
        journal_dir: Path | None,
        cursor: str | None,
        since_usec: int | None,
    ) -> None:
        self._queue = queue
        self._loop = loop
        self._journal_dir = journal_dir
        self._cursor = cursor
        self._since_usec = since_usec
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="observer-journal", daemon=True)
        self.failure: BaseException | None = None
        self.entries_read = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _open(self) -> object:
        from systemd import journal  # noqa: PLC0415 (needs the C library; only the daemon does)

        raw = ("MESSAGE", "MESSAGE_ID", "__REALTIME_TIMESTAMP")
        converters = dict.fromkeys(raw, _identity)
        if self._journal_dir is not None:
            reader = journal.Reader(path=str(self._journal_dir), converters=converters)
        else:
            reader = journal.Reader(flags=journal.SYSTEM_ONLY, converters=converters)
        if self._cursor is not None:
            reader.seek_cursor(self._cursor)
            # Seeking to a cursor lands on that entry, which was already processed.
            entry = reader.get_next()
            if entry and not reader.test_cursor(self._cursor):
                reader.get_previous()
        elif self._since_usec is not None:
            reader.seek_realtime(self._since_usec / 1_000_000)
        else:
            reader.seek_tail()
            reader.get_previous()
        return reader

    def _run(self) -> None:
        try:
            reader = self._open()
            while not self._stopping.is_set():
                batch = self._read_batch(reader)
                if batch is not None:
                    self._deliver(batch)
                    if len(batch.events) >= BATCH_SIZE:
                        continue
                # Wakes as soon as the journal changes; the timeout only bounds a stop.
                reader.wait(1.0)  # type: ignore[attr-defined]
        except BaseException as e:  # the daemon notices and reports it
            log.exception("journal reader failed")
            self.failure = e

    def _read_batch(self, reader: object) -> JournalBatch | None:
        events: list[Pid1Record | OutputLine] = []
        cursor: str | None = None
        for _ in range(BATCH_SIZE * 4):
            entry = reader.get_next()  # type: ignore[attr-defined]
            if not entry:
                break
            self.entries_read += 1
            cursor = entry["__CURSOR"]
            try:
                event = parse_entry(entry)
            except Exception:  # one odd entry never stops the reader
                log.exception("skipped a journal entry observer could not read")
                continue
            if event is not None:
                events.append(event)
                if len(events) >= BATCH_SIZE:
                    break
        if cursor is None:
            return None
        return JournalBatch(events, cursor)

    def _deliver(self, batch: JournalBatch) -> None:
        future = asyncio.run_coroutine_threadsafe(self._queue.put(batch), self._loop)
        while not self._stopping.is_set():
            try:
                future.result(timeout=0.5)
                return
            except TimeoutError:
                continue
        future.cancel()
