"""The dashboard's day view: the timeline's picture as SVG, one page per host."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from observer.dashboard import day_page, pages, site
from observer.model import Run, Source
from observer.reading import day
from observer.store import database
from tests.pages import Element, parse
from tests.unit.recorded_runs import HOUR, MINUTE, NOW_USEC, SECOND, invocation
from tests.unit.test_timeline import run as recorded

DAY = day.Window(NOW_USEC - 24 * HOUR, NOW_USEC)


def stored(unit: str, n: int, start: int, seconds: int, result: str = "success") -> Run:
    return Run(
        unit=unit, invocation_id=invocation(n), host="host1", source=Source.BUS,
        started_usec=start, finished_usec=start + seconds * SECOND, result=result,
        exit_code="exited", exit_status=0 if result == "success" else 1,
        trigger=unit.replace(".service", ".timer"),
    )  # fmt: skip


def write_runs(path: Path, runs: list[Run]) -> None:
    conn = database.open_for_writing(path)
    try:
        database.write_batch(conn, database.Batch(runs=runs))
    finally:
        conn.close()


def generate(db: Path, out: Path, now_usec: int = NOW_USEC) -> pages.Report:
    conn = database.open_for_reading(db)
    try:
        return pages.generate(conn, out, now_usec=now_usec)
    finally:
        conn.close()


def rects(page: Element) -> list[Element]:
    return page.find("svg", "day").find_all("rect")


# -- the picture in pixels -----------------------------------------------------------------


def test_a_run_is_placed_by_its_time_and_a_run_of_a_second_still_shows() -> None:
    runs = [
        recorded(1, "a.service", NOW_USEC - 12 * HOUR, NOW_USEC - 6 * HOUR),
        recorded(2, "b.service", NOW_USEC - 3 * HOUR, NOW_USEC - 3 * HOUR + SECOND, "exit-code"),
    ]
    chart = day_page.day_chart(day.lay_out(runs, DAY, NOW_USEC), lambda _: None)
    half, quarter = chart.plot_width / 2, chart.plot_width / 4
    first, second = chart.rects
    assert (first.x, first.width, first.kind) == (chart.left + half, round(quarter, 1), "ok")
    assert (second.width, second.kind) == (2.0, "fail")
    assert first.y < second.y  # a row per unit, in the order of their first run


def test_a_running_run_reaches_the_right_edge_and_an_earlier_one_the_left() -> None:
    runs = [
        recorded(1, "a.service", NOW_USEC - 30 * HOUR, NOW_USEC - 20 * HOUR),
        recorded(2, "a.service", NOW_USEC - HOUR, None),
    ]
    chart = day_page.day_chart(day.lay_out(runs, DAY, NOW_USEC), lambda _: None)
    earlier, running = chart.rects
    assert earlier.x == chart.left
    assert running.x + running.width == chart.left + chart.plot_width
    assert running.kind == "running"


def test_each_run_has_a_tooltip_with_its_unit_start_duration_and_result(utc: None) -> None:
    runs = [recorded(1, "a.service", NOW_USEC - HOUR, NOW_USEC - HOUR + 90 * SECOND, "exit-code")]
    [rect] = day_page.day_chart(day.lay_out(runs, DAY, NOW_USEC), lambda _: "run-1.html").rects
    assert rect.title == "a.service: started 2026-11-23 14:00:00, 1m30s, exit-code"
    assert rect.href == "run-1.html"


def test_the_page_of_each_host_has_a_plain_name() -> None:
    assert day_page.day_page("web3", several=False) == "day.html"
    assert re.fullmatch(r"day-web3-[0-9a-f]{12}\.html", day_page.day_page("web3", several=True))
    assert site.is_page(day_page.day_page("a b/c", several=True))
    assert not site.is_page("day-notes.html")  # someone else's file in the directory


# -- the page --------------------------------------------------------------------------------


def test_the_day_page_holds_a_rect_per_run_of_the_last_day_failures_in_red(
    tmp_path: Path, utc: None
) -> None:
    db = tmp_path / "observer.db"
    write_runs(db, [
        stored("a.service", 1, NOW_USEC - 30 * HOUR, 10),  # the day before: not shown
        stored("a.service", 2, NOW_USEC - 2 * HOUR, 3),
        stored("b.service", 3, NOW_USEC - 2 * HOUR + SECOND, 3, "exit-code"),
        stored("c.service", 4, NOW_USEC - 10 * MINUTE, 1),
    ])  # fmt: skip
    report = generate(db, tmp_path / "pages")

    page = parse((tmp_path / "pages" / "day.html").read_text(encoding="utf-8"))
    drawn = rects(page)
    assert report.day_pages == 1
    assert [r.find("title").text() for r in drawn] == [
        "a.service: started 2026-11-23 13:00:00, 3.0s, success",
        "b.service: started 2026-11-23 13:00:01, 3.0s, exit-code",
        "c.service: started 2026-11-23 14:50:00, 1.0s, success",
    ]
    assert sorted(r.attrs["class"] for r in drawn) == ["fail", "ok", "ok"]
    assert "b.service (run 3)" in page.find("ul", "overlaps").text()
    assert [a.attrs["href"] for a in page.find("svg", "day").find_all("a")] == [
        "run-2.html", "run-3.html", "run-4.html",
    ]  # fmt: skip
    overview = parse((tmp_path / "pages" / "index.html").read_text(encoding="utf-8"))
    assert "day.html" in [a.attrs.get("href") for a in overview.find_all("a")]


def test_a_central_database_gets_a_day_page_per_host(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    write_runs(db, [
        stored("a.service", 1, NOW_USEC - HOUR, 3),
        stored("a.service", 2, NOW_USEC - HOUR, 3)._replace(host="host2"),
    ])  # fmt: skip
    generate(db, tmp_path / "pages")

    for host in ("host1", "host2"):
        page = parse(
            (tmp_path / "pages" / day_page.day_page(host, several=True)).read_text("utf-8")
        )
        assert page.find("h1").text() == f"The last 24 hours on {host}"
        assert len(rects(page)) == 1
        assert "0 overlaps" in " ".join(page.find("p", "summary").text().split())
    assert not (tmp_path / "pages" / "day.html").exists()


def test_the_day_page_is_rewritten_when_a_run_ends(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    running = Run("a.service", invocation(1), "host1", Source.BUS, NOW_USEC - HOUR)
    write_runs(db, [running])
    generate(db, tmp_path / "pages")
    before = parse((tmp_path / "pages" / "day.html").read_text("utf-8"))
    write_runs(db, [stored("a.service", 1, NOW_USEC - HOUR, 60, "exit-code")])
    generate(db, tmp_path / "pages")
    after = parse((tmp_path / "pages" / "day.html").read_text("utf-8"))

    assert [r.attrs["class"] for r in rects(before)] == ["running"]
    assert [r.attrs["class"] for r in rects(after)] == ["fail"]


def test_a_day_that_is_slow_to_draw_is_kept_for_ten_times_its_cost_then_drawn_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, out = tmp_path / "observer.db", tmp_path / "pages"
    write_runs(db, [stored("a.service", 1, NOW_USEC - HOUR, 60)])
    monkeypatch.setattr(pages, "DAY_ALWAYS_SECONDS", 0.0)  # as if it took long
    monkeypatch.setattr(time, "process_time", iter([0.0, 2.0, 10.0, 11.0]).__next__)
    assert generate(db, out).day_pages == 1  # drawn in "2 CPU-s"
    write_runs(db, [stored("b.service", 2, NOW_USEC - HOUR, 60)])

    kept = generate(db, out, NOW_USEC + 19 * SECOND)
    assert kept.day_pages == 0
    assert len(rects(parse((out / "day.html").read_text("utf-8")))) == 1
    overview = parse((out / "index.html").read_text("utf-8"))
    assert [a.attrs["href"] for a in overview.find_all("a") if a.text() == "day view"] == [
        "day.html"
    ]

    assert generate(db, out, NOW_USEC + 21 * SECOND).day_pages == 1  # older than 10 x 2 s
    assert len(rects(parse((out / "day.html").read_text("utf-8")))) == 2


def test_a_unit_name_that_looks_like_markup_is_text_in_its_tooltip(
    tmp_path: Path, utc: None
) -> None:
    hostile = "evil<b id=x>\"'&amp;.service"
    write_runs(tmp_path / "observer.db", [stored(hostile, 1, NOW_USEC - HOUR, 3)])
    generate(tmp_path / "observer.db", tmp_path / "pages")

    page = parse((tmp_path / "pages" / "day.html").read_text(encoding="utf-8"))
    [rect] = rects(page)
    assert rect.find("title").text() == f"{hostile}: started 2026-11-23 14:00:00, 3.0s, success"
    assert page.find_all("b") == [b for b in page.find_all("b") if "id" not in b.attrs]
