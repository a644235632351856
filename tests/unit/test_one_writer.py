"""Everything the daemon writes goes through the store's one writer: the alert service
judging 500 runs (reading their evidence and metric files) never holds up a recording."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from observer.alert_config import AlertsConfig
from observer.alerts import evidence
from observer.alerts.findings import Finding
from observer.alerts.secrets import Channel
from observer.alerts.state import AlertLedger
from observer.model import Run, Source
from observer.store import database
from observer.store.database import Batch
from observer.store.writer import AsyncStore

CHANNEL = Channel.of("json://127.0.0.1:9/hook")
T = 1_790_000_000_000_000
RUNS = 500


def run(n: int, unit: str = "backup.service") -> Run:
    return Run(
        unit=unit, invocation_id=f"{n:032x}", host="web1", source=Source.JOURNAL,
        started_usec=T + n * 10_000_000, finished_usec=T + n * 10_000_000 + 1_000_000,
        result="success", exit_code="exited", exit_status=0,
    )  # fmt: skip


async def test_a_recording_write_completes_while_the_alert_service_reads_evidence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "observer.db"
    store = AsyncStore(db)
    await store.open()
    await store.write(Batch(runs=[run(n) for n in range(RUNS)]))
    judging, gate = threading.Event(), threading.Event()
    read_evidence: Callable[..., list[Finding]] = evidence.run_findings
    calls = 0

    def gated_findings(*args: object, **kwargs: object) -> list[Finding]:
        """Each run has a finding (a write to make); halfway, the judge waits for the gate."""
        nonlocal calls
        calls += 1
        if calls == RUNS // 2:
            judging.set()
            gate.wait(timeout=60)
        return [*read_evidence(*args, **kwargs), Finding("slower", "took longer")]

    def judge_all() -> None:
        """What the alert service does on its thread: read there, write through the store."""
        reading = database.open_for_reading(db)
        try:
            ledger = AlertLedger(
                reading, AlertsConfig(present=True), lambda unit: [CHANNEL], host="web1",
                write=store.transaction_from_thread,
            )  # fmt: skip
            ledger.since(T)
            ledger.judge_runs(T + 10**12, [("web1", "backup.service")])
        finally:
            reading.close()

    monkeypatch.setattr(evidence, "run_findings", gated_findings)
    judge = asyncio.create_task(asyncio.to_thread(judge_all))
    try:
        at_gate = asyncio.create_task(asyncio.to_thread(judging.wait, 60))
        await asyncio.wait([judge, at_gate], return_when=asyncio.FIRST_COMPLETED)
        assert judging.is_set(), judge.exception() if judge.done() else "no judge at the gate"
        async with asyncio.timeout(30):
            finished = await store.write(Batch(runs=[run(RUNS, "other.service")]))
        # Written while the judge still waits at the gate, half its evidence read.
        assert not gate.is_set()
        assert [r.unit for r in finished] == ["other.service"]
    finally:
        gate.set()
        await judge
        await store.close()

    assert calls == RUNS
    check = database.open_for_reading(db)
    try:
        findings = check.execute("SELECT COUNT(*) FROM run_findings").fetchone()[0]
        seen = check.execute("SELECT seen_run_id FROM alert_state").fetchone()[0]
    finally:
        check.close()
    assert (findings, seen) == (RUNS, RUNS)
