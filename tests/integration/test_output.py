"""Output.send_batch against the real broker: every event lands in the partition Kafka's
default partitioner gives its key, in order, across several record batches."""
from __future__ import annotations

import asyncio
import json
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]

from app.output import Output
from tests.integration.helpers import bootstrap

PARTITIONS = 8


class _Declared:
    def __init__(self, admin: Any, name: str, partitions: int) -> None:
        self.admin, self.name, self.partitions = admin, name, partitions

    async def maybe_declare(self) -> None:
        await self.admin.create_topics([NewTopic(self.name, self.partitions, 1)])


class _App:
    """What Output uses of the Faust app: topic declaration and the producer inside
    Faust's (``producer._ensure_producer()``), here a real aiokafka producer."""

    def __init__(self, admin: Any, kafka: Any) -> None:
        self.admin, self.kafka = admin, kafka
        self.producer = self

    def _ensure_producer(self) -> Any:
        return self.kafka

    def topic(self, name: str, partitions: int, replicas: int) -> _Declared:
        return _Declared(self.admin, name, partitions)


class _Settings:
    app_id = "output-test"
    kafka_topic_partitions = PARTITIONS
    kafka_topic_replication = 1


async def test_batches_follow_the_default_partitioner_in_order(stack, uid):
    servers = bootstrap(stack)
    topic = f"output-{uid}"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    kafka = AIOKafkaProducer(bootstrap_servers=servers, acks="all", max_batch_size=64 * 1024)
    await admin.start()
    await kafka.start()
    try:
        out = Output(_App(admin, kafka), _Settings())
        # 3 x 600 events of ~1 KB with 40 keys: several 64 KiB record batches per partition
        pad = "x" * 1000
        sent = [[(f'{{"pk":"k{i % 40}"}}'.encode(),
                  json.dumps({"n": b * 600 + i, "pad": pad}).encode()) for i in range(600)]
                for b in range(3)]
        for batch in sent:
            await out.send_batch(topic, batch)
    finally:
        await kafka.stop()
        await admin.close()

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    got: list[Any] = []
    try:
        while len(got) < 1800:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 30)
            for records in batch.values():
                got.extend(records)
    finally:
        await consumer.stop()
    parts = list(range(PARTITIONS))
    assert len(got) == 1800 and len({r.partition for r in got}) > 1
    for rec in got:
        assert rec.partition == DefaultPartitioner()(rec.key, parts, parts)
    for p in parts:  # per partition (hence per key): the order they were given in
        ns = [json.loads(r.value)["n"] for r in sorted(got, key=lambda r: r.offset)
              if r.partition == p]
        assert ns == sorted(ns)
