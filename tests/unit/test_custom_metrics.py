"""Metrics jobs write themselves: checked, labelled with their unit, and never breaking the rest."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from observer.metrics.job_metrics import (
    MAX_SERIES_PER_FILE,
    JobMetrics,
    RejectedFile,
    job_metrics_directory,
    parse_job_metrics,
)

# What docs/metrics.md's snippet writes, with BORG_REPO=/srv/borg and BACKUP_SIZE=1234.
BACKUP_METRICS = """\
# HELP job_backup_size_bytes Size of the backup in bytes
# TYPE job_backup_size_bytes gauge
job_backup_size_bytes{borg_repo="/srv/borg"} 1234
"""
NOW = 2_000_000_000.0


def series(families: list[Metric]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def write(path: Path, text: str, age: float = 60.0) -> Path:
    """Write a file as a job would have, ``age`` seconds before NOW."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (NOW - age, NOW - age))
    return path


@pytest.fixture
def jobs(tmp_path: Path) -> JobMetrics:
    return JobMetrics(tmp_path / "job-metrics", clock=lambda: NOW)


# -- one file ------------------------------------------------------------------------------


def test_the_backup_snippet_is_exported_with_its_unit_label() -> None:
    [family] = parse_job_metrics("backup.service", BACKUP_METRICS)

    assert (family.name, family.type, family.documentation) == (
        "job_backup_size_bytes",
        "gauge",
        "Size of the backup in bytes",
    )
    assert series([family]) == {
        key("job_backup_size_bytes", borg_repo="/srv/borg", unit="backup.service"): 1234.0
    }


def test_counters_histograms_and_untyped_samples_are_kept() -> None:
    text = (
        "# TYPE job_files_total counter\njob_files_total 7\n"
        "# TYPE job_step_seconds histogram\n"
        'job_step_seconds_bucket{le="1"} 1\njob_step_seconds_bucket{le="+Inf"} 2\n'
        "job_step_seconds_sum 3.5\njob_step_seconds_count 2\n"
        "job_untyped 1\n"
    )
    exposed = series(parse_job_metrics("x.service", text))

    assert exposed[key("job_files_total", unit="x.service")] == 7.0
    assert exposed[key("job_step_seconds_bucket", le="+Inf", unit="x.service")] == 2.0
    assert exposed[key("job_untyped", unit="x.service")] == 1.0


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("job_x{a=} 1\n", "parse_error"),
        ("job_x one\n", "parse_error"),
        ("# TYPE observer_runs_total counter\nobserver_runs_total 1\n", "reserved_name"),
        ("observer_last_run_success 1\n", "reserved_name"),
        ('job_x{unit="other.service"} 1\n', "unit_label"),
        ("job_x 1 1700000000000\n", "timestamp"),
        ('job_x{a="1"} 1\njob_x{a="1"} 2\n', "duplicate_series"),
        ('{"job.x"} 1\n', "parse_error"),
        ('job_x{__secret="1"} 1\n', "parse_error"),
        ('job_x{a="1" 1\n', "parse_error"),
        ("job_x 1 2 3\n", "parse_error"),
        ("# HELP job_x a\n# HELP job_x b\njob_x 1\n", "parse_error"),
        ("# TYPE job_x info\njob_x 1\n", "unsupported_type"),
        ("# TYPE job_x gauge\njob_x 1\n# TYPE job_x counter\njob_x_total 1\n", "type_conflict"),
    ],
)
def test_a_file_with_a_problem_is_rejected_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(RejectedFile) as rejected:
        parse_job_metrics("backup.service", text)

    assert rejected.value.reason == reason


def test_a_file_with_more_series_than_allowed_is_rejected_and_one_at_the_limit_is_not() -> None:
    def series(count: int) -> str:
        return "".join(f'job_x{{n="{i}"}} 1\n' for i in range(count))

    assert len(parse_job_metrics("backup.service", series(MAX_SERIES_PER_FILE))[0].samples) == (
        MAX_SERIES_PER_FILE
    )
    with pytest.raises(RejectedFile) as rejected:
        parse_job_metrics("backup.service", series(MAX_SERIES_PER_FILE + 1))
    assert rejected.value.reason == "too_many_series"


def test_an_empty_file_has_no_metrics_and_is_fine() -> None:
    assert parse_job_metrics("backup.service", "") == []


# -- the directory -------------------------------------------------------------------------


def test_files_and_unit_directories_are_read_with_their_names_as_units(
    jobs: JobMetrics,
) -> None:
    write(jobs.directory / "nightly-report.prom", "job_rows 10\n")
    write(jobs.directory / "backup.service" / "metrics.prom", BACKUP_METRICS)
    write(jobs.directory / "backup.service" / "other.prom", "job_ignored 1\n")
    write(jobs.directory / ".nightly-report.prom.tmp", "job_half")

    exposed = series(jobs.collect())

    assert exposed == {
        key("job_rows", unit="nightly-report"): 10.0,
        key("job_backup_size_bytes", borg_repo="/srv/borg", unit="backup.service"): 1234.0,
    }
    assert jobs.files == 2


def test_the_same_metric_from_two_units_is_one_family(jobs: JobMetrics) -> None:
    write(jobs.directory / "a.service.prom", BACKUP_METRICS)
    write(jobs.directory / "b.service.prom", BACKUP_METRICS.replace("1234", "99"))

    [family] = jobs.collect()

    assert series([family]) == {
        key("job_backup_size_bytes", borg_repo="/srv/borg", unit="a.service"): 1234.0,
        key("job_backup_size_bytes", borg_repo="/srv/borg", unit="b.service"): 99.0,
    }


def test_metrics_of_a_unit_whose_file_is_gone_disappear(jobs: JobMetrics) -> None:
    path = write(jobs.directory / "backup.service.prom", BACKUP_METRICS)
    assert jobs.collect()

    path.unlink()

    assert jobs.collect() == []
    assert jobs.files == 0


def test_a_rejected_file_is_logged_and_counted_once_until_it_changes(
    jobs: JobMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(jobs.directory / "backup.service.prom", 'job_x{unit="db.service"} 1\n')
    write(jobs.directory / "ok.service.prom", "job_ok 1\n")

    for _ in range(3):
        assert series(jobs.collect()) == {key("job_ok", unit="ok.service"): 1.0}

    assert jobs.rejections == {("backup.service", "unit_label"): 1}
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(path) in record.getMessage()
    assert "unit_label" in record.getMessage()
    write(path, "job_x 1\n", age=30)
    assert key("job_x", unit="backup.service") in series(jobs.collect())
    write(path, "not metrics\n", age=10)
    jobs.collect()
    assert jobs.rejections == {
        ("backup.service", "unit_label"): 1,
        ("backup.service", "parse_error"): 1,
    }


def test_a_file_still_being_written_keeps_its_last_good_version(jobs: JobMetrics) -> None:
    path = write(jobs.directory / "backup.service.prom", BACKUP_METRICS)
    jobs.collect()

    write(path, "# HELP job_backup_size_bytes Size of the back", age=0.5)

    assert series(jobs.collect()) == {
        key("job_backup_size_bytes", borg_repo="/srv/borg", unit="backup.service"): 1234.0
    }
    assert jobs.rejections == {}


def test_a_unit_cannot_change_the_type_of_another_units_metric(jobs: JobMetrics) -> None:
    write(jobs.directory / "a.service.prom", "# TYPE job_x gauge\njob_x 1\n")
    write(jobs.directory / "b.service.prom", "# TYPE job_x counter\njob_x 5\n")

    exposed = series(jobs.collect())
    jobs.collect()

    assert exposed == {key("job_x", unit="a.service"): 1.0}
    assert jobs.rejections == {("b.service", "type_conflict"): 1}


def test_a_symlink_is_not_followed(jobs: JobMetrics, tmp_path: Path) -> None:
    secret = write(tmp_path / "secret", "job_secret 1\n")
    (jobs.directory / "backup.service").mkdir(parents=True)
    (jobs.directory / "backup.service" / "metrics.prom").symlink_to(secret)

    assert jobs.collect() == []
    assert jobs.rejections == {("backup.service", "not_a_file"): 1}


def test_a_fifo_does_not_block_the_export(jobs: JobMetrics) -> None:
    jobs.directory.mkdir()
    os.mkfifo(jobs.directory / "backup.service.prom")

    assert jobs.collect() == []
    assert jobs.rejections == {("backup.service", "not_a_file"): 1}


def test_a_file_that_is_too_large_is_rejected(tmp_path: Path) -> None:
    jobs = JobMetrics(tmp_path, clock=lambda: NOW, max_file_bytes=100)
    write(tmp_path / "big.service.prom", "job_x 1\n" * 20)

    assert jobs.collect() == []
    assert jobs.rejections == {("big.service", "too_large"): 1}


def test_bytes_that_are_not_utf8_are_rejected(jobs: JobMetrics) -> None:
    jobs.directory.mkdir()
    (jobs.directory / "backup.service.prom").write_bytes(b'job_x{a="\xff"} 1\n')

    assert jobs.collect() == []
    assert jobs.rejections == {("backup.service", "not_utf8"): 1}


def test_a_missing_directory_means_no_job_metrics(jobs: JobMetrics) -> None:
    assert jobs.collect() == []


def test_the_directory_is_beside_the_database_unless_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OBSERVER_METRICS_DIR", raising=False)
    db = tmp_path / "observer.db"

    assert job_metrics_directory(db) == tmp_path / "job-metrics"
    assert job_metrics_directory(db, "/srv/metrics") == Path("/srv/metrics")
    monkeypatch.setenv("OBSERVER_METRICS_DIR", "/run/metrics")
    assert job_metrics_directory(db, "/srv/metrics") == Path("/run/metrics")
