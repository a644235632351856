"""`observer timeline`, `observer next` and the dashboard's day view, on runs the real daemon
recorded from a sandboxed systemd: two timers whose runs overlap, one whose run fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.observed import ObserverDaemon, oneshot
from tests.pages import Element, parse
from tests.sandbox import Sandbox
from tests.waiting import wait_for

HOURLY = "[Timer]\nOnActiveSec=1\nOnUnitActiveSec=1h\nAccuracySec=1ms\n"
# Five seconds after the sleeps: a run of its own, overlapping neither.
LATER = HOURLY.replace("OnActiveSec=1", "OnActiveSec=6")
OURS = ("disk-a.service", "disk-b.service", "broken.service")


def start_timers(sandbox: Sandbox) -> None:
    """disk-a and disk-b sleep 3 s each, started together; broken fails after them."""
    for name in ("disk-a", "disk-b"):
        sandbox.write_unit(f"{name}.service", oneshot("sleep 3"))
        sandbox.write_unit(f"{name}.timer", HOURLY)
    sandbox.write_unit("broken.service", oneshot("echo no disk; exit 1"))
    sandbox.write_unit("broken.timer", LATER)
    sandbox.daemon_reload()
    sandbox.systemctl("start", "disk-a.timer", "disk-b.timer", "broken.timer")


def day_rects(pages: Path, runs: int) -> list[Element] | None:
    """The rects of our units on the day page, once it shows ``runs`` of them."""
    page = pages / "day.html"
    if not page.exists():
        return None
    rects = parse(page.read_text(encoding="utf-8")).find("svg", "day").find_all("rect")
    ours = [r for r in rects if r.find("title").text().startswith(OURS)]
    return ours if len(ours) == runs and "running" not in {r.attrs["class"] for r in ours} else None


def test_timeline_next_and_the_day_view_show_the_overlap_and_the_failure(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    pages = tmp_path / "pages"
    daemon = ObserverDaemon(
        sandbox, tmp_path,
        config=f'[dashboard]\ndirectory = "{pages}"\nquiet_seconds = 1\nmin_interval_seconds = 1\n',
    )  # fmt: skip
    try:
        daemon.start()
        start_timers(sandbox)
        runs = {unit: daemon.finished_runs(unit, 1)[0] for unit in OURS}

        timeline: dict[str, Any] = daemon.json("timeline", *OURS)
        kinds = {u["unit"]: [r["kind"] for r in u["runs"]] for u in timeline["units"]}
        assert kinds == {"disk-a.service": ["ok"], "disk-b.service": ["ok"],
                         "broken.service": ["fail"]}  # fmt: skip
        [overlap] = timeline["overlaps"]
        assert sorted(overlap["runs"]) == sorted(
            [runs["disk-a.service"]["id"], runs["disk-b.service"]["id"]]
        )
        assert overlap["seconds"] > 2  # both slept 3 s, started within a moment of each other
        assert overlap["most_at_once"] == 2

        drawn = daemon.cli("timeline", "--width", "80").stdout.splitlines()
        assert max(len(line) for line in drawn) <= 80, "\n".join(drawn)
        rows = {line.split(" ", 1)[0]: line for line in drawn if line.startswith(OURS)}
        assert set(rows) == set(OURS)
        assert "X" in rows["broken.service"]
        assert "=" in rows["disk-a.service"]
        assert any(line.startswith("overlap ") and "disk-a.service" in line for line in drawn)

        def scheduled() -> list[dict[str, Any]] | None:
            found = [t for t in daemon.json("next") if t["unit"] in OURS]
            return found if len(found) == 3 and all(t["usual_seconds"] for t in found) else None

        upcoming = {t["timer"]: t for t in wait_for(scheduled, timeout=20, what="3 timers")}
        assert set(upcoming) == {"disk-a.timer", "disk-b.timer", "broken.timer"}
        assert all(t["next_at"] > runs[t["unit"]]["finished_at"] for t in upcoming.values())
        # The two hourly sleeps are due together again: expected to overlap.
        assert upcoming["disk-a.timer"]["overlaps"] == ["disk-b.service"]

        rects = wait_for(lambda: day_rects(pages, 3), timeout=30, what="3 runs on day.html")
        by_unit = {r.find("title").text().split(":", 1)[0]: r for r in rects}
        assert set(by_unit) == set(OURS)
        assert by_unit["broken.service"].attrs["class"] == "fail"
        assert by_unit["disk-a.service"].attrs["class"] == "ok"
        assert "exit-code" in by_unit["broken.service"].find("title").text()
        overview = parse((pages / "index.html").read_text(encoding="utf-8"))
        assert "day.html" in [a.attrs.get("href") for a in overview.find_all("a")]
    finally:
        daemon.close()
