#!/usr/bin/env bash
# Builds (once) and prints the path of a Debian root of another release, for Sandbox.boot(root=).
#
#   tests/roots.sh SUITE [CACHE]      SUITE: bookworm, bookworm-backports, trixie or sid
#
# The root is a debootstrap minbase with systemd, dbus and observer's Debian dependencies,
# and observer installed as a server would have it: a venv with --system-site-packages on
# that release's python3 (/opt/observer/venv), `pip install` of this checkout (the
# distribution systemd-observer), cronsim and apprise from the registry. Roots are cached under CACHE (default
# /var/cache/observer-test-roots), keyed by suite and package list; observer is reinstalled
# there whenever this checkout's sources change. Needs root and debootstrap.
set -euo pipefail

suite=${1:?usage: tests/roots.sh SUITE [CACHE]}
cache=${2:-${OBSERVER_TEST_ROOTS:-/var/cache/observer-test-roots}}
checkout=$(cd "$(dirname "$0")/.." && pwd)
mirror=${OBSERVER_TEST_MIRROR:-http://deb.debian.org/debian}

packages=(systemd systemd-sysv dbus python3 python3-venv python3-systemd python3-dbus-fast
    python3-prometheus-client python3-jinja2 libpam-systemd dbus-user-session ca-certificates)
# Bump when the recipe below changes in a way that needs every root rebuilt.
recipe=1

case $suite in
    bookworm | trixie | sid) base=$suite backports="" ;;
    bookworm-backports) base=bookworm backports=$suite ;;
    *) echo "roots.sh: unknown suite '$suite' (bookworm, bookworm-backports, trixie, sid)" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "roots.sh: building a root needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "roots.sh: debootstrap is not installed" >&2; exit 1; }

dir=$cache/$suite
root=$dir/root
mkdir -p "$dir"
exec 9>"$dir/lock"
flock 9  # two test workers may ask for the same root at once: one builds, the other waits

# Runs a command chrooted in the root, in a mount namespace of its own (its /proc and /dev
# mounts vanish with it), with the host's CA file and resolver so that apt and pip reach
# the registry (the CA carries the registry proxy's).
in_root() {
    cp /etc/resolv.conf "$1/etc/resolv.conf"
    mkdir -p "$1/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/observer-host-ca.crt"
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --mount --fork -- /bin/sh -c '
        set -e; r=$1; shift
        mount --make-rprivate /
        mount -t proc proc "$r/proc"
        mount --rbind /dev "$r/dev"
        exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
            DEBIAN_FRONTEND=noninteractive PIP_CERT=/etc/ssl/observer-host-ca.crt \
            PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 "$@"
    ' in_root "$@"
}

build_root() {
    local new=$dir/root.new
    rm -rf "$new" "$dir/root.old"
    local include
    include=$(IFS=,; echo "${packages[*]}")
    # bookworm-backports: the base suite's packages first, then the backported ones over them
    debootstrap --variant=minbase --include="$include" "$base" "$new" "$mirror" >"$dir/debootstrap.log" 2>&1 ||
        { tail -20 "$dir/debootstrap.log" >&2; echo "roots.sh: debootstrap $base failed" >&2; exit 1; }
    if [ -n "$backports" ]; then
        echo "deb $mirror $backports main" >"$new/etc/apt/sources.list.d/backports.list"
        printf '#!/bin/sh\nexit 101\n' >"$new/usr/sbin/policy-rc.d" && chmod +x "$new/usr/sbin/policy-rc.d"
        in_root "$new" apt-get update -qq
        in_root "$new" apt-get install -y -qq -t "$backports" systemd systemd-sysv libpam-systemd libsystemd0 >/dev/null
        rm "$new/usr/sbin/policy-rc.d"
    fi
    in_root "$new" apt-get clean
    in_root "$new" python3 -m venv --system-site-packages /opt/observer/venv
    # setuptools in the venv: observer's own reinstalls then need no build isolation
    in_root "$new" /opt/observer/venv/bin/pip install -q 'setuptools>=68' cronsim apprise
    [ ! -e "$root" ] || mv "$root" "$dir/root.old"
    mv "$new" "$root"
    rm -rf "$dir/root.old" "$dir/observer-key"
    echo "$key" >"$dir/key"
}

# The sources that make up observer's distribution, with their content.
observer_sources() { (cd "$checkout" && find pyproject.toml README.md observer -name __pycache__ -prune -o -type f -print | LC_ALL=C sort); }

install_observer() {
    rm -rf "$root/opt/observer/src" && mkdir -p "$root/opt/observer/src"
    (cd "$checkout" && observer_sources | tar -cf - -T -) | tar -xf - -C "$root/opt/observer/src"
    # roots built before the distribution was renamed hold it as "observer" (PyPI's is another)
    in_root "$root" /opt/observer/venv/bin/pip uninstall -q -y observer 2>/dev/null
    in_root "$root" /opt/observer/venv/bin/pip install -q --no-build-isolation --force-reinstall \
        --no-deps /opt/observer/src
    # the full dependency check, as `pip install .` would do it (cronsim, apprise: already in)
    in_root "$root" /opt/observer/venv/bin/pip install -q --no-build-isolation /opt/observer/src
    rm -rf "$root/opt/observer/src"
    echo "$source_key" >"$dir/observer-key"
}

key=$(printf '%s\n' "recipe=$recipe" "suite=$suite" "${packages[@]}" | sha256sum | cut -c1-16)
if [ "$(cat "$dir/key" 2>/dev/null)" != "$key" ] || [ ! -x "$root/opt/observer/venv/bin/python" ]; then
    start=$SECONDS
    build_root
    echo "roots.sh: built $suite in $((SECONDS - start)) s" >&2
fi
source_key=$( (cd "$checkout" && observer_sources | xargs -d '\n' sha256sum) | sha256sum | cut -c1-16)
if [ "$(cat "$dir/observer-key" 2>/dev/null)" != "$source_key" ]; then
    install_observer
fi
echo "$root"
