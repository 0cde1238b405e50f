"""Issue 11 item 1: who may read the status pages (app/web.py)."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.domain.errors import ConfigError
from app.settings import Settings
from app.web import auth_middleware, authorized, exposure_warning, ssl_context

TOKEN = "s3cret-token-0123456789"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "header, ok",
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer  {TOKEN} ", True),
        (basic("replicator", TOKEN), True),
        (None, False),
        ("", False),
        ("Bearer", False),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        (f"Token {TOKEN}", False),
        (basic("someone", TOKEN), False),
        (basic("replicator", "wrong"), False),
        ("Basic " + base64.b64encode(b"replicator").decode(), False),  # no ':'
        ("Basic not*base64", False),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), False),
    ],
)
def test_a_request_is_authorized_only_with_the_token(header: str | None, ok: bool) -> None:
    assert authorized(header, "replicator", TOKEN) is ok


async def _client(token: str | None) -> TestClient:
    middlewares = [auth_middleware("replicator", token)] if token else []
    server = web.Application(middlewares=middlewares)

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"tables": []})

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    server.router.add_get("/status.json", status)
    server.router.add_get("/healthz", health)
    client = TestClient(TestServer(server))
    await client.start_server()
    return client


async def test_without_the_token_every_page_but_healthz_is_refused_with_a_challenge() -> None:
    client = await _client(TOKEN)
    try:
        refused = await client.get("/status.json")
        assert refused.status == 401
        assert refused.headers["WWW-Authenticate"].startswith('Basic realm="dynamodb-replicator"')
        assert "tables" not in await refused.text()
        wrong = await client.get("/status.json", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
        ok = await client.get("/status.json", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status == 200 and await ok.json() == {"tables": []}
        browser = await client.get(
            "/status.json", headers={"Authorization": basic("replicator", TOKEN)}
        )
        assert browser.status == 200
        health = await client.get("/healthz")
        assert health.status == 200 and await health.text() == "ok\n"
    finally:
        await client.close()


def test_token_and_user_settings_are_bounded_and_the_token_never_shown() -> None:
    s = Settings.from_env({"WEB_AUTH_TOKEN": TOKEN})
    assert s.web_auth_token == TOKEN and s.web_auth_user == "replicator"
    assert TOKEN not in repr(s) and s.masked()["web_auth_token"] == "***"
    for bad in ("short", "has a space inside it", "x" * 257, "tab\there-0123456789"):
        with pytest.raises(ConfigError, match="WEB_AUTH_TOKEN") as err:
            Settings.from_env({"WEB_AUTH_TOKEN": bad})
        assert bad not in str(err.value)
    with pytest.raises(ConfigError, match="WEB_AUTH_USER"):
        Settings.from_env({"WEB_AUTH_USER": "a:b"})


def test_a_worker_on_another_interface_without_token_or_tls_is_warned_about() -> None:
    assert exposure_warning("127.0.0.1", None, tls=False) is None
    assert exposure_warning("::1", None, tls=False) is None
    assert exposure_warning("localhost", None, tls=False) is None
    assert "WITHOUT authentication" in (exposure_warning("0.0.0.0", None, tls=False) or "")
    assert "in clear" in (exposure_warning("0.0.0.0", TOKEN, tls=False) or "")
    assert exposure_warning("0.0.0.0", TOKEN, tls=True) is None
    assert exposure_warning("myhost.example", None, tls=True) is not None


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_files_load_or_stop_the_worker_naming_the_setting(tmp_path: Path) -> None:
    assert ssl_context(None, None) is None
    cert, key = _self_signed(tmp_path)
    assert ssl_context(str(cert), str(key)) is not None
    with pytest.raises(ConfigError, match="WEB_TLS_KEY.*unset"):
        ssl_context(str(cert), None)
    with pytest.raises(ConfigError, match="WEB_TLS_CERT.*unset"):
        ssl_context(None, str(key))
    with pytest.raises(ConfigError, match="WEB_TLS_KEY.*does not exist"):
        ssl_context(str(cert), str(tmp_path / "missing.pem"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n")
    with pytest.raises(ConfigError, match="WEB_TLS_CERT.*do not load") as err:
        ssl_context(str(cert), str(garbage))
    assert "not a key" not in str(err.value)
