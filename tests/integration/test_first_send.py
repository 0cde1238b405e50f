"""Many tables discovered at once by one worker on brand-new output topics: every table's
snapshot arrives (issue 10 item 9: the first send to a just-created topic met
NotLeaderForPartition and one table in four never got past its first page)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]

from tests.integration.dynamo import batch_put, client, create_table, worker_env
from tests.integration.helpers import Worker, bootstrap

TABLES = 10  # a 1-in-3 hang per table (4 tables: 4 runs in 5) escapes 10 tables ~2% of runs
ITEMS = 40


async def _distinct_keys(
    env: dict[str, str], topics: list[str], want: int, timeout: float
) -> dict[str, set[bytes]]:
    """Distinct keys per topic, read until every topic has `want` of them or the deadline
    passes (output is at-least-once: never count records)."""
    keys: dict[str, set[bytes]] = {t: set() for t in topics}
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap(env),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    deadline = time.monotonic() + timeout
    try:
        while any(len(k) < want for k in keys.values()) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                keys[tp.topic].update(r.key for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return keys


def test_tables_discovered_together_all_get_their_snapshot(
    stack: dict[str, str], uid: str, workdir: Path
) -> None:
    ddb = client(stack)
    names = [f"first-{uid}-{i}" for i in range(TABLES)]
    for name in names:
        create_table(ddb, name, [("pk", "S")], {f"itest-{uid}": "1"})
        batch_put(ddb, name, [{"pk": {"S": f"k{j}"}, "v": {"N": str(j)}} for j in range(ITEMS)])
    # a fresh topic set: discovered in one go, their topics created by the worker
    env = worker_env(stack, uid, DYNAMODB_SYNC_MODE="snapshot_only", KAFKA_TOPIC_PARTITIONS="8")
    worker = Worker("app", env, workdir, "w").start()
    topics = [f"it-{uid}-{n}" for n in names]
    try:
        worker.wait_log(r"INIT_SYNC epoch 1", timeout=60, count=TABLES)
        # read only once the worker created them (a consumer's metadata request for an
        # absent topic makes the broker auto-create it with its own defaults)
        worker.wait_log(rf"(?i)topic '?it-{uid}-first-\S+ created", timeout=60, count=TABLES)
        keys = asyncio.run(_distinct_keys(stack, topics, ITEMS, timeout=40))
        missing = {t: ITEMS - len(k) for t, k in keys.items() if len(k) < ITEMS}
        assert not missing, (
            f"snapshot keys missing per topic: {missing}\nworker log tail:\n{worker.log()[-3000:]}"
        )
    finally:
        worker.kill()
