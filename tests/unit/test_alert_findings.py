"""Findings as pure functions: what is wrong with a run beyond its result."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from observer.alert_config import AlertRules, parse_metric_check
from observer.alerts.findings import (
    Baseline,
    FindingKind,
    RunEvidence,
    judge,
    to_json,
)
from observer.reading import problems

RULES = AlertRules()
NO_HISTORY = Baseline()


def kinds(
    evidence: RunEvidence, baseline: Baseline = NO_HISTORY, rules: AlertRules = RULES
) -> list[str]:
    return [f.kind for f in judge(evidence, baseline, rules)]


def test_a_line_matching_fail_output_is_quoted_even_when_the_run_succeeded() -> None:
    rules = RULES._replace(fail_output=r"^ERROR")
    lines = [b"checking", b"ERROR: DNS lookup failed", b"ERROR: again"]
    [finding] = judge(RunEvidence(True, 1.0, lines, 3), Baseline(), rules)
    assert (finding.kind, finding.message) == (
        FindingKind.FAIL_OUTPUT,
        "printed 'ERROR: DNS lookup failed'",
    )


def test_a_success_without_the_expected_line_is_a_finding_but_a_failure_is_not_judged_on_it() -> (
    None
):
    rules = RULES._replace(expect_output="backup done")
    [finding] = judge(RunEvidence(True, 1.0, [b"starting"], 1), NO_HISTORY, rules)
    assert finding.message == "printed no line matching 'backup done'"
    assert kinds(RunEvidence(True, 1.0, [b"backup done: 3 GB"], 1), rules=rules) == []
    assert kinds(RunEvidence(False, 1.0, [b"starting"], 1), rules=rules) == []


def test_a_success_ten_times_faster_than_the_p5_of_recent_successes_is_fast() -> None:
    baseline = Baseline(success_seconds=[5.0] * 10)
    [finding] = judge(RunEvidence(True, 0.003, (), 0), baseline, RULES)
    assert finding.message == (
        "took only 3ms, less than 0.1 times the p5 (5.0s) of its last 10 successful runs"
    )
    assert kinds(RunEvidence(True, 0.003, (), 0), Baseline(success_seconds=[5.0] * 9)) == []
    assert kinds(RunEvidence(True, 1.0, (), 0), baseline) == []


def test_a_success_printing_far_fewer_lines_than_usual_changed_its_output() -> None:
    baseline = Baseline(success_lines=[3000] * 10)
    [finding] = judge(RunEvidence(True, None, (), 3), baseline, RULES)
    assert finding.message == (
        "printed 3 lines where it usually prints 3,000 lines "
        "(the median of its last 10 successful runs)"
    )
    assert kinds(RunEvidence(True, None, (), 2500), baseline) == []


def test_metric_checks_find_a_too_small_value_a_missing_metric_and_a_missing_file() -> None:
    rules = RULES._replace(metric_checks=("job_backup_size_bytes > 1e9", "job_files >= 1"))
    written = RunEvidence(True, None, metrics={"job_backup_size_bytes": [2048.0]})
    messages = [f.message for f in judge(written, Baseline(), rules)]
    assert messages == [
        "reported job_backup_size_bytes = 2048, which is not > 1e+09",
        "did not report job_files in its metrics file",
    ]
    [missing] = judge(RunEvidence(True, None, metrics=None), Baseline(), rules)
    assert missing.message == "did not write its metrics file ($JOB_METRICS_FILE)"


def test_a_week_whose_median_is_twice_the_month_before_runs_slower() -> None:
    baseline = Baseline(week_seconds=[20.0] * 5, earlier_seconds=[10.0] * 20)
    [finding] = judge(RunEvidence(True, 20.0), baseline, RULES)
    assert finding.kind == FindingKind.SLOWER
    assert finding.message == (
        "runs slower: the median of the last 7 days (20.0s) is 2.0 times that of the 30 days "
        "before (10.0s)"
    )


def test_a_bad_metric_check_is_refused_with_the_form_it_wants() -> None:
    assert parse_metric_check(" job_x_bytes >= 1e9 ") == ("job_x_bytes", ">=", 1e9)
    for bad in ("job_x_bytes", "job_x_bytes > lots", "1x > 2", "x > nan"):
        try:
            parse_metric_check(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


@given(
    st.booleans(),
    st.one_of(st.none(), st.floats(0, 1e6)),
    st.lists(st.binary(max_size=40), max_size=10),
    st.lists(st.floats(0, 1e6), max_size=30),
    st.lists(st.integers(0, 10**6), max_size=30),
)
def test_findings_are_stored_and_read_back_unchanged_and_a_failure_only_gets_fail_output(
    succeeded: bool,
    seconds: float | None,
    lines: list[bytes],
    durations: list[float],
    counts: list[int],
) -> None:
    rules = RULES._replace(fail_output="x", expect_output="y", metric_checks=("m > 1",))
    evidence = RunEvidence(succeeded, seconds, lines, len(lines), None)
    found = judge(evidence, Baseline(durations, counts, durations, durations), rules)
    assert problems.findings(to_json(found)) == tuple((f.kind, f.message) for f in found)
    if not succeeded:
        assert {f.kind for f in found} <= {FindingKind.FAIL_OUTPUT}
    assert len({f.kind for f in found}) == len(found)
