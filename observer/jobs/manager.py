"""Which systemd manager runs the jobs: the system's (root), or a user's own (``--user``).

A user's manager (``systemctl --user``) takes the jobs of ``~/.config/observer/jobs.toml``
into ``~/.config/systemd/user/``. It differs from PID 1 in what it can do for a job (seen on
systemd 252): it cannot switch users (``User=`` fails with 216/GROUP), cannot decrypt
credentials (``LoadCredentialEncrypted=`` needs the root-only host key: 243/CREDENTIALS),
and applies the namespace settings of the sandbox (``ProtectSystem=``, ``PrivateTmp=``...)
only inside a user namespace of the job's own, ``PrivateUsers=yes``: without it they are
silently ignored, and ``ProtectKernelModules=``, ``ProtectKernelLogs=``, ``ProtectClock=``
fail with 218/CAPABILITIES.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from observer import users
from observer.jobs.apply import UNIT_DIR
from observer.jobs.jobfile import DEFAULT_JOBS_PATH, Job
from observer.model import ConfigError
from observer.store import database


@dataclass(frozen=True, slots=True)
class JobManager:
    """Where a manager's jobs file, unit files, bus and observer database are."""

    user: str | None = None  # None: the system's manager (PID 1)
    jobs_file: Path = DEFAULT_JOBS_PATH
    unit_dir: PurePosixPath = UNIT_DIR
    bus_address: str | None = None  # None: the system bus
    db_path: Path | None = None  # None: the default reading path (database.default_read_path)

    def unit_key(self, unit: str) -> str:
        """The name the store gives this manager's ``unit``."""
        return users.qualify(self.user, unit)

    def read_path(self) -> Path:
        return self.db_path or database.default_read_path()


SYSTEM = JobManager()


def user_jobs_path(environ: Mapping[str, str] = os.environ) -> Path:
    """A user's jobs file: $XDG_CONFIG_HOME/observer/jobs.toml."""
    return users.user_config_path(environ).with_name("jobs.toml")


def user_manager(environ: Mapping[str, str] = os.environ) -> JobManager:
    """The manager of the user this process runs as."""
    config_home = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return JobManager(
        user=users.current_user(),
        jobs_file=user_jobs_path(environ),
        unit_dir=PurePosixPath(config_home) / "systemd" / "user",
        bus_address=users.user_bus_address(environ),
        # The reading default: their own daemon's database, else the system's (which also
        # records users' units) if they may read it.
        db_path=None,
    )


def check_for_user_manager(jobs: list[Job]) -> None:
    """Refuse what a user's manager cannot do, naming the line and what to do instead."""
    for job in jobs:
        where = f"{job.source}:{job.line or 1}: jobs.{job.name}"
        if job.user or job.group:
            key = "user" if job.user else "group"
            raise ConfigError(
                f"{where}.{key}: a user's own manager runs every job as that user and "
                f"cannot switch to another: remove {key}, or declare the job in "
                f"{DEFAULT_JOBS_PATH} (root)"
            )
        for credential in job.credentials:
            if credential.encrypted:
                raise ConfigError(
                    f"{where}.credentials.{credential.name}: a user's manager cannot decrypt "
                    "credentials (systemd 252 keeps the key for root only): give a plain "
                    f"file readable by you alone (chmod 600), e.g. {credential.name} = "
                    f'"{users.user_config_path().parent / "credentials" / credential.name}"'
                )
