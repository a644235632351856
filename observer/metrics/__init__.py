"""Metrics: the run history as Prometheus metrics, and the metrics jobs report themselves.

``snapshot`` reads each unit's state from the store, ``collectors`` turns it and the runs
counted since start-up into metric families, ``job_metrics`` reads and checks the files jobs
write to ``$JOB_METRICS_FILE``, ``service`` serves ``/metrics`` and writes the textfile inside
the daemon, ``dropin`` and ``cli`` are `observer metrics-file`.
"""
