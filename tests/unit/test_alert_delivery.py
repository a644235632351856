"""Delivery through apprise to a real HTTP receiver on loopback, the heartbeat, the service
inside an event loop, and the `observer alerts` commands."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import time_machine

from observer.__main__ import main
from observer.alert_config import AlertsConfig, ChannelSources
from observer.alerts import outbox, send
from observer.alerts.message import Message
from observer.alerts.secrets import Channel
from observer.alerts.service import AlertService, settled_units
from observer.alerts.state import AlertLedger
from observer.config import Config
from observer.model import ConfigError, Run, Source
from observer.store import database
from tests.receiver import Receiver
from tests.unit.recorded_runs import MINUTE, NOW, NOW_USEC, SECOND, invocation
from tests.waiting import wait_for_async

MESSAGE = Message("[host1] backup.service failed", "backup.service on host1 failed.", "failure")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def test_a_notification_reaches_a_json_webhook_with_title_body_and_type(
    receiver: Receiver,
) -> None:
    assert send.notify(Channel.of(receiver.json_url), MESSAGE) is None
    [post] = receiver.posts()
    assert (post["title"], post["message"], post["type"]) == (
        "[host1] backup.service failed",
        "backup.service on host1 failed.",
        "failure",
    )


def test_a_receiver_answering_500_is_an_error_without_the_urls_secrets(
    receiver: Receiver,
) -> None:
    receiver.status = 500
    url = f"json://127.0.0.1:{receiver.port}/hook-s3cret-path?token=t0ps3cret"
    error = send.notify(Channel.of(url), MESSAGE)
    assert error is not None
    assert "500" in error
    assert "s3cret" not in error


def test_a_heartbeat_is_a_get_and_an_error_status_or_silence_is_reported(
    receiver: Receiver,
) -> None:
    assert send.ping(receiver.http_url, timeout=5) is None
    assert receiver.received[0].method == "GET"
    receiver.status = 503
    assert send.ping(receiver.http_url, timeout=5) == "HTTP 503 Service Unavailable"
    receiver.status, receiver.hang_seconds = 200, 10
    error = send.ping(receiver.http_url, timeout=0.3)
    assert error is not None
    assert "timed out" in error


def alert_config(url: str, **settings: object) -> Config:
    alerts = AlertsConfig(
        present=True,
        channels=ChannelSources(urls=(url,)),
        check_interval=0.2,
        retry_delay=0.2,
        send_timeout=5,
    )
    return Config(alerts=alerts._replace(**settings))  # type: ignore[arg-type]


def failed_run(n: int, at: int) -> Run:
    return Run(
        unit="backup.service", invocation_id=invocation(n), host="host1", source=Source.BUS,
        started_usec=at - SECOND, finished_usec=at, result="exit-code", exit_code="exited",
        exit_status=3,
    )  # fmt: skip


def two_failures(db: Path) -> list[Run]:
    now = time.time_ns() // 1000
    runs = [failed_run(1, now - 2 * SECOND), failed_run(2, now - SECOND)]
    conn = database.open_for_writing(db)
    # Alerting "started" before these runs: they are news, not history.
    conn.execute("INSERT INTO state VALUES ('alerts_since_usec', ?)", (now - MINUTE,))
    conn.commit()
    for run in runs:
        database.write_batch(conn, database.Batch(runs=[run]))
    conn.close()
    return runs


def attempts(db: Path) -> list[tuple[int, str | None]]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.execute("SELECT attempt, error FROM alert_attempts ORDER BY attempt"))
    finally:
        conn.close()


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel the service and wait for it to end (a test must not hang if it does not)."""
    task.cancel()
    async with asyncio.timeout(30):
        await asyncio.gather(task, return_exceptions=True)


def checked_as_of(caplog: pytest.LogCaptureFixture, usec: int) -> bool:
    """Whether a pass of the service's alert checks as of ``usec`` or later has ended."""
    prefix = "alerts: checked as of "
    return any(
        int(message.removeprefix(prefix)) >= usec
        for message in (record.getMessage() for record in caplog.records)
        if message.startswith(prefix)
    )


def pending(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        query = "SELECT COUNT(*) FROM alert_deliveries WHERE status = ?"
        return int(conn.execute(query, (outbox.PENDING,)).fetchone()[0])
    finally:
        conn.close()


async def test_the_service_delivers_one_alert_for_two_failures_and_records_the_attempt(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="observer.alerts.service")
    db = tmp_path / "observer.db"
    runs = two_failures(db)
    service = AlertService(alert_config(receiver.json_url), db, "host1")
    task = asyncio.create_task(service.run())
    try:
        service.runs_recorded(runs)
        await wait_for_async(lambda: attempts(db), timeout=30, what="the first attempt")
        # A second alert, were there one, would be made by a check after the first attempt
        # (it judges the runs again if that were wrong) and sent by then.
        attempted = time.time_ns() // 1000
        await wait_for_async(
            lambda: checked_as_of(caplog, attempted), timeout=30, what="a check after it"
        )
        await wait_for_async(lambda: pending(db) == 0, timeout=30, what="no pending delivery")
    finally:
        await stop(task)
    [post] = receiver.posts()
    assert post["title"] == "[host1] backup.service failed 2 times in a row (exit-code)"
    assert "Full run: observer show 2" in post["message"]
    assert attempts(db) == [(1, None)]


async def test_a_run_recorded_while_another_settles_is_judged_once_it_has_settled_itself(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "observer.db"
    now = time.time_ns() // 1000
    conn = database.open_for_writing(db)
    try:
        conn.execute("INSERT INTO state VALUES ('alerts_since_usec', ?)", (now - MINUTE,))
        conn.commit()
        other = failed_run(1, now)._replace(unit="other.service", result="success")
        database.write_batch(conn, database.Batch(runs=[other]))
        # No check comes (the first waits an hour): only the judgement of what was recorded
        # can make the alert.
        config = alert_config(receiver.json_url, check_interval=3600.0)
        service = AlertService(config, db, "host1")
        task = asyncio.create_task(service.run())
        try:
            service.runs_recorded([other])
            await asyncio.sleep(1)  # half-way through the other run's settling
            now = time.time_ns() // 1000
            runs = [failed_run(2, now - SECOND), failed_run(3, now)]
            database.write_batch(conn, database.Batch(runs=runs))
            service.runs_recorded(runs)
            # Judged with the other run, the second failure (not settled then) was dropped.
            await wait_for_async(receiver.posts, timeout=30, what="backup's alert")
        finally:
            await stop(task)
    finally:
        conn.close()
    [post] = receiver.posts()
    assert post["title"] == "[host1] backup.service failed 2 times in a row (exit-code)"


@pytest.mark.parametrize(
    ("ends", "now", "settled", "wait"),
    [
        ({}, 10_000_000, {}, None),
        ({("h", "a"): 1_000_000}, 3_000_000, {("h", "a"): 1_000_000}, None),
        ({("h", "a"): 1_000_000}, 2_999_999, {}, 0.000001),
        (
            {("h", "a"): 1_000_000, ("h", "b"): 2_500_000, ("h", "c"): 2_000_000},
            3_500_000,
            {("h", "a"): 1_000_000},
            0.5,
        ),
    ],
)
def test_units_are_judged_when_their_newest_end_has_settled(
    ends: dict[tuple[str, str], int],
    now: int,
    settled: dict[tuple[str, str], int],
    wait: float | None,
) -> None:
    found, waited = settled_units(ends, now, 2_000_000)
    assert found == settled
    assert waited == (None if wait is None else pytest.approx(wait))


@pytest.mark.parametrize(
    ("ends", "waiting", "settled", "wait"),
    [
        # A line of h stamped 1.5 s after a's end is not stored yet: a waits, not for time.
        ({("h", "a"): 1_000_000}, {"h": 2_500_000}, {}, None),
        # Stamped the settling time after the end or later: a run's output came before it.
        ({("h", "a"): 1_000_000}, {"h": 3_000_000}, {("h", "a"): 1_000_000}, None),
        # Another host's line holds nothing here.
        ({("h", "a"): 1_000_000}, {"g": 1_500_000}, {("h", "a"): 1_000_000}, None),
        # b waits for the line, c for time only, a is settled.
        (
            {("h", "a"): 1_000_000, ("h", "b"): 9_500_000, ("g", "c"): 9_000_000},
            {"h": 10_000_000},
            {("h", "a"): 1_000_000},
            1.0,
        ),
    ],
)
def test_units_of_a_host_with_an_output_line_not_yet_stored_wait_for_it(
    ends: dict[tuple[str, str], int],
    waiting: dict[str, int],
    settled: dict[tuple[str, str], int],
    wait: float | None,
) -> None:
    found, waited = settled_units(ends, 10_000_000, 2_000_000, waiting)
    assert found == settled
    assert waited == (None if wait is None else pytest.approx(wait))


async def test_a_channel_answering_500_is_retried_and_each_error_recorded(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.status = 500
    db = tmp_path / "observer.db"
    runs = two_failures(db)
    service = AlertService(alert_config(receiver.json_url, max_attempts=3), db, "host1")
    task = asyncio.create_task(service.run())
    try:
        service.runs_recorded(runs)
        await wait_for_async(lambda: len(attempts(db)) == 3, timeout=30, what="3 attempts")
    finally:
        await stop(task)
    assert len(receiver.posts()) == 3
    assert [n for n, _ in attempts(db)] == [1, 2, 3]
    assert all(error is not None and "500" in error for _, error in attempts(db))


async def test_an_attempt_past_its_time_limit_is_not_tried_again_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    released, sends = threading.Event(), []

    def hanging_channel(channel: Channel, message: Message) -> str | None:
        sends.append(message.title)
        released.wait(timeout=60)
        return None  # it did deliver, late

    monkeypatch.setattr(send, "notify", hanging_channel)
    db = tmp_path / "observer.db"
    runs = two_failures(db)
    config = alert_config("json://127.0.0.1:9/hook", max_attempts=2, send_timeout=0.2)
    service = AlertService(config, db, "host1")
    looks: list[int] = []
    due = service._due

    def looked(now: int, busy: set[int]) -> list[outbox.Delivery]:
        looks.append(now)
        return due(now, busy)

    service._due = looked  # type: ignore[method-assign]
    task = asyncio.create_task(service.run())
    try:
        service.runs_recorded(runs)
        await wait_for_async(lambda: attempts(db), timeout=30, what="the first attempt recorded")
        [(_, unknown)] = attempts(db)
        assert unknown is not None
        assert "outcome unknown" in unknown
        # The retry was due 0.2 s later: the outbox was looked at since, nothing sent again.
        retry_due = pending_due_usec(db)
        await wait_for_async(
            lambda: any(now >= retry_due for now in looks), timeout=30,
            what="a look at the outbox once the retry was due",
        )  # fmt: skip
        assert len(sends) == 1
        released.set()
        await wait_for_async(
            lambda: attempts(db) == [(1, None)], timeout=30, what="the late success recorded"
        )
    finally:
        released.set()
        await stop(task)
    assert len(sends) == 1
    assert delivery_statuses(db) == [outbox.SENT]


def pending_due_usec(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute(
            "SELECT next_attempt_usec FROM alert_deliveries WHERE status = ?", (outbox.PENDING,)
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def delivery_statuses(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [str(row[0]) for row in conn.execute("SELECT status FROM alert_deliveries")]
    finally:
        conn.close()


def test_an_unknown_notification_url_stops_the_daemon_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not understand the notification URL nope://…"):
        AlertService(alert_config("nope://secret-token/x"), tmp_path / "observer.db", "host1")


def test_a_heartbeat_url_must_be_http_or_https(tmp_path: Path) -> None:
    config = alert_config(
        "json://127.0.0.1:9/", heartbeat=ChannelSources(urls=("file:///etc/shadow",))
    )
    with pytest.raises(ConfigError, match="expected http:// or https://"):
        AlertService(config, tmp_path / "observer.db", "host1")


async def test_the_heartbeat_pings_while_runs_are_recorded_and_not_otherwise(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    recording = True
    config = alert_config(
        receiver.json_url,
        heartbeat=ChannelSources(urls=(receiver.http_url,)),
        heartbeat_interval=0.1,
    )
    service = AlertService(config, tmp_path / "observer.db", "host1", healthy=lambda: recording)

    def withheld(count: int) -> bool:
        return caplog.text.count("heartbeat withheld") >= count

    task = asyncio.create_task(service.run())
    try:
        await wait_for_async(lambda: len(receiver.received) >= 2, timeout=30, what="2 pings")
        recording = False
        # Its first withheld ping: a ping on its way before it has landed by then.
        await wait_for_async(lambda: withheld(1), timeout=30, what="a withheld ping")
        pinged = len(receiver.received)
        # Two more turns of the loop, each one a ping were it wrongly sent.
        await wait_for_async(lambda: withheld(3), timeout=30, what="3 withheld pings")
    finally:
        await stop(task)
    assert len(receiver.received) == pinged
    assert {r.method for r in receiver.received} == {"GET"}


# -- the commands ------------------------------------------------------------------------------


@pytest.fixture
def utc(utc: None) -> Iterator[None]:
    """The conftest's local time in UTC, at a fixed NOW."""
    with time_machine.travel(NOW, tick=False):
        yield


def recorded_alerts(db: Path) -> None:
    """Two failures and a recovery; the alert's delivery failed once, then worked."""
    conn = database.open_for_writing(db)
    conn.row_factory = sqlite3.Row
    channel = Channel.of("json://127.0.0.1:9/hook?token=s3cret")
    book = AlertLedger(conn, AlertsConfig(present=True), lambda unit: [channel])
    book.since(NOW_USEC - 10 * MINUTE)
    for n, result in ((1, "exit-code"), (2, "exit-code"), (3, "success")):
        run = failed_run(n, NOW_USEC - (5 - n) * MINUTE)._replace(result=result)
        database.write_batch(conn, database.Batch(runs=[run]))
        book.judge_runs(NOW_USEC - (5 - n) * MINUTE)
    [first, second] = outbox.due_deliveries(conn, NOW_USEC)
    retry = 30 * SECOND
    outbox.record_attempt(conn, first, NOW_USEC - MINUTE, 4_000_000, "HTTP 500", max_attempts=5,
                          retry_delay_usec=retry)  # fmt: skip
    [first] = outbox.due_deliveries(conn, NOW_USEC, busy={second.id})
    outbox.record_attempt(conn, first, NOW_USEC - 20 * SECOND, 12_000, None, max_attempts=5,
                          retry_delay_usec=retry)  # fmt: skip
    conn.close()


def test_observer_alerts_lists_alerts_with_how_each_delivery_went(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], utc: None
) -> None:
    db = tmp_path / "observer.db"
    recorded_alerts(db)
    assert main(["alerts", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert out == (
        "ID  TIME                 UNIT            ALERT      SUMMARY                              "
        "DELIVERY\n"
        " 2  2026-11-23 14:58:00  backup.service  recovered  succeeded again after 2 failed runs  "
        "json://127.0.0.1:9/… pending\n"
        " 1  2026-11-23 14:57:00  backup.service  failing    failed 2 times in a row (exit-code)  "
        "json://127.0.0.1:9/… sent (attempt 2)\n"
    )
    assert "s3cret" not in out


def test_observer_alerts_json_has_every_attempt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], utc: None
) -> None:
    db = tmp_path / "observer.db"
    recorded_alerts(db)
    assert main(["alerts", "--json", "--db", str(db)]) == 0
    alerts = json.loads(capsys.readouterr().out)
    assert [a["kind"] for a in alerts] == ["recovered", "failing"]
    assert alerts[1]["run_id"] == 2
    assert alerts[1]["deliveries"] == [
        {
            "channel": "json://127.0.0.1:9/…",
            "status": "sent",
            "next_attempt_at": None,
            "attempts": [
                {
                    "attempt": 1,
                    "time": "2026-11-23T14:59:00.000000+00:00",
                    "duration_seconds": 4.0,
                    "error": "HTTP 500",
                },
                {
                    "attempt": 2,
                    "time": "2026-11-23T14:59:40.000000+00:00",
                    "duration_seconds": 0.012,
                    "error": None,
                },
            ],
        }
    ]


def test_observer_alerts_test_reports_each_channel_and_fails_if_one_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], receiver: Receiver
) -> None:
    with Receiver(status=500) as broken:
        config = tmp_path / "observer.toml"
        config.write_text(
            f'[alerts]\nurls = ["{receiver.json_url}"]\n'
            f'[alerts.units."db.service"]\nurls = ["{broken.json_url}"]\n'
        )
        assert main(["alerts", "test", "--config", str(config), "--json"]) == 1
        results = json.loads(capsys.readouterr().out)
        assert [(r["channel"], r["ok"]) for r in results] == [
            (f"json://127.0.0.1:{receiver.port}", True),
            (f"json://127.0.0.1:{broken.port}", False),
        ]
        assert "500" in results[1]["error"]
        config.write_text(f'[alerts]\nurls = ["{receiver.json_url}"]\n')
        assert main(["alerts", "test", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert out.startswith("CHANNEL")
        assert f"json://127.0.0.1:{receiver.port}  sent" in out
    assert receiver.posts()[0]["title"].endswith("observer test notification")


def test_observer_alerts_test_without_channels_says_what_to_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "observer.toml"
    config.write_text("[alerts]\nfailures = 2\n")
    assert main(["alerts", "test", "--config", str(config)]) == 1
    assert "set urls, urls_credential or urls_file" in capsys.readouterr().err


def test_the_daemon_checks_its_urls_without_keeping_apprise_loaded(tmp_path: Path) -> None:
    config = tmp_path / "observer.toml"
    config.write_text('[alerts]\nurls = ["json://127.0.0.1:9/", "ntfy://secret-topic"]\n')
    program = (
        "import sys\n"
        "from pathlib import Path\n"
        "from observer.alerts.service import AlertService, settled_units\n"
        "from observer.config import load_config\n"
        f"service = AlertService(load_config(Path({str(config)!r})), Path('x.db'), 'h')\n"
        "print(len(service.global_channels), 'apprise' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["2", "False"]


def test_an_unknown_url_among_good_ones_is_named(tmp_path: Path) -> None:
    urls = ["json://127.0.0.1:9/", "nope://secret-token/x"]
    assert send.check_urls_in_child(urls) == [True, False]
    config = alert_config(urls[0], channels=ChannelSources(urls=tuple(urls)))
    with pytest.raises(ConfigError, match=r"notification URL nope://…"):
        AlertService(config, tmp_path / "observer.db", "host1")
