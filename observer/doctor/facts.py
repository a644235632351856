"""Gathering what the checks judge: journald's files, the journal, the manager, the database.

Every path hangs off ``Where``, so a test points the doctor at a sandbox's root, bus,
journal and database. A fact that cannot be gathered is left None with the reason in
``Facts.unknown``; the checks then say they could not check.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from observer import users
from observer.config import Config, load_config
from observer.doctor import journald
from observer.doctor.checks import (
    FAILING_WINDOW_USEC,
    Drops,
    Facts,
    Failing,
    JournalFacts,
    LingerFacts,
    ManagerFacts,
    StoreFacts,
    TimerRuns,
)
from observer.model import ObserverError
from observer.run.spool import default_spool_dir
from observer.store import database, hosts
from observer.store.summary import ORDER_KEY

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
BUS_TIMEOUT = 10.0
ACCOUNTING = ("CPU", "Memory", "IO")  # Default*Accounting= of the manager
TIMER_RUNS = 20  # of each timer's newest runs, to find its usual interval


class NoDatabase(ObserverError):
    """observer has no database here: its daemon never ran (with these paths)."""


class UnknownProperty(ObserverError):
    """This systemd has no such property (an older or newer release)."""


@dataclass(frozen=True, slots=True)
class Where:
    """Where the doctor looks: a system's root, its bus and journal, observer's files."""

    root: Path = Path("/")
    db: Path | None = None
    config: Path | None = None
    bus_address: str | None = None
    journal_dir: Path | None = None
    user: str | None = None  # --user: the user's own daemon (this user)
    host: str | None = None  # --host NAME|GLOB: the hosts of a central database

    @property
    def journal_dirs(self) -> list[Path]:
        if self.journal_dir is not None:
            return [self.journal_dir]
        return [self.root / "var/log/journal", self.root / "run/log/journal"]


def gather(where: Where, now_usec: int, local_host: str) -> Facts:
    """Every fact the checks need; what cannot be had is named in ``unknown``."""
    unknown: dict[str, str] = {}
    config = _config(where, unknown)
    local = hosts.shows(hosts.matcher(where.host), config.host or local_host)
    if not local:
        reason = f"--host {where.host} names another server: its own setup is checked there"
        unknown.update(journal=reason, manager=reason, linger=reason)
    store = _attempt("store", unknown, lambda: store_facts(where, config, now_usec))
    no_database = unknown.get("store", "").startswith("no database")
    journal = _attempt("journal", unknown, lambda: journal_facts(where)) if local else None
    timers = [t.timer for t in store.timers] if store is not None else []
    manager = (
        _attempt("manager", unknown, lambda: asyncio.run(manager_facts(where, timers)))
        if local
        else None
    )
    linger = _attempt("linger", unknown, lambda: linger_facts(where, store)) if local else None
    return Facts(
        config=config, journal=journal, manager=manager, store=store, linger=linger,
        unknown=unknown, user=where.user, local=local, no_database=no_database,
    )  # fmt: skip


def _attempt(name: str, unknown: dict[str, str], gather: Any) -> Any:
    try:
        return gather()
    except (OSError, sqlite3.Error, ObserverError, ImportError, TimeoutError) as e:
        unknown[name] = str(e) or type(e).__name__
    except Exception as e:  # a D-Bus error (its own class) ends only this fact
        unknown[name] = f"{type(e).__name__}: {e}"
    return None


def _config(where: Where, unknown: dict[str, str]) -> Config:
    path = where.config
    if path is None and where.user is not None:
        path = users.user_config_path()
    if path is None and where.root != Path("/"):
        path = where.root / "etc/observer/observer.toml"
    if path is not None and not path.exists() and where.config is None:
        return Config()
    try:
        return load_config(path)
    except ObserverError as e:
        unknown["config"] = str(e)
        return Config()


# -- journald ---------------------------------------------------------------------------


def journald_settings(root: Path) -> journald.JournaldSettings:
    """journald.conf and its drop-ins under ``root``, as journald applies them."""
    main = [name for name in journald.MAIN_FILES if (root / name).is_file()]
    dropins = {
        directory: sorted(p.name for p in (root / directory).glob("*.conf"))
        for directory in journald.DROPIN_DIRS
        if (root / directory).is_dir()
    }
    files = []
    for name in journald.config_order(main, dropins):
        with contextlib.suppress(OSError):
            files.append((f"/{name}", (root / name).read_text(errors="replace")))
    return journald.read_settings(files)


def journal_facts(where: Where) -> JournalFacts:
    settings = journald_settings(where.root)
    directories = [d for d in where.journal_dirs if d.is_dir()]
    files = [f for d in directories for f in d.rglob("*.journal*") if f.is_file()]
    size = None
    if directories:
        info = os.statvfs(directories[0])
        size = info.f_blocks * info.f_frsize
    oldest, newest = _journal_span(directories)
    return JournalFacts(
        settings=settings,
        persistent_dir=(where.root / "var/log/journal").is_dir(),
        oldest_entry_usec=oldest,
        newest_entry_usec=newest,
        usage_bytes=sum(f.stat().st_size for f in files),
        filesystem_bytes=size,
    )


def _journal_span(directories: list[Path]) -> tuple[int | None, int | None]:
    """The times of the oldest and the newest entry in ``directories``."""
    from systemd import journal  # noqa: PLC0415 - only the doctor and the daemon need it

    oldest: list[int] = []
    newest: list[int] = []
    for directory in directories:
        reader = journal.Reader(path=str(directory))
        try:
            reader.seek_head()
            if first := reader.get_next():
                oldest.append(_usec(first["__REALTIME_TIMESTAMP"]))
            reader.seek_tail()
            if last := reader.get_previous():
                newest.append(_usec(last["__REALTIME_TIMESTAMP"]))
        finally:
            reader.close()
    return min(oldest, default=None), max(newest, default=None)


def _usec(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000)


# -- the service manager ------------------------------------------------------------------


async def manager_facts(where: Where, timers: list[str]) -> ManagerFacts:
    """Accounting defaults, observer.service's state and the timers' Persistent=."""
    from dbus_fast import BusType  # noqa: PLC0415 - the reading commands start faster without
    from dbus_fast.aio import MessageBus  # noqa: PLC0415

    address = where.bus_address or (users.user_bus_address() if where.user else None)
    bus = MessageBus(bus_address=address) if address else MessageBus(bus_type=BusType.SYSTEM)
    try:
        await asyncio.wait_for(bus.connect(), BUS_TIMEOUT)
    except (OSError, TimeoutError) as e:
        shown = address or "the system bus"
        raise ObserverError(f"cannot reach systemd on {shown}: {e.strerror or e}") from e
    try:
        call = _caller(bus)
        accounting = {}
        for name in ACCOUNTING:
            # systemd 252 has no DefaultIOAccounting on the bus (its system.conf has it).
            with contextlib.suppress(UnknownProperty):
                value = await call(MANAGER_PATH, "Get", "ss", [MANAGER, f"Default{name}Accounting"])
                accounting[name] = bool(value)
        daemon = await _unit_property(call, "observer.service", "Unit", "ActiveState")
        persistent = {}
        for key in timers:
            user, name = users.split(key)
            if user != where.user:
                continue  # another manager's timer
            value = await _unit_property(call, name, "Timer", "Persistent")
            if value is not None:
                persistent[key] = bool(value)
        return ManagerFacts(
            accounting=accounting,
            daemon_state=None if daemon is None else str(daemon),
            persistent=persistent,
        )
    finally:
        bus.disconnect()


def _caller(bus: Any) -> Any:
    from dbus_fast import Message, MessageType  # noqa: PLC0415

    async def call(path: str, member: str, signature: str, body: list[Any]) -> Any:
        interface = "org.freedesktop.DBus.Properties" if member == "Get" else MANAGER
        message = Message(destination=SYSTEMD, path=path, interface=interface, member=member,
                          signature=signature, body=body)  # fmt: skip
        reply = await asyncio.wait_for(bus.call(message), BUS_TIMEOUT)
        if reply.error_name == "org.freedesktop.DBus.Error.UnknownProperty":
            raise UnknownProperty(reply.error_name)
        if reply.message_type is MessageType.ERROR:
            raise ObserverError(f"{member}: {reply.error_name}: {''.join(map(str, reply.body))}")
        value = reply.body[0]
        return value.value if member == "Get" else value

    return call


async def _unit_property(call: Any, unit: str, interface: str, prop: str) -> object | None:
    """A property of ``unit``; None when the manager has no such unit."""
    path = await call(MANAGER_PATH, "LoadUnit", "s", [unit])
    load_state = await call(path, "Get", "ss", [f"{SYSTEMD}.Unit", "LoadState"])
    if load_state != "loaded":
        return None
    value: object = await call(path, "Get", "ss", [f"{SYSTEMD}.{interface}", prop])
    return value


# -- lingering ----------------------------------------------------------------------------


def linger_facts(where: Where, store: StoreFacts | None) -> LingerFacts:
    """Users with timers (recorded, or enabled in their home) and the users who linger."""
    linger_dir = where.root / "var/lib/systemd/linger"
    lingering = (
        frozenset(p.name for p in linger_dir.iterdir()) if linger_dir.is_dir() else frozenset()
    )
    with_timers = {
        user for t in (store.timers if store else ()) if (user := users.user_of(t.timer))
    }
    with_timers |= _users_with_enabled_timers(where)
    if where.user is not None:
        with_timers &= {where.user}
    return LingerFacts(users_with_timers=tuple(sorted(with_timers)), lingering=lingering)


def _users_with_enabled_timers(where: Where) -> set[str]:
    """Users whose home holds an enabled user timer (~/.config/systemd/user/timers.target.wants)."""
    found = set()
    with contextlib.suppress(OSError):
        for line in (where.root / "etc/passwd").read_text(errors="replace").splitlines():
            fields = line.split(":")
            if len(fields) < 7 or not fields[2].isdecimal() or int(fields[2]) < 1000:
                continue
            wants = where.root / fields[5].lstrip("/") / ".config/systemd/user/timers.target.wants"
            with contextlib.suppress(OSError):
                if any(wants.glob("*.timer")):
                    found.add(fields[0])
    return found


# -- the database -------------------------------------------------------------------------


def db_path(where: Where) -> Path:
    if where.db is not None:
        return where.db
    return users.user_db_path() if where.user else database.default_read_path()


def store_facts(where: Where, config: Config, now_usec: int) -> StoreFacts:
    path = db_path(where)
    if not path.exists():
        raise NoDatabase(f"no database at {str(path)!r}")
    conn = database.open_for_reading(path)
    try:
        hosts_in = _hosts(conn, where.host)
        since = now_usec - FAILING_WINDOW_USEC
        recent, with_cost = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(cpu_seconds IS NOT NULL OR memory_peak_bytes IS NOT "
            f"NULL), 0) FROM runs WHERE finished_usec >= ? AND host IN {hosts_in}", (since,)
        ).fetchone()  # fmt: skip
        oldest = conn.execute(f"SELECT MIN({ORDER_KEY}) FROM runs WHERE host IN {hosts_in}")
        cursor = database.read_state(conn, "journal_cursor")
        free = os.statvfs(path.parent)
        return StoreFacts(
            path=str(path),
            db_bytes=sum(p.stat().st_size for p in _db_files(path)),
            free_bytes=free.f_bavail * free.f_frsize,
            cursor_usec=cursor_time_usec(cursor) if cursor else None,
            oldest_run_usec=oldest.fetchone()[0],
            recent_runs=int(recent),
            runs_with_cost=int(with_cost),
            drops=_drops(conn, hosts_in, since),
            failing=_failing(conn, hosts_in, since),
            undelivered=_undelivered(conn, since),
            timers=_timers(conn, hosts_in),
            set_aside=_set_aside(path, config),
        )
    finally:
        conn.close()


def _hosts(conn: sqlite3.Connection, glob: str | None) -> str:
    """An SQL list of the hosts ``--host`` selects (names quoted as SQL strings)."""
    matches = hosts.matcher(glob)
    names = [h for h in hosts.recorded_hosts(conn) if hosts.shows(matches, h)]
    return "(" + ", ".join("'" + h.replace("'", "''") + "'" for h in names) + ")"


def _db_files(path: Path) -> list[Path]:
    return [p for p in (path, Path(f"{path}-wal")) if p.exists()]


def cursor_time_usec(cursor: str) -> int | None:
    """The realtime timestamp in a journal cursor (its ``t=`` field, hexadecimal)."""
    fields = dict(part.partition("=")[::2] for part in cursor.split(";"))
    with contextlib.suppress(KeyError, ValueError):
        return int(fields["t"], 16)
    return None


def _drops(conn: sqlite3.Connection, hosts_in: str, since: int) -> tuple[Drops, ...]:
    rows = conn.execute(
        f"SELECT unit, COUNT(*), SUM(output_lost_lines) FROM runs WHERE output_lost_lines > 0 "
        f"AND COALESCE(output_lost_usec, {ORDER_KEY}) >= ? AND host IN {hosts_in} "
        "GROUP BY unit", (since,)
    )  # fmt: skip
    return tuple(Drops(str(unit), int(runs), int(lines)) for unit, runs, lines in rows)


def _failing(conn: sqlite3.Connection, hosts_in: str, since: int) -> tuple[Failing, ...]:
    """Units whose newest finished run failed in the window, and whether an alert was made."""
    rows = conn.execute(
        "SELECT s.unit, s.last_failure_usec, EXISTS (SELECT 1 FROM alerts a WHERE "
        "a.unit = s.unit AND a.created_usec >= ?) FROM unit_summary s "
        f"WHERE s.consecutive_failures > 0 AND s.last_failure_usec >= ? AND s.host IN {hosts_in} "
        "ORDER BY s.last_failure_usec DESC", (since, since)
    )  # fmt: skip
    return tuple(Failing(str(unit), int(at), bool(alerted)) for unit, at, alerted in rows)


def _undelivered(conn: sqlite3.Connection, since: int) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id "
        "WHERE d.status = 'failed' AND a.created_usec >= ?", (since,)
    ).fetchone()  # fmt: skip
    return int(row[0])


def _timers(conn: sqlite3.Connection, hosts_in: str) -> tuple[TimerRuns, ...]:
    found = []
    for timer, last in conn.execute("SELECT timer, last_trigger_usec FROM timers ORDER BY timer"):
        starts = [
            int(row[0])
            for row in conn.execute(
                f"SELECT started_usec FROM runs WHERE trigger = ? AND host IN {hosts_in} "
                "AND started_usec IS NOT NULL ORDER BY started_usec DESC LIMIT ?",
                (timer, TIMER_RUNS),
            )
        ]
        found.append(TimerRuns(str(timer), tuple(reversed(starts)), last))
    return tuple(found)


def _set_aside(path: Path, config: Config) -> tuple[str, ...]:
    spool = default_spool_dir(path, config.run.spool_dir)
    with contextlib.suppress(OSError):
        return tuple(sorted(str(p) for p in spool.glob("*.bad")))
    return ()
