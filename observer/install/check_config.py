"""`observer check-config`: read the configuration file as the daemon would, and say so."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from observer.config_file import DEFAULT_CONFIG_PATH, default_config_path


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
        f"TOML configuration file (default: {DEFAULT_CONFIG_PATH}, or if you are not root "
        "and have one, ~/.config/observer/observer.toml)"
    ))  # fmt: skip
    parser.set_defaults(handler=_check_config)


def _check_config(args: argparse.Namespace) -> int:
    # Registering the command (for `observer --help` too) reads no configuration.
    from observer.config import dashboard_directory, load_config  # noqa: PLC0415
    from observer.web_config import load_web_config  # noqa: PLC0415

    path: Path = args.config or default_config_path()
    if args.config is None and not path.exists():
        print(f"{path}: no such file; the daemon uses the defaults")
        return 0
    config = load_config(path)  # a ConfigError names the file, line, key and value
    dashboard_directory(config, Path("observer.db"))  # and settings that do not fit together
    if config.metrics.web_config:  # the file it names, as the daemon reads it
        load_web_config(Path(config.metrics.web_config))
    print(f"{path}: ok")
    return 0
