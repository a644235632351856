"""The drop-in that lets a unit report metrics via $JOB_METRICS_FILE (`observer metrics-file`).

enable writes a drop-in, ``/etc/systemd/system/UNIT.d/observer-metrics.conf``::

    [Service]
    StateDirectory=observer/job-metrics/%n
    Environment="JOB_METRICS_FILE=/var/lib/observer/job-metrics/%n/metrics.prom"

systemd then creates ``/var/lib/observer/job-metrics/UNIT/`` at each start, owned by the
user the unit runs as (also a ``DynamicUser=``, whose directory systemd keeps under
/var/lib/private and links here) and writable even under ``ProtectSystem=strict``: only the
unit can write there, and the daemon labels what it finds with that unit's name. ``%n`` is
the unit's full name, so one drop-in on a template serves every instance. disable removes
the drop-in and the unit's metrics, so its series disappear.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from observer.config import load_config
from observer.metrics.job_metrics import UNIT_DIRECTORY_FILE, job_metrics_directory
from observer.model import ObserverError
from observer.store.database import default_db_path

if TYPE_CHECKING:
    from dbus_fast.aio import MessageBus

DROPIN_NAME = "observer-metrics.conf"
UNIT_DIR = PurePosixPath("/etc/systemd/system")
STATE_ROOT = PurePosixPath("/var/lib")
SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
PROPERTIES = "org.freedesktop.DBus.Properties"
_UNIT_SUFFIXES = (
    ".service", ".socket", ".device", ".mount", ".automount", ".swap", ".target", ".path",
    ".timer", ".slice", ".scope",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Layout:
    """Where one unit's drop-in and metrics live, on the host and as the unit sees them."""

    unit: str
    root: Path
    directory: PurePosixPath  # the job metrics directory as the unit sees it

    @property
    def dropin(self) -> Path:
        return _under(self.root, UNIT_DIR / f"{self.unit}.d" / DROPIN_NAME)

    @property
    def metrics_file(self) -> PurePosixPath:
        """$JOB_METRICS_FILE (for a template, of its instance ``%n``)."""
        return self.directory / self.unit / UNIT_DIRECTORY_FILE

    @property
    def state_directory(self) -> PurePosixPath:
        return self.directory.relative_to(STATE_ROOT)


def unit_name(name: str) -> str:
    """The service a person means: ``backup`` is ``backup.service``."""
    if "/" in name or not name or name.startswith("."):
        raise ObserverError(f"{name!r} is not a unit name")
    unit = name if name.endswith(_UNIT_SUFFIXES) else f"{name}.service"
    if not unit.endswith(".service"):
        raise ObserverError(
            f"{unit!r} is not a service: only services run jobs that can write metrics"
        )
    return unit


def dropin_text(layout: Layout) -> str:
    """The drop-in that hands the unit a directory of its own and names the file in it."""
    return (
        f"# Written by `observer metrics-file enable {layout.unit}`; "
        f"`observer metrics-file disable {layout.unit}` removes it.\n"
        "# The unit may write Prometheus text to $JOB_METRICS_FILE; observer exports it\n"
        '# with unit="<this unit>" added.\n'
        "[Service]\n"
        f"{service_settings(layout.directory)}"
    )


def service_settings(directory: PurePosixPath) -> str:
    """The [Service] lines that give a unit $JOB_METRICS_FILE in ``directory``/UNIT/."""
    return (
        f"StateDirectory={directory.relative_to(STATE_ROOT)}/%n\n"
        f'Environment="JOB_METRICS_FILE={directory}/%n/{UNIT_DIRECTORY_FILE}"\n'
    )


def layout_for(args: argparse.Namespace) -> Layout:
    directory = metrics_directory(args.config, args.db)
    return Layout(unit_name(args.unit), Path(args.root), directory)


def metrics_directory(config_path: str | None, db: str | None) -> PurePosixPath:
    """Where units' metrics directories are, as `observer metrics-file` and the daemon see it."""
    config = load_config(Path(config_path) if config_path else None)
    db_path = Path(db) if db else default_db_path()
    configured = config.metrics.job_metrics_directory or config.run.metrics_dir
    directory = PurePosixPath(job_metrics_directory(db_path, configured))
    if not directory.is_relative_to(STATE_ROOT) or directory == STATE_ROOT:
        raise ObserverError(
            f"the job metrics directory {str(directory)!r} is not under /var/lib: systemd's "
            "StateDirectory= can only make directories there (set [metrics] "
            "job_metrics_directory, or run this as root with the default database)"
        )
    return directory


def _under(root: Path, path: PurePosixPath) -> Path:
    return root / str(path).lstrip("/")


def enable(layout: Layout) -> list[str]:
    """Write the drop-in and make the metrics directory reachable; what the user should know."""
    notes = []
    target = _under(layout.root, layout.directory)
    target.mkdir(mode=0o755, parents=True, exist_ok=True)
    # A unit running as another user must be able to pass through to its own directory:
    # give the directories above it search permission (o+x) but not listing (o+r).
    for parent in [target, *target.parents]:
        if parent == layout.root or not _is_under(parent, _under(layout.root, STATE_ROOT)):
            break
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, stat.S_IMODE(mode) | stat.S_IXOTH)
            notes.append(
                f"made {_shown(layout, parent)} traversable by other users (o+x) so that "
                "units running as them reach their directory"
            )
    layout.dropin.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    temporary = layout.dropin.with_name(f".{DROPIN_NAME}.tmp")
    temporary.write_text(dropin_text(layout))
    temporary.chmod(0o644)
    temporary.replace(layout.dropin)
    return notes


def disable(layout: Layout) -> list[str]:
    """Remove the drop-in and the metrics it led to; the paths removed."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        layout.dropin.unlink()
        removed.append(_shown(layout, layout.dropin))
    with contextlib.suppress(OSError):
        layout.dropin.parent.rmdir()  # only when nothing else is in it
    directory = _under(layout.root, layout.directory)
    pattern = layout.unit.replace("@.", "@*.") if "@." in layout.unit else layout.unit
    for unit_dir in sorted(directory.glob(_glob_escape(pattern))):
        removed.extend(_shown(layout, p) for p in _remove_unit_directory(layout.root, unit_dir))
    return removed


def _glob_escape(pattern: str) -> str:
    return "".join(f"[{c}]" if c in "[]?" else c for c in pattern)


def _remove_unit_directory(root: Path, unit_dir: Path) -> list[Path]:
    """Remove our file in a unit's directory, then the directory if nothing else is in it."""
    removed = []
    real = unit_dir
    if unit_dir.is_symlink():
        # systemd's link for a DynamicUser= (into /var/lib/private): follow it under --root
        # by hand, as resolve() would take /proc/PID/root itself for "/".
        target = PurePosixPath(os.readlink(unit_dir))
        real = _under(root, target) if target.is_absolute() else unit_dir.parent / target
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        (real / UNIT_DIRECTORY_FILE).unlink()
        removed.append(unit_dir / UNIT_DIRECTORY_FILE)
    with contextlib.suppress(OSError):
        real.rmdir()
        if unit_dir.is_symlink():
            unit_dir.unlink()
        removed.append(unit_dir)
    return removed


def _is_under(path: Path, top: Path) -> bool:
    return path == top or top in path.parents


def _shown(layout: Layout, path: Path) -> str:
    """A path as the system under --root names it."""
    if layout.root == Path("/"):
        return str(path)
    return "/" + str(path.relative_to(layout.root))


async def with_systemd(
    bus_address: str | None,
    layout: Layout,
    change: Callable[[], list[str]],
    installed: bool,
) -> list[str]:
    """Check the unit with systemd, make the change, then have systemd reload its units.

    ``installed``: the unit must exist (enabling; disabling cleans up after removed units too).
    """
    bus = await connect(bus_address)
    try:
        notes = []
        if "@." not in layout.unit:
            path = (await call(bus, MANAGER_PATH, MANAGER, "LoadUnit", "s", [layout.unit]))[0]
            state = await get_property(bus, path, "Unit", "LoadState")
            if state == "not-found" and installed:
                raise ObserverError(
                    f"no unit {layout.unit!r} is installed ('systemctl list-unit-files' lists them)"
                )
            if installed:
                directories = await get_property(bus, path, "Service", "StateDirectory")
                own = f"{layout.state_directory}/{layout.unit}"
                if isinstance(directories, list) and [d for d in directories if d != own]:
                    notes.append(
                        f"note: {layout.unit} has a StateDirectory= of its own: "
                        "$STATE_DIRECTORY now lists both directories, separated by ':'"
                    )
        try:
            notes.extend(change())
        except OSError as e:
            hint = " (run it as root)" if isinstance(e, PermissionError) else ""
            raise ObserverError(f"cannot change {e.filename}: {e.strerror}{hint}") from e
        await call(bus, MANAGER_PATH, MANAGER, "Reload")
        return notes
    finally:
        bus.disconnect()


async def connect(bus_address: str | None) -> MessageBus:
    """A connection to systemd's bus (``bus_address``, else the system bus)."""
    from dbus_fast import BusType  # noqa: PLC0415 (the CLI starts faster without D-Bus)
    from dbus_fast.aio import MessageBus  # noqa: PLC0415

    try:
        bus = (
            MessageBus(bus_address=bus_address)
            if bus_address
            else MessageBus(bus_type=BusType.SYSTEM)
        )
        return await bus.connect()
    except (OSError, EOFError, ValueError) as e:
        raise ObserverError(
            f"cannot reach systemd on {bus_address or 'the system bus'}: {e}"
        ) from e


async def call(
    bus: MessageBus, path: str, interface: str, member: str, signature: str = "",
    body: list[Any] | None = None,
) -> list[Any]:  # fmt: skip
    from dbus_fast import Message, MessageType  # noqa: PLC0415

    message = Message(
        destination=SYSTEMD,
        path=path,
        interface=interface,
        member=member,
        signature=signature,
        body=body or [],
    )
    try:
        reply = await bus.call(message)
    except (EOFError, OSError) as e:  # the bus went away under the call (or systemd did)
        raise ObserverError(f"lost the connection to systemd during {member}: {e!r}") from e
    if reply is None or reply.message_type is MessageType.ERROR:
        text = reply.body[0] if reply is not None and reply.body else "no reply"
        name = reply.error_name if reply is not None else "unknown"
        hint = " (run it as root)" if name and name.endswith("AccessDenied") else ""
        raise ObserverError(f"systemd refused {member}: {text}{hint}")
    return list(reply.body)


async def get_property(bus: MessageBus, path: str, interface: str, name: str) -> object:
    body = await call(bus, path, PROPERTIES, "Get", "ss", [f"{SYSTEMD}.{interface}", name])
    value = body[0]
    return value.value if hasattr(value, "value") else value
