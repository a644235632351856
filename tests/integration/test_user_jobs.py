"""`observer jobs --user`: a lingering user without root declares jobs in
~/.config/observer/jobs.toml, applies them to their own manager in a real systemd, and their
own daemon records the runs and alerts on a failing one."""

from __future__ import annotations

import hashlib
import sys

import pytest

from tests.integration.test_users import USER, LingeringUser, wait_runs
from tests.receiver import Receiver
from tests.sandbox import Sandbox
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

SECRET = "alices-token-93be"
CREDENTIALS = f"/home/{USER}/.config/observer/credentials"

JOBS = f"""\
[jobs.tick]
command = 'sha256sum "$CREDENTIALS_DIRECTORY/token" | cut -c1-64 > "$HOME/token.sha256"; echo tick'
schedule = "every 2s"
credentials = {{ token = "{CREDENTIALS}/token" }}

[jobs.fails]
command = "echo cannot reach the remote; exit 3"
schedule = "0 4 * * *"

[jobs.fails.alerts]
failures = 1
"""


def test_a_user_applies_their_own_jobs_and_their_daemon_alerts_on_a_failing_one(
    sandbox: Sandbox,
) -> None:
    with Receiver() as receiver:
        alice = LingeringUser(sandbox, USER)
        config_dir = f"{alice.home}/.config/observer"
        alice.run("mkdir", "-p", CREDENTIALS)
        alice.run("sh", "-c", f"printf %s {SECRET} > {CREDENTIALS}/token")
        alice.run("chmod", "600", f"{CREDENTIALS}/token")
        alice.run("tee", f"{config_dir}/jobs.toml", input=JOBS)
        alice.run("tee", f"{config_dir}/observer.toml", input=(
            f'[alerts]\nurls = ["{receiver.json_url}"]\ncheck_interval = "1s"\n'
            'retry_delay = "1s"\n'
        ))  # fmt: skip
        observer = (sys.executable, "-m", "observer")
        alice.run(*observer, "install", "--user")

        applied = alice.run(*observer, "jobs", "apply", "--user").stdout
        assert "added fails (fails.service, fails.timer)" in applied
        assert "added tick (tick.service, tick.timer)" in applied
        unit = alice.run("cat", f"{alice.home}/.config/systemd/user/tick.service").stdout
        assert "PrivateUsers=yes" in unit
        assert "ProtectSystem=full" in unit
        assert alice.systemctl("is-active", "tick.timer").stdout.strip() == "active"
        # Applying again changes nothing.
        again = alice.run(*observer, "jobs", "--user", "apply").stdout
        assert "nothing to change: 2 jobs" in again

        def read(*args: str) -> list[dict[str, object]]:
            runs: list[dict[str, object]] = alice.observer(*args)
            return runs

        [tick, *_] = wait_runs(read, "tick", 1)
        assert (tick["user"], tick["unit"], tick["result"]) == (USER, "tick.service", "success")
        wait_for(
            lambda: any(r["trigger"] == "tick.timer" for r in read("history", "tick")),
            timeout=20, what="the timer as a run's trigger",
        )  # fmt: skip
        digest = alice.run("cat", f"{alice.home}/token.sha256").stdout.strip()
        assert digest == hashlib.sha256(SECRET.encode()).hexdigest()
        shown = alice.systemctl("show", "tick.service", check=True).stdout
        assert SECRET not in shown

        ran = alice.run(*observer, "jobs", "run", "--user", "fails", "--wait", check=False)
        assert ran.returncode == 3, ran.stderr
        assert "Exit status: 3" in ran.stdout
        run_id = ran.stdout.split()[1]  # "Run: N"

        def output() -> list[object]:
            return [o["message"] for o in alice.observer("show", run_id)["output"]]

        wait_for(lambda: output() == ["cannot reach the remote"], timeout=20, what="the output")
        receiver.wait_for(1)
        titles = [str(post["title"]) for post in receiver.posts()]
        assert any(f"{USER}/fails.service failed" in title for title in titles), titles

        def between_ticks() -> dict[str, dict[str, object]] | None:
            # tick starts every 2 s: a listing can catch it running.
            jobs = {j["name"]: j for j in alice.observer("jobs", "--user")}
            return None if jobs["tick"]["last_result"] == "running" else jobs

        listed = wait_for(between_ticks, timeout=20, what="tick between two of its runs")
        assert listed["tick"]["last_result"] == "success"
        assert listed["fails"]["last_result"] == "exit-code"

        # What a user's manager cannot do is refused before anything is written.
        alice.run("tee", f"{config_dir}/bad.toml", input=(
            '[jobs.enc]\ncommand = "true"\nschedule = "daily"\n'
            f'credentials = {{ token = {{ encrypted = "{CREDENTIALS}/token" }} }}\n'
        ))  # fmt: skip
        refused = alice.run(
            *observer, "jobs", "check", "--user", f"{config_dir}/bad.toml", check=False
        )
        assert refused.returncode == 1
        assert "cannot decrypt credentials" in refused.stderr
