"""A crontab turned into a jobs file (pure: text in, text out).

Schedules are converted by schedule.py (the jobs file keeps the cron line as written; the
timer gets the equivalent OnCalendar= lines); ``VAR=value`` lines become each later job's
``environment``; a ``%`` in a command (cron's "the rest is stdin") is noted, as is
``MAILTO`` (systemd mails nobody: observer's alerts take its place). A job whose sandbox
would break what its command needs (sandbox.py) gets ``read_write_paths`` or, when that
cannot help, ``hardening = false``, with a comment saying why.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from observer.jobs.sandbox import check, default_settings, needs_of
from observer.jobs.schedule import ScheduleError, cron_to_calendar

_NOT_THE_PROGRAM = {
    "cd", "test", "[", "]", "if", "then", "fi", "exec", "env", "nice", "ionice", "sudo",
    "/usr/bin/env", "sh", "/bin/sh", "bash", "/bin/bash",
}  # fmt: skip
_ENV = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")


@dataclass(frozen=True, slots=True)
class _CronEntry:
    """One cron line's schedule, user (a system crontab's column), command and its stdin."""

    schedule: str
    user: str
    command: str
    stdin: str | None


def to_jobs_file(text: str, *, system: bool, source: str) -> str:
    """The jobs file for crontab ``text`` (``system``: a user column after the schedule)."""
    out = [f"# Converted by `observer jobs import-crontab` from {_comment(source)}.", ""]
    environment: dict[str, str] = {}
    notes: list[str] = []
    names: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if (env := _ENV.fullmatch(line)) and not line.startswith("@"):
            note = _variable(env[1], _unquote(env[2]), environment)
            notes += [] if note is None else [f"line {number}: {note}"]
            continue
        entry = _entry(line, system=system)
        if isinstance(entry, str):
            notes.append(f"line {number}: {entry}")
            continue
        name = _name(entry.command, names)
        out += _job_table(name, f"line {number}: {_comment(line)}", entry, environment)
    if notes:
        out += ["# Notes:", *(f"# {_comment(n)}" for n in notes), ""]
    return "\n".join(out)


def _variable(key: str, value: str, environment: dict[str, str]) -> str | None:
    """A crontab's ``VAR=value``: kept for the jobs after it, or a note saying why not."""
    if key == "MAILTO":
        return (f"MAILTO={value}: systemd sends no mail; use "
                "observer's alerts (docs/alerts.md) for failed runs")  # fmt: skip
    if key in ("SHELL", "PATH"):  # systemd jobs run /bin/sh with its own PATH
        return f"{key}={value} not carried over (systemd sets it)"
    environment[key] = value
    return None


def _entry(line: str, *, system: bool) -> _CronEntry | str:
    """The parts of a cron line, or why it is skipped."""
    count = 1 if line.startswith("@") else 5
    fields = line.split(None, count)
    if len(fields) <= count:
        return f"not a cron line, skipped: {_comment(line)}"
    schedule = " ".join(fields[:count])
    rest = fields[count]
    user = ""
    if system:
        columns = rest.split(None, 1)
        if len(columns) < 2:
            return f"no user and command, skipped: {_comment(line)}"
        user, rest = columns
    command, stdin = _split_percent(rest)
    if schedule.lower() != "@reboot":
        try:
            cron_to_calendar(schedule)
        except ScheduleError as e:
            return f"{e}; skipped"
    return _CronEntry(schedule, user, command, stdin)


def _job_table(name: str, origin: str, entry: _CronEntry, environment: dict[str, str]) -> list[str]:
    """The ``[jobs.NAME]`` table of one cron line (``origin`` says which, as a comment)."""
    table = [
        f"[jobs.{name}]",
        f"# {origin}",
        f"command = {_toml_string(entry.command)}",
        f"schedule = {_toml_string(entry.schedule)}",
    ]
    if entry.user and entry.user != "root":
        table.append(f"user = {_toml_string(entry.user)}")
    if environment:
        pairs = ", ".join(f"{k} = {_toml_string(v)}" for k, v in environment.items())
        table.append(f"environment = {{ {pairs} }}")
    table += _sandbox_keys(name, entry.command)
    if entry.stdin is not None:
        table.append(f"# cron fed {json.dumps(entry.stdin)} to its standard input ('%' in the "
                     "line): give it to the command another way")  # fmt: skip
    return [*table, ""]


def _sandbox_keys(name: str, command: str) -> list[str]:
    """``read_write_paths`` (or ``hardening = false``) when the job's sandbox would break
    what the command needs, each with a comment saying why."""
    found = check(name, needs_of(("/bin/sh", "-c", command)), default_settings())
    if not found:
        return []
    key = "hardening" if any(b.read_write_path is None for b in found) else "read_write_paths"
    why = [f"# {key}: {_comment(f'{b.setting} {b.effect}, and {b.need}')}" for b in found]
    if key == "hardening":
        return [*why, "hardening = false"]
    paths = list(dict.fromkeys(str(b.read_write_path) for b in found))
    return [*why, f"read_write_paths = [{', '.join(map(_toml_string, paths))}]"]


def _split_percent(command: str) -> tuple[str, str | None]:
    """cron's ``%``: the first unescaped one ends the command, the rest is stdin."""
    out = []
    i = 0
    while i < len(command):
        char = command[i]
        if char == "\\" and i + 1 < len(command) and command[i + 1] == "%":
            out.append("%")
            i += 2
            continue
        if char == "%":
            return "".join(out), command[i + 1 :].replace("%", "\n")
        out.append(char)
        i += 1
    return "".join(out), None


def _name(command: str, taken: dict[str, int]) -> str:
    # The program the line is about: past `cd DIR &&`, `test -x PROG ||`, options, variables.
    words = [w for w in re.split(r"[\s;&|(){}]+", command) if w and "=" not in w]
    programs = [w for w in words if w not in _NOT_THE_PROGRAM and not w.startswith(("-", "$"))]
    if words and words[0] == "cd" and len(programs) > 1:
        programs = programs[1:]
    program = programs[0].rsplit("/", 1)[-1] if programs else "job"
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", program).strip("-") or "job"
    taken[base] = taken.get(base, 0) + 1
    return base if taken[base] == 1 else f"{base}-{taken[base]}"


def _toml_string(value: str) -> str:
    """``value`` as a TOML basic string: JSON's escapes, but no surrogate pairs (TOML
    refuses ``\\ud83d``: characters past U+FFFF are written as they are) and no raw DEL."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _comment(text: str) -> str:
    return "".join(c if c.isprintable() else " " if c == "\t" else "?" for c in text)
