"""Users' own units (``systemctl --user``): how a user unit is named in the store.

A user unit is stored under ``USER/UNIT`` (``alice/backup.service``): a slash is in no unit
name and no user name, so a user's ``backup.service`` and the system's never merge, and
every table keyed by unit (summaries, alert state, timers) keeps them apart without a
second key. A system unit keeps its plain name.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Mapping

from observer.records import NamedTuple

# typing.TYPE_CHECKING would import typing; mypy takes this one as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from observer.recording.events import Event

SEPARATOR = "/"


def qualify(user: str | None, unit: str) -> str:
    """The store's name of ``unit`` of ``user`` (None: a system unit)."""
    return unit if user is None else f"{user}{SEPARATOR}{unit}"


def split(key: str) -> tuple[str | None, str]:
    """The user (None: a system unit) and the unit name of a stored unit."""
    user, sep, unit = key.partition(SEPARATOR)
    return (user, unit) if sep else (None, key)


def user_of(key: str) -> str | None:
    return split(key)[0]


def unit_of(key: str) -> str:
    return split(key)[1]


def shown(key: str) -> str:
    """A stored unit as people read it: ``backup.service`` or ``backup.service (alice)``."""
    user, unit = split(key)
    return unit if user is None else f"{unit} (user {user})"


def user_names(
    observed: Callable[[str], bool], passwd: Path | None = None
) -> Callable[[int], str | None]:
    """uid -> user name, for the users observed (None: not observed).

    Names come from the system's user database, or from a passwd file (``passwd``: a
    container's, whose journal is read from outside). A uid without a name is named by
    its number, and asked again next time (the user may be created meanwhile).
    """
    cache: dict[int, str] = {}

    def lookup(uid: int) -> str | None:
        if passwd is None:
            try:
                return pwd.getpwuid(uid).pw_name
            except KeyError:
                return None
        try:
            lines = passwd.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return None
        for line in lines:
            fields = line.split(":")
            if len(fields) > 2 and fields[2] == str(uid):
                return fields[0]
        return None

    def name(uid: int) -> str | None:
        found = cache.get(uid)
        if found is None:
            found = lookup(uid)
            if found is not None:
                cache[uid] = found
        shown = found if found is not None else str(uid)
        return shown if observed(shown) else None

    return name


def current_user() -> str:
    """The name of the user this process runs as."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


# -- the user's own daemon: its manager's bus speaks plain unit names -------------------


def qualify_event(event: Event, user: str) -> Event:
    """A bus event of ``user``'s manager, with its units named as the store names them."""
    # Here: the reading commands, which import this module, need no event classes (nor
    # dataclasses).
    import dataclasses  # noqa: PLC0415

    from observer.recording.events import JobDetails, JobNew, JobRemoved, UnitGone, UnitProperties  # noqa: PLC0415

    match event:
        case UnitProperties(unit=unit, values=values):
            service = values.get("Unit")
            if isinstance(service, str) and service:
                values = {**values, "Unit": qualify(user, service)}
            return dataclasses.replace(event, unit=qualify(user, unit), values=values)
        case JobNew() | JobRemoved() | JobDetails() | UnitGone():
            return dataclasses.replace(event, unit=qualify(user, event.unit))
    return event


def user_bus_address(environ: Mapping[str, str] = os.environ) -> str:
    """The address of this user's bus, where their manager listens."""
    if address := environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return address
    runtime = environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return f"unix:path={runtime}/bus"


def user_db_path(environ: Mapping[str, str] = os.environ) -> Path:
    """The database of a user's own daemon: $XDG_DATA_HOME/observer/observer.db."""
    from pathlib import Path  # noqa: PLC0415 (reading commands take user_db_file's text)

    return Path(user_db_file(environ))


def user_db_file(environ: Mapping[str, str] = os.environ) -> str:
    """``user_db_path`` as text, made without pathlib (a reading command's start)."""
    if env := environ.get("OBSERVER_DB"):
        return env
    data_home = environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data_home, "observer", "observer.db")


def user_config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """The configuration of a user's own daemon: $XDG_CONFIG_HOME/observer/observer.toml."""
    from pathlib import Path  # noqa: PLC0415

    config_home = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "observer" / "observer.toml"


# -- reading: whose units a command shows ----------------------------------------------


class Selection(NamedTuple):
    """Whose units a reading command shows: ``--user NAME``'s, or by default the system's
    and (for a reader who is not root) the reader's own."""

    user: str | None = None  # --user NAME
    reader: str | None = None  # the reader's name when not root
    everyone: bool = False  # every unit of every user (the dashboard, metrics, `status`)

    def shows(self, key: str) -> bool:
        if self.everyone and self.user is None:
            return True
        owner = user_of(key)
        if self.user is not None:
            return owner == self.user
        return owner is None or owner == self.reader

    def keys(self, name: str) -> list[str]:
        """The stored units a unit name may mean, the likeliest first."""
        if self.user is not None:
            return [qualify(self.user, name)]
        return [*([qualify(self.reader, name)] if self.reader else []), name]


ALL = Selection(everyone=True)


def silence_pattern(pattern: str, user: str | None, euid: int | None = None) -> str:
    """The stored pattern of a silence of ``pattern`` (a unit or a glob): of ``--user NAME``'s
    units, or for a user who is not root their own (their database names every unit
    ``USER/UNIT``); a pattern naming a user already is kept."""
    if SEPARATOR in pattern:
        return pattern
    if user is None:
        euid = os.geteuid() if euid is None else euid
        user = None if euid == 0 else current_user()
    return qualify(user, pattern)


def selection(user: str | None, euid: int | None = None) -> Selection:
    """The selection of ``--user`` (None: not given) for a reader of effective uid ``euid``."""
    euid = os.geteuid() if euid is None else euid
    return Selection(user=user, reader=None if euid == 0 else current_user())
