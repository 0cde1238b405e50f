"""Output.send_batch against the real broker: every event lands in the partition Kafka's
default partitioner gives its key, in order, across several record batches."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]

from app.output import Output
from app.settings import Settings
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

    async def send(self, topic: str, key: bytes, value: bytes, *_: Any) -> Any:
        return await self.kafka.send(topic, value, key=key)  # Faust's producer.send

    def topic(self, name: str, partitions: int, replicas: int) -> _Declared:
        return _Declared(self.admin, name, partitions)


def _settings(stack: dict[str, str], uid: str, **extra: Any) -> Settings:
    return dataclasses.replace(
        Settings.from_env({"BROKER_URL": stack["BROKER_URL"]}),
        app_id=f"output-{uid}",
        kafka_topic_partitions=PARTITIONS,
        kafka_send_timeout=20.0,
        **extra,
    )


async def test_batches_follow_the_default_partitioner_in_order(stack, uid):
    servers = bootstrap(stack)
    topic = f"output-{uid}"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    kafka = AIOKafkaProducer(bootstrap_servers=servers, acks="all", max_batch_size=64 * 1024)
    await admin.start()
    await kafka.start()
    try:
        out = Output(_App(admin, kafka), _settings(stack, uid))
        # 3 x 600 events of ~1 KB with 40 keys: several 64 KiB record batches per partition
        pad = "x" * 1000
        sent = [
            [
                (
                    f'{{"pk":"k{i % 40}"}}'.encode(),
                    json.dumps({"n": b * 600 + i, "pad": pad}).encode(),
                )
                for i in range(600)
            ]
            for b in range(3)
        ]
        for batch in sent:
            assert await out.send_batch(topic, batch) in (None, [])  # nothing failed
    finally:
        await kafka.stop()
        await admin.close()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=servers, auto_offset_reset="earliest", enable_auto_commit=False
    )
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
    # at-least-once: every event arrived (repeats allowed), over several partitions
    assert {json.loads(r.value)["n"] for r in got} == set(range(1800))
    assert len({r.partition for r in got}) > 1
    for rec in got:
        assert rec.partition == DefaultPartitioner()(rec.key, parts, parts)
    for p in parts:  # per partition (hence per key): the order they were given in
        ns = [
            json.loads(r.value)["n"]
            for r in sorted(got, key=lambda r: r.offset)
            if r.partition == p
        ]
        assert ns == sorted(ns)


async def _read(servers: str, topic: str, want: int, timeout: float = 20) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < want and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(records)
    finally:
        await consumer.stop()
    return got


async def _max_message_bytes(admin: Any, topic: str) -> int:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType  # type: ignore[import-untyped]

    (resp,) = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None})]
    )
    return int(next(e[1] for e in resp.resources[0][4] if e[0] == "max.message.bytes"))


async def test_a_new_topic_takes_the_largest_record_and_its_first_send_is_acked(stack, uid):
    """Item 7/9: the topic is created to take KAFKA_MAX_RECORD_BYTES (the broker's default
    message.max.bytes is 1 MiB) and is usable at the first send."""
    servers = bootstrap(stack)
    topic = f"output-big-{uid}"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    kafka = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    await admin.start()
    await kafka.start()
    try:
        settings = _settings(stack, uid)
        out = Output(_App(admin, kafka), settings)
        big = (b'{"pk":"big"}', json.dumps({"pad": "x" * 3_000_000}).encode())
        small = [(f'{{"pk":"k{i}"}}'.encode(), b'{"n":1}') for i in range(50)]
        failed = await asyncio.wait_for(out.send_batch(topic, [*small, big]), 30)
        assert not failed, failed
        assert await _max_message_bytes(admin, topic) >= settings.kafka_max_record_bytes
    finally:
        await kafka.stop()
        await admin.close()
    got = await _read(servers, topic, 51)
    assert {r.key for r in got} == {k for k, _ in [*small, big]}


async def test_batches_fit_the_topics_limit_and_a_refused_record_goes_to_the_dlq(stack, uid):
    """Item 5: an existing topic whose max.message.bytes is below our batches (and lowered
    after its first use, so our own check does not know it): the batch is sized or split,
    the one record the broker refuses is dead-lettered with its payload, the rest flows."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType  # type: ignore[import-untyped]

    from agents import runners
    from agents.runtime import Ports, Runtime

    servers = bootstrap(stack)
    topic = f"output-small-{uid}"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    kafka = AIOKafkaProducer(bootstrap_servers=servers, acks="all", max_batch_size=1 << 20)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "6000"})])
    await kafka.start()
    reports: list[Any] = []

    async def send_control(key: str, value: Any) -> Any:
        reports.append(value)

    async def no_aws() -> Any:
        raise AssertionError("delivery needs no AWS")

    settings = _settings(stack, uid)
    output = Output(_App(admin, kafka), settings)
    rt = Runtime(Ports(settings, output, send_control, no_aws, no_aws, no_aws), runners.RUNNERS)
    try:
        unit = {"id": f"shard|t-{uid}|1|arn|s", "spec": {"table": f"t-{uid}"}}
        ok = [
            (f'{{"pk":"k{i}"}}'.encode(), json.dumps({"n": i, "pad": "x" * 500}).encode())
            for i in range(40)
        ]  # 21 KB: far over the topic's 6000 bytes as one batch
        await asyncio.wait_for(runners._deliver(rt, unit, topic, ok, "segment 0/1", "snapshot"), 60)
        # an operator lowers the limit below one record: our cached limit does not know it
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": "1500"})]
        )
        refused = (b'{"pk":"wide"}', json.dumps({"pad": "y" * 3000}).encode())
        more = [(f'{{"pk":"m{i}"}}'.encode(), b'{"n":1}') for i in range(10)]
        await asyncio.wait_for(
            runners._deliver(
                rt, unit, topic, [more[0], refused, *more[1:]], "segment 0/1", "snapshot"
            ),
            60,
        )
    finally:
        await kafka.stop()
        await admin.close()
    got = await _read(servers, topic, 50)
    assert {r.key for r in got} == {k for k, _ in ok + more}
    dead = await _read(servers, f"output-{uid}-dlq", 1)
    (letter,) = [json.loads(v) for v in {r.value for r in dead}]  # repeats allowed
    assert letter["keys"] == '{"pk":"wide"}' and "refused" in letter["error"]
    assert json.loads(letter["payload"]) == json.loads(refused[1])
    assert reports == []  # no unit failed


async def test_the_producer_keeps_a_prepared_topics_leaders_when_it_tracks_another(stack, uid):
    """Item 9's root cause: aiokafka's producer learns a topic from an all-topics metadata
    answer without tracking it; once it tracks any other topic, its metadata requests name
    only those, the untracked topic drops out, and a batch of it waiting for a retry
    (NotLeaderForPartition) waits for a leader that never shows."""
    from aiokafka.structs import TopicPartition  # type: ignore[import-untyped]

    servers = bootstrap(stack)
    topic, other = f"output-kept-{uid}", f"output-other-{uid}"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    kafka = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    await admin.start()
    await kafka.start()
    try:
        # what Faust's topic.maybe_declare() does: CreateTopics, then a metadata update,
        # which (the producer tracking no topic yet) asks for all topics
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        await kafka.client.force_metadata_update()
        out = Output(_App(admin, kafka), _settings(stack, uid))
        assert not await out.send_batch(topic, [(b'{"pk":"a"}', b"{}")])
        await admin.create_topics([NewTopic(other, 1, 1)])
        await kafka.send_and_wait(other, b"{}", key=b"x")  # any other topic, tracked now
        await kafka.client.force_metadata_update()
        leaders = [
            kafka.client.cluster.leader_for_partition(TopicPartition(topic, p))
            for p in range(PARTITIONS)
        ]
        assert None not in leaders and -1 not in leaders, leaders
    finally:
        await kafka.stop()
        await admin.close()


async def test_the_dead_letter_topic_holds_the_event_or_only_its_keys_as_configured(stack, uid):
    """Issue 11 item 4: KAFKA_DLQ_CONTENT=event (default) keeps what is needed to replay the
    event; =keys keeps table, place, error and keys only (no item data)."""
    servers = bootstrap(stack)
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    kafka = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    await admin.start()
    await kafka.start()
    event = b'{"after":{"pk":"a","ssn":"123-45-6789"}}'
    try:
        for content in ("event", "keys"):
            out = Output(
                _App(admin, kafka), _settings(stack, f"{uid}-{content}", kafka_dlq_content=content)
            )
            await out.dead_letter(
                "orders", "shard s1 seq 7", "too large", '{"pk":"a"}', 9_000_000, payload=event
            )
    finally:
        await kafka.stop()
        await admin.close()
    event_dlq = await _read(servers, f"output-{uid}-event-dlq", 1)
    (full,) = [json.loads(v) for v in {r.value for r in event_dlq}]  # repeats allowed
    assert json.loads(full["payload"]) == json.loads(event) and full["keys"] == '{"pk":"a"}'
    keys_dlq = await _read(servers, f"output-{uid}-keys-dlq", 1)
    (bare,) = [json.loads(v) for v in {r.value for r in keys_dlq}]
    assert bare["payload"] is None and bare["payload_omitted"] == "KAFKA_DLQ_CONTENT=keys"
    assert "123-45-6789" not in json.dumps(bare)
    assert (bare["table"], bare["where"], bare["keys"], bare["size"]) == (
        "orders",
        "shard s1 seq 7",
        '{"pk":"a"}',
        9_000_000,
    )
