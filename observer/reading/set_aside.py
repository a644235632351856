"""`observer set-aside`: the runs the database refused, which the daemon kept beside it."""

from __future__ import annotations

from collections.abc import Sequence

from observer.store import set_aside

# typing.TYPE_CHECKING would import typing; mypy takes this one as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse  # `observer status` imports this module for its note: it parses without

    from observer.store.database import StrPath


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    """Register `observer set-aside`."""
    about = "list the runs the database refused, kept beside it (observer_runs_set_aside_total)"
    parser = commands.add_parser("set-aside", parents=list(parents), help=about, description=about)
    parser.add_argument("--db", metavar="PATH", help="the database the runs were meant for")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    parser.set_defaults(handler=_list)


def note(db_path: StrPath) -> str | None:
    """What `observer status` says of runs set aside, if any are."""
    kept = set_aside.count(set_aside.set_aside_file(db_path))
    if not kept:
        return None
    runs = "run" if kept == 1 else "runs"
    return f"{kept} {runs} set aside (the database refused them): see `observer set-aside`"


def _list(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415 (registering the command, for --help too, needs none of these)

    from observer.reading.render import local_time  # noqa: PLC0415
    from observer.store import database  # noqa: PLC0415

    path = set_aside.set_aside_file(args.db or database.default_read_file())
    entries = list(set_aside.read(path))
    if args.json:
        print(json.dumps([_json(e) for e in entries], indent=2))
        return 0
    if not entries:
        print(f"no runs set aside ({path} holds none)")
        return 0
    for entry in entries:
        when = local_time(entry.at_usec).strftime("%Y-%m-%d %H:%M:%S")
        what = f"{entry.unit} {entry.invocation_id or '-'}" if entry.unit else "part of a batch"
        print(f"{when}  {what}: {entry.error}")
    print(f"({len(entries)} in {path}; each line there holds the whole run as JSON)")
    return 0


def _json(entry: set_aside.SetAside) -> dict[str, object]:
    return {
        "at_usec": entry.at_usec,
        "error": entry.error,
        "unit": entry.unit,
        "invocation_id": entry.invocation_id,
        "what": entry.what,
    }
