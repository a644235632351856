"""What a job's own sandbox hides from it or makes read-only (pure: no I/O).

A job's unit carries the sandbox of units.py (``PrivateTmp=yes``, ``ProtectSystem=full``,
...). A program under ``/var/tmp`` then does not exist for the job (every run fails
203/EXEC), and ``certbot renew`` cannot write ``/etc/letsencrypt``. What a command must
write cannot be known in general; what can be known is checked here:

- the program (argv[0], each command of a ``/bin/sh -c`` script, the program a wrapper such
  as ``nice`` or ``sudo`` runs, the script an interpreter such as ``bash`` or ``python3``
  runs) and the working directory (``working_directory``, each ``cd DIR``) must be visible;
- the paths it writes must be writable: the targets of ``>``, ``>>``, ``&>``, ``>|``, the
  files given to ``tee``, the value of ``--output``, ``--output-file``, ``--log-file``, and
  what a few well-known programs write (``KNOWN_WRITES``).

Only absolute paths written out in the command are checked (not ``$VAR/x``, not relative).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from observer.jobs.jobfile import Job
from observer.jobs.units import HARDENING, USER_HARDENING

# (setting, value) -> the trees it hides (each replaced by an empty one of the job's own).
HIDDEN: dict[tuple[str, str], tuple[str, ...]] = {
    ("PrivateTmp", "yes"): ("/tmp", "/var/tmp"),
    ("ProtectHome", "yes"): ("/home", "/root", "/run/user"),
    ("ProtectHome", "tmpfs"): ("/home", "/root", "/run/user"),
}
# (setting, value) -> the trees it makes read-only.
READ_ONLY: dict[tuple[str, str], tuple[str, ...]] = {
    ("ProtectSystem", "yes"): ("/usr", "/boot", "/efi"),
    ("ProtectSystem", "full"): ("/usr", "/boot", "/efi", "/etc"),
    ("ProtectSystem", "strict"): ("/",),
    ("ProtectHome", "read-only"): ("/home", "/root", "/run/user"),
    ("ProtectKernelTunables", "yes"): ("/proc/sys", "/sys"),
    ("ProtectControlGroups", "yes"): ("/sys/fs/cgroup",),
}
# Settings whose read-only trees ReadWritePaths= can open again, path by path.
_OPENED_BY_READ_WRITE_PATHS = {"ProtectSystem", "ProtectHome"}
# What well-known programs write whatever their arguments (their state, config and logs).
KNOWN_WRITES: dict[str, tuple[str, ...]] = {
    "certbot": ("/etc/letsencrypt", "/var/lib/letsencrypt", "/var/log/letsencrypt"),
    "dehydrated": ("/etc/dehydrated",),
    "update-ca-certificates": ("/etc/ssl/certs",),
    "etckeeper": ("/etc",),
    "ldconfig": ("/etc/ld.so.cache",),
    "apt": ("/usr", "/etc", "/var/lib/dpkg"),
    "apt-get": ("/usr", "/etc", "/var/lib/dpkg"),
    "aptitude": ("/usr", "/etc", "/var/lib/dpkg"),
    "dpkg": ("/usr", "/etc", "/var/lib/dpkg"),
    "unattended-upgrade": ("/usr", "/etc", "/var/lib/dpkg"),
    "unattended-upgrades": ("/usr", "/etc", "/var/lib/dpkg"),
    "dnf": ("/usr", "/etc", "/var/lib/dnf"),
    "yum": ("/usr", "/etc", "/var/lib/yum"),
}
# Words that run the program named after them (after their own options).
_WRAPPERS = {"sudo", "nice", "ionice", "env", "exec", "nohup", "timeout", "chronic", "time",
             "command", "flock", "setsid", "systemd-cat", "runuser", "chrt", "taskset"}  # fmt: skip
# Their options that take a value (``sudo -u bob``, ``nice -n 10``, ``ionice -c 3``).
_WRAPPER_OPTIONS = {"-u", "-g", "-n", "-c", "-p", "-t", "-w", "--user", "--group"}
# Programs that run the script named after them.
_INTERPRETERS = {"sh", "bash", "dash", "zsh", "ksh", "python", "python3", "perl", "ruby",
                 "php", "node"}  # fmt: skip
_OUTPUT_OPTIONS = ("--output", "--output-file", "--log-file")
_OPERATORS = {";", "&&", "||", "|", "&", "(", ")", "|&", ";;"}
_REDIRECTS = {">", ">>", "&>", "&>>", ">|"}
_WRAPPER_ARGUMENT = re.compile(r"[-+]?[\d.]+[smhd]?|[A-Za-z_][A-Za-z0-9_]*=.*")
_COMMENT = re.compile(r"(^|\s)#[^\n]*")


@dataclass(frozen=True, slots=True)
class Needs:
    """The paths a job's command and settings show it needs: to run, to enter, to write."""

    programs: tuple[str, ...] = ()
    directories: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Breakage:
    """One thing the sandbox hides or makes read-only that the job needs, and its fix."""

    job: str
    setting: str  # "ProtectSystem=full"
    effect: str  # "makes /etc read-only"
    need: str  # "its command writes /etc/letsencrypt"
    fix: str  # "add `read_write_paths = [...]` or `hardening = false`"
    read_write_path: str | None = None  # the path read_write_paths would open, if that helps

    def __str__(self) -> str:
        return f"job {self.job!r}: {self.setting} {self.effect}, and {self.need}: {self.fix}"


def sandbox_settings(job: Job, *, user_manager: bool = False) -> dict[str, str]:
    """The sandbox settings the job's service will carry, as ``{setting: value}``."""
    return default_settings(user_manager=user_manager) if job.hardening else {}


def default_settings(*, user_manager: bool = False) -> dict[str, str]:
    """The sandbox settings of a job with ``hardening = true`` (units.py's)."""
    lines = USER_HARDENING if user_manager else HARDENING
    return dict(line.split("=", 1) for line in lines)


def breakages(job: Job, *, user_manager: bool = False) -> list[Breakage]:
    """What the job's own sandbox breaks of what it needs (empty: nothing known)."""
    needs = needs_of(job.command, job.working_directory)
    settings = sandbox_settings(job, user_manager=user_manager)
    return check(job.name, needs, settings, job.read_write_paths)


def check(
    name: str, needs: Needs, settings: Mapping[str, str], read_write_paths: tuple[str, ...] = ()
) -> list[Breakage]:
    """What ``settings`` hide or make read-only of ``needs``, with ReadWritePaths= given."""
    found: list[Breakage] = []
    for setting, value in settings.items():
        shown = f"{setting}={value}"
        for tree in HIDDEN.get((setting, value), ()):
            found += _hidden(name, shown, tree, needs)
        for tree in READ_ONLY.get((setting, value), ()):
            opens = setting in _OPENED_BY_READ_WRITE_PATHS
            for path in needs.writes:
                if _below(path, tree) and not (opens and _opened(path, read_write_paths)):
                    found.append(_read_only(name, shown, tree, path, read_write_paths, opens))
    return found


def _hidden(name: str, setting: str, tree: str, needs: Needs) -> list[Breakage]:
    """The program or working directory of the job inside a tree the sandbox replaces."""
    effect = f"gives the job an empty {tree} of its own"
    found = []
    for program in needs.programs:
        if _below(program, tree) and program != tree:
            need = f"its program {program} is there"
            fix = (f"move the program out of {tree} (e.g. to /usr/local/bin) or set "
                   "`hardening = false`")  # fmt: skip
            found.append(Breakage(name, setting, effect, need, fix))
    for directory in needs.directories:
        if _below(directory, tree) and directory != tree:
            need = f"its working directory {directory} is there"
            fix = f"use a directory outside {tree} (e.g. under /var/lib) or set `hardening = false`"
            found.append(Breakage(name, setting, effect, need, fix))
    return found


def _read_only(
    name: str, setting: str, tree: str, path: str, read_write_paths: tuple[str, ...], opens: bool
) -> Breakage:
    """A path the job writes inside a tree the sandbox makes read-only."""
    effect = f"makes {tree} read-only"
    need = f"its command writes {path}"
    # Opening a whole tree (/usr, /etc) again is no sandbox: turn it off instead.
    if not opens or path == tree:
        return Breakage(name, setting, effect, need, "set `hardening = false`")
    listed = json.dumps([*read_write_paths, path])
    fix = f"add `read_write_paths = {listed}` or `hardening = false`"
    return Breakage(name, setting, effect, need, fix, read_write_path=path)


def needs_of(argv: tuple[str, ...], working_directory: str = "") -> Needs:
    """The programs, directories and written paths ``argv`` (and its directory) show."""
    if len(argv) == 3 and argv[:2] == ("/bin/sh", "-c"):
        commands, writes = _script_commands(argv[2])
    else:
        commands, writes = [list(argv)], []
    programs: list[str] = []
    directories = [working_directory] if working_directory else []
    for words in commands:
        _read_command(words, programs, directories, writes)
    return Needs(*(_absolute(paths) for paths in (programs, directories, writes)))


def _script_commands(script: str) -> tuple[list[list[str]], list[str]]:
    """A shell script's simple commands (each a list of words) and its redirect targets."""
    text = _COMMENT.sub(r"\1", script).replace("\n", " ; ")
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        tokens = list(lexer)
    except ValueError:  # an unclosed quote: /bin/sh refuses the script, so it needs nothing
        tokens = []
    commands: list[list[str]] = [[]]
    writes: list[str] = []
    redirected = False
    for token in tokens:
        if redirected:
            writes.append(token)
            redirected = False
        elif token in _REDIRECTS:
            redirected = True
        elif token in _OPERATORS:
            commands.append([])
        elif not set(token) <= set("<>&|"):  # other redirects (<, >&2) name no written file
            commands[-1].append(token)
    return [c for c in commands if c], writes


def _read_command(
    words: list[str], programs: list[str], directories: list[str], writes: list[str]
) -> None:
    """The needs of one simple command, added to the lists."""
    position = 0
    while position < len(words) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[position]):
        position += 1  # VAR=value before the program
    while position < len(words):
        program = words[position]
        base = PurePosixPath(program).name
        programs.append(program)
        writes.extend(KNOWN_WRITES.get(base, ()))
        arguments = words[position + 1 :]
        if base == "cd" and arguments:
            directories.append(arguments[0])
        elif base == "tee":
            writes.extend(a for a in arguments if not a.startswith("-"))
        writes.extend(_output_options(arguments))
        if base not in _WRAPPERS and base not in _INTERPRETERS:
            return
        position = _next_program(words, position + 1, base in _WRAPPERS)


def _next_program(words: list[str], position: int, wrapper: bool) -> int:
    """Where the program (or script) a wrapper or interpreter runs is named."""
    while position < len(words) and (
        words[position].startswith("-")
        or (wrapper and _WRAPPER_ARGUMENT.fullmatch(words[position]) is not None)
    ):
        position += 2 if wrapper and words[position] in _WRAPPER_OPTIONS else 1
    return position


def _output_options(arguments: list[str]) -> list[str]:
    """The paths given to ``--output PATH`` / ``--output=PATH`` and the like."""
    found = []
    for position, word in enumerate(arguments):
        option, equals, value = word.partition("=")
        if option in _OUTPUT_OPTIONS:
            if equals:
                found.append(value)
            elif position + 1 < len(arguments):
                found.append(arguments[position + 1])
    return found


def _absolute(paths: list[str]) -> tuple[str, ...]:
    """The absolute paths among ``paths``, normalised (``/etc//x/`` is ``/etc/x``), once."""
    normal = (str(PurePosixPath(p)) for p in paths if p.startswith("/") and "$" not in p)
    return tuple(dict.fromkeys(p for p in normal if "/../" not in f"{p}/"))


def _below(path: str, tree: str) -> bool:
    """Whether ``path`` is ``tree`` or inside it."""
    return tree in ("/", path) or path.startswith(tree.rstrip("/") + "/")


def _opened(path: str, read_write_paths: tuple[str, ...]) -> bool:
    return any(_below(path, str(PurePosixPath(opened))) for opened in read_write_paths)
