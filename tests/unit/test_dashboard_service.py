"""When the daemon rewrites the dashboard: debounced, bounded, off the event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from observer.config import DashboardConfig, load_config
from observer.dashboard import service as service_module
from observer.dashboard.service import DashboardService, RewriteSchedule
from observer.model import ConfigError
from tests.pages import overview_rows, parse
from tests.unit.recorded_runs import write_store
from tests.waiting import wait_for_async


def test_a_burst_of_runs_makes_one_rewrite_once_runs_stop_coming() -> None:
    schedule = RewriteSchedule(quiet=5, min_interval=30)
    for now in (100.0, 100.5, 101.0, 102.0):
        schedule.changed(now)

    assert schedule.due_at() == 107.0
    schedule.started(107.0)
    assert schedule.due_at() is None


def test_a_steady_stream_of_runs_still_gets_a_rewrite_within_the_interval() -> None:
    schedule = RewriteSchedule(quiet=5, min_interval=30)
    for second in range(0, 100, 2):
        schedule.changed(float(second))

    assert schedule.due_at() == 30.0


def test_rewrites_never_start_less_than_the_interval_after_the_last_one_ended() -> None:
    schedule = RewriteSchedule(quiet=5, min_interval=30)
    schedule.changed(0.0)
    schedule.started(5.0)
    schedule.changed(3.0)  # a run ended while the pages were being written
    schedule.finished(12.0)

    assert schedule.due_at() == 42.0


def test_a_failed_rewrite_is_tried_again_after_the_retry_delay() -> None:
    schedule = RewriteSchedule(quiet=0, min_interval=0)
    schedule.changed(0.0)
    schedule.started(0.0)
    schedule.failed(1.0, retry_in=5.0)

    assert schedule.due_at() == 6.0


def test_one_more_rewrite_follows_a_while_after_the_last_run_for_late_output() -> None:
    schedule = RewriteSchedule(quiet=1, min_interval=2, late=10)
    schedule.changed(0.0)
    assert schedule.due_at() == 1.0
    schedule.started(1.0)
    schedule.finished(1.5)
    assert schedule.due_at() == 10.0  # 10 seconds after the run ended
    schedule.changed(4.0)
    assert schedule.due_at() == 5.0
    schedule.started(5.0)
    schedule.finished(6.0)
    assert schedule.due_at() == 14.0  # 10 seconds after the last run ended
    schedule.started(14.0)
    assert schedule.due_at() is None


def test_the_dashboard_section_of_the_config_is_read(tmp_path: Path) -> None:
    path = tmp_path / "observer.toml"
    path.write_text('[dashboard]\ndirectory = "/srv/observer"\nquiet_seconds = 1\n')

    assert load_config(path).dashboard == DashboardConfig("/srv/observer", 1, 30)
    assert load_config(None).dashboard.directory == ""


def test_a_bad_dashboard_setting_is_an_error_that_names_it(tmp_path: Path) -> None:
    path = tmp_path / "observer.toml"
    path.write_text("[dashboard]\nmin_interval_seconds = -1\n")

    with pytest.raises(ConfigError, match=r"dashboard.min_interval_seconds = -1: expected"):
        load_config(path)


async def test_the_service_writes_the_pages_at_start_and_again_after_runs_end(
    tmp_path: Path,
) -> None:
    db = write_store(tmp_path / "observer.db")
    out = tmp_path / "pages"
    service = DashboardService(out, db, DashboardConfig(str(out), 0, 0))
    task = asyncio.create_task(service.run())
    try:
        await wait_for_async(lambda: service.writes == 1, timeout=30, what="the first write")
        assert overview_rows(parse((out / "index.html").read_text()))
        service.runs_recorded([])
        await wait_for_async(lambda: service.writes == 2, timeout=30, what="the second write")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert service.stopping.is_set()


async def test_the_service_waits_out_the_interval_before_writing_again(tmp_path: Path) -> None:
    db = write_store(tmp_path / "observer.db")
    out = tmp_path / "pages"
    service = DashboardService(out, db, DashboardConfig(str(out), 0, 3600))
    task = asyncio.create_task(service.run())
    try:
        await wait_for_async(lambda: service.writes == 1, timeout=30, what="the first write")
        for _ in range(20):
            service.runs_recorded([])
        # Woken, it has looked at its schedule: it writes now or waits out the interval.
        await wait_for_async(lambda: not service.wake.is_set(), timeout=30, what="it to wake")
        assert service.writes == 1
        assert service.schedule.due_at() is not None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_directory_that_cannot_be_written_is_logged_and_tried_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = write_store(tmp_path / "observer.db")
    blocker = tmp_path / "file"
    blocker.write_text("")
    service = DashboardService(blocker / "pages", db, DashboardConfig(str(blocker), 0, 0))
    caplog.set_level(logging.ERROR)
    task = asyncio.create_task(service.run())
    try:
        await wait_for_async(lambda: service.failures == 1, timeout=30, what="a failed write")
        assert not task.done()
        assert f"dashboard: cannot create '{blocker}/pages': Not a directory" in caplog.text
        assert service.schedule.due_at() is not None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_generation_that_crashes_is_logged_and_tried_again_and_the_service_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = write_store(tmp_path / "observer.db")
    out = tmp_path / "pages"
    crash = "import sys; sys.stderr.write('Traceback: boom\\n'); sys.exit(70)"
    monkeypatch.setattr(service_module, "GENERATION", ("-c", crash))
    service = DashboardService(out, db, DashboardConfig(str(out), 0, 0))
    caplog.set_level(logging.ERROR)
    task = asyncio.create_task(service.run())
    try:
        await wait_for_async(lambda: service.failures == 1, timeout=30, what="a failed write")
        assert not task.done()
        assert "dashboard: the generation of the pages exited with status 70:" in caplog.text
        assert "Traceback: boom" in caplog.text
        assert service.schedule.due_at() is not None  # tried again later
        monkeypatch.setattr(service_module, "GENERATION", ("-c", "import os; os.abort()"))
        service.schedule.not_before = 0.0
        service.wake.set()
        await wait_for_async(lambda: service.failures == 2, timeout=30, what="a second failure")
        assert "was killed by signal 6" in caplog.text
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_stopping_service_stops_its_generation_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = write_store(tmp_path / "observer.db")
    out = tmp_path / "pages"
    pid_file = tmp_path / "child.pid"
    hang = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    monkeypatch.setattr(service_module, "GENERATION", ("-c", hang))
    service = DashboardService(out, db, DashboardConfig(str(out), 0, 0))
    task = asyncio.create_task(service.run())
    await wait_for_async(lambda: pid_file.exists() and pid_file.read_text(), timeout=30,
                         what="the generation to start")  # fmt: skip
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):  # stopped and reaped
        os.kill(int(pid_file.read_text()), 0)


def test_what_a_generation_said_is_read_from_its_output() -> None:
    report = service_module.outcome(
        0, b'{"written": 3, "unchanged": 2, "removed": 1, "day_pages": 1, "peak_kib": 2048}\n', b""
    )
    assert report == service_module.Rewrite(3, 2, 1, 1, 2048)
    with pytest.raises(service_module.GenerationError, match=r"^cannot create 'x'$"):
        service_module.outcome(1, b'{"error": "cannot create \'x\'"}\n', b"")
    with pytest.raises(service_module.GenerationError, match=r"exited with status 1:\nboom$"):
        service_module.outcome(1, b"", b"boom\n")
    with pytest.raises(service_module.GenerationError, match=r"killed by signal 9$"):
        service_module.outcome(-9, b"", b"")


def test_the_daemons_side_of_the_dashboard_imports_no_templates() -> None:
    code = (
        "import sys, observer.daemon.serve; "
        "print(sorted(m for m in sys.modules "
        "if m.startswith(('jinja2', 'observer.dashboard.pages'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
