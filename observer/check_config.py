"""`observer check-config`: read the configuration file as the daemon would, and say so."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from observer.config import DEFAULT_CONFIG_PATH, dashboard_directory, load_config


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    """Register `observer check-config`."""
    about = "check the configuration file the daemon reads (exit 1 naming the bad line)"
    parser = commands.add_parser(
        "check-config", parents=list(parents), help=about, description=about
    )
    parser.add_argument("--config", type=Path, metavar="PATH", help=(
        f"TOML configuration file (default: {DEFAULT_CONFIG_PATH})"
    ))  # fmt: skip
    parser.set_defaults(handler=_check_config)


def _check_config(args: argparse.Namespace) -> int:
    path: Path | None = args.config
    if path is None and not DEFAULT_CONFIG_PATH.exists():
        print(f"{DEFAULT_CONFIG_PATH}: no such file; the daemon uses the defaults")
        return 0
    config = load_config(path)  # a ConfigError names the file, line, key and value
    dashboard_directory(config, Path("observer.db"))  # and settings that do not fit together
    print(f"{path or DEFAULT_CONFIG_PATH}: ok")
    return 0
