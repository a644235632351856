"""Fixtures of the unit tests (a test module may define its own of the same name)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from observer import store
from tests.unit.recorded_runs import write_store


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database holding the recorded runs of tests/unit/recorded_runs.py."""
    return write_store(tmp_path / "observer.db")


@pytest.fixture
def conn(db: Path) -> Iterator[sqlite3.Connection]:
    """That database, opened as the CLI opens it."""
    connection = store.open_for_reading(db)
    yield connection
    connection.close()
