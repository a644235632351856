"""The geometry of the dashboard's SVG pictures: plain numbers, no I/O, no markup."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from observer.reading.render import table_time
from observer.spans import human_duration


@dataclass(frozen=True, slots=True)
class Sample:
    """One run as a picture shows it."""

    started_usec: int | None
    seconds: float | None  # None while running, or when a time is unknown
    kind: str  # ok, fail, running, unknown: the CSS class
    title: str  # shown on hover
    href: str  # the run's page


@dataclass(frozen=True, slots=True)
class Mark:
    """A bar (x, y its top left corner) or a dot (x, y its centre, width its radius)."""

    x: float
    y: float
    width: float
    height: float
    kind: str
    title: str
    href: str


@dataclass(frozen=True, slots=True)
class Sparkline:
    width: int
    height: int
    bars: list[Mark]

    @property
    def paths(self) -> list[tuple[str, str]]:
        """One SVG path per kind of bar: (kind, path data); far smaller than one rect each."""
        by_kind: dict[str, list[str]] = {}
        for bar in self.bars:
            by_kind.setdefault(bar.kind, []).append(
                f"M{bar.x:g} {bar.y:g}h{bar.width:g}v{bar.height:g}h{-bar.width:g}z"
            )
        return [(kind, "".join(parts)) for kind, parts in by_kind.items()]

    @property
    def title(self) -> str:
        failed = sum(1 for bar in self.bars if bar.kind == "fail")
        return f"the last {len(self.bars)} runs, {failed} failed: height is duration"


@dataclass(frozen=True, slots=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Duration against start time: a line through the finished runs, failures larger."""

    width: int
    height: int
    left: int
    plot_width: int
    line: str  # the points of an SVG polyline
    dots: list[Mark]
    y_ticks: list[Tick]
    x_ticks: list[Tick]


def sparkline(
    oldest_first: Sequence[Sample], slots: int, width: int = 150, height: int = 24
) -> Sparkline:
    """One bar per run in ``slots`` places; height is duration, colour the result.

    The newest run always sits at the right edge; a running run is a full, pale bar.
    """
    samples = list(oldest_first)[-slots:] if slots > 0 else []
    slot = width / max(slots, 1)
    longest = max((s.seconds for s in samples if s.seconds is not None), default=0.0)
    offset = width - slot * len(samples)
    bars = []
    for i, sample in enumerate(samples):
        if sample.kind == "running":
            bar_height = float(height)
        elif sample.seconds is None or longest <= 0:
            bar_height = 2.0
        else:
            bar_height = max(2.0, sample.seconds / longest * height)
        kind = sample.kind if sample.seconds is not None or sample.kind == "running" else "unknown"
        bars.append(
            Mark(
                x=round(offset + i * slot, 1),
                y=round(height - bar_height, 1),
                width=round(max(slot - 1, 1.0), 1),
                height=round(bar_height, 1),
                kind=kind,
                title=sample.title,
                href=sample.href,
            )
        )
    return Sparkline(width, height, bars)


def chart(samples: Sequence[Sample], width: int = 900, height: int = 240) -> Chart | None:
    """Each finished run's duration at its start time; None when no run has both."""
    timed = sorted(
        (s for s in samples if s.seconds is not None and s.started_usec is not None),
        key=lambda s: s.started_usec or 0,
    )
    if not timed:
        return None
    left, top, right, bottom = 64, 12, 16, 28
    plot_width, plot_height = width - left - right, height - top - bottom
    first, last = timed[0].started_usec or 0, timed[-1].started_usec or 0
    longest = max(s.seconds or 0.0 for s in timed)
    ceiling = (longest or 1.0) * 1.1

    def x_of(started_usec: int) -> float:
        if last == first:
            return left + plot_width / 2
        return left + (started_usec - first) / (last - first) * plot_width

    def y_of(seconds: float) -> float:
        return top + plot_height - seconds / ceiling * plot_height

    dots = [
        Mark(
            x=round(x_of(s.started_usec or 0), 1),
            y=round(y_of(s.seconds or 0.0), 1),
            width=4.5 if s.kind == "fail" else 2.5,
            height=0.0,
            kind=s.kind,
            title=s.title,
            href=s.href,
        )
        for s in timed
    ]
    top_value = longest or 1.0
    y_ticks = [Tick(round(y_of(top_value * f), 1), human_duration(top_value * f))
               for f in (0.0, 0.5, 1.0)]  # fmt: skip
    x_ticks = [Tick(round(x_of(first), 1), table_time(first))]
    if last != first:
        x_ticks.append(Tick(round(x_of(last), 1), table_time(last)))
    return Chart(
        width=width,
        height=height,
        left=left,
        plot_width=plot_width,
        line=" ".join(f"{d.x},{d.y}" for d in dots),
        dots=dots,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
    )
