"""Fixtures of the unit tests (a test module may define its own of the same name)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import time_machine

from observer.store import database
from tests.unit.recorded_runs import NOW, write_store


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database holding the recorded runs of tests/unit/recorded_runs.py."""
    return write_store(tmp_path / "observer.db")


@pytest.fixture
def conn(db: Path) -> Iterator[sqlite3.Connection]:
    """That database, opened as the CLI opens it."""
    connection = database.open_for_reading(db)
    yield connection
    connection.close()


@pytest.fixture
def utc() -> Iterator[None]:
    """Local time is UTC for the test (tables and messages show local times)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.fixture
def fixed_now() -> Iterator[None]:
    """The clock stands still at recorded_runs.NOW, the time the recorded runs are told from."""
    with time_machine.travel(NOW, tick=False):
        yield
