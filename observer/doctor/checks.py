"""What makes observer blind or noisy on a server, judged from facts gathered elsewhere.

Pure: every check is a function of ``Facts`` and the time, so each is tested with fixed
facts and a fixed clock. ``facts.py`` gathers the facts; ``cli.py`` prints the findings.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from observer.config import Config
from observer.doctor.journald import JournaldSettings
from observer.reading.render import human_bytes
from observer.spans import human_duration
from observer.users import shown, split

USEC = 1_000_000
DAY_USEC = 86400 * USEC
# Behind the journal by more than this, observer is late (it commits within seconds).
LAG_LIMIT_USEC = 10 * 60 * USEC
# journald keeps a tenth of the file system for the journal, at most 4 GiB, by default.
DEFAULT_MAX_USE_CAP = 4 << 30
# A journal this full is rotating its oldest entries away.
FULL_SHARE = 0.9
# Failed runs newer than this with nobody told are named.
FAILING_WINDOW_USEC = 7 * DAY_USEC
# A timer that has not fired for this many of its usual intervals missed a run.
MISSED_INTERVALS = 2
MIN_TIMER_RUNS = 3
DROPIN = "/etc/systemd/journald.conf.d/observer.conf"
RESTART_JOURNALD = "systemctl restart systemd-journald"


class Severity(StrEnum):
    """How much a finding matters; ``error`` and ``warning`` need fixing (exit status 1)."""

    ERROR = "error"  # observer misses runs or loses history
    WARNING = "warning"  # observer records less than it could, or nobody hears of it
    INFO = "info"  # worth knowing; nothing to fix
    UNCHECKED = "unchecked"  # the doctor could not check (exit status 2)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing found, what it means for observer, and the line that fixes it."""

    check: str
    severity: Severity
    what: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class JournalFacts:
    """The journal as journald is configured to keep it, and as it is."""

    settings: JournaldSettings
    persistent_dir: bool  # /var/log/journal exists (what Storage=auto needs)
    oldest_entry_usec: int | None
    newest_entry_usec: int | None
    usage_bytes: int  # the journal files' size
    filesystem_bytes: int | None  # the size of the file system that holds them


@dataclass(frozen=True, slots=True)
class ManagerFacts:
    """What the service manager (system, or the user's with --user) says."""

    accounting: dict[str, bool]  # "CPU", "Memory", "IO": Default{name}Accounting=
    daemon_state: str | None  # ActiveState of observer.service; None: no such unit
    persistent: dict[str, bool]  # a recorded timer's Persistent=, as the store names it


@dataclass(frozen=True, slots=True)
class Drops:
    """Lines of a unit's output journald dropped, as recorded on its runs."""

    unit: str
    runs: int
    lines: int


@dataclass(frozen=True, slots=True)
class Failing:
    """A unit whose newest run failed, and whether an alert about it was recorded since."""

    unit: str
    failed_usec: int
    alerted: bool


@dataclass(frozen=True, slots=True)
class TimerRuns:
    """A recorded timer and the starts of the runs it triggered, oldest first."""

    timer: str
    triggers: tuple[int, ...]
    last_trigger_usec: int | None


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """What observer's database says of itself and of the runs it recorded."""

    path: str
    db_bytes: int
    free_bytes: int | None
    cursor_usec: int | None  # the time of the last journal entry it committed
    oldest_run_usec: int | None
    recent_runs: int  # finished runs in the last FAILING_WINDOW
    runs_with_cost: int  # of those, runs with a CPU or memory figure
    drops: tuple[Drops, ...] = ()
    failing: tuple[Failing, ...] = ()
    undelivered: int = 0  # alert deliveries that gave up
    timers: tuple[TimerRuns, ...] = ()
    set_aside: tuple[str, ...] = ()  # spooled runs renamed *.bad


@dataclass(frozen=True, slots=True)
class LingerFacts:
    """Users whose timers observer knows of, and the users who linger."""

    users_with_timers: tuple[str, ...]
    lingering: frozenset[str]


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the checks look at; None where it could not be gathered (``unknown``)."""

    config: Config
    journal: JournalFacts | None = None
    manager: ManagerFacts | None = None
    store: StoreFacts | None = None
    linger: LingerFacts | None = None
    unknown: dict[str, str] = field(default_factory=dict)  # which facts, and why not
    user: str | None = None  # --user: a user's own daemon
    local: bool = True  # the server's own checks apply (not a --host of another server)
    no_database: bool = False  # observer has no database here (unknown["store"] says where)


Check = Callable[[Facts, int], list[Finding]]


def _unchecked(check: str, facts: Facts, *needed: str) -> list[Finding]:
    reasons = [f"{name}: {facts.unknown[name]}" for name in needed if name in facts.unknown]
    why = "; ".join(reasons) or "its facts were not gathered"
    return [Finding(check, Severity.UNCHECKED, f"could not check ({why})")]


def _ago(now_usec: int, usec: int) -> str:
    return human_duration(max(0, now_usec - usec) / USEC)


# -- the journal -------------------------------------------------------------------------


def journal_storage(facts: Facts, now_usec: int) -> list[Finding]:
    """A journal kept only in memory cannot tell observer what ran while it was down."""
    if facts.journal is None:
        return _unchecked("journal-storage", facts, "journal")
    settings = facts.journal.settings
    where = settings.source("Storage") or "journald's default"
    fix = (
        f"mkdir -p {DROPIN.rsplit('/', 1)[0]} && printf '[Journal]\\nStorage=persistent\\n' "
        f"> {DROPIN} && {RESTART_JOURNALD}"
    )
    if settings.storage == "none":
        what = f"journald keeps nothing (Storage=none, {where}): observer sees no run at all"
        return [Finding("journal-storage", Severity.ERROR, what, fix)]
    if settings.storage == "volatile" or (
        settings.storage == "auto" and not facts.journal.persistent_dir
    ):
        how = "Storage=volatile" if settings.storage == "volatile" else "Storage=auto"
        also = "" if settings.storage == "volatile" else " and no /var/log/journal"
        what = (
            f"the journal is kept in memory only ({how}{also}, {where}): after a reboot "
            "or while observer is down, runs it did not see cannot be rebuilt"
        )
        return [Finding("journal-storage", Severity.ERROR, what, fix)]
    return []


def journal_retention(facts: Facts, now_usec: int) -> list[Finding]:
    """The journal must reach back past any time observer was not reading it."""
    if facts.journal is None:
        return _unchecked("journal-retention", facts, "journal")
    journal, settings = facts.journal, facts.journal.settings
    found = []
    cursor = facts.store.cursor_usec if facts.store is not None else None
    oldest = journal.oldest_entry_usec
    if cursor is not None and oldest is not None and oldest > cursor:
        what = (
            f"the journal's oldest entry is {_ago(now_usec, oldest)} old, but observer last "
            f"read it {_ago(now_usec, cursor)} ago: the runs in between are lost"
        )
        found.append(Finding("journal-retention", Severity.ERROR, what, _retention_fix()))
    wanted = facts.config.journal.backfill_days * DAY_USEC
    kept = settings.max_retention_seconds
    if kept is not None and kept * USEC < wanted:
        what = (
            f"journald deletes entries after {human_duration(kept)} (MaxRetentionSec=, "
            f"{settings.source('MaxRetentionSec')}): when observer is down longer, the runs "
            f"of that time are lost (observer keeps its own for "
            f"{facts.config.retention.max_age_days}d)"
        )
        found.append(Finding("journal-retention", Severity.WARNING, what, _retention_fix()))
    elif (reach := _full_reach(journal, now_usec)) is not None and reach < wanted:
        cap = settings.max_use_bytes(volatile=False)
        limit = f"SystemMaxUse={human_bytes(cap)}" if cap else "journald's default size"
        what = (
            f"the journal is full ({human_bytes(journal.usage_bytes)}, {limit}) and reaches "
            f"back only {human_duration(reach / USEC)}: when observer is down longer, the "
            "runs of that time are lost"
        )
        fix = f"raise SystemMaxUse= in {DROPIN}, then {RESTART_JOURNALD}"
        found.append(Finding("journal-retention", Severity.WARNING, what, fix))
    return found


def _retention_fix() -> str:
    return (
        f"set MaxRetentionSec= to a week or more (or remove it) in {DROPIN}, then "
        f"{RESTART_JOURNALD}"
    )


def _full_reach(journal: JournalFacts, now_usec: int) -> int | None:
    """How far back a journal that is rotating entries away reaches (None: not full)."""
    cap = journal.settings.max_use_bytes(volatile=False)
    if cap is None and journal.filesystem_bytes is not None:
        cap = min(journal.filesystem_bytes // 10, DEFAULT_MAX_USE_CAP)
    if not cap or journal.usage_bytes < FULL_SHARE * cap or journal.oldest_entry_usec is None:
        return None
    return now_usec - journal.oldest_entry_usec


def rate_limit(facts: Facts, now_usec: int) -> list[Finding]:
    """Lines journald dropped are lost to observer too."""
    if facts.store is None:
        return _unchecked("journal-rate-limit", facts, "store")
    if not facts.store.drops:
        return []
    units = ", ".join(
        f"{shown(d.unit)} ({d.lines} lines in {d.runs} run{'s' if d.runs != 1 else ''})"
        for d in sorted(facts.store.drops, key=lambda d: -d.lines)[:5]
    )
    what = f"journald dropped output of {units}"
    burst = None
    if facts.local and facts.journal is not None:
        settings = facts.journal.settings
        burst, interval = settings.rate_limit_burst, settings.rate_limit_interval_seconds
        where = settings.source("RateLimitBurst") or settings.source("RateLimitIntervalSec")
        limit = f"RateLimitBurst={burst} per RateLimitIntervalSec={human_duration(interval)}"
        what += f": its rate limit is {limit}" + (f" ({where})" if where else " (the default)")
    raised = max(10000, (burst or 0) * 10)
    fix = (
        f"set RateLimitBurst={raised} in {DROPIN}, then {RESTART_JOURNALD}; or for one "
        "unit, LogRateLimitBurst= in its [Service] (systemctl edit UNIT)"
    )
    return [Finding("journal-rate-limit", Severity.WARNING, what, fix)]


# -- the service manager --------------------------------------------------------------------


def accounting(facts: Facts, now_usec: int) -> list[Finding]:
    """Without accounting, runs have no cost (CPU, memory, IO)."""
    if facts.manager is None:
        return _unchecked("accounting", facts, "manager")
    off = [name for name, on in facts.manager.accounting.items() if not on]
    flag = "--user " if facts.user is not None else ""
    if off:
        listed = _listed([name if name.isupper() else name.lower() for name in off])
        what = (
            f"{listed} accounting {'is' if len(off) == 1 else 'are'} off: runs are recorded "
            f"without their {listed} cost"
        )
        directory = "~/.config/systemd/user.conf.d" if flag else "/etc/systemd/system.conf.d"
        settings = " ".join(f"Default{name}Accounting=yes" for name in off)
        fix = (
            f"mkdir -p {directory} && printf '%s\\n' '[Manager]' {settings} > "
            f"{directory}/accounting.conf && systemctl {flag}daemon-reexec"
        )
        return [Finding("accounting", Severity.WARNING, what, fix)]
    store = facts.store
    if store is not None and store.recent_runs >= 5 and store.runs_with_cost == 0:
        what = (
            f"accounting is on, but none of the {store.recent_runs} runs of the last 7 days "
            "has a cost: systemd tells a run's cost only while its unit is still loaded at "
            "its end, or logs it above 1 s of CPU; on a hybrid cgroup layout, never"
        )
        fix = "for the hybrid layout: boot with systemd.unified_cgroup_hierarchy=1"
        return [Finding("accounting", Severity.INFO, what, fix)]
    return []


def _listed(names: list[str]) -> str:
    """``CPU``, ``CPU and IO``, ``CPU, memory and IO``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def lingering(facts: Facts, now_usec: int) -> list[Finding]:
    """A user's timers run only while the user is logged in, unless the user lingers."""
    if facts.linger is None:
        return _unchecked("lingering", facts, "linger")
    missing = [u for u in facts.linger.users_with_timers if u not in facts.linger.lingering]
    return [
        Finding(
            "lingering",
            Severity.WARNING,
            f"user {user} has timers but does not linger: they run only while {user} is logged in",
            f"loginctl enable-linger {user}",
        )
        for user in missing
    ]


# -- alerts -------------------------------------------------------------------------------


def alert_channel(facts: Facts, now_usec: int) -> list[Finding]:
    """A failure that alerts nobody is found only by whoever looks."""
    alerts = facts.config.alerts
    failing = [] if facts.store is None else list(facts.store.failing)
    named = ", ".join(shown(f.unit) for f in failing[:5]) + (", ..." if len(failing) > 5 else "")
    has_channel = bool(alerts.channels) or any(u.channels for u in alerts.units)
    if not has_channel:
        what = "no alert channel is configured: failures alert nobody"
        if failing:
            what += f" ({len(failing)} unit{'s' if len(failing) != 1 else ''} failed in the "
            what += f"last 7 days: {named})"
        fix = 'add urls = ["mailto://..."] under [alerts] in observer.toml (docs/alerts.md)'
        return [Finding("alert-channel", Severity.WARNING, what, fix)]
    found = []
    if facts.store is not None and facts.store.undelivered:
        what = f"{facts.store.undelivered} alerts could not be delivered to their channels"
        fix = "observer alerts test, and see observer alerts for each attempt's error"
        found.append(Finding("alert-channel", Severity.WARNING, what, fix))
    quiet = [f for f in failing if not f.alerted]
    if quiet:
        names = ", ".join(shown(f.unit) for f in quiet[:5])
        what = f"failed with no alert (their rules did not fire): {names}"
        fix = "see [alerts] failures and [alerts.units] in observer.toml (docs/alerts.md)"
        found.append(Finding("alert-channel", Severity.INFO, what, fix))
    return found


# -- observer itself ----------------------------------------------------------------------


def daemon_health(facts: Facts, now_usec: int) -> list[Finding]:
    """The daemon runs and keeps up with the journal."""
    if facts.store is None and facts.no_database:
        what = f"{facts.unknown['store']}: observer has recorded nothing here"
        start = f"systemctl {'--user ' if facts.user else ''}enable --now observer"
        return [Finding("observer-daemon", Severity.ERROR, what, start)]
    if facts.store is None:
        return _unchecked("observer-daemon", facts, "store")
    state = facts.manager.daemon_state if facts.manager is not None else None
    flag = "--user " if facts.user is not None else ""
    restart = f"systemctl {flag}restart observer; journalctl {flag}-u observer says why it stopped"
    if state is not None and state != "active":
        what = f"observer.service is {state}: no run is recorded"
        return [Finding("observer-daemon", Severity.ERROR, what, restart)]
    cursor = facts.store.cursor_usec
    newest = facts.journal.newest_entry_usec if facts.journal is not None else None
    if cursor is None or newest is None or newest - cursor <= LAG_LIMIT_USEC:
        return []
    behind = human_duration((newest - cursor) / USEC)
    if state == "active":
        what = f"observer is {behind} behind the journal: runs show up late"
        fix = f"journalctl {flag}-u observer says what holds it up"
        return [Finding("observer-daemon", Severity.WARNING, what, fix)]
    what = (
        f"observer last read the journal {_ago(now_usec, cursor)} ago, {behind} behind it: "
        "its daemon does not seem to run"
    )
    start = f"systemctl {flag}enable --now observer (or start `observer daemon`)"
    return [Finding("observer-daemon", Severity.ERROR, what, start)]


def database(facts: Facts, now_usec: int) -> list[Finding]:
    """The database has room to grow, retention prunes it, no spooled run is stuck."""
    store = facts.store
    if store is None:
        return _unchecked("database", facts, "store")
    found = []
    retention = facts.config.retention
    if store.free_bytes is not None and store.free_bytes < store.db_bytes:
        what = (
            f"{store.path} is {human_bytes(store.db_bytes)} and its file system has only "
            f"{human_bytes(store.free_bytes)} free"
        )
        fix = "lower [retention] max_age_days or max_runs_per_unit in observer.toml"
        found.append(Finding("database", Severity.WARNING, what, fix))
    limit = (retention.max_age_days + 2) * DAY_USEC
    if store.oldest_run_usec is not None and now_usec - store.oldest_run_usec > limit:
        what = (
            f"the oldest run is {_ago(now_usec, store.oldest_run_usec)} old, beyond "
            f"[retention] max_age_days = {retention.max_age_days}: runs are not pruned"
        )
        fix = "keep the daemon running: it prunes old runs every hour"
        found.append(Finding("database", Severity.WARNING, what, fix))
    if store.set_aside:
        what = (
            f"{len(store.set_aside)} spooled run(s) of `observer run` could not be stored "
            f"and were set aside: {', '.join(store.set_aside[:3])}"
        )
        fix = "read them (JSON), then delete them; the daemon's log says why each was refused"
        found.append(Finding("database", Severity.WARNING, what, fix))
    return found


def missed_timers(facts: Facts, now_usec: int) -> list[Finding]:
    """A timer without Persistent= skips what fell due while the machine was off."""
    if facts.store is None or facts.manager is None:
        return _unchecked("missed-timers", facts, "store", "manager")
    found = []
    for timer in facts.store.timers:
        if facts.manager.persistent.get(timer.timer, True):
            continue
        interval = usual_interval(timer.triggers)
        known = [*timer.triggers[-1:], timer.last_trigger_usec]
        last = max((t for t in known if t is not None), default=None)
        if interval is None or last is None or now_usec - last <= MISSED_INTERVALS * interval:
            continue
        user, name = split(timer.timer)
        edit = f"systemctl {'--user ' if user else ''}edit {name}"
        what = (
            f"{shown(timer.timer)} last fired {_ago(now_usec, last)} ago, though it usually "
            f"fires every {human_duration(interval / USEC)}, and has no Persistent=true: runs "
            "due while the machine was off are never made up"
        )
        fix = f"{edit}, add [Timer] Persistent=true"
        found.append(Finding("missed-timers", Severity.WARNING, what, fix))
    return found


def usual_interval(triggers: tuple[int, ...]) -> int | None:
    """The median time between a timer's runs (None: too few runs to say)."""
    if len(triggers) < MIN_TIMER_RUNS:
        return None
    gaps = [b - a for a, b in itertools.pairwise(triggers) if b > a]
    return int(statistics.median(gaps)) if gaps else None


def configuration(facts: Facts, now_usec: int) -> list[Finding]:
    """A configuration the daemon cannot read stops it from starting."""
    if "config" not in facts.unknown:
        return []
    what = f"{facts.unknown['config']} (the daemon refuses to start; defaults checked instead)"
    return [Finding("configuration", Severity.ERROR, what, "observer check-config")]


# Checks of the server's own configuration; the others read the database.
LOCAL_CHECKS: tuple[Check, ...] = (
    configuration,
    journal_storage,
    journal_retention,
    accounting,
    lingering,
)
STORE_CHECKS: tuple[Check, ...] = (
    rate_limit, alert_channel, daemon_health, database, missed_timers
)  # fmt: skip


def examine(facts: Facts, now_usec: int) -> list[Finding]:
    """Every finding, the checks of this server's own setup only where they apply."""
    if facts.local:
        return [f for check in (*LOCAL_CHECKS, *STORE_CHECKS) for f in check(facts, now_usec)]
    scope = Finding(
        "scope",
        Severity.INFO,
        "only the database was checked for the hosts --host names: journald, accounting "
        "and lingering are checked by `observer doctor` on each of those servers",
    )
    return [scope, *(f for check in STORE_CHECKS for f in check(facts, now_usec))]


def needs_fixing(findings: list[Finding]) -> bool:
    return any(f.severity in (Severity.ERROR, Severity.WARNING) for f in findings)


def exit_status(findings: list[Finding]) -> int:
    """0 nothing to fix, 1 something to fix, 2 nothing to fix found but a check could not run."""
    if needs_fixing(findings):
        return 1
    return 2 if any(f.severity is Severity.UNCHECKED for f in findings) else 0
