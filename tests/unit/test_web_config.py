"""The metrics listener's web configuration file: what it accepts, what it refuses (naming the
file and the key), and a real listener with TLS, client certificates and basic auth."""

from __future__ import annotations

import base64
import http.client
import ssl
import subprocess
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import bcrypt
import pytest

from observer.__main__ import main
from observer.metrics.http import MetricsServer
from observer.model import ConfigError
from observer.web_config import BasicAuth, load_web_config

SETUP = Path(__file__).resolve().parents[2] / "packaging" / "fleet" / "setup.sh"
PASSWORD = "correct horse"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and certificates for the listener and a scraper (setup.sh's, as the docs say)."""
    directory = tmp_path_factory.mktemp("ca")
    for args in (["ca", "."], ["cert", ".", "localhost", "127.0.0.1"], ["cert", ".", "scraper"]):
        subprocess.run(["bash", str(SETUP), *args], cwd=directory, check=True, capture_output=True)
    return directory


def web_yml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as raised:
        load_web_config(path)
    return str(raised.value)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- reading the file ----------------------------------------------------------------------


def test_an_empty_file_asks_for_nothing(tmp_path: Path) -> None:
    web = load_web_config(web_yml(tmp_path, ""))
    assert (web.tls, web.basic_auth) == (None, None)


def test_a_full_file_gives_tls_with_client_certificates_and_users(
    tmp_path: Path, certificates: Path
) -> None:
    path = web_yml(tmp_path, (
        "tls_server_config:\n"
        f"  cert_file: {certificates}/localhost/cert.pem\n"
        f"  key_file: {certificates}/localhost/key.pem\n"
        f"  client_ca_file: {certificates}/ca.pem\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        "  min_version: TLS13\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n"
    ))  # fmt: skip
    web = load_web_config(path)
    assert web.tls is not None
    assert web.tls.verify_mode == ssl.CERT_REQUIRED
    assert web.tls.minimum_version == ssl.TLSVersion.TLSv1_3
    assert web.basic_auth is not None
    assert web.basic_auth.allows(basic("prometheus", PASSWORD))


def test_file_names_are_read_beside_the_file(tmp_path: Path, certificates: Path) -> None:
    path = web_yml(certificates, "tls_server_config:\n  cert_file: localhost/cert.pem\n"
                   "  key_file: localhost/key.pem\n")  # fmt: skip
    web = load_web_config(path)
    assert web.tls is not None
    assert web.tls.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tls_server_config:\n  cert_fil: a\n", "tls_server_config.cert_fil: unknown key"),
        ("basic_auth_user:\n  a: b\n", "basic_auth_user: unknown key"),
        ("http_server_config:\n  http2: false\n", "http_server_config: an exporter-toolkit key"),
        ("tls_server_config:\n  cipher_suites: []\n", "tls_server_config.cipher_suites: an"),
        ("tls_server_config:\n  key_file: k\n", "tls_server_config.cert_file: missing"),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: Maybe\n",
         "tls_server_config.client_auth_type: 'Maybe' is not one of NoClientCert"),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n"
         "  client_auth_type: RequireAndVerifyClientCert\n",
         "tls_server_config.client_auth_type: RequireAndVerifyClientCert needs a client_ca_file"),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: ca\n",
         "tls_server_config.client_ca_file: given without a client_auth_type"),
        ("tls_server_config:\n  cert_file: /nonexistent.pem\n  key_file: /nonexistent.key\n",
         "tls_server_config.cert_file/key_file: cannot use '/nonexistent.pem'"),
        ("basic_auth_users:\n  prometheus: secret\n",
         "basic_auth_users.prometheus: expected a bcrypt hash"),
        ("basic_auth_users: [a, b]\n", "basic_auth_users: expected a mapping"),
        ("- a list\n", "the file: expected a mapping"),
    ],
)  # fmt: skip
def test_a_bad_file_is_refused_naming_the_file_and_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = web_yml(tmp_path, text)
    assert error_of(path).startswith(f"{path}: {message}")


def test_bad_yaml_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = web_yml(tmp_path, "basic_auth_users:\n  a: b\n c: [\n")
    assert error_of(path).startswith(f"{path}:3: not valid YAML")


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    assert error_of(tmp_path / "web.yml").startswith("cannot read the web configuration")


def test_check_config_reads_the_web_configuration_it_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    web = web_yml(tmp_path, "basic_auth_users:\n  prometheus: plain\n")
    config = tmp_path / "observer.toml"
    config.write_text(f'[metrics]\nweb_config = "{web}"\n')
    assert main(["check-config", "--config", str(config)]) == 1
    assert f"{web}: basic_auth_users.prometheus: expected a bcrypt hash" in capsys.readouterr().err
    web.write_text(f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    assert main(["check-config", "--config", str(config)]) == 0


# -- the basic auth check ------------------------------------------------------------------


def counting_auth() -> tuple[BasicAuth, list[bytes]]:
    checked: list[bytes] = []

    def checkpw(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return bcrypt.checkpw(password, hashed)

    unknown = bcrypt.hashpw(b"x", bcrypt.gensalt(rounds=4))
    return BasicAuth({"prometheus": HASH.encode()}, checkpw, unknown), checked


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer abc",
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no colon").decode(),
        basic("prometheus", "wrong"),
        basic("prometheus", PASSWORD + " "),
        basic("nobody", PASSWORD),
        basic("prometheus", "x" * 100),  # longer than bcrypt takes
    ],
)
def test_anything_but_the_user_and_their_password_is_refused(header: str | None) -> None:
    auth, _ = counting_auth()
    assert not auth.allows(header)


def test_an_unknown_user_costs_a_bcrypt_check_like_a_wrong_password() -> None:
    auth, checked = counting_auth()
    assert not auth.allows(basic("nobody", PASSWORD))
    assert not auth.allows(basic("prometheus", "wrong"))
    assert [h == auth.unknown_user_hash for h in checked] == [True, False]


def test_a_good_login_is_remembered_and_a_wrong_one_never_is() -> None:
    auth, checked = counting_auth()
    assert auth.allows(basic("prometheus", PASSWORD))
    assert auth.allows(basic("prometheus", PASSWORD))
    assert len(checked) == 1  # the second scrape did not pay bcrypt again
    assert not auth.allows(basic("prometheus", "wrong"))
    assert not auth.allows(basic("prometheus", "wrong"))
    assert len(checked) == 3


# -- a real listener -----------------------------------------------------------------------


class Page:
    status = 200
    headers = (("Content-Type", "text/html"),)
    body = b"<p>overview</p>"


class Overview:
    """The dashboard's pages, as the listener serves them beside /metrics."""

    def respond(self, target: str, headers: Mapping[str, str]) -> Page:
        return Page()


class Exporter:
    pages = Overview()

    def render(self, *, compressed: bool) -> bytes:
        return b"metrics 1\n"


@pytest.fixture
def listener(tmp_path: Path, certificates: Path) -> Iterator[tuple[str, int]]:
    path = web_yml(tmp_path, (
        "tls_server_config:\n"
        f"  cert_file: {certificates}/localhost/cert.pem\n"
        f"  key_file: {certificates}/localhost/key.pem\n"
        f"  client_ca_file: {certificates}/ca.pem\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n"
    ))  # fmt: skip
    server = MetricsServer(("127.0.0.1", 0), Exporter(), load_web_config(path))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def client_context(certificates: Path, own: str | None = "scraper") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
    if own is not None:
        context.load_cert_chain(certificates / own / "cert.pem", certificates / own / "key.pem")
    return context


def get(
    address: tuple[str, int],
    context: ssl.SSLContext,
    authorization: str | None,
    target: str = "/metrics",
) -> http.client.HTTPResponse:
    conn = http.client.HTTPSConnection(*address, context=context, timeout=30)
    try:
        conn.request("GET", target, headers={"Authorization": authorization or ""})
        response = conn.getresponse()
        response.body = response.read()  # type: ignore[attr-defined]
    finally:
        conn.close()
    return response


def plain_get(address: tuple[str, int]) -> int:
    """A GET of /metrics over plain HTTP: its status."""
    conn = http.client.HTTPConnection(*address, timeout=30)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().status
    finally:
        conn.close()


def test_the_listener_answers_a_scraper_with_its_certificate_and_password(
    listener: tuple[str, int], certificates: Path
) -> None:
    answer = get(listener, client_context(certificates), basic("prometheus", PASSWORD))
    assert (answer.status, answer.body) == (200, b"metrics 1\n")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("target", "content"), [("/metrics", b"metrics"), ("/", b"overview")])
def test_a_wrong_password_is_answered_401_with_a_basic_challenge(
    listener: tuple[str, int], certificates: Path, target: str, content: bytes
) -> None:
    for authorization in (None, basic("prometheus", "wrong")):
        answer = get(listener, client_context(certificates), authorization, target)
        assert answer.status == 401
        assert answer.getheader("WWW-Authenticate") == "Basic"
        assert content not in answer.body  # type: ignore[attr-defined]
    good = get(listener, client_context(certificates), basic("prometheus", PASSWORD), target)
    assert content in good.body  # type: ignore[attr-defined]


def test_a_client_without_a_certificate_of_the_ca_is_refused_in_the_handshake(
    listener: tuple[str, int], certificates: Path
) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        get(listener, client_context(certificates, own=None), basic("prometheus", PASSWORD))
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        plain_get(listener)
    # ...and the listener still serves the next one.
    answer = get(listener, client_context(certificates), basic("prometheus", PASSWORD))
    assert answer.status == 200
