"""Issue 13: a snapshot several stream retentions long loses nothing.

The streams stand-in keeps records for a few seconds only (its `retention`), the scan is
paced to last several retentions, items are written, updated and deleted all along, two
workers share the table and one is SIGKILLed while the buffer is replayed.  Then: every
write is in the output topic (0 lost), per key in stream order, one snapshot and no
re-snapshot, the last record of every key is its final state, and the buffer topic is
gone.  `make test` runs it short; `make chaos` runs it several times longer."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.dynamo import (
    Ledger,
    batch_put,
    check_against_ledger,
    client,
    create_table,
    decode,
    order_violations,
    snapshot_keys,
    worker_env,
)
from tests.integration.helpers import TopicReader, Worker, bootstrap, wait_until
from tests.integration.test_replication import _mutate
from tests.standin import StandInProcess

pytestmark = pytest.mark.integration

PAGE_ITEMS = 4  # items per Scan page
SCAN_RCU = 0.5  # for the table (moto charges each page): 2 items/s, as measured
ITEMS_PER_SECOND = 2.0


class Writer(threading.Thread):
    """Puts, updates and deletes over the seeded keys and some new ones, into a ledger."""

    def __init__(self, env: dict[str, str], table: str, keys: int, seeded: int) -> None:
        super().__init__(daemon=True)
        self.ddb, self.table, self.keys = client(env), table, keys
        self.ledger = Ledger()
        self.exists = {f'{{"pk":"k{i:04d}"}}'.encode() for i in range(seeded)}
        self.stop = threading.Event()
        self.rng = random.Random(13)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                pk = f"k{self.rng.randrange(self.keys):04d}"
                key = f'{{"pk":"{pk}"}}'.encode()
                _mutate(
                    self.ddb, self.table, {"pk": {"S": pk}}, key, self.ledger, self.rng, self.exists
                )
                self.stop.wait(0.05)
        except BaseException as exc:  # noqa: BLE001 (surfaced by the test)
            self.error = exc


def _metric(worker: Worker, name: str, table: str) -> float:
    url = f"http://127.0.0.1:{worker.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and f'table="{table}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _buffered_records(env: dict[str, str], topic: str) -> int:
    """Records still readable in the buffer topic (all partitions)."""
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(env))
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(env), group_id=None)
        await admin.start()
        await consumer.start()
        try:
            (described,) = await admin.describe_topics([topic])
            tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
            first, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
            return sum(end[tp] - first[tp] for tp in tps)
        finally:
            await consumer.stop()
            await admin.close()

    return asyncio.run(run())


def final_states(records: list[Any]) -> dict[bytes, bool]:
    """Per key, whether its last record (in its partition's order) says the item exists."""
    last: dict[bytes, bool] = {}
    for r in records:
        last[r.key] = r.value is not None and decode(r.value)["op"] != "d"
    return last


def run_long_snapshot(
    stack: dict[str, str], uid: str, workdir: Path, retention: float, retentions: float
) -> dict[str, Any]:
    """A snapshot `retentions` stream retentions long; returns the figures."""
    scan_seconds = retention * retentions
    seeded = int(scan_seconds * ITEMS_PER_SECOND)
    table = f"buf-{uid}"
    ddb = client(stack)
    with StandInProcess(stack["AWS_ENDPOINT_URL"], workdir / "standin.log") as standin:
        create_table(ddb, table, [("pk", "S")], {f"itest-{uid}": "1"})
        standin.register(table)
        batch_put(ddb, table, [{"pk": {"S": f"k{i:04d}"}, "v": {"N": "0"}} for i in range(seeded)])
        standin.retention(retention)
        env = worker_env(
            stack,
            uid,
            AWS_ENDPOINT_URL_DYNAMODB_STREAMS=standin.url,
            DYNAMODB_SCAN_PAGE_LIMIT=str(PAGE_ITEMS),
            DYNAMODB_SCAN_SEGMENTS="2",
            DYNAMODB_SCAN_MAX_RCU=str(SCAN_RCU),
            # what the coordinator assumes of the stream: a position older than this
            # would mean a re-snapshot (the stand-in trims at `retention`)
            DYNAMODB_STREAM_RETENTION=str(int(retention)),
            KAFKA_SESSION_TIMEOUT="8",
        )
        workers = [Worker("app", env, workdir, f"b{i}").start() for i in range(2)]
        writer = Writer(stack, table, keys=seeded + 40, seeded=seeded)
        reader = TopicReader(stack, f"it-{uid}-{table}")
        t0 = time.monotonic()
        try:
            Worker.wait_any_log(workers, rf"{table}: reading shard .* into the snapshot's", 120)
            writer.start()
            Worker.wait_any_log(workers, rf"{table}: snapshot done", scan_seconds * 4 + 120)
            scanned = time.monotonic() - t0
            # kill the worker that replays (or one of them) in the middle of the replay
            Worker.wait_any_log(workers, rf"{table}: replaying", 120)
            victim = next(w for w in workers if "replaying" in w.log())
            victim.kill()
            victim.start()
            t_kill = time.monotonic()
            Worker.wait_any_log(workers, rf"{table}: buffer replayed; STREAMING", 300)
            switched = time.monotonic()
            written = writer.ledger.total  # a few writes straight into the output topic
            wait_until(lambda: writer.ledger.total >= written + 20, 60, "20 writes after")
            writer.stop.set()
            writer.join(30)
            assert writer.error is None, writer.error
            reader.read_until(
                lambda rs: check_against_ledger(rs, writer.ledger)["lost"] == 0,
                180,
                "every write",
            )
            result = check_against_ledger(reader.records, writer.ledger)
            snaps = snapshot_keys(reader.records)
            finals = final_states(reader.records)
            wrong = sorted(k for k in writer.exists ^ {k for k, e in finals.items() if e})
            buffer_topic = f"it-{uid}-app-buffer-{table}-1"
            wait_until(
                lambda: _buffered_records(stack, buffer_topic) == 0, 60, "the buffer emptied"
            )
            resnapshots = sum(
                _metric(w, "dynamodb_replicator_resnapshots_total", table) for w in workers
            )
            log = "".join(w.log() for w in workers)
            figures = {
                "retention_s": retention,
                "scan_s": round(scanned, 1),
                "scan_over_retention": round(scanned / retention, 1),
                "items": seeded,
                "writes": writer.ledger.total,
                "trimmed_by_retention": standin.stats()["retention_trims"],
                "switch_s": round(switched - t_kill, 1),
                "lost": result["lost"],
                "duplicates": result["duplicates"],
                "order_violations": order_violations(reader.records),
                "snapshots": len(snaps),
                "wrong_final_states": len(wrong),
                "resnapshots": resnapshots + log.count("re-snapshot:"),
            }
            print("\nSNAPSHOT-BUFFER " + json.dumps(figures))
            tails = "\n".join(f"--- {w.name}:\n{w.log()[-3000:]}" for w in workers)
            assert figures["scan_over_retention"] >= retentions * 0.8, figures
            assert figures["trimmed_by_retention"] > 0, figures  # the retention did trim
            assert result["lost"] == 0, f"{figures}\n{tails}"
            assert figures["order_violations"] == 0, figures
            assert figures["snapshots"] == 1 and figures["resnapshots"] == 0, f"{figures}\n{tails}"
            assert wrong == [], (figures, wrong[:5])
            return figures
        finally:
            writer.stop.set()
            reader.close()
            for w in workers:
                w.kill()


def test_a_snapshot_longer_than_the_stream_retention_loses_nothing(
    stack: dict[str, str], uid: str, workdir: Path
) -> None:
    run_long_snapshot(stack, uid, workdir, retention=30.0, retentions=2.5)
