"""`observer metrics-file`: the drop-in it writes and the files it removes, under a scratch root."""

from __future__ import annotations

import argparse
import os
from pathlib import Path, PurePosixPath

import pytest

from observer.metrics.dropin import Layout, disable, dropin_text, enable, layout_for, unit_name
from observer.model import ObserverError

JOB_METRICS = PurePosixPath("/var/lib/observer/job-metrics")


def layout(root: Path, unit: str = "backup.service") -> Layout:
    return Layout(unit, root, JOB_METRICS)


@pytest.mark.parametrize(
    ("name", "unit"),
    [("backup", "backup.service"), ("backup.service", "backup.service"),
     ("backup@home", "backup@home.service"), ("backup@.service", "backup@.service"),
     ("backup@my.host", "backup@my.host.service")],
)  # fmt: skip
def test_it_takes_a_service_name_the_way_people_write_it(name: str, unit: str) -> None:
    assert unit_name(name) == unit


@pytest.mark.parametrize("name", ["backup.timer", "../etc/passwd", ""])
def test_it_refuses_what_is_not_a_service(name: str) -> None:
    with pytest.raises(ObserverError):
        unit_name(name)


def test_the_drop_in_gives_the_unit_a_directory_of_its_own_and_names_the_file() -> None:
    text = dropin_text(layout(Path("/")))

    assert text.splitlines()[-3:] == [
        "[Service]",
        "StateDirectory=observer/job-metrics/%n",
        'Environment="JOB_METRICS_FILE=/var/lib/observer/job-metrics/%n/metrics.prom"',
    ]


def test_the_directory_must_be_one_systemd_can_hand_out(tmp_path: Path) -> None:
    args = argparse.Namespace(
        unit="backup", config=None, db=str(tmp_path / "observer.db"), root="/", bus_address=None
    )

    with pytest.raises(ObserverError, match="not under /var/lib"):
        layout_for(args)

    args.db = "/var/lib/observer/observer.db"
    assert layout_for(args).directory == JOB_METRICS


def test_enable_writes_the_drop_in_and_opens_the_path_to_the_directory(tmp_path: Path) -> None:
    # The database directory is 0750: a unit running as another user could not get through.
    (tmp_path / "var/lib/observer").mkdir(parents=True, mode=0o750)
    os.chmod(tmp_path / "var/lib/observer", 0o750)

    notes = enable(layout(tmp_path))

    dropin = tmp_path / "etc/systemd/system/backup.service.d/observer-metrics.conf"
    assert dropin.read_text() == dropin_text(layout(tmp_path))
    assert (tmp_path / "var/lib/observer").stat().st_mode & 0o777 == 0o751
    assert (tmp_path / "var/lib/observer/job-metrics").stat().st_mode & 0o777 == 0o755
    assert notes == [
        "made /var/lib/observer traversable by other users (o+x) so that units running as "
        "them reach their directory"
    ]
    assert enable(layout(tmp_path)) == []


def test_disable_removes_the_drop_in_and_the_units_metrics(tmp_path: Path) -> None:
    enable(layout(tmp_path))
    metrics = tmp_path / "var/lib/observer/job-metrics/backup.service/metrics.prom"
    metrics.parent.mkdir()
    metrics.write_text("job_x 1\n")

    removed = disable(layout(tmp_path))

    assert removed == [
        "/etc/systemd/system/backup.service.d/observer-metrics.conf",
        "/var/lib/observer/job-metrics/backup.service/metrics.prom",
        "/var/lib/observer/job-metrics/backup.service",
    ]
    assert not (tmp_path / "etc/systemd/system/backup.service.d").exists()
    assert disable(layout(tmp_path)) == []


def test_disable_follows_the_link_systemd_makes_for_a_dynamic_user(tmp_path: Path) -> None:
    enable(layout(tmp_path))
    private = tmp_path / "var/lib/private/observer/job-metrics/backup.service"
    private.mkdir(parents=True)
    (private / "metrics.prom").write_text("job_x 1\n")
    link = tmp_path / "var/lib/observer/job-metrics/backup.service"
    link.symlink_to("../../private/observer/job-metrics/backup.service")

    disable(layout(tmp_path))

    assert not private.exists()
    assert not link.is_symlink()


def test_disabling_a_template_removes_the_metrics_of_every_instance(tmp_path: Path) -> None:
    template = layout(tmp_path, "backup@.service")
    enable(template)
    for instance in ("backup@home.service", "backup@srv.service"):
        directory = tmp_path / "var/lib/observer/job-metrics" / instance
        directory.mkdir()
        (directory / "metrics.prom").write_text("job_x 1\n")
    other = tmp_path / "var/lib/observer/job-metrics/backupx.service"
    other.mkdir()

    disable(template)

    assert [p.name for p in (tmp_path / "var/lib/observer/job-metrics").iterdir()] == [
        "backupx.service"
    ]
