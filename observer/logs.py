"""How observer's commands log, and warnings from modules that import logging only then.

The entry point sets logging up for a command whose modules imported it (the daemon, or
anything that logs as it goes). Modules that log only on trouble (a spooled run that cannot
be read) import it here when they have something to say: `observer run`, every cron job,
starts without it (with what it imports, as costly as the wrapper's own modules).
"""

from __future__ import annotations

# A command's log lines on stderr (the daemon's go to the journal through it).
FORMAT = "%(levelname)s %(name)s: %(message)s"


def warning(logger: str, message: str, *args: object) -> None:
    """Log a warning from ``logger`` (a module's ``__name__``); when nothing set logging up
    (the entry point did not, as the command's modules had not imported it), set it up as
    the entry point does for every command first."""
    import logging  # noqa: PLC0415

    if not logging.root.handlers:
        logging.basicConfig(level=logging.WARNING, format=FORMAT)
    logging.getLogger(logger).warning(message, *args)
