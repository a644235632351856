"""The picture of the day (reading/day.py) and its text (reading/timeline.py), fixed clocks."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from observer.reading import day, timeline
from observer.reading.history import RecordedRun

NOW = int(datetime(2026, 11, 23, 15, 0, tzinfo=UTC).timestamp()) * 1_000_000
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = day.Window(NOW - 24 * HOUR, NOW)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(
    id: int,
    unit: str,
    start: int | None,
    end: int | None,
    result: str | None = "success",
    host: str = "host1",
) -> RecordedRun:
    return RecordedRun(
        id=id, unit=unit, invocation_id=f"{id:032x}", host=host, source="bus", boot_id=None,
        trigger=None, started_usec=start, finished_usec=end, result=None if end is None else result,
        exit_status=None, signal=None, restarts=0, output_truncated=False,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def in_utc(utc: None) -> None:
    """Every test here reads local times in UTC (the conftest's ``utc``)."""


def row_of(lines: list[str], unit: str) -> str:
    [line] = [line for line in lines if line.startswith(unit + " ")]
    return line


# -- which runs overlap ------------------------------------------------------------------


def test_intervals_that_share_time_overlap_and_touching_ones_do_not() -> None:
    intervals = [(0, 10), (5, 15), (10, 20), (30, 40), (35, 36), (50, 50)]
    assert day.overlapping_pairs(intervals) == [(0, 1), (1, 2), (3, 4)]


def test_an_interval_of_no_length_overlaps_nothing_even_inside_another() -> None:
    assert day.overlapping_pairs([(0, 100), (50, 50)]) == []


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), max_size=12))
def test_overlapping_pairs_are_exactly_the_pairs_that_intersect(
    intervals: list[tuple[int, int]],
) -> None:
    expected = [
        (i, j)
        for i, (a, b) in enumerate(intervals)
        for j, (c, d) in enumerate(intervals)
        if i < j and a < b and c < d and a < d and c < b
    ]
    assert day.overlapping_pairs(intervals) == expected


def test_a_chain_of_overlapping_runs_is_one_group_from_the_first_two_to_the_last_two() -> None:
    # 0-10 and 5-20 overlap, 15-30 overlaps the second: one group, 5 to 20, 2 at most at once.
    [group] = day.together([(0, 10), (5, 20), (15, 30), (40, 50)])
    assert (group.members, group.start_usec, group.end_usec, group.most_at_once) == (
        (0, 1, 2), 5, 20, 2,
    )  # fmt: skip


def test_a_group_counts_the_most_runs_at_once() -> None:
    [group] = day.together([(0, 10), (1, 9), (2, 8), (20, 30), (30, 40)])
    assert (group.members, group.start_usec, group.end_usec, group.most_at_once) == (
        (0, 1, 2), 1, 9, 3,
    )  # fmt: skip


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), max_size=12))
def test_groups_hold_exactly_the_intervals_that_overlap_another(
    intervals: list[tuple[int, int]],
) -> None:
    groups = day.together(intervals)
    pairs = day.overlapping_pairs(intervals)
    assert sorted(i for g in groups for i in g.members) == sorted({i for p in pairs for i in p})
    group_of = {i: n for n, g in enumerate(groups) for i in g.members}
    assert all(group_of[i] == group_of[j] for i, j in pairs)
    for g in groups:
        inside = [intervals[i] for i in g.members]
        busy = [t for t in range(51) if sum(a <= t < b for a, b in inside) >= 2]
        assert (g.start_usec, g.end_usec) == (busy[0], busy[-1] + 1)
        assert g.most_at_once == max(sum(a <= t < b for a, b in inside) for t in range(51))


def test_runs_at_the_same_time_on_two_hosts_do_not_overlap() -> None:
    runs = [
        run(1, "a.service", NOW - HOUR, NOW - HOUR + 3 * SECOND),
        run(2, "a.service", NOW - HOUR, NOW - HOUR + 3 * SECOND, host="host2"),
    ]
    picture = day.lay_out(runs, DAY, NOW)
    assert picture.overlaps == ()
    assert [(row.host, row.bars[0].overlapped) for row in picture.rows] == [
        ("host1", False), ("host2", False),
    ]  # fmt: skip


def test_a_long_running_service_beside_the_jobs_does_not_make_them_overlap() -> None:
    daemon = run(1, "dbus.service", NOW - 20 * HOUR, None)
    jobs = [
        run(2, "a.service", NOW - 3 * HOUR, NOW - 2 * HOUR)._replace(trigger="a.timer"),
        run(3, "b.service", NOW - HOUR, NOW - HOUR + SECOND)._replace(source="wrapper"),
        run(4, "c.service", NOW - HOUR, NOW - HOUR + SECOND),  # started by hand
    ]
    picture = day.lay_out([daemon, *jobs], DAY, NOW, day.job_test({"c.service"}))
    assert [[r.id for r in o.runs] for o in picture.overlaps] == [[3, 4]]
    assert len(picture.rows) == 4  # drawn all the same
    assert len(day.lay_out([daemon, *jobs], DAY, NOW).overlaps) == 1  # every run a job: one chain


# -- where runs fall in the window ---------------------------------------------------------


def test_a_run_started_before_the_window_is_clipped_to_its_start() -> None:
    picture = day.lay_out([run(1, "a.service", NOW - 30 * HOUR, NOW - 20 * HOUR)], DAY, NOW)
    [bar] = picture.rows[0].bars
    assert (bar.start_usec, bar.end_usec, bar.clipped) == (DAY.start_usec, NOW - 20 * HOUR, True)


def test_a_run_that_ended_before_the_window_is_not_shown() -> None:
    picture = day.lay_out([run(1, "a.service", NOW - 30 * HOUR, NOW - 25 * HOUR)], DAY, NOW)
    assert picture.rows == ()


def test_a_run_still_running_extends_to_now() -> None:
    picture = day.lay_out([run(1, "a.service", NOW - HOUR, None)], DAY, NOW)
    [bar] = picture.rows[0].bars
    assert (bar.end_usec, bar.kind) == (NOW, "running")


def test_units_are_in_the_order_of_their_first_run_not_of_their_names() -> None:
    runs = [
        run(1, "a.service", NOW - HOUR, NOW - HOUR + SECOND),
        run(2, "c.service", NOW - 3 * HOUR, NOW - 3 * HOUR + SECOND),
        run(3, "b.service", NOW - 2 * HOUR, NOW - 2 * HOUR + SECOND),
        run(4, "c.service", NOW - 10 * MINUTE, NOW - 9 * MINUTE),
    ]
    picture = day.lay_out(runs, DAY, NOW)
    assert [row.unit for row in picture.rows] == ["c.service", "b.service", "a.service"]
    assert [bar.run.id for bar in picture.rows[0].bars] == [2, 4]


def test_runs_of_two_units_at_the_same_time_on_one_host_overlap() -> None:
    runs = [
        run(1, "a.service", NOW - HOUR, NOW - HOUR + 3 * SECOND),
        run(2, "b.service", NOW - HOUR + SECOND, NOW - HOUR + 4 * SECOND, "exit-code"),
        run(3, "c.service", NOW - HOUR, NOW - HOUR + 3 * SECOND, host="host2"),
    ]
    [overlap] = day.lay_out(runs, DAY, NOW).overlaps
    assert ([run.id for run in overlap.runs], overlap.most_at_once) == ([1, 2], 2)
    assert (overlap.start_usec, overlap.end_usec) == (NOW - HOUR + SECOND, NOW - HOUR + 3 * SECOND)


def test_runs_of_one_unit_that_overlap_are_marked_and_others_are_not() -> None:
    runs = [
        run(1, "a.service", NOW - HOUR, NOW - HOUR + 10 * SECOND),
        run(2, "a.service", NOW - HOUR + 5 * SECOND, NOW - HOUR + 20 * SECOND),
        run(3, "a.service", NOW - 10 * MINUTE, NOW - 9 * MINUTE),
    ]
    picture = day.lay_out(runs, DAY, NOW)
    assert [bar.overlapped for bar in picture.rows[0].bars] == [True, True, False]
    assert [[run.id for run in o.runs] for o in picture.overlaps] == [[1, 2]]


def test_kinds_say_how_each_run_went() -> None:
    runs = [
        run(1, "a.service", NOW - 4 * HOUR, NOW - 4 * HOUR + SECOND),
        run(2, "a.service", NOW - 3 * HOUR, NOW - 3 * HOUR + SECOND, "exit-code"),
        run(3, "a.service", NOW - 2 * HOUR, NOW - 2 * HOUR, "condition"),
        run(4, "a.service", None, NOW - HOUR, "resources"),  # a start systemd refused
        run(5, "a.service", NOW - MINUTE, None),
    ]
    kinds = [bar.kind for bar in day.lay_out(runs, DAY, NOW).rows[0].bars]
    assert kinds == ["ok", "fail", "skipped", "fail", "running"]


def test_hour_ticks_fall_on_local_round_hours() -> None:
    os.environ["TZ"] = "Asia/Kolkata"  # UTC+05:30: local hours are not UTC's
    time.tzset()
    ticks = day.ticks(day.Window(NOW - 3 * HOUR, NOW), HOUR)
    # NOW is 20:30 there.
    assert [t.label for t in ticks] == ["18:00", "19:00", "20:00"]
    assert ticks[0].usec == NOW - 2 * HOUR - 30 * MINUTE


def test_ticks_space_out_to_fit_and_name_midnight_by_its_weekday() -> None:
    ticks = day.ticks(DAY, 5 * HOUR)
    assert [t.label for t in ticks] == ["18:00", "Mon", "06:00", "12:00"]


# -- the picture as text -------------------------------------------------------------------


def test_a_run_shorter_than_one_column_still_shows() -> None:
    lines = timeline.draw([run(1, "a.service", NOW - HOUR, NOW - HOUR + 1)], DAY, 80, NOW)
    assert row_of(lines, "a.service").count("=") == 1


def test_a_failed_run_is_drawn_with_another_character() -> None:
    runs = [
        run(1, "a.service", NOW - 5 * HOUR, NOW - 4 * HOUR),
        run(2, "a.service", NOW - 2 * HOUR, NOW - HOUR, "exit-code"),
    ]
    row = row_of(timeline.draw(runs, DAY, 80, NOW), "a.service")
    assert "=" in row
    assert "X" in row
    assert row.index("=") < row.index("X")


def test_a_running_run_reaches_the_right_edge() -> None:
    lines = timeline.draw([run(1, "a.service", NOW - HOUR, None)], DAY, 60, NOW)
    row = row_of(lines, "a.service")
    assert len(row) == 60
    assert row.endswith(">>>")


def test_a_run_begun_before_the_window_starts_with_an_arrow_at_the_left_edge() -> None:
    lines = timeline.draw([run(1, "a.service", NOW - 30 * HOUR, NOW - 20 * HOUR)], DAY, 60, NOW)
    assert row_of(lines, "a.service").startswith("a.service <==")


def test_runs_of_two_units_at_the_same_time_stand_in_the_same_columns() -> None:
    runs = [
        run(1, "a.service", NOW - 6 * HOUR, NOW - 5 * HOUR),
        run(2, "bb.service", NOW - 6 * HOUR + MINUTE, NOW - 5 * HOUR, "exit-code"),
    ]
    lines = timeline.draw(runs, DAY, 100, NOW)
    a, b = row_of(lines, "a.service"), row_of(lines, "bb.service")
    assert [i for i, c in enumerate(a) if c == "="] == [i for i, c in enumerate(b) if c == "X"]
    assert any(line.startswith("overlap ") and "a.service #1, bb.service #2" in line
               for line in lines)  # fmt: skip


def test_overlapping_runs_of_one_unit_are_marked() -> None:
    runs = [
        run(1, "a.service", NOW - 6 * HOUR, NOW - 4 * HOUR),
        run(2, "a.service", NOW - 5 * HOUR, NOW - 3 * HOUR),
    ]
    row = row_of(timeline.draw(runs, DAY, 100, NOW), "a.service")
    assert "*" in row
    assert row.index("=") < row.index("*") < row.rindex("=")


def test_adjacent_runs_sharing_a_column_are_not_marked_as_overlapping() -> None:
    runs = [
        run(1, "a.service", NOW - HOUR, NOW - HOUR + SECOND),
        run(2, "a.service", NOW - HOUR + 2 * SECOND, NOW - HOUR + 3 * SECOND, "exit-code"),
    ]
    row = row_of(timeline.draw(runs, DAY, 80, NOW), "a.service")
    assert "*" not in row
    assert row.count("X") == 1  # the failure wins the column


def test_the_axis_labels_stand_over_their_columns() -> None:
    lines = timeline.draw([run(1, "a.service", NOW - 6 * HOUR, NOW - 5 * HOUR)], DAY, 130, NOW)
    axis = lines[0]
    column = axis.index("12:00") - len("a.service ")
    # 12:00 is 21 of the window's 24 hours from its start.
    assert column == (21 * HOUR) * (130 - len("a.service ")) // (24 * HOUR)


NAMES = ["a.service", "a-very-long-unit-name@instance-one.service", "bb.timer", "c"]


@given(
    width=st.integers(20, 240),
    starts=st.lists(st.integers(-30 * HOUR, 0), min_size=1, max_size=8),
    lengths=st.lists(st.integers(0, 10 * HOUR), min_size=8, max_size=8),
    names=st.lists(st.sampled_from(NAMES), min_size=8, max_size=8),
)
def test_every_line_fits_the_width(
    width: int, starts: list[int], lengths: list[int], names: list[str]
) -> None:
    runs = [
        run(i, names[i], NOW + s, NOW + s + lengths[i] if i % 3 else None,
            "exit-code" if i % 2 else "success")
        for i, s in enumerate(starts)
    ]  # fmt: skip
    picture = day.lay_out(runs, DAY, NOW)
    for colour in (False, True):
        for line in timeline.text_lines(picture, width, colour=colour):
            assert len(ANSI.sub("", line)) <= width, line


def test_on_a_central_database_each_row_names_its_host() -> None:
    runs = [
        run(1, "a.service", NOW - HOUR, NOW - HOUR + SECOND, host="web1"),
        run(2, "a.service", NOW - HOUR, NOW - HOUR + SECOND, host="web2"),
    ]
    lines = timeline.draw(runs, DAY, 80, NOW)
    assert [line.split(" ", 2)[:2] for line in lines[1:3]] == [
        ["web1:", "a.service"], ["web2:", "a.service"],
    ]  # fmt: skip
    assert not any(line.startswith("overlap") for line in lines)


def test_too_narrow_a_width_is_refused_with_the_width_that_fits() -> None:
    long_name = "x" * 40
    with pytest.raises(ValueError, match="use at least"):
        timeline.draw([run(1, long_name, NOW - HOUR, NOW)], DAY, 15, NOW)


def test_colour_marks_failures_only_when_asked() -> None:
    picture = day.lay_out([run(1, "a.service", NOW - HOUR, NOW, "exit-code")], DAY, NOW)
    assert "\x1b[" not in "".join(timeline.text_lines(picture, 80))
    assert "\x1b[31mX" in "".join(timeline.text_lines(picture, 80, colour=True))


def test_a_unit_name_cannot_move_the_cursor() -> None:
    lines = timeline.draw([run(1, "evil\x1b[2J.service", NOW - HOUR, NOW)], DAY, 80, NOW)
    assert "\x1b" not in "".join(lines)


def test_the_whole_picture_of_a_known_day() -> None:
    runs = [
        run(1, "backup.service", NOW - 23 * HOUR, NOW - 21 * HOUR),
        run(2, "report.service", NOW - 22 * HOUR, NOW - 20 * HOUR, "exit-code"),
        run(3, "backup.service", NOW - 2 * HOUR, None),
    ]
    # 45 columns of 32 minutes; ticks every 4 hours (3 would crowd the labels).
    assert timeline.draw(runs, DAY, 60, NOW) == [
        "                16:00   20:00  Mon     04:00  08:00   12:00",
        "backup.service  =====   .      .       .      .       . >>>>",
        "report.service  . XXXXX .      .       .      .       .",
        "= ok  X failed  > running  - skipped",
        "* runs of one unit at once  < began earlier",
        "overlap 17:00:00-18:00:00 (1h00m, 2 at once): backup.servic~",
    ]


# -- for scripts ---------------------------------------------------------------------------


def test_the_json_has_each_units_runs_and_the_overlaps() -> None:
    runs = [
        run(1, "a.service", NOW - 30 * HOUR, NOW - 20 * HOUR),
        run(2, "b.service", NOW - 21 * HOUR, NOW - 19 * HOUR, "exit-code"),
    ]
    found = timeline.timeline_json(day.lay_out(runs, DAY, NOW))
    assert found["from_time"] == "2026-11-22T15:00:00.000000+00:00"
    assert [(u["unit"], [r["id"] for r in u["runs"]]) for u in found["units"]] == [
        ("a.service", [1]), ("b.service", [2]),
    ]  # fmt: skip
    assert found["units"][0]["runs"][0]["began_before_window"] is True
    assert found["units"][1]["runs"][0]["kind"] == "fail"
    [overlap] = found["overlaps"]
    assert overlap["runs"] == [1, 2]
    assert overlap["units"] == ["a.service", "b.service"]
    assert (overlap["seconds"], overlap["most_at_once"]) == (3600.0, 2)
