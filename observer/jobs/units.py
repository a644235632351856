"""A job's two unit files, with every value checked or quoted (pure: no I/O).

systemd reads a value in several passes, and each is closed off here:

- specifiers (``%n``, ``%h``) are expanded in ExecStart=, Environment=, Description=,
  paths and OnCalendar=: every ``%`` is written ``%%``;
- ExecStart= words are unquoted with C escapes: each is written in double quotes, with
  ``\\``, ``"`` and control characters (a newline too) escaped, so no word can end the
  line, start another directive or become a ``;`` between commands;
- ``$NAME`` and ``${NAME}`` in ExecStart= arguments are expanded when the job starts:
  every ``$`` is written ``$$`` (the program itself, argv[0], may hold no ``$``);
- Environment= takes quoted ``"KEY=value"`` words with C escapes, and no ``$``.

Values that cannot be quoted (a newline in a description, a path or a user name) are
refused by jobfile.py before they get here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import PurePosixPath

from observer.jobs.jobfile import Job

MARKER = "# observer-job: "  # the first line of every unit file `observer jobs apply` owns
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}

# Defaults a careful admin would choose: the job cannot change the OS, the kernel or the
# clock, gains no privileges, gets its own /tmp; it still reads every file it may read
# (a backup reads what it backs up) and writes below /var, /srv, /home and /root.
HARDENING = (
    "ProtectSystem=full",
    "PrivateTmp=yes",
    "NoNewPrivileges=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
)
# A user's manager applies the namespace settings above only in a user namespace of the
# job's own (systemd 252 ignores them silently without it; see manager.py).
USER_HARDENING = (*HARDENING, "PrivateUsers=yes")


@dataclass(frozen=True, slots=True)
class JobUnits:
    """The text of a job's service and timer."""

    service: str
    timer: str


def quoted(value: str, *, dollar: bool) -> str:
    """``value`` as one double-quoted word systemd unquotes back to exactly ``value``."""
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 32 or ord(char) == 127:
            out.append(f"\\x{ord(char):02x}")
        elif char == "%":
            out.append("%%")
        elif char == "$" and dollar:
            out.append("$$")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def exec_line(argv: tuple[str, ...]) -> str:
    """ExecStart='s value: the program, then each argument, all quoted."""
    if not argv or not argv[0] or "$" in argv[0] or argv[0][0] in "-@:+!":
        raise ValueError(f"{argv[:1]!r}: the program must be a path or a name without $")
    return " ".join([quoted(argv[0], dollar=False), *(quoted(a, dollar=True) for a in argv[1:])])


def literal(value: str) -> str:
    """A value systemd takes whole (Description=, paths): only ``%`` needs escaping."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{value!r}: holds a control character")
    return value.replace("%", "%%")


def seconds(value: float) -> str:
    """A duration as systemd reads it, to the millisecond."""
    return f"{math.ceil(value * 1000)}ms"


def render(
    job: Job, source: str, metrics_settings: str = "", *, user_manager: bool = False
) -> JobUnits:
    """The service and timer of ``job``; ``metrics_settings`` as `metrics-file enable`'s;
    ``user_manager``: for a user's own manager (``systemctl --user``)."""
    header = (
        f"{MARKER}{job.name}\n"
        f"# Written by `observer jobs apply` from {literal(source)!s}: edit that file and\n"
        "# run `observer jobs apply` again; changes made here are overwritten.\n"
    )
    unit = _unit_section(job)
    service = [
        "[Service]",
        "Type=oneshot",
        f"ExecStart={exec_line(job.command)}",
        *_execution(job),
        *_limits(job, user_manager=user_manager),
    ]
    service_text = header + "\n".join([*unit, "", *service]) + "\n" + metrics_settings
    return JobUnits(service=service_text, timer=header + _timer(job))


def _unit_section(job: Job) -> list[str]:
    """The service's [Unit]: its description, what it runs after, its start limit."""
    description = literal(job.description or f"Job {job.name}")
    unit = ["[Unit]", f"Description={description}"]
    if job.after or job.requires:
        unit.append(f"After={' '.join(dict.fromkeys((*job.after, *job.requires)))}")
    if job.requires:
        unit.append(f"Requires={' '.join(job.requires)}")
    if job.retries:
        window = (job.retries + 1) * (job.timeout + job.retry_delay)
        unit += [f"StartLimitIntervalSec={seconds(window)}", f"StartLimitBurst={job.retries + 1}"]
    return unit


def _execution(job: Job) -> list[str]:
    """Whom the command runs as, where, and with which variables and credentials."""
    lines = []
    if job.user:
        lines.append(f"User={job.user}")
    if job.group:
        lines.append(f"Group={job.group}")
    if job.working_directory:
        lines.append(f"WorkingDirectory={literal(job.working_directory)}")
    for key, value in job.environment:
        lines.append(f"Environment={quoted(f'{key}={value}', dollar=False)}")
    if job.environment_file:
        lines.append(f"EnvironmentFile={literal(job.environment_file)}")
    for credential in job.credentials:
        setting = "LoadCredentialEncrypted" if credential.encrypted else "LoadCredential"
        lines.append(f"{setting}={credential.name}:{literal(str(credential.path))}")
    return lines


def _limits(job: Job, *, user_manager: bool) -> list[str]:
    """How long a run may take, how often it is retried, what it may use, the sandbox."""
    lines = []
    if job.timeout:
        lines.append(f"TimeoutStartSec={seconds(job.timeout)}")
    if job.retries:
        lines += ["Restart=on-failure", f"RestartSec={seconds(job.retry_delay)}"]
    if job.nice is not None:
        lines.append(f"Nice={job.nice}")
    if job.memory_max:
        lines.append(f"MemoryMax={job.memory_max}")
    if job.cpu_quota:
        lines.append(f"CPUQuota={job.cpu_quota}")
    if job.hardening:
        lines.extend(USER_HARDENING if user_manager else HARDENING)
        lines += [f"ReadWritePaths={literal(path)}" for path in job.read_write_paths]
    return lines


def _timer(job: Job) -> str:
    lines = ["[Unit]", f"Description={literal(f'Timer of job {job.name}')}", "", "[Timer]"]
    zone = f" {job.timezone}" if job.timezone else ""
    for settings in job.timers:
        lines += [f"OnCalendar={literal(c)}{zone}" for c in settings.calendar]
        if settings.period_seconds is not None:
            period = seconds(settings.period_seconds)
            lines += [f"OnActiveSec={period}", f"OnUnitActiveSec={period}"]
        if settings.on_boot:
            lines.append("OnBootSec=0")
    lines.append(f"Persistent={'yes' if job.persistent else 'no'}")
    if job.random_delay:
        lines.append(f"RandomizedDelaySec={seconds(job.random_delay)}")
    lines += ["AccuracySec=1s", f"Unit={job.service}", "", "[Install]", "WantedBy=timers.target"]
    return "\n".join(lines) + "\n"


def owner(text: str) -> str | None:
    """The job that wrote a unit file, from its first line; None if not ours."""
    first = text.split("\n", 1)[0]
    return first.removeprefix(MARKER) if first.startswith(MARKER) else None


def unit_paths(directory: PurePosixPath, job: Job) -> tuple[PurePosixPath, PurePosixPath]:
    return directory / job.service, directory / job.timer
