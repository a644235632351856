"""`observer fleet`: each unit across the hosts of a central database (docs/fleet.md)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from observer import users
from observer.reading import cli

# typing.TYPE_CHECKING would import typing; mypy takes this one as true. Registering the
# command (for `observer --help` too) imports none of what `_fleet` reads and prints with.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypedDict

    from observer.fleet import views

    class UnitJson(TypedDict):
        unit: str
        user: str | None
        hosts: int
        ok: list[str]
        failing: list[str]
        silent: list[str]
        runs: int
        failures: int

    class HostJson(TypedDict):
        host: str
        last_run_usec: int | None
        units: int

    class FleetJson(TypedDict):
        units: list[UnitJson]
        hosts: list[HostJson]


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    about = "each unit across the hosts: ok, failing, or silent (did not run when due)"
    parser = commands.add_parser(
        "fleet", parents=[cli.reading_options(parents)], help=about, description=about
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    cli.host_option(parser)
    parser.add_argument(
        "units", metavar="UNIT|GLOB", nargs="*", help="only these units, e.g. backup or 'sync*'"
    )
    parser.set_defaults(handler=_fleet)


def _fleet(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415 (see the note at the imports)
    import time  # noqa: PLC0415

    from observer.fleet import facts, views  # noqa: PLC0415
    from observer.reading import commands, history  # noqa: PLC0415

    matchers = [history.unit_matcher(glob) for glob in args.units]
    chosen = users.Selection(user=args.user, everyone=True)

    def shows(unit: str) -> bool:
        name = users.unit_of(unit)
        return chosen.shows(unit) and (not matchers or any(m(name) for m in matchers))

    with commands.reading(args) as conn:
        cells = facts.host_units(conn, shows, commands.on_hosts(args))
    units = views.across_hosts(cells, time.time_ns() // 1000)
    if args.json:
        print(json.dumps(fleet_json(units, views.hosts_seen(cells)), indent=2))
    elif units:
        print("\n".join(views.line(view) for view in units))
    else:
        print(
            "no runs recorded"
            + (" of the units or hosts asked for" * bool(args.units or args.host))
        )
    return 0


def fleet_json(units: Sequence[views.UnitAcrossHosts], seen: Sequence[views.HostSeen]) -> FleetJson:
    """What `observer fleet --json` prints (the shape docs/fleet.md shows)."""
    return {
        "units": [
            {
                "unit": users.unit_of(view.unit),
                "user": users.user_of(view.unit),
                "hosts": view.hosts,
                "ok": list(view.ok),
                "failing": list(view.failing),
                "silent": list(view.silent),
                "runs": view.runs,
                "failures": view.failures,
            }
            for view in units
        ],
        "hosts": [
            {"host": host.host, "last_run_usec": host.last_run_usec, "units": host.units}
            for host in seen
        ],
    }
