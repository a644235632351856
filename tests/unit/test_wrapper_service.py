"""The daemon hands runs of `observer run` to its consumers once each, as they finish."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from observer.config import Config, RunConfig
from observer.model import Run, Source, StoreError
from observer.run import spool
from observer.run.service import WrapperRuns
from observer.run.spool import RunRecord
from observer.store import database

NOW = time.time_ns() // 1000


def wrapper_run(invocation: str, finished: bool, unit: str = "nightly") -> Run:
    return Run(
        unit=unit,
        invocation_id=invocation * 32,
        host="host1",
        source=Source.WRAPPER,
        started_usec=NOW,
        finished_usec=NOW + 5 if finished else None,
        result="success" if finished else None,
        exit_code="exited" if finished else None,
        exit_status=0 if finished else None,
    )


@pytest.fixture
def service(tmp_path: Path) -> tuple[WrapperRuns, list[list[Run]]]:
    told: list[list[Run]] = []
    config = Config(run=RunConfig(spool_dir=str(tmp_path / "spool")))
    return WrapperRuns([told.append], tmp_path / "observer.db", config), told


def write(db: Path, run: Run) -> None:
    conn = database.open_for_writing(db)
    try:
        spool.write_record(conn, RunRecord(run))
    finally:
        conn.close()


def test_runs_that_finish_after_the_daemon_started_are_told_once(
    service: tuple[WrapperRuns, list[list[Run]]], tmp_path: Path
) -> None:
    wrapper, _ = service
    db = tmp_path / "observer.db"
    write(db, wrapper_run("a", finished=True))  # before the daemon: not news
    write(db, wrapper_run("b", finished=False))  # running when the daemon starts
    assert wrapper.step() == []

    write(db, wrapper_run("c", finished=False))
    write(db, wrapper_run("d", finished=True))
    first = wrapper.step()
    write(db, wrapper_run("b", finished=True))
    write(db, wrapper_run("c", finished=True))
    second = wrapper.step()
    third = wrapper.step()

    assert [run.key[0] for run in first] == ["d"]
    assert sorted(run.key[0] for run in second) == ["b", "c"]
    assert third == []
    assert second[0].source == Source.WRAPPER
    assert second[0].result == "success"


def test_a_spooled_run_is_imported_and_told_once(
    service: tuple[WrapperRuns, list[list[Run]]], tmp_path: Path
) -> None:
    wrapper, _ = service
    db = tmp_path / "observer.db"
    write(db, wrapper_run("a", finished=True))
    wrapper.step()
    spool.spool(RunRecord(wrapper_run("e", finished=True)), tmp_path / "spool", db)

    imported = wrapper.step()

    assert [run.key[0] for run in imported] == ["e"]
    assert wrapper.step() == []
    assert not list((tmp_path / "spool").glob("*.json"))


def looks_until_quiet(wrapper: WrapperRuns) -> list[Run]:
    """Look as the daemon does (a look may itself touch the files once) until none is wanted."""
    told: list[Run] = []
    for _ in range(3):
        if not wrapper.look_wanted():
            return told
        told += wrapper.step()
    raise AssertionError("a look is still wanted after three")


def test_a_look_is_wanted_only_after_a_write_or_a_spooled_run_or_while_one_runs(
    service: tuple[WrapperRuns, list[list[Run]]], tmp_path: Path
) -> None:
    wrapper, _ = service
    db = tmp_path / "observer.db"
    write(db, wrapper_run("a", finished=True))
    assert looks_until_quiet(wrapper) == []
    assert not wrapper.look_wanted()  # nothing changed: the daemon sleeps

    write(db, wrapper_run("b", finished=False))
    assert wrapper.look_wanted()
    wrapper.step()
    wrapper.look_wanted()
    assert wrapper.look_wanted()  # b is running: looked at until it ends
    write(db, wrapper_run("b", finished=True))
    assert [run.key[0] for run in looks_until_quiet(wrapper)] == ["b"]

    spool.spool(RunRecord(wrapper_run("e", finished=True)), tmp_path / "spool", db)
    assert [run.key[0] for run in looks_until_quiet(wrapper)] == ["e"]


async def test_the_service_calls_the_hooks_and_survives_an_unwritable_store(
    tmp_path: Path,
) -> None:
    told: list[list[Run]] = []
    arrived = asyncio.Event()

    def hook(runs: list[Run]) -> None:
        told.append(runs)
        arrived.set()

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    broken = WrapperRuns([hook], blocker / "observer.db", Config(), interval=0.01)
    db = tmp_path / "observer.db"
    working = WrapperRuns([hook], db, Config(), interval=0.01)
    write(db, wrapper_run("a", finished=True))
    working.step()  # the daemon starts: what is there already is not news
    with pytest.raises(StoreError):
        broken.step()
    tasks = [asyncio.create_task(broken.run()), asyncio.create_task(working.run())]
    try:
        write(db, wrapper_run("f", finished=True))
        await asyncio.wait_for(arrived.wait(), timeout=30)
        assert not tasks[0].done()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    assert [[run.key[0] for run in runs] for runs in told] == [["f"]]
