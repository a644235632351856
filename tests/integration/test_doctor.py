"""`observer doctor` on a real systemd with each problem made real: a low journald rate limit
that drops a unit's lines while the daemon records, accounting off (the default here), a
volatile journal; after a fix, the doctor no longer names what was fixed."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.integration.observed import ObserverDaemon, oneshot
from tests.sandbox import Sandbox
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

DROPIN = "etc/systemd/journald.conf.d/50-doctor-test.conf"


def set_journald(sandbox: Sandbox, text: str) -> None:
    """Replace the test's journald drop-in and restart journald, as an admin would."""
    path = sandbox.root / DROPIN
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[Journal]\n{text}")
    sandbox.systemctl("restart", "systemd-journald.service")


def doctor(
    sandbox: Sandbox, observed: ObserverDaemon, *more: str
) -> subprocess.CompletedProcess[str]:
    return observed.cli(
        "doctor", "--root", str(sandbox.root), "--db", str(observed.db),
        "--bus-address", sandbox.bus_address, *more, check=False,
    )  # fmt: skip


def findings(sandbox: Sandbox, observed: ObserverDaemon) -> dict[str, dict[str, Any]]:
    """The findings of `observer doctor --json`, by check (the worst of each check)."""
    result = doctor(sandbox, observed, "--json")
    assert result.returncode in (0, 1, 2), result.stderr
    found: dict[str, dict[str, Any]] = {}
    for finding in reversed(json.loads(result.stdout)):
        found[finding["check"]] = finding
    return found


def test_doctor_names_a_low_rate_limit_accounting_off_and_a_volatile_journal_until_fixed(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    set_journald(sandbox, "RateLimitIntervalSec=1s\nRateLimitBurst=5\n")
    sandbox.write_unit("chatty.service", oneshot("seq 1 1000"))
    sandbox.daemon_reload()
    sandbox.start("chatty.service")
    observed.finished_runs("chatty", 1)
    # journald tells of the drops when the unit's next line comes after the window: here
    # from its next run (docs: SYSTEMD-FACTS, journald drops).
    wait_for(lambda: _journal_has_stored_chatty(sandbox), timeout=10, what="chatty's lines")
    sandbox.start("chatty.service")

    def lost() -> int:
        runs = observed.history("chatty")
        return sum(observed.json("show", str(r["id"]))["output_lost_lines"] or 0 for r in runs)

    def rate_limit_named() -> dict[str, Any] | None:
        if not lost():
            sandbox.start("chatty.service")  # one more run after the window
            return None
        return findings(sandbox, observed).get("journal-rate-limit")

    rate = wait_for(rate_limit_named, timeout=60, every=1.5, what="the drops named")
    assert rate["severity"] == "warning"
    assert "chatty.service" in rate["what"]
    assert "RateLimitBurst=5" in rate["what"]
    assert f"/{DROPIN}" in rate["what"]

    # Accounting: on here by default (this sandbox has a cgroup2 tree of its own), so
    # turned off as an admin may have done.
    conf = sandbox.root / "etc/systemd/system.conf.d/50-doctor-test.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("[Manager]\nDefaultCPUAccounting=no\nDefaultMemoryAccounting=no\n")
    sandbox.daemon_reexec()
    # From 258 CPU accounting is always on: DefaultCPUAccounting= does nothing and the
    # manager no longer has it on the bus.
    cpu = ["CPU"] if sandbox.systemd_version() < 258 else []
    shown = sandbox.run("systemctl", "show", "-p", "DefaultCPUAccounting", "-p",
                        "DefaultMemoryAccounting").stdout  # fmt: skip
    assert shown.split() == [f"Default{n}Accounting=no" for n in [*cpu, "Memory"]]
    found = findings(sandbox, observed)
    assert found["accounting"]["severity"] == "warning", found["accounting"]
    # IO accounting is off by default: named where the manager tells it (252 has no
    # DefaultIOAccounting on the bus; 257 has).
    io = sandbox.run("systemctl", "show", "-p", "DefaultIOAccounting", "--value", check=False)
    off = [*cpu, "memory", *(["IO"] if io.stdout.strip() == "no" else [])]
    listed = (
        f"{', '.join(off[:-1])} and {off[-1]} accounting are" if off[1:] else "memory accounting is"
    )
    assert found["accounting"]["what"].startswith(f"{listed} off")
    fix = " ".join(f"Default{n}Accounting=yes" for n in [*cpu, "Memory"])
    assert fix in found["accounting"]["fix"]
    assert found["alert-channel"]["severity"] == "warning"
    assert "journal-storage" not in found

    text = doctor(sandbox, observed)
    assert text.returncode == 1
    assert max(len(line) for line in text.stdout.splitlines()) <= 80
    assert "WARNING journal-rate-limit: journald dropped output of chatty.service" in text.stdout

    set_journald(sandbox, "Storage=volatile\n")
    storage = findings(sandbox, observed)["journal-storage"]
    assert storage["severity"] == "error"
    assert f"Storage=volatile, /{DROPIN}" in storage["what"]
    assert "Storage=persistent" in storage["fix"]

    set_journald(sandbox, "Storage=persistent\n")
    fixed = findings(sandbox, observed)
    assert "journal-storage" not in fixed
    assert "accounting" in fixed  # what was not fixed is still named


def _journal_has_stored_chatty(sandbox: Sandbox) -> bool:
    return bool(sandbox.journal("-u", "chatty.service", "-n", "1", "-o", "cat").strip())
