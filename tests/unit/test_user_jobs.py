"""`observer jobs --user`: a user's jobs file, run by that user's own manager."""

from __future__ import annotations

import argparse
from pathlib import Path, PurePosixPath

import pytest

from observer.__main__ import build_parser
from observer.alert_config import AlertRules
from observer.config import Config, JobsConfig
from observer.daemon.target import DaemonSetup, setup_from
from observer.jobs.alert_rules import with_job_alerts
from observer.jobs.jobfile import Job, parse
from observer.jobs.manager import check_for_user_manager, user_manager
from observer.jobs.units import HARDENING, render
from observer.model import ConfigError

ENV = {
    "XDG_CONFIG_HOME": "/home/alice/.config",
    "XDG_DATA_HOME": "/home/alice/.local/share",
    "XDG_RUNTIME_DIR": "/run/user/1001",
}


def _job(**table: object) -> Job:
    return parse(Path("jobs.toml"), {"jobs": {"backup": {"schedule": "daily", **table}}})[0]


def test_a_users_manager_takes_the_users_jobs_file_into_their_unit_directory() -> None:
    manager = user_manager(ENV)
    assert manager.jobs_file == Path("/home/alice/.config/observer/jobs.toml")
    assert manager.unit_dir == PurePosixPath("/home/alice/.config/systemd/user")
    assert manager.bus_address == "unix:path=/run/user/1001/bus"
    assert manager.db_path is None  # read where the reading commands read
    assert manager.user is not None
    assert manager.unit_key("backup.service") == f"{manager.user}/backup.service"


def test_a_users_job_gets_the_sandbox_inside_a_user_namespace_of_its_own() -> None:
    system = render(_job(command="true"), "jobs.toml").service
    users = render(_job(command="true"), "jobs.toml", user_manager=True).service
    assert all(setting in users for setting in HARDENING)
    assert "PrivateUsers=yes" in users
    assert "PrivateUsers" not in system
    bare = render(_job(command="true", hardening=False), "jobs.toml", user_manager=True)
    assert "PrivateUsers" not in bare.service


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"user": "bob"}, "jobs.backup.user: a user's own manager runs every job as that user"),
        ({"group": "adm"}, "jobs.backup.group: a user's own manager"),
        (
            {"credentials": {"token": {"encrypted": "/home/alice/token.cred"}}},
            "jobs.backup.credentials.token: a user's manager cannot decrypt credentials",
        ),
    ],
)
def test_what_a_users_manager_cannot_do_is_refused_naming_the_key(
    table: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError, match="jobs.toml:1: " + named.replace(".", r"\.")):
        check_for_user_manager([_job(command="true", **table)])


def test_plain_credentials_are_fine_for_a_users_manager() -> None:
    check_for_user_manager([_job(command="true", credentials={"token": "/home/alice/token"})])


def test_a_users_job_alert_rules_apply_to_that_users_unit(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text(
        '[jobs.backup]\ncommand = "true"\nschedule = "daily"\n[jobs.backup.alerts]\nfailures = 1\n'
    )
    config = with_job_alerts(Config(jobs=JobsConfig(file=str(path))), "alice")
    assert config.alerts.rules_for("alice/backup.service").failures == 1
    assert config.alerts.rules_for("backup.service") == AlertRules()
    assert config.alerts.rules_for("bob/backup.service") == AlertRules()


def users_daemon(home: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str) -> DaemonSetup:
    """The setup of `observer daemon --user` with ``text`` in ~/.config/observer/``name``."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    (home / "observer").mkdir()
    (home / "observer" / name).write_text(text)
    return setup_from(build_parser(["daemon"]).parse_args(["daemon", "--user"]))


def test_a_users_daemon_reads_the_alert_rules_of_their_jobs_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = users_daemon(tmp_path, monkeypatch, "jobs.toml", (
        '[jobs.sync]\ncommand = "true"\nschedule = "daily"\n[jobs.sync.alerts]\nfailures = 2\n'
    ))  # fmt: skip
    assert setup.user is not None
    assert setup.config.jobs.file == str(tmp_path / "observer/jobs.toml")
    assert setup.config.alerts.rules_for(f"{setup.user}/sync.service").failures == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "--user", "apply"],
        ["jobs", "apply", "--user"],
        ["jobs", "--file", "/x.toml", "--user", "check"],
        ["jobs", "check", "--file", "/x.toml", "--user"],
    ],
)
def test_options_count_before_and_after_the_action(argv: list[str]) -> None:
    args: argparse.Namespace = build_parser(argv).parse_args(argv)
    assert args.user is True
    assert args.root == Path("/")
    if "--file" in argv:
        assert args.file == Path("/x.toml")
