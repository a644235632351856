"""`observer completion SHELL` (a completion script, or the recorded unit names) and
`observer manpage` (the man page), both from the argument parser as it is."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

# typing.TYPE_CHECKING would import typing; mypy takes this one as true. Registering the
# commands (for `observer --help` too) reads no parser: the handlers do.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from observer.shell import spec

SHELLS = ("bash", "zsh", "fish")


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    """Register `observer completion` and `observer manpage`."""
    about = "print the shell completion script for bash, zsh or fish"
    parser = commands.add_parser(
        "completion", parents=list(parents), help=about,
        description=f"{about.capitalize()} (e.g. `source <(observer completion bash)`); "
        "'units' prints the recorded unit names, one a line, as the scripts offer them.",
    )  # fmt: skip
    parser.add_argument("shell", metavar="SHELL", choices=(*SHELLS, "units"), help=(
        "bash, zsh or fish; or units"
    ))  # fmt: skip
    parser.add_argument("--db", type=Path, metavar="PATH", help=(
        "units: the database to read (default: as the reading commands)"
    ))  # fmt: skip
    parser.set_defaults(handler=_completion)
    about = "print the man page (roff) made from the command line's own description"
    parser = commands.add_parser("manpage", parents=list(parents), help=about, description=about)
    parser.set_defaults(handler=_manpage)


def _completion(args: argparse.Namespace) -> int:
    if args.shell == "units":
        from observer.shell.units import recorded_units  # noqa: PLC0415

        names = recorded_units(args.db)
        sys.stdout.write("".join(f"{name}\n" for name in names))
        return 0
    from observer.shell import completion  # noqa: PLC0415

    sys.stdout.write(completion.SHELLS[args.shell](_program()))
    return 0


def _manpage(args: argparse.Namespace) -> int:
    from observer import __version__  # noqa: PLC0415
    from observer.shell import manpage  # noqa: PLC0415

    sys.stdout.write(manpage.render(_program(), __version__))
    return 0


def _program() -> spec.Command:
    """Every command, as `observer` parses them."""
    from observer.__main__ import build_parser  # noqa: PLC0415
    from observer.shell import spec  # noqa: PLC0415

    return spec.read(build_parser())
