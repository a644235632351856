"""`observer install --user`: a user's own daemon as a `systemctl --user` service, no root."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from observer.model import ObserverError

UNIT_NAME = "observer.service"


def unit_text(python: str) -> str:
    """The user service that runs ``python -m observer daemon --user``."""
    import shlex  # noqa: PLC0415 (registering the command, for --help too, needs none)

    return (
        "[Unit]\n"
        "Description=observer: every run of your own systemd units, recorded\n"
        "\n"
        "[Service]\n"
        "Type=notify\n"
        f"ExecStart={shlex.quote(python)} -m observer daemon --user\n"
        "Restart=on-failure\n"
        "RestartSec=5s\n"
        "WatchdogSec=120s\n\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def unit_path(environ: Mapping[str, str] = os.environ) -> Path:
    config_home = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "systemd" / "user" / UNIT_NAME


def install(python: str, *, start: bool = True) -> Path:
    """Write the user service and (with ``start``) enable and start it; return its path."""
    path = unit_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(unit_text(python))
    except OSError as e:
        raise ObserverError(f"cannot write {str(path)!r}: {e.strerror}") from e
    if start:
        _systemctl("daemon-reload")
        _systemctl("enable", "--now", UNIT_NAME)
    return path


def _systemctl(*args: str) -> None:
    import shlex  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    argv = ["systemctl", "--user", *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ObserverError(f"cannot run {shlex.join(argv)}: {e}") from e
    if done.returncode != 0:
        raise ObserverError(
            f"{shlex.join(argv)} failed: {done.stderr.strip() or done.returncode} (is your user "
            "manager running? `loginctl enable-linger $USER` keeps it up without a login)"
        )


def _install(args: argparse.Namespace) -> int:
    if not args.user:
        raise ObserverError(
            "the system service is installed by packaging/install.sh (as root); "
            "`observer install --user` installs your own"
        )
    path = install(args.python or sys.executable, start=not args.no_start)
    print(f"wrote {path}")
    if not args.no_start:
        print(f"started {UNIT_NAME}: `systemctl --user status {UNIT_NAME}`; `observer status`")
    return 0


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    about = "install your own daemon as a systemctl --user service (no root)"
    parser = commands.add_parser("install", parents=list(parents), help=about, description=about)
    parser.add_argument("--user", action="store_true", help="install for this user (required)")
    parser.add_argument(
        "--python", metavar="PATH", help="the Python with observer installed (default: this one)"
    )
    parser.add_argument("--no-start", action="store_true", help="write the unit, start nothing")
    parser.set_defaults(handler=_install)
