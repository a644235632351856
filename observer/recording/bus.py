"""systemd over D-Bus: connect, subscribe, decode signals into events, reconnect."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from observer.bounds import UINT64_MAX, in_range
from observer.model import Run, Source
from observer.recording.definitions import DefinitionSources
from observer.recording.events import (
    Event,
    JobDetails,
    JobNew,
    JobRemoved,
    Reloading,
    UnitGone,
    UnitProperties,
)
from observer.recording.journal import NOT_ACCOUNTED
from observer.users import qualify_event, unit_of

log = logging.getLogger(__name__)

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
PROPERTIES = "org.freedesktop.DBus.Properties"
UNIT_PATH_PREFIX = "/org/freedesktop/systemd1/unit/"
_INTERFACE_PREFIX = "org.freedesktop.systemd1."

# dbus-daemon allows 128 pending replies per connection: at most this many questions wait
# for answers at once, each with at most QUESTION_CALLS calls in flight (100 in all).
MAX_CALLS_IN_FLIGHT = 20
QUESTION_CALLS = 5
# Jobs known to have ended, so that no one asks about them any more.
_REMOVED_JOBS_KEPT = 4096
# Units systemd unloaded (garbage-collected: a transient unit as its run ends): a question
# about one would load a fresh stub (LoadState not-found) to answer it, and tell nothing.
_GONE_UNITS_KEPT = 4096


class BusError(Exception):
    """A D-Bus call failed; ``name`` is the D-Bus error name."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name}: {text}")
        self.name = name


@functools.lru_cache(maxsize=4096)  # each unit's path comes with every signal about it
def unit_from_path(path: str) -> str | None:
    """Undo systemd's object path escaping: foo_2dbar_2eservice -> foo-bar.service."""
    if not path.startswith(UNIT_PATH_PREFIX):
        return None
    escaped = path[len(UNIT_PATH_PREFIX) :]
    out = bytearray()
    i = 0
    while i < len(escaped):
        ch = escaped[i]
        if ch == "_" and _is_hex(escaped[i + 1 : i + 3]):
            out.append(int(escaped[i + 1 : i + 3], 16))
            i += 3
        else:
            out += ch.encode()
            i += 1
    return out.decode("utf-8", errors="surrogateescape")


# Each byte of a unit's name as its object path writes it: an ASCII letter or digit as
# itself, anything else as _xx (its hex).
_PATH_TEXT = tuple(
    chr(byte) if chr(byte).isascii() and chr(byte).isalnum() else f"_{byte:02x}"
    for byte in range(256)
)


def unit_path(unit: str) -> str:
    """systemd's object path of a unit: foo-bar.service -> .../unit/foo_2dbar_2eservice
    (a digit first is escaped too)."""
    name = unit.encode("utf-8", errors="surrogateescape")
    out = [_PATH_TEXT[byte] for byte in name]
    if name[:1].isdigit():
        out[0] = f"_{name[0]:02x}"
    return UNIT_PATH_PREFIX + "".join(out)


# The properties of a service's Unit and Service interfaces the correlator reads (what a
# PropertiesChanged signal carries besides them is not decoded: most of each signal).
RUN_PROPERTIES = frozenset(
    {
        "InvocationID",
        "ActiveState",
        "SubState",
        "Result",
        "ExecMainCode",
        "ExecMainStatus",
        "NRestarts",
        *(
            f"{stamp}{clock}"
            for stamp in (
                "InactiveExitTimestamp",
                "InactiveEnterTimestamp",
                "StateChangeTimestamp",
                "ExecMainStartTimestamp",
                "ExecMainExitTimestamp",
            )
            for clock in ("", "Monotonic")
        ),
    }
)
# What systemd accounts of a service (MemoryPeak from 255 on).
COST_PROPERTIES = ("CPUUsageNSec", "IOReadBytes", "IOWriteBytes", "MemoryPeak")


def exec_argvs(exec_start: object) -> tuple[tuple[str, ...], ...]:
    """The argv of each command of an ExecStart property (a(sasbttttuii))."""
    if not isinstance(exec_start, list):
        return ()
    return tuple(
        tuple(str(arg) for arg in entry[1])
        for entry in exec_start
        if isinstance(entry, list | tuple) and len(entry) > 1 and isinstance(entry[1], list)
    )


def invocation_hex(value: object) -> str | None:
    """An InvocationID property (ay) as hex; None when it is not bytes."""
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        value = bytes(value)
    return bytes(value).hex() if isinstance(value, bytes | bytearray) else None


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


def unwrap(value: object) -> object:
    """Turn dbus-fast Variants (and containers of them) into plain values."""
    while isinstance(value, Variant):
        value = value.value
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    return value


def bounded(values: dict[str, object]) -> dict[str, object]:
    """Property values with each integer SQLite cannot hold as None (counted), but for
    systemd's own "none" (UINT64_MAX), which is kept: its readers know it."""
    return {
        name: in_range(value, "bus", name)
        if isinstance(value, int) and not isinstance(value, bool) and value != UINT64_MAX
        else value
        for name, value in values.items()
    }


def with_next_elapse(values: dict[str, object], realtime_usec: int, monotonic_usec: int) -> None:
    """Put a timer's next elapse on the wall clock, whether it is calendar or monotonic."""
    candidates = []
    real = values.get("NextElapseUSecRealtime")
    if isinstance(real, int) and 0 < real < 2**63:
        candidates.append(real)
    mono = values.get("NextElapseUSecMonotonic")
    if isinstance(mono, int) and 0 < mono < 2**63:
        candidates.append(realtime_usec + mono - monotonic_usec)
    if "NextElapseUSecRealtime" in values or "NextElapseUSecMonotonic" in values:
        values["NextElapseUSecRealtime"] = min(candidates) if candidates else 0


def _now_usec() -> tuple[int, int]:
    return time.time_ns() // 1000, time.monotonic_ns() // 1000


# What each signal of systemd's manager observer listens to stands for, from its body.
_MANAGER_SIGNALS: dict[str, Callable[[list[Any]], Event]] = {
    "JobNew": lambda body: JobNew(int(body[0]), str(body[2])),
    "JobRemoved": lambda body: JobRemoved(int(body[0]), str(body[2]), str(body[3])),
    "UnitRemoved": lambda body: UnitGone(str(body[0])),
    "Reloading": lambda body: Reloading(bool(body[0])),
}


# The match rules ask dbus-daemon for the signals decode_signal reads, and no others: the
# manager's above, and the PropertiesChanged of the Unit, Service and Timer interfaces (not
# Socket, Mount, Slice, ...). A few rules for every unit at once (dbus-daemon allows 512
# per connection), filtered on the well-known name: systemd's unique name changes at
# daemon-reexec.
MATCH_RULES = (
    *(
        f"type='signal',sender='{SYSTEMD}',interface='{MANAGER}',path='{MANAGER_PATH}',"
        f"member='{member}'"
        for member in _MANAGER_SIGNALS
    ),
    "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
    f"member='NameOwnerChanged',arg0='{SYSTEMD}'",
    *(
        f"type='signal',sender='{SYSTEMD}',interface='{PROPERTIES}',member='PropertiesChanged',"
        f"path_namespace='{MANAGER_PATH}/unit',arg0='{_INTERFACE_PREFIX}{interface}'"
        for interface in ("Unit", "Service", "Timer")
    ),
)


def decode_signal(msg: Message) -> Event | None:
    """The event a systemd signal stands for, or None for signals observer ignores."""
    if msg.interface == PROPERTIES and msg.member == "PropertiesChanged":
        return _properties_changed(msg)
    decode = _MANAGER_SIGNALS.get(msg.member or "") if msg.interface == MANAGER else None
    return None if decode is None else decode(msg.body)


def _properties_changed(msg: Message) -> UnitProperties | None:
    """A service's run-state properties changed (its Unit and Service interfaces), or a
    timer's; None for any other unit or interface (nothing the correlator reads)."""
    body: list[Any] = msg.body
    unit = unit_from_path(msg.path or "")
    interface = body[0] if body else ""
    short = interface.removeprefix(_INTERFACE_PREFIX) if isinstance(interface, str) else ""
    if unit is None or short == interface:
        return None
    if short == "Timer":
        values = bounded({k: unwrap(v) for k, v in body[1].items()})
        with_next_elapse(values, *_now_usec())
    elif short in ("Unit", "Service") and unit.endswith(".service"):
        values = bounded({k: unwrap(v) for k, v in body[1].items() if k in RUN_PROPERTIES})
    else:
        return None
    return UnitProperties(unit, short, values)


def trigger_from_activation(details: object) -> str | None:
    """The trigger unit named in a job's ActivationDetails (a(ss)), if any."""
    if not isinstance(details, list):
        return None
    for pair in details:
        if isinstance(pair, list | tuple) and len(pair) == 2 and pair[0] == "trigger_unit":
            return str(pair[1])
    return None


# After reading what the socket held, the connection is not read again for this long: in a
# burst of runs (a signal every fraction of a millisecond) each read then takes a dozen
# messages instead of one, each with its own wakeup of the loop and its own recv().
READ_PAUSE_SECONDS = 0.002


def gather_reads(bus: MessageBus, loop: asyncio.AbstractEventLoop) -> None:
    """Have the loop read ``bus`` at most every READ_PAUSE_SECONDS (messages wait that long
    at most). dbus-fast reads on its own whenever the socket is readable: its reader is
    wrapped in one that pauses after each read. Should dbus-fast or asyncio not be built as
    this expects, the connection is read as dbus-fast does it."""
    fd = getattr(bus, "_fd", None)
    try:
        handle = loop._selector.get_key(fd).data[0]  # type: ignore[attr-defined]
        callback, args = handle._callback, handle._args
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        log.debug("reading the bus as dbus-fast does: its reader is not where expected")
        return
    if not isinstance(fd, int) or not callable(callback):
        return

    def current() -> bool:
        return bus.connected and getattr(bus, "_fd", None) == fd

    def read() -> None:
        callback(*args)
        if current():
            loop.remove_reader(fd)
            loop.call_later(READ_PAUSE_SECONDS, resume)

    def resume() -> None:
        if current():
            loop.add_reader(fd, read)

    loop.add_reader(fd, read)  # replaces dbus-fast's own


class SystemdBus:
    """One connection to the bus that carries systemd's signals to ``on_event``."""

    def __init__(
        self,
        bus_address: str | None,
        on_event: Callable[[Event], None],
        on_systemd_back: Callable[[], None] = lambda: None,
    ) -> None:
        self.bus_address = bus_address
        self.on_event = on_event
        self.on_systemd_back = on_systemd_back
        self._bus: MessageBus | None = None
        self._calls = asyncio.Semaphore(MAX_CALLS_IN_FLIGHT)
        self.signals_received = 0
        self.decode_errors = 0
        self._removed_jobs: OrderedDict[int, None] = OrderedDict()
        self._gone_units: OrderedDict[str, None] = OrderedDict()
        self._reloading = False

    @property
    def connected(self) -> bool:
        return self._bus is not None and self._bus.connected

    async def connect(self) -> None:
        """Connect, add match rules and subscribe (Subscribe does not survive a reconnect)."""
        if self.bus_address:
            bus = MessageBus(bus_address=self.bus_address)
        else:
            bus = MessageBus(bus_type=BusType.SYSTEM)
        await bus.connect()
        bus.add_message_handler(self._handle)
        gather_reads(bus, asyncio.get_running_loop())
        self._bus = bus
        self._reloading = False  # a reload's end may have been lost with the last connection
        for rule in MATCH_RULES:
            await self.call(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "AddMatch",
                "s",
                [rule],
                urgent=True,
            )
        await self.subscribe()

    async def wait_for_disconnect(self) -> None:
        if self._bus is not None:
            try:
                await self._bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
            except Exception as e:  # a broken connection ends the same way as a closed one
                log.warning("lost the system bus: %s", e)

    async def subscribe(self) -> None:
        """Ask systemd for its signals; harmless when already subscribed."""
        try:
            await self.call(SYSTEMD, MANAGER_PATH, MANAGER, "Subscribe", urgent=True)
        except BusError as e:
            if not e.name.endswith("AlreadySubscribed"):
                raise

    def disconnect(self) -> None:
        if self._bus is not None:
            self._bus.disconnect()

    def _handle(self, msg: Message) -> None:
        if msg.message_type is not MessageType.SIGNAL:
            return
        self.signals_received += 1
        if msg.member == "NameOwnerChanged":
            # systemd re-executed or came back to a restarted bus: subscribe again.
            if len(msg.body) == 3 and msg.body[2]:
                self.on_systemd_back()
            return
        try:
            event = decode_signal(msg)
        except Exception:  # one odd signal never stops the daemon
            self.decode_errors += 1
            log.exception(
                "could not decode signal %s.%s on %s", msg.interface, msg.member, msg.path
            )
            return
        if event is not None:
            self._note(event)
            self.on_event(event)

    def _note(self, event: Event) -> None:
        """Remember the jobs that ended and the units systemd unloaded: no one asks of them."""
        match event:
            case JobRemoved(job_id=job_id):
                self._removed_jobs[job_id] = None
                while len(self._removed_jobs) > _REMOVED_JOBS_KEPT:
                    self._removed_jobs.popitem(last=False)
            case UnitProperties(unit=unit):  # a unit that changes is loaded
                self._gone_units.pop(unit, None)
            case UnitGone(unit=unit) if not self._reloading:
                # daemon-reload removes every unit and loads it again at once.
                self._gone_units[unit] = None
                while len(self._gone_units) > _GONE_UNITS_KEPT:
                    self._gone_units.popitem(last=False)
            case Reloading(active=active):
                self._reloading = active

    async def call(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
        *,
        urgent: bool = False,
    ) -> list[Any]:
        """Call a method and return the reply's body.

        At most MAX_CALLS_IN_FLIGHT questions wait for replies at once; ``urgent`` ones
        (subscribing again) do not queue behind a burst of job look-ups.
        """
        if urgent:
            return await self._send_call(destination, path, interface, member, signature, body)
        async with self._calls:
            return await self._send_call(destination, path, interface, member, signature, body)

    async def _send_call(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        signature: str,
        body: list[Any] | None,
    ) -> list[Any]:
        if self._bus is None:
            raise BusError("org.freedesktop.DBus.Error.Disconnected", "not connected")
        reply = await self._bus.call(
            Message(
                destination=destination,
                path=path,
                interface=interface,
                member=member,
                signature=signature,
                body=body or [],
            )
        )
        if reply.message_type is MessageType.ERROR:
            text = reply.body[0] if reply.body else ""
            raise BusError(reply.error_name or "unknown", str(text))
        return list(reply.body)

    async def job_details(self, job_id: int, unit: str) -> JobDetails:
        """Ask a job what it is and which unit queued it; the job may already be gone."""
        path = f"{MANAGER_PATH}/job/{job_id}"
        gone = JobDetails(job_id, unit, "unknown", None)
        try:
            async with self._calls:
                # In a burst most look-ups wait here: skip jobs that ended meanwhile.
                if job_id in self._removed_jobs:
                    return gone
                body = await self._send_call(
                    SYSTEMD, path, PROPERTIES, "GetAll", "s", [f"{_INTERFACE_PREFIX}Job"]
                )
        except BusError as e:
            log.debug("job %d of %s: %s", job_id, unit, e)
            return gone
        values = {k: unwrap(v) for k, v in body[0].items()}
        job_type = values.get("JobType")
        return JobDetails(
            job_id,
            unit,
            job_type if isinstance(job_type, str) else "unknown",
            trigger_from_activation(values.get("ActivationDetails")),
        )

    async def run_cost(self, unit: str, invocation_id: str, host: str) -> Run | None:
        """What a service's run cost, asked once at its end (before the next start resets it
        or the unit is unloaded); None when the unit is gone or runs another invocation."""
        async with self._calls:
            # In a burst most questions wait here: skip units unloaded meanwhile.
            if unit in self._gone_units:
                return None
            # The run's invocation and each figure with a Get of its own, all at once: GetAll
            # of the Service interface answers 300 properties, more work for both sides
            # (bench.bus_questions). The figures of another invocation are dropped.
            values = await self._properties(
                unit_path(unit),
                [("Unit", "InvocationID"), *(("Service", name) for name in COST_PROPERTIES)],
            )
        if invocation_hex(values.pop("InvocationID", None)) != invocation_id:
            return None
        # UINT64_MAX: not accounted (256 reads every figure so once the run's cgroup is gone).
        cost = {k: v for k, v in values.items() if isinstance(v, int) and 0 <= v < NOT_ACCOUNTED}
        if not cost:
            return None
        cpu = cost.get("CPUUsageNSec")
        return Run(
            unit=unit,
            invocation_id=invocation_id,
            host=host,
            source=Source.BUS,
            cpu_seconds=None if cpu is None else cpu / 1e9,
            io_read_bytes=cost.get("IOReadBytes"),
            io_write_bytes=cost.get("IOWriteBytes"),
            memory_peak_bytes=cost.get("MemoryPeak"),
        )

    async def definition_sources(self, unit: str) -> DefinitionSources | None:
        """What systemd says defines a unit now (asked as its run starts): the unit file,
        its drop-ins and ExecStart; None when the unit is gone."""
        # Asked even of a unit systemd unloaded since (a oneshot that ended before its
        # question came): one with a file loads again from it; a transient one answers
        # with a stub, which is no definition (below).
        async with self._calls:
            values = await self._properties(
                unit_path(unit),
                [("Unit", "FragmentPath"), ("Unit", "DropInPaths"), ("Service", "ExecStart")],
            )
        if "FragmentPath" not in values or "DropInPaths" not in values:
            log.debug("definition of %s: systemd did not answer", unit)
            return None
        fragment, dropins = values["FragmentPath"], values["DropInPaths"]
        exec_start = values.get("ExecStart", [])  # not a service: no command
        sources = DefinitionSources(
            fragment_path=fragment if isinstance(fragment, str) and fragment else None,
            dropin_paths=tuple(str(p) for p in dropins) if isinstance(dropins, list) else (),
            commands=exec_argvs(exec_start),
        )
        # Nothing at all: the unit was unloaded before the question reached systemd, which
        # answered for a stub it loaded (not-found), not for the run.
        return None if sources == DefinitionSources(None, (), ()) else sources

    async def _properties(self, path: str, names: Sequence[tuple[str, str]]) -> dict[str, object]:
        """Properties of the object at ``path``, each (interface, name) asked with a Get of
        its own, all sent at once (at most QUESTION_CALLS): their values, by name, without
        those systemd refused (one it does not have: MemoryPeak before 255)."""
        replies = await asyncio.gather(
            *(
                self._send_call(
                    SYSTEMD, path, PROPERTIES, "Get", "ss", [f"{_INTERFACE_PREFIX}{iface}", name]
                )
                for iface, name in names
            ),
            return_exceptions=True,
        )
        values: dict[str, object] = {}
        for (_, name), reply in zip(names, replies, strict=True):
            if isinstance(reply, BusError):
                log.debug("%s of %s: %s", name, path, reply)
            elif isinstance(reply, BaseException):
                raise reply
            else:
                values[name] = unwrap(reply[0])
        return values

    async def timers(self) -> list[UnitProperties]:
        """The Timer properties of every loaded timer (signals never carry its Unit)."""
        body = await self.call(
            SYSTEMD, MANAGER_PATH, MANAGER, "ListUnitsByPatterns", "asas", [[], ["*.timer"]]
        )
        found = [(str(row[0]), str(row[6])) for row in body[0]]

        async def one(name: str, path: str) -> UnitProperties | None:
            try:
                reply = await self.call(
                    SYSTEMD, path, PROPERTIES, "GetAll", "s", [f"{_INTERFACE_PREFIX}Timer"]
                )
            except BusError as e:
                log.debug("timer %s: %s", name, e)
                return None
            values = bounded({k: unwrap(v) for k, v in reply[0].items()})
            with_next_elapse(values, *_now_usec())
            return UnitProperties(name, "Timer", values)

        results = await asyncio.gather(*(one(name, path) for name, path in found))
        return [r for r in results if r is not None]


class UserManagerBus(SystemdBus):
    """A user's manager on their own bus: it names units plainly, the store ``USER/UNIT``."""

    def __init__(
        self,
        user: str,
        bus_address: str | None,
        on_event: Callable[[Event], None],
        on_systemd_back: Callable[[], None] = lambda: None,
    ) -> None:
        self.user = user
        super().__init__(bus_address, lambda e: on_event(qualify_event(e, user)), on_systemd_back)

    async def job_details(self, job_id: int, unit: str) -> JobDetails:
        details = await super().job_details(job_id, unit_of(unit))
        return dataclasses.replace(details, unit=unit)

    async def run_cost(self, unit: str, invocation_id: str, host: str) -> Run | None:
        run = await super().run_cost(unit_of(unit), invocation_id, host)
        return None if run is None else run._replace(unit=unit)

    async def definition_sources(self, unit: str) -> DefinitionSources | None:
        return await super().definition_sources(unit_of(unit))

    async def timers(self) -> list[UnitProperties]:
        return [
            timer
            for timer in (qualify_event(t, self.user) for t in await super().timers())
            if isinstance(timer, UnitProperties)
        ]


def manager_bus(
    user: str | None,
    bus_address: str | None,
    on_event: Callable[[Event], None],
    on_systemd_back: Callable[[], None] = lambda: None,
) -> SystemdBus:
    """The system manager's bus, or (``user``: a user's own daemon) that user's manager's."""
    if user is None:
        return SystemdBus(bus_address, on_event, on_systemd_back)
    return UserManagerBus(user, bus_address, on_event, on_systemd_back)
