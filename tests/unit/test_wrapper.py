"""`observer run` as cron runs it: the job sees no difference, and its run is recorded."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from observer.config_file import DEFAULT_CONFIG_PATH
from observer.store import database
from tests.unit.test_startup_imports import modules_of
from tests.waiting import wait_for

BIG = 3 * 1024 * 1024 + 17


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A bare environment like cron's, with the database and spool in a temp dir."""
    return {
        "PATH": "/usr/bin:/bin",
        "OBSERVER_DB": str(tmp_path / "observer.db"),
        "OBSERVER_SPOOL": str(tmp_path / "spool"),
        "OBSERVER_METRICS_DIR": str(tmp_path / "metrics"),
    }


def observer(
    *args: str, env: dict[str, str], input: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "observer", *args],
        env=env,
        input=input,
        capture_output=True,
        timeout=timeout,
        check=False,
        start_new_session=True,  # no controlling terminal, as under cron
        cwd="/",
    )


def wrapped(
    name: str, *command: str, env: dict[str, str], options: tuple[str, ...] = (), **kw: Any
) -> subprocess.CompletedProcess[bytes]:
    return observer("run", "--name", name, *options, "--", *command, env=env, **kw)


def history(name: str, env: dict[str, str]) -> list[dict[str, Any]]:
    result = observer("history", name, "--json", env=env)
    assert result.returncode == 0, result.stderr
    runs: list[dict[str, Any]] = json.loads(result.stdout)
    return runs


def recorded(name: str, env: dict[str, str]) -> list[dict[str, Any]] | None:
    """The runs of ``name``, or None while there is no database with one yet (the store is
    made and the start written after the job started)."""
    result = observer("history", name, "--json", env=env)
    return (json.loads(result.stdout) or None) if result.returncode == 0 else None


def shown(run_id: int, env: dict[str, str]) -> dict[str, Any]:
    result = observer("show", str(run_id), "--json", env=env)
    assert result.returncode == 0, result.stderr
    detail: dict[str, Any] = json.loads(result.stdout)
    return detail


@pytest.mark.parametrize("status", [0, 1, 255])
def test_the_exit_status_passes_through_and_is_recorded(status: int, env: dict[str, str]) -> None:
    result = wrapped("job", "sh", "-c", f"exit {status}", env=env)

    assert result.returncode == status
    assert (result.stdout, result.stderr) == (b"", b"")
    [run] = history("job", env)
    assert run["unit"] == "job"
    assert run["source"] == "wrapper"
    assert run["exit_status"] == status
    assert run["result"] == ("success" if status == 0 else "exit-code")
    assert run["finished_at"] is not None
    assert run["duration_seconds"] >= 0


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_a_job_killed_by_a_signal_exits_with_128_plus_the_signal(
    signum: int, env: dict[str, str]
) -> None:
    result = wrapped("job", "sh", "-c", f"ulimit -c 0; kill -{signum} $$", env=env)

    assert result.returncode == 128 + signum
    [run] = history("job", env)
    assert run["result"] == "signal"
    assert run["signal"] == signal.Signals(signum).name.removeprefix("SIG")
    assert run["exit_status"] is None


def test_stdout_and_stderr_are_passed_through_byte_for_byte(
    env: dict[str, str], tmp_path: Path
) -> None:
    out, err = tmp_path / "out.bin", tmp_path / "err.bin"
    out.write_bytes(os.urandom(BIG) + b"\r\n\x00no newline at the end")
    err.write_bytes(b"\xff\xfe invalid UTF-8\n\x1b[31mred\x1b[0m\n" + os.urandom(100_000))
    command = ["sh", "-c", f"cat {out}; cat {err} >&2; cat {out}"]
    bare = subprocess.run(command, capture_output=True, check=True)

    result = wrapped("job", *command, env=env)

    assert result.returncode == 0
    assert result.stdout == bare.stdout == out.read_bytes() * 2
    assert result.stderr == bare.stderr == err.read_bytes()


def test_it_records_each_line_with_its_stream_and_keeps_the_start_and_end_of_a_big_output(
    env: dict[str, str],
) -> None:
    # A failed run keeps the first 512 KiB: 'to stderr' is in there whatever the reads were.
    script = "echo first; echo to stderr >&2; seq 1 300000; printf 'last, no newline'; exit 1"
    result = wrapped("job", "sh", "-c", script, env=env)

    [run] = history("job", env)
    detail = shown(run["id"], env)
    messages = [line["message"] for line in detail["output"]]
    # Lines of one stream keep their order; the two streams interleave as they were read.
    assert [m for m in messages[:3] if m != "to stderr"][:2] == ["first", "1"]
    assert "to stderr" in messages
    assert messages[-1] == "last, no newline"
    priorities = {line["message"]: line["priority"] for line in detail["output"]}
    assert (priorities["first"], priorities["to stderr"]) == (6, 3)
    assert run["output_truncated"] is True
    assert detail["output_lines"] == 300_003
    assert detail["output_bytes"] == len(result.stdout) + len(result.stderr) - 300_002
    with sqlite3.connect(env["OBSERVER_DB"]) as conn:
        streams = dict(conn.execute("SELECT message, stream FROM output").fetchall())
    assert (streams[b"first"], streams[b"to stderr"]) == ("stdout", "stderr")


def test_the_job_gets_standard_input_and_cron_s_environment_unchanged(
    env: dict[str, str], tmp_path: Path
) -> None:
    bare = subprocess.run(["env"], env=env, capture_output=True, check=True, cwd="/")

    result = wrapped("job", "sh", "-c", "cat; env", env=env, input=b"from stdin\n")

    lines = result.stdout.decode().splitlines()
    assert lines[0] == "from stdin"
    metrics = [line for line in lines if line.startswith("JOB_METRICS_FILE=")]
    assert len(metrics) == 1
    others = sorted(
        line for line in lines[1:] if not line.startswith(("JOB_METRICS_FILE=", "PWD="))
    )
    expected = sorted(line for line in bare.stdout.decode().splitlines() if line[:4] != "PWD=")
    assert others == expected  # in particular, no LC_CTYPE that Python sets for itself


def test_it_runs_with_no_environment_at_all(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "observer", "run", "--name", "job",
         "--db", str(tmp_path / "observer.db"), "--spool-dir", str(tmp_path / "spool"),
         "--", "sh", "-c", "echo ran"],
        env={}, capture_output=True, timeout=60, check=False, cwd="/", start_new_session=True,
    )  # fmt: skip

    assert (result.returncode, result.stdout, result.stderr) == (0, b"ran\n", b"")
    assert history("job", {"OBSERVER_DB": str(tmp_path / "observer.db")})[0]["result"] == "success"


def test_a_command_that_cannot_be_found_exits_127_and_is_recorded_as_failed(
    env: dict[str, str],
) -> None:
    result = wrapped("job", "no-such-command", env=env)

    assert result.returncode == 127
    assert b"cannot run 'no-such-command'" in result.stderr
    [run] = history("job", env)
    assert (run["result"], run["exit_status"]) == ("exit-code", 127)
    assert "No such file" in shown(run["id"], env)["output"][0]["message"]


def test_a_script_without_an_interpreter_line_runs_with_sh(
    env: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "script"
    script.write_text("echo from a plain script\n")
    script.chmod(0o755)

    result = wrapped("job", str(script), env=env)

    assert (result.returncode, result.stdout) == (0, b"from a plain script\n")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_to_observer_are_forwarded_to_the_job(
    signum: int, env: dict[str, str], tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    script = (
        f"trap 'kill $!; echo got it; exit 7' {signum}; touch {ready}; sleep 60 >&- 2>&- & wait"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "observer", "run", "--name", "job", "--", "sh", "-c", script],
        env=env, stdout=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(ready.exists, timeout=30, what="the job to be ready")
        process.send_signal(signum)
        stdout, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (process.returncode, stdout) == (7, b"got it\n")
    assert history("job", env)[0]["exit_status"] == 7


def test_a_job_that_runs_too_long_is_terminated_and_recorded_as_a_timeout(
    env: dict[str, str],
) -> None:
    result = wrapped(
        "job", "sh", "-c", "echo started; sleep 60", env=env, options=("--timeout", "1s")
    )

    assert result.returncode == 128 + signal.SIGTERM
    assert result.stdout == b"started\n"
    [run] = history("job", env)
    assert (run["result"], run["signal"]) == ("timeout", "TERM")
    assert 0.9 < run["duration_seconds"] < 30


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace_period(
    env: dict[str, str],
) -> None:
    script = "trap '' TERM; sleep 60 & wait; sleep 60"
    result = wrapped(
        "job", "sh", "-c", script, env=env, options=("--timeout", "1s", "--kill-after", "1s")
    )

    assert result.returncode == 128 + signal.SIGKILL
    [run] = history("job", env)
    assert (run["result"], run["signal"]) == ("timeout", "KILL")


def test_with_lock_a_second_run_does_not_start_while_the_first_runs(
    env: dict[str, str], tmp_path: Path
) -> None:
    started, release, second = tmp_path / "started", tmp_path / "release", tmp_path / "second"
    first = subprocess.Popen(
        [sys.executable, "-m", "observer", "run", "--name", "job", "--lock", "--",
         "sh", "-c", f"touch {started}; while [ ! -e {release} ]; do sleep 0.05; done"],
        env=env, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(started.exists, timeout=30, what="the first job to start")
        skipped = wrapped("job", "touch", str(second), env=env, options=("--lock",))
        release.touch()
        assert first.wait(timeout=30) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert (skipped.returncode, skipped.stdout, skipped.stderr) == (0, b"", b"")
    assert not second.exists()
    results = [run["result"] for run in history("job", env)]
    assert sorted(results) == ["skipped", "success"]
    after = wrapped("job", "touch", str(second), env=env, options=("--lock",))
    assert after.returncode == 0
    assert second.exists()


def test_a_run_the_store_cannot_take_is_spooled_and_arrives_exactly_once_later(
    env: dict[str, str],
) -> None:
    db = Path(env["OBSERVER_DB"])
    assert wrapped("job", "true", env=env).returncode == 0
    good = db.read_bytes()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 1000)

    broken = wrapped("job", "sh", "-c", "echo out; echo err >&2; exit 3", env=env)

    assert broken.returncode == 3
    assert broken.stdout == b"out\n"
    warnings = broken.stderr.decode().splitlines()
    assert warnings[0] == "err"
    assert len(warnings) == 2
    assert "cannot record this run of job" in warnings[1]
    assert "file is not a database" in warnings[1]
    spooled = list(Path(env["OBSERVER_SPOOL"]).glob("*.json"))
    assert len(spooled) == 1
    assert spooled[0].stat().st_mode & 0o077 == 0

    db.write_bytes(good)
    assert wrapped("job", "true", env=env).stderr == b""
    assert wrapped("job", "true", env=env).stderr == b""

    runs = history("job", env)
    assert [run["result"] for run in runs].count("exit-code") == 1
    assert len(runs) == 4
    [failed] = [run for run in runs if run["result"] == "exit-code"]
    assert failed["exit_status"] == 3
    assert [o["message"] for o in shown(failed["id"], env)["output"]] == ["out", "err"]
    assert not list(Path(env["OBSERVER_SPOOL"]).glob("*.json"))


def test_a_locked_database_delays_nothing_but_the_record(env: dict[str, str]) -> None:
    db = Path(env["OBSERVER_DB"])
    assert wrapped("job", "true", env=env).returncode == 0
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        result = wrapped("job", "sh", "-c", "echo hi; exit 5", env=env)
    finally:
        holder.rollback()
        holder.close()

    assert (result.returncode, result.stdout) == (5, b"hi\n")
    assert b"database is locked" in result.stderr
    assert wrapped("job", "true", env=env).returncode == 0
    assert sorted(run["exit_status"] for run in history("job", env)) == [0, 0, 5]


def test_the_job_runs_and_passes_through_even_when_nothing_can_be_written(
    env: dict[str, str], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = dict(env, OBSERVER_DB=str(blocker / "observer.db"), OBSERVER_SPOOL=str(blocker / "s"))

    result = wrapped("job", "sh", "-c", "echo still runs; exit 2", env=env)

    assert (result.returncode, result.stdout) == (2, b"still runs\n")
    [warning] = result.stderr.decode().splitlines()
    assert "nor keep it in" in warning
    assert warning.endswith("it is not recorded")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_a_user_who_may_not_write_the_database_spools_for_root_to_import(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert wrapped("job", "true", env=env).returncode == 0
    spool = Path(tempfile.mkdtemp(prefix="observer-test-spool-"))  # nobody cannot reach tmp_path
    try:
        spool.chmod(0o1777)
        env = dict(env, OBSERVER_SPOOL=str(spool))
        as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        result = subprocess.run(
            [*as_nobody, sys.executable, "-m", "observer", "run", "--name", "job", "--",
             "sh", "-c", "echo as nobody; exit 9"],
            env=env, capture_output=True, timeout=60, check=False, start_new_session=True,
            cwd="/",
        )  # fmt: skip
        assert len(list(spool.glob("*.json"))) == 1, result.stderr
        imported = wrapped("job", "true", env=env)
    finally:
        shutil.rmtree(spool)

    assert (result.returncode, result.stdout) == (9, b"as nobody\n")
    assert b"Permission denied" in result.stderr or b"permission denied" in result.stderr
    assert imported.stderr == b""
    assert sorted(run["exit_status"] for run in history("job", env)) == [0, 0, 9]


def test_what_the_job_writes_to_job_metrics_file_ends_up_in_name_prom(
    env: dict[str, str],
) -> None:
    script = 'printf "backup_bytes 1234\\n" > "$JOB_METRICS_FILE"'

    assert wrapped("nightly-backup", "sh", "-c", script, env=env).returncode == 0

    metrics = Path(env["OBSERVER_METRICS_DIR"])
    assert (metrics / "nightly-backup.prom").read_text() == "backup_bytes 1234\n"
    assert [p.name for p in metrics.glob("*.prom")] == ["nightly-backup.prom"]
    assert not list((metrics / ".running").iterdir())


def test_a_schedule_tells_when_the_next_run_is_due(env: dict[str, str]) -> None:
    before = time.time()
    assert wrapped("every5", "true", env=env, options=("--every", "5m")).returncode == 0
    assert wrapped("cron", "true", env=env, options=("--schedule", "*/10 * * * *")).returncode == 0

    with sqlite3.connect(env["OBSERVER_DB"]) as conn:
        timers = dict(conn.execute("SELECT timer, next_elapse_usec FROM timers").fetchall())
    assert set(timers) == {"cron:every5", "cron:cron"}
    assert before + 300 <= timers["cron:every5"] / 1e6 <= time.time() + 300
    due = timers["cron:cron"] / 1e6
    assert before < due <= time.time() + 600
    assert round(due) % 600 == 0 or time.localtime(due).tm_min % 10 == 0
    status = json.loads(observer("status", "--json", env=env).stdout)
    assert {s["unit"]: s["next_run_at"] is not None for s in status} == {
        "cron": True,
        "every5": True,
    }


def test_the_run_reads_like_a_units_run_in_history_stats_and_status(
    env: dict[str, str],
) -> None:
    for status in (0, 0, 1):
        wrapped("report", "sh", "-c", f"exit {status}", env=env)

    runs = history("report", env)
    stats = json.loads(observer("stats", "report", "--json", env=env).stdout)
    status = json.loads(observer("status", "--json", env=env).stdout)
    table = observer("history", "report", env=env).stdout.decode()

    assert [run["exit_status"] for run in runs] == [1, 0, 0]
    assert (stats["runs"], stats["successes"], stats["failures"]) == (3, 2, 1)
    assert stats["consecutive_failures"] == 1
    assert stats["duration_max_seconds"] is not None
    assert status == [
        {
            "unit": "report",
            "user": None,
            "host": runs[0]["host"],
            "last_result": "exit-code",
            "last_started_at": runs[0]["started_at"],
            "next_run_at": None,
            "success_rate": pytest.approx(2 / 3),
            "consecutive_failures": 1,
            "running": False,
            "open_problems": [],
        }
    ]
    assert "exit-code  1" in table


def test_output_of_a_process_the_job_left_behind_passes_through_after_the_run_is_recorded(
    env: dict[str, str], tmp_path: Path
) -> None:
    recorded = tmp_path / "recorded"
    db = env["OBSERVER_DB"]
    check = f"sqlite3 {db} 'SELECT 1 FROM runs WHERE finished_usec IS NOT NULL'"
    late = f'(sleep 3; if [ -n "$({check} 2>/dev/null)" ]; then touch {recorded}; fi; echo late) &'
    if not shutil.which("sqlite3"):
        late = "(sleep 3; echo late) &"

    result = wrapped("job", "sh", "-c", f"echo main; {late} exit 0", env=env)

    assert (result.returncode, result.stdout) == (0, b"main\nlate\n")
    [run] = history("job", env)
    assert run["result"] == "success"
    assert [o["message"] for o in shown(run["id"], env)["output"]] == ["main"]
    if shutil.which("sqlite3"):
        assert recorded.exists()


def test_a_reader_that_goes_away_ends_the_job_as_it_would_without_observer(
    env: dict[str, str],
) -> None:
    command = [sys.executable, "-m", "observer", "run", "--name", "job", "--", "yes"]
    wrapper = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, start_new_session=True)
    assert wrapper.stdout is not None
    wrapper.stdout.read(10)
    wrapper.stdout.close()

    assert wrapper.wait(timeout=30) == 128 + signal.SIGPIPE
    assert history("job", env)[0]["signal"] == "PIPE"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "job"], b"give the command to run"),
        (["--name", "../etc", "--", "true"], b"invalid job name"),
        (["--name", "job", "--schedule", "* * *", "--", "true"], b"invalid cron expression"),
        (["--name", "job", "--every", "5x", "--", "true"], b"invalid duration"),
        (["--name", "job", "--timeout", "0", "--", "true"], b"invalid duration"),
        (["--name", "job", "--timeout", "0s", "--", "true"], b"it must be above 0"),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], message: bytes, env: dict[str, str]) -> None:
    result = observer("run", *args, env=env)

    assert result.returncode == 2
    assert message in result.stderr
    assert not Path(env["OBSERVER_DB"]).exists()


def test_the_start_of_a_long_run_is_visible_while_it_runs(
    env: dict[str, str], tmp_path: Path
) -> None:
    release = tmp_path / "release"
    job = subprocess.Popen(
        [sys.executable, "-m", "observer", "run", "--name", "long", "--",
         "sh", "-c", f"while [ ! -e {release} ]; do sleep 0.05; done"],
        env=env, start_new_session=True,
    )  # fmt: skip
    try:

        def recorded() -> list[dict[str, Any]] | None:
            if not Path(env["OBSERVER_DB"]).exists():
                return None
            result = observer("history", "long", "--json", env=env)
            return json.loads(result.stdout) if result.returncode == 0 else None

        runs = wait_for(recorded, timeout=30, what="the running job in the store", every=0.1)
        release.touch()
        assert job.wait(timeout=30) == 0
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert runs[0]["finished_at"] is None
    assert history("long", env)[0]["result"] == "success"


def test_store_module_default_is_used_without_db_option(env: dict[str, str]) -> None:
    assert database.default_db_path() != Path(env["OBSERVER_DB"])  # only the env points here
    assert wrapped("job", "true", env=env).returncode == 0
    assert Path(env["OBSERVER_DB"]).exists()


def test_a_run_whose_observer_run_was_sigkilled_is_closed_as_interrupted_by_the_next_one(
    env: dict[str, str], tmp_path: Path
) -> None:
    killed = subprocess.Popen(
        [sys.executable, "-m", "observer", "run", "--name", "nightly", "--", "sleep", "300"],
        env=env, start_new_session=True, cwd="/",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        marks = tmp_path / "spool" / "live"
        [mark] = wait_for(
            lambda: list(marks.glob("*.live")), timeout=30, what="the run's liveness mark"
        )
        # The mark comes first, then the job, then (on a thread) the store and the start:
        # a reading in between found no database, or one half made (seen in a clean clone's
        # test run: "is not an observer database").
        started = wait_for(lambda: recorded("nightly", env), timeout=30, what="the start")
        assert [run["result"] for run in started] == [None]
        assert wrapped("other", "true", env=env).returncode == 0
        assert [run["result"] for run in history("nightly", env)] == [None]  # still there
    finally:
        os.killpg(killed.pid, signal.SIGKILL)  # observer run and its job, at once
        killed.wait()

    assert wrapped("other", "true", env=env).returncode == 0
    [run] = history("nightly", env)
    assert (run["result"], run["invocation_id"]) == ("interrupted", mark.stem)
    assert run["finished_at"] is not None
    assert not mark.exists()


def test_a_run_without_a_config_file_imports_only_what_it_uses(env: dict[str, str]) -> None:
    """Every cron job pays for what `observer run` imports (docs/run.md, what it costs)."""
    if DEFAULT_CONFIG_PATH.exists():
        pytest.skip(f"{DEFAULT_CONFIG_PATH} exists: observer run reads it")
    loaded = modules_of(["run", "--name", "imports", "--", "true"], env)
    # The configuration's reader and classes, logging (imported to log a warning), what
    # stores a unit's definition, and the duration parser (only --timeout, --every).
    unused = (
        "tomllib", "observer.config", "observer.alert_config", "logging",
        "observer.store.definitions", "observer.recording.definitions", "decimal",
    )  # fmt: skip
    assert sorted(loaded.intersection(unused)) == []
