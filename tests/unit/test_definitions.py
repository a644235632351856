"""What defined a run: digests, changes, diffs, reading files only when they changed, and
the store's tables (schema 8)."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from observer.fleet.service import stored_record
from observer.model import Run, Source
from observer.recording.definition_files import DefinitionReader
from observer.recording.definitions import (
    Definition,
    DefinitionFile,
    DefinitionSources,
    changes,
    command_text,
    script_candidates,
    text_diff,
)
from observer.store import database, definitions, schema

UNIT = "/etc/systemd/system/backup.service"
DROPIN = "/etc/systemd/system/backup.service.d/limit.conf"
SCRIPT = "/usr/local/bin/backup"


def sources(*dropins: str, argv: tuple[str, ...] = (SCRIPT, "--all")) -> DefinitionSources:
    return DefinitionSources(UNIT, tuple(dropins), (argv,))


def tree(root: Path) -> Path:
    for path, text in (
        (UNIT, "[Service]\nExecStart=/usr/local/bin/backup --all\n"),
        (DROPIN, "[Service]\nCPUQuota=10%\n"),
        (SCRIPT, "#!/bin/sh\necho backing up\n"),
        ("/usr/bin/tool", "\x7fELF binary"),
    ):
        file = root / path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    return root


def test_the_command_line_is_quoted_as_a_shell_would_read_it() -> None:
    assert command_text([["/bin/sh", "-c", "echo hi; exit 1"]]) == "/bin/sh -c 'echo hi; exit 1'"
    assert command_text([]) is None


def test_a_script_is_the_command_itself_or_what_an_interpreter_runs() -> None:
    assert script_candidates([["/bin/bash", "-e", "/opt/job.sh", "x"]]) == [
        ("/bin/bash", False), ("/opt/job.sh", True),
    ]  # fmt: skip
    assert script_candidates([["/usr/bin/python3.11", "/opt/a.py"]])[1] == ("/opt/a.py", True)
    assert script_candidates([["/usr/bin/restic", "--password-file", "/etc/pw"]]) == [
        ("/usr/bin/restic", False)
    ]


def test_changes_name_what_changed_between_two_definitions() -> None:
    before = Definition(DefinitionFile(UNIT, "a"), (DefinitionFile("/x.conf", "1"),), "c", ())
    after = Definition(
        DefinitionFile(UNIT, "b"),
        (DefinitionFile("/y.conf", "2"),),
        "d",
        (DefinitionFile(SCRIPT, "s"),),
    )
    assert changes(before, after) == [
        "unit file edited", "drop-in added: /y.conf", "drop-in removed: /x.conf",
        "command changed", f"script added: {SCRIPT}",
    ]  # fmt: skip
    assert changes(after, after) == []
    assert before.digest != after.digest


def test_a_diff_is_unified_and_ends_every_line() -> None:
    diff = text_diff("a\nb", "a\nc\n", "old", "new")
    assert diff.splitlines() == ["--- old", "+++ new", "@@ -1,2 +1,2 @@", " a", "-b", "+c"]


def test_the_reader_hashes_the_files_and_keeps_their_texts(tmp_path: Path) -> None:
    reader = DefinitionReader(tree(tmp_path))
    read = reader.read("backup.service", sources(DROPIN))
    definition = read.definition
    assert definition.unit_file is not None
    assert definition.unit_file.path == UNIT
    assert [f.path for f in definition.dropins] == [DROPIN]
    assert [f.path for f in definition.scripts] == [SCRIPT]  # it starts with #!
    assert definition.command == f"{SCRIPT} --all"
    assert sorted(read.texts.values()) == sorted(
        (tmp_path / p.lstrip("/")).read_bytes() for p in (UNIT, DROPIN, SCRIPT)
    )


def test_a_binary_command_is_not_a_script(tmp_path: Path) -> None:
    read = DefinitionReader(tree(tmp_path)).read("t.service", sources(argv=("/usr/bin/tool",)))
    assert read.definition.scripts == ()


def test_an_unchanged_unit_costs_no_file_read(tmp_path: Path) -> None:
    reader = DefinitionReader(tree(tmp_path))
    first = reader.read("backup.service", sources(DROPIN))
    reads = reader.files_read
    assert reads == 4  # the unit file, the drop-in, the script's first bytes, the script
    again = reader.read("backup.service", sources(DROPIN))
    assert (reader.files_read, again.definition, again.texts) == (reads, first.definition, {})


def test_an_edit_is_read_again_and_only_its_text_is_new(tmp_path: Path) -> None:
    reader = DefinitionReader(tree(tmp_path))
    first = reader.read("backup.service", sources(DROPIN))
    (tmp_path / DROPIN.lstrip("/")).write_text("[Service]\nCPUQuota=50%\n")
    second = reader.read("backup.service", sources(DROPIN))
    assert reader.files_read == 8
    assert changes(first.definition, second.definition) == [f"drop-in edited: {DROPIN}"]


def test_an_unreadable_file_is_recorded_as_such(tmp_path: Path) -> None:
    reader = DefinitionReader(tree(tmp_path))
    read = reader.read("backup.service", sources("/etc/gone.conf"))
    assert read.definition.dropins == (DefinitionFile("/etc/gone.conf", None),)


def test_a_long_script_is_hashed_whole_but_its_text_not_kept(tmp_path: Path) -> None:
    tree(tmp_path)
    (tmp_path / SCRIPT.lstrip("/")).write_text("#!/bin/sh\n" + "echo x\n" * 100)
    read = DefinitionReader(tmp_path, text_limit=64).read("b.service", sources())
    [script] = read.definition.scripts
    assert script.digest is not None
    assert script.digest not in read.texts


def _run(conn: sqlite3.Connection, invocation_id: str, started: int) -> None:
    run = Run("backup.service", invocation_id, "h", Source.BUS, started_usec=started)
    database.write_batch(conn, database.Batch(runs=[run]))


def test_the_store_marks_the_first_run_after_a_change(tmp_path: Path) -> None:
    reader = DefinitionReader(tree(tmp_path / "root"))
    with closing(database.open_for_writing(tmp_path / "o.db")) as conn:
        for invocation_id, started, dropins in (
            ("a", 1, ()),
            ("b", 2, (DROPIN,)),
            ("c", 3, (DROPIN,)),
        ):
            _run(conn, invocation_id, started)
            read = reader.read("backup.service", sources(*dropins))
            record = definitions.RunDefinition(
                invocation_id, "backup.service", "h", read.definition, read.texts
            )
            database.write_batch(conn, database.Batch(definitions=[record]))
        assert definitions.changed_runs(conn, ["a", "b", "c", None]) == {"b"}
        stored = definitions.of_run(conn, "b")
        assert stored is not None
        assert stored.previous is not None
        assert changes(stored.previous, stored.definition) == [f"drop-in added: {DROPIN}"]
        [dropin] = stored.definition.dropins
        assert definitions.text(conn, dropin.digest) == b"[Service]\nCPUQuota=10%\n"
        texts = conn.execute("SELECT COUNT(*) FROM definition_texts").fetchone()[0]
        assert texts == 3  # each text once, though three runs named it


def test_a_database_of_schema_7_gains_the_definition_tables_and_keeps_every_row(
    tmp_path: Path,
) -> None:
    db = tmp_path / "o.db"
    with closing(sqlite3.connect(db)) as conn:
        schema.upgrade(conn, 0)  # a database as schema 7 made it, then downgraded by hand
        conn.executescript(
            "DROP TABLE definitions; DROP TABLE definition_texts; DROP TABLE run_definitions;"
        )
        conn.execute(
            "INSERT INTO runs (unit, invocation_id, host, source) VALUES ('a', 'x', 'h', 'bus')"
        )
        conn.execute(
            "INSERT INTO alerts (created_usec, unit, kind, summary) VALUES (1, 'a', 'k', 's')"
        )
        conn.execute("PRAGMA user_version = 7")
        conn.commit()
    with closing(database.open_for_writing(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION == 9
        assert conn.execute("SELECT unit, invocation_id FROM runs").fetchall() == [("a", "x")]
        assert conn.execute("SELECT COUNT(*) FROM alerts").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM run_definitions").fetchone()[0] == 0
    assert os.path.exists(db)


def test_a_run_record_carries_the_digest_of_its_definition(tmp_path: Path) -> None:
    reader = DefinitionReader(tree(tmp_path / "root"))
    read = reader.read("backup.service", sources())
    run = Run("backup.service", "a" * 32, "h", Source.BUS, 1, 2, "success")
    record = definitions.RunDefinition(run.key, run.unit, "h", read.definition, read.texts)
    with closing(database.open_for_writing(tmp_path / "o.db")) as conn:
        database.write_batch(conn, database.Batch(runs=[run], definitions=[record]))
        fields = stored_record(conn, run)
    assert fields is not None
    assert fields["OBSERVER_DEFINITION"] == read.definition.digest
