"""Blocking calls to the outside: a notification through apprise, a heartbeat ping.

Both run on worker threads, never on the event loop. Neither raises: each returns the error
to record (with every secret-looking part of the URL hidden), or None when it worked.
apprise's own log records are kept out of observer's log (they can name a URL) and are
only used to explain a failure.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

from observer.alerts.message import Message
from observer.alerts.secrets import Channel, scrub
from observer.model import ConfigError
from observer.native import name_thread

T = TypeVar("T")
# Long explanations are cut: they are stored with every attempt.
ERROR_LIMIT = 500


class _ThreadCapture(logging.Handler):
    """apprise's warnings and errors, kept per thread while that thread sends."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._lines: dict[int, list[str]] = {}
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            lines = self._lines.get(record.thread or 0)
            if lines is not None:
                lines.append(record.getMessage())

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        ident = threading.get_ident()
        lines: list[str] = []
        with self._guard:
            self._lines[ident] = lines
        try:
            yield lines
        finally:
            with self._guard:
                del self._lines[ident]


_capture = _ThreadCapture()
_installed = False
_install_guard = threading.Lock()


def _apprise() -> Any:
    """apprise, imported on first use (it is slow to import), its log kept to ourselves."""
    global _installed
    with _install_guard:
        if not _installed:
            logger = logging.getLogger("apprise")
            logger.propagate = False
            logger.addHandler(_capture)
            # Loading its plugins imports modules that warn of their own deprecation.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import apprise  # noqa: PLC0415

                apprise.Apprise().add("json://localhost/")
            _installed = True
    import apprise  # noqa: PLC0415

    return apprise


def in_thread(fn: Callable[..., T], *args: object) -> Future[T]:
    """Run ``fn`` on a daemon thread of its own: a channel that hangs must not keep the
    process from exiting (a ThreadPoolExecutor's threads are waited for at exit)."""
    future: Future[T] = Future()

    def target() -> None:
        name_thread()
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as e:
            future.set_exception(e)

    threading.Thread(target=target, name="observer-send", daemon=True).start()
    return future


def check_url(url: str) -> bool:
    """Whether apprise understands ``url`` (its scheme and the parts that scheme needs)."""
    apprise = _apprise()
    return bool(apprise.Apprise().add(url))


# The child's program: URLs in on stdin (never in argv, which others can read), verdicts out.
_CHECK_IN_CHILD = (
    "import json, sys\n"
    "from observer.alerts.send import check_url\n"
    "print(json.dumps([check_url(url) for url in json.load(sys.stdin)]))\n"
)


def check_urls_in_child(urls: Sequence[str]) -> list[bool]:
    """``check_url`` of each URL, asked of a child process.

    Telling needs all of apprise's plugins loaded, some 20 MiB that the daemon would keep
    for good; it imports apprise only when it first sends.
    """
    if not urls:
        return []
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHECK_IN_CHILD], input=json.dumps(list(urls)),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        lines = done.stdout.strip().splitlines()
        verdicts = json.loads(lines[-1]) if done.returncode == 0 and lines else None
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        raise ConfigError(f"alerts: could not check the notification URLs: {e}") from e
    if not isinstance(verdicts, list) or len(verdicts) != len(urls):
        # Its last words, with any URL's secrets hidden (apprise may quote a URL).
        problem = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        for url in urls:
            problem = scrub(problem, url)
        raise ConfigError(f"alerts: could not check the notification URLs: {problem}")
    return [bool(v) for v in verdicts]


def notify(channel: Channel, message: Message) -> str | None:
    """Send ``message`` to one channel; the error, or None when it was delivered."""
    try:
        apprise = _apprise()
        # Sent on this thread (not apprise's shared pool): its time limit is ours to keep,
        # and its complaints land in this thread's capture.
        asset = apprise.AppriseAsset(async_mode=False, service_timeout=0)
        sender = apprise.Apprise(asset=asset)
        with _capture.capture() as complaints:
            if not sender.add(channel.url):
                return "apprise does not understand this URL"
            result = sender.notify(
                body=message.body, title=message.title, notify_type=message.notify_type
            )
        if result:
            return None
        if not complaints:
            logs = getattr(result, "logs", None)  # apprise >= 2 keeps the records with it
            if callable(logs):
                complaints = [str(getattr(entry, "message", entry)) for entry in logs()]
        error = "; ".join(complaints) or "apprise reported a failure and said nothing more"
    except Exception as e:  # a plugin's bug must not end the delivery worker
        error = f"{type(e).__name__}: {e}"
    return scrub(error, channel.url)[:ERROR_LIMIT]


def ping(url: str, timeout: float) -> str | None:
    """GET ``url`` (a healthchecks.io-style ping); the error, or None on a 2xx answer."""
    request = urllib.request.Request(url, headers={"User-Agent": "observer-heartbeat"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(4096)
            if not 200 <= response.status < 300:
                return f"HTTP {response.status}"
            return None
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code} {e.reason}"
    except urllib.error.URLError as e:
        return scrub(str(e.reason), url)[:ERROR_LIMIT]
    except (OSError, ValueError) as e:
        return scrub(f"{type(e).__name__}: {e}", url)[:ERROR_LIMIT]
