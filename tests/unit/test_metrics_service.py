"""The metrics service in the daemon's loop: it serves, refreshes after runs, writes the textfile,
survives a taken port, and stops cleanly. The daemon is a stand-in; the store is real."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import socket
import threading
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from observer.config import MetricsConfig
from observer.metrics import service as metrics_service
from observer.metrics import snapshot
from observer.metrics.service import MetricsService
from observer.model import Run, Source
from observer.store import database
from tests.unit.recorded_runs import NOW_USEC, SECOND, invocation, write_store
from tests.waiting import wait_for_async


class FakeDaemon(SimpleNamespace):
    """What the service reads of the daemon."""

    def __init__(self) -> None:
        super().__init__(
            host="host1",
            runs_recorded=0,
            store_errors=0,
            store_writable=True,
            runs_set_aside=0,
            running={},
            pending=SimpleNamespace(journal_cursor=None),
            journal_queue=asyncio.Queue(),
        )
        self.intake = SimpleNamespace(
            running=lambda: dict(self.running), events_fed=0, unattributed_lines=0, lost_lines=0
        )


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def get_gzip(url: str) -> tuple[str, bytes]:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.headers["Content-Encoding"]), bytes(response.read())


@contextlib.asynccontextmanager
async def serving(service: MetricsService) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(service.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_service, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(metrics_service, "DEBOUNCE_SECONDS", 0.01)
    monkeypatch.setattr(metrics_service, "MIN_REFRESH_SECONDS", 0.01)
    monkeypatch.setattr(metrics_service, "BIND_RETRY_SECONDS", 0.1)


async def test_it_serves_the_recorded_runs_and_refreshes_after_each_new_one(
    tmp_path: Path,
) -> None:
    db = write_store(tmp_path / "observer.db")
    daemon = FakeDaemon()
    config = MetricsConfig(listen="127.0.0.1:0", textfile_directory=str(tmp_path))
    service = MetricsService(daemon, db, config)

    async with serving(service):
        await wait_for_async(lambda: service.address, timeout=30, what="the server to listen")
        url = f"http://127.0.0.1:{service.address[1]}/metrics"  # type: ignore[index]
        text = await wait_for_async(
            lambda: t if "observer_consecutive_failures" in (t := get(url)) else None,
            timeout=30,
            what="run metrics",
        )
        labels = 'host="host1",unit="backup.service",user=""'
        assert f"observer_consecutive_failures{{{labels}}} 2.0" in text
        # Counted from the daemon's start: at 0 until a run ends (so rate() sees that run).
        assert f'observer_runs_total{{{labels},result="success"}} 0.0' in text

        # Run 4 of backup.service ends; the daemon's hook says so.
        ended = Run("backup.service", invocation(4), "host1", Source.BUS,
                    finished_usec=NOW_USEC + 90 * SECOND, result="success")  # fmt: skip
        conn = database.open_for_writing(db)
        database.write_batch(conn, database.Batch(runs=[ended]))
        conn.close()
        service.runs_recorded([ended])
        counted = f'observer_runs_total{{{labels},result="success"}} 1.0'
        await wait_for_async(lambda: counted in get(url), timeout=30, what="the run to be counted")
        textfile = tmp_path / "observer.prom"
        await wait_for_async(
            lambda: counted in textfile.read_text(), timeout=30, what="the textfile to follow"
        )
        assert "process_cpu_seconds_total" not in textfile.read_text()
        assert "process_cpu_seconds_total" in get(url)
        # Prometheus asks for gzip: the cached run metrics and the live part, two members.
        encoding, body = get_gzip(url)
        assert encoding == "gzip"
        unzipped = gzip.decompress(body).decode()
        assert counted in unzipped
        assert "observer_build_info{" in unzipped
        assert await asyncio.to_thread(
            lambda: urllib.request.urlopen(url.replace("/metrics", "/"), timeout=10).status
        ) == 200  # fmt: skip

    assert [t.name for t in threading.enumerate() if t.name.startswith("observer-")] == []


async def test_a_port_in_use_is_logged_and_retried_while_the_rest_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = write_store(tmp_path / "observer.db")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = MetricsConfig(listen=f"127.0.0.1:{port}", textfile_directory=str(tmp_path))
    service = MetricsService(FakeDaemon(), db, config)

    try:
        async with serving(service) as task:
            await wait_for_async(
                (tmp_path / "observer.prom").exists, timeout=30, what="the textfile to be written"
            )
            await wait_for_async(
                lambda: "Address already in use" in caplog.text,
                timeout=30,
                what="the bind error to be logged",
            )
            assert not task.done()
            taken.close()
            await wait_for_async(
                lambda: service.address,
                timeout=30,
                what="the server to listen once the port is free",
            )
    finally:
        taken.close()
    assert any(r.levelno == logging.ERROR for r in caplog.records)


async def test_a_running_unit_shows_as_running_once_the_daemon_sees_it(tmp_path: Path) -> None:
    db = write_store(tmp_path / "observer.db")
    daemon = FakeDaemon()
    service = MetricsService(daemon, db, MetricsConfig(listen="127.0.0.1:0"))

    async with serving(service):
        await wait_for_async(lambda: service.address, timeout=30, what="the server to listen")
        url = f"http://127.0.0.1:{service.address[1]}/metrics"  # type: ignore[index]
        running = 'observer_running{host="host1",unit="backup.service",user=""} 1.0'
        await wait_for_async(
            lambda: "observer_running{" in get(url), timeout=30, what="run metrics"
        )
        assert running not in get(url)

        daemon.running = {("host1", "backup.service"): invocation(4)}
        service.daemon_changed()  # the daemon's hook: it fed the run's start

        await wait_for_async(
            lambda: running in get(url), timeout=30, what="backup.service to show as running"
        )
        since = (
            'observer_running_since_timestamp_seconds{host="host1",unit="backup.service",user=""}'
        )
        assert since in get(url)


def test_an_idle_refresh_reads_nothing_until_a_run_is_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = write_store(tmp_path / "observer.db")
    service = MetricsService(FakeDaemon(), db, MetricsConfig(listen=""))
    readings: list[int] = []
    real = snapshot.read_unit_states

    def counted(*args: Any) -> Any:
        readings.append(1)
        return real(*args)

    monkeypatch.setattr(metrics_service, "read_unit_states", counted)
    try:
        service._refresh({})
        service._refresh({})
        service._refresh({})
        assert len(readings) == 1  # nothing was committed since the first reading

        conn = database.open_for_writing(db)
        ended = Run(
            "sync.service", invocation(40), "host1", Source.BUS,
            started_usec=NOW_USEC, finished_usec=NOW_USEC + SECOND, result="success",
        )  # fmt: skip
        database.write_batch(conn, database.Batch(runs=[ended]))
        conn.close()
        service._refresh({})
        assert len(readings) == 2
        assert b'unit="sync.service"' in service.render()
        service._refresh({("host1", "worker.service"): invocation(41)})  # a run began: read again
        assert len(readings) == 3
    finally:
        service._reset_connection()  # the connection belongs to this thread here
        service._executor.shutdown()


async def test_the_daemons_state_is_not_copied_again_until_the_daemon_says_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = write_store(tmp_path / "observer.db")
    daemon = FakeDaemon()
    service = MetricsService(daemon, db, MetricsConfig(listen=""))
    samples: list[int] = []
    real = service._sample

    def counted(events: int) -> None:
        samples.append(events)
        real(events)

    monkeypatch.setattr(service, "_sample", counted)

    async with serving(service):
        await wait_for_async(lambda: samples, timeout=30, what="the first copy")
        await asyncio.sleep(20 * metrics_service.POLL_SECONDS)  # idle: nothing to copy
        assert len(samples) == 1
        daemon.runs_recorded = 1
        service.daemon_changed()
        await wait_for_async(
            lambda: service._health().runs_recorded == 1, timeout=30, what="the new count"
        )
    assert len(samples) == 2


@pytest.mark.parametrize(
    ("cpu_seconds", "spacing"),
    [
        (0.0, 2.0),
        (0.05, 2.0),  # 20 times 0.05 = 1 s: the minimum is 2
        (0.25, 5.0),  # a twentieth of a CPU in a burst
        (10.0, 30.0),  # never further apart than the look at the store
    ],
)
def test_readings_are_spaced_by_their_cpu_time_within_bounds(
    cpu_seconds: float, spacing: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_service, "MIN_REFRESH_SECONDS", 2.0)  # as shipped
    assert metrics_service.refresh_spacing(cpu_seconds) == pytest.approx(spacing)
