"""`history` marks the first run after a change, `show` says what changed, `diff` prints it."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from observer.__main__ import main
from observer.model import Run, Source
from observer.recording.definition_files import DefinitionReader
from observer.recording.definitions import DefinitionSources
from observer.store import database, definitions

UNIT = "/etc/systemd/system/backup.service"
DROPIN = "/etc/systemd/system/backup.service.d/limit.conf"


def _record(
    conn: sqlite3.Connection, reader: DefinitionReader, invocation_id: str, dropins: tuple[str, ...]
) -> None:
    started = int(invocation_id[-1])
    run = Run("backup.service", invocation_id, "h", Source.BUS, started, started, "success")
    read = reader.read("backup.service", DefinitionSources(UNIT, dropins, (("/bin/true",),)))
    record = definitions.RunDefinition(invocation_id, run.unit, "h", read.definition, read.texts)
    database.write_batch(conn, database.Batch(runs=[run], definitions=[record]))


@pytest.fixture
def db(tmp_path: Path) -> str:
    root = tmp_path / "root"
    (root / DROPIN.lstrip("/")).parent.mkdir(parents=True)
    (root / UNIT.lstrip("/")).write_text("[Service]\nExecStart=/bin/true\n")
    reader = DefinitionReader(root)
    path = tmp_path / "o.db"
    with closing(database.open_for_writing(path)) as conn:
        _record(conn, reader, "a" * 31 + "1", ())
        (root / DROPIN.lstrip("/")).write_text("[Service]\nCPUQuota=10%\n")
        _record(conn, reader, "a" * 31 + "2", (DROPIN,))
        _record(conn, reader, "a" * 31 + "3", (DROPIN,))
    return str(path)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_history_marks_the_first_run_after_a_change_with_a_legend(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    out = cli(capsys, "history", "backup", "--db", db, "--wide").splitlines()
    assert [line.split()[0] for line in out[1:4]] == ["3", "2*", "1"]
    assert out[-1].startswith("* first run after its unit's definition changed")
    runs = json.loads(cli(capsys, "history", "backup", "--db", db, "--json"))
    assert [run["definition_changed"] for run in runs] == [False, True, False]


def test_show_says_what_changed_since_the_units_previous_run(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    out = cli(capsys, "show", "2", "--db", db)
    assert f"Changed:     drop-in added: {DROPIN}" in out
    assert "(changed since the unit's previous run)" in out
    assert "(unchanged since the unit's previous run)" in cli(capsys, "show", "3", "--db", db)
    shown = json.loads(cli(capsys, "show", "2", "--db", db, "--json"))
    assert shown["definition"]["changes"] == [f"drop-in added: {DROPIN}"]
    assert shown["definition"]["dropins"][0]["path"] == DROPIN


def test_diff_prints_the_drop_ins_text_as_a_unified_diff(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    out = cli(capsys, "diff", "1", "2", "--db", db)
    assert out.splitlines() == [
        "run 1 -> run 2 (backup.service):",
        f"  drop-in added: {DROPIN}",
        "",
        f"--- run 1: {DROPIN}",
        f"+++ run 2: {DROPIN}",
        "@@ -0,0 +1,2 @@",
        "+[Service]",
        "+CPUQuota=10%",
    ]
    assert (
        cli(capsys, "diff", "2", "3", "--db", db)
        == "run 2 -> run 3 (backup.service): the same definition\n"
    )
    found = json.loads(cli(capsys, "diff", "1", "2", "--db", db, "--json"))
    assert found["diffs"][0]["part"] == "drop-in"
    assert "+CPUQuota=10%" in found["diffs"][0]["diff"]
