"""`observer alerts --user NAME`: the alerts and silences of one user's units."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from observer import config, config_file, users
from observer.__main__ import main
from observer.store import database
from tests.unit.test_user_jobs import users_daemon


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "observer.db"
    conn = database.open_for_writing(path)
    now = time.time_ns() // 1000
    with conn:
        for unit in ("backup.service", "alice/backup.service", "alice.b/backup.service"):
            conn.execute(
                "INSERT INTO alerts (created_usec, unit, kind, summary) VALUES (?, ?, ?, ?)",
                (now, unit, "failed", f"{unit} failed"),
            )
    conn.close()
    return path


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(list(argv)) == 0
    listed: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return listed


def test_alerts_of_one_user_are_listed_without_the_systems_or_another_users(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    every = _json(capsys, "alerts", "--db", str(db), "--json")
    assert len(every) == 3
    alices = _json(capsys, "alerts", "--db", str(db), "--json", "--user", "alice")
    assert [a["unit"] for a in alices] == ["alice/backup.service"]
    dotted = _json(capsys, "alerts", "--user", "alice.b", "--db", str(db), "--json")
    assert [a["unit"] for a in dotted] == ["alice.b/backup.service"]
    assert _json(capsys, "alerts", "--db", str(db), "--json", "--user", "bob") == []


def test_a_silence_with_user_holds_that_users_unit_only(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["alerts", "--user", "alice", "silence", "backup*", "--for", "1h",
                 "--db", str(db)]) == 0  # fmt: skip
    assert main(["alerts", "silence", "other.service", "--for", "1h", "--db", str(db),
                 "--user", "bob"]) == 0  # fmt: skip
    alices = _json(capsys, "alerts", "silences", "--db", str(db), "--json", "--user", "alice")
    assert [s["pattern"] for s in alices] == ["alice/backup*"]
    every = _json(capsys, "alerts", "silences", "--db", str(db), "--json")
    assert [s["pattern"] for s in every] == ["alice/backup*", "bob/other.service"]


def test_a_silence_by_a_user_who_is_not_root_is_of_their_own_units() -> None:
    me = users.current_user()
    assert users.silence_pattern("backup.service", None, euid=1000) == f"{me}/backup.service"
    assert users.silence_pattern("backup.service", None, euid=0) == "backup.service"
    assert users.silence_pattern("backup.service", "alice", euid=0) == "alice/backup.service"
    assert users.silence_pattern("bob/*", None, euid=1000) == "bob/*"


def test_report_refuses_user_rather_than_writing_every_users_pages(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pages"
    assert main(["report", "--db", str(db), "--user", "alice", "-o", str(out)]) == 1
    assert "--user is not supported" in capsys.readouterr().err
    assert not out.exists()


def test_a_users_own_config_names_their_units_as_systemctl_user_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = users_daemon(tmp_path, monkeypatch, "observer.toml", (
        '[observe]\nexclude = ["dbus.service"]\n'
        '[alerts.units."u-bad.service"]\nfailures = 1\n'
        '[alerts.units."other/u-bad.service"]\nfailures = 5\n'
    ))  # fmt: skip
    me = users.current_user()
    assert setup.config.alerts.rules_for(f"{me}/u-bad.service").failures == 1
    assert setup.config.alerts.rules_for("other/u-bad.service").failures == 5
    assert not setup.config.observe.observes(f"{me}/dbus.service")
    assert setup.config.observe.observes(f"{me}/backup.service")


def test_a_user_who_is_not_root_reads_their_own_config_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert config_file.default_config_path() == config_file.DEFAULT_CONFIG_PATH  # they have none
    (tmp_path / "observer").mkdir()
    (tmp_path / "observer/observer.toml").write_text('host = "alices"\n')
    assert config_file.default_config_path() == tmp_path / "observer/observer.toml"
    assert config.load_config(None).host == "alices"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert config_file.default_config_path() == config_file.DEFAULT_CONFIG_PATH
