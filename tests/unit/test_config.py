"""The configuration file: errors that name file, line, key and value; the shipped default file."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from observer.__main__ import main
from observer.config import _SECTIONS, Config, load_config
from observer.model import ConfigError

ROOT = Path(__file__).resolve().parent.parent.parent
SHIPPED = ROOT / "packaging" / "observer.toml"
# An option line of the shipped file: "# key = value   # what it does".
OPTION_LINE = re.compile(r"^# ([a-z_]+) = ")
COMMENTED_TABLE = re.compile(r"^# \[[a-z_]+\]")


def error_of(tmp_path: Path, text: str) -> str:
    path = tmp_path / "observer.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '# comment\n\n[retention]\nmax_age_days = "90"\n',
            ':4: retention.max_age_days = "90": expected a whole number >= 0',
        ),
        (
            "[output]\nmax_bytes = 1\nmax_byte = 5\n",
            ":3: unknown key output.max_byte = 5 (did you mean max_bytes? "
            "known: failed_max_bytes, max_bytes)",
        ),
        ("[retention]\n\n[retension]\nmax_age_days = 1\n", ":3: unknown section [retension]"),
        ("host = 7\n", ":1: host = 7: expected a string"),
        ("hots = 'a'\n", ':1: unknown key hots = "a" (did you mean host?'),
        ("\nobserve = 3\n", ":2: observe = 3: [observe] must be a table"),
        ("[observe]\ninclude = [\n  'a',\n  1,\n]\n", ':2: observe.include = ["a", 1]: expected'),
        ("[observe]\nexclude = 'x*'\n", ':2: observe.exclude = "x*": expected a list of strings'),
        ("[output]\nmax_bytes = -1\n", ":2: output.max_bytes = -1: expected a whole number >= 0"),
        ("[output]\nmax_bytes = true\n", ":2: output.max_bytes = true: expected a whole number"),
        ("[output]\nmax_bytes = 1.5\n", ":2: output.max_bytes = 1.5: expected a whole number"),
        # Keys written as dotted, quoted or inline tables are found as well.
        ("host = 'h'\nretention.max_age_days = -1\n", ":2: retention.max_age_days = -1"),
        ('[retention]\n"max_age_days" = "a"\n', ':2: retention.max_age_days = "a"'),
        ("\nretention = { max_runs_per_unit = true }\n", ":2: retention.max_runs_per_unit = true"),
        # A key that only appears inside a multi-line string is not taken for the key.
        (
            'host = """\n[journal]\nbackfill_days = 1\n"""\n[journal]\nbackfill_days = "2"\n',
            ':6: journal.backfill_days = "2"',
        ),
    ],
)
def test_a_bad_setting_is_an_error_naming_file_line_key_and_value(
    tmp_path: Path, text: str, message: str
) -> None:
    error = error_of(tmp_path, text)
    assert error.startswith(f"{tmp_path / 'observer.toml'}:")
    assert message in error


def test_invalid_toml_is_an_error_naming_line_column_and_the_line(tmp_path: Path) -> None:
    error = error_of(tmp_path, "[output]\n# how much\nmax_bytes = 64 KiB\n")
    assert error == (
        f"{tmp_path / 'observer.toml'}:3:16: invalid TOML: "
        "Expected newline or end of document after a statement: max_bytes = 64 KiB"
    )


def test_a_file_cut_short_is_an_error_naming_its_last_line(tmp_path: Path) -> None:
    error = error_of(tmp_path, '[observe]\ninclude = ["*.service"\n')
    assert error == f"{tmp_path / 'observer.toml'}:2: invalid TOML: Unclosed array at the end"


def test_a_key_set_twice_is_an_error_naming_its_second_line(tmp_path: Path) -> None:
    error = error_of(tmp_path, "[output]\nmax_bytes = 1\nmax_bytes = 2\n")
    assert error.startswith(f"{tmp_path / 'observer.toml'}:3:")
    assert "max_bytes = 2" in error


def test_a_long_bad_value_is_shortened(tmp_path: Path) -> None:
    error = error_of(tmp_path, f'[observe]\ninclude = "{"x" * 500}"\n')
    assert "..." in error
    assert len(error) < 200


def test_a_file_that_is_not_utf8_or_cannot_be_read_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "observer.toml"
    path.write_bytes(b"host = '\xff'\n")
    with pytest.raises(ConfigError, match=r"observer\.toml: not UTF-8 text"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"cannot read config .*missing\.toml"):
        load_config(tmp_path / "missing.toml")


CHUNKS = ["", "# a comment", "[output]\nmax_bytes = 1\n# max_age_days = 'x'", "[journal]", "#"]


@given(
    before=st.lists(st.sampled_from(CHUNKS), max_size=5, unique=True),
    after=st.lists(st.sampled_from(CHUNKS[2:]), max_size=2, unique=True),
    indent=st.sampled_from(["", "  ", "\t"]),
)
def test_the_line_named_is_the_line_holding_the_bad_value(
    before: list[str], after: list[str], indent: str
) -> None:
    if set(before) & set(after):
        return  # a table may be declared only once
    bad = f"{indent}max_age_days = 'ninety'"
    text = "\n".join([*before, "[retention]", bad, *after]) + "\n"
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory, "observer.toml")
        path.write_text(text)
        with pytest.raises(ConfigError) as raised:
            load_config(path)
    number = text.splitlines().index(bad) + 1
    assert str(raised.value).startswith(f'{path}:{number}: retention.max_age_days = "ninety"')


# -- observer check-config and observer daemon ---------------------------------------------


def test_check_config_says_ok_for_a_good_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "observer.toml"
    path.write_text("[retention]\nmax_age_days = 30\n")
    assert main(["check-config", "--config", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"


@pytest.mark.parametrize("command", [["check-config"], ["daemon", "--db", "unused.db"]])
def test_a_bad_file_stops_check_config_and_the_daemon_with_the_same_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    path = tmp_path / "observer.toml"
    path.write_text("[output]\nmax_bytes = 1\n\n[retention]\nmax_age_day = 30\n")
    assert main([*command, "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"observer: {path}:5: unknown key retention.max_age_day = 30 "
        "(did you mean max_age_days? known: max_age_days, max_runs_per_unit)\n"
    )
    assert not (tmp_path / "unused.db").exists()


# -- the shipped default file --------------------------------------------------------------


def live(options: bool) -> str:
    """The shipped file's tables, made live where commented out (``# [alerts]``), and with
    ``options`` its option lines made live too."""
    lines = []
    for line in SHIPPED.read_text().splitlines():
        if COMMENTED_TABLE.match(line) or (options and OPTION_LINE.match(line)):
            lines.append(line[2:])
        elif line.startswith("["):
            lines.append(line)
    return "\n".join(lines) + "\n"


def test_the_shipped_file_sets_nothing() -> None:
    assert load_config(SHIPPED) == Config()


def test_the_shipped_file_shows_the_real_default_of_every_option(tmp_path: Path) -> None:
    # Every table it names, empty, against the same tables with every option as shown.
    tables = tmp_path / "tables.toml"
    tables.write_text(live(options=False))
    options = tmp_path / "options.toml"
    options.write_text(live(options=True))
    assert load_config(options) == load_config(tables)


def test_the_shipped_file_names_every_table_and_every_option_once() -> None:
    tables, options, table = [], [], ""
    for line in SHIPPED.read_text().splitlines():
        if header := re.match(r"(?:# )?\[([a-z_]+)\]", line):
            table = header[1]
            tables.append(table)
        elif option := OPTION_LINE.match(line):
            options.append(f"{table}.{option[1]}" if table else option[1])
    assert sorted(tables) == sorted(_SECTIONS)
    # A table that reads itself (from_table) has options of its own making: the test above
    # proves each one it lists is real and shows its default.
    simple = {name for name, cls in _SECTIONS.items() if not hasattr(cls, "from_table")}
    expected = ["host"] + [f"{name}.{key}" for name in simple for key in _SECTIONS[name]._fields]
    assert sorted(o for o in options if o.partition(".")[0] in {"host", *simple}) == sorted(
        expected
    )


def test_the_configuration_page_shows_the_shipped_file_and_a_row_for_every_option() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    block = re.search(r"^<!-- packaging/observer.toml -->\n```toml\n(.*?)^```$", page, re.M | re.S)
    assert block is not None
    assert block[1] == SHIPPED.read_text()
    rows = set(re.findall(r"^\| `((?:\[[a-z_]+\] )?[a-z_]+)` \|", page, re.M))
    simple = {name for name, cls in _SECTIONS.items() if not hasattr(cls, "from_table")}
    options = {"host"} | {f"[{name}] {key}" for name in simple for key in _SECTIONS[name]._fields}
    assert options <= rows
    for name in set(_SECTIONS) - simple:
        assert f"| `[{name}]` ... |" in page
