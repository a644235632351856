#!/usr/bin/env bash
# Install observer as a system service on Debian 12 or 13, from the checkout this script is in.
#
#   bash packaging/install.sh                      install, or upgrade to this checkout
#   bash packaging/install.sh --uninstall          remove it; keep the database (and an
#                                                  edited config or drop-ins)
#   bash packaging/install.sh --uninstall --purge  remove those too
#   bash packaging/install.sh --fleet-receiver[=ADDRESS:PORT]  also receive the fleet's
#                         journals here and record them (docs/fleet.md)
#   bash packaging/install.sh --fleet-uploader=URL  also send this server's journal to URL
#   ... --fleet-tls=DIR    with either: over HTTPS, with this host's key and certificate in DIR
#                         (made by packaging/fleet/setup.sh cert; docs/fleet.md#tls)
#
# Run as root. Running it again changes nothing unless this checkout or the shipped unit
# changed. pip reads its usual environment (PIP_INDEX_URL, PIP_FIND_LINKS, ...) for an
# offline mirror or a wheelhouse.
set -euo pipefail

SOURCE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly SOURCE
readonly PREFIX=/opt/observer
readonly VENV=$PREFIX/venv
readonly STAMP=$PREFIX/installed-source.sha256     # which checkout the venv holds
readonly SHIPPED_CONFIG=$PREFIX/observer.toml.default  # the default config last installed
readonly APT_RECORD=$PREFIX/apt-packages-installed  # Debian packages this script added
readonly DIRS_RECORD=$PREFIX/directories-created    # directories made for the shell files
readonly LINK=/usr/local/bin/observer
readonly CONFIG_DIR=/etc/observer
readonly CONFIG=$CONFIG_DIR/observer.toml
readonly UNIT_NAME=observer.service
readonly UNIT=/etc/systemd/system/$UNIT_NAME
readonly DROPINS=/etc/systemd/system/$UNIT_NAME.d
readonly STATE=/var/lib/observer
readonly SPOOL=/var/spool/observer  # where older versions spooled root's runs
# DynamicUser= units' job metrics (systemd keeps them here); the unit shows it to the daemon.
readonly PRIVATE_METRICS=/var/lib/private/observer/job-metrics
readonly ACCOUNT=observer
# Debian's own Python, whichever version the release has (3.11 on 12, 3.13 on 13): one in
# root's PATH (pyenv, conda) may be unreadable for the daemon.
readonly PYTHON=/usr/bin/python3
# Debian's own builds of what observer needs, so that nothing is compiled here: the venv sees
# them (--system-site-packages) and pip fetches only what Debian lacks (cronsim, apprise), as
# wheels. The last six are apprise's dependencies (python3-yaml also reads [metrics] web_config).
readonly DEBIAN_PACKAGES=(python3 python3-venv python3-systemd python3-dbus-fast python3-jinja2
    python3-markupsafe python3-prometheus-client python3-bcrypt python3-requests
    python3-requests-oauthlib python3-markdown python3-yaml python3-click python3-certifi)
# The oldest versions observer works with (pyproject.toml says the same to pip), of what
# Debian provides: Debian package, module, Python distribution, version.
readonly MINIMUM_VERSIONS=(
    "python3-systemd systemd systemd-python 235"
    "python3-dbus-fast dbus_fast dbus-fast 1.84"
    "python3-jinja2 jinja2 Jinja2 3.1"
    "python3-markupsafe markupsafe MarkupSafe 2.1"
    "python3-prometheus-client prometheus_client prometheus-client 0.16"
    "python3-bcrypt bcrypt bcrypt 3.2"
)
# Where shells and man look for what packages outside /usr install.
readonly BASH_COMPLETION=/usr/local/share/bash-completion/completions/observer
readonly ZSH_COMPLETION=/usr/local/share/zsh/site-functions/_observer
readonly FISH_COMPLETION=/usr/local/share/fish/vendor_completions.d/observer.fish
readonly MAN_PAGE=/usr/local/share/man/man1/observer.1

say() { printf 'observer install: %s\n' "$*"; }
die() { printf 'observer install: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

preflight() {
    [ "$(id -u)" -eq 0 ] || die "run me as root (sudo bash $0 $*)"
    [ -d /run/systemd/system ] || die "systemd is not running as PID 1 here: nothing could start the service"
}

# -- install ---------------------------------------------------------------------------

install_packages() {
    local missing=() p
    for p in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    mkdir -p "$PREFIX"
    printf '%s\n' "${missing[@]}" >>"$APT_RECORD"
}

check_python() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "observer needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)"
}

# Debian's packages must be recent enough: pip would otherwise try to build a newer one.
check_versions() {
    local entry package module dist minimum found
    for entry in "${MINIMUM_VERSIONS[@]}"; do
        read -r package module dist minimum <<<"$entry"
        found=$("$PYTHON" - "$module" "$dist" "$minimum" <<'PY'
import importlib.metadata, importlib.util, sys
module, dist, minimum = sys.argv[1:]
if importlib.util.find_spec(module) is None:
    sys.exit(1)
found = importlib.metadata.version(dist)
parts = lambda v: tuple(int(p) for p in (v.split("+")[0].split(".") + ["0", "0"])[:3] if p.isdigit())
print(found)
sys.exit(0 if parts(found) >= parts(minimum) else 1)
PY
        ) || die "observer needs $dist $minimum or newer (Debian package $package);" \
            "$PYTHON has ${found:-none}: upgrade it (apt-get install $package)"
    done
}

create_account() {
    if ! getent group "$ACCOUNT" >/dev/null; then
        groupadd --system "$ACCOUNT"
        say "created group $ACCOUNT (its members can read the history)"
    fi
    if ! getent passwd "$ACCOUNT" >/dev/null; then
        useradd --system --gid "$ACCOUNT" --no-create-home --home-dir "$STATE" \
            --shell /usr/sbin/nologin --comment "observer daemon" "$ACCOUNT"
        say "created system user $ACCOUNT (the daemon runs as it)"
    fi
}

# A fingerprint of what pip would install from this checkout.
source_fingerprint() {
    (
        cd "$SOURCE"
        find pyproject.toml README.md observer -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 |
            LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
    )
}

# Sets CODE_CHANGED=1 when the venv received new code.
install_venv() {
    CODE_CHANGED=0
    if [ -e "$VENV" ] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
        say "the virtual environment in $VENV is broken (Python upgraded?): making it again"
        rm -rf "$VENV"
    fi
    # One made by an older install.sh holds a systemd-python it compiled: Debian's replaces it.
    if [ -e "$VENV" ] && ! grep -qx 'include-system-site-packages = true' "$VENV/pyvenv.cfg"; then
        say "making $VENV again to use Debian's Python packages"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        mkdir -p "$PREFIX"
        "$PYTHON" -m venv --system-site-packages "$VENV"
        rm -f "$STAMP"
    fi
    local fingerprint
    fingerprint=$(source_fingerprint)
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$fingerprint" ] && [ -x "$VENV/bin/observer" ]; then
        return 0
    fi
    say "installing observer from $SOURCE into $VENV"
    # Build from a copy: pip builds in the source tree and would leave build/ in the checkout.
    local build
    build=$(mktemp -d)
    # shellcheck disable=SC2064  # expand now: $build is local
    trap "rm -rf '$build'" EXIT
    tar -C "$SOURCE" --exclude=__pycache__ --exclude='*.pyc' -cf - pyproject.toml README.md observer |
        tar -C "$build" -xf -
    # --only-binary: wheels only, nothing is ever compiled on this machine.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
        --use-pep517 --upgrade --upgrade-strategy only-if-needed --only-binary=:all: "$build" ||
        die "pip could not install observer (above: why); without PyPI, point pip at a" \
            "mirror or a directory of wheels (PIP_INDEX_URL, PIP_FIND_LINKS) and run me again"
    rm -rf "$build"
    trap - EXIT
    printf '%s\n' "$fingerprint" >"$STAMP"
    CODE_CHANGED=1
}

link_command() {
    if [ -e "$LINK" ] && [ ! -L "$LINK" ]; then
        die "$LINK exists and is not the link this script makes: move it away first"
    fi
    if [ "$(readlink "$LINK" 2>/dev/null)" != "$VENV/bin/observer" ]; then
        mkdir -p "$(dirname "$LINK")"
        ln -sfn "$VENV/bin/observer" "$LINK"
        say "linked $LINK"
    fi
}

# Shell completion and the man page, generated from the installed observer's own parser.
install_shell_files() {
    local generated entry kind target
    # Unchanged code makes the same files: skip the four runs of observer.
    if ((!CODE_CHANGED)) && [ -f "$BASH_COMPLETION" ] && [ -f "$ZSH_COMPLETION" ] &&
        [ -f "$FISH_COMPLETION" ] && [ -f "$MAN_PAGE" ]; then
        return 0
    fi
    generated=$(mktemp -d)
    "$VENV/bin/observer" completion bash >"$generated/bash"
    "$VENV/bin/observer" completion zsh >"$generated/zsh"
    "$VENV/bin/observer" completion fish >"$generated/fish"
    "$VENV/bin/observer" manpage >"$generated/man"
    for entry in "bash $BASH_COMPLETION" "zsh $ZSH_COMPLETION" "fish $FISH_COMPLETION" "man $MAN_PAGE"; do
        read -r kind target <<<"$entry"
        if ! cmp -s "$generated/$kind" "$target"; then
            make_directories "$(dirname "$target")"
            install -m 0644 "$generated/$kind" "$target"
        fi
    done
    rm -rf "$generated"
}

# mkdir -p, noting each directory it makes (uninstall removes those it made, if empty).
make_directories() {
    [ -d "$1" ] && return 0
    make_directories "$(dirname "$1")"
    mkdir -m 0755 "$1"
    printf '%s\n' "$1" >>"$DIRS_RECORD"
}

remove_shell_files() {
    rm -f "$BASH_COMPLETION" "$ZSH_COMPLETION" "$FISH_COMPLETION" "$MAN_PAGE"
    if [ -f "$DIRS_RECORD" ]; then
        tac "$DIRS_RECORD" | while read -r directory; do rmdir "$directory" 2>/dev/null || true; done
    fi
}

# Write the default config where there is none; replace it on upgrade only while nobody
# edited it (it still equals the default installed last time); never touch an edited one.
install_config() {
    local shipped=$SOURCE/packaging/observer.toml
    install -d -m 0755 "$CONFIG_DIR"
    if [ ! -e "$CONFIG" ]; then
        install -m 0644 "$shipped" "$CONFIG"
        say "wrote $CONFIG (every option, commented out, with its default)"
    elif ! cmp -s "$CONFIG" "$shipped"; then
        if [ -f "$SHIPPED_CONFIG" ] && cmp -s "$CONFIG" "$SHIPPED_CONFIG"; then
            install -m 0644 "$shipped" "$CONFIG"
            say "updated $CONFIG to this version's defaults (it was not edited)"
        elif ! cmp -s "$shipped" "$SHIPPED_CONFIG" 2>/dev/null; then
            say "kept your edited $CONFIG; this version's defaults are in $SHIPPED_CONFIG"
        fi
    fi
    if ! cmp -s "$shipped" "$SHIPPED_CONFIG" 2>/dev/null; then
        install -m 0644 "$shipped" "$SHIPPED_CONFIG"
    fi
    "$VENV/bin/observer" check-config --config "$CONFIG" >/dev/null ||
        die "fix $CONFIG (see above), then run $0 again"
}

# Sets UNIT_CHANGED=1 when systemd must re-read the unit.
install_unit() {
    UNIT_CHANGED=0
    if ! cmp -s "$SOURCE/packaging/$UNIT_NAME" "$UNIT"; then
        install -m 0644 "$SOURCE/packaging/$UNIT_NAME" "$UNIT"
        systemctl daemon-reload
        UNIT_CHANGED=1
        say "installed $UNIT"
    fi
}

start_service() {
    if ! systemctl is-enabled --quiet "$UNIT_NAME" 2>/dev/null; then
        systemctl enable --quiet "$UNIT_NAME"
    fi
    # Type=notify: start and restart return once the daemon is recording (or has failed).
    local started=0
    if ((CODE_CHANGED || UNIT_CHANGED)) && systemctl is-active --quiet "$UNIT_NAME"; then
        say "restarting $UNIT_NAME"
        systemctl restart "$UNIT_NAME" && started=1
    elif ! systemctl is-active --quiet "$UNIT_NAME"; then
        say "starting $UNIT_NAME"
        systemctl start "$UNIT_NAME" && started=1
    else
        started=1
    fi
    if ((!started)) || ! systemctl is-active --quiet "$UNIT_NAME"; then
        systemctl --no-pager status "$UNIT_NAME" >&2 || true
        die "$UNIT_NAME did not start (journalctl -u $UNIT_NAME says why)"
    fi
}

install_all() {
    install_packages
    check_python
    check_versions
    create_account
    install -d -m 0700 /var/lib/private
    install -d -m 0755 /var/lib/private/observer "$PRIVATE_METRICS"
    install_venv
    link_command
    install_shell_files
    install_config
    install_unit
    start_service
    say "observer is recording: $STATE/observer.db ($("$VENV/bin/observer" --version))"
    say "to read the history without root: usermod -a -G $ACCOUNT USER (then log in again)"
}

# -- uninstall -------------------------------------------------------------------------

uninstall_all() {
    local purge=$1 kept=()
    if [ -e "$UNIT" ] || systemctl is-active --quiet "$UNIT_NAME" 2>/dev/null; then
        systemctl disable --now --quiet "$UNIT_NAME" 2>/dev/null || true
    fi
    if [ -e "$UNIT" ]; then
        rm -f "$UNIT"
        say "removed $UNIT"
    fi
    if [ -d "$DROPINS" ]; then
        if ((purge)); then rm -rf "$DROPINS"; else kept+=("$DROPINS"); fi
    fi
    systemctl daemon-reload
    systemctl reset-failed "$UNIT_NAME" 2>/dev/null || true
    if [ -e "$CONFIG" ]; then
        if ((purge)) || cmp -s "$CONFIG" "$SHIPPED_CONFIG"; then
            rm -f "$CONFIG"
        else
            kept+=("$CONFIG")
        fi
    fi
    rmdir "$CONFIG_DIR" 2>/dev/null || true
    if [ "$(readlink "$LINK" 2>/dev/null)" = "$VENV/bin/observer" ]; then
        rm -f "$LINK"
    fi
    remove_shell_files
    local packages=""
    if [ -f "$APT_RECORD" ]; then
        packages=$(sort -u "$APT_RECORD" | paste -sd' ')
    fi
    if [ -d "$PREFIX" ]; then
        rm -rf "$PREFIX"
        say "removed $PREFIX"
    fi
    if ((purge)); then
        rm -rf "$STATE" "$SPOOL" "$(dirname "$PRIVATE_METRICS")"
        say "removed the database and everything else in $STATE"
    elif [ -d "$STATE" ]; then
        kept+=("$STATE")
    fi
    if getent passwd "$ACCOUNT" >/dev/null; then
        userdel "$ACCOUNT"
    fi
    if getent group "$ACCOUNT" >/dev/null; then
        groupdel "$ACCOUNT"
    fi
    say "removed observer"
    if ((${#kept[@]})); then
        say "kept: ${kept[*]} (--uninstall --purge removes them)"
    fi
    if [ -n "$packages" ]; then
        say "Debian packages installed for observer, if nothing else needs them: apt-get remove $packages"
    fi
}

main() {
    local uninstall=0 purge=0 receiver="" uploader="" tls=""
    for arg in "$@"; do
        case $arg in
            --uninstall) uninstall=1 ;;
            --purge) purge=1 ;;
            --fleet-receiver) receiver=127.0.0.1:19532 ;;
            --fleet-receiver=*) receiver=${arg#*=} ;;
            --fleet-uploader=*) uploader=${arg#*=} ;;
            --fleet-tls=*) tls=${arg#*=} ;;
            -h | --help) usage 0 ;;
            *) printf 'observer install: unknown option %s\n' "$arg" >&2; usage 2 >&2 ;;
        esac
    done
    ((!purge || uninstall)) || die "--purge goes with --uninstall"
    ((!uninstall)) || [ -z "$receiver$uploader$tls" ] || die "--fleet-* options go with an install"
    [ -z "$tls" ] || [ -n "$receiver$uploader" ] || die "--fleet-tls goes with --fleet-receiver or --fleet-uploader"
    preflight "$@"
    if ((uninstall)); then
        uninstall_all "$purge"
    else
        install_all
        if [ -n "$receiver" ]; then
            bash "$SOURCE/packaging/fleet/setup.sh" receiver "$receiver" "$tls"
            bash "$SOURCE/packaging/fleet/setup.sh" central
        fi
        if [ -n "$uploader" ]; then
            bash "$SOURCE/packaging/fleet/setup.sh" uploader "$uploader" "$tls"
        fi
    fi
}

main "$@"
