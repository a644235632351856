#!/usr/bin/env bash
# The README's test command: install everything, then run linters, unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/dev-setup.sh
# Sandboxed tests mostly wait on systemd: run them on a few workers (OBSERVER_TEST_WORKERS).
exec .venv/bin/python -m pytest -n "${OBSERVER_TEST_WORKERS:-3}" --dist loadfile "$@"
