"""The commands that read recorded runs: aligned tables for people, ``--json`` for scripts."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import json
    import sqlite3

    from observer import model, spans, users
    from observer.reading import changes, follow, history, render, set_aside, store_health
    from observer.reading import stats as reading_stats
    from observer.store import database, hosts
else:

    class _Later:
        """A module imported when first used: every command's parser is built without it."""

        def __init__(self, name: str) -> None:
            self._name = name

        def __getattr__(self, attribute: str) -> Any:
            return getattr(importlib.import_module(self._name), attribute)

    json, sqlite3 = _Later("json"), _Later("sqlite3")
    model, spans, users = (_Later(f"observer.{name}") for name in ("model", "spans", "users"))
    changes, follow, history, render, set_aside, store_health, reading_stats = (
        _Later(f"observer.reading.{name}")
        for name in ("changes", "follow", "history", "render", "set_aside", "store_health", "stats")
    )
    database, hosts = _Later("observer.store.database"), _Later("observer.store.hosts")


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
) -> None:
    """Register the commands that read the store."""
    common = reading_options(parents)
    listing = argparse.ArgumentParser(add_help=False, parents=[common])
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    host_option(listing)
    listing.add_argument(
        "-l", "--wide", action="store_true",
        help="every column, however wide (default: the columns that fit the terminal)",
    )  # fmt: skip

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], about: str
    ) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, parents=[listing], help=about, description=about)
        parser.set_defaults(handler=handler)
        return parser

    parser = command("history", _history, "the newest runs of one unit")
    parser.add_argument("unit", metavar="UNIT", help="e.g. backup or backup.service")
    parser.add_argument("-n", "--limit", type=_count, help="runs (default: 20)")
    _follow_option(parser)
    parser = command("show", _show, "everything recorded about one run, with its output")
    parser.add_argument("run_id", metavar="RUN_ID", help="a run's ID or its invocation ID")
    parser = command("diff", _diff, "how the definitions two runs started with differ")
    parser.add_argument("before", metavar="RUN_A", help="the earlier run's ID or invocation ID")
    parser.add_argument("after", metavar="RUN_B", help="the later run's ID or invocation ID")
    parser = command("last-failure", _last_failure, "the newest failed run of a unit")
    parser.add_argument("unit", metavar="UNIT", help="e.g. backup or backup.service")
    parser = command("stats", _stats, "success rate and durations, per unit")
    parser.add_argument("unit", metavar="UNIT", nargs="?", help="one unit (default: all)")
    parser.add_argument(
        "--since", type=_since, metavar="SPAN", help="only runs started in the last SPAN, e.g. 7d"
    )
    parser = command("runs", _runs, "runs of all units, newest first")
    parser.add_argument(
        "--since", type=_since, metavar="SPAN",
        help="only runs started in the last SPAN (default: 24h)",
    )  # fmt: skip
    parser.add_argument("--unit", metavar="GLOB", help="only units matching, e.g. 'backup*'")
    parser.add_argument("--failed", action="store_true", help="only runs that failed")
    parser.add_argument(
        "-n", "--limit", type=_count, metavar="N", help="the newest N runs (default: all)"
    )
    _follow_option(parser)
    command("status", _status, "each unit's last result and next run")


def host_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", metavar="NAME|GLOB",
        help="only runs of the hosts matching, e.g. web3 or 'web*' (a central database)",
    )  # fmt: skip


def on_hosts(args: argparse.Namespace) -> hosts.HostMatcher:
    """Which hosts ``--host`` selects (None: every host)."""
    return hosts.matcher(getattr(args, "host", None))


def _follow_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--follow", action="store_true",
        help="print runs as they finish, until interrupted (one JSON object a line with --json)",
    )  # fmt: skip


def _since(text: str) -> timedelta:
    try:
        return timedelta(seconds=spans.parse_span(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _count(text: str) -> int:
    if not text.isdecimal() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: use a whole number above 0")
    return int(text)


@contextmanager
def reading(args: argparse.Namespace) -> Iterator[sqlite3.Connection]:
    """The database ``--db`` names (or the default), open for reading; errors as StoreError."""
    path = args.db or database.default_read_path()
    conn = database.open_for_reading(path)
    try:
        yield conn
    except sqlite3.Error as e:
        raise model.StoreError(f"cannot read the database {str(path)!r}: {e}") from e
    finally:
        conn.close()


def _since_usec(span: timedelta | None) -> int | None:
    return None if span is None else time.time_ns() // 1000 - span // timedelta(microseconds=1)


def selection(args: argparse.Namespace) -> users.Selection:
    """Whose units ``--user`` selects (the default: the system's and the reader's own)."""
    return users.selection(getattr(args, "user", None))


def _history(args: argparse.Namespace) -> int:
    if args.follow:
        return _follow(args, _followed_unit(args), with_unit=False)
    with reading(args) as conn:
        unit = _unit_on_hosts(conn, args)
        runs = history.unit_history(conn, unit, args.limit or 20, on_hosts(args))
        with_host = hosts.several(conn)
    _print_runs(runs, args, with_unit=False, with_host=with_host)
    return 0


def _unit_on_hosts(conn: sqlite3.Connection, args: argparse.Namespace) -> str:
    """The unit ``args.unit`` names, with runs on a host ``--host`` matches."""
    unit = history.resolve_unit(conn, args.unit, selection(args))
    on = on_hosts(args)
    if on is not None and not hosts.hosts_of(conn, unit, on):
        recorded = ", ".join(hosts.hosts_of(conn, unit))
        raise model.UnknownUnitError(
            f"no runs of {unit!r} recorded on a host matching {args.host!r} "
            f"(it has runs on {recorded})"
        )
    return unit


def _runs(args: argparse.Namespace) -> int:
    if args.follow:
        matches = history.unit_matcher(args.unit or "*")
        shows = selection(args).shows
        on = on_hosts(args)
        return _follow(
            args,
            lambda run: (
                shows(run.unit)
                and matches(users.unit_of(run.unit))
                and hosts.shows(on, run.host)
                and (run.failed or not args.failed)
            ),
            with_unit=True,
        )
    with reading(args) as conn:
        runs = history.recent_runs(
            conn,
            since_usec=_since_usec(args.since or timedelta(hours=24)),
            unit_glob=args.unit,
            failed_only=args.failed,
            limit=args.limit,
            selection=selection(args),
            on=on_hosts(args),
        )
        with_host = hosts.several(conn)
    _print_runs(runs, args, with_unit=True, with_host=with_host)
    return 0


def _followed_unit(args: argparse.Namespace) -> Callable[[history.RecordedRun], bool]:
    """Runs of the unit ``history UNIT`` names; one with no runs yet may be waited for."""
    keys = selection(args).keys(args.unit)
    names = {*keys, *(f"{key}.service" for key in keys)}
    path = args.db or database.default_read_path()
    if path.exists():
        with reading(args) as conn, contextlib.suppress(model.UnknownUnitError):
            names = {history.resolve_unit(conn, args.unit, selection(args))}
    on = on_hosts(args)
    return lambda run: run.unit in names and hosts.shows(on, run.host)


def _follow(
    args: argparse.Namespace, wanted: Callable[[history.RecordedRun], bool], *, with_unit: bool
) -> int:
    """Print runs as they finish until interrupted; Ctrl-C and a closed pipe end it quietly."""
    if args.limit is not None or getattr(args, "since", None) is not None:
        raise model.ObserverError(
            "--follow prints runs as they finish from now on: -n and --since choose past "
            "runs (list them without --follow)"
        )
    path = args.db or database.default_read_path()
    with_host = args.host is not None or _several_hosts(args, path)
    batches = follow.finished_runs(
        path, notice=lambda text: print(f"observer: {text}", file=sys.stderr)
    )
    try:
        if not args.json:
            print(render.runs_table_header(with_unit=with_unit, with_host=with_host), flush=True)
        for batch in batches:
            for run in filter(wanted, batch):
                if args.json:
                    print(json.dumps(render.run_json(run)), flush=True)
                else:
                    row = render.runs_table_row(run, with_unit=with_unit, with_host=with_host)
                    print(row, flush=True)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        _detach_stdout()
        return 0
    finally:
        batches.close()
    return 0


def _several_hosts(args: argparse.Namespace, path: Path) -> bool:
    if not path.exists():
        return False
    with reading(args) as conn:
        return hosts.several(conn)


def _detach_stdout() -> None:
    """Point stdout at /dev/null: flushing it at exit then raises no second BrokenPipeError."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _show(args: argparse.Namespace) -> int:
    with reading(args) as conn:
        detail = history.run_detail(conn, args.run_id)
    if args.user is not None and not selection(args).shows(detail.run.unit):
        raise history.NoSuchRunError(f"run {args.run_id!r} is not of user {args.user!r}")
    if not hosts.shows(on_hosts(args), detail.run.host):
        raise history.NoSuchRunError(
            f"run {args.run_id!r} ran on {detail.run.host!r}, not on a host matching {args.host!r}"
        )
    _print_detail(detail, args.json)
    return 0


def _diff(args: argparse.Namespace) -> int:
    with reading(args) as conn:
        found = changes.definition_diff(conn, args.before, args.after)
    if args.json:
        _print_json(changes.diff_json(found))
    else:
        print(changes.diff_text(found))
    return 0


def _last_failure(args: argparse.Namespace) -> int:
    with reading(args) as conn:
        detail = history.last_failure(conn, _unit_on_hosts(conn, args), on_hosts(args))
    _print_detail(detail, args.json)
    return 0


def _stats(args: argparse.Namespace) -> int:
    with reading(args) as conn:
        chosen = selection(args)
        unit = None if args.unit is None else _unit_on_hosts(conn, args)
        stats = reading_stats.unit_stats(
            conn, unit, since_usec=_since_usec(args.since), host_matches=on_hosts(args)
        )
        stats = [s for s in stats if unit is not None or chosen.shows(s.unit)]
        with_host = hosts.several(conn)
    if not args.json:
        print(render.stats_table(stats, with_host=with_host, width=_width(args)))
    elif unit is not None and not with_host:  # a list, one per host, on a central db
        _print_json(render.stats_json(stats[0]))
    else:
        _print_json([render.stats_json(s) for s in stats])
    return 0


def _status(args: argparse.Namespace) -> int:
    with reading(args) as conn:
        # Every user's units, marked with their user, unless --user picks one.
        chosen = users.Selection(user=args.user, everyone=True)
        statuses = [s for s in history.unit_status(conn, on_hosts(args)) if chosen.shows(s.unit)]
        with_host = hosts.several(conn)
        vacuumed = history.vacuumed_journal(conn)
        path = Path(args.db) if args.db else database.default_read_path()
        notes = store_health.notes(conn, path)
    if args.json:
        _print_json([render.status_json(s) for s in statuses])
    else:
        print(render.status_table(statuses, with_host=with_host, width=_width(args)))
        for line in render.vacuumed_lines(vacuumed):
            print(f"note: {line}")
    if aside := set_aside.note(path):
        notes.append(aside)
    for note in notes:
        print(f"observer: {note}", file=sys.stderr)
    return 0


def _print_runs(
    runs: list[history.RecordedRun], args: argparse.Namespace, *, with_unit: bool, with_host: bool
) -> None:
    if args.json:
        _print_json([render.run_json(run) for run in runs])
    else:
        table = render.runs_table(
            runs, with_unit=with_unit, with_host=with_host, width=_width(args)
        )
        print(table)


def _width(args: argparse.Namespace) -> int | None:
    """The width a table must fit (``--wide``: none)."""
    return render.terminal_width(getattr(args, "wide", False))


def _print_detail(detail: history.RunDetail, as_json: bool) -> None:
    if as_json:
        _print_json(render.detail_json(detail))
    else:
        print(render.detail_text(detail))


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))
