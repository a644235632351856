"""Starts systemd skipped or refused without an invocation of their own: the correlator's
bookkeeping for them (pure, no I/O).

A condition that failed, a dependency that failed, the start limit: systemd logs such a
start once in the journal and gives it no invocation ID, so the run is keyed by that record
(host, unit, time), and re-reading the journal finds the same key.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from observer.model import Run, Source
from observer.recording.events import JobKind, Pid1Record
from observer.recording.grouped import Grouped

# Job results of a start that failed because of another unit, or did not fail.
_NOT_ITS_OWN = frozenset({"dependency", "done", "canceled", None})
# A "Dependency failed" this soon after a unit's failure names that unit (same transaction).
_CAUSE_USEC = 5_000_000
_MEMORY = 4096


@dataclass(slots=True)
class Skip:
    """A refused or skipped start, kept so that its trigger can still be added."""

    run: Run
    job_id: int | None


def is_refusal(record: Pid1Record) -> bool:
    """Whether a record of PID 1 is about a start that got no invocation of its own."""
    return record.kind in (JobKind.CONDITION_UNMET, JobKind.START_LIMIT) or (
        record.kind is JobKind.START_FAILED and not record.invocation_id
    )


class RefusedStarts:
    """The refused and skipped starts seen lately, and what a dependency failure names."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.skips: OrderedDict[str, Skip] = OrderedDict()
        # The keys of the skips by job (``Skip.job_id``).
        self._job_skips: Grouped[int] = Grouped()
        # unit -> the key of its newest skip.
        self._newest: dict[str, str] = {}
        self._last_failed: tuple[str, int] | None = None
        self._start_limited: dict[str, str] = {}

    def note_failure(self, record: Pid1Record) -> None:
        """A unit of any type (a mount) failed to start: a "Dependency failed" just after
        names it."""
        if record.kind is JobKind.START_FAILED and record.job_result not in _NOT_ITS_OWN:
            self._last_failed = (record.unit, record.realtime_usec)

    def refused(self, record: Pid1Record) -> Skip:
        """The run a refusal record stands for (a condition, a dependency, the start limit)."""
        reason = record.reason
        if record.kind is JobKind.CONDITION_UNMET:
            result = "condition"
        elif record.kind is JobKind.START_LIMIT:
            result = "start-limit-hit"
        elif record.job_result == "dependency":
            result = "dependency"
            failed = self._last_failed
            if failed is not None and 0 <= record.realtime_usec - failed[1] <= _CAUSE_USEC:
                reason = failed[0]
        else:
            result = record.job_result or "failed"
        key = f"{self.host}:{record.unit}:{record.realtime_usec}"
        run = Run(
            unit=record.unit,
            invocation_id=None,
            host=self.host,
            source=Source.JOURNAL,
            started_usec=record.realtime_usec,
            finished_usec=record.realtime_usec,
            result=result,
            reason=reason,
            boot_id=record.boot_id,
            start_key=key,
        )
        known = self.skips.get(key)  # the same record read again keeps its place
        if known is not None:
            self._give_job(key, known, None)
        else:
            self._newest[record.unit] = key
        skip = self.skips[key] = Skip(run, None)
        self._give_job(key, skip, record.job_id)
        while len(self.skips) > _MEMORY:
            forgotten = self.skips.popitem(last=False)
            self._give_job(*forgotten, None)
            if self._newest.get(forgotten[1].run.unit) == forgotten[0]:
                del self._newest[forgotten[1].run.unit]
        if record.kind is JobKind.START_LIMIT:
            self._start_limited[record.unit] = key
        return skip

    def limited_job(self, record: Pid1Record) -> Skip | None:
        """The "Failed to start" after "Start request repeated too quickly" names the job
        of the refused start: the refusal, now with its job ID, if it had none."""
        key = self._start_limited.pop(record.unit, "")
        skip = self.skips.get(key)
        if skip is None or skip.job_id is not None or record.job_id is None:
            return None
        self._give_job(key, skip, record.job_id)
        return skip

    def _give_job(self, key: str, skip: Skip, job_id: int | None) -> None:
        """Set the job of a skip (None: forgotten), and its index."""
        self._job_skips.move(key, skip.job_id, job_id)
        skip.job_id = job_id

    def of_job(self, job_id: int) -> list[Skip]:
        """The refusals of a job whose trigger is not known yet."""
        skips = (self.skips[key] for key in self._job_skips.of(job_id))
        return [skip for skip in skips if skip.run.trigger is None]

    def newest_untriggered(self, unit: str) -> Skip | None:
        """The newest refusal of ``unit``, if its trigger is not known."""
        skip = self.skips.get(self._newest.get(unit, ""))
        return skip if skip is not None and skip.run.trigger is None else None

    @staticmethod
    def triggered(skip: Skip, trigger: str) -> Run:
        """Name the trigger of a refusal; the run to record again."""
        skip.run = skip.run._replace(trigger=trigger)
        return skip.run
