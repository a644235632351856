"""No run is lost or recorded twice when the daemon, the bus or systemd itself is disrupted."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from observer.model import Run, Source
from observer.store import database, retention
from tests.integration.observed import ObserverDaemon, observer_cmd, oneshot
from tests.sandbox import Sandbox
from tests.waiting import settled, wait_for

pytestmark = pytest.mark.integration

T = TypeVar("T")

SECOND = 1_000_000
DAY = 86400 * SECOND
REMOTE = Path("/lib/systemd/systemd-journal-remote")


def install_script(sandbox: Sandbox, name: str, text: str) -> str:
    """Write an executable script to /usr/local/bin inside; return its path there."""
    path = sandbox.root / "usr/local/bin" / name
    path.write_text(text)
    path.chmod(0o755)
    return f"/usr/local/bin/{name}"


def messages(daemon: ObserverDaemon, run_id: int) -> list[str]:
    return [str(line["message"]) for line in daemon.json("show", str(run_id))["output"]]


def wrong_output(
    daemon: ObserverDaemon, expected: dict[int, list[str]], timeout: float = 30
) -> dict[int, tuple[list[str], list[str]]]:
    """Wait for each run to show exactly its expected output (it can trail the run's end);
    return run ID -> (expected, shown) for the runs that never did."""
    shown: dict[int, list[str]] = {}

    def show_pending() -> dict[int, list[str]]:
        pending = [run_id for run_id, lines in expected.items() if shown.get(run_id) != lines]
        shown.update({run_id: messages(daemon, run_id) for run_id in pending})
        return shown

    settled(show_pending, lambda seen: seen == expected, timeout=timeout)
    return {
        run_id: (lines, shown[run_id])
        for run_id, lines in expected.items()
        if shown[run_id] != lines
    }


# -- the daemon killed in the middle of a burst ----------------------------------------

BURST = 60
# The second half of the burst starts only once /run/burst-go exists, which the test
# creates after it killed the daemon; even runs of the first half wait for it too, so that
# they are running when the daemon dies and end while it is down.
BURST_LAUNCHER = f"""\
#!/bin/sh
for i in $(seq 1 {BURST}); do
    if [ "$i" -eq {BURST // 2 + 1} ]; then
        while [ ! -e /run/burst-go ]; do sleep 0.05; done
    fi
    systemd-run --quiet --no-block --unit="burst-$i" --service-type=oneshot \\
        /usr/local/bin/burst-run "$i"
done
"""
BURST_RUN = f"""\
#!/bin/sh
echo "burst $1 began $INVOCATION_ID"
if [ "$1" -le {BURST // 2} ] && [ $(($1 % 2)) -eq 0 ]; then
    while [ ! -e /run/burst-go ]; do sleep 0.05; done
fi
echo "burst $1 ended"
[ $(($1 % 5)) -ne 0 ] || exit 3
"""


def test_a_daemon_killed_in_the_middle_of_a_burst_records_every_run_exactly_once_when_restarted(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    install_script(sandbox, "burst-run", BURST_RUN)
    sandbox.systemd_run(install_script(sandbox, "launch-burst", BURST_LAUNCHER), unit="launcher")
    wait_for(
        lambda: len(observed.runs("burst-*")) >= 10, timeout=60, what="the burst to be under way"
    )

    observed.kill()
    sandbox.run("touch", "/run/burst-go")
    observed.start()
    sandbox.wait_inactive("launcher.service", timeout=120)
    assert_burst_recorded_once(observed)


def test_a_daemon_stopped_again_and_again_in_a_burst_records_every_run_and_line_once(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    """SIGTERM while journal batches are under way: each stop lets the batch it cut into
    end before the last write, so no line is committed without its cursor and stored a
    second time when the next start reads that batch again."""
    install_script(sandbox, "burst-run", BURST_RUN)
    sandbox.systemd_run(install_script(sandbox, "launch-burst", BURST_LAUNCHER), unit="launcher")
    wait_for(
        lambda: len(observed.runs("burst-*")) >= 10, timeout=60, what="the burst to be under way"
    )
    assert observed.stop() == 0
    sandbox.run("touch", "/run/burst-go")
    for _ in range(3):  # the second half's runs end while it starts and stops
        observed.start()
        assert observed.stop() == 0
    observed.start()
    sandbox.wait_inactive("launcher.service", timeout=120)
    assert_burst_recorded_once(observed)


def assert_burst_recorded_once(observed: ObserverDaemon) -> None:
    """Every run of the burst recorded once, with its result and exactly its two lines."""

    def finished(runs: list[dict[str, Any]]) -> bool:
        return sum(run["finished_at"] is not None for run in runs) >= BURST

    runs = settled(lambda: observed.runs("burst-*"), finished, timeout=60)
    units = sorted(run["unit"] for run in runs)
    assert units == sorted(f"burst-{i}.service" for i in range(1, BURST + 1))
    assert len({run["invocation_id"] for run in runs}) == BURST
    outcomes = {run["unit"]: (run["result"], run["exit_status"]) for run in runs}
    assert outcomes == {
        f"burst-{i}.service": ("exit-code", 3) if i % 5 == 0 else ("success", 0)
        for i in range(1, BURST + 1)
    }
    expected = {
        run["id"]: [f"burst {n} began {run['invocation_id']}", f"burst {n} ended"]
        for run in runs
        for n in [run["unit"].removeprefix("burst-").removesuffix(".service")]
    }
    assert wrong_output(observed, expected) == {}


# -- runs going on while the bus or the manager is disrupted -----------------------------

TICK = """\
#!/bin/sh
echo "$INVOCATION_ID" >> /run/ticks
echo "tick $INVOCATION_ID"
# long enough that the daemon can still ask the run's job which timer queued it
sleep 0.3
"""
TICK_SERVICE = """\
[Unit]
# one start a second would hit the default start limit (5 in 10 s)
StartLimitIntervalSec=0
[Service]
Type=oneshot
ExecStart=/usr/local/bin/tick
"""
TICK_TIMER = "[Timer]\nOnCalendar=*:*:*\nAccuracySec=1ms\n"
HELD = """\
#!/bin/sh
echo "held $INVOCATION_ID"
while [ ! -e /run/release-held ]; do sleep 0.1; done
echo released
"""


def ticks(sandbox: Sandbox) -> list[str]:
    """The invocation IDs of tick.service's runs so far, as the runs wrote them, in order."""
    path = sandbox.root / "run/ticks"
    return path.read_text().split() if path.exists() else []


def tick_recorded_via_the_bus(sandbox: Sandbox, daemon: ObserverDaemon, after: int) -> str:
    """Wait for a run begun after the first ``after`` ticks that was seen on the bus and
    named with its timer; return its invocation ID."""

    def found() -> str | None:
        later = set(ticks(sandbox)[after:])
        for run in daemon.history("tick"):
            seen = (run["source"], run["trigger"]) == ("bus", "tick.timer")
            if seen and run["invocation_id"] in later:
                return str(run["invocation_id"])
        return None

    return wait_for(found, timeout=60, what=f"a tick after the first {after} seen on the bus")


def restart_dbus(sandbox: Sandbox) -> None:
    sandbox.restart_dbus()


def daemon_reload(sandbox: Sandbox) -> None:
    sandbox.daemon_reload()


def daemon_reexec(sandbox: Sandbox) -> None:
    sandbox.daemon_reexec()


def start_ticking(sandbox: Sandbox, daemon: ObserverDaemon) -> None:
    """tick.service, started every second by tick.timer, seen three times with its timer."""
    sandbox.write_unit("tick.service", TICK_SERVICE)
    sandbox.write_unit("tick.timer", TICK_TIMER)
    install_script(sandbox, "tick", TICK)
    sandbox.daemon_reload()
    sandbox.systemctl("start", "tick.timer")
    wait_for(
        lambda: len([r for r in daemon.history("tick") if r["trigger"] == "tick.timer"]) >= 3,
        timeout=60,
        what="three ticks seen with their timer",
    )


@pytest.mark.parametrize(
    "disrupt",
    [restart_dbus, daemon_reload, daemon_reexec],
    ids=["a-restart-of-dbus-daemon", "a-daemon-reload", "a-daemon-reexec"],
)
def test_no_run_is_lost_or_recorded_twice_across(
    sandbox: Sandbox, observed: ObserverDaemon, disrupt: Callable[[Sandbox], None]
) -> None:
    sandbox.write_unit("held.service", "[Service]\nType=oneshot\nExecStart=/usr/local/bin/held\n")
    install_script(sandbox, "held", HELD)
    start_ticking(sandbox, observed)
    # A run that spans the disruption: it begins before and ends after.
    sandbox.start("held.service", wait=False)
    wait_for(lambda: observed.history("held"), timeout=30, what="held.service to begin")

    disrupt(sandbox)
    after = len(ticks(sandbox)) + 1  # the next tick may begin while the daemon recovers
    sandbox.run("touch", "/run/release-held")
    # Only the bus names a run's timer: the daemon is subscribed again.
    seen_again = tick_recorded_via_the_bus(sandbox, observed, after)
    resumed = ticks(sandbox).index(seen_again)
    wait_for(lambda: len(ticks(sandbox)) > resumed + 3, timeout=30, what="three more ticks")
    sandbox.systemctl("stop", "tick.timer")
    sandbox.wait_inactive("tick.service")

    ran = ticks(sandbox)
    assert len(set(ran)) == len(ran) > after

    def recorded_all(runs: list[dict[str, Any]]) -> bool:
        return {run["invocation_id"] for run in runs if run["finished_at"]} >= set(ran)

    runs = settled(lambda: observed.history("tick"), recorded_all, timeout=60)
    assert sorted(run["invocation_id"] for run in runs) == sorted(ran)
    assert {(run["result"], run["exit_status"]) for run in runs} == {("success", 0)}
    # Once subscribed again, every run is named with its timer.
    triggers = {run["invocation_id"]: run["trigger"] for run in runs}
    assert {invocation: triggers[invocation] for invocation in ran[resumed:]} == dict.fromkeys(
        ran[resumed:], "tick.timer"
    )
    expected = {run["id"]: [f"tick {run['invocation_id']}"] for run in runs}
    assert wrong_output(observed, expected) == {}

    [held] = settled(
        lambda: observed.history("held"), lambda runs: bool(runs[0]["finished_at"]), timeout=30
    )
    assert (held["result"], held["exit_status"]) == ("success", 0)
    held_output = [f"held {held['invocation_id']}", "released"]
    assert wrong_output(observed, {held["id"]: held_output}) == {}


# -- which units are observed ------------------------------------------------------------


def test_runs_of_units_the_config_excludes_are_not_recorded(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    daemon = ObserverDaemon(sandbox, tmp_path, config='[observe]\nexclude = ["noisy*"]\n')
    try:
        daemon.start()
        sandbox.write_unit("noisy.service", oneshot("echo chatter"))
        sandbox.write_unit("noisy-cleanup.service", oneshot("echo more chatter"))
        sandbox.write_unit("quiet.service", oneshot("echo done"))
        sandbox.daemon_reload()
        sandbox.start("noisy.service")
        sandbox.start("noisy-cleanup.service")
        sandbox.start("quiet.service")

        # quiet ran last: once its output is stored, the daemon has read past the others.
        [quiet] = daemon.finished_runs("quiet", 1)
        assert daemon.output(quiet["id"], 1) == ["done"]
        assert_not_recorded(daemon, sandbox, "noisy.service", "noisy-cleanup.service")
    finally:
        daemon.close()


def test_only_runs_of_units_the_config_includes_are_recorded(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    daemon = ObserverDaemon(sandbox, tmp_path, config='[observe]\ninclude = ["app-*.service"]\n')
    try:
        daemon.start()
        sandbox.write_unit("other.service", oneshot("echo other"))
        sandbox.write_unit("app-web.service", oneshot("echo serving"))
        sandbox.daemon_reload()
        sandbox.start("other.service")
        sandbox.start("app-web.service")

        [web] = daemon.finished_runs("app-web", 1)
        assert daemon.output(web["id"], 1) == ["serving"]
        assert {run["unit"] for run in daemon.runs("*")} == {"app-web.service"}
        assert_not_recorded(daemon, sandbox, "other.service")
    finally:
        daemon.close()


def assert_not_recorded(daemon: ObserverDaemon, sandbox: Sandbox, *units: str) -> None:
    """Neither a run nor a line of output of these units (which ran) is in the database."""
    recorded = {run["unit"] for run in daemon.runs("*")}
    assert recorded.isdisjoint(units), recorded
    for unit in units:
        missing = daemon.cli("history", unit, check=False)
        assert (missing.returncode, missing.stdout) == (1, ""), missing
        assert f"no runs recorded for unit {unit!r}" in missing.stderr
        # It did run: systemd logged its invocation (the unit itself is unloaded by now).
        journal = [json.loads(e) for e in sandbox.journal("-u", unit, "-o", "json").splitlines()]
        [invocation_id] = {e["INVOCATION_ID"] for e in journal if e.get("UNIT") == unit}
        assert daemon.cli("show", invocation_id, check=False).returncode == 1
        with contextlib.closing(sqlite3.connect(daemon.db)) as conn:
            for table in ("runs", "output", "output_stats"):
                query = f"SELECT count(*) FROM {table} WHERE invocation_id = ?"
                assert conn.execute(query, (invocation_id,)).fetchone() == (0,), table


# -- retention ---------------------------------------------------------------------------


def invocation(n: int) -> str:
    return f"{n:032x}"


def past_run(unit: str, n: int, started_usec: int) -> Run:
    return Run(
        unit=unit,
        invocation_id=invocation(n),
        host="host1",
        source=Source.BUS,
        started_usec=started_usec,
        finished_usec=started_usec + SECOND,
        result="success",
        exit_code="exited",
        exit_status=0,
    )


def write_past_runs(path: Path, now_usec: int) -> None:
    """archive.service: 2 runs 100 days ago and 1 yesterday; report.service: 5 in the last
    5 hours; each with a line of output. Plus output whose run was never recorded: old
    (invocation 98) and recent (99)."""
    runs = [
        past_run("archive.service", 1, now_usec - 101 * DAY),
        past_run("archive.service", 2, now_usec - 100 * DAY),
        past_run("archive.service", 3, now_usec - DAY),
        *(past_run("report.service", 10 + i, now_usec - (5 - i) * 3600 * SECOND) for i in range(5)),
    ]
    orphans = [(98, now_usec - 100 * DAY), (99, now_usec - 3600 * SECOND)]
    printed = [(int(r.key, 16), r.started_usec or 0) for r in runs] + orphans
    lines = [
        database.StoredLine(invocation(n), 0, at, 6, f"line {n}".encode()) for n, at in printed
    ]
    counts = {
        invocation(n): database.OutputCounts(invocation(n), 1, 6, 0, 0, None, at)
        for n, at in printed
    }
    conn = database.open_for_writing(path)
    try:
        database.write_batch(conn, database.Batch(runs=runs, lines=lines, counts=counts))
    finally:
        conn.close()


def output_kept(db: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        output = {row[0] for row in conn.execute("SELECT invocation_id FROM output")}
        stats = {row[0] for row in conn.execute("SELECT invocation_id FROM output_stats")}
    assert output == stats
    return output


def cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        observer_cmd(*args, "--db", str(db)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_retention_applied(db: Path) -> None:
    """Runs older than 30 days and all but the newest 3 runs of a unit are gone with their
    output; output of no recorded run goes once older than 30 days."""

    def history(unit: str) -> list[str]:
        listed = cli(db, "history", unit, "--json")
        assert listed.returncode == 0, listed.stderr
        return [run["invocation_id"] for run in json.loads(listed.stdout)]

    assert history("archive") == [invocation(3)]
    assert history("report") == [invocation(14), invocation(13), invocation(12)]
    for gone in (1, 2, 10, 11):
        shown = cli(db, "show", invocation(gone))
        assert (shown.returncode, shown.stdout) == (1, "")
        assert f"no run {invocation(gone)!r} is recorded" in shown.stderr
    shown = cli(db, "show", invocation(14), "--json")
    assert [line["message"] for line in json.loads(shown.stdout)["output"]] == ["line 14"]
    kept = {invocation(n) for n in (3, 12, 13, 14, 99)}
    assert output_kept(db) & {invocation(n) for n in range(100)} == kept


RETENTION_CONFIG = "[retention]\nmax_age_days = 30\nmax_runs_per_unit = 3\n"


def test_pruning_a_database_deletes_old_runs_and_surplus_runs_with_their_output(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    now_usec = time.time_ns() // 1000
    write_past_runs(db, now_usec)

    conn = database.open_for_writing(db)
    try:
        deleted = retention.prune(conn, older_than_usec=now_usec - 30 * DAY, keep_per_unit=3)
    finally:
        conn.close()

    assert deleted == 4
    assert_retention_applied(db)


def test_the_daemon_applies_retention_to_the_database_it_starts_on(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    daemon = ObserverDaemon(sandbox, tmp_path, config=RETENTION_CONFIG)
    write_past_runs(daemon.db, time.time_ns() // 1000)
    try:
        daemon.start()
        wait_for(
            lambda: len(daemon.history("report")) == 3,
            timeout=90,
            what="the daemon to delete runs past its retention limits",
        )
        assert_retention_applied(daemon.db)
    finally:
        daemon.close()


# -- the database file -------------------------------------------------------------------


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def modes(db: Path) -> dict[str, int]:
    files = [db.parent, db, db.with_name(f"{db.name}-wal"), db.with_name(f"{db.name}-shm")]
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in files}


def test_the_database_and_its_wal_files_are_not_world_readable_even_under_umask_0(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    daemon = ObserverDaemon(sandbox, tmp_path)
    daemon.db = tmp_path / "state" / "observer.db"  # a directory the daemon creates
    try:
        with umask(0):
            daemon.start()
        sandbox.write_unit("secret.service", oneshot("echo token=hunter2"))
        sandbox.daemon_reload()
        sandbox.start("secret.service")
        [run] = daemon.finished_runs("secret", 1)
        assert daemon.output(run["id"], 1) == ["token=hunter2"]

        assert {name: mode & 0o007 for name, mode in modes(daemon.db).items()} == {
            "state": 0,
            "observer.db": 0,
            "observer.db-wal": 0,
            "observer.db-shm": 0,
        }
    finally:
        daemon.close()


def test_a_world_readable_database_is_made_private_when_the_daemon_opens_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    daemon = ObserverDaemon(sandbox, tmp_path)
    daemon.db.touch()
    daemon.db.chmod(0o666)
    try:
        daemon.start()
        sandbox.write_unit("secret.service", oneshot("echo token=hunter2"))
        sandbox.daemon_reload()
        sandbox.start("secret.service")
        daemon.finished_runs("secret", 1)

        assert {name: mode & 0o007 for name, mode in modes(daemon.db).items()} == {
            tmp_path.name: 0,
            "observer.db": 0,
            "observer.db-wal": 0,
            "observer.db-shm": 0,
        }
    finally:
        daemon.close()


def test_the_cli_reads_while_the_daemon_writes(sandbox: Sandbox, observed: ObserverDaemon) -> None:
    sandbox.write_unit("first.service", oneshot("echo first"))
    sandbox.write_unit("second.service", oneshot("echo second"))
    sandbox.daemon_reload()
    sandbox.start("first.service")
    observed.finished_runs("first", 1)

    # Without WAL, a reader in the middle of a transaction would hold every commit back.
    with contextlib.closing(sqlite3.connect(observed.db, isolation_level=None)) as reader:
        assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        reader.execute("BEGIN")
        before = reader.execute("SELECT count(*) FROM runs").fetchone()
        sandbox.start("second.service")
        [second] = observed.finished_runs("second", 1)
        assert observed.output(second["id"], 1) == ["second"]
        # ... and the reader still sees the snapshot its transaction began with.
        assert reader.execute("SELECT count(*) FROM runs").fetchone() == before
        reader.execute("COMMIT")

    # The CLI answers all along a stream of runs being written.
    script = "for i in $(seq 1 30); do systemd-run --quiet --unit=stream-$i /bin/echo $i; done"
    sandbox.systemd_run("/bin/sh", "-c", script, unit="streamer")
    counts = [0]
    deadline = time.monotonic() + 60
    while counts[-1] < 30 and time.monotonic() < deadline:
        listed = observed.runs("stream-*")  # raises if the CLI fails
        counts.append(sum(run["finished_at"] is not None for run in listed))
    assert counts[-1] == 30
    assert counts == sorted(counts)


# -- a hostile number in the journal ------------------------------------------------------

UINT64_MAX = str(2**64 - 1)


def forged_pid1_record(unit: str, invocation_id: str) -> str:
    """PID 1's "Main process exited" record of a run, its figures past SQLite's integers,
    in journal export format (trusted fields too: as a fleet host could send it)."""
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
    fields = {
        "__REALTIME_TIMESTAMP": str(time.time_ns() // 1000),
        "__MONOTONIC_TIMESTAMP": str(time.monotonic_ns() // 1000),
        "_BOOT_ID": boot_id,
        "_PID": "1",
        "MESSAGE_ID": "98e322203f7a4ed290d09fe03c09fe15",
        "MESSAGE": f"{unit}: Main process exited, code=exited, status=255/EXCEPTION",
        "UNIT": unit,
        "INVOCATION_ID": invocation_id,
        "EXIT_CODE": "exited",
        "EXIT_STATUS": UINT64_MAX,
        "N_RESTARTS": UINT64_MAX,
    }
    return "".join(f"{name}={value}\n" for name, value in fields.items()) + "\n"


def test_a_journal_record_with_a_number_past_2_63_costs_that_fact_not_the_daemon(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    if not REMOTE.exists():
        pytest.skip("needs the Debian package systemd-journal-remote (packaging/dev-setup.sh)")
    textfiles = tmp_path / "textfiles"
    textfiles.mkdir()
    config = f'[metrics]\nlisten = ""\ntextfile_directory = "{textfiles}"\n'
    daemon = ObserverDaemon(sandbox, tmp_path, config)
    daemon.start()
    try:
        sandbox.systemd_run(
            "/bin/sh", "-c", "while [ ! -e /run/hostile-go ]; do sleep 0.05; done; exit 3",
            unit="hostile",
        )  # fmt: skip
        invocation_id = sandbox.run(
            "systemctl", "show", "-p", "InvocationID", "--value", "hostile.service"
        ).stdout.strip()
        assert len(invocation_id) == 32
        # Into the journal directory the daemon reads, as a file of its own (journald
        # itself takes _PID from the sender: only a crafted file or a fleet host can lie).
        forged = tmp_path / "forged.journal"
        subprocess.run(
            [str(REMOTE), "-o", str(forged), "-"],
            input=forged_pid1_record("hostile.service", invocation_id),
            text=True, check=True, capture_output=True,
        )  # fmt: skip
        placed = sandbox.journal_dir / "forged.journal~"
        placed.write_bytes(forged.read_bytes())
        placed.rename(placed.with_name("forged.journal"))
        wait_for(
            lambda: "EXIT_STATUS = 18446744073709551615 is out of range" in daemon.log(),
            timeout=30, what="the daemon to read the forged record", check=daemon._alive,
        )  # fmt: skip
        sandbox.run("touch", "/run/hostile-go")

        [run] = daemon.finished_runs("hostile.service", 1, timeout=30)
        assert (run["invocation_id"], run["result"], run["exit_status"]) == (
            invocation_id, "exit-code", 3,
        )  # fmt: skip
        prom = textfiles / "observer.prom"
        wait_for(
            lambda: prom.exists() and 'field="EXIT_STATUS"' in prom.read_text(),
            timeout=30, what="the rejected value to be counted in the textfile",
        )  # fmt: skip
        counted = [
            line for line in prom.read_text().splitlines()
            if line.startswith("observer_input_rejected_total{")
        ]  # fmt: skip
        assert any('source="journal",field="EXIT_STATUS"} 1.0' in line for line in counted)
        assert any('source="journal",field="N_RESTARTS"} 1.0' in line for line in counted)
        assert daemon.process is not None
        assert daemon.process.poll() is None  # still recording
    finally:
        daemon.close()
