"""`observer timeline` (the runs of a window of time, drawn) and `observer next` (what the
timers start next, and what is expected to overlap)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from observer.reading import cli

# typing.TYPE_CHECKING would import typing; mypy takes this one as true. What the commands
# draw is imported when one runs: registering them (for --help too) needs none of it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import timedelta

    from observer.reading import day

# The width drawn to when stdout is not a terminal (a file, a pipe, a test).
PIPE_WIDTH = 120


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    """Register `observer timeline` and `observer next`."""
    listing = argparse.ArgumentParser(add_help=False, parents=[cli.reading_options(parents)])
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    cli.host_option(listing)
    about = "the runs of the last 24 hours drawn on a time axis: failures, overlaps"
    parser = commands.add_parser("timeline", parents=[listing], help=about, description=about)
    parser.set_defaults(handler=_timeline)
    parser.add_argument(
        "units", metavar="UNIT", nargs="*", help="only these units (globs too, e.g. 'backup*')"
    )
    parser.add_argument(
        "--since", type=cli.since_span, metavar="SPAN", help="the last SPAN (default: 24h), e.g. 6h"
    )
    parser.add_argument("--width", type=_width, metavar="N", help=(
        "draw N characters wide (default: the terminal's width, or 120 when not a terminal)"
    ))  # fmt: skip
    about = "what the timers start next, each unit's usual duration and expected overlaps"
    parser = commands.add_parser("next", parents=[listing], help=about, description=about)
    parser.set_defaults(handler=_next)


def _width(text: str) -> int:
    if not text.isdecimal() or int(text) < 20:
        raise argparse.ArgumentTypeError(f"invalid width {text!r}: use a whole number, 20 or more")
    return int(text)


def _timeline(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415
    from datetime import timedelta  # noqa: PLC0415

    from observer.model import UnknownUnitError  # noqa: PLC0415
    from observer.reading import commands, day, timeline, window  # noqa: PLC0415

    now_usec = time.time_ns() // 1000
    span = args.since or timedelta(hours=24)
    shown = day.Window(now_usec - span // timedelta(microseconds=1), now_usec)
    with commands.reading(args) as conn:
        units = window.units_matching(conn, args.units, commands.selection(args))
        if args.units and not units:
            raise UnknownUnitError(
                f"no recorded unit matches {' '.join(map(repr, args.units))} "
                "('observer status' lists the units with recorded runs)"
            )
        runs = window.runs_in_window(conn, shown.start_usec, units, commands.on_hosts(args))
        is_job = day.job_test(window.timer_services(conn))
    picture = day.lay_out(runs, shown, now_usec, is_job)
    if args.json:
        print(json.dumps(timeline.timeline_json(picture), indent=2))
    elif not picture.rows:
        print(f"no runs in the last {_span_text(span)}")
    else:
        lines = _drawn(picture, args.width)
        print("\n".join(lines))
    return 0


def _drawn(picture: day.Picture, width: int | None) -> list[str]:
    import shutil  # noqa: PLC0415

    from observer.model import ObserverError  # noqa: PLC0415
    from observer.reading import timeline  # noqa: PLC0415

    terminal = sys.stdout.isatty()
    if width is None:
        width = shutil.get_terminal_size().columns if terminal else PIPE_WIDTH
    colour = terminal and not os.environ.get("NO_COLOR")
    try:
        return timeline.text_lines(picture, width, colour=colour)
    except ValueError as e:
        raise ObserverError(f"{e} (--width N)") from None


def _span_text(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _next(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from observer.reading import commands, upcoming, window  # noqa: PLC0415

    with commands.reading(args) as conn:
        schedule = window.scheduled(conn, commands.selection(args).shows, commands.on_hosts(args))
    if args.json:
        print(json.dumps(upcoming.next_json(schedule), indent=2))
    else:
        print(upcoming.next_table(schedule, time.time_ns() // 1000))
    return 0
