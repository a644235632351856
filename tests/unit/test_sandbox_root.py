"""Which root the test sandboxes boot by default ($OBSERVER_TEST_ROOT)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import roots
from tests.sandbox import ROOT_VARIABLE, default_root, stray_state


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    default_root.cache_clear()
    yield
    default_root.cache_clear()


@pytest.mark.parametrize("named", [None, "", "/"])
def test_without_a_named_root_sandboxes_boot_the_hosts(
    named: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if named is None:
        monkeypatch.delenv(ROOT_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(ROOT_VARIABLE, named)
    assert default_root() == Path("/")


def test_a_root_named_by_its_path_is_taken_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROOT_VARIABLE, "/srv/roots/trixie")
    assert default_root() == Path("/srv/roots/trixie")


def test_a_root_named_by_its_suite_is_built_once_by_roots_sh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []

    def build(suite: str) -> Path:
        built.append(suite)
        return Path(f"/var/cache/observer-test-roots/{suite}/root")

    monkeypatch.setattr(roots, "build", build)
    monkeypatch.setenv(ROOT_VARIABLE, "trixie")
    assert default_root() == Path("/var/cache/observer-test-roots/trixie/root")
    assert default_root() == Path("/var/cache/observer-test-roots/trixie/root")
    assert built == ["trixie"]


def test_a_root_holding_observers_state_is_named_as_not_clean(tmp_path: Path) -> None:
    assert stray_state(tmp_path) is None
    (tmp_path / "var/lib/observer").mkdir(parents=True)
    reason = stray_state(tmp_path)
    assert reason is not None
    assert reason.startswith(f"/var/lib/observer exists in {tmp_path}")
    (tmp_path / "etc/observer").mkdir(parents=True)
    assert f"/var/lib/observer and /etc/observer exist in {tmp_path}" in (
        stray_state(tmp_path) or ""
    )
