"""What `observer daemon` runs against: the system's manager, or (``--user``) a user's own.

The system daemon reads /etc/observer/observer.toml, writes /var/lib/observer, listens to PID 1
on the system bus and reads PID 1's and the observed users' managers' journal records. A
user's own daemon uses their XDG directories (their jobs file too), their manager on the user
bus, and only their manager's journal records.
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from observer.config import Config, JobsConfig, MetricsConfig, load_config
from observer.fleet.ingest import FleetIntake, parse_local
from observer.jobs.alert_rules import with_job_alerts
from observer.jobs.manager import user_jobs_path
from observer.model import boot_id
from observer.recording.attribution import RunOutput
from observer.recording.correlator import Correlator
from observer.recording.intake import HostIntake, Intake, LocalIntake
from observer.recording.journal import JournalScope
from observer.store.database import Batch, default_db_path
from observer.store.writer import AsyncStore
from observer.users import (
    SEPARATOR,
    current_user,
    qualify,
    user_bus_address,
    user_config_path,
    user_db_path,
    user_names,
)


@dataclass(frozen=True, slots=True)
class DaemonSetup:
    config: Config
    db_path: Path
    bus_address: str | None  # None: the system bus
    journal_dir: Path | None  # None: the local journal
    user: str | None = None  # a user's own daemon: whose
    passwd: Path | None = None  # users' names from this file instead of the system's
    fleet_dir: Path | None = None  # a central observer: the received journals, no bus
    journal_socket: Path | None = None  # where run records go; None: this system's journald
    root: Path = Path("/")  # where the units' files are (a container's root from outside)


def setup_from(args: argparse.Namespace) -> DaemonSetup:
    """The setup the command line (and the configuration file it names) asks for."""
    user = current_user() if getattr(args, "user", False) else None
    config_path = Path(args.config) if args.config else None
    if user is not None and config_path is None and user_config_path().exists():
        config_path = user_config_path()
    config = load_config(config_path)
    if user is not None:
        if config.jobs == JobsConfig():
            # A user's jobs (`observer jobs --user`) are in their own jobs file.
            config = config._replace(jobs=JobsConfig(file=str(user_jobs_path())))
        config = own_units(config, user)
    config = with_job_alerts(config, user)
    listen = getattr(args, "listen", None)
    if listen is None and user is not None and config.metrics == MetricsConfig():
        listen = ""  # the system daemon's port: a user's daemon serves only where told to
    if listen is not None:
        metrics = config.metrics._replace(listen=listen)
        config = config._replace(metrics=metrics)
    if web_config := getattr(args, "web_config", None):
        metrics = config.metrics._replace(web_config=web_config)
        config = config._replace(metrics=metrics)
    if args.db:
        db_path = Path(args.db)
    else:
        db_path = user_db_path() if user is not None else default_db_path()
    journal_dir = args.journal_dir or config.journal.directory or None
    passwd = getattr(args, "passwd", None)
    fleet_dir = getattr(args, "fleet_dir", None) or config.fleet.directory or None
    return DaemonSetup(
        fleet_dir=Path(fleet_dir) if fleet_dir else None,
        journal_socket=Path(args.journal_socket) if getattr(args, "journal_socket", None) else None,
        config=config,
        db_path=db_path,
        bus_address=args.bus_address or (user_bus_address() if user is not None else None),
        journal_dir=Path(journal_dir) if journal_dir else None,
        user=user,
        passwd=Path(passwd) if passwd else None,
        root=Path(getattr(args, "root", None) or "/"),
    )


def intake_for(
    config: Config,
    host: str,
    fleet_dir: Path | None,
    store: AsyncStore,
    pending: Callable[[], Batch],
) -> Intake:
    """What the daemon records: a central observer (``fleet_dir``), every host's runs from
    the journals received; any other, its own host's, from its manager and its journal
    (leaving out the run records it writes there itself)."""
    if fleet_dir is not None:
        return FleetIntake(config, store, pending)
    # Asked of every event about a unit: the answer for a unit never changes (frozen config).
    observes = functools.lru_cache(maxsize=4096)(config.observe.observes)
    correlator = Correlator(host, observes, boot_id=boot_id())
    output = RunOutput(config, correlator, store, pending)
    return LocalIntake(HostIntake(correlator, output), store, parse=parse_local)


def own_units(config: Config, user: str) -> Config:
    """A user's own configuration, whose unit globs name their units as ``systemctl --user``
    does (``backup.service``), as the store names them (``alice/backup.service``)."""

    def mine(pattern: str) -> str:
        return pattern if SEPARATOR in pattern else qualify(user, pattern)

    observe = config.observe._replace(
        include=tuple(map(mine, config.observe.include)),
        exclude=tuple(map(mine, config.observe.exclude)),
    )
    units = tuple(u._replace(pattern=mine(u.pattern)) for u in config.alerts.units)
    alerts = config.alerts._replace(units=units)
    return config._replace(observe=observe, alerts=alerts)


def journal_scope(config: Config, user: str | None, passwd: Path | None) -> JournalScope:
    """The system daemon reads PID 1's records and the observed users' managers'; a user's
    own daemon reads only their manager's."""
    if user is not None:
        uid = os.getuid()
        return JournalScope(
            system=False, users=lambda n: user if n == uid else None, user_journals=True
        )
    return JournalScope(
        users=user_names(config.observe.observes_user, passwd),
        user_journals=bool(config.observe.users),
    )


def bus_name(user: str | None, address: str | None) -> str:
    """The bus a daemon listens to, as its log names it."""
    name = "the system bus" if user is None else f"the user bus of {user}"
    return name if address is None else f"{name} ({address})"


def bus_hint(user: str | None) -> str:
    """What to check when a daemon cannot reach its bus."""
    if user is None:
        return ""
    return (
        f" (is the user manager of {user} running? `loginctl enable-linger {user}` keeps it up "
        "without a login)"
    )
