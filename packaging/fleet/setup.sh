#!/usr/bin/env bash
# Set up one end of observer's fleet on Debian 12 or 13 (docs/fleet.md#set-up):
#
#   bash packaging/fleet/setup.sh ca DIR     make the fleet's certificate authority in DIR
#                                 (ca.key stays there, on one trusted host; ca.pem)
#   bash packaging/fleet/setup.sh cert DIR HOST [NAME...]  a key and certificate for HOST
#                                 (and its other names or addresses), signed by DIR's CA, in
#                                 DIR/HOST/: copy that directory to HOST
#   bash packaging/fleet/setup.sh receiver [ADDRESS:PORT [TLS_DIR]]  this host receives the
#                                 fleet's journals (systemd-journal-remote; default
#                                 127.0.0.1:19532); with TLS_DIR (made by cert) over HTTPS
#                                 (stunnel), only from uploaders the fleet's CA signed for
#   bash packaging/fleet/setup.sh central     this host's observer records them (an
#                                 installed observer: [fleet] directory, the group to read)
#   bash packaging/fleet/setup.sh uploader URL [TLS_DIR]  this server sends its journal to
#                                 URL (systemd-journal-upload, retrying through outages);
#                                 an https:// URL with this host's TLS_DIR
#
# receiver, central and uploader run as root. Running it again changes nothing (a key or
# certificate already made is kept). Plain HTTP has no authentication: beyond loopback use TLS.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly RECEIVED=/var/log/journal/remote
readonly UNITS=/etc/systemd/system
readonly TLS=/etc/observer/fleet-tls  # this host's key, certificate and the fleet's CA
readonly STUNNEL_CONF=/etc/stunnel/observer-fleet.conf STUNNEL_UNIT=stunnel@observer-fleet.service
readonly CA_DAYS=3650 CERT_DAYS=1825

say() { printf 'observer fleet: %s\n' "$*"; }
die() { printf 'observer fleet: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,21s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit "${1:-0}"; }
need_root() { [ "$(id -u)" -eq 0 ] || die "run me as root"; }

need_package() {
    local package=$1
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" && return
    # A backported systemd (254 on bookworm) needs its companions from the same suite:
    # bookworm's systemd-journal-remote conflicts with bookworm-backports' systemd.
    local release=()
    # shellcheck source=/dev/null
    case $(dpkg-query -W -f='${Version}' systemd 2>/dev/null) in
        *~bpo*) release=(-t "$(. /etc/os-release && echo "$VERSION_CODENAME")-backports") ;;
    esac
    say "installing the Debian package $package ${release[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${release[@]}" "$package" >/dev/null
}

# -- certificates ------------------------------------------------------------------------

ca() {
    local dir=${1:-}
    [ -n "$dir" ] || die "ca: expected a directory, such as /root/observer-fleet-ca"
    command -v openssl >/dev/null || die "ca: needs openssl (apt-get install openssl)"
    if [ -f "$dir/ca.key" ] && [ -f "$dir/ca.pem" ]; then
        say "keeping the CA already in $dir"
        return
    fi
    install -d -m 0700 "$dir"
    (
        umask 077
        openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
            -days "$CA_DAYS" -subj "/CN=observer fleet CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    )
    chmod 0644 "$dir/ca.pem"
    say "made the fleet's CA in $dir (keep ca.key there: it signs every host's certificate)"
}

# A subjectAltName entry: an IPv4 or IPv6 address, else a DNS name.
alt_name() {
    local name=$1
    if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then
        printf 'IP:%s' "$name"
    elif [[ $name =~ ^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9])?$ ]]; then
        printf 'DNS:%s' "$name"
    else
        die "cert: '$name' is not a host name or an address"
    fi
}

cert() {
    local dir=${1:-} host=${2:-} names name alt
    [[ -n $dir && -n $host ]] || die "cert: expected DIR HOST [NAME...]"
    shift 2
    [[ -f $dir/ca.key && -f $dir/ca.pem ]] || die "cert: no CA in $dir (make one: setup.sh ca $dir)"
    names=$(alt_name "$host")
    for name in "$@"; do
        alt=$(alt_name "$name")
        names+=",$alt"
    done
    local out=$dir/$host
    if [ -f "$out/key.pem" ] && [ -f "$out/cert.pem" ]; then
        say "keeping the certificate of $host already in $out (remove $out to make a new one)"
        return
    fi
    install -d -m 0700 "$out"
    (
        umask 077
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
            -subj "/CN=$host" -keyout "$out/key.pem" -out "$out/request.csr" 2>/dev/null
        openssl x509 -req -in "$out/request.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
            -set_serial "0x$(openssl rand -hex 16)" -days "$CERT_DAYS" -sha256 -out "$out/cert.pem" \
            -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
                "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth,clientAuth" \
                "subjectAltName=$names") 2>/dev/null
    )
    rm -f "$out/request.csr"
    install -m 0644 "$dir/ca.pem" "$out/ca.pem"
    chmod 0644 "$out/cert.pem"
    say "made $host's key and certificate ($names) in $out: copy that directory to $host"
}

# Put a host's key, certificate and CA (a directory made by cert) where the units read them.
install_tls() {
    local from=$1 file
    for file in key.pem cert.pem ca.pem; do
        [ -f "$from/$file" ] || die "$from has no $file (make it with: setup.sh cert CA_DIR HOST)"
    done
    openssl verify -CAfile "$from/ca.pem" "$from/cert.pem" >/dev/null 2>&1 \
        || die "$from/cert.pem is not signed by $from/ca.pem"
    install -d -m 0700 "$TLS"
    install -m 0600 "$from/key.pem" "$TLS/key.pem"
    install -m 0644 "$from/cert.pem" "$TLS/cert.pem"
    install -m 0644 "$from/ca.pem" "$TLS/ca.pem"
}

# -- the fleet's ends ----------------------------------------------------------------------

receiver() {
    local listen=${1:-127.0.0.1:19532} tls=${2:-} scheme=http
    [[ $listen =~ ^[^[:space:]|]+:[0-9]+$ ]] || die "receiver: expected ADDRESS:PORT, got '$listen'"
    need_root
    need_package systemd-journal-remote
    local socket_d=$UNITS/systemd-journal-remote.socket.d
    install -d "$socket_d" "$UNITS/systemd-journal-remote.service.d"
    install -m 0644 "$HERE/journal-remote.service.conf" "$UNITS/systemd-journal-remote.service.d/observer.conf"
    if [ -n "$tls" ]; then
        # journal-remote cannot check client certificates (stunnel.conf says why): stunnel
        # takes the port and journal-remote a socket behind it.
        scheme=https
        need_package stunnel4
        install_tls "$tls"
        install -m 0644 "$HERE/journal-remote-tls.socket.conf" "$socket_d/observer.conf"
        sed "s|^accept = .*\$|accept = $listen|" "$HERE/stunnel.conf" > "$STUNNEL_CONF"
    else
        sed "s|^ListenStream=127.0.0.1:19532\$|ListenStream=$listen|" "$HERE/journal-remote.socket.conf" \
            > "$socket_d/observer.conf"
        [[ $listen == 127.* || $listen == "[::1]":* ]] \
            || say "warning: plain HTTP on $listen: anything that reaches it can post entries (give a TLS_DIR)"
    fi
    systemctl daemon-reload
    if [ -n "$tls" ]; then
        systemctl restart systemd-journal-remote.socket  # it moves to the socket behind stunnel
        systemctl enable --quiet "$STUNNEL_UNIT"
        systemctl restart "$STUNNEL_UNIT"
    elif [ -f "$STUNNEL_CONF" ]; then
        systemctl disable --now --quiet "$STUNNEL_UNIT"
        rm -f "$STUNNEL_CONF"
        systemctl restart systemd-journal-remote.socket
    fi
    systemctl enable --now --quiet systemd-journal-remote.socket
    systemctl try-restart systemd-journal-remote.service
    say "receiving journals over $scheme on $listen into $RECEIVED/all.journal"
}

central() {
    need_root
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
    local url=${1:-} tls=${2:-}
    [[ $url =~ ^https?://[^[:space:]]+$ ]] || die "uploader: expected a URL such as https://central:19532, got '$url'"
    if [[ $url == https://* ]]; then
        [ -n "$tls" ] || die "uploader: $url needs this host's TLS_DIR (made by: setup.sh cert CA_DIR HOST)"
    else
        [ -z "$tls" ] || die "uploader: a TLS_DIR goes with an https:// URL, not $url"
    fi
    need_root
    need_package systemd-journal-remote
    local service_d=$UNITS/systemd-journal-upload.service.d conf_d=/etc/systemd/journal-upload.conf.d
    install -d "$conf_d" "$service_d"
    sed "s|^URL=.*\$|URL=$url|" "$HERE/journal-upload.conf" > "$conf_d/observer.conf"
    install -m 0644 "$HERE/journal-upload.service.conf" "$service_d/observer.conf"
    if [ -n "$tls" ]; then
        install_tls "$tls"
        install -m 0644 "$HERE/journal-upload-tls.conf" "$conf_d/observer-tls.conf"
        install -m 0644 "$HERE/tls-credentials.conf" "$service_d/observer-tls.conf"
    else
        rm -f "$conf_d/observer-tls.conf" "$service_d/observer-tls.conf"
    fi
    systemctl daemon-reload
    systemctl enable --now --quiet systemd-journal-upload.service
    systemctl try-restart systemd-journal-upload.service
    say "uploading this host's journal to $url"
}

case ${1:-} in
    ca) ca "${2:-}" ;;
    cert) shift; cert "$@" ;;
    receiver) receiver "${2:-}" "${3:-}" ;;
    central) central ;;
    uploader) uploader "${2:-}" "${3:-}" ;;
    -h | --help) usage 0 ;;
    *) usage 2 >&2 ;;
esac
