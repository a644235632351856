"""`observer metrics-file enable|disable UNIT`: the commands around the drop-in."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

# The handlers import what they use: registering the command (for `observer --help` too)
# loads neither asyncio nor the D-Bus client.


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    """Register `observer metrics-file enable|disable UNIT`."""
    about = "let a service report its own metrics by writing to $JOB_METRICS_FILE"
    parser = commands.add_parser("metrics-file", help=about, description=about)
    actions = parser.add_subparsers(metavar="ACTION", required=True)
    for action, handler, text in (
        ("enable", _enable, "install the drop-in that sets JOB_METRICS_FILE, and reload systemd"),
        ("disable", _disable, "remove the drop-in and the unit's metrics, and reload systemd"),
    ):
        sub = actions.add_parser(action, parents=list(parents), help=text, description=text)
        sub.set_defaults(handler=handler)
        sub.add_argument("unit", metavar="UNIT", help="e.g. backup or backup.service")
        sub.add_argument("--config", metavar="PATH", help="TOML configuration file")
        sub.add_argument(
            "--db", metavar="PATH", help="the daemon's database (job-metrics/ is beside it)"
        )
        sub.add_argument(
            "--root", metavar="DIR", default="/",
            help="operate on the system whose root directory is DIR (default: /)",
        )  # fmt: skip
        sub.add_argument("--bus-address", metavar="ADDRESS", help="D-Bus address of systemd")


def _enable(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 (see the note at the imports)

    from observer.metrics.dropin import enable, layout_for, with_systemd  # noqa: PLC0415

    layout = layout_for(args)
    notes = asyncio.run(with_systemd(args.bus_address, layout, lambda: enable(layout), True))
    for note in notes:
        print(note)
    print(
        f"{layout.unit} gets JOB_METRICS_FILE={layout.metrics_file} from its next start; "
        "observer exports what it writes there"
    )
    return 0


def _disable(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    from observer.metrics.dropin import disable, layout_for, with_systemd  # noqa: PLC0415

    layout = layout_for(args)
    removed = asyncio.run(with_systemd(args.bus_address, layout, lambda: disable(layout), False))
    if not removed:
        print(f"{layout.unit} had no metrics file set up by observer; nothing to do")
    for path in removed:
        print(f"removed {path}")
    return 0
