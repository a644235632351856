"""An alert for a failure that follows a change of its unit's definition says so."""

from __future__ import annotations

from observer.alerts.message import change_sentence, first_failure_since_change
from observer.reading.history import RecordedRun


def run(run_id: int, result: str, changed: bool = False) -> RecordedRun:
    return RecordedRun(
        id=run_id, unit="backup.service", invocation_id=f"{run_id:032x}", host="h",
        source="bus", boot_id=None, trigger=None, started_usec=run_id, finished_usec=run_id + 1,
        result=result, exit_status=None, signal=None, restarts=0, output_truncated=False,
        definition_changed=changed,
    )  # fmt: skip


def test_the_first_failure_after_a_change_names_the_first_run_with_it() -> None:
    runs = [
        run(4, "exit-code"),
        run(3, "success"),
        run(2, "success", changed=True),
        run(1, "success"),
    ]
    assert first_failure_since_change(runs, runs[0]) == runs[2]


def test_the_change_run_itself_failing_is_the_first_failure() -> None:
    runs = [run(2, "exit-code", changed=True), run(1, "success")]
    assert first_failure_since_change(runs, runs[0]) == runs[0]


def test_a_second_failure_since_the_change_says_nothing_of_it() -> None:
    runs = [run(3, "exit-code"), run(2, "exit-code", changed=True), run(1, "success")]
    assert first_failure_since_change(runs, runs[0]) is None


def test_a_failure_with_no_change_before_it_says_nothing() -> None:
    runs = [run(2, "exit-code"), run(1, "success")]
    assert first_failure_since_change(runs, runs[0]) is None


def test_the_sentence_names_what_changed() -> None:
    dropin = ["drop-in added: /etc/systemd/system/backup.service.d/x.conf"]
    assert change_sentence("backup.service", dropin, "14:02") == (
        "First failure since backup.service's drop-in changed at 14:02."
    )
    both = ["unit file edited", "script changed: /usr/local/bin/backup"]
    assert change_sentence("b.service", both, "14:02") == (
        "First failure since b.service's unit file and script changed at 14:02."
    )
