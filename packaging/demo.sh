#!/usr/bin/env bash
# The README's demo: install what is needed, then run observer for real against a
# throw-away systemd booted in its own namespaces, with a few sample timers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/dev-setup.sh
exec .venv/bin/python packaging/demo.py "$@"
