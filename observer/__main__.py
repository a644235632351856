"""Entry point: set up logging, parse the command line, run one command, map errors to exits."""

from __future__ import annotations

import atexit
import os
import sys

from observer import __version__

# typing.TYPE_CHECKING would cost `--version` importing typing; mypy takes this one as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

# Commands whose modules are imported only when they run (or for --help): `observer run`
# wraps cron jobs and must start fast, without what the other commands need.
_LAZY_COMMANDS = {
    "run": "observer.run.cli",
    "metrics-file": "observer.metrics.cli",
    "report": "observer.dashboard.cli",
    "fleet": "observer.fleet.cli",
    "check-config": "observer.install.check_config",
    "alerts": "observer.alerts.cli",
    "digest": "observer.alerts.cli",
    "jobs": "observer.jobs.cli",
    "completion": "observer.shell.cli",
    "manpage": "observer.shell.cli",
    "install": "observer.install.user_service",
    "doctor": "observer.doctor.cli",
    "timeline": "observer.reading.timeline_cli",
    "next": "observer.reading.timeline_cli",
    "set-aside": "observer.reading.set_aside",
}

# A reader that went away (`observer runs | head`) ends us as SIGPIPE would a C tool.
EXIT_BROKEN_PIPE = 128 + 13
EXIT_INTERRUPTED = 128 + 2


def _chosen_command(argv: list[str]) -> str | None:
    """The command named on the command line, if any (options before it take no values)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _asks_version(argv: list[str]) -> bool:
    """Whether the command line is ``observer [--debug] --version``: no command is needed."""
    return "--version" in argv and _chosen_command(argv) is None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line: every command, or for speed only the one ``argv`` names."""
    import argparse  # noqa: PLC0415 (`observer --version` prints without it)
    import importlib  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="observer", description="Every run of your systemd services and timers, recorded."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="log details and show tracebacks")
    # Also accepted after the command; SUPPRESS keeps it from undoing a --debug given before.
    debug = argparse.ArgumentParser(add_help=False)
    from observer.reading import cli  # noqa: PLC0415  (light: its handlers import the rest)

    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=(
        cli.DEBUG.help
    ))  # fmt: skip
    commands = parser.add_subparsers(metavar="COMMAND", required=True)

    # A command line naming no command, or one that is not a command, shows them all.
    chosen = None if argv is None else _chosen_command(argv)
    if chosen not in {*cli.COMMANDS, "daemon", *_LAZY_COMMANDS}:
        chosen = None
    cli.add_commands(commands, [debug], chosen)
    if chosen in (None, "daemon"):
        _add_daemon(commands, debug)
    wanted = [module for name, module in _LAZY_COMMANDS.items() if chosen in (None, name)]
    for module in dict.fromkeys(wanted):  # a module may register more than one command
        importlib.import_module(module).add_command(commands, [debug])
    return parser


def _add_daemon(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], debug: argparse.ArgumentParser
) -> None:
    daemon = commands.add_parser(
        "daemon", parents=[debug], help="record every run (runs as a service)",
        description="Record every run of the observed units into the database.",
    )  # fmt: skip
    daemon.add_argument("--db", metavar="PATH", help="database to write")
    daemon.add_argument("--bus-address", metavar="ADDRESS", help="D-Bus address of systemd")
    daemon.add_argument("--journal-dir", metavar="DIR", help="read the journal from DIR")
    daemon.add_argument(
        "--journal-socket",
        metavar="PATH",
        help="write run records to the journald listening on PATH (another systemd's)",
    )
    daemon.add_argument(
        "--fleet-dir",
        metavar="DIR",
        help="a central observer: read the hosts' journals received in DIR, with no bus",
    )
    daemon.add_argument("--config", metavar="PATH", help="TOML configuration file")
    daemon.add_argument("--passwd", metavar="PATH", help=(
        "name users' units from this passwd file (default: the system's users; for a "
        "container's journal read from outside)"
    ))  # fmt: skip
    daemon.add_argument("--root", metavar="DIR", help=(
        "read the units' files (unit files, drop-ins, scripts) under DIR: a container's "
        "root seen from outside (default: /)"
    ))  # fmt: skip
    daemon.add_argument("--user", action="store_true", help=(
        "record your own units (systemctl --user) from your bus and journal, into "
        "$XDG_DATA_HOME/observer/observer.db; no root needed"
    ))  # fmt: skip
    daemon.add_argument("--listen", metavar="HOST:PORT", help=(
        "serve Prometheus metrics on HOST:PORT (default: [metrics] listen, 127.0.0.1:9089; "
        "'' for none)"
    ))  # fmt: skip
    daemon.add_argument("--web.config.file", dest="web_config", metavar="PATH", help=(
        "TLS and basic auth of the metrics listener, as Prometheus exporters read them "
        "(default: [metrics] web_config)"
    ))  # fmt: skip
    daemon.set_defaults(handler=_daemon)


def _daemon(args: argparse.Namespace) -> int:
    # Only the daemon needs D-Bus and the journal: the reading commands start faster without.
    from observer.daemon import serve  # noqa: PLC0415

    return serve.run(args)


def entry() -> None:
    """The ``observer`` command: run :func:`main` on the process's arguments, and exit."""
    arguments = sys.argv[1:]
    status = main(arguments)
    if _chosen_command(arguments) != "daemon":
        exit_without_teardown(status)
    sys.exit(status)


def exit_without_teardown(status: int) -> None:
    """Have the process end with ``status`` as soon as Python exits, without tearing down
    its modules.

    Freeing every module's objects one by one costs a command 3 to 8 ms of CPU at its end
    (`observer run`, on each cron job, 8 ms: a quarter of what it may add to the job), and
    nothing needs it: the command's work is done and its output written, and Python joins
    the threads still running before it calls this. The exit handlers registered before
    this one are skipped as well: logging's (which flushes its handlers) is called here.
    The daemon ends the usual way.
    """

    def end() -> None:
        import contextlib  # noqa: PLC0415 (`observer --version` never needs it otherwise)

        if "logging" in sys.modules:
            sys.modules["logging"].shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a reader gone: the status stands
                stream.flush()
        os._exit(status)

    atexit.register(end)


def main(argv: list[str] | None = None) -> int:
    """Run ``observer`` with ``argv`` (default: the process's); return the exit status."""
    arguments = sys.argv[1:] if argv is None else argv
    if _asks_version(arguments):  # as argparse's action would print it, without building one
        print(f"observer {__version__}")
        return 0
    from observer.reading import cli  # noqa: PLC0415 (light: no argparse, no handlers)

    # An ordinary reading or `observer run` command line is parsed without argparse;
    # argparse does the rest.
    args = cli.parse(arguments)
    if args is None and _chosen_command(arguments) == "run":
        from observer.run import cli as run_cli  # noqa: PLC0415 (only `observer run` needs it)

        args = run_cli.parse(arguments)
    if args is None:
        try:
            args = build_parser(arguments).parse_args(arguments)
        except SystemExit as e:  # --help, --version, or a usage error argparse explained
            return e.code if isinstance(e.code, int) else 2
    _log_as_asked(args)
    try:
        status = int(args.handler(args))
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as e:
        return _failed(e, args.debug)
    return status


def _log_as_asked(args: argparse.Namespace) -> None:
    """Set up logging if the command can log: a reading command never imports logging."""
    if "logging" not in sys.modules and not args.debug and args.handler is not _daemon:
        return  # the command's modules (imported by now) do not log: spare its import
    import logging  # noqa: PLC0415

    from observer import logs  # noqa: PLC0415

    # The daemon reports what it does (journald keeps it); commands speak only on trouble.
    quiet = logging.INFO if args.handler is _daemon else logging.WARNING
    logging.basicConfig(level=logging.DEBUG if args.debug else quiet, format=logs.FORMAT)


def _failed(error: Exception, debug: bool) -> int:
    """Explain an error of a command on stderr; the exit status."""
    from observer.model import ObserverError  # noqa: PLC0415

    if not isinstance(error, ObserverError):
        if debug:
            raise error
        print(
            f"observer: internal error: {error!r} (run with --debug for details)", file=sys.stderr
        )
        return 1
    if debug:
        import traceback  # noqa: PLC0415

        traceback.print_exception(error)
    print(f"observer: {error}", file=sys.stderr)
    return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit raises no second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    entry()
