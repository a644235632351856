"""journald: follow the journal from a saved cursor and turn entries into events.

A journal Reader must stay on one thread for its whole life, and reading a long backlog
would block the event loop: one thread owns the Reader and hands batches to the loop,
waiting when the daemon falls behind.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import re
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from observer.bounds import INT64_MAX, in_range
from observer.model import VacuumedJournal, journal_cursor_usec
from observer.native import name_thread
from observer.recording.events import JobKind, OutputLine, OutputSuppressed, Pid1Record
from observer.users import SEPARATOR, qualify

log = logging.getLogger(__name__)

# MESSAGE_IDs of the records PID 1 writes about a unit's jobs and runs (systemd 252 to 262).
MESSAGE_KINDS = {
    "7d4958e842da4a758f6c1cdc7b36dcc5": JobKind.STARTING,
    "39f53479d3a045ac8e11786248231fbf": JobKind.STARTED,
    "be02cf6855d2428ba40df7e9d022f03d": JobKind.START_FAILED,
    "98e322203f7a4ed290d09fe03c09fe15": JobKind.MAIN_EXITED,
    "7ad2d189f7e94e70a38c781354912448": JobKind.DEACTIVATED,
    "d9b373ed55a64feb8242e02dbe79a49c": JobKind.FAILED,
    "0e4284a0caca4bfc81c0bb6786972673": JobKind.CONDITION_SKIPPED,
    "5eb03494b6584870a536b337290809b3": JobKind.RESTART_SCHEDULED,
    "ae8f7b866b0347b9af31fe1c80b127c0": JobKind.RESOURCES,
    # A container's (and a user manager's) start-up; a machine's, and since 256 any
    # soft-reboot's (src/core/manager.c, manager_notify_finished, v252 to v256).
    "eed00a68ffd84e31882105fd973abdd1": JobKind.STARTUP_FINISHED,
    "b07a249cd024414a82dd00cd181378ff": JobKind.STARTUP_FINISHED,
}
# journald's "Suppressed N messages from X.service" (its rate limit).
SUPPRESSED_MESSAGE_ID = "a596d6fe7bfa4994828e72309e95d61e"
# A start skipped for an unmet condition, as PID 1 words it (src/core/job.c): the record
# has the "Started" MESSAGE_ID and no field naming the condition. Group 1: the condition.
_UNMET_CONDITIONS = (
    # 252 to 256: "X was skipped because of an unmet condition check (ConditionPathExists=/x)."
    re.compile(rb" was skipped because of an unmet condition check \((.*)\)\.?$"),
    # 257 on: "X skipped, unmet condition check ConditionPathExists=/x"
    re.compile(rb" skipped, unmet condition check ?(.*)$"),
    # Triggering conditions ("|"), none of which held: 252-256, then 257 on.
    re.compile(rb" was skipped because (no trigger condition checks were met)\.?$"),
    re.compile(rb" skipped, (no trigger condition checks were met)\.?$"),
)
# PID 1's code functions are stable names; its messages are never localized either.
_START_LIMIT_FUNC = "unit_test_start_limit"

BATCH_SIZE = 1000
# How many entries' times are kept to find the last one before a new systemd started.
_RECENT_ENTRIES = 4096
# Read to its end at wall time W, the journal can still be given an entry stamped up to this
# long before W: journald stamps a native message (PID 1's records) with the time its socket
# received it, which can come before the write of an entry stamped later.
QUIET_MARGIN_USEC = 1_000_000


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    return None


def _integer(value: object) -> int | None:
    """A field's value as an integer, however large (None: not a number)."""
    text = _text(value)
    if text is None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    try:
        return int(text)
    except ValueError:
        return None


def _number(value: object, field: str) -> int | None:
    """A field's integer if SQLite can hold it; None (and counted) when it is out of range."""
    return in_range(_integer(value), "journal", field)


def _realtime(entry: Mapping[str, object]) -> int | None:
    """An entry's time, for the reader's own bookkeeping (parse_entry counts a bad one)."""
    usec = _integer(entry.get("__REALTIME_TIMESTAMP"))
    return usec if usec is not None and 0 <= usec <= INT64_MAX else None


def _message(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", errors="surrogateescape")
    if isinstance(value, list):  # a field set twice in one entry: keep all of it
        return b"\n".join(_message(v) for v in value)
    return b""


JournalEvent = Pid1Record | OutputLine | OutputSuppressed


def _nobody(uid: int) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class JournalScope:
    """Whose records a daemon reads: the system manager's, users' managers', or both."""

    system: bool = True  # PID 1's records and the system units' output
    # uid -> the name of a user whose manager's records are read (None: not read).
    users: Callable[[int], str | None] = _nobody
    # Whether the user managers' records are read at all: they are in user-UID.journal.
    user_journals: bool = False


SYSTEM_ONLY = JournalScope()


def _user_manager(entry: Mapping[str, object]) -> int | None:
    """The uid of the user manager that wrote ``entry`` about one of its units, if one did."""
    if not (_text(entry.get("_SYSTEMD_UNIT")) or "").startswith("user@"):
        return None
    if _text(entry.get("_SYSTEMD_USER_UNIT")) != "init.scope":
        return None
    return _number(entry.get("_UID"), "_UID")


def _user_unit(entry: Mapping[str, object], prefix: str = "") -> tuple[int, str] | None:
    """The uid and user unit a line came from, when a user manager ran it."""
    if not (_text(entry.get(f"{prefix}_SYSTEMD_UNIT")) or "").startswith("user@"):
        return None
    unit = _text(entry.get(f"{prefix}_SYSTEMD_USER_UNIT"))
    uid = _number(entry.get(f"{prefix}_SYSTEMD_OWNER_UID"), "_SYSTEMD_OWNER_UID")
    if uid is None and not prefix:
        uid = _number(entry.get("_UID"), "_UID")
    return None if unit is None or uid is None else (uid, unit)


def parse_entry(
    entry: Mapping[str, object], scope: JournalScope = SYSTEM_ONLY
) -> JournalEvent | None:
    """The event a raw journal entry stands for, or None when it is not about a service.

    ``entry`` maps field names to raw bytes (numbers may come as int), with
    ``__REALTIME_TIMESTAMP`` in microseconds. A user manager's records and its units'
    output name the unit ``USER/UNIT`` (observer/users.py).
    """
    realtime = _number(entry.get("__REALTIME_TIMESTAMP"), "__REALTIME_TIMESTAMP")
    if realtime is None:
        return None
    pid = _number(entry.get("_PID"), "_PID")
    message_id = (_text(entry.get("MESSAGE_ID")) or "").replace("-", "")
    manager_uid = None if pid == 1 else _user_manager(entry)
    if (pid == 1 and scope.system) or manager_uid is not None:
        return _manager_record(entry, scope, manager_uid, message_id, realtime)
    if pid == 1:
        return None
    read = _OTHER_RECORDS.get(message_id, _output_line)
    return read(entry, scope, realtime)


def _manager_record(
    entry: Mapping[str, object],
    scope: JournalScope,
    manager_uid: int | None,
    message_id: str,
    realtime: int,
) -> Pid1Record | None:
    """A record of PID 1 (``manager_uid`` None) or of a user's manager about a unit's job."""
    kind = MESSAGE_KINDS.get(message_id)
    if kind is None and _text(entry.get("CODE_FUNC")) == _START_LIMIT_FUNC:
        kind = JobKind.START_LIMIT
    if manager_uid is None:
        unit = _text(entry.get("UNIT"))
        # Empty for a start that never got an invocation (a condition, a dependency).
        invocation_id = _text(entry.get("INVOCATION_ID")) or ""
    else:
        user = scope.users(manager_uid)
        # A user not read, or its manager's start-up (which ends none of the system's runs).
        if user is None or (kind is JobKind.STARTUP_FINISHED and scope.system):
            return None
        # A user manager's own records: the same MESSAGE_IDs, other field names.
        unit = _text(entry.get("USER_UNIT"))
        unit = None if unit is None else qualify(user, unit)
        invocation_id = _text(entry.get("USER_INVOCATION_ID")) or ""
    if kind is JobKind.STARTUP_FINISHED:
        return _startup_finished(entry, realtime)
    if kind is None or not unit:
        return None
    kind, reason = _refined(kind, _message(entry.get("MESSAGE")))
    if not invocation_id and kind not in _WITHOUT_INVOCATION:
        return None
    return _unit_record(entry, kind, unit, invocation_id, realtime, reason)


def _startup_finished(entry: Mapping[str, object], realtime: int) -> Pid1Record:
    """A manager finished starting up: the runs it had before can no longer end."""
    return Pid1Record(
        kind=JobKind.STARTUP_FINISHED,
        unit="",
        invocation_id="",
        realtime_usec=realtime,
        boot_id=_text(entry.get("_BOOT_ID")),
        userspace_usec=_number(entry.get("USERSPACE_USEC"), "USERSPACE_USEC"),
    )


def _refined(kind: JobKind, message: bytes) -> tuple[JobKind, str | None]:
    """The kind a "Started" record really is, and the unmet condition of a skipped start.

    One MESSAGE_ID covers "Started X.", a oneshot's "Finished X." and a start skipped
    for an unmet condition (never localized).
    """
    if kind is JobKind.STARTED and (unmet := _unmet_condition(message)) is not None:
        return JobKind.CONDITION_UNMET, unmet
    if kind is JobKind.STARTED and message.startswith(b"Finished "):
        return JobKind.FINISHED, None
    return kind, None


def _unit_record(
    entry: Mapping[str, object],
    kind: JobKind,
    unit: str,
    invocation_id: str,
    realtime: int,
    reason: str | None,
) -> Pid1Record:
    """A manager's record about one of its units' jobs or runs, with the figures it logged."""
    return Pid1Record(
        kind=kind,
        unit=unit,
        invocation_id=invocation_id,
        realtime_usec=realtime,
        boot_id=_text(entry.get("_BOOT_ID")),
        exit_code=_text(entry.get("EXIT_CODE")),
        exit_status=_number(entry.get("EXIT_STATUS"), "EXIT_STATUS"),
        unit_result=_text(entry.get("UNIT_RESULT")),
        job_id=_number(entry.get("JOB_ID"), "JOB_ID"),
        restarts=_number(entry.get("N_RESTARTS"), "N_RESTARTS"),
        job_result=_text(entry.get("JOB_RESULT")),
        reason=reason,
        cpu_usec=_accounted(entry.get("CPU_USAGE_NSEC"), 1000),
        io_read_bytes=_accounted(entry.get("IO_METRIC_READ_BYTES")),
        io_write_bytes=_accounted(entry.get("IO_METRIC_WRITE_BYTES")),
        memory_peak_bytes=_accounted(entry.get("MEMORY_PEAK")),  # 255 on
    )


def _output_suppressed(
    entry: Mapping[str, object], scope: JournalScope, realtime: int
) -> OutputSuppressed | None:
    """journald's note that it dropped lines of a service (its rate limit)."""
    unit = _scoped_unit(entry, scope, "OBJECT")
    dropped = in_range(_integer(entry.get("N_DROPPED")), "journal", "N_DROPPED", low=0)
    if not unit or not unit.endswith(".service") or dropped is None:
        return None
    return OutputSuppressed(
        unit=unit,
        invocation_id=_text(entry.get("OBJECT_SYSTEMD_INVOCATION_ID")) or "",
        realtime_usec=realtime,
        lines=dropped,
    )


def _output_line(
    entry: Mapping[str, object], scope: JournalScope, realtime: int
) -> OutputLine | None:
    """A line a service wrote."""
    unit = _scoped_unit(entry, scope)
    if not unit or not unit.endswith((".service", SEPARATOR)):
        return None
    # Empty when the process exited before journald read its cgroup: the daemon then
    # attributes the line by unit and time.
    invocation_id = _text(entry.get("_SYSTEMD_INVOCATION_ID")) or ""
    priority = _number(entry.get("PRIORITY"), "PRIORITY")
    return OutputLine(
        invocation_id=invocation_id,
        unit=unit,
        realtime_usec=realtime,
        priority=6 if priority is None else priority,
        message=_message(entry.get("MESSAGE")),
    )


# Entries that are not a manager's, by MESSAGE_ID: any other is a line of output.
_OTHER_RECORDS: dict[
    str, Callable[[Mapping[str, object], JournalScope, int], JournalEvent | None]
] = {SUPPRESSED_MESSAGE_ID: _output_suppressed}


def _scoped_unit(entry: Mapping[str, object], scope: JournalScope, prefix: str = "") -> str | None:
    """The unit whose output ``entry`` is (``USER/UNIT`` for a user's), if ``scope`` reads it."""
    user_unit = _user_unit(entry, prefix)
    if user_unit is not None:
        uid, unit = user_unit
        user = scope.users(uid)
        return None if user is None else qualify(user, unit)
    system_unit = _text(entry.get(f"{prefix}_SYSTEMD_UNIT"))
    sender = _number(entry.get("_UID"), "_UID")
    if system_unit is None and not prefix and sender and _text(entry.get("_TRANSPORT")) == "stdout":
        # A user unit's process that exited before journald read its cgroup: only its uid
        # is known (journald takes a unit name from root's streams alone).
        owner = scope.users(sender)
        return None if owner is None else qualify(owner, "")
    return system_unit if scope.system else None


# Records that are about a start with no invocation of its own (or a stale one).
_WITHOUT_INVOCATION = frozenset(
    {JobKind.CONDITION_UNMET, JobKind.START_FAILED, JobKind.START_LIMIT}
)


def _unmet_condition(message: bytes) -> str | None:
    """The condition a skipped start names, if ``message`` is PID 1's record of one."""
    for wording in _UNMET_CONDITIONS:
        if unmet := wording.search(message):
            return unmet.group(1).decode("utf-8", errors="replace")
    return None


# systemd's "not accounted" is UINT64_MAX; no real figure reaches 2^63, and SQLite's
# integers stop there.
NOT_ACCOUNTED = 2**63


def _accounted(value: object, per: int = 1) -> int | None:
    """A resource figure systemd logged; None when absent or "not accounted" (UINT64_MAX)."""
    number = _integer(value)
    if number is None or number < 0 or number >= NOT_ACCOUNTED:
        return None
    return number // per


# Turns a raw entry into what the daemon acts on (parse_entry, or a central observer's).
EntryParser = Callable[[Mapping[str, object], JournalScope], object | None]


@dataclass(frozen=True, slots=True)
class JournalBatch:
    """Events read from the journal, and the cursor of the last entry read; or, with no
    cursor and no events, a mark (``JournalFollower.mark_when_read_past``): the journal is
    read to its end, and nothing stamped before ``last_usec`` is still to come."""

    events: list[object]
    cursor: str | None
    # The realtime of the last entry read (any entry, not only those events stand for).
    last_usec: int | None = None
    # State rows to commit with this batch's cursor (journal history found vacuumed).
    state: dict[str, str] = field(default_factory=dict)


def _raw_next(reader: Any) -> dict[str, object]:
    """The next entry as the journal holds it ({} past the last): each field's bytes (a list
    of them for a field set twice), ``__REALTIME_TIMESTAMP`` in microseconds,
    ``__MONOTONIC_TIMESTAMP`` and ``__CURSOR`` as systemd.journal.Reader.get_next gives
    them. That method also converts every field by its name (to str, int or UUID), in
    Python: it was most of the reading thread's time, and the parsers read bytes."""
    if not reader._next(1):
        return {}
    entry: dict[str, object] = reader._get_all()
    if entry:
        entry["__REALTIME_TIMESTAMP"] = reader._get_realtime()
        entry["__MONOTONIC_TIMESTAMP"] = reader._get_monotonic()
        entry["__CURSOR"] = reader._get_cursor()
    return entry


def _now_usec() -> int:
    return time.time_ns() // 1000


def _shown_time(usec: int) -> str:
    return datetime.fromtimestamp(usec / 1e6).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


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
        scope: JournalScope = SYSTEM_ONLY,
        parse: EntryParser = parse_entry,
    ) -> None:
        self._scope = scope
        self._parse = parse
        self._queue = queue
        self._loop = loop
        self._journal_dir = journal_dir
        self._cursor = cursor
        self._since_usec = since_usec
        self._stopping = threading.Event()
        # Written by stop() and mark_when_read_past(): wakes the thread out of its wait on
        # the journal at once.
        self._wake_pipe = os.pipe()
        os.set_blocking(self._wake_pipe[0], False)
        # The time a mark is wanted past (set on the loop, cleared here when delivered).
        self._mark_lock = threading.Lock()
        self._mark_usec: int | None = None
        self._thread = threading.Thread(target=self._run, name="observer-journal", daemon=True)
        self.failure: BaseException | None = None
        # Set (on the loop) when the thread has ended, for good or on a failure.
        self.ended = asyncio.Event()
        self.entries_read = 0
        self.vacuumed: VacuumedJournal | None = None  # found at start-up
        self._vacuum_told = False
        # Times of the entries read last: what the journal held just before a new systemd.
        self._recent: deque[int] = deque(maxlen=_RECENT_ENTRIES)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake()
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            pipe, self._wake_pipe = self._wake_pipe, (-1, -1)
            for fd in pipe:
                with contextlib.suppress(OSError):
                    os.close(fd)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def mark_when_read_past(self, usec: int) -> None:
        """Deliver a mark once the journal is read to its end so late that no entry stamped
        at ``usec`` or before can still come: held output lines then know no start follows
        them, on a journal where nothing else is written."""
        with self._mark_lock:
            self._mark_usec = usec
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_pipe[1], b"x")

    def _open(self) -> object:
        from systemd import journal  # noqa: PLC0415 (needs the C library; only the daemon does)

        raw = ("MESSAGE", "MESSAGE_ID", "__REALTIME_TIMESTAMP", "__MONOTONIC_TIMESTAMP")
        converters = dict.fromkeys(raw, _identity)
        if self._journal_dir is not None:
            reader = journal.Reader(path=str(self._journal_dir), converters=converters)
        else:
            # Users' managers write to user-UID.journal, which SYSTEM_ONLY leaves out.
            flags = journal.LOCAL_ONLY if self._scope.user_journals else journal.SYSTEM_ONLY
            reader = journal.Reader(flags=flags, converters=converters)
        if self._cursor is not None:
            reader.seek_cursor(self._cursor)
            # Seeking to a cursor lands on that entry, which was already processed.
            entry = reader.get_next()
            if entry and reader.test_cursor(self._cursor):
                if (usec := _realtime(entry)) is not None:
                    self._recent.append(usec)
                return reader
            if entry:
                reader.get_previous()
            self._notice_vacuum(reader, self._cursor)
        elif self._since_usec is not None:
            reader.seek_realtime(self._since_usec / 1_000_000)
        else:
            reader.seek_tail()
            reader.get_previous()
        return reader

    def _notice_vacuum(self, reader: object, cursor: str) -> None:
        """The saved cursor's entry is gone: when the journal now begins after it, what lay
        between was vacuumed unread. Say so, and read on from the oldest entry left."""
        after_usec = journal_cursor_usec(cursor)
        reader.seek_head()  # type: ignore[attr-defined]
        head = reader.get_next()  # type: ignore[attr-defined]
        head_usec = _realtime(head) if head else None
        if after_usec is None or head_usec is None or head_usec <= after_usec:
            # Not a vacuum (the cursor is of another journal): read on from where it led.
            reader.seek_cursor(cursor)  # type: ignore[attr-defined]
            return
        reader.seek_head()  # type: ignore[attr-defined]
        self.vacuumed = VacuumedJournal(after_usec, head_usec)
        log.warning(
            "the journal was vacuumed past the last entry observer read: runs between %s and "
            "%s cannot be rebuilt; reading on from the oldest entry left",
            _shown_time(after_usec), _shown_time(head_usec),
        )  # fmt: skip

    def _run(self) -> None:
        name_thread()
        try:
            reader = self._open()
            # The fd (inotify) is set up before the first read: what is written after it
            # wakes the wait below.
            reader.fileno()  # type: ignore[attr-defined]
            while not self._stopping.is_set():
                read_at = _now_usec()
                batch, at_end = self._read_batch(reader)
                if batch is not None:
                    self._deliver(batch)
                if not at_end:
                    continue
                self._mark_read(read_at - QUIET_MARGIN_USEC)
                self._wait(reader)
        except BaseException as e:  # the daemon notices and reports it
            log.exception("journal reader failed")
            self.failure = e
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self._loop.call_soon_threadsafe(self.ended.set)

    def _mark_read(self, read_usec: int) -> None:
        """The journal is read to its end: nothing stamped before ``read_usec`` is to come.
        Deliver the mark wanted if that passes it."""
        with self._mark_lock:
            wanted = self._mark_usec
            if wanted is None or read_usec < wanted:
                return
            self._mark_usec = None
        self._deliver(JournalBatch([], None, read_usec))

    def _wait(self, reader: object) -> None:
        """Sleep until the journal changes, a mark is due or stop() is called: on the
        journal's fd, with the events and the timeout sd_journal asks for (none with
        inotify), not a poll."""
        waiting = select.poll()
        waiting.register(reader.fileno(), reader.get_events())  # type: ignore[attr-defined]
        waiting.register(self._wake_pipe[0], select.POLLIN)
        timeout = reader.get_timeout_ms()  # type: ignore[attr-defined]
        with self._mark_lock:
            wanted = self._mark_usec
        if wanted is not None:
            due = max(0, (wanted + QUIET_MARGIN_USEC - _now_usec()) // 1000 + 1)
            timeout = due if timeout < 0 else min(timeout, due)
        waiting.poll(timeout)
        with contextlib.suppress(OSError):
            os.read(self._wake_pipe[0], 4096)
        reader.process()  # type: ignore[attr-defined]

    def _read_batch(self, reader: object) -> tuple[JournalBatch | None, bool]:
        """The next batch (None: no entry), and whether the journal's end was reached."""
        events: list[object] = []
        cursor: str | None = None
        last_usec: int | None = None
        at_end = False
        for _ in range(BATCH_SIZE * 4):
            entry = _raw_next(reader)
            if not entry:
                at_end = True
                break
            self.entries_read += 1
            cursor = str(entry["__CURSOR"])
            last_usec = _realtime(entry) or last_usec
            try:
                event = self._parse(entry, self._scope)
            except Exception:  # one odd entry never stops the reader
                log.exception("skipped a journal entry observer could not read")
                continue
            if isinstance(event, Pid1Record) and event.kind is JobKind.STARTUP_FINISHED:
                event = replace(event, previous_usec=self._last_before(event))
            # Kernel messages of a new boot come before its systemd started: they are not
            # the last word of the systemd before.
            if last_usec is not None and _text(entry.get("_TRANSPORT")) != "kernel":
                self._recent.append(last_usec)
            if event is not None:
                events.append(event)
                if len(events) >= BATCH_SIZE:
                    break
        if cursor is None:
            return None, at_end
        state = {}
        if self.vacuumed is not None and not self._vacuum_told:
            self._vacuum_told = True
            state = dict([self.vacuumed.state_row])
        return JournalBatch(events, cursor, last_usec, state), at_end

    def _last_before(self, record: Pid1Record) -> int | None:
        """The last entry read before the manager of ``record`` started (None: unknown)."""
        started = record.realtime_usec - (record.userspace_usec or 0)
        times = sorted(self._recent)
        i = bisect.bisect_left(times, started)
        return times[i - 1] if i > 0 else None

    def _deliver(self, batch: JournalBatch) -> None:
        future = asyncio.run_coroutine_threadsafe(self._queue.put(batch), self._loop)
        while not self._stopping.is_set():
            try:
                future.result(timeout=0.5)
                return
            except TimeoutError:
                continue
        future.cancel()
