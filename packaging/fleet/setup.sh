#!/usr/bin/env bash
# Set up one end of observer's fleet on Debian 12 (docs/fleet.md#set-up), as root:
#
#   bash packaging/fleet/setup.sh receiver [ADDRESS:PORT]  this host receives the fleet's
#                                 journals (systemd-journal-remote; default 127.0.0.1:19532)
#   bash packaging/fleet/setup.sh central     this host's observer records them (an
#                                 installed observer: [fleet] directory, the group to read)
#   bash packaging/fleet/setup.sh uploader URL  this server sends its journal to URL
#                                 (systemd-journal-upload, retrying through outages)
#
# Running it again changes nothing. Plain HTTP has no authentication: beyond loopback use
# HTTPS with client certificates (docs/fleet.md#set-up, TLS).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly RECEIVED=/var/log/journal/remote
readonly UNITS=/etc/systemd/system

say() { printf 'observer fleet: %s\n' "$*"; }
die() { printf 'observer fleet: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit "${1:-0}"; }

need_package() {
    dpkg-query -W -f='${Status}' systemd-journal-remote 2>/dev/null | grep -q "install ok installed" && return
    say "installing the Debian package systemd-journal-remote"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd-journal-remote >/dev/null
}

receiver() {
    local listen=${1:-127.0.0.1:19532}
    [[ $listen =~ ^[^[:space:]|]+:[0-9]+$ ]] || die "receiver: expected ADDRESS:PORT, got '$listen'"
    need_package
    install -d "$UNITS/systemd-journal-remote.socket.d" "$UNITS/systemd-journal-remote.service.d"
    sed "s|^ListenStream=127.0.0.1:19532\$|ListenStream=$listen|" "$HERE/journal-remote.socket.conf" \
        > "$UNITS/systemd-journal-remote.socket.d/observer.conf"
    install -m 0644 "$HERE/journal-remote.service.conf" "$UNITS/systemd-journal-remote.service.d/observer.conf"
    systemctl daemon-reload
    systemctl enable --now --quiet systemd-journal-remote.socket
    systemctl try-restart systemd-journal-remote.service
    say "receiving journals on $listen into $RECEIVED/all.journal"
}

central() {
    local config=/etc/observer/observer.toml
    [ -f "$config" ] || die "central: no $config (install observer first: bash packaging/install.sh)"
    if ! grep -q '^directory = "/var/log/journal/remote"' "$config"; then
        # The shipped file has a [fleet] table with its line commented out.
        grep -q '^\[fleet\]' "$config" || printf '\n[fleet]\n' >> "$config"
        sed -i '/^\[fleet\]/,/^\[/{s|^# directory = "".*$|directory = "/var/log/journal/remote"|}' "$config"
        grep -q '^directory = "/var/log/journal/remote"' "$config" \
            || sed -i "/^\\[fleet\\]/a directory = \"$RECEIVED\"" "$config"
    fi
    if getent group systemd-journal-remote >/dev/null && getent passwd observer >/dev/null; then
        usermod -a -G systemd-journal-remote observer
    fi
    systemctl try-restart observer.service
    say "observer records the fleet's runs from $RECEIVED"
}

uploader() {
    local url=${1:-}
    [[ $url =~ ^https?://[^[:space:]]+$ ]] || die "uploader: expected a URL such as http://central:19532, got '$url'"
    need_package
    install -d /etc/systemd/journal-upload.conf.d "$UNITS/systemd-journal-upload.service.d"
    sed "s|^URL=.*\$|URL=$url|" "$HERE/journal-upload.conf" > /etc/systemd/journal-upload.conf.d/observer.conf
    install -m 0644 "$HERE/journal-upload.service.conf" "$UNITS/systemd-journal-upload.service.d/observer.conf"
    systemctl daemon-reload
    systemctl enable --now --quiet systemd-journal-upload.service
    systemctl try-restart systemd-journal-upload.service
    say "uploading this host's journal to $url"
}

[ "$(id -u)" -eq 0 ] || die "run me as root"
case ${1:-} in
    receiver) receiver "${2:-}" ;;
    central) central ;;
    uploader) uploader "${2:-}" ;;
    -h | --help) usage 0 ;;
    *) usage 2 >&2 ;;
esac
