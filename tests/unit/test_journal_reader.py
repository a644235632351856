"""The journal follower's Reader converts a field when it is read: each entry holds the same
values as systemd's own Reader, which converts every field of every entry at once."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from observer.recording.journal import RAW_FIELDS, _identity, _lazy_reader

REMOTE = Path("/lib/systemd/systemd-journal-remote")


def exported(number: int) -> bytes:
    """One entry in the journal export format, with fields of every kind the Reader converts."""
    text = (
        f"__REALTIME_TIMESTAMP={1_700_000_000_000_000 + number}\n__MONOTONIC_TIMESTAMP={number}\n"
        "_BOOT_ID=cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd\n_MACHINE_ID=not-a-uuid\n_HOSTNAME=web1\n"
        "_PID=1\nPRIORITY=6\nEXIT_STATUS=x3\nMESSAGE_ID=7d4958e842da4a758f6c1cdc7b36dcc5\n"
        "_SOURCE_REALTIME_TIMESTAMP=1700000000000000\nUNIT=backup.service\nUNIT=twice.service\n"
    ).encode()
    odd = b"\xff\xfe not utf-8\nsecond line"
    return (
        text
        + b"MESSAGE\n"
        + struct.pack("<Q", len(odd))
        + odd
        + b"\nODD\n"
        + (struct.pack("<Q", len(odd)) + odd + b"\n\n")
    )


def test_an_entry_read_field_by_field_holds_what_the_reader_converts_at_once(
    tmp_path: Path,
) -> None:
    if not REMOTE.exists():
        pytest.skip(f"{REMOTE} is missing (Debian package systemd-journal-remote)")
    journal = pytest.importorskip("systemd.journal")
    stream = b"".join(exported(n) for n in range(3))
    subprocess.run(
        [str(REMOTE), f"--output={tmp_path / 'all.journal'}", "-"], input=stream, check=True
    )
    converters = dict.fromkeys(RAW_FIELDS, _identity)
    eager = journal.Reader(path=str(tmp_path), converters=converters)
    lazy = _lazy_reader(journal.Reader)(path=str(tmp_path), converters=converters)
    read = 0
    while entry := eager.get_next():
        fields = lazy.get_next()
        assert {key: fields[key] for key in fields} == entry
        assert fields.get("UNIT") == ["backup.service", "twice.service"]
        assert fields.get("NOT_THERE") is None
        assert "NOT_THERE" not in fields
        assert len(fields) == len(entry)
        read += 1
    assert read == 3
    assert not lazy.get_next()
