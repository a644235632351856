"""The [alerts] section, and notification URLs: where they are read from and how they show."""

from __future__ import annotations

from pathlib import Path

import pytest

from observer.alert_config import AlertsConfig, ChannelSources
from observer.alerts.secrets import Channel, read_channels, read_urls, redact, scrub
from observer.config import load_config
from observer.model import ConfigError
from observer.spans import parse_seconds

TOKEN = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def config(tmp_path: Path, text: str) -> AlertsConfig:
    path = tmp_path / "observer.toml"
    path.write_text(text)
    return load_config(path).alerts


def test_without_an_alerts_section_alerting_is_off(tmp_path: Path) -> None:
    assert config(tmp_path, "").present is False
    assert config(tmp_path, "[alerts]\n").present is True


def test_durations_are_seconds_or_text_with_units() -> None:
    assert parse_seconds(90) == 90.0
    assert parse_seconds(1.5) == 1.5
    assert parse_seconds("90s") == 90.0
    assert parse_seconds("1h30m") == 5400.0
    assert parse_seconds("2d") == 172800.0
    assert parse_seconds("250ms") == 0.25
    assert parse_seconds("0") == 0.0
    for bad in ("2 days", "-5", -1, True, "1y", float("nan")):
        with pytest.raises(ValueError, match="expected"):
            parse_seconds(bad)


def test_a_unit_table_overrides_the_global_rules_and_inherits_the_rest(tmp_path: Path) -> None:
    alerts = config(
        tmp_path,
        '[alerts]\nfailures = 3\nreminder_interval = "12h"\nmissed_grace = "10m"\n'
        '[alerts.units."backup.service"]\nfailures = 1\nstale_after = "26h"\n',
    )
    backup, other = alerts.rules_for("backup.service"), alerts.rules_for("sync.service")
    assert (backup.failures, backup.stale_after, backup.reminder_interval) == (1, 93600.0, 43200.0)
    assert (other.failures, other.stale_after, other.missed_grace) == (3, 0.0, 600.0)


def test_exact_unit_names_come_before_globs_and_globs_go_in_file_order(tmp_path: Path) -> None:
    alerts = config(
        tmp_path,
        '[alerts.units."backup@*.service"]\nfailures = 5\n'
        '[alerts.units."*.service"]\nenabled = false\n'
        '[alerts.units."backup@home.service"]\nfailures = 1\n',
    )
    assert alerts.rules_for("backup@home.service").failures == 1
    assert alerts.rules_for("backup@srv.service").failures == 5
    assert alerts.rules_for("dbus.service").enabled is False
    assert alerts.rules_for("nightly-report").enabled is True


def test_a_unit_with_its_own_urls_uses_them_instead_of_the_global_ones(tmp_path: Path) -> None:
    alerts = config(
        tmp_path,
        '[alerts]\nurls = ["json://a.example/"]\n'
        '[alerts.units."db.service"]\nurls = ["json://b.example/"]\n'
        '[alerts.units."web.service"]\nfailures = 1\n',
    )
    assert alerts.channels_for("db.service").urls == ("json://b.example/",)
    assert alerts.channels_for("web.service").urls == ("json://a.example/",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[alerts]\nfailurs = 2\n", "unknown key alerts.failurs (known: check_interval"),
        (
            '[alerts]\nstale_after = "2 days"\n',
            "alerts.stale_after = '2 days': invalid duration '2 days': expected seconds",
        ),
        ("[alerts]\nfailures = -1\n", "alerts.failures = -1: expected a whole number >= 0"),
        ('[alerts]\nurls = "json://x/"\n', "alerts.urls: expected a list of notification URLs"),
        ('[alerts.units."a.service"]\nheartbeat_url = "x"\n', 'alerts.units."a.service".heart'),
        ("[alerts]\ncheck_interval = 0\n", "alerts.check_interval = 0: expected a duration above"),
        ("[alerts]\nunits = 3\n", "[alerts.units] must be a table"),
    ],
)
def test_a_bad_setting_names_the_file_the_key_and_the_value(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=r"observer\.toml") as error:
        config(tmp_path, text)
    assert message in str(error.value)


def test_a_url_in_a_bad_setting_is_not_repeated_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        config(tmp_path, f'[alerts]\nurls = ["tgram://{TOKEN}/1", 3]\n')
    assert TOKEN not in str(error.value)


def test_the_config_never_shows_its_urls_in_its_repr(tmp_path: Path) -> None:
    alerts = config(tmp_path, f'[alerts]\nurls = ["tgram://{TOKEN}/1"]\n')
    assert TOKEN not in repr(alerts)
    assert TOKEN not in repr(Channel.of(f"tgram://{TOKEN}/1"))


def test_no_record_holding_urls_shows_them_in_its_repr(tmp_path: Path) -> None:
    secret = f"tgram://{TOKEN}/1"
    sources = ChannelSources(urls=(secret,), credential="alerts", file="/etc/observer/urls")
    assert TOKEN not in repr(sources)
    # The rest still shows: which credential and which file the URLs come from.
    assert repr(sources) == "ChannelSources(credential='alerts', file='/etc/observer/urls')"
    assert TOKEN not in repr(AlertsConfig(present=True, channels=sources, heartbeat=sources))
    path = tmp_path / "observer.toml"
    path.write_text(
        f'[alerts]\nurls = ["{secret}"]\nheartbeat_url = "{secret}"\n'
        f'[alerts.units."backup.service"]\nurls = ["{secret}"]\n'
    )
    loaded = load_config(path)
    assert loaded.alerts.channels.urls == (secret,)
    assert loaded.alerts.heartbeat.urls == (secret,)
    assert loaded.alerts.units[0].channels.urls == (secret,)
    for shown in (repr(loaded), str(loaded), repr(loaded.alerts), repr(loaded.alerts.units)):
        assert TOKEN not in shown
    assert "backup.service" in repr(loaded)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"tgram://{TOKEN}/12345", "tgram://…"),
        ("json://127.0.0.1:8000/", "json://127.0.0.1:8000"),
        ("json://127.0.0.1:8000/hook?token=abc", "json://127.0.0.1:8000/…"),
        ("mailto://alice:pw@gmail.com", "mailto://gmail.com/…"),
        ("ntfy://ntfy.sh/my-secret-topic", "ntfy://ntfy.sh/…"),
        ("ntfy://my-secret-topic", "ntfy://…"),
        ("discord://4174216298/JHMHI8qBe7bk2ZwO5U7", "discord://…"),
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7F", "slack://…"),
        ("json://[::1]:8000/x", "json://[::1]:8000/…"),
        ("not a url", "…"),
    ],
)
def test_a_channel_is_shown_by_its_scheme_and_a_host_name_only(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_an_error_message_loses_every_secret_part_of_its_url() -> None:
    url = f"tgram://{TOKEN}/12345678?format=markdown"
    error = f"Failed to send Telegram notification to https://api.telegram.org/bot{TOKEN}/send"
    assert TOKEN not in scrub(error, url)
    assert "12345678" not in scrub("chat 12345678 not found", url)


def test_urls_come_from_a_file_only_its_owner_may_read(tmp_path: Path) -> None:
    path = tmp_path / "alert-urls"
    path.write_text(f"# team chat\ntgram://{TOKEN}/1\n\n  json://127.0.0.1:9/  \n")
    path.chmod(0o600)
    urls = read_urls(ChannelSources(urls=("json://a.example/",), file=str(path)))
    assert urls == ["json://a.example/", f"tgram://{TOKEN}/1", "json://127.0.0.1:9/"]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_a_url_file_others_may_read_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "alert-urls"
    path.write_text(f"tgram://{TOKEN}/1\n")
    path.chmod(mode)
    with pytest.raises(ConfigError, match=r"others may read it \(mode 06.*chmod 600") as error:
        read_urls(ChannelSources(file=str(path)))
    assert TOKEN not in str(error.value)


def test_a_missing_or_empty_url_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"alerts\.urls_file = .*cannot read it: No such file"):
        read_urls(ChannelSources(file=str(tmp_path / "missing")))
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n")
    empty.chmod(0o600)
    with pytest.raises(ConfigError, match="holds no notification URL"):
        read_urls(ChannelSources(file=str(empty)))


def test_urls_come_from_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "observer-alerts").write_text("json://127.0.0.1:9/\njson://127.0.0.1:9/\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    channels = read_channels(ChannelSources(credential="observer-alerts"))
    assert [c.name for c in channels] == ["json://127.0.0.1:9"]


def test_a_credential_outside_a_unit_with_load_credential_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match=r"LoadCredential=observer-alerts:/path/to/file"):
        read_urls(ChannelSources(credential="observer-alerts"))
    with pytest.raises(ConfigError, match="expected a plain name"):
        read_urls(ChannelSources(credential="../etc/shadow"))
