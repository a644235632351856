"""`man observer`: the man page (roff, man macros) of the command tree (spec.py)."""

from __future__ import annotations

import re

from observer.shell.spec import Command, Option, Positional

# What the parser does not know: where things live, and the environment the commands read.
_FILES = [
    ("/etc/observer/observer.toml", "the configuration the daemon reads (observer check-config)"),
    ("/var/lib/observer/observer.db", "the history the installed service records"),
    ("/var/spool/observer/", "runs observer run (as root) could not store yet"),
    ("~/.local/share/observer/observer.db", "a user's own database, read first if it exists"),
]
_ENVIRONMENT = [
    ("OBSERVER_DB", "the database to read or write when --db is not given"),
    ("OBSERVER_SPOOL", "observer run: where runs wait when the database cannot take them"),
    ("OBSERVER_METRICS_DIR", "observer run: where JOB_METRICS_FILE ends up"),
]
_SEE_ALSO = "systemctl(1), journalctl(1), systemd.timer(5), crontab(5)"


def escape(text: str) -> str:
    """Text safe in a roff line: backslashes, hyphens of options, no control at line start."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def _bold(text: str) -> str:
    return f"\\fB{escape(text)}\\fR"


def _italic(text: str) -> str:
    return f"\\fI{escape(text)}\\fR"


def _option_term(option: Option) -> str:
    flags = ", ".join(_bold(flag) for flag in option.flags)
    return f"{flags} {_italic(option.metavar)}" if option.metavar else flags


def _synopsis(command: Command) -> str:
    """The usage line with the program's and command's words in bold, the rest as written."""
    usage = command.usage
    words = ["observer", *command.path]
    prefix = " ".join(words)
    rest = usage[len(prefix) :].strip() if usage.startswith(prefix) else usage
    marked = re.sub(r"(?<![\w-])(--?[\w-]+)", lambda m: "\x00B" + m[1] + "\x00R", rest)
    text = escape(marked).replace("\x00B", "\\fB").replace("\x00R", "\\fR")
    return f"{_bold(prefix)} {text}".rstrip()


def _section(command: Command) -> list[str]:
    lines = [f'.SS "observer {escape(command.name)}"', _synopsis(command), ".PP"]
    lines.append(escape(_sentence(command.description)))
    for positional in command.positionals:
        if positional.help:
            lines += [".TP", _positional_term(positional), escape(positional.help)]
    for option in command.options:
        if option.flags[0] in ("-h", "--help"):
            continue
        lines += [".TP", _option_term(option), escape(option.help)]
    if command.subcommands:
        names = ", ".join(_bold(" ".join(sub.path)) for sub in command.subcommands)
        lines += [".PP", f"Its commands: {names}."]
    return lines


def _positional_term(positional: Positional) -> str:
    return _italic(positional.name)


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", ")", ":")) else text + "."


def render(program: Command, version: str) -> str:
    """The whole page of ``program``, for ``version``."""
    lines = [
        f'.TH OBSERVER 1 "" "observer {escape(version)}" "User Commands"',
        ".nh",
        ".SH NAME",
        f"observer \\- {escape(program.description.rstrip('.').lower())}",
        ".SH SYNOPSIS",
        _synopsis(program),
        ".SH DESCRIPTION",
        escape(
            "observer records every run of every systemd service and timer (and of cron jobs "
            "run through observer run) into SQLite: the daemon listens to systemd over D-Bus "
            "and reads the journal; the other commands read what it recorded."
        ),
        ".PP",
        "Options:",
    ]
    for option in program.options:
        lines += [".TP", _option_term(option), escape(option.help)]
    lines.append(".SH COMMANDS")
    for command in program.walk()[1:]:
        lines += _section(command)
    lines.append(".SH FILES")
    for path, what in _FILES:
        lines += [".TP", _italic(path), escape(what)]
    lines.append(".SH ENVIRONMENT")
    for name, what in _ENVIRONMENT:
        lines += [".TP", _bold(name), escape(what)]
    lines += [
        ".SH EXIT STATUS",
        escape(
            "0 on success, 1 on an error the message explains, 2 for a bad command line; "
            "observer run exits with the status of the command it ran."
        ),
        ".SH SEE ALSO",
        escape(_SEE_ALSO),
    ]
    return "\n".join(lines) + "\n"
