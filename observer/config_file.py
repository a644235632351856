"""Which configuration file a command reads, and the defaults `observer run` needs without one.

The light part of :mod:`observer.config`: `observer run` (every cron job) learns here that
there is no file to read, and then takes these defaults without importing the TOML reader
and the classes of every section.
"""

from __future__ import annotations

import os
from pathlib import Path

from observer.users import user_config_path

DEFAULT_CONFIG_PATH = Path("/etc/observer/observer.toml")
# [output]: how much of a run's output is kept (start and end), by its result.
OUTPUT_MAX_BYTES = 64 * 1024
OUTPUT_FAILED_MAX_BYTES = 1024 * 1024


def default_config_path() -> Path:
    """The config file read without ``--config``: a user who is not root and has their own
    (``~/.config/observer/observer.toml``, their daemon's) reads theirs."""
    if os.geteuid() != 0 and (own := user_config_path()).exists():
        return own
    return DEFAULT_CONFIG_PATH


def config_to_read(path: Path | None) -> Path | None:
    """The file to read for ``--config PATH`` (``path``, which must then exist), or without it
    the default file; None when there is none (every setting is then its default)."""
    if path is not None:
        return path
    path = default_config_path()
    return path if path.exists() else None
