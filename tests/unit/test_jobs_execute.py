"""`jobs apply`'s last step against a stand-in for systemd's manager: the calls, in order,
and the unit files put back when systemd refuses one."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from dbus_fast import Message, MessageType

from observer.jobs.apply import Plan, execute
from observer.jobs.jobfile import Job, parse
from observer.model import ObserverError


@dataclass
class _Reply:
    body: list[Any]
    message_type: MessageType = MessageType.METHOD_RETURN
    error_name: str | None = None


@dataclass
class FakeManager:
    """Answers what `execute` asks; ``refuses`` names a method that fails, ``units`` the
    fragment paths of units systemd already has."""

    refuses: str = ""
    loses_bus_at: str = ""  # a method during which the connection to the bus ends
    units: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, list[Any]]] = field(default_factory=list)

    async def call(self, message: Message) -> _Reply:
        body = list(message.body)
        if message.member == "Get" and body[1] == "State":  # a stop job: done when asked
            return _Reply(["no such job"], MessageType.ERROR, "org.freedesktop.DBus.Error")
        if message.member == "Get" and body[1] == "ActiveState":
            return _Reply(["inactive"])
        if message.member == "Get":
            unit = self.calls[-1][1][0]  # the LoadUnit just before
            fragment = self.units.get(unit, "")
            state = "loaded" if fragment else "not-found"
            return _Reply([state if body[1] == "LoadState" else fragment])
        self.calls.append((message.member or "", body))
        if message.member == self.loses_bus_at:
            raise EOFError
        if message.member == self.refuses:
            return _Reply(["no such thing"], MessageType.ERROR, "org.example.Refused")
        if message.member in ("StartUnit", "StopUnit", "RestartUnit"):
            return _Reply([f"/job/{len(self.calls)}"])  # systemd answers with the job queued
        return _Reply(
            [f"/unit/{body[0].replace('.', '_2e')}"] if message.member == "LoadUnit" else []
        )


def _execute(plan: Plan, jobs: list[Job], manager: FakeManager) -> None:
    asyncio.run(execute(plan, jobs, cast(Any, manager)))


def _job() -> Job:
    table = {"backup": {"command": "true", "schedule": "daily"}}
    return parse(Path("jobs.toml"), {"jobs": table})[0]


def _plan(tmp_path: Path) -> Plan:
    """Add ``backup`` and remove ``old``'s timer, which is there."""
    (tmp_path / "old.timer").write_text("[Timer]\n")
    writes = {tmp_path / "backup.service": "[Service]\n", tmp_path / "backup.timer": "[Timer]\n"}
    return Plan(writes, removes=(tmp_path / "old.timer",), added=("backup",), removed=("old",))


def test_it_stops_removed_timers_writes_reloads_and_starts_added_ones(
    tmp_path: Path,
) -> None:
    manager = FakeManager()

    _execute(_plan(tmp_path), [_job()], manager)

    assert manager.calls == [
        ("LoadUnit", ["backup.service"]),
        ("LoadUnit", ["backup.timer"]),
        ("LoadUnit", ["old.timer"]),  # to wait for its stop job
        ("StopUnit", ["old.timer", "replace"]),
        ("DisableUnitFiles", [["old.timer"], False]),
        ("Reload", []),
        ("EnableUnitFiles", [["backup.timer"], False, True]),
        ("StartUnit", ["backup.timer", "replace"]),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.service", "backup.timer"]


def test_a_refused_start_puts_the_unit_files_back_as_they_were(tmp_path: Path) -> None:
    manager = FakeManager(refuses="StartUnit")

    with pytest.raises(ObserverError, match=r"refused StartUnit.*put back as they were"):
        _execute(_plan(tmp_path), [_job()], manager)

    assert [p.name for p in tmp_path.iterdir()] == ["old.timer"]
    assert (tmp_path / "old.timer").read_text() == "[Timer]\n"
    assert [member for member, _ in manager.calls][-2:] == ["StartUnit", "Reload"]


def test_a_bus_lost_during_the_reload_puts_the_unit_files_back_and_says_so(
    tmp_path: Path,
) -> None:
    # systemd 254 ends when a caller outside its PID namespace asks for a Reload: the call
    # then ends with the connection, not with an answer (docs/compatibility.md).
    manager = FakeManager(loses_bus_at="Reload")

    with pytest.raises(
        ObserverError,
        match=r"lost the connection to systemd during Reload.*put back as they were",
    ):
        _execute(_plan(tmp_path), [_job()], manager)

    assert [p.name for p in tmp_path.iterdir()] == ["old.timer"]
    assert (tmp_path / "old.timer").read_text() == "[Timer]\n"


def test_a_job_named_like_a_unit_systemd_has_is_refused_before_anything_changes(
    tmp_path: Path,
) -> None:
    manager = FakeManager(units={"backup.timer": "/usr/lib/systemd/system/backup.timer"})

    with pytest.raises(ObserverError, match=r"backup.timer already exists .*rename the job"):
        _execute(_plan(tmp_path), [_job()], manager)

    assert [p.name for p in tmp_path.iterdir()] == ["old.timer"]
    assert "StopUnit" not in [member for member, _ in manager.calls]
