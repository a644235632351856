"""Crashes the fuzzing of observer.toml, jobs.toml and crontabs found (test_fuzz_config.py),
each a named test: the parser now refuses the input with a ConfigError naming the file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from observer.config import load_config
from observer.jobs import crontab
from observer.jobs.jobfile import load_file
from observer.model import ConfigError


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "observer.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_control_character_in_an_alert_unit_pattern_is_a_config_error(tmp_path: Path) -> None:
    path = _config(tmp_path, '[alerts.units."\\u0001"]\nenabled = 1\n')
    with pytest.raises(ConfigError, match=r'alerts\.units\."\x01"\.enabled = 1: expected true'):
        load_config(path)


def test_a_whole_number_too_large_for_a_float_where_a_factor_belongs_is_a_config_error(
    tmp_path: Path,
) -> None:
    path = _config(tmp_path, f"[alerts]\nslow_factor = {10**400}\n")
    with pytest.raises(ConfigError, match=rf"^{path}:.*alerts\.slow_factor = 1000.*>= 0"):
        load_config(path)


def test_a_whole_number_too_large_for_a_float_where_a_duration_belongs_is_a_config_error(
    tmp_path: Path,
) -> None:
    path = _config(tmp_path, f"[alerts]\ncheck_interval = {10**400}\n")
    with pytest.raises(ConfigError, match=r"alerts\.check_interval = 1000.*expected seconds >= 0"):
        load_config(path)


def test_a_count_too_large_for_sqlite_is_a_config_error(tmp_path: Path) -> None:
    path = _config(tmp_path, f"[retention]\nmax_runs_per_unit = {2**63}\n")
    with pytest.raises(ConfigError, match=r":2: retention\.max_runs_per_unit = 9223.*too large"):
        load_config(path)
    path = _config(tmp_path, f"[alerts]\nfailures = {2**63}\n")
    with pytest.raises(ConfigError, match=r"alerts\.failures = 9223.*too large"):
        load_config(path)


def test_an_integer_of_5000_digits_is_a_config_error(tmp_path: Path) -> None:
    path = _config(tmp_path, f"[retention]\nmax_age_days = {'1' * 5000}\n")
    with pytest.raises(ConfigError, match=rf"^{path}: invalid TOML: Exceeds the limit"):
        load_config(path)


@pytest.mark.parametrize("timeout", [f"{10**400}", f'"{"9" * 400}s"'])
def test_a_job_timeout_too_long_for_a_float_is_a_config_error(tmp_path: Path, timeout: str) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text(f'[jobs.x]\ncommand = "true"\nschedule = "daily"\ntimeout = {timeout}\n')
    with pytest.raises(ConfigError, match=rf"^{path}:4: jobs\.x\.timeout = .*invalid duration"):
        load_file(path)


def test_a_crontab_line_with_a_character_past_u_ffff_converts_to_toml_that_reads_back(
    tmp_path: Path,
) -> None:
    converted = crontab.to_jobs_file("@daily echo 𐀀\x7f\n", system=False, source="crontab -l")
    assert tomllib.loads(converted)["jobs"]["echo"]["command"] == "echo 𐀀\x7f"
    path = tmp_path / "jobs.toml"
    path.write_text(converted, encoding="utf-8")
    assert load_file(path)[0].command == ("/bin/sh", "-c", "echo 𐀀\x7f")
