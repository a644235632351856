"""`observer alerts` (recent alerts and their deliveries), `observer alerts test`, the
silences: `observer alerts silence`, `silences`, `unsilence`, and `observer digest`."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from observer import users
from observer.model import ConfigError, StoreError

# typing.TYPE_CHECKING would import typing; mypy takes this one as true. Registering the
# commands (for `observer --help` too) loads no store, no alert rules, no configuration:
# each handler imports what it reads and prints with.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypedDict

    from observer.alerts import outbox

    class AttemptJson(TypedDict):
        attempt: int
        time: str | None
        duration_seconds: float
        error: str | None

    class DeliveryJson(TypedDict):
        channel: str
        status: str
        next_attempt_at: str | None
        attempts: list[AttemptJson]

    class AlertJson(TypedDict):
        id: int
        time: str | None
        unit: str
        kind: str
        summary: str
        run_id: int | None
        host: str | None  # the host of the unit alerted about (None: recorded before schema 7)
        deliveries: list[DeliveryJson]

    class TestResultJson(TypedDict):
        channel: str
        ok: bool
        error: str | None
        duration_seconds: float

    class SilenceJson(TypedDict):
        id: int
        pattern: str
        since: str | None
        until: str | None
        reason: str | None


# Errors are cut to this in the table; --json has them whole.
_ERROR_WIDTH = 70


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    """Register `observer alerts [test|silence|silences|unsilence]` and `observer digest`."""
    about = "recent alerts and the delivery of each ('observer alerts test' sends a test)"
    parser = commands.add_parser("alerts", parents=list(parents), help=about, description=about)
    parser.set_defaults(handler=_list)
    parser.add_argument("--db", type=Path, metavar="PATH", help=(
        "database to read (default: $OBSERVER_DB or /var/lib/observer/observer.db as root, "
        "~/.local/share/observer/observer.db otherwise)"
    ))  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("-n", "--limit", type=_count, default=20, help="alerts (default: 20)")
    _user_option(parser, "only the alerts of user NAME's units (systemctl --user)", action=False)
    actions = parser.add_subparsers(metavar="ACTION")
    about = "send a test notification to each configured channel and say how each went"
    test = actions.add_parser("test", parents=list(parents), help=about, description=about)
    test.set_defaults(handler=_test)
    test.add_argument("--config", metavar="PATH", help="TOML configuration file")
    test.add_argument("--json", action="store_true", help="print JSON for scripts")
    about = "hold the alerts of units matching UNIT (a name or a glob) for a while"
    silence = actions.add_parser("silence", parents=list(parents), help=about, description=about)
    silence.set_defaults(handler=_silence)
    silence.add_argument("pattern", metavar="UNIT|GLOB")
    silence.add_argument("--for", dest="duration", required=True, metavar="DURATION",
                         help='how long, like "2h" or "30m"')  # fmt: skip
    silence.add_argument("--reason", default="", metavar="TEXT", help="why, for the listing")
    _user_option(silence, "UNIT is of user NAME (systemctl --user); default: the system's, "
                 "or if you are not root your own")  # fmt: skip
    about = "the silences in force"
    listing = actions.add_parser("silences", parents=list(parents), help=about, description=about)
    listing.set_defaults(handler=_silences)
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    _user_option(listing, "only the silences of user NAME's units")
    about = "end a silence now"
    unsilence = actions.add_parser("unsilence", parents=list(parents), help=about,
                                   description=about)  # fmt: skip
    unsilence.set_defaults(handler=_unsilence)
    unsilence.add_argument("silence_id", type=_count, metavar="ID")
    for sub in (silence, listing, unsilence):
        sub.add_argument("--db", type=Path, metavar="PATH", help="database (as for alerts)")
    about = "the daily digest of the last 24 hours, as [alerts] digest_at sends it"
    daily = commands.add_parser("digest", parents=list(parents), help=about, description=about)
    daily.set_defaults(handler=_digest)
    daily.add_argument("--db", type=Path, metavar="PATH", help="database (as for alerts)")
    daily.add_argument("--json", action="store_true", help="print JSON for scripts")


def _digest(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415 (see the note at the imports)
    import socket  # noqa: PLC0415
    import sqlite3  # noqa: PLC0415

    from observer.alerts import digest, digest_facts  # noqa: PLC0415
    from observer.reading import render  # noqa: PLC0415
    from observer.store import database  # noqa: PLC0415

    path = args.db or database.default_read_path()
    conn = database.open_for_reading(path)
    now = _now_usec()
    try:
        facts = digest_facts.read(conn, socket.gethostname(), now)
    except sqlite3.Error as e:
        raise StoreError(f"cannot read the database {str(path)!r}: {e}") from e
    finally:
        conn.close()
    if args.json:
        print(json.dumps(digest.to_json(facts), indent=2))
    else:
        until = render.local_time(now).strftime("%Y-%m-%d %H:%M:%S %Z")
        print(f"[{facts.host}] {digest.title(facts)}\n\n{digest.body(facts, until)}")
    return 0


def _user_option(parser: argparse.ArgumentParser, about: str, *, action: bool = True) -> None:
    # After an action, a default would undo `observer alerts --user NAME ACTION`.
    default = argparse.SUPPRESS if action else None
    parser.add_argument("--user", metavar="NAME", default=default, help=about)


def _now_usec() -> int:
    return time.time_ns() // 1000


def _silence(args: argparse.Namespace) -> int:
    from observer.reading import render  # noqa: PLC0415
    from observer.spans import parse_seconds  # noqa: PLC0415
    from observer.store import database  # noqa: PLC0415

    try:
        seconds = parse_seconds(args.duration)
    except ValueError as e:
        raise ConfigError(f"--for: {e}") from None
    if seconds <= 0:
        raise ConfigError(f"--for {args.duration!r}: expected a duration above 0")
    pattern = args.pattern.strip()
    if not pattern:
        raise ConfigError("give the unit (or a glob like 'backup@*') to silence")
    pattern = users.silence_pattern(pattern, args.user)
    now = _now_usec()
    conn = database.open_for_writing(args.db or database.default_db_path())
    try:
        with conn:
            silence_id = conn.execute(
                "INSERT INTO alert_silences (pattern, created_usec, until_usec, reason) "
                "VALUES (?, ?, ?, ?)",
                (pattern, now, now + int(seconds * 1e6), args.reason or None),
            ).lastrowid
    finally:
        conn.close()
    until = render.table_time(now + int(seconds * 1e6))
    print(f"silence {silence_id}: alerts of {pattern} are held until {until}")
    return 0


def _silences(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415
    import sqlite3  # noqa: PLC0415

    from observer.reading import render  # noqa: PLC0415
    from observer.store import database  # noqa: PLC0415

    path = args.db or database.default_read_path()
    conn = database.open_for_reading(path)
    try:
        rows = conn.execute(
            "SELECT id, pattern, created_usec, until_usec, reason FROM alert_silences "
            "WHERE until_usec > ? ORDER BY id",
            (_now_usec(),),
        ).fetchall()
    except sqlite3.Error as e:
        raise StoreError(f"cannot read the database {str(path)!r}: {e}") from e
    finally:
        conn.close()
    silences: list[SilenceJson] = [
        {"id": r[0], "pattern": r[1], "since": render.iso_time(r[2]),
         "until": render.iso_time(r[3]), "reason": r[4]}
        for r in rows
    ]  # fmt: skip
    if args.user is not None:
        rows = [r for r in rows if users.user_of(r[1]) == args.user]
        silences = [s for s in silences if users.user_of(s["pattern"]) == args.user]
    if args.json:
        print(json.dumps(silences, indent=2))
        return 0
    table = [
        [str(r[0]), render.cell(r[1]), render.table_time(r[2]), render.table_time(r[3]),
         render.cell(r[4] or "")]
        for r in rows
    ]  # fmt: skip
    headers = ["ID", "UNITS", "SINCE", "UNTIL", "REASON"]
    print(render.table(headers, table, right={0}, empty="no silence in force"))
    return 0


def _unsilence(args: argparse.Namespace) -> int:
    from observer.store import database  # noqa: PLC0415

    now = _now_usec()
    conn = database.open_for_writing(args.db or database.default_db_path())
    try:
        with conn:
            ended = conn.execute(
                "UPDATE alert_silences SET until_usec = ? WHERE id = ? AND until_usec > ?",
                (now, args.silence_id, now),
            ).rowcount
    finally:
        conn.close()
    if not ended:
        raise ConfigError(
            f"no silence {args.silence_id} is in force ('observer alerts silences' lists them)"
        )
    print(f"silence {args.silence_id} ended: the alerts it held are sent now")
    return 0


def _count(text: str) -> int:
    if not text.isdecimal() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: use a whole number above 0")
    return int(text)


def _list(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415
    import sqlite3  # noqa: PLC0415

    from observer.alerts import outbox  # noqa: PLC0415
    from observer.store import database  # noqa: PLC0415

    path = args.db or database.default_read_path()
    conn = database.open_for_reading(path)
    try:
        records = outbox.recent_alerts(conn, limit=args.limit, user=args.user)
    except sqlite3.Error as e:
        raise StoreError(f"cannot read the database {str(path)!r}: {e}") from e
    finally:
        conn.close()
    if args.json:
        print(json.dumps([alert_json(r) for r in records], indent=2))
    else:
        print(alerts_table(records))
    return 0


def alerts_table(records: Sequence[outbox.AlertRecord]) -> str:
    """One line per alert: when, which unit, what, and how its deliveries went."""
    from observer.reading import render  # noqa: PLC0415

    rows = [
        [
            str(r.alert.id), render.table_time(r.alert.created_usec), render.cell(r.alert.unit),
            r.alert.kind, render.cell(r.alert.summary), _deliveries(r.deliveries),
        ]
        for r in records
    ]  # fmt: skip
    headers = ["ID", "TIME", "UNIT", "ALERT", "SUMMARY", "DELIVERY"]
    return render.table(headers, rows, right={0}, empty="no alerts recorded")


def _deliveries(deliveries: Sequence[outbox.DeliveryRecord]) -> str:
    if not deliveries:
        return "no channel"
    return "; ".join(f"{d.channel} {_delivery_status(d)}" for d in deliveries)


def _delivery_status(delivery: outbox.DeliveryRecord) -> str:
    from observer.alerts import outbox  # noqa: PLC0415
    from observer.reading import render  # noqa: PLC0415

    tries = len(delivery.attempts)
    error = delivery.attempts[-1].error if delivery.attempts else None
    if error is not None and len(error) > _ERROR_WIDTH:
        error = error[: _ERROR_WIDTH - 1] + "…"
    if delivery.status == outbox.HELD:
        return "held by a silence (told when it ends)"
    if delivery.status == "silenced":  # recorded by an older observer, which dropped them
        return "silenced (sent to nobody)"
    if delivery.status == outbox.SENT:
        return "sent" if tries <= 1 else f"sent (attempt {tries})"
    if delivery.status == outbox.FAILED:
        return f"failed after {tries} attempt{'s' if tries != 1 else ''}: {error}"
    if tries == 0:
        return "pending"
    return f"retrying at {render.table_time(delivery.next_attempt_usec)} ({tries} failed: {error})"


def alert_json(record: outbox.AlertRecord) -> AlertJson:
    """An alert with its deliveries and their attempts, for --json."""
    from observer.reading import render  # noqa: PLC0415

    alert = record.alert
    return {
        "id": alert.id,
        "time": render.iso_time(alert.created_usec),
        "unit": alert.unit,
        "kind": alert.kind,
        "summary": alert.summary,
        "run_id": alert.run_id,
        "host": alert.host,
        "deliveries": [
            {
                "channel": d.channel,
                "status": d.status,
                "next_attempt_at": render.iso_time(d.next_attempt_usec),
                "attempts": [
                    {
                        "attempt": a.attempt,
                        "time": render.iso_time(a.started_usec),
                        "duration_seconds": a.duration_usec / 1e6,
                        "error": a.error,
                    }
                    for a in d.attempts
                ],
            }
            for d in record.deliveries
        ],
    }


def _test(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415
    import socket  # noqa: PLC0415
    from concurrent.futures import TimeoutError as FutureTimeout  # noqa: PLC0415

    # apprise is slow to import: only this command and the daemon load it.
    from observer.alerts import send  # noqa: PLC0415
    from observer.alerts.message import test_message  # noqa: PLC0415
    from observer.alerts.secrets import redact  # noqa: PLC0415
    from observer.alerts.service import load_channels, load_heartbeat  # noqa: PLC0415
    from observer.config import load_config  # noqa: PLC0415
    from observer.reading import render  # noqa: PLC0415
    from observer.spans import human_duration  # noqa: PLC0415

    config = load_config(Path(args.config) if args.config else None)
    global_channels, unit_channels = load_channels(config, in_child=False)
    channels = {c.key: c for c in global_channels}
    for per_unit in unit_channels.values():
        channels.update((c.key, c) for c in per_unit)
    heartbeat = load_heartbeat(config)
    if not channels and heartbeat is None:
        raise ConfigError(
            "no notification channel is configured: set urls, urls_credential or urls_file "
            "in the [alerts] section of the config"
        )
    host = config.host or socket.gethostname()
    timeout = config.alerts.send_timeout
    results: list[TestResultJson] = []
    jobs = [
        (c.name, send.in_thread(_timed, send.notify, c, test_message(host, c.name)))
        for c in channels.values()
    ]
    if heartbeat is not None:
        ping = send.in_thread(_timed, send.ping, heartbeat, min(10.0, timeout))
        jobs.append((f"heartbeat {redact(heartbeat)}", ping))
    deadline = time.monotonic() + timeout
    for name, job in jobs:
        try:
            error, seconds = job.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            error, seconds = f"no answer within {human_duration(timeout)}", timeout
        results.append(
            {"channel": name, "ok": error is None, "error": error, "duration_seconds": seconds}
        )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        rows = [
            [r["channel"], "sent" if r["ok"] else "FAILED", human_duration(
                r["duration_seconds"]), r["error"] or ""]
            for r in results
        ]  # fmt: skip
        print(render.table(["CHANNEL", "RESULT", "TIME", "ERROR"], rows, right={2}, empty=""))
    return 0 if all(r["ok"] for r in results) else 1


def _timed(fn: Callable[..., str | None], *args: object) -> tuple[str | None, float]:
    start = time.monotonic()
    error = fn(*args)
    return error, time.monotonic() - start
