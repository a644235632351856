"""The jobs' ``[jobs.NAME.alerts]`` tables as per-unit alert rules of the daemon's config."""

from __future__ import annotations

import logging
from pathlib import Path

from observer.alert_config import unit_alerts
from observer.config import Config
from observer.jobs.jobfile import jobs_files, load_jobs
from observer.model import ConfigError
from observer.users import qualify

log = logging.getLogger(__name__)


def with_job_alerts(config: Config, user: str | None = None) -> Config:
    """``config`` with each job's alert table for its unit, ahead of observer.toml's tables.

    ``user``: the jobs are that user's (their own daemon reads their jobs file), and their
    units are named as the store names that user's units (``alice/backup.service``).

    A job's rules start from the [alerts] rules, as an ``[alerts.units]`` table does. A
    jobs file that cannot be read is logged and left out: it must not stop the recording.
    """
    path = Path(config.jobs.file)
    try:
        jobs = load_jobs(jobs_files(path))
        base = config.alerts.rules
        tables = tuple(
            unit_alerts(
                job.source, f"jobs.{job.name}.alerts", qualify(user, job.service), job.alerts, base
            )
            for job in jobs
            if job.alerts is not None
        )
    except ConfigError as e:
        log.warning("the jobs' alert rules are not used: %s", e)
        return config
    if not tables:
        return config
    alerts = config.alerts._replace(present=True, units=(*tables, *config.alerts.units))
    return config._replace(alerts=alerts)
