"""Issue 10 item 8: a stream with thousands of shards makes a table's state and a shard
listing larger than Kafka's default 1 MB record limit.  The internal topics and the
producer accept them; a consumer with default fetch sizes reads them back."""

from __future__ import annotations

import dataclasses
import json

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]

from app.bootstrap import ensure_topics
from app.domain import coordinator as co
from app.main import STATE_MAX_MESSAGE_BYTES, app, internal_topics, settings
from tests.integration.helpers import bootstrap

SHARDS = 20_000  # a very large stream: ~3x past the 1 MB mark
STREAM = "arn:aws:dynamodb:us-east-1:123456789012:table/big/stream/2026-01-01T00:00:00.000"


def big_table() -> tuple[co.State, list[list[str | None]]]:
    info = {
        "name": "big",
        "table_arn": STREAM.split("/stream")[0],
        "stream_arn": STREAM,
        "key_names": ["pk"],
        "item_count": 0,
        "size_bytes": 0,
        "read_capacity": 0,
        "view_type": "NEW_AND_OLD_IMAGES",
    }
    p = co.Policy(mode="stream_only")
    s = co.on_discovered(None, info, 1_767_225_600_000, p).state
    listing = [
        [f"shardId-{1767225600000 + i:020d}-{i:08x}", None, str(10**20 + 10 * i), None]
        for i in range(SHARDS)
    ]
    s = co.on_shards(s, {"epoch": s["epoch"], "listing": listing}, 1_767_225_600_000, p).state
    return s, listing


async def test_state_and_listings_of_a_huge_stream_pass_through_kafka(stack, uid):
    state, listing = big_table()
    records = {
        "tables-changelog": json.dumps(state).encode(),
        "control": json.dumps({"type": "shards", "listing": listing}).encode(),
    }
    assert all(1_048_576 < len(v) < STATE_MAX_MESSAGE_BYTES for v in records.values()), {
        k: len(v) for k, v in records.items()
    }

    s = dataclasses.replace(settings, app_id=f"size-{uid}")
    servers = bootstrap(stack)
    await ensure_topics(servers, internal_topics(s))
    producer = AIOKafkaProducer(
        bootstrap_servers=servers, acks="all", max_request_size=app.conf.producer_max_request_size
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers, auto_offset_reset="earliest", enable_auto_commit=False
    )  # default fetch sizes, like Faust's
    await producer.start()
    await consumer.start()
    try:
        for suffix, value in records.items():
            await producer.send_and_wait(f"{s.app_id}-{suffix}", value, key=b"big", partition=0)
        consumer.subscribe([f"{s.app_id}-{suffix}" for suffix in records])
        got: dict[str, bytes] = {}
        while len(got) < len(records):
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, f"nothing read back; got {sorted(got)}"
            for tp, msgs in batch.items():
                for m in msgs:
                    got[tp.topic.removeprefix(f"{s.app_id}-")] = m.value
        assert got == records
    finally:
        await consumer.stop()
        await producer.stop()
