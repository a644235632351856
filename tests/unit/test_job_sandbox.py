"""What a job's own sandbox hides or makes read-only of what it needs (jobs/sandbox.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observer.jobs import apply, crontab
from observer.jobs.jobfile import Job, load_file, parse
from observer.jobs.sandbox import Needs, breakages, check, needs_of
from observer.jobs.units import render
from observer.model import ConfigError, ObserverError


def _job(name: str = "backup", **table: object) -> Job:
    return parse(Path("jobs.toml"), {"jobs": {name: {"schedule": "daily", **table}}})[0]


def _problems(name: str = "backup", **table: object) -> list[str]:
    return [str(b) for b in breakages(_job(name, **table))]


# -- what the sandbox hides: the program and the working directory -------------------------


def test_a_program_in_var_tmp_is_hidden_by_private_tmp() -> None:
    assert _problems(name="probe", command=["/var/tmp/probe.sh", "--fast"]) == [
        "job 'probe': PrivateTmp=yes gives the job an empty /var/tmp of its own, and its "
        "program /var/tmp/probe.sh is there: move the program out of /var/tmp (e.g. to "
        "/usr/local/bin) or set `hardening = false`"
    ]


def test_each_command_of_a_script_is_a_program() -> None:
    found = _problems(command="echo start\n/tmp/step-one && /usr/bin/true; /var/tmp/two | cat")
    assert [p.split(", and ")[1].split(":")[0] for p in found] == [
        "its program /tmp/step-one is there",
        "its program /var/tmp/two is there",
    ]


@pytest.mark.parametrize(
    ("command", "program"),
    [
        ("nice -n 10 /var/tmp/x.sh", "/var/tmp/x.sh"),
        ("sudo -u bob bash /tmp/s.sh", "/tmp/s.sh"),
        ("env A=1 /var/tmp/run", "/var/tmp/run"),
        ("timeout 30s ionice -c 3 /tmp/slow", "/tmp/slow"),
        ("python3 -u /var/tmp/report.py --all", "/var/tmp/report.py"),
        ("LANG=C /var/tmp/run", "/var/tmp/run"),
    ],
)
def test_the_program_a_wrapper_or_interpreter_runs_is_checked(command: str, program: str) -> None:
    (found,) = _problems(command=command)
    assert f"its program {program} is there" in found


def test_a_working_directory_below_var_tmp_is_hidden_but_tmp_itself_is_not() -> None:
    (found,) = _problems(command=["/usr/bin/make"], working_directory="/var/tmp/build")
    assert found == (
        "job 'backup': PrivateTmp=yes gives the job an empty /var/tmp of its own, and its "
        "working directory /var/tmp/build is there: use a directory outside /var/tmp (e.g. "
        "under /var/lib) or set `hardening = false`"
    )
    assert _problems(command=["/usr/bin/make"], working_directory="/tmp") == []
    (by_cd,) = _problems(command="cd /tmp/work && make")
    assert "its working directory /tmp/work is there" in by_cd


# -- what the sandbox makes read-only: the paths the command writes ------------------------


def test_certbot_writes_etc_letsencrypt_which_protect_system_makes_read_only() -> None:
    assert _problems(name="renew", command="certbot renew --quiet") == [
        "job 'renew': ProtectSystem=full makes /etc read-only, and its command writes "
        '/etc/letsencrypt: add `read_write_paths = ["/etc/letsencrypt"]` or `hardening = false`'
    ]


def test_read_write_paths_opens_the_path_and_what_is_below_it() -> None:
    assert _problems(command="certbot renew", read_write_paths=["/etc/letsencrypt"]) == []
    assert _problems(command="date > /etc/motd.d/date", read_write_paths=["/etc/motd.d"]) == []
    (still,) = _problems(command="date > /etc/issue", read_write_paths=["/etc/motd.d"])
    assert 'add `read_write_paths = ["/etc/motd.d", "/etc/issue"]`' in still


@pytest.mark.parametrize(
    "command",
    [
        "backup > /etc/backup.log",
        "backup >> /etc/backup.log 2>&1",
        "backup &>/etc/backup.log",
        "backup >| /etc/backup.log",
        "backup | tee -a /etc/backup.log",
        ["/usr/bin/backup", "--output=/etc/backup.log"],
        ["/usr/bin/backup", "--output", "/etc/backup.log"],
        ["/usr/bin/backup", "--log-file", "/etc/backup.log"],
        "timeout 1h certbot renew > /dev/null; backup --output-file=/etc/backup.log",
    ],
)
def test_redirects_tee_and_output_options_are_writes(command: str | list[str]) -> None:
    found = _problems(command=command)
    assert any("its command writes /etc/backup.log: add" in p for p in found), found


def test_a_program_that_rewrites_the_system_needs_hardening_off() -> None:
    (usr, etc) = _problems(command="apt-get -y upgrade")
    assert usr.endswith(
        "makes /usr read-only, and its command writes /usr: set `hardening = false`"
    )
    assert etc.endswith(
        "makes /etc read-only, and its command writes /etc: set `hardening = false`"
    )


def test_writes_to_kernel_tunables_need_hardening_off() -> None:
    (found,) = _problems(command="echo 1 > /proc/sys/vm/drop_caches")
    assert found == (
        "job 'backup': ProtectKernelTunables=yes makes /proc/sys read-only, and its command "
        "writes /proc/sys/vm/drop_caches: set `hardening = false`"
    )


@pytest.mark.parametrize(
    "command",
    [
        "pg_dump db > /var/backups/db.sql",  # /var is writable
        "rsync -a /etc/ /srv/mirror/etc/",  # reads /etc: reading is allowed
        'printf "x 1\\n" > "$JOB_METRICS_FILE"',  # not written out: not checked
        "make > build.log",  # relative: not checked
        "sort /tmp/in > /tmp/out",  # its own /tmp: works within the run
        "/usr/local/bin/backup --output json",
        "echo 'unclosed > /etc/x",  # /bin/sh refuses it; the check does not crash
    ],
)
def test_what_the_sandbox_allows_or_cannot_be_known_is_not_refused(command: str) -> None:
    assert _problems(command=command) == []


def test_hardening_off_has_no_sandbox_to_break() -> None:
    assert _problems(command="/var/tmp/x > /etc/y; certbot renew", hardening=False) == []


def test_protect_home_hides_home_and_its_read_only_form_refuses_writes() -> None:
    needs = Needs(programs=("/home/alice/bin/sync",), writes=("/home/alice/out",))
    (hidden,) = check("sync", needs, {"ProtectHome": "yes"})
    assert hidden.effect == "gives the job an empty /home of its own"
    (read_only,) = check("sync", needs, {"ProtectHome": "read-only"})
    assert read_only.read_write_path == "/home/alice/out"
    assert check("sync", needs, {"ProtectHome": "read-only"}, ("/home/alice",)) == []


def test_only_absolute_written_out_paths_are_needs() -> None:
    assert needs_of(("/bin/sh", "-c", "cd $HOME/x; ./run > out; /bin/a//b/ > /etc//x/")) == Needs(
        programs=("/bin/a/b",), directories=(), writes=("/etc/x",)
    )


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(), st.text())
def test_any_command_is_read_without_an_exception(script: str, directory: str) -> None:
    needs_of(("/bin/sh", "-c", script), directory)
    needs_of((script, directory))


# -- the jobs file, the units and `jobs check` ---------------------------------------------


def test_read_write_paths_become_read_write_paths_lines_in_the_sandbox() -> None:
    job = _job(command="certbot renew", read_write_paths=["/etc/letsencrypt", "/etc/a%b"])
    service = render(job, "jobs.toml").service
    assert "ReadWritePaths=/etc/letsencrypt\nReadWritePaths=/etc/a%%b\n" in service
    assert "ReadWritePaths" not in render(_job(command="true"), "jobs.toml").service


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("/etc/x", "expected a list of absolute paths"),
        (["etc/x"], "expected a list of absolute paths"),
        (["/etc/with space"], "expected a list of absolute paths"),
        (["/etc/x\n[Service]"], "expected a list of absolute paths"),
        ([1], "expected a list of absolute paths"),
    ],
)
def test_bad_read_write_paths_are_refused(value: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        _job(command="true", read_write_paths=value)


def test_read_write_paths_without_a_sandbox_is_refused() -> None:
    with pytest.raises(ConfigError, match="hardening = false turns the sandbox off"):
        _job(command="true", read_write_paths=["/etc/x"], hardening=False)


def test_check_names_the_file_line_job_setting_and_fix_of_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text(
        '[jobs.renew]\ncommand = "certbot renew"\nschedule = "daily"\n\n'
        '[jobs.probe]\ncommand = ["/var/tmp/probe.sh"]\nschedule = "daily"\n\n'
        '[jobs.motd]\ncommand = "date > /etc/motd.d/date"\nschedule = "daily"\n'
        'read_write_paths = ["/etc/motd.d"]\n'
    )
    with pytest.raises(ObserverError) as refused:
        apply.check_sandboxes(load_file(path), tmp_path)
    assert str(refused.value).splitlines() == [
        f"{path}:1: job 'renew': ProtectSystem=full makes /etc read-only, and its command "
        'writes /etc/letsencrypt: add `read_write_paths = ["/etc/letsencrypt"]` or '
        "`hardening = false`",
        f"{path}:5: job 'probe': PrivateTmp=yes gives the job an empty /var/tmp of its own, "
        "and its program /var/tmp/probe.sh is there: move the program out of /var/tmp (e.g. "
        "to /usr/local/bin) or set `hardening = false`",
        f"{path}:9: job 'motd': read_write_paths names /etc/motd.d, which does not exist: "
        "create it (install -d /etc/motd.d) or remove it",
    ]
    (tmp_path / "etc/motd.d").mkdir(parents=True)
    fixed = [job for job in load_file(path) if job.name == "motd"]
    apply.check_sandboxes(fixed, tmp_path)  # under --root: the path exists there


# -- import-crontab ----------------------------------------------------------------------------


def test_import_crontab_opens_what_a_job_writes_and_says_why(tmp_path: Path) -> None:
    text = (
        "17 3 * * * certbot renew --quiet\n"
        "*/5 * * * * /var/tmp/probe.sh\n"
        "0 1 * * * /usr/local/bin/backup > /var/log/backup.log 2>&1\n"
    )
    converted = crontab.to_jobs_file(text, system=False, source="crontab -l")
    tables = converted.split("\n\n")
    assert tables[1].splitlines()[-2:] == [
        "# read_write_paths: ProtectSystem=full makes /etc read-only, and its command writes "
        "/etc/letsencrypt",
        'read_write_paths = ["/etc/letsencrypt"]',
    ]
    assert tables[2].splitlines()[-2:] == [
        "# hardening: PrivateTmp=yes gives the job an empty /var/tmp of its own, and its "
        "program /var/tmp/probe.sh is there",
        "hardening = false",
    ]
    assert "read_write_paths" not in tables[3]
    assert "hardening" not in tables[3]
    path = tmp_path / "jobs.toml"
    path.write_text(converted)
    (tmp_path / "etc/letsencrypt").mkdir(parents=True)
    apply.check_sandboxes(load_file(path), tmp_path)  # what it wrote passes the check
