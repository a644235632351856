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
pytest=(.venv/bin/python -m pytest --dist loadfile)
# The integration suite once more against other releases' systemd, each in parallel with
# the host's run: Debian 13's 257 as a container, and sid's 262 booted as a machine
# (OBSERVER_TEST_OTHER_ROOTS: SUITE or SUITE:machine, space-separated; "" for none). Their
# sandboxes boot that root (OBSERVER_TEST_ROOT, OBSERVER_TEST_MACHINE: tests/sandbox.py)
# and the host's observer drives them from outside. test_releases*.py boot every release
# whatever the default: they run once, in the host's run. The host's run has two workers,
# each other root one: the tests mostly wait on systemd.
others=${OBSERVER_TEST_OTHER_ROOTS-trixie sid:machine}
if [ -z "$others" ] || [ "$(id -u)" != 0 ] || ! command -v debootstrap >/dev/null; then
    exec "${pytest[@]}" -n "${OBSERVER_TEST_WORKERS:-3}" "$@"
fi
start=$SECONDS
pids=() logs=()
for other in $others; do
    suite=${other%:machine}
    machine=$([ "$suite" != "$other" ] && echo 1 || echo 0)
    log=$(mktemp /tmp/observer-test-"$suite".XXXXXX)
    OBSERVER_TEST_ROOT=$suite OBSERVER_TEST_MACHINE=$machine "${pytest[@]}" \
        -n "${OBSERVER_TEST_OTHER_WORKERS:-1}" -p no:cacheprovider \
        --ignore=tests/integration/test_releases.py \
        --ignore=tests/integration/test_releases_services.py \
        --ignore=tests/integration/test_install_releases.py \
        "$@" tests/integration >"$log" 2>&1 & pids+=($!) logs+=("$other $log")
done
status=0
"${pytest[@]}" -n "${OBSERVER_TEST_WORKERS:-2}" "$@" || status=$?
echo "test: the host's run took $((SECONDS - start)) s"
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || status=$?
    read -r other log <<<"${logs[$i]}"
    echo "test: the integration suite on $other (done $((SECONDS - start)) s after the start):"
    cat "$log" && rm -f "$log"
done
exit "$status"
