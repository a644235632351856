"""A crontab turned into a jobs file (pure: text in, text out).

Schedules are converted by schedule.py (the jobs file keeps the cron line as written; the
timer gets the equivalent OnCalendar= lines); ``VAR=value`` lines become each later job's
``environment``; a ``%`` in a command (cron's "the rest is stdin") is noted, as is
``MAILTO`` (systemd mails nobody: observer's alerts take its place).
"""

from __future__ import annotations

import json
import re

from observer.jobs.schedule import ScheduleError, cron_to_calendar

_NOT_THE_PROGRAM = {
    "cd", "test", "[", "]", "if", "then", "fi", "exec", "env", "nice", "ionice", "sudo",
    "/usr/bin/env", "sh", "/bin/sh", "bash", "/bin/bash",
}  # fmt: skip
_ENV = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")


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
            key, value = env[1], _unquote(env[2])
            if key == "MAILTO":
                notes.append(f"line {number}: MAILTO={value}: systemd sends no mail; use "
                             "observer's alerts (docs/alerts.md) for failed runs")  # fmt: skip
            elif key not in ("SHELL", "PATH"):  # systemd jobs run /bin/sh with its own PATH
                environment[key] = value
            else:
                notes.append(f"line {number}: {key}={value} not carried over (systemd sets it)")
            continue
        fields = line.split(None, 1 if line.startswith("@") else 5)
        count = 1 if line.startswith("@") else 5
        if len(fields) <= count:
            notes.append(f"line {number}: not a cron line, skipped: {_comment(line)}")
            continue
        schedule = " ".join(fields[:count])
        rest = fields[count]
        user = ""
        if system:
            columns = rest.split(None, 1)
            if len(columns) < 2:
                notes.append(f"line {number}: no user and command, skipped: {_comment(line)}")
                continue
            user, rest = columns
        command, stdin = _split_percent(rest)
        if schedule.lower() != "@reboot":
            try:
                cron_to_calendar(schedule)
            except ScheduleError as e:
                notes.append(f"line {number}: {e}; skipped")
                continue
        name = _name(command, names)
        out.append(f"[jobs.{name}]")
        out.append(f"# line {number}: {_comment(line)}")
        out.append(f"command = {json.dumps(command)}")
        out.append(f"schedule = {json.dumps(schedule)}")
        if user and user != "root":
            out.append(f"user = {json.dumps(user)}")
        if environment:
            pairs = ", ".join(f"{k} = {json.dumps(v)}" for k, v in environment.items())
            out.append(f"environment = {{ {pairs} }}")
        if stdin is not None:
            out.append(f"# cron fed {json.dumps(stdin)} to its standard input ('%' in the line): "
                       "give it to the command another way")  # fmt: skip
        out.append("")
    if notes:
        out += ["# Notes:", *(f"# {_comment(n)}" for n in notes), ""]
    return "\n".join(out)


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


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _comment(text: str) -> str:
    return "".join(c if c.isprintable() else " " if c == "\t" else "?" for c in text)
