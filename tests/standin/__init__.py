"""A DynamoDB Streams stand-in reachable by worker processes (see tests.standin.server).

with StandInProcess(moto_url, logfile) as s:
    s.register(table)            # after create_table, before the workers start
    env["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"] = s.url
    s.split(table)               # every open shard of the table
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StandInProcess:
    """The stand-in server as a subprocess, plus a client for its control endpoint."""

    def __init__(self, moto_url: str, logfile: Path) -> None:
        self.moto_url, self.logfile = moto_url, logfile
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.standin.server",
                    f"--port={self.port}",
                    f"--moto={self.moto_url}",
                ],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.stats()
                return self
            except (OSError, urllib.error.URLError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"stand-in did not start:\n{self.logfile.read_text()}")
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def call(self, op: str, **args: Any) -> Any:
        req = urllib.request.Request(
            f"{self.url}/_control",
            data=json.dumps({"op": op, **args}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"stand-in {op}: {exc.read().decode()}") from None

    def register(self, table: str) -> str:
        return str(self.call("register", table=table)["arn"])

    def split(self, table: str, shard: str | None = None) -> list[str]:
        return list(self.call("split", table=table, shard=shard)["new"])

    def rollover(self, table: str, shard: str | None = None) -> list[str]:
        return list(self.call("rollover", table=table, shard=shard)["new"])

    def trim(self, table: str, before: float | None = None) -> dict[str, Any]:
        return dict(self.call("trim", table=table, before=before))

    def expire(self) -> None:
        self.call("expire")

    def inject(self, method: str, code: str, times: int = 1, status: int | None = None) -> None:
        self.call("inject", method=method, code=code, times=times, status=status)

    def delay(self, method: str, seconds: float, times: int = 1) -> None:
        self.call("delay", method=method, seconds=seconds, times=times)

    def clear(self) -> None:
        self.call("clear")

    def config(self, iterator_ttl: float) -> None:
        self.call("config", iterator_ttl=iterator_ttl)

    def retention(self, seconds: float | None) -> None:
        """Trim every stream's records older than ``seconds``, continuously."""
        self.call("retention", seconds=seconds)

    def drain(self, table: str) -> int:
        return int(self.call("drain", table=table)["tailed"])

    def stats(self, table: str | None = None) -> dict[str, Any]:
        return dict(self.call("stats", table=table))

    def shards(self, table: str) -> list[dict[str, Any]]:
        return list(self.stats(table)["tables"][table]["shards"])

    def open_shards(self, table: str) -> list[str]:
        return [s["id"] for s in self.shards(table) if s["open"]]
