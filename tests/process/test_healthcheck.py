"""The image's health check script, run as a process against a local status server (moved
from tests/unit/test_web.py: it spawns a Python process)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from tests.unit.test_web import TOKEN, _client


async def test_the_images_health_check_asks_healthz_without_a_token() -> None:
    """scripts/healthcheck.py (the Dockerfile's HEALTHCHECK): 0 while /healthz answers,
    also when every other page wants WEB_AUTH_TOKEN; 1 when nothing answers."""
    script = Path(__file__).parents[2] / "scripts" / "healthcheck.py"
    client = await _client(TOKEN)
    try:
        port = client.server.port
        ok = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(script), str(port)],
            capture_output=True,
            timeout=30,
        )
        assert ok.returncode == 0, ok.stderr
    finally:
        await client.close()
    down = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(script), str(port)], capture_output=True, timeout=30
    )
    assert down.returncode == 1 and b"unhealthy" in down.stderr
