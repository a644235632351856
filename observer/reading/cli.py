"""The commands that read recorded runs: their options, parsed before anything heavy is
imported; what each does is in ``commands`` (imported when the command runs)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path


def reading_options(parents: Sequence[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """The options of every command that reads the store (``--db``), for ``parents=``."""
    common = argparse.ArgumentParser(add_help=False, parents=list(parents))
    common.add_argument(
        "--db", type=Path, metavar="PATH", help="database to read (default: $OBSERVER_DB, or "
        "/var/lib/observer/observer.db as root, or ~/.local/share/observer/observer.db if it "
        "exists, else /var/lib/observer/observer.db)"
    )  # fmt: skip
    common.add_argument(
        "--user", metavar="NAME", help="only the units of user NAME (systemctl --user); "
        "default: the system's and, if you are not root, your own"
    )  # fmt: skip
    return common


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
    only: str | None = None,
) -> None:
    """Register the commands that read the store: all of them, or only the one ``only`` names
    when it is one (the command being run: building the others costs its start)."""
    common = reading_options(parents)
    listing = argparse.ArgumentParser(add_help=False, parents=[common])
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    host_option(listing)
    listing.add_argument(
        "-l", "--wide", action="store_true",
        help="every column, however wide (default: the columns that fit the terminal)",
    )  # fmt: skip
    for name, (about, arguments) in _COMMANDS.items():
        if only in _COMMANDS and name != only:
            continue
        parser = commands.add_parser(name, parents=[listing], help=about, description=about)
        parser.set_defaults(handler=_later(f"{name.replace('-', '_')}_command"))
        arguments(parser)


def _history(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("unit", metavar="UNIT", help="e.g. backup or backup.service")
    parser.add_argument("-n", "--limit", type=_count, help="runs (default: 20)")
    _follow_option(parser)


def _show(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN_ID", help="a run's ID or its invocation ID")


def _diff(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("before", metavar="RUN_A", help="the earlier run's ID or invocation ID")
    parser.add_argument("after", metavar="RUN_B", help="the later run's ID or invocation ID")


def _last_failure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("unit", metavar="UNIT", help="e.g. backup or backup.service")


def _stats(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("unit", metavar="UNIT", nargs="?", help="one unit (default: all)")
    parser.add_argument(
        "--since", type=since_span, metavar="SPAN",
        help="only runs started in the last SPAN, e.g. 7d",
    )  # fmt: skip


def _runs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", type=since_span, metavar="SPAN",
        help="only runs started in the last SPAN (default: 24h)",
    )  # fmt: skip
    parser.add_argument("--unit", metavar="GLOB", help="only units matching, e.g. 'backup*'")
    parser.add_argument("--failed", action="store_true", help="only runs that failed")
    parser.add_argument(
        "-n", "--limit", type=_count, metavar="N", help="the newest N runs (default: all)"
    )
    _follow_option(parser)


def _status(parser: argparse.ArgumentParser) -> None:
    pass  # the options of every listing only


# Each command: what it prints, and its own arguments (besides the listings' options).
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "history": ("the newest runs of one unit", _history),
    "show": ("everything recorded about one run, with its output", _show),
    "diff": ("how the definitions two runs started with differ", _diff),
    "last-failure": ("the newest failed run of a unit", _last_failure),
    "stats": ("success rate and durations, per unit", _stats),
    "runs": ("runs of all units, newest first", _runs),
    "status": ("each unit's last result and next run", _status),
}
COMMANDS = frozenset(_COMMANDS)


def host_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", metavar="NAME|GLOB",
        help="only runs of the hosts matching, e.g. web3 or 'web*' (a central database)",
    )  # fmt: skip


def _follow_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--follow", action="store_true",
        help="print runs as they finish, until interrupted (one JSON object a line with --json)",
    )  # fmt: skip


def since_span(text: str) -> timedelta:
    """``--since``'s value: a span in the one grammar (observer/spans.py)."""
    from observer.spans import parse_span  # noqa: PLC0415 (only when --since is given)

    try:
        return timedelta(seconds=parse_span(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _count(text: str) -> int:
    if not text.isdecimal() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: use a whole number above 0")
    return int(text)


def _later(name: str) -> Callable[[argparse.Namespace], int]:
    """The handler ``name`` of observer/reading/commands.py, imported when its command runs."""

    def handler(args: argparse.Namespace) -> int:
        run: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module("observer.reading.commands"), name
        )
        return run(args)

    return handler
