"""What defined a run (unit file, drop-ins, command, scripts): hashes, changes and diffs.

Pure: the files are read by observer/recording/definition_files.py, the store keeps each
definition once per digest and each text once per digest (observer/store/definitions.py).
"""

from __future__ import annotations

import json
import os.path
from collections.abc import Mapping, Sequence

from observer.records import NamedTuple

# A script's text is kept up to this size (its digest always covers all of it).
TEXT_LIMIT = 256 * 1024
# Interpreters whose first argument that is not an option names the script they run.
_INTERPRETERS = ("sh", "bash", "dash", "zsh", "ksh", "python", "perl", "ruby", "node", "php")


class DefinitionFile(NamedTuple):
    """A file that defined a run: its path and content digest (None: it could not be read)."""

    path: str
    digest: str | None


class DefinitionSources(NamedTuple):
    """What systemd says defined a unit: FragmentPath, DropInPaths and ExecStart's argvs."""

    fragment_path: str | None
    dropin_paths: tuple[str, ...]
    commands: tuple[tuple[str, ...], ...]


class Definition(NamedTuple):
    """Everything that defined a run, by content digest."""

    unit_file: DefinitionFile | None
    dropins: tuple[DefinitionFile, ...]
    command: str | None
    scripts: tuple[DefinitionFile, ...]

    @property
    def digest(self) -> str:
        """One digest for the whole definition: equal definitions have equal digests."""
        return content_digest(json.dumps(definition_json(self), sort_keys=True).encode())


def content_digest(data: bytes) -> str:
    """The digest a file's content is known by."""
    import hashlib  # noqa: PLC0415 (OpenSSL's, 1.5 ms to load: the daemon's, not `show`'s)

    return hashlib.sha256(data).hexdigest()


def command_text(commands: Sequence[Sequence[str]]) -> str | None:
    """ExecStart as one text, a command line each (None for a unit that has none)."""
    import shlex  # noqa: PLC0415 (only for a definition read from a unit)

    return "\n".join(shlex.join(argv) for argv in commands if argv) or None


def script_candidates(commands: Sequence[Sequence[str]]) -> list[tuple[str, bool]]:
    """The absolute paths a command may run as a script, each with whether it surely is one
    (the argument an interpreter runs) or is one only if it starts with ``#!``."""
    found: dict[str, bool] = {}
    for argv in commands:
        if not argv:
            continue
        if os.path.isabs(argv[0]):
            found.setdefault(argv[0], False)
        if _interpreter(argv[0]):
            script = next((a for a in argv[1:] if not a.startswith("-")), None)
            if script is not None and os.path.isabs(script):
                found[script] = True
    return list(found.items())


def _interpreter(program: str) -> bool:
    name = os.path.basename(program).rstrip("0123456789.")
    return name in _INTERPRETERS


def definition_json(definition: Definition) -> dict[str, object]:
    """A definition as stored and printed (``--json``)."""
    return {
        "unit_file": None if definition.unit_file is None else _file_json(definition.unit_file),
        "dropins": [_file_json(f) for f in definition.dropins],
        "command": definition.command,
        "scripts": [_file_json(f) for f in definition.scripts],
    }


def _file_json(file: DefinitionFile) -> dict[str, str | None]:
    return {"path": file.path, "digest": file.digest}


def definition_from_json(value: Mapping[str, object]) -> Definition:
    """The definition ``definition_json`` made."""
    unit_file = value.get("unit_file")
    return Definition(
        unit_file=_file_from(unit_file) if isinstance(unit_file, dict) else None,
        dropins=tuple(_file_from(f) for f in _list(value.get("dropins"))),
        command=str(value["command"]) if value.get("command") is not None else None,
        scripts=tuple(_file_from(f) for f in _list(value.get("scripts"))),
    )


def _list(value: object) -> list[dict[str, object]]:
    return [f for f in value if isinstance(f, dict)] if isinstance(value, list) else []


def _file_from(value: Mapping[str, object]) -> DefinitionFile:
    digest = value.get("digest")
    return DefinitionFile(str(value.get("path")), None if digest is None else str(digest))


def changes(before: Definition, after: Definition) -> list[str]:
    """What changed from one definition to the next, as people read it."""
    found = []
    if before.unit_file != after.unit_file:
        found.append(_unit_file_change(before.unit_file, after.unit_file))
    found += _file_changes("drop-in", before.dropins, after.dropins)
    if before.command != after.command:
        found.append("command changed")
    found += _file_changes("script", before.scripts, after.scripts)
    return found


def _unit_file_change(before: DefinitionFile | None, after: DefinitionFile | None) -> str:
    if after is None:
        return "unit file removed"
    if before is None:
        return f"unit file added: {after.path}"
    return "unit file edited" if before.path == after.path else f"unit file moved: {after.path}"


def _file_changes(
    kind: str, before: Sequence[DefinitionFile], after: Sequence[DefinitionFile]
) -> list[str]:
    old = {f.path: f.digest for f in before}
    new = {f.path: f.digest for f in after}
    found = [f"{kind} added: {path}" for path in new if path not in old]
    found += [f"{kind} removed: {path}" for path in old if path not in new]
    edited = [path for path in new if path in old and old[path] != new[path]]
    found += [f"{kind} changed: {path}" if kind == "script" else f"{kind} edited: {path}"
              for path in edited]  # fmt: skip
    return found


def text_diff(before: str | None, after: str | None, before_name: str, after_name: str) -> str:
    """A unified diff of two texts (None: not there, or not kept)."""
    import difflib  # noqa: PLC0415 (diff and the pages only)

    lines = difflib.unified_diff(
        (before or "").splitlines(keepends=True),
        (after or "").splitlines(keepends=True),
        fromfile=before_name,
        tofile=after_name,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def decoded(text: bytes | None) -> str | None:
    """A stored text as people read it (bytes that are not UTF-8 escaped)."""
    return None if text is None else text.decode("utf-8", errors="backslashreplace")
