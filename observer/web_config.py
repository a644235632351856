"""The metrics listener's web configuration file (``[metrics] web_config``): TLS and basic auth.

The file has the shape of Prometheus exporter-toolkit's ``--web.config.file``, so that one
file serves observer and the exporters beside it::

    tls_server_config:
      cert_file: /etc/observer/metrics.crt
      key_file: /etc/observer/metrics.key
      client_ca_file: /etc/observer/scrapers-ca.crt      # optional
      client_auth_type: RequireAndVerifyClientCert        # with client_ca_file
    basic_auth_users:
      prometheus: $2b$12$...                              # a bcrypt hash

Relative file names are read beside the web configuration file. A key observer does not
know, or one of the toolkit's it does not implement, is refused rather than ignored: a
setting that would silently do nothing is a door left open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import ssl
import threading

from observer.model import ConfigError
from observer.records import Mutable, NamedTuple

# typing.TYPE_CHECKING would import typing; mypy takes this one as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any

# The toolkit's client_auth_type values Python's ssl can honour, as its verify modes.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_TLS_KEYS = {
    "cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version",
}  # fmt: skip
# The toolkit's keys observer does not implement: named as such, not as typing mistakes.
_UNSUPPORTED = {
    "http_server_config", "rate_limit", "cert", "key", "client_ca", "client_allowed_sans",
    "cipher_suites", "curve_preferences", "prefer_server_cipher_suites",
}  # fmt: skip
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_KNOWN_LOGINS = 64  # logins remembered as good, so that a scrape does not pay bcrypt each time


class WebConfig(NamedTuple):
    """What the listener demands: TLS (its server context) and the users allowed in."""

    path: Path | None = None
    tls: ssl.SSLContext | None = None
    basic_auth: BasicAuth | None = None


class BasicAuth(Mutable):
    """HTTP basic authentication against bcrypt hashes (``basic_auth_users``)."""

    __slots__ = ("_good", "_lock", "checkpw", "unknown_user_hash", "users")

    def __init__(
        self,
        users: Mapping[str, bytes],
        checkpw: Callable[[bytes, bytes], bool],
        # Checked against when the user is unknown, so that a wrong name costs what a wrong
        # password does: which names exist cannot be told by timing.
        unknown_user_hash: bytes,
        _good: dict[bytes, None] | None = None,
        _lock: threading.Lock | None = None,
    ) -> None:
        self.users = users
        self.checkpw = checkpw
        self.unknown_user_hash = unknown_user_hash
        self._good: dict[bytes, None] = {} if _good is None else _good
        self._lock = threading.Lock() if _lock is None else _lock

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header names a user and their password."""
        login = _basic_credentials(authorization)
        if login is None:
            return False
        user, password = login
        known = self.users.get(user)
        hashed = known if known is not None else self.unknown_user_hash
        # What a good login is remembered by: neither the password nor its hash is kept.
        token = hashlib.sha256(b"\0".join((user.encode(), hashed, password))).digest()
        with self._lock:
            remembered = any(hmac.compare_digest(token, good) for good in self._good)
        if remembered:
            return known is not None
        try:
            matches = self.checkpw(password, hashed)
        except ValueError:  # a password bcrypt will not take (newer bcrypt: over 72 bytes)
            return False
        if not (matches and known is not None):
            return False
        with self._lock:
            self._good[token] = None
            while len(self._good) > _KNOWN_LOGINS:
                del self._good[next(iter(self._good))]
        return True


def _basic_credentials(authorization: str | None) -> tuple[str, bytes] | None:
    """The user and password of a ``Basic`` Authorization header; None if it is not one."""
    if authorization is None:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


def load_web_config(path: Path) -> WebConfig:
    """Read and check a web configuration file; a ConfigError names the file and the key."""
    # Imported here: a daemon without a web configuration needs neither module.
    import yaml  # noqa: PLC0415

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read the web configuration {str(path)!r}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from e
    try:
        return _web_config(path, {} if document is None else document)
    except _BadKey as e:
        raise ConfigError(f"{path}: {e}") from e


class _BadKey(ConfigError):
    """A bad key or value of the web configuration; load_web_config names the file."""


def _web_config(path: Path, document: object) -> WebConfig:
    table = _mapping(document, "the file")
    _known_keys(table, {"tls_server_config", "basic_auth_users"}, prefix="")
    tls = None
    if (tls_table := table.get("tls_server_config")) is not None:
        tls = _server_context(path.parent, _mapping(tls_table, "tls_server_config"))
    users = None
    if (users_table := table.get("basic_auth_users")) is not None:
        users = _basic_auth(_mapping(users_table, "basic_auth_users"))
    return WebConfig(path=path, tls=tls, basic_auth=users)


def _mapping(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _BadKey(f"{what}: expected a mapping of names to values, got {_shown(value)}")
    return value


def _known_keys(table: Mapping[str, Any], known: set[str], prefix: str) -> None:
    for key in table:
        if key in _UNSUPPORTED:
            raise _BadKey(f"{prefix}{key}: an exporter-toolkit key observer does not support")
        if key not in known:
            raise _BadKey(f"{prefix}{key}: unknown key (known: {', '.join(sorted(known))})")


def _server_context(directory: Path, table: Mapping[str, Any]) -> ssl.SSLContext:
    """An SSL server context as ``tls_server_config`` asks for it."""
    _known_keys(table, _TLS_KEYS, prefix="tls_server_config.")
    files = {key: _file(directory, table, key) for key in ("cert_file", "key_file")}
    for key, name in files.items():
        if name is None:
            raise _BadKey(
                f"tls_server_config.{key}: missing (both cert_file and key_file are needed)"
            )
    client_ca = _file(directory, table, "client_ca_file")
    auth_type = _choice(table, "client_auth_type", CLIENT_AUTH, "NoClientCert")
    if client_ca is not None and auth_type == "NoClientCert":
        raise _BadKey(
            "tls_server_config.client_ca_file: given without a client_auth_type that checks "
            "client certificates (RequireAndVerifyClientCert or VerifyClientCertIfGiven)"
        )
    if client_ca is None and auth_type != "NoClientCert":
        raise _BadKey(f"tls_server_config.client_auth_type: {auth_type} needs a client_ca_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[_choice(table, "min_version", TLS_VERSIONS, "TLS12")]
    context.maximum_version = TLS_VERSIONS[_choice(table, "max_version", TLS_VERSIONS, "TLS13")]
    try:
        context.load_cert_chain(str(files["cert_file"]), str(files["key_file"]))
    except (OSError, ssl.SSLError) as e:
        raise _BadKey(
            f"tls_server_config.cert_file/key_file: cannot use {str(files['cert_file'])!r} with "
            f"{str(files['key_file'])!r}: {_reason(e)}"
        ) from e
    context.verify_mode = CLIENT_AUTH[auth_type]
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except (OSError, ssl.SSLError) as e:
            raise _BadKey(
                f"tls_server_config.client_ca_file: {str(client_ca)!r}: {_reason(e)}"
            ) from e
    return context


def _file(directory: Path, table: Mapping[str, Any], key: str) -> Path | None:
    value = table.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _BadKey(f"tls_server_config.{key}: expected a file name, got {_shown(value)}")
    return directory / value  # an absolute name stays itself


def _choice(table: Mapping[str, Any], key: str, allowed: Mapping[str, object], default: str) -> str:
    value = table.get(key, default)
    if value not in allowed:
        raise _BadKey(
            f"tls_server_config.{key}: {_shown(value)} is not one of {', '.join(allowed)}"
        )
    return str(value)


def _basic_auth(table: Mapping[str, Any]) -> BasicAuth:
    try:
        import bcrypt  # noqa: PLC0415 (only a file with users needs it)
    except ImportError as e:
        raise _BadKey(
            "basic_auth_users: needs the Python module bcrypt (apt-get install python3-bcrypt)"
        ) from e
    users = {}
    for user, hashed in table.items():
        if ":" in user or not user:
            raise _BadKey(f"basic_auth_users.{user}: a user name is not empty and has no ':'")
        if not isinstance(hashed, str) or not _BCRYPT_HASH.fullmatch(hashed):
            raise _BadKey(
                f"basic_auth_users.{user}: expected a bcrypt hash ($2y$10$..., as "
                "`htpasswd -nBC 10 USER` makes it), got {_shown(hashed)}"
            )
        users[user] = hashed.encode()
    cost = max((int(h[4:6]) for h in users.values()), default=10)
    unknown = bcrypt.hashpw(b"no such user", bcrypt.gensalt(rounds=cost))
    return BasicAuth(users=users, checkpw=bcrypt.checkpw, unknown_user_hash=unknown)


def _reason(error: OSError | ssl.SSLError) -> str:
    return str(getattr(error, "reason", None) or error.strerror or error)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
