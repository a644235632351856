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
# The integration suite once more against another release's systemd (Debian 13's 257 by
# default; OBSERVER_TEST_SECOND_ROOT="" for none), in parallel: its sandboxes boot that root
# (OBSERVER_TEST_ROOT, tests/sandbox.py) and the host's observer drives them from outside.
# test_releases*.py boot every release whatever the default: they run once, in the first.
# Two workers for the host's run and one for the second share CI's two cores.
second=${OBSERVER_TEST_SECOND_ROOT-trixie}
if [ -z "$second" ] || [ "$(id -u)" != 0 ] || ! command -v debootstrap >/dev/null; then
    exec "${pytest[@]}" -n "${OBSERVER_TEST_WORKERS:-3}" "$@"
fi
log=$(mktemp /tmp/observer-test-"$second".XXXXXX)
start=$SECONDS
OBSERVER_TEST_ROOT=$second "${pytest[@]}" -n "${OBSERVER_TEST_SECOND_WORKERS:-1}" -p no:cacheprovider \
    --ignore=tests/integration/test_releases.py --ignore=tests/integration/test_releases_services.py \
    --ignore=tests/integration/test_install_releases.py \
    "$@" tests/integration >"$log" 2>&1 & second_pid=$!
status=0
"${pytest[@]}" -n "${OBSERVER_TEST_WORKERS:-2}" "$@" || status=$?
echo "test: the host's run took $((SECONDS - start)) s"
wait "$second_pid" || status=$?
echo "test: the integration suite on $second (took $((SECONDS - start)) s until both were done):"
cat "$log" && rm -f "$log"
exit "$status"
