"""`observer doctor`: each check judged from fixed facts and a fixed clock, journald.conf as
journald reads it, the facts read from a real database and a root in a temporary directory."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from observer.__main__ import main
from observer.alert_config import AlertsConfig, ChannelSources
from observer.config import Config, JournalConfig
from observer.doctor import checks, facts, journald
from observer.doctor.checks import (
    DAY_USEC,
    USEC,
    Drops,
    Facts,
    Failing,
    Finding,
    JournalFacts,
    LingerFacts,
    ManagerFacts,
    Severity,
    StoreFacts,
    TimerRuns,
)
from observer.doctor.cli import WIDTH, report
from observer.model import Run, Source
from observer.store import database
from tests.unit.recorded_runs import NOW_USEC, write_store

HOUR = 3600 * USEC
ALL_ON = {"CPU": True, "Memory": True, "IO": True}


def settings(text: str = "", name: str = "/etc/systemd/journald.conf") -> journald.JournaldSettings:
    return journald.read_settings([(name, f"[Journal]\n{text}")])


def journal(text: str = "", **changes: object) -> JournalFacts:
    made = JournalFacts(
        settings=settings(text),
        persistent_dir=True,
        oldest_entry_usec=NOW_USEC - 30 * DAY_USEC,
        newest_entry_usec=NOW_USEC - USEC,
        usage_bytes=100 << 20,
        filesystem_bytes=100 << 30,
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


def store(**changes: object) -> StoreFacts:
    made = StoreFacts(
        path="/var/lib/observer/observer.db",
        db_bytes=10 << 20,
        free_bytes=10 << 30,
        cursor_usec=NOW_USEC - 2 * USEC,
        oldest_run_usec=NOW_USEC - 20 * DAY_USEC,
        recent_runs=50,
        runs_with_cost=50,
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


def manager(**changes: object) -> ManagerFacts:
    made = ManagerFacts(accounting=dict(ALL_ON), daemon_state="active", persistent={})
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


WITH_CHANNEL = Config(
    alerts=AlertsConfig(present=True, channels=ChannelSources(urls=("json://x",)))
)


def healthy(**changes: object) -> Facts:
    """A server where nothing needs fixing."""
    made = Facts(
        config=WITH_CHANNEL,
        journal=journal(),
        manager=manager(),
        store=store(),
        linger=LingerFacts(users_with_timers=("alice",), lingering=frozenset({"alice"})),
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


def named(findings: list[Finding]) -> list[tuple[str, Severity]]:
    return [(f.check, f.severity) for f in findings]


def test_a_healthy_server_has_nothing_to_fix_and_exits_0() -> None:
    findings = checks.examine(healthy(), NOW_USEC)
    assert findings == []
    assert checks.exit_status(findings) == 0


# -- journald.conf ------------------------------------------------------------------------


def test_a_dropin_overrides_the_main_file_and_later_dropins_override_earlier_ones() -> None:
    read = journald.read_settings([
        ("/etc/systemd/journald.conf", "[Journal]\n#Storage=auto\nStorage=persistent\n"),
        ("/usr/lib/systemd/journald.conf.d/10-a.conf", "[Journal]\nStorage=volatile\n"),
        ("/etc/systemd/journald.conf.d/20-b.conf", "[Other]\nStorage=none\n[Journal]\n"
         "RateLimitBurst = 5\n"),
    ])  # fmt: skip
    assert read.storage == "volatile"
    assert read.source("Storage") == "/usr/lib/systemd/journald.conf.d/10-a.conf"
    assert read.rate_limit_burst == 5


def test_a_dropin_in_etc_hides_the_same_name_in_usr_lib_and_names_are_read_in_order() -> None:
    order = journald.config_order(
        ["usr/lib/systemd/journald.conf", "etc/systemd/journald.conf"],
        {
            "usr/lib/systemd/journald.conf.d": ["50-x.conf", "10-y.conf"],
            "etc/systemd/journald.conf.d": ["50-x.conf", "90-z.conf"],
        },
    )
    assert order == [
        "etc/systemd/journald.conf",
        "usr/lib/systemd/journald.conf.d/10-y.conf",
        "etc/systemd/journald.conf.d/50-x.conf",
        "etc/systemd/journald.conf.d/90-z.conf",
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("1month", 2629800), ("2w 3d", 14 * 86400 + 3 * 86400), ("90", 90),
     ("1h30min", 5400), ("", None), ("soon", None), ("5 parsecs", None)],
)  # fmt: skip
def test_time_spans_are_read_as_systemd_writes_them(text: str, seconds: float | None) -> None:
    assert journald.parse_span(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"), [("500M", 500 << 20), ("2G", 2 << 30), ("4096", 4096), ("1.5K", 1536),
                       ("", None), ("lots", None)],
)  # fmt: skip
def test_sizes_are_read_in_powers_of_1024(text: str, size: int | None) -> None:
    assert journald.parse_size(text) == size


def test_the_settings_are_read_from_the_files_under_a_root(tmp_path: Path) -> None:
    (tmp_path / "etc/systemd/journald.conf.d").mkdir(parents=True)
    (tmp_path / "run/systemd/journald.conf.d").mkdir(parents=True)
    (tmp_path / "etc/systemd/journald.conf").write_text("[Journal]\nStorage=persistent\n")
    (tmp_path / "run/systemd/journald.conf.d/a.conf").write_text("[Journal]\nStorage=volatile\n")
    (tmp_path / "etc/systemd/journald.conf.d/b.conf").write_text("[Journal]\nMaxRetentionSec=2d\n")
    read = facts.journald_settings(tmp_path)
    assert (read.storage, read.source("Storage")) == (
        "volatile",
        "/run/systemd/journald.conf.d/a.conf",
    )
    assert read.max_retention_seconds == 2 * 86400


# -- the journal --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "persistent_dir", "severity"),
    [("Storage=volatile", True, Severity.ERROR), ("", False, Severity.ERROR),
     ("Storage=none", True, Severity.ERROR), ("", True, None), ("Storage=persistent", False, None)],
)  # fmt: skip
def test_a_journal_kept_in_memory_is_an_error(
    text: str, persistent_dir: bool, severity: Severity | None
) -> None:
    found = checks.journal_storage(
        healthy(journal=journal(text, persistent_dir=persistent_dir)), NOW_USEC
    )
    assert [f.severity for f in found] == ([severity] if severity else [])
    if found:
        assert "Storage=persistent" in found[0].fix


def test_a_volatile_journal_names_the_file_that_made_it_so() -> None:
    text = "[Journal]\nStorage=volatile\n"
    made = journald.read_settings([("/etc/systemd/journald.conf.d/ram.conf", text)])
    [found] = checks.journal_storage(healthy(journal=journal(settings=made)), NOW_USEC)
    assert "/etc/systemd/journald.conf.d/ram.conf" in found.what


def test_a_journal_deleting_entries_sooner_than_a_week_is_a_warning() -> None:
    [found] = checks.journal_retention(healthy(journal=journal("MaxRetentionSec=2d")), NOW_USEC)
    assert found.severity is Severity.WARNING
    assert "2d00h" in found.what
    assert "MaxRetentionSec" in found.fix
    longer = healthy(journal=journal("MaxRetentionSec=2d"), config=Config(
        journal=JournalConfig(backfill_days=1)
    ))  # fmt: skip
    assert checks.journal_retention(longer, NOW_USEC) == []


def test_a_journal_that_lost_entries_observer_had_not_read_is_an_error() -> None:
    facts_ = healthy(
        journal=journal(oldest_entry_usec=NOW_USEC - DAY_USEC),
        store=store(cursor_usec=NOW_USEC - 3 * DAY_USEC),
    )
    [found] = checks.journal_retention(facts_, NOW_USEC)
    assert found.severity is Severity.ERROR
    assert "lost" in found.what


def test_a_full_journal_reaching_back_less_than_a_week_is_a_warning() -> None:
    full = journal("SystemMaxUse=100M", oldest_entry_usec=NOW_USEC - DAY_USEC)
    [found] = checks.journal_retention(healthy(journal=full), NOW_USEC)
    assert found.severity is Severity.WARNING
    assert "SystemMaxUse=100.0 MiB" in found.what
    assert "1d00h" in found.what
    # Not full (a tenth of 100 GiB is far away): a young journal is not a short one.
    young = journal(oldest_entry_usec=NOW_USEC - HOUR)
    assert checks.journal_retention(healthy(journal=young), NOW_USEC) == []


def test_drops_are_named_with_the_rate_limit_and_where_it_is_set() -> None:
    made = journald.read_settings(
        [("/etc/systemd/journald.conf.d/low.conf", "[Journal]\nRateLimitBurst=5\n")]
    )
    facts_ = healthy(
        journal=journal(settings=made),
        store=store(drops=(Drops("chatty.service", 2, 1900), Drops("alice/x.service", 1, 3))),
    )
    [found] = checks.rate_limit(facts_, NOW_USEC)
    assert found.severity is Severity.WARNING
    assert found.what.startswith("journald dropped output of chatty.service (1900 lines in 2 runs)")
    assert "x.service (user alice) (3 lines in 1 run)" in found.what
    assert "RateLimitBurst=5 per RateLimitIntervalSec=30.0s" in found.what
    assert "/etc/systemd/journald.conf.d/low.conf" in found.what
    assert "RateLimitBurst=10000" in found.fix
    assert checks.rate_limit(healthy(), NOW_USEC) == []


# -- the manager ---------------------------------------------------------------------------


def test_accounting_off_names_what_is_off_and_the_drop_in_that_turns_it_on() -> None:
    off = manager(accounting={"CPU": False, "Memory": True, "IO": False})
    [found] = checks.accounting(healthy(manager=off), NOW_USEC)
    assert found.severity is Severity.WARNING
    assert found.what.startswith("CPU and IO accounting are off")
    assert "'[Manager]' DefaultCPUAccounting=yes DefaultIOAccounting=yes >" in found.fix
    assert "/etc/systemd/system.conf.d" in found.fix
    assert "daemon-reexec" in found.fix


def test_accounting_on_without_any_cost_recorded_is_told_but_needs_no_fix() -> None:
    # Short oneshots nothing references are unloaded before their cost can be asked.
    [found] = checks.accounting(healthy(store=store(runs_with_cost=0)), NOW_USEC)
    assert found.severity is Severity.INFO
    assert "none of the 50 runs" in found.what
    assert checks.accounting(healthy(store=store(recent_runs=2, runs_with_cost=0)), NOW_USEC) == []


def test_users_with_timers_who_do_not_linger_are_named() -> None:
    linger = LingerFacts(users_with_timers=("alice", "bob"), lingering=frozenset({"alice"}))
    [found] = checks.lingering(healthy(linger=linger), NOW_USEC)
    assert "user bob" in found.what
    assert found.fix == "loginctl enable-linger bob"


# -- alerts ---------------------------------------------------------------------------------


def test_no_alert_channel_names_the_units_that_failed_unheard() -> None:
    failing = (Failing("backup.service", NOW_USEC - HOUR, alerted=False),)
    [found] = checks.alert_channel(healthy(config=Config(), store=store(failing=failing)), NOW_USEC)
    assert found.severity is Severity.WARNING
    assert "no alert channel" in found.what
    assert "1 unit failed" in found.what
    assert "backup.service" in found.what


def test_with_a_channel_undelivered_alerts_need_fixing_and_quiet_failures_are_told() -> None:
    failing = (Failing("backup.service", NOW_USEC - HOUR, alerted=False),
               Failing("sync.service", NOW_USEC - HOUR, alerted=True))  # fmt: skip
    found = checks.alert_channel(healthy(store=store(failing=failing, undelivered=3)), NOW_USEC)
    assert named(found) == [("alert-channel", Severity.WARNING), ("alert-channel", Severity.INFO)]
    assert "3 alerts could not be delivered" in found[0].what
    assert "backup.service" in found[1].what
    assert "sync.service" not in found[1].what


# -- observer itself ------------------------------------------------------------------------


def test_a_failed_daemon_is_an_error() -> None:
    [found] = checks.daemon_health(healthy(manager=manager(daemon_state="failed")), NOW_USEC)
    assert found.severity is Severity.ERROR
    assert "observer.service is failed" in found.what


def test_a_daemon_behind_the_journal_is_late_when_it_runs_and_gone_when_it_does_not() -> None:
    late = store(cursor_usec=NOW_USEC - HOUR)
    [running] = checks.daemon_health(healthy(store=late), NOW_USEC)
    assert running.severity is Severity.WARNING
    assert "59m59s behind the journal" in running.what
    # No observer.service (the daemon run another way): the lag alone tells.
    absent = healthy(store=late, manager=manager(daemon_state=None))
    [gone] = checks.daemon_health(absent, NOW_USEC)
    assert gone.severity is Severity.ERROR
    assert "does not seem to run" in gone.what
    assert checks.daemon_health(healthy(manager=manager(daemon_state=None)), NOW_USEC) == []


def test_no_database_is_an_error_and_the_checks_that_need_it_could_not_run() -> None:
    facts_ = healthy(store=None, no_database=True, unknown={"store": "no database at '/x.db'"})
    findings = checks.examine(facts_, NOW_USEC)
    assert ("observer-daemon", Severity.ERROR) in named(findings)
    assert ("journal-rate-limit", Severity.UNCHECKED) in named(findings)
    assert checks.exit_status(findings) == 1


def test_a_check_that_could_not_run_alone_exits_2() -> None:
    facts_ = healthy(manager=None, unknown={"manager": "cannot reach systemd"})
    findings = checks.examine(facts_, NOW_USEC)
    assert {f.check for f in findings} == {"accounting", "missed-timers"}
    assert all("cannot reach systemd" in f.what for f in findings)
    assert checks.exit_status(findings) == 2


def test_a_database_without_room_old_runs_and_set_aside_runs_are_warnings() -> None:
    facts_ = healthy(store=store(
        free_bytes=1 << 20, oldest_run_usec=NOW_USEC - 100 * DAY_USEC,
        set_aside=("/var/lib/observer/spool/x.bad",),
    ))  # fmt: skip
    found = checks.database(facts_, NOW_USEC)
    assert [f.severity for f in found] == [Severity.WARNING] * 3
    assert "only 1.0 MiB free" in found[0].what
    assert "max_age_days = 90" in found[1].what
    assert "/var/lib/observer/spool/x.bad" in found[2].what


def test_an_unreadable_configuration_is_an_error() -> None:
    findings = checks.examine(healthy(unknown={"config": "x.toml:3: bad"}), NOW_USEC)
    assert named(findings) == [("configuration", Severity.ERROR)]


# -- timers -----------------------------------------------------------------------------------


def daily(runs: int, last_ago: int) -> TimerRuns:
    last = NOW_USEC - last_ago
    return TimerRuns(
        "backup.timer", tuple(last - i * DAY_USEC for i in reversed(range(runs))), last
    )


def test_a_timer_without_persistent_that_missed_runs_is_named() -> None:
    facts_ = healthy(
        store=store(timers=(daily(5, 3 * DAY_USEC),)),
        manager=manager(persistent={"backup.timer": False}),
    )
    [found] = checks.missed_timers(facts_, NOW_USEC)
    assert "backup.timer last fired 3d00h ago" in found.what
    assert "every 1d00h" in found.what
    assert found.fix == "systemctl edit backup.timer, add [Timer] Persistent=true"


@pytest.mark.parametrize(
    ("timer", "persistent"),
    [(daily(5, 3 * DAY_USEC), True), (daily(5, DAY_USEC), False), (daily(2, 9 * DAY_USEC), False)],
    ids=["persistent", "on time", "too few runs to know its interval"],
)
def test_a_timer_that_is_persistent_on_time_or_new_is_not_named(
    timer: TimerRuns, persistent: bool
) -> None:
    facts_ = healthy(store=store(timers=(timer,)), manager=manager(
        persistent={"backup.timer": persistent}
    ))  # fmt: skip
    assert checks.missed_timers(facts_, NOW_USEC) == []


# -- another host, the report -------------------------------------------------------------------


def test_for_another_host_only_the_database_is_checked_and_that_is_said() -> None:
    facts_ = healthy(local=False, journal=None, manager=None, linger=None, config=Config(),
                     store=store(drops=(Drops("chatty.service", 1, 10),)))  # fmt: skip
    findings = checks.examine(facts_, NOW_USEC)
    assert findings[0].check == "scope"
    assert {f.check for f in findings} >= {"journal-rate-limit", "alert-channel"}
    assert not {"journal-storage", "accounting", "lingering"} & {f.check for f in findings}
    rate = next(f for f in findings if f.check == "journal-rate-limit")
    assert "RateLimitBurst=" not in rate.what  # that server's journald is not known here


def test_the_report_fits_80_columns_most_serious_first_with_the_fix_lines_wrapped() -> None:
    facts_ = healthy(
        journal=journal("Storage=volatile"), config=Config(),
        manager=manager(accounting={"CPU": False, "Memory": False, "IO": False}),
    )  # fmt: skip
    findings = checks.examine(facts_, NOW_USEC)
    text = report(findings)
    assert max(len(line) for line in text.splitlines()) <= WIDTH
    assert text.startswith("ERROR journal-storage: ")
    assert "  fix: mkdir -p /etc/systemd/journald.conf.d" in text
    assert text.splitlines()[-1] == "observer doctor: 3 to fix (1 error(s), 2 warning(s))"


def test_checks_that_could_not_run_for_one_reason_are_reported_once() -> None:
    facts_ = healthy(store=None, unknown={"store": "locked"})
    text = report(checks.examine(facts_, NOW_USEC))
    assert text.count("locked") == 1
    assert "UNCHECKED journal-rate-limit, observer-daemon, database, missed-timers" in " ".join(
        text.split()
    )


# -- facts from real files --------------------------------------------------------------------


def test_store_facts_read_drops_failures_timers_and_the_cursor_of_a_real_database(
    tmp_path: Path,
) -> None:
    db = write_store(tmp_path / "observer.db")
    conn = database.open_for_writing(db)
    chatty = Run(
        unit="chatty.service", invocation_id="c" * 32, host="host1", source=Source.BUS,
        started_usec=NOW_USEC - HOUR, finished_usec=NOW_USEC - HOUR + USEC, result="success",
    )  # fmt: skip
    database.write_batch(conn, database.Batch(runs=[chatty]))
    lost = [("c" * 32, 95, NOW_USEC - HOUR)]
    database.write_batch(conn, database.Batch(lost=lost, journal_cursor=f"s=1;t={NOW_USEC:x}"))
    conn.close()
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool/a.bad").write_text("{")
    read = facts.store_facts(facts.Where(db=db), Config(), NOW_USEC)
    assert read.drops == (Drops("chatty.service", 1, 95),)
    assert read.cursor_usec == NOW_USEC
    assert [t.timer for t in read.timers] == ["backup.timer"]
    assert read.timers[0].triggers == tuple(sorted(read.timers[0].triggers))
    assert read.set_aside == (str(tmp_path / "spool/a.bad"),)
    assert read.recent_runs > 0
    assert read.runs_with_cost == 0
    assert "backup.service" in {f.unit for f in read.failing}


def test_the_command_on_a_sandbox_root_reports_as_json_and_exits_with_what_it_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    (root / "etc/systemd/journald.conf.d").mkdir(parents=True)
    (root / "etc/systemd/journald.conf.d/ram.conf").write_text("[Journal]\nStorage=volatile\n")
    (root / "var/lib/systemd/linger").mkdir(parents=True)
    db = write_store(tmp_path / "observer.db")
    status = main([
        "doctor", "--json", "--root", str(root), "--db", str(db), "--journal-dir",
        str(tmp_path / "none"), "--bus-address", f"unix:path={tmp_path}/no-bus",
    ])  # fmt: skip
    assert status == 1
    found = {f["check"]: f for f in json.loads(capsys.readouterr().out)}
    assert found["journal-storage"]["severity"] == "error"
    assert "/etc/systemd/journald.conf.d/ram.conf" in found["journal-storage"]["what"]
    assert found["accounting"]["severity"] == "unchecked"
    assert "cannot reach systemd" in found["accounting"]["what"]
    assert set(found["alert-channel"]) == {"check", "severity", "what", "fix"}
