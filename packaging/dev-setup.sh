#!/usr/bin/env bash
# Installs what observer's demo and tests need on a Debian 12 machine, into .venv beside it.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(libsystemd-dev pkg-config gcc systemd dbus util-linux)
apt_packages+=(shellcheck python3-venv python3-dev libc6-dev)  # install tests: lint install.sh; its build deps already in the sandbox
apt_packages+=(cron)  # observer run tests: a real cron daemon inside the sandbox
apt_packages+=(debootstrap)  # release tests: roots of other Debian releases (tests/roots.sh)
apt_packages+=(systemd-journal-remote stunnel4)  # fleet tests: the real journal-upload and journal-remote, TLS
apt_packages+=(prometheus prometheus-node-exporter)  # metrics tests: promtool, Prometheus, node_exporter
apt_packages+=(chromium)  # dashboard tests in a real browser
# The Debian package (packaging/build-deb.sh): Debian's tools and the build dependencies in
# packaging/deb/debian/control; completion and man page tests: the shells, bash-completion, groff.
apt_packages+=(debhelper dh-python lintian devscripts git python3-systemd python3-dbus-fast
    python3-jinja2 python3-markupsafe python3-prometheus-client python3-requests
    python3-requests-oauthlib python3-markdown python3-yaml python3-click python3-certifi
    python3-bcrypt)
apt_packages+=(bash-completion zsh fish groff man-db)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "dev-setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "dev-setup: observer needs Python 3.11 or newer ($python is $("$python" --version))" >&2
    exit 1
}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
echo "dev-setup: ready (.venv/bin/observer)"
