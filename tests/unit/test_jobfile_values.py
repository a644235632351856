"""Each reader of a ``[jobs.NAME]`` table: what it refuses (naming the key) and what it keeps."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pytest

from observer.jobs.jobfile import Credential, Job, parse
from observer.model import ConfigError


def _job(**table: object) -> Job:
    return parse(Path("jobs.toml"), {"jobs": {"backup": {"schedule": "daily", **table}}})[0]


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("command", 42, "expected a string (run by /bin/sh -c) or a list"),
        ("command", "   ", "expected a string (run by /bin/sh -c) or a list"),
        ("command", ["borg", "cre\0ate"], "holds a NUL character"),
        ("schedule", [], "expected a schedule or a list of them"),
        ("schedule", ["daily", 5], "expected a schedule or a list of them"),
        ("user", 1000, "expected a string"),
        ("working_directory", "srv/backup", "expected an absolute path"),
        ("environment", ["BORG_REPO=/srv/borg"], "expected a table"),
        ("environment", {"BORG_REPO": 5}, "'BORG_REPO' needs a name of letters"),
        ("timeout", "soon", ""),
        ("persistent", "yes", "expected true or false"),
        ("retries", 101, "expected a whole number from 0 to 100"),
        ("retries", True, "expected a whole number from 0 to 100"),
        ("nice", 20, "expected a whole number from -20 to 19"),
        ("nice", "low", "expected a whole number from -20 to 19"),
        ("requires", "srv-backup.mount", "expected a list of unit names"),
        ("alerts", "on", "expected a table [jobs.NAME.alerts]"),
        ("credentials", "/etc/observer/credentials/borg", "expected a table"),
        ("credentials", {"pass word": "/etc/observer/credentials/borg"}, "credential name"),
    ],
)
def test_a_bad_value_is_refused_with_its_key_and_problem(
    key: str, value: object, problem: str
) -> None:
    table = {"command": "true", key: value}
    with pytest.raises(ConfigError, match=f"^jobs.backup.{key} = .*{re.escape(problem)}"):
        _job(**table)


def test_an_unknown_alert_key_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"unknown key jobs.backup.alerts.failure = 2.*failures"):
        _job(command="true", alerts={"failure": 2})


@pytest.mark.parametrize("missing", ["command", "schedule"])
def test_a_job_without_command_or_schedule_is_refused(missing: str) -> None:
    table: dict[str, object] = {"command": "true", "schedule": "daily"}
    del table[missing]
    with pytest.raises(ConfigError, match=rf"\[jobs.backup\] has no {missing} \(it is required\)"):
        parse(Path("jobs.toml"), {"jobs": {"backup": table}})


def test_every_reader_keeps_what_it_read() -> None:
    job = _job(
        command=["borg", "create"],
        schedule=["daily", "every 6h"],
        user=" backup ",
        working_directory="/srv/backup",
        environment={"BORG_REPO": "/srv/borg"},
        credentials={"pass": {"encrypted": "/etc/observer/credentials/borg"}},
        timeout="1h",
        retries=2,
        retry_delay=60,
        nice=-5,
        persistent=False,
        after=["network-online.target"],
        requires=["srv-backup.mount"],
        alerts={"failures": 2},
    )
    assert job.command == ("borg", "create")
    assert job.schedules == ("daily", "every 6h")
    assert len(job.timers) == 2
    assert job.user == "backup"
    assert job.working_directory == "/srv/backup"
    assert job.environment == (("BORG_REPO", "/srv/borg"),)
    assert job.credentials == (
        Credential("pass", PurePosixPath("/etc/observer/credentials/borg"), encrypted=True),
    )
    assert (job.timeout, job.retries, job.retry_delay, job.nice) == (3600.0, 2, 60.0, -5)
    assert job.persistent is False
    assert job.after == ("network-online.target",)
    assert job.requires == ("srv-backup.mount",)
    assert job.alerts == {"failures": 2}
