"""What the reading commands do (their options: ``cli``): read the store, print tables for
people and ``--json`` for scripts.

A command imports what it alone uses when it runs (``diff`` the definitions, ``stats`` the
statistics, ``status`` the store's health): each starts with as little as it needs
(tests/unit/test_startup_imports.py).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from observer import model, users
from observer.reading import history, render
from observer.store import database, hosts

# typing.TYPE_CHECKING would import typing; mypy takes this one as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from observer.store.database import StrPath


def on_hosts(args: argparse.Namespace) -> hosts.HostMatcher:
    """Which hosts ``--host`` selects (None: every host)."""
    return hosts.matcher(getattr(args, "host", None))


@contextmanager
def reading(args: argparse.Namespace) -> Iterator[sqlite3.Connection]:
    """The database ``--db`` names (or the default), open for reading; errors as StoreError."""
    path = args.db or database.default_read_file()
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


def history_command(args: argparse.Namespace) -> int:
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


def runs_command(args: argparse.Namespace) -> int:
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
    path = args.db or database.default_read_file()
    if os.path.exists(path):
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
    import json  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from observer.reading import follow  # noqa: PLC0415 (only a command that follows needs it)

    path = Path(args.db or database.default_read_file())
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


def _several_hosts(args: argparse.Namespace, path: StrPath) -> bool:
    if not os.path.exists(path):
        return False
    with reading(args) as conn:
        return hosts.several(conn)


def _detach_stdout() -> None:
    """Point stdout at /dev/null: flushing it at exit then raises no second BrokenPipeError."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def show_command(args: argparse.Namespace) -> int:
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


def diff_command(args: argparse.Namespace) -> int:
    from observer.reading import changes  # noqa: PLC0415 (the definitions' diffs: diff only)

    with reading(args) as conn:
        found = changes.definition_diff(conn, args.before, args.after)
    if args.json:
        _print_json(changes.diff_json(found))
    else:
        print(changes.diff_text(found))
    return 0


def last_failure_command(args: argparse.Namespace) -> int:
    with reading(args) as conn:
        detail = history.last_failure(conn, _unit_on_hosts(conn, args), on_hosts(args))
    _print_detail(detail, args.json)
    return 0


def stats_command(args: argparse.Namespace) -> int:
    from observer.reading import stats as reading_stats  # noqa: PLC0415

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


def status_command(args: argparse.Namespace) -> int:
    from observer.reading import set_aside, store_health  # noqa: PLC0415 (status's notes)

    with reading(args) as conn:
        # Every user's units, marked with their user, unless --user picks one.
        chosen = users.Selection(user=args.user, everyone=True)
        statuses = [s for s in history.unit_status(conn, on_hosts(args)) if chosen.shows(s.unit)]
        with_host = hosts.several(conn)
        vacuumed = history.vacuumed_journal(conn)
        path = args.db or database.default_read_file()
        notes = store_health.notes(conn, path)
    if args.json:
        _print_json([render.status_json(s) for s in statuses])
    else:
        print(render.status_table(statuses, with_host=with_host, width=_width(args)))
    # What the table cannot tell (runs it may be missing, a database in trouble): on stderr,
    # one way for each, so that stdout stays the table or the JSON alone.
    notes[:0] = render.vacuumed_lines(vacuumed)
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
    import json  # noqa: PLC0415 (--json only)

    print(json.dumps(value, indent=2))
