"""Issue 11 item 1: a worker started as the README says serves only what the README
says, and only on loopback.  Before: Faust bound 0.0.0.0 whatever --web-host said
(web_host is only advertised) and served its /router and /table endpoints, the latter
returning scan cursors (item primary keys) for any unit id /status.json names."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from tests.integration.dynamo import worker_env
from tests.integration.helpers import Worker, wait_until
from tests.unit.test_web import _self_signed

TOKEN = "it-token-" + "0123456789abcdef"
PAGES = ("/status", "/status.json", "/metrics")


def _listening(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on `port` (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.rsplit(":", 1)
            if state == "0A" and int(hexport, 16) == port:  # 0A = LISTEN
                found.add(addr)
    return found


def _get(
    port: int, path: str, token: str | None = None, tls: ssl.SSLContext | None = None
) -> tuple[int, bytes]:
    scheme = "https" if tls else "http"
    request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10, context=tls) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_worker_binds_loopback_and_serves_only_its_pages(
    stack: dict[str, str], uid: str, workdir: Path
) -> None:
    worker = Worker("app", worker_env(stack, uid), workdir, "w").start()
    try:
        port = worker.web_port
        wait_until(
            lambda: _get(port, "/status.json")[0] == 200 if _listening(port) else False,
            60,
            "the status page",
        )
        # 127.0.0.1 only (0100007F in /proc/net/tcp), never 0.0.0.0 or ::
        assert _listening(port) == {"0100007F"}, _listening(port)
        status, body = _get(port, "/status.json")
        assert status == 200 and json.loads(body)["app_id"] == f"it-{uid}-app"
        assert _get(port, "/status")[0] == 200
        assert _get(port, "/metrics")[0] == 200
        # Faust's own endpoints are off: no table rows (scan cursors), no routing info
        for path in ("/table/units/", "/table/tables/", "/router/", "/graph/", "/stats/"):
            assert _get(port, path)[0] == 404, path
    finally:
        worker.kill()


def test_with_a_token_and_tls_an_unauthenticated_peer_gets_only_healthz(
    stack: dict[str, str], uid: str, workdir: Path
) -> None:
    cert, key = _self_signed(workdir)
    tls = ssl.create_default_context(cafile=str(cert))
    tls.check_hostname = False  # the certificate names localhost, the request 127.0.0.1
    secured = Worker(
        "app",
        worker_env(stack, uid, WEB_AUTH_TOKEN=TOKEN, WEB_TLS_CERT=str(cert), WEB_TLS_KEY=str(key)),
        workdir,
        "tls",
    ).start()
    # all interfaces with a token but no TLS: served, and the log says the token is in clear
    open_bind = Worker(
        "app",
        worker_env(stack, uid, WEB_AUTH_TOKEN=TOKEN),
        workdir,
        "open",
        args=("--web-bind=0.0.0.0",),
    ).start()
    try:
        wait_until(
            lambda: (
                _listening(secured.web_port)
                and _get(secured.web_port, "/healthz", tls=tls)[0] == 200
            ),
            60,
            "the TLS worker's /healthz",
        )
        wait_until(
            lambda: (
                _listening(open_bind.web_port) and _get(open_bind.web_port, "/healthz")[0] == 200
            ),
            60,
            "the other worker's /healthz",
        )
        assert _listening(open_bind.web_port) == {"00000000"}, _listening(open_bind.web_port)
        open_bind.wait_log(r"WEB_AUTH_TOKEN crosses the network in clear")
        assert "WITHOUT authentication" not in secured.log() + open_bind.log()
        for port, context in ((secured.web_port, tls), (open_bind.web_port, None)):
            status, body = _get(port, "/healthz", tls=context)
            assert (status, body) == (200, b"ok\n")
            for path in PAGES:
                status, body = _get(port, path, tls=context)
                assert status == 401 and uid not in body.decode(), (port, path, body)
                assert _get(port, path, token="wrong-token-0123456789", tls=context)[0] == 401
                assert _get(port, path, token=TOKEN, tls=context)[0] == 200, (port, path)
        status, body = _get(secured.web_port, "/status.json", token=TOKEN, tls=tls)
        assert json.loads(body)["app_id"] == f"it-{uid}-app"
        # the TLS worker speaks no plain HTTP
        try:
            plain = _get(secured.web_port, "/healthz")[0]
        except (urllib.error.URLError, ConnectionError) as exc:
            plain = type(exc).__name__
        assert plain != 200
        assert TOKEN not in secured.log() + open_bind.log()
    finally:
        secured.kill()
        open_bind.kill()
