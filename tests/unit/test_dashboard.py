"""The static HTML dashboard, generated from a real SQLite store."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from observer.__main__ import main
from observer.dashboard import pages, queries, site, writer
from observer.model import Run, Source, TimerState
from observer.reading import history
from observer.reading.stats import unit_stats
from observer.store import database, retention
from tests.pages import Element, overview_rows, parse
from tests.unit.recorded_runs import HOUR, NOW_USEC, SECOND, invocation

HOSTILE_UNIT = "evil<blink>\"'&amp;.service"
HOSTILE_OUTPUT = [
    b"<script>document.title='pwned'</script>",
    b"</textarea></pre><img src=x onerror=alert(1)>",
    b"\x1b[31mred\x1b[0m and \xff\xfe",
]


def page(directory: Path, name: str) -> Element:
    return parse((directory / name).read_text(encoding="utf-8"))


def run(unit: str, n: int, *, result: str = "success", started: int = 0) -> Run:
    start = NOW_USEC + started * SECOND
    return Run(
        unit=unit, invocation_id=invocation(n), host="host1", source=Source.BUS,
        started_usec=start, finished_usec=start + SECOND, result=result, exit_code="exited",
        exit_status=0 if result == "success" else 1,
    )  # fmt: skip


def write_runs(path: Path, runs: list[Run], lines: list[database.StoredLine] | None = None) -> None:
    conn = database.open_for_writing(path)
    try:
        database.write_batch(conn, database.Batch(runs=runs, lines=lines or []))
    finally:
        conn.close()


def generate(db: Path, out: Path, cache: pages.Cache | None = None, **limits: int) -> pages.Report:
    conn = database.open_for_reading(db)
    try:
        return pages.generate(
            conn, out, limits=pages.Limits(**limits), now_usec=NOW_USEC, cache=cache
        )
    finally:
        conn.close()


@given(st.text(min_size=1, max_size=300))
def test_page_names_are_plain_file_names_for_any_unit_name(unit: str) -> None:
    name = pages.unit_page(unit, 3)
    assert re.fullmatch(r"unit-[A-Za-z0-9_.-]{0,48}-[0-9a-f]{12}-3\.html", name)
    assert pages.unit_page(unit) != pages.unit_page(unit + "x")


def test_units_whose_names_differ_only_in_unsafe_bytes_get_different_pages() -> None:
    escaped = "backup@home-user-My\\x20Files.service"
    assert pages.unit_page(escaped).startswith("unit-backup_home-user-My_x20Files.service-")
    assert pages.unit_page(escaped) != pages.unit_page("backup@home-user-My_x20Files.service")


def test_the_overview_lists_every_unit_with_its_health_failing_ones_first(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    pages.generate(conn, tmp_path / "pages", now_usec=NOW_USEC)

    overview = page(tmp_path / "pages", "index.html")
    assert list(overview_rows(overview).items()) == [
        ("backup.service", "failing"),
        ("backup@home-user.service", "ok"),
        ("nightly-report", "ok"),
    ]
    backup = next(
        r for r in overview.find_all("tr") if r.attrs.get("data-unit") == "backup.service"
    )
    cells = [td.text().strip() for td in backup.find_all("td")]
    # status, unit, last run, result, next run (the timer), success, failed in a row, p95
    assert cells[:8] == ["failing", "backup.service", "2026-11-23 14:50:00", "running",
                         "2026-11-23 16:00:00", "33.3%", "2", "2h05m"]  # fmt: skip
    # Oldest first: 1.2s ok, 3m04s and 2h05m failed, then one running (full and pale).
    bars = {
        p.attrs["class"]: re.findall(r"v([\d.]+)", p.attrs["d"]) for p in backup.find_all("path")
    }
    assert bars == {"ok": ["2"], "fail": ["2", "24"], "running": ["24"]}
    assert "host1" in overview.find("header").text()


def test_unit_summaries_agree_with_unit_status_and_unit_stats(conn: sqlite3.Connection) -> None:
    summaries = history.unit_summaries(conn)
    assert [status for status, _ in summaries] == history.unit_status(conn)
    assert [stats for _, stats in summaries] == unit_stats(conn)


def test_a_timers_service_that_never_ran_is_idle_with_its_next_run(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    conn = database.open_for_writing(db)
    timer = TimerState("renew.timer", "renew.service", NOW_USEC + HOUR, None)
    database.write_batch(conn, database.Batch(timers=[timer]))
    conn.close()
    out = tmp_path / "pages"
    generate(db, out)

    overview = page(out, "index.html")
    assert overview_rows(overview) == {"renew.service": "idle"}
    assert "2026-11-23 16:00:00" in overview.find("tbody").text()
    unit = page(out, pages.unit_page("renew.service"))
    assert unit.find("p", "note").text() == "No run recorded yet."
    assert not unit.find_all("svg")


def test_the_overview_shows_at_most_its_limit_of_units_failing_ones_first(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    pages.generate(conn, tmp_path, limits=pages.Limits(units=1), now_usec=NOW_USEC)

    overview = page(tmp_path, "index.html")
    assert overview_rows(overview) == {"backup.service": "failing"}
    assert overview.find("p", "note").text() == (
        "2 more units not shown here: observer status lists them all."
    )
    assert not (tmp_path / pages.unit_page("nightly-report")).exists()


def test_a_failed_runs_page_shows_its_facts_and_output_with_the_dropped_lines_markers(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    pages.generate(conn, tmp_path, now_usec=NOW_USEC)

    run_page = page(tmp_path, "run-2.html")
    facts = dict(
        zip(
            [dt.text() for dt in run_page.find_all("dt")],
            [dd.text() for dd in run_page.find_all("dd")],
            strict=True,
        )
    )
    assert facts["Result"] == "exit-code"
    assert facts["Exit status"] == "3"
    assert facts["Output"] == "7 lines, 200 bytes (4 lines, 120 bytes dropped)"
    output = run_page.find("pre", "output").text().strip().splitlines()
    assert output == [
        "13:00:00.100 info starting backup",
        "13:00:00.200 warning bad name \\xff\\xfe here",
        "[... 3 lines of output dropped ...]",
        "13:00:00.300 err \\x1b[31mdisk full\\x1b[0m",
        "[... 1 line of output dropped ...]",
    ]


def test_a_units_page_shows_its_statistics_chart_and_history(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    pages.generate(conn, tmp_path, now_usec=NOW_USEC)

    unit = page(tmp_path, pages.unit_page("backup.service"))
    facts = {
        div.find("dt").text(): div.find("dd").text() for div in unit.find("dl").find_all("div")
    }
    assert (facts["p50"], facts["p95"], facts["Max"]) == ("3m04s", "2h05m", "2h05m")
    assert facts["Runs"] == "4"
    dots = unit.find("svg", "chart").find_all("circle")
    assert [(d.attrs["class"], d.attrs["r"]) for d in dots] == [
        ("ok", "2.5"), ("fail", "4.5"), ("fail", "4.5"),
    ]  # fmt: skip
    links = [a.attrs["href"] for a in unit.find("table").find_all("a")]
    assert links[::2] == ["run-4.html", "run-3.html", "run-2.html", "run-1.html"]


def test_output_and_unit_names_that_look_like_markup_are_shown_as_text(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    lines = [
        database.StoredLine(invocation(1), seq, NOW_USEC + seq, 3, message)
        for seq, message in enumerate(HOSTILE_OUTPUT)
    ]
    hostile_run = run(HOSTILE_UNIT, 1, result="exit-code")._replace(
        trigger="<blink>t</blink>.timer"
    )
    write_runs(db, [hostile_run], lines)
    out = tmp_path / "pages"
    generate(db, out)

    unit_row = page(out, pages.unit_page(HOSTILE_UNIT)).find("table", "runs").find_all("tr")[1]
    assert "<blink>t</blink>.timer" in [td.text() for td in unit_row.find_all("td")]
    for path in out.glob("*.html"):
        html = path.read_text(encoding="utf-8").lower()
        # No element of theirs: every < they printed arrives as &lt;.
        assert "<script" not in html, path.name
        assert "<img" not in html, path.name
        assert "</textarea" not in html, path.name
        assert "<blink" not in html, path.name
        assert "\x1b" not in html, path.name
    run_page = page(out, "run-1.html")
    assert run_page.find("title").text() == f"run 1 of {HOSTILE_UNIT}: observer"
    assert run_page.find_all("script") == []
    assert run_page.find_all("img") == []
    output = run_page.find("pre", "output").text()
    assert "<script>document.title='pwned'</script>" in output
    assert "</textarea></pre><img src=x onerror=alert(1)>" in output
    assert "\\x1b[31mred\\x1b[0m and \\xff\\xfe" in output
    assert overview_rows(page(out, "index.html")) == {HOSTILE_UNIT: "failing"}
    unit_page = page(out, pages.unit_page(HOSTILE_UNIT))
    assert unit_page.find("h1").text().strip() == f"failing {HOSTILE_UNIT}"


def test_every_page_forbids_scripts_and_loads_nothing_from_elsewhere(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    pages.generate(conn, tmp_path, now_usec=NOW_USEC)

    assert (tmp_path / "style.css").read_text().startswith(":root{")
    for path in tmp_path.glob("*.html"):
        html = parse(path.read_text(encoding="utf-8"))
        policies = [
            m.attrs["content"]
            for m in html.find_all("meta")
            if m.attrs.get("http-equiv") == "Content-Security-Policy"
        ]
        assert policies == ["default-src 'none'; style-src 'self' file:; img-src data:"]
        assert html.find_all("style") == [], path.name
        assert not [e for e in html.iter() if "style" in e.attrs], path.name
        sheets = [e.attrs["href"] for e in html.find_all("link") if e.attrs["rel"] == "stylesheet"]
        assert sheets == ["style.css"], path.name
        for element in html.iter():
            for attribute in ("src", "href"):
                target = element.attrs.get(attribute, "")
                assert not re.match(r"\w+://|//", target), (path.name, target)


def test_a_units_history_is_paged_and_capped_with_a_note(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    write_runs(db, [run("busy.service", n, started=n) for n in range(1, 8)])
    out = tmp_path / "pages"
    generate(db, out, history_runs=5, page_runs=2)

    first, second, third = (page(out, pages.unit_page("busy.service", n)) for n in (1, 2, 3))
    ids = [
        [tr.find("a").text() for tr in p.find("tbody").find_all("tr")]
        for p in (first, second, third)
    ]
    assert ids == [["7", "6"], ["5", "4"], ["3"]]
    assert [a.text() for a in second.find("nav", "pages").find_all("a")] == [
        "\u2190 newer runs", "1", "3", "older runs \u2192",
    ]  # fmt: skip
    assert "The newest 5 of 7 recorded runs" in third.find("p", "note").text()
    assert not first.find_all("p", "note")
    assert sorted(p.name for p in out.glob("run-*.html")) == [f"run-{n}.html" for n in range(3, 8)]


def test_a_second_generation_rewrites_only_the_run_pages_that_changed(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    running = Run("job.service", invocation(3), "host1", Source.BUS, started_usec=NOW_USEC + 3)
    write_runs(db, [run("job.service", 1, started=1), run("job.service", 2, started=2), running])
    out = tmp_path / "pages"
    first = generate(db, out)
    again = generate(db, out)
    write_runs(db, [run("job.service", 3, started=3)])  # the running run ends
    after_end = generate(db, out)
    write_runs(db, [run("job.service", 4, started=4)])  # a new run: run 3 gets a newer one
    after_new = generate(db, out)

    # 3 run pages, 1 unit page, the overview
    assert (first.written, first.unchanged) == (5, 0)
    assert (again.written, again.unchanged) == (1, 4)  # nothing changed: only the overview
    assert (after_end.written, after_end.unchanged) == (3, 2)
    assert (after_new.written, after_new.unchanged) == (4, 2)
    assert "success" in page(out, "run-3.html").find("h1").text()


def test_with_a_cache_only_the_units_whose_runs_changed_are_read_and_written_again(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    write_runs(db, [run("a.service", 1), run("b.service", 2), run("c.service", 3)])
    out, cache = tmp_path / "pages", pages.Cache()
    first = generate(db, out, cache)
    again = generate(db, out, cache)
    write_runs(db, [run("b.service", 4, started=4)])
    after_run = generate(db, out, cache)
    (out / "run-1.html").unlink()
    after_loss = generate(db, out, cache)

    assert (first.written, first.unchanged) == (7, 0)  # 3 units, 3 runs, the overview
    assert (again.written, again.unchanged) == (1, 6)
    # b's unit page, run 4, run 2 (it links to a newer run now), the overview
    assert (after_run.written, after_run.unchanged) == (4, 4)
    assert (after_loss.written, after_loss.unchanged) == (3, 5)  # a's pages: one went missing
    rows = page(out, pages.unit_page("b.service")).find("tbody").find_all("tr")
    assert [row.find("a").attrs["href"] for row in rows] == ["run-4.html", "run-2.html"]


def test_a_new_host_rewrites_with_a_cache_the_pages_of_units_whose_runs_did_not_change(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    write_runs(db, [run("a.service", 1), run("b.service", 2)])
    out, cache = tmp_path / "pages", pages.Cache()
    generate(db, out, cache)
    write_runs(db, [run("b.service", 3, started=4)._replace(host="host2")])

    after = generate(db, out, cache)

    # Every page names the hosts: a's two pages too, b's three, the fleet's and the overview.
    assert (after.written, after.unchanged) == (7, 0)
    assert (out / "fleet.html").exists()
    assert "host1, host2" in (out / pages.unit_page("a.service")).read_text(encoding="utf-8")
    assert cache.hosts == ("host1", "host2")


def test_pages_of_runs_no_longer_shown_are_removed_and_other_files_left_alone(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    write_runs(db, [run("job.service", n, started=n) for n in range(1, 5)])
    out = tmp_path / "pages"
    out.mkdir()
    (out / "notes.html").write_text("mine")
    (out / "run-x.html").write_text("mine too")
    generate(db, out)
    conn = database.open_for_writing(db)
    retention.prune(conn, older_than_usec=None, keep_per_unit=2)
    conn.close()

    report = generate(db, out)

    assert report.removed == 2
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("run-")) == [
        "run-3.html", "run-4.html", "run-x.html",
    ]  # fmt: skip
    assert (out / "notes.html").read_text() == "mine"


def test_pages_are_readable_by_owner_and_group_only_and_no_temporary_file_is_left(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    pages.generate(conn, tmp_path / "pages", now_usec=NOW_USEC)

    names = os.listdir(tmp_path / "pages")
    assert not [n for n in names if n.endswith(".tmp")]
    for name in names:
        assert stat.S_IMODE((tmp_path / "pages" / name).stat().st_mode) == 0o640, name


def test_the_overview_is_written_after_every_other_page(
    conn: sqlite3.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[str] = []
    real = site.write_atomically

    def recording(path: Path, data: bytes) -> None:
        written.append(path.name)
        real(path, data)

    monkeypatch.setattr(pages, "write_atomically", recording)
    pages.generate(conn, tmp_path, now_usec=NOW_USEC)

    assert written[-2:] == ["index.html", site.MANIFEST]
    # the style sheet, 6 runs, 3 units, the day view, the overview, the manifest
    assert written[0] == "style.css"
    assert len(written) == 13


def test_a_generation_asked_to_stop_leaves_the_overview_as_it_was(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    with pytest.raises(pages.Stopped):
        pages.generate(conn, tmp_path, now_usec=NOW_USEC, should_stop=lambda: True)
    assert not (tmp_path / "index.html").exists()


def test_a_run_page_shows_the_start_and_end_of_very_long_output(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    lines = [
        database.StoredLine(invocation(1), seq, NOW_USEC + seq, 6, f"line {seq}".encode())
        for seq in range(10)
    ]
    write_runs(db, [run("chatty.service", 1)], lines)
    generate(db, tmp_path / "pages", output_lines=4)

    shown = page(tmp_path / "pages", "run-1.html").find("pre", "output").text().strip()
    assert [re.sub(r"^[\d:.]+ info ", "", line) for line in shown.splitlines()] == [
        "line 0", "line 1",
        "[... 6 more lines not shown here: 'observer show 1' prints them all ...]",
        "line 8", "line 9",
    ]  # fmt: skip


def test_the_report_command_writes_the_pages_and_says_where(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pages"
    assert main(["report", "--db", str(db), "--output", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote 10 pages (0 unchanged, 0 removed): {out}/index.html\n"
    assert overview_rows(page(out, "index.html"))


def test_the_report_command_explains_a_directory_it_cannot_create(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    assert main(["report", "--db", str(db), "--output", str(tmp_path / "file" / "pages")]) == 1
    assert capsys.readouterr().err == (
        f"observer: cannot create '{tmp_path}/file/pages': Not a directory\n"
    )


def test_a_fresh_report_after_one_new_run_rewrites_only_that_units_pages_and_the_overview(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    write_runs(db, [run("a.service", 1), run("b.service", 2), run("c.service", 3)])
    out = tmp_path / "pages"
    generate(db, out)
    write_runs(db, [run("b.service", 4, started=4)])

    report = generate(db, out)  # no cache: as a new `observer report` process

    # b's unit page, run 4, run 2 (it links to a newer run now), the overview
    assert (report.written, report.unchanged, report.removed) == (4, 4, 0)
    rows = page(out, pages.unit_page("b.service")).find("tbody").find_all("tr")
    assert [row.find("a").attrs["href"] for row in rows] == ["run-4.html", "run-2.html"]
    assert "b.service" in page(out, "run-4.html").find("h1").text()


def test_a_late_output_line_rewrites_the_page_of_its_run(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    write_runs(db, [run("job.service", n, started=n) for n in (1, 2)])
    out = tmp_path / "pages"
    generate(db, out)
    conn = database.open_for_writing(db)
    late = database.StoredLine(invocation(1), 0, NOW_USEC + 2 * SECOND, 6, b"arrived late")
    counts = database.OutputCounts(invocation(1), 1, 12, 0, 0, None, NOW_USEC + 2 * SECOND)
    database.write_batch(conn, database.Batch(lines=[late], counts={invocation(1): counts}))
    conn.close()

    report = generate(db, out)

    assert (report.written, report.unchanged) == (3, 1)  # run 1, the unit page, the overview
    assert "arrived late" in page(out, "run-1.html").find("pre", "output").text()


def test_a_unit_whose_runs_retention_deleted_is_written_again(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    write_runs(db, [run("job.service", n, started=n) for n in range(1, 5)])
    write_runs(db, [run("other.service", 9)])
    out = tmp_path / "pages"
    generate(db, out)
    conn = database.open_for_writing(db)
    retention.prune(conn, older_than_usec=None, keep_per_unit=2)
    conn.close()

    report = generate(db, out)

    # job's unit page, run 3 (its older run is gone), the overview; runs 1 and 2 removed
    assert (report.written, report.unchanged, report.removed) == (3, 3, 2)
    unit = page(out, pages.unit_page("job.service"))
    facts = {div.find("dt").text(): div.find("dd").text() for div in unit.find_all("div")}
    assert facts["Runs"] == "2"


@pytest.mark.parametrize(
    "manifest",
    [
        '{"format": 1, "pages": {"run-1.html": "0123"}}',  # as observer wrote it before
        '{"format": 2, "setting": "another", "hosts": [], "units": {}}',
        '{"format": 2, "setting": null, "units": [1, 2]}',
        "not json",
    ],
)
def test_a_manifest_of_another_format_or_setting_is_ignored_and_every_page_written(
    tmp_path: Path, manifest: str
) -> None:
    db = tmp_path / "observer.db"
    write_runs(db, [run("job.service", n, started=n) for n in (1, 2)])
    out = tmp_path / "pages"
    generate(db, out)
    (out / site.MANIFEST).write_text(manifest)

    report = generate(db, out)

    assert (report.written, report.unchanged, report.removed) == (4, 0, 0)
    assert generate(db, out).written == 1  # and the manifest it wrote is used again


def test_a_report_with_other_limits_writes_every_page_again(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    write_runs(db, [run("job.service", n, started=n) for n in (1, 2, 3)])
    out = tmp_path / "pages"
    generate(db, out)

    report = generate(db, out, history_runs=2)

    assert (report.written, report.unchanged, report.removed) == (4, 0, 1)


def test_a_unit_hidden_from_the_overview_gets_its_pages_once_it_is_shown(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    write_runs(db, [run("a.service", 1), run("b.service", 2)])
    out = tmp_path / "pages"
    generate(db, out, units=1)
    assert not (out / pages.unit_page("b.service")).exists()
    write_runs(db, [run("b.service", 3, result="exit-code", started=3)])  # failing: shown first

    report = generate(db, out, units=1)

    assert overview_rows(page(out, "index.html")) == {"b.service": "failing"}
    assert (out / pages.unit_page("b.service")).exists()
    assert not (out / pages.unit_page("a.service")).exists()
    assert (report.written, report.removed) == (4, 2)  # b's two runs, its page, the overview


def test_every_write_of_a_units_runs_or_output_bumps_its_version(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    write_runs(db, [run("a.service", 1), run("b.service", 2)])
    conn = database.open_for_writing(db)
    assert queries.unit_versions(conn) == {"a.service": 1, "b.service": 1}
    line = database.StoredLine(invocation(2), 0, NOW_USEC, 6, b"late")
    database.write_batch(conn, database.Batch(lines=[line]))
    database.write_batch(conn, database.Batch(dropped=[(invocation(1), 0)]))
    stray = database.StoredLine("f" * 32, 0, NOW_USEC, 6, b"?")
    database.write_batch(conn, database.Batch(lines=[stray]))
    assert queries.unit_versions(conn) == {"a.service": 2, "b.service": 2}
    retention.prune(conn, older_than_usec=NOW_USEC + HOUR, keep_per_unit=None)
    assert queries.unit_versions(conn) == {"a.service": 3, "b.service": 3}
    conn.close()


def test_a_database_of_schema_3_gains_the_unit_versions(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    write_runs(db, [run("a.service", 1)])
    conn = sqlite3.connect(db)
    conn.executescript("DROP TABLE unit_changes; PRAGMA user_version = 3;")
    conn.close()
    out = tmp_path / "pages"

    conn = database.open_for_writing(db)  # as the daemon opens it: the upgrade
    assert queries.unit_versions(conn) == {}  # no row: version 0
    conn.close()
    first = generate(db, out)
    write_runs(db, [run("a.service", 2, started=2)])
    again = generate(db, out)

    assert (first.written, again.written) == (3, 4)  # run 2, run 1, the unit page, the overview


def test_pages_written_by_a_writer_process_are_those_written_in_process(
    conn: sqlite3.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages.generate(conn, tmp_path / "here", now_usec=NOW_USEC)
    monkeypatch.setattr(writer, "SPAWN_AFTER", 2)  # the rest by `python -m ...writer`
    pages.generate(conn, tmp_path / "there", now_usec=NOW_USEC)

    def without_clock(path: Path) -> str:
        return re.sub(r"Generated [\d: -]+", "", path.read_text(encoding="utf-8"))

    names = sorted(p.name for p in (tmp_path / "here").glob("*.html"))
    assert names == sorted(p.name for p in (tmp_path / "there").glob("*.html"))
    for name in names:
        assert without_clock(tmp_path / "here" / name) == without_clock(tmp_path / "there" / name)
        assert stat.S_IMODE((tmp_path / "there" / name).stat().st_mode) == 0o640


def test_a_writer_process_that_cannot_write_says_which_file(tmp_path: Path) -> None:
    files = writer.Writer(writer.write_atomically, spawn_after=0)
    files.put(tmp_path / "a.html", b"a")
    files.put(tmp_path / "missing" / "b.html", b"b")

    with pytest.raises(writer.DashboardError, match=r"cannot write in '.*/missing'"):
        files.close()
    assert (tmp_path / "a.html").read_bytes() == b"a"


def test_what_a_generation_asks_of_the_store_never_reads_all_the_runs(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    pages.generate(conn, tmp_path, now_usec=NOW_USEC)
    conn.set_trace_callback(None)

    selects = {sql for sql in statements if sql.lstrip().upper().startswith("SELECT")}
    assert any("unit_changes" in sql for sql in selects)
    for sql in selects:
        plan = [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
        for step in plan:
            assert not (step.startswith(("SCAN r", "SCAN runs")) and "INDEX" not in step), sql
            # The one sort: the distinct hosts among the runs of one unit.
            sorts_runs = "TEMP B-TREE" in step and " runs" in sql
            assert not sorts_runs or sql.startswith("SELECT DISTINCT host FROM runs WHERE unit"), (
                sql
            )


def test_temporary_files_a_killed_generation_left_are_removed_but_not_counted(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    write_runs(db, [run("job.service", 1)])
    out = tmp_path / "pages"
    generate(db, out)
    left = out / ".observer-abc.tmp"
    left.write_text("half a page")
    os.utime(left, (0, 0))
    (out / ".observer-new.tmp").write_text("maybe another generation's")

    report = generate(db, out)

    assert report.removed == 0
    assert not left.exists()
    assert (out / ".observer-new.tmp").exists()


def test_open_problems_and_findings_are_on_the_overview_and_the_unit_page(
    tmp_path: Path,
) -> None:
    from observer.alert_config import AlertsConfig  # noqa: PLC0415
    from observer.alerts.state import AlertLedger  # noqa: PLC0415

    db, out = tmp_path / "observer.db", tmp_path / "pages"
    write_runs(db, [run("health.service", 1), run("health.service", 2, started=60)])
    cache = pages.Cache()  # as the daemon keeps it: a unit's pages are kept until it changes
    generate(db, out, cache)
    conn = database.open_for_writing(db)
    config = AlertsConfig(present=True)
    ledger = AlertLedger(conn, config._replace(rules=config.rules._replace(failures=1,
                                                             fail_output="^ERROR")),
                         lambda unit: [])  # fmt: skip
    ledger.since(NOW_USEC - HOUR)
    line = database.StoredLine(invocation(3), 0, NOW_USEC + 120 * SECOND, 3, b"ERROR: DNS down")
    runs = [run("health.service", 3, started=120)]
    database.write_batch(conn, database.Batch(runs=runs, lines=[line]))
    ledger.judge_runs(NOW_USEC + HOUR)
    conn.close()
    generate(db, out, cache)  # the unit changed: a run, and a problem opened
    overview = page(out, "index.html")
    health = next(
        r for r in overview.find_all("tr") if r.attrs.get("data-unit") == "health.service"
    )
    assert health.find_all("td")[8].text().strip() == "failing"
    unit = page(out, pages.unit_page("health.service"))
    facts = unit.text()
    assert "Open problems" in facts
    newest = next(r for r in unit.find_all("tr") if r.find_all("td"))
    cell = newest.find_all("td")[6]
    assert cell.text().strip() == "fail-output"
    assert cell.attrs["title"] == "printed 'ERROR: DNS down'"
