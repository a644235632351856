"""Reading the files that define a unit, only when one of them changed since the last run."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from observer.recording.definitions import (
    TEXT_LIMIT,
    Definition,
    DefinitionFile,
    DefinitionSources,
    command_text,
    script_candidates,
)

# A file as stat sees it: (mtime, size, inode), or None when it cannot be stat'ed.
Stamp = tuple[int, int, int] | None


@dataclass(slots=True)
class DefinitionRead:
    """A definition and the texts read to make it (empty when nothing changed)."""

    definition: Definition
    texts: dict[str, bytes] = field(default_factory=dict)


class DefinitionReader:
    """Makes the definition of each run from the files systemd names; keeps, per unit, the
    files' stamps and the definition they made, and reads files again only when a stamp
    changed. ``root``: where the files are (a sandbox's or a test's tree)."""

    def __init__(self, root: Path = Path("/"), text_limit: int = TEXT_LIMIT) -> None:
        self.root = root
        self.text_limit = text_limit
        self._known: dict[str, tuple[object, Definition]] = {}
        self.files_read = 0

    def read(self, unit: str, sources: DefinitionSources) -> DefinitionRead:
        """The definition ``sources`` stand for, with the texts read anew."""
        candidates = script_candidates(sources.commands)
        paths = [*filter(None, [sources.fragment_path]), *sources.dropin_paths]
        paths += [path for path, _ in candidates]
        key = (sources, tuple(self._stamp(path) for path in paths))
        known = self._known.get(unit)
        if known is not None and known[0] == key:
            return DefinitionRead(known[1])
        texts: dict[str, bytes] = {}
        read = self._reader(texts)
        definition = Definition(
            unit_file=None if sources.fragment_path is None else read(sources.fragment_path),
            dropins=tuple(read(path) for path in sources.dropin_paths),
            command=command_text(sources.commands),
            scripts=tuple(
                read(path) for path, sure in candidates if sure or self._starts_with_shebang(path)
            ),
        )
        self._known[unit] = (key, definition)
        return DefinitionRead(definition, texts)

    def _path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def _stamp(self, path: str) -> Stamp:
        try:
            info = os.stat(self._path(path))
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def _reader(self, texts: dict[str, bytes]) -> _FileReader:
        return _FileReader(self, texts)

    def _starts_with_shebang(self, path: str) -> bool:
        try:
            with open(self._path(path), "rb") as file:
                self.files_read += 1
                return os.path.isfile(self._path(path)) and file.read(2) == b"#!"
        except OSError:
            return False

    def digest_and_text(self, path: str) -> tuple[str | None, bytes | None]:
        """A regular file's digest and (up to the limit) text; (None, None): unreadable."""
        digest = hashlib.sha256()
        kept = bytearray()
        try:
            with open(self._path(path), "rb") as file:
                self.files_read += 1
                if not os.path.isfile(self._path(path)):
                    return None, None
                while chunk := file.read(65536):
                    digest.update(chunk)
                    if len(kept) <= self.text_limit:
                        kept += chunk
        except OSError:
            return None, None
        return digest.hexdigest(), bytes(kept) if len(kept) <= self.text_limit else None


class _FileReader:
    """Reads a file into a DefinitionFile, keeping its text in ``texts``."""

    def __init__(self, reader: DefinitionReader, texts: dict[str, bytes]) -> None:
        self.reader = reader
        self.texts = texts

    def __call__(self, path: str) -> DefinitionFile:
        digest, text = self.reader.digest_and_text(path)
        if digest is not None and text is not None:
            self.texts[digest] = text
        return DefinitionFile(path, digest)
