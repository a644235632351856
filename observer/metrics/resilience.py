"""Metrics of what the daemon could not take: numbers out of range, runs set aside."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from observer.bounds import REJECTED, Rejections


class ResilienceCollector:
    """A prometheus_client collector of the input the daemon rejected and the runs it set aside."""

    def __init__(
        self,
        host: str,
        runs_set_aside: Callable[[], int],
        rejected: Rejections = REJECTED,
    ) -> None:
        self.host = host
        self.runs_set_aside = runs_set_aside
        self.rejected = rejected

    def collect(self) -> Iterator[Metric]:
        rejected = CounterMetricFamily(
            "observer_input_rejected",
            "Numbers from outside (journal, bus, fleet hosts, metric and spool files) out of "
            "the range the database holds: stored as unknown.",
            labels=["host", "source", "field"],
        )
        for (source, field), count in sorted(self.rejected.counts().items()):
            rejected.add_metric([self.host, source, field], count)
        yield rejected
        set_aside = CounterMetricFamily(
            "observer_runs_set_aside",
            "Runs the database refused to store, kept aside (see `observer set-aside`).",
            labels=["host"],
        )
        set_aside.add_metric([self.host], self.runs_set_aside())
        yield set_aside
