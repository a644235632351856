"""Notification URLs hold tokens: where they are read from, and how they are shown.

URLs come from the config file, from a systemd credential (``LoadCredential=``, a file in
``$CREDENTIALS_DIRECTORY``) or from a file only its owner may read. Whatever shows a
channel (the log, `observer alerts`, the store) shows ``redact(url)``: the scheme, and the
host only when it looks like a host name (in ``tgram://TOKEN/CHAT`` the "host" is a token).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from observer.alert_config import ChannelSources
from observer.model import ConfigError

_HOST = re.compile(
    r"(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# Parts of a URL shorter than this are not worth hiding (and would blank out common words).
_SECRET_MIN = 4


@dataclass(frozen=True, slots=True)
class Channel:
    """One notification URL, with the name people see and a key that finds it again."""

    url: str = field(repr=False)
    name: str  # redacted: safe to log, store and print
    key: str  # a digest of the URL: deliveries name their channel by it across restarts

    @classmethod
    def of(cls, url: str) -> Channel:
        return cls(url, redact(url), hashlib.sha256(url.encode()).hexdigest()[:16])


def redact(url: str) -> str:
    """``json://127.0.0.1:8000/hook?token=x`` -> ``json://127.0.0.1:8000/…``; ``tgram://…``."""
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return "…"
    netloc, _, tail = rest.partition("/")
    netloc, qmark, query = netloc.partition("?")
    _, at, host = netloc.rpartition("@")
    if _HOST.fullmatch(host):
        hidden = bool(at or tail.strip("/") or qmark or query)
        return f"{scheme.lower()}://{host}{'/…' if hidden else ''}"
    return f"{scheme.lower()}://…"


def scrub(text: str, url: str) -> str:
    """``text`` (an error message, say) with every secret-looking part of ``url`` hidden."""
    shown = redact(url)
    parts = urlsplit(url) if "://" in url else None
    secrets = {url}
    if parts is not None:
        netloc = parts.netloc
        userinfo, _, host = netloc.rpartition("@")
        secrets.update(userinfo.split(":"))
        if host not in shown:
            secrets.update((host, *host.split(":")))
        secrets.update(unquote(p) for p in parts.path.split("/"))
        secrets.update(p for p in parts.path.split("/"))
        secrets.update(value for _, value in parse_qsl(parts.query, keep_blank_values=True))
        secrets.add(parts.fragment)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _SECRET_MIN:
            text = text.replace(secret, "…")
    return text


def read_urls(sources: ChannelSources, where: str = "alerts") -> list[str]:
    """Every URL of ``sources``: the config's own, the credential's, the file's."""
    urls = list(sources.urls)
    if sources.credential:
        urls += _credential_urls(sources.credential, f"{where}.urls_credential")
    if sources.file:
        urls += _file_urls(Path(sources.file), f"{where}.urls_file")
    return urls


def read_channels(sources: ChannelSources, where: str = "alerts") -> list[Channel]:
    """The channels of ``sources``, each URL once, in order."""
    seen: dict[str, Channel] = {}
    for url in read_urls(sources, where):
        seen.setdefault(url, Channel.of(url))
    return list(seen.values())


def credential_path(name: str) -> Path:
    """Where systemd put the credential ``name`` for this process (``LoadCredential=``)."""
    if not name or "/" in name or name in (".", ".."):
        raise ConfigError(f"credential name {name!r}: expected a plain name like 'observer-alerts'")
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ConfigError(
            f"credential {name!r}: $CREDENTIALS_DIRECTORY is not set: run observer from a "
            f"unit with LoadCredential={name}:/path/to/file (see docs/alerts.md)"
        )
    return Path(directory) / name


def _credential_urls(name: str, key: str) -> list[str]:
    path = credential_path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ConfigError(f"{key} = {name!r}: cannot read {str(path)!r}: {why}") from None
    return _urls_in(text, key, str(path))


def _file_urls(path: Path, key: str) -> list[str]:
    try:
        with path.open("rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError(f"{key} = {str(path)!r}: not a regular file")
            if info.st_mode & 0o077:
                raise ConfigError(
                    f"{key} = {str(path)!r}: the file holds secrets but others may read it "
                    f"(mode {stat.S_IMODE(info.st_mode):04o}): run chmod 600 {path}"
                )
            data = f.read()
    except OSError as e:
        raise ConfigError(f"{key} = {str(path)!r}: cannot read it: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{key} = {str(path)!r}: not UTF-8 text") from None
    return _urls_in(text, key, str(path))


def _urls_in(text: str, key: str, origin: str) -> list[str]:
    """One URL a line; blank lines and ``#`` comments are skipped."""
    urls = [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]
    if not urls:
        raise ConfigError(f"{key}: {origin!r} holds no notification URL (one a line)")
    return urls
