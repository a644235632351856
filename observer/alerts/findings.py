"""What is wrong with a finished run, beyond systemd's result: its findings (pure, no I/O).

A run is judged against its unit's expectations (``fail_output``, ``expect_output``,
``metric_checks``) and its own history (``fast``, ``output-changed``, ``slower``). The
caller reads the history with bounded queries (``state.AlertLedger``) and stores the
findings with the run.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from statistics import median

from observer.alert_config import AlertRules, parse_metric_check
from observer.output import printable
from observer.reading.stats import trend_ratio
from observer.spans import human_duration
from observer.store.summary import percentile

# A quoted line is cut to this many characters.
QUOTE_LIMIT = 120
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}  # fmt: skip


class FindingKind(StrEnum):
    """What a finding is about."""

    FAIL_OUTPUT = "fail-output"
    EXPECT_OUTPUT = "expect-output"
    FAST = "fast"
    OUTPUT_CHANGED = "output-changed"
    METRIC = "metric"
    SLOWER = "slower"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong with a run; ``message`` follows "it succeeded, but it ..."."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class RunEvidence:
    """What one finished run showed: its outcome, duration, output and metrics."""

    succeeded: bool
    duration_seconds: float | None
    lines: Sequence[bytes] = ()  # the kept lines of its output
    output_lines: int = 0  # every line it printed, kept or not
    # The samples of its $JOB_METRICS_FILE by metric name; None: not written during the run.
    metrics: Mapping[str, Sequence[float]] | None = None


@dataclass(frozen=True, slots=True)
class Baseline:
    """The unit's recent history, read with bounded queries before the run is judged."""

    success_seconds: Sequence[float] = ()  # durations of recent successes, newest first
    success_lines: Sequence[int] = ()  # lines printed by recent successes, newest first
    week_seconds: Sequence[float] = ()  # successes' durations of the last 7 days
    earlier_seconds: Sequence[float] = ()  # ... of the 30 days before


def judge(evidence: RunEvidence, baseline: Baseline, rules: AlertRules) -> list[Finding]:
    """The findings of one finished run (empty when nothing is wrong)."""
    found: list[Finding] = []
    if rules.fail_output:
        pattern = re.compile(rules.fail_output)
        for line in evidence.lines:
            text = printable(line)
            if pattern.search(text):
                found.append(Finding(FindingKind.FAIL_OUTPUT, f"printed {_quote(text)}"))
                break
    if not evidence.succeeded:
        return found  # the rest is about what a success should look like
    if rules.expect_output:
        pattern = re.compile(rules.expect_output)
        if not any(pattern.search(printable(line)) for line in evidence.lines):
            message = f"printed no line matching {_quote(rules.expect_output)}"
            found.append(Finding(FindingKind.EXPECT_OUTPUT, message))
    if (fast := _fast(evidence, baseline, rules)) is not None:
        found.append(fast)
    if (changed := _output_changed(evidence, baseline, rules)) is not None:
        found.append(changed)
    found += _metric_findings(evidence, rules)
    if (slower := trend(baseline, rules)) is not None:
        found.append(slower)
    return found


def _fast(evidence: RunEvidence, baseline: Baseline, rules: AlertRules) -> Finding | None:
    seconds = evidence.duration_seconds
    if seconds is None or (limit := too_fast(seconds, baseline.success_seconds, rules)) is None:
        return None
    return Finding(FindingKind.FAST, f"took only {human_duration(seconds)}, {limit}")


def too_fast(seconds: float, recent: Sequence[float], rules: AlertRules) -> str | None:
    """Why a success of ``seconds`` was too fast ("less than ..."), or None if it was not.

    ``recent``: durations of the unit's successes before it, newest first. Below
    ``min_duration``, or below ``fast_factor`` times the p5 of the last ``slow_window``
    successes once there are ``slow_min_runs`` of them.
    """
    if rules.min_duration and seconds < rules.min_duration:
        return f"less than its minimum of {human_duration(rules.min_duration)}"
    window = sorted(recent[: rules.slow_window])
    if not rules.fast_factor or len(window) < rules.slow_min_runs:
        return None
    p5 = percentile(window, 5)
    if p5 is not None and seconds < rules.fast_factor * p5:
        return (
            f"less than {rules.fast_factor:g} times the p5 ({human_duration(p5)}) "
            f"of its last {len(window)} successful runs"
        )
    return None


def _output_changed(evidence: RunEvidence, baseline: Baseline, rules: AlertRules) -> Finding | None:
    window = baseline.success_lines[: rules.slow_window]
    if not rules.output_factor or len(window) < rules.output_min_runs:
        return None
    usual = median(window)
    lines, factor = evidence.output_lines, rules.output_factor
    if (lines + 1) * factor <= usual + 1 or (usual + 1) * factor <= lines + 1:
        return Finding(
            FindingKind.OUTPUT_CHANGED,
            f"printed {_lines(lines)} where it usually prints {_lines(round(usual))} "
            f"(the median of its last {len(window)} successful runs)",
        )
    return None


def _metric_findings(evidence: RunEvidence, rules: AlertRules) -> list[Finding]:
    if not rules.metric_checks:
        return []
    if evidence.metrics is None:
        return [Finding(FindingKind.METRIC, "did not write its metrics file ($JOB_METRICS_FILE)")]
    found = []
    for check in rules.metric_checks:
        name, op, bound = parse_metric_check(check)
        values = evidence.metrics.get(name)
        if not values:
            found.append(Finding(FindingKind.METRIC, f"did not report {name} in its metrics file"))
            continue
        bad = [v for v in values if not _OPERATORS[op](v, bound)]
        if bad:
            message = f"reported {name} = {bad[0]:g}, which is not {op} {bound:g}"
            found.append(Finding(FindingKind.METRIC, message))
    return found


def trend(baseline: Baseline, rules: AlertRules) -> Finding | None:
    """``slower``: the median of the last 7 days against the median of the 30 days before."""
    week, earlier = baseline.week_seconds, baseline.earlier_seconds
    ratio = trend_ratio(week, earlier)  # as `observer stats` shows it
    if not rules.trend_factor or ratio is None:
        return None
    now, before = median(week), median(earlier)
    if ratio > rules.trend_factor and now - before >= 1.0:
        return Finding(
            FindingKind.SLOWER,
            f"runs slower: the median of the last 7 days ({human_duration(now)}) is "
            f"{ratio:.1f} times that of the 30 days before ({human_duration(before)})",
        )
    return None


def to_json(findings: Sequence[Finding]) -> str:
    """Findings as stored with the run."""
    return json.dumps([{"kind": f.kind, "message": f.message} for f in findings])


def _quote(text: str) -> str:
    if len(text) > QUOTE_LIMIT:
        text = text[: QUOTE_LIMIT - 1] + "…"
    return f"'{text}'"


def _lines(n: int) -> str:
    return f"{n:,} line" if n == 1 else f"{n:,} lines"
