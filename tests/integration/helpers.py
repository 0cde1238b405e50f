"""Helpers for integration tests: worker subprocesses, Kafka reads/writes, polling."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.structs import ConsumerRecord  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
FAUST = str(Path(sys.executable).with_name("faust"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bootstrap(env: dict[str, str]) -> str:
    return env["BROKER_URL"].removeprefix("kafka://")


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
) -> Any:
    """Poll a real condition until it holds; fail naming what we waited for."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Worker:
    """`faust -A <module> worker` as a subprocess with its own data dir and web port."""

    def __init__(
        self,
        module: str,
        env: dict[str, str],
        workdir: Path,
        name: str = "w",
        args: tuple[str, ...] = (),
    ) -> None:
        self.module, self.name, self.args = module, name, args
        # unbuffered: a SIGKILLed worker's log keeps everything it wrote
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.datadir = workdir / f"data-{name}"
        self.logfile = workdir / f"{name}.log"
        self.web_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, fresh_datadir: str | None = None) -> Worker:
        if fresh_datadir:
            self.datadir = self.datadir.with_name(fresh_datadir)
        argv = [
            FAUST,
            "-A",
            self.module,
            f"--datadir={self.datadir}",
            "worker",
            "-l",
            "info",
            f"--web-port={self.web_port}",
            "--web-host=127.0.0.1",
            *self.args,
        ]
        log = open(self.logfile, "ab")  # noqa: SIM115 (held by the worker process)
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def wait_log(self, pattern: str, timeout: float = 60.0, count: int = 1) -> None:
        rx = re.compile(pattern)

        def seen() -> bool:
            if not self.alive:
                raise AssertionError(
                    f"worker {self.name} exited "
                    f"({self.proc and self.proc.returncode}):\n{self.log()[-4000:]}"
                )
            return len(rx.findall(self.log())) >= count

        wait_until(seen, timeout, f"{pattern!r} in {self.name}'s log")

    @staticmethod
    def wait_any_log(workers: list[Worker], pattern: str, timeout: float = 60.0) -> None:
        """Until one of the workers logged the pattern (work may land on any of them)."""
        rx = re.compile(pattern)
        wait_until(
            lambda: any(rx.search(w.log()) for w in workers),
            timeout,
            f"{pattern!r} in any worker's log",
        )

    def stop(self, timeout: float = 30.0) -> float:
        """SIGTERM; returns seconds until exit (kills after timeout)."""
        if not self.alive:
            return 0.0
        assert self.proc is not None
        t0 = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        return time.monotonic() - t0

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def produce(env: dict[str, str], topic: str, items: Iterable[tuple[bytes, bytes]]) -> None:
    async def run() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap(env), acks="all")
        await p.start()
        try:
            for k, v in items:
                await p.send(topic, v, key=k)
            await p.flush()
        finally:
            await p.stop()

    asyncio.run(run())


class TopicReader:
    """Reads a topic from the beginning, accumulating records across calls."""

    def __init__(self, env: dict[str, str], topic: str) -> None:
        self.env, self.topic = env, topic
        self.records: list[ConsumerRecord] = []
        self._loop = asyncio.new_event_loop()
        self._consumer: AIOKafkaConsumer | None = None

    def _start(self) -> None:
        async def start() -> AIOKafkaConsumer:
            c = AIOKafkaConsumer(
                self.topic,
                bootstrap_servers=bootstrap(self.env),
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                group_id=None,
                metadata_max_age_ms=1000,
            )
            await c.start()
            return c

        self._consumer = self._loop.run_until_complete(start())

    def poll(self, timeout: float = 0.5) -> list[ConsumerRecord]:
        if self._consumer is None:
            self._start()
        assert self._consumer is not None
        batch = self._loop.run_until_complete(
            self._consumer.getmany(timeout_ms=int(timeout * 1000), max_records=50_000)
        )
        new = [r for recs in batch.values() for r in recs]
        self.records.extend(new)
        return new

    def read_until(
        self, predicate: Callable[[list[ConsumerRecord]], bool], timeout: float, what: str
    ) -> list[ConsumerRecord]:
        deadline = time.monotonic() + timeout
        while not predicate(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what} "
                    f"on {self.topic} ({len(self.records)} records read)"
                )
            self.poll()
        return self.records

    def close(self) -> None:
        if self._consumer is not None:
            self._loop.run_until_complete(self._consumer.stop())
        self._loop.close()
