"""The job registry's pure parts: the file, quoting, schedules, crontab import, the plan."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cronsim import CronSim
from hypothesis import given
from hypothesis import strategies as st

from observer.alert_config import AlertRules
from observer.config import Config, JobsConfig
from observer.jobs import apply, crontab
from observer.jobs import cli as jobs_cli
from observer.jobs.alert_rules import with_job_alerts
from observer.jobs.jobfile import DEFAULT_JOBS_PATH, Job, load_file, parse
from observer.jobs.schedule import ScheduleError, cron_to_calendar, timer_settings
from observer.jobs.units import exec_line, quoted, render
from observer.model import ConfigError, ObserverError
from observer.run.schedule import NICKNAMES

# -- what systemd does to a value, written from systemd 252's extract_first_word(UNQUOTE|
# CUNESCAPE), specifier and $ expansion, to read generated units back ------------------


def _unquote_words(text: str) -> list[str]:
    """Words of a line of double-quoted words, C escapes resolved (no bare words expected)."""
    words = []
    i = 0
    while i < len(text):
        if text[i] == " ":
            i += 1
            continue
        assert text[i] == '"', f"unquoted word at {text[i:]!r}"
        i += 1
        word = []
        while text[i] != '"':
            if text[i] == "\\":
                code = text[i + 1]
                if code == "x":
                    word.append(chr(int(text[i + 2 : i + 4], 16)))
                    i += 4
                    continue
                word.append({"n": "\n", "t": "\t", "r": "\r"}.get(code, code))
                i += 2
                continue
            word.append(text[i])
            i += 1
        i += 1
        words.append("".join(word))
    return words


def _specifiers(text: str) -> str:
    assert re.fullmatch(r"(?:[^%]|%%)*", text), f"a bare specifier in {text!r}"
    return text.replace("%%", "%")


def _dollars(text: str) -> str:
    assert re.fullmatch(r"(?:[^$]|\$\$)*", text), f"a bare $ in {text!r}"
    return text.replace("$$", "$")


def _settings(unit: str) -> list[tuple[str, str]]:
    """(section.key, value) of every directive line, as systemd reads the file."""
    found = []
    section = ""
    for line in unit.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        found.append((f"{section}{key}", value))
    return found


def _job(**table: object) -> Job:
    return parse(Path("jobs.toml"), {"jobs": {"backup": {"schedule": "daily", **table}}})[0]


text_values = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"))


@given(st.lists(text_values, min_size=1, max_size=5))
def test_every_argument_reads_back_exactly_as_written(arguments: list[str]) -> None:
    argv = ("/usr/bin/borg", *arguments)
    line = exec_line(argv)
    assert "\n" not in line
    words = _unquote_words(_specifiers(line))
    assert [words[0], *(_dollars(w) for w in words[1:])] == list(argv)


@given(text_values)
def test_every_environment_value_reads_back_exactly_as_written(value: str) -> None:
    line = quoted(f"KEY={value}", dollar=False)
    assert "\n" not in line
    assert _specifiers(_unquote_words(line)[0]) == f"KEY={value}"


HOSTILE = [
    "x\n[Service]\nExecStartPre=/bin/false",
    "50% %n %i %h",
    "$HOME ${PATH} $$",
    "\"quoted\" 'single'",
    "back\\slash\\",
    ";",
    "\\;",
    "tab\there\rcr",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_value_changes_no_other_setting(hostile: str) -> None:
    plain = render(_job(command=["/bin/echo", "x"], environment={"A": "x"}), "jobs.toml")
    evil = render(_job(command=["/bin/echo", hostile], environment={"A": hostile}), "jobs.toml")
    plain_settings, evil_settings = _settings(plain.service), _settings(evil.service)
    assert [k for k, _ in plain_settings] == [k for k, _ in evil_settings]
    changed = {k for (k, a), (_, b) in zip(plain_settings, evil_settings, strict=True) if a != b}
    assert changed <= {"[Service]ExecStart", "[Service]Environment"}
    exec_start = dict(evil_settings)["[Service]ExecStart"]
    assert [_dollars(w) for w in _unquote_words(_specifiers(exec_start))][1:] == [hostile]
    assert _specifiers(_unquote_words(dict(evil_settings)["[Service]Environment"])[0]) == (
        f"A={hostile}"
    )


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("description", "nightly\n[Service]\nUser=root", "newline"),
        ("user", "root\nGroup=root", "newline"),
        ("user", "no body", "not a valid user"),
        ("working_directory", "relative/dir", "absolute path"),
        ("environment_file", "/etc/x\nExecStart=/bin/sh", "newline"),
        ("schedule", "daily\nOnCalendar=minutely", "control characters"),
        ("schedule", "%n", "%"),
        ("command", ["-/bin/true"], "must be a path"),
        ("command", ["$HOME/bin/x"], None),
        ("credentials", {"pass": "/etc/a:b"}, "no ':'"),
        ("credentials", {"pass": "relative"}, "absolute path"),
        ("environment", {"A B": "x"}, "name of letters"),
        ("after", ["foo.service\nRequires=x.service"], "unit names"),
        ("memory_max", "1G\nMemoryMax=infinity", "newline"),
        ("retries", 3, "set timeout too"),
        ("timezone", "UTC %n", "not a valid timezone"),
    ],
)
def test_values_that_cannot_be_quoted_are_refused_with_the_key_named(
    key: str, value: object, problem: str | None
) -> None:
    table = {"command": "true", key: value}
    if problem is None:  # a program with $ cannot be quoted (systemd does not expand it)
        with pytest.raises(ValueError, match=r"without \$"):
            render(_job(**table), "jobs.toml")
        return
    with pytest.raises(ConfigError, match=f"jobs.backup.{key} = .*{re.escape(problem)}"):
        _job(**table)


def test_a_description_with_specifiers_is_shown_as_written() -> None:
    units = render(_job(command="true", description="50% of %n"), "jobs.toml")
    assert "Description=50%% of %%n\n" in units.service


def test_errors_name_the_file_and_line_and_suggest_the_key(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text('[jobs.backup]\ncommand = "true"\nschedule = "daily"\ntimout = "1h"\n')
    with pytest.raises(ConfigError, match=r"jobs.toml:4: unknown key jobs.backup.timout = "
                       r'"1h" \(did you mean timeout\?'):  # fmt: skip
        load_file(path)
    path.write_text('[jobs."nightly backup"]\ncommand = "true"\nschedule = "daily"\n')
    with pytest.raises(ConfigError, match=r"jobs.toml:1: .*e.g. \[jobs.nightly-backup\]"):
        load_file(path)
    path.write_text('[jobs.backup]\ncommand = "true"\nschedule = "every 0m"\n')
    with pytest.raises(ConfigError, match=r"jobs.toml:3: jobs.backup.schedule = .*every 5m"):
        load_file(path)
    path.write_text('[jobs.backup]\ncommand = "true"\nschedule = "daily"\n[jobs.backup.alerts]\n'
                    "failure = 1\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"jobs.toml:5: .*alerts.failure .*did you mean failures"):
        load_file(path)


def test_the_default_unit_runs_once_with_the_hardening_and_the_metrics_file() -> None:
    units = render(_job(command=["/usr/bin/borg", "create"], timeout="2h"), "j.toml", "M=1\n")
    settings = dict(_settings(units.service))
    assert settings["[Service]Type"] == "oneshot"
    assert settings["[Service]TimeoutStartSec"] == "7200000ms"
    assert settings["[Service]ProtectSystem"] == "full"
    assert units.service.endswith("M=1\n")
    timer = dict(_settings(units.timer))
    assert timer["[Timer]OnCalendar"] == "daily"
    assert timer["[Timer]Persistent"] == "yes"
    assert timer["[Install]WantedBy"] == "timers.target"


# -- schedules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "calendar", "period"),
    [
        ("every 5s", ("*-*-* *:*:00/5",), None),
        ("every 5m", ("*-*-* *:00/5:00",), None),
        ("every 2h", ("*-*-* 00/2:00:00",), None),
        ("every 1d", ("*-*-* 00:00:00",), None),
        ("every 90m", (), 5400),
        ("every 7s", (), 7),
        ("every 1.5h", (), 5400),  # the one grammar of durations (observer/spans.py)
        ("every 1h 30m", (), 5400),
        ("EVERY 2H", ("*-*-* 00/2:00:00",), None),
        ("Mon *-*-* 03:00", ("Mon *-*-* 03:00",), None),
    ],
)
def test_periods_become_calendar_lines_when_they_divide_the_clock(
    written: str, calendar: tuple[str, ...], period: int | None
) -> None:
    settings = timer_settings(written)
    assert settings.calendar == calendar
    assert settings.period_seconds == period


BAD_SCHEDULES = ["every", "every 5 minutes", "every 1.5s", "every 0m", "@fortnightly",
                 "61 * * * *", "* * * * 8", "5-1 * * * *", "*/0 * * * *", "L * * * *"]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_SCHEDULES)
def test_bad_schedules_are_refused(bad: str) -> None:
    with pytest.raises(ScheduleError):
        timer_settings(bad)


# Real crontab lines: steps, ranges, lists, names, day of month with day of week.
CRONTAB_LINES = [
    "*/5 * * * *",
    "0 * * * *",
    "17 * * * *",
    "0 3 * * *",
    "30 2 * * 0",
    "0 0 * * 7",
    "15 4 * * 1-5",
    "0 9-17 * * mon-fri",
    "*/15 9-17 * * 1-5",
    "0 */6 * * *",
    "5 0,12 * * *",
    "0 0 1 * *",
    "0 0 1,15 * *",
    "0 6 1 1 *",
    "0 0 * jan,jul *",
    "0 0 1 */3 *",
    "30 4 1,15 * 5",
    "0 0 13 * fri",
    "0 12 */2 * *",
    "10-20/5 * * * *",
    "0 22 * * 1,3,5",
    "0 0 29 2 *",
    "0 8 1-7 * 1",
    "45 23 * * sat,sun",
    "@daily",
    "@hourly",
    "@weekly",
    "@monthly",
    "@yearly",
]
START = datetime(2026, 3, 1, 12, 34, 56, tzinfo=UTC)


def _systemd_times(calendars: tuple[str, ...], count: int) -> list[str]:
    result = subprocess.run(
        ["systemd-analyze", "calendar", f"--iterations={count}",
         f"--base-time={START.strftime('%Y-%m-%d %H:%M:%S')} UTC", *calendars],
        capture_output=True, text=True, check=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    times = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)",
                       result.stdout)  # fmt: skip
    return sorted(set(times))[:count]


@pytest.mark.parametrize("line", CRONTAB_LINES)
def test_a_converted_cron_line_fires_at_the_same_100_times(line: str) -> None:
    # systemd computes no elapse past the year 2199: 29 February has 43 before then.
    count = 40 if line == "0 0 29 2 *" else 100
    cron = CronSim(NICKNAMES.get(line, line), START)
    expected = [next(cron).strftime("%Y-%m-%d %H:%M:%S") for _ in range(count)]
    assert _systemd_times(cron_to_calendar(line), count) == expected


# -- crontab import -----------------------------------------------------------------------


def test_a_crontab_becomes_a_jobs_file_that_reads_back(tmp_path: Path) -> None:
    text = (
        "MAILTO=ops@example.com\nBORG_REPO=/srv/borg\n# a comment\n"
        "30 2 * * * /usr/local/bin/backup --full\n"
        "@reboot /usr/local/bin/warmup\n"
        "0 * * * * date +\\%H% input line\n"
        "nonsense line\n"
    )
    converted = crontab.to_jobs_file(text, system=False, source="crontab -l")
    assert "MAILTO=ops@example.com: systemd sends no mail" in converted
    assert "# cron fed" in converted
    path = tmp_path / "jobs.toml"
    path.write_text(converted)
    jobs = {job.name: job for job in load_file(path)}
    assert jobs["backup"].command == ("/bin/sh", "-c", "/usr/local/bin/backup --full")
    assert jobs["backup"].schedules == ("30 2 * * *",)
    assert jobs["backup"].environment == (("BORG_REPO", "/srv/borg"),)
    assert jobs["warmup"].timers[0].on_boot
    assert jobs["date"].command[2] == "date +%H"


def test_a_system_crontab_keeps_its_user_column() -> None:
    converted = crontab.to_jobs_file("17 * * * * www-data /usr/bin/php cron.php\n",
                                     system=True, source="/etc/cron.d/php")  # fmt: skip
    assert 'user = "www-data"' in converted
    assert 'command = "/usr/bin/php cron.php"' in converted
    # Debian's /etc/crontab, columns separated by tabs.
    debian = "17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly\n"
    converted = crontab.to_jobs_file(debian, system=True, source="/etc/crontab")
    assert "[jobs.run-parts]" in converted
    assert 'command = "cd / && run-parts --report /etc/cron.hourly"' in converted
    assert "user =" not in converted  # root is the default


# -- the plan -------------------------------------------------------------------------------


def test_the_plan_adds_changes_removes_and_never_takes_a_foreign_unit(tmp_path: Path) -> None:
    directory = tmp_path / "etc/systemd/system"
    jobs = [_job(command="true")]
    units = apply.generate(jobs, Path("jobs.toml"), "")
    first = apply.plan(jobs, units, tmp_path)
    assert first.added == ("backup",)
    for path, text in first.writes.items():
        apply.write_file(path, text)
    assert apply.plan(jobs, units, tmp_path).empty
    changed = [_job(command="false")]
    assert apply.plan(changed, apply.generate(changed, Path("j"), ""), tmp_path).changed == (
        "backup",
    )
    gone = apply.plan([], {}, tmp_path)
    assert gone.removed == ("backup",)
    assert set(gone.removes) == {directory / "backup.service", directory / "backup.timer"}
    (directory / "backup.service").write_text("[Service]\nExecStart=/bin/mine\n")
    with pytest.raises(ObserverError, match="exists and was not written by observer"):
        apply.plan(jobs, units, tmp_path)


def test_a_credential_others_may_read_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "etc/secret"
    secret.parent.mkdir()
    secret.write_text("x")
    secret.chmod(0o640)
    jobs = [_job(command="true", credentials={"pass": "/etc/secret"})]
    with pytest.raises(ObserverError, match="chmod 600 /etc/secret"):
        apply.check_credentials(jobs, tmp_path)
    secret.chmod(0o600)
    apply.check_credentials(jobs, tmp_path)


def test_a_jobs_alert_rules_apply_to_its_unit_only(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text('[jobs.backup]\ncommand = "true"\nschedule = "daily"\n'
                    '[jobs.backup.alerts]\nfailures = 1\nmax_duration = "2h"\n')  # fmt: skip
    config = with_job_alerts(Config(jobs=JobsConfig(file=str(path))))
    assert config.alerts.present
    assert config.alerts.rules_for("backup.service").failures == 1
    assert config.alerts.rules_for("backup.service").max_duration == 7200
    assert config.alerts.rules_for("other.service") == AlertRules()
    path.write_text("[jobs.backup]\n")  # a bad file leaves the rules as they were
    assert with_job_alerts(Config(jobs=JobsConfig(file=str(path)))) == Config(
        jobs=JobsConfig(file=str(path))
    )


def test_the_help_names_the_jobs_file_the_reader_reads_by_default() -> None:
    # observer/jobs/cli.py names it without importing the jobs file's reader (--help's start).
    assert Path(jobs_cli._DEFAULT_JOBS_FILE) == DEFAULT_JOBS_PATH
