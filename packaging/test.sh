#!/usr/bin/env bash
# The README's test command: install everything, then run linters, unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/dev-setup.sh
exec .venv/bin/python -m pytest "$@"
