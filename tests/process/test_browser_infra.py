"""The browser-test infrastructure works end to end: a page served locally whose JS fetches a
JSON endpoint and renders a table, opened in headless Chromium (tests/browser.py), waited on
without sleeps, and screenshotted to a real PNG."""

from __future__ import annotations

import json
import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.selenium_manager import SeleniumManager

from tests.browser import WINDOW, chromium, screenshot, wait_for

ROWS = [
    {"table": "orders", "events": 1200, "lag_ms": 35},
    {"table": "customers", "events": 87, "lag_ms": 12},
    {"table": "inventory", "events": 4031, "lag_ms": 250},
]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>replicator status</title><link rel="icon" href="data:,">
<style>body{font-family:sans-serif;margin:2em} td,th{border:1px solid #888;padding:4px 12px}
th{background:#dde}</style></head>
<body><h1>Tables</h1><p id="state">loading…</p>
<table id="t"><thead><tr><th>table</th><th>events</th><th>lag (ms)</th></tr></thead>
<tbody></tbody></table>
<script>
// a short delay first, so the test's wait really has something to wait for
setTimeout(() => fetch("/api/tables").then(r => r.json()).then(rows => {
  const body = document.querySelector("#t tbody");
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.className = "row";
    for (const v of [r.table, r.events, r.lag_ms]) {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  document.getElementById("state").textContent = rows.length + " tables";
}).catch(e => { document.getElementById("state").textContent = "error: " + e; }), 300);
</script></body></html>
"""


@pytest.fixture
def site() -> Iterator[tuple[str, list[str]]]:
    """Serve PAGE at / and ROWS at /api/tables on 127.0.0.1, a free port; yield (url, hits)."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            if self.path == "/":
                body, ctype = PAGE.encode(), "text/html; charset=utf-8"
            elif self.path == "/api/tables":
                body, ctype = json.dumps(ROWS).encode(), "application/json"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and decompressed scanlines of a PNG; asserts its structure."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + chunk) == crc, kind
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
        if kind == b"IEND":
            break
    assert header is not None and pos == len(data)
    width, height, depth, color = header[:4]
    channels = {2: 3, 6: 4}[color]
    raw = zlib.decompress(idat)
    assert depth == 8 and len(raw) == height * (1 + width * channels)
    return width, height, raw


def test_headless_chromium_renders_fetched_table(
    tmp_path: Path, site: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_selenium_manager(*_: object) -> dict:
        raise AssertionError("Selenium Manager must not run: drivers come from apt")

    monkeypatch.setattr(SeleniumManager, "binary_paths", no_selenium_manager)
    url, hits = site

    with chromium(tmp_path) as driver:
        driver.get(url)
        rows = wait_for(driver, "#t tbody tr.row", timeout=15)
        assert len(rows) == len(ROWS)
        cells = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]
        assert cells == [[r["table"], str(r["events"]), str(r["lag_ms"])] for r in ROWS]
        assert driver.find_element(By.ID, "state").text == "3 tables"
        assert driver.execute_script("return navigator.webdriver") is True
        # --headless=new keeps room for browser chrome: the window is 1400x900, the page less tall
        viewport = driver.execute_script("return [window.innerWidth, window.innerHeight]")
        assert viewport[0] == WINDOW[0] and 600 < viewport[1] <= WINDOW[1]
        png = screenshot(driver, tmp_path / "shots" / "table.png")

    assert hits == ["/", "/api/tables"]
    data = png.read_bytes()
    assert len(data) > 5_000
    width, height, raw = _png_pixels(data)
    assert [width, height] == viewport
    assert len(set(raw)) > 16  # text and borders, not a blank page
