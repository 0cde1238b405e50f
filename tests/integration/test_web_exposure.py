"""Issue 11 item 1: a worker started as the README says serves only what the README
says, and only on loopback.  Before: Faust bound 0.0.0.0 whatever --web-host said
(web_host is only advertised) and served its /router and /table endpoints, the latter
returning scan cursors (item primary keys) for any unit id /status.json names."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from tests.integration.dynamo import worker_env
from tests.integration.helpers import Worker, wait_until


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


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_worker_binds_loopback_and_serves_only_its_pages(stack: dict[str, str], uid: str,
                                                          workdir: Path) -> None:
    worker = Worker("app", worker_env(stack, uid), workdir, "w").start()
    try:
        port = worker.web_port
        wait_until(lambda: _get(port, "/status.json")[0] == 200 if _listening(port) else False,
                   60, "the status page")
        # 127.0.0.1 only (0100007F in /proc/net/tcp), never 0.0.0.0 or ::
        assert _listening(port) == {"0100007F"}, _listening(port)
        status, body = _get(port, "/status.json")
        assert status == 200 and json.loads(body)["app_id"] == f"it-{uid}"
        assert _get(port, "/status")[0] == 200
        assert _get(port, "/metrics")[0] == 200
        # Faust's own endpoints are off: no table rows (scan cursors), no routing info
        for path in ("/table/units/", "/table/tables/", "/router/", "/graph/", "/stats/"):
            assert _get(port, path)[0] == 404, path
    finally:
        worker.kill()
