#!/usr/bin/env bash
# The README's test command: install everything, then run linters, unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/dev-setup.sh
# The roots of other systemd releases (tests/roots.sh, cached) are built before any test
# runs: sandboxes see the host's files through their overlay, and a root built or
# reinstalled while another test's sandbox runs would change what that test sees.
if [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null; then
    start=$SECONDS
    pids=()
    for pair in "bookworm trixie" "bookworm-backports sid"; do
        # shellcheck disable=SC2086 # two suites a line, built one after the other
        (for suite in $pair; do bash tests/roots.sh "$suite" >/dev/null; done) & pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    echo "test: release roots ready in $((SECONDS - start)) s"
fi
# Sandboxed tests mostly wait on systemd: run them on a few workers (OBSERVER_TEST_WORKERS).
exec .venv/bin/python -m pytest -n "${OBSERVER_TEST_WORKERS:-3}" --dist loadfile "$@"
