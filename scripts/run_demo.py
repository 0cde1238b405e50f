#!/usr/bin/env python3
"""`make run`: the product on the local stack, end to end.

Brings up Kafka + moto (if not already up), creates a tagged demo table with items,
keeps writing changes to it, starts one worker (`faust -A app worker`) and tails the
output topic.  Ctrl-C stops everything this script started."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import demo_writer
import stack

TABLE = demo_writer.TABLE
PREFIX = os.environ.get("KAFKA_TOPIC_PREFIX", "dynamodb-")
ENDPOINT = f"http://127.0.0.1:{stack.MOTO_PORT}"
ENV = {
    "AWS_ACCESS_KEY_ID": "demo",
    "AWS_SECRET_ACCESS_KEY": "demo",
    "AWS_REGION": "us-east-1",
    "AWS_ENDPOINT_URL": ENDPOINT,
    "BROKER_URL": f"kafka://127.0.0.1:{stack.KAFKA_PORT}",
    "DYNAMODB_DISCOVERY_INTERVAL": "5",
    "DYNAMODB_SHARD_REFRESH_INTERVAL": "5",
}


async def tail(stop: threading.Event) -> None:
    topic = PREFIX + TABLE
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=f"127.0.0.1:{stack.KAFKA_PORT}",
        auto_offset_reset="earliest",
        group_id=None,
        metadata_max_age_ms=2000,
    )
    await consumer.start()
    print(f"[demo] tailing {topic} (Ctrl-C to stop)", flush=True)
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    value = r.value.decode() if r.value is not None else "<tombstone>"
                    print(f"{r.partition}:{r.offset} {r.key.decode()} {value[:160]}", flush=True)
    finally:
        await consumer.stop()


def main() -> int:
    started = [
        n for n, ready in (("moto", stack.moto_ready), ("kafka", stack.kafka_ready)) if not ready()
    ]
    stack.main(["stack", "up"])
    ddb = demo_writer.client(ENDPOINT)
    demo_writer.ensure_table(ddb)
    stop = threading.Event()
    threading.Thread(target=demo_writer.write_forever, args=(ddb, stop), daemon=True).start()
    datadir = stack.STACK_DIR / "demo-worker"
    if "kafka" in started:  # a new, empty cluster: local RocksDB state of an old one is void
        shutil.rmtree(datadir, ignore_errors=True)
    worker_log = open(stack.STACK_DIR / "demo-worker.log", "ab")  # noqa: SIM115 (the worker's)
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("faust")),
            "-A",
            "app",
            f"--datadir={datadir}",
            "worker",
            "-l",
            "info",
            "--web-port=6066",
        ],
        cwd=ROOT,
        env={**os.environ, **ENV},
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    print(
        f"[demo] worker pid {worker.pid}, log {stack.STACK_DIR / 'demo-worker.log'}; "
        "status page http://127.0.0.1:6066/status, metrics http://127.0.0.1:6066/metrics",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        asyncio.run(tail(stop))
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        print("\n[demo] stopping worker...", flush=True)
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        if started:
            stack.main(["stack", "down", *started])
        print("[demo] stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
