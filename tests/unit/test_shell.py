"""Completion scripts and the man page, generated from the real parser, driven in real shells."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from observer.__main__ import build_parser, main
from observer.shell import completion, manpage, spec
from observer.shell.units import recorded_units
from tests.unit.recorded_runs import write_store

UNITS = ["backup.service", "backup@home-user.service", "nightly-report"]


@pytest.fixture
def program() -> spec.Command:
    return spec.read(build_parser())


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return write_store(tmp_path / "observer.db")


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A directory with an `observer` that runs this checkout's, for the shells' PATH."""
    directory = tmp_path / "bin"
    directory.mkdir()
    wrapper = directory / "observer"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m observer "$@"\n')
    wrapper.chmod(0o755)
    return directory


def test_every_command_of_the_parser_is_in_the_tree_with_its_options(
    program: spec.Command,
) -> None:
    names = {c.name for c in program.walk()}
    assert {"history", "runs", "status", "daemon", "run", "alerts test", "doctor"} <= names
    assert {"metrics-file enable", "completion", "manpage"} <= names
    history = next(c for c in program.walk() if c.name == "history")
    assert [p.value for p in history.positionals] == [spec.Value.UNIT]
    limit = next(o for o in history.options if "--limit" in o.flags)
    assert (limit.flags, limit.value, limit.help) == (("-n", "--limit"), spec.Value.ANY, (
        "runs (default: 20)"
    ))  # fmt: skip
    db = next(o for o in history.options if "--db" in o.flags)
    assert db.value is spec.Value.FILE
    json_option = next(o for o in history.options if "--json" in o.flags)
    assert (json_option.value, json_option.metavar) == (spec.Value.NONE, None)


def test_every_command_and_option_is_in_each_script_and_the_man_page(
    program: spec.Command,
) -> None:
    page = manpage.render(program, "9.9")
    scripts = {name: render(program) for name, render in completion.SHELLS.items()}
    for command in program.walk()[1:]:
        assert f'.SS "observer {manpage.escape(command.name)}"' in page
        assert f"'{command.name}'" in scripts["bash"]
        assert f"'{command.name}'" in scripts["zsh"]
        assert f"'__observer_at \\'{command.name}\\''" in scripts["fish"]
        for option in command.options:
            for flag in option.flags:
                assert manpage.escape(flag) in page or flag in ("-h", "--help")
                assert flag in scripts["bash"]
                assert flag in scripts["zsh"]
                assert (f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}") in (
                    scripts["fish"]
                )


def test_a_hidden_command_stays_out_of_completion_and_the_man_page() -> None:
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="observer")
    commands = parser.add_subparsers()
    commands.add_parser("shown", help="a command")
    commands.add_parser("secret", help=argparse.SUPPRESS)
    commands.add_parser("bare")
    assert [c.name for c in spec.read(parser).subcommands] == ["shown", "bare"]


def test_the_man_page_renders_without_a_warning(program: spec.Command, tmp_path: Path) -> None:
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed (packaging/dev-setup.sh installs it)")
    page = tmp_path / "observer.1"
    page.write_text(manpage.render(program, "1.2.3"))
    checked = subprocess.run(
        ["groff", "-man", "-ww", "-z", str(page)], capture_output=True, text=True, check=False
    )
    assert (checked.returncode, checked.stderr) == (0, "")
    text = subprocess.run(
        ["groff", "-man", "-Tutf8", "-P-cbou", str(page)],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    assert "observer 1.2.3" in text
    flat = " ".join(text.split())  # groff justifies the synopsis: spaces vary
    assert (
        "observer history [-h] [--debug] [--db PATH] [--user NAME] [--json] [--host NAME|GLOB]"
        in flat
    )
    assert "-n, --limit LIMIT" in text


def test_manpage_and_completion_commands_print_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manpage"]) == 0
    assert capsys.readouterr().out.startswith(".TH OBSERVER 1")
    for shell in ("bash", "zsh", "fish"):
        assert main(["completion", shell]) == 0
        assert "observer" in capsys.readouterr().out


def test_recorded_units_are_read_from_the_database(db: Path) -> None:
    assert recorded_units(db) == UNITS


def test_a_missing_or_foreign_database_offers_no_units_quietly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert recorded_units(tmp_path / "missing.db") == []
    (tmp_path / "foreign.db").write_bytes(b"not a database at all" * 100)
    assert recorded_units(tmp_path / "foreign.db") == []
    assert main(["completion", "units", "--db", str(tmp_path / "missing.db")]) == 0
    assert capsys.readouterr() == ("", "")


def bash_complete(script: Path, bin_dir: Path, *words: str) -> list[str]:
    """What bash's completion function offers for ``words`` (the last is being typed)."""
    driver = (
        f"source {script}\n"
        'COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_LINE="$*"\n'
        "_observer observer\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", driver, "bash", *words],
        capture_output=True, text=True, check=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": "/nonexistent"},
    )  # fmt: skip
    return [line for line in result.stdout.splitlines() if line]


def test_bash_completes_commands_options_subcommands_and_recorded_units(
    program: spec.Command, tmp_path: Path, bin_dir: Path, db: Path
) -> None:
    script = tmp_path / "observer.bash"
    script.write_text(completion.bash(program))
    assert bash_complete(script, bin_dir, "observer", "hi") == ["history"]
    assert bash_complete(script, bin_dir, "observer", "--debug", "st") == ["stats", "status"]
    assert bash_complete(script, bin_dir, "observer", "history", "--l") == ["--limit"]
    assert bash_complete(script, bin_dir, "observer", "alerts", "") == [
        "test",
        "silence",
        "silences",
        "unsilence",
    ]
    assert bash_complete(script, bin_dir, "observer", "completion", "z") == ["zsh"]
    units = bash_complete(script, bin_dir, "observer", "history", "--db", str(db), "backup")
    assert units == UNITS[:2]
    assert bash_complete(script, bin_dir, "observer", "runs", "--db", str(db), "--unit", "n") == [
        "nightly-report"
    ]
    # A value is not taken for a command, and the unit comes only once.
    assert bash_complete(script, bin_dir, "observer", "history", "-n", "5", "--db", str(db), "n")
    assert bash_complete(script, bin_dir, "observer", "history", "--db", str(db), "x", "") == []
    # No database: nothing offered, nothing printed.
    assert bash_complete(script, bin_dir, "observer", "history", "--db", "/nonexistent", "") == []
    assert bash_complete(script, bin_dir, "observer", "run", "--name", "x", "--", "ech") != []


def test_fish_completes_commands_and_recorded_units(
    program: spec.Command, tmp_path: Path, bin_dir: Path, db: Path
) -> None:
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed (packaging/dev-setup.sh installs it)")
    script = tmp_path / "observer.fish"
    script.write_text(completion.fish(program))

    def complete(line: str) -> list[str]:
        result = subprocess.run(
            ["fish", "--no-config", "-c", f"source {script}; complete -C {line!r}"],
            capture_output=True, text=True, check=True,
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "OBSERVER_DB": str(db)},
        )  # fmt: skip
        return [entry.split("\t")[0] for entry in result.stdout.splitlines()]

    assert complete("observer hi") == ["history"]
    assert complete("observer history ") == UNITS
    assert complete("observer alerts ") == ["silence", "silences", "test", "unsilence"]
    assert "--limit" in complete("observer history --")


def test_zsh_script_is_valid_zsh(program: spec.Command, tmp_path: Path) -> None:
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed (packaging/dev-setup.sh installs it)")
    script = tmp_path / "_observer"
    script.write_text(completion.zsh(program))
    subprocess.run(["zsh", "-n", str(script)], check=True)
