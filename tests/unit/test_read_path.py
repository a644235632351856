"""Which database the reading commands open, and what a user who may not read it is told."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

import pytest

from observer.model import StoreError
from observer.store import database


@pytest.fixture
def user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A non-root user whose own database would be under tmp_path/data; returns the
    installed service's database path (also under tmp_path)."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("OBSERVER_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    system = tmp_path / "var-lib-observer" / "observer.db"
    monkeypatch.setattr(database, "SYSTEM_DB_PATH", system)
    return system


def test_a_user_without_a_database_of_their_own_reads_the_installed_services(
    user: Path,
) -> None:
    user.parent.mkdir()
    database.open_for_writing(user).close()
    assert database.default_read_path() == user


def test_a_user_with_a_database_of_their_own_reads_that_one(user: Path, tmp_path: Path) -> None:
    user.parent.mkdir()
    database.open_for_writing(user).close()
    own = tmp_path / "data" / "observer" / "observer.db"
    database.open_for_writing(own).close()
    assert database.default_read_path() == own


def test_observer_db_wins_and_without_any_database_the_users_own_path_is_named(
    user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert database.default_read_path() == tmp_path / "data" / "observer" / "observer.db"
    user.parent.mkdir()
    database.open_for_writing(user).close()
    monkeypatch.setenv("OBSERVER_DB", str(tmp_path / "elsewhere.db"))
    assert database.default_read_path() == tmp_path / "elsewhere.db"


def test_a_user_who_may_not_read_the_database_is_told_which_group_may(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "observer.db"
    database.open_for_writing(db).close()  # 0640: its group may read it
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(StoreError) as raised:
        database.open_for_reading(db)
    group = grp.getgrgid(db.stat().st_gid).gr_name
    user = pwd.getpwuid(os.getuid()).pw_name
    assert str(raised.value) == (
        f"cannot read the database {str(db)!r}: permission denied (members of group "
        f"{group!r} may read it: ask root to run `usermod -a -G {group} {user}`, "
        "then log in again)"
    )
