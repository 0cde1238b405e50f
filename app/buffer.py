"""The snapshot's buffer topics (one per table epoch, `<APP_ID>-buffer-<table>-<epoch>`).

While a table is scanned its shards write their change events here, keyed like the output
topic (one item's events in one partition, in stream order); afterwards one replay unit
per partition copies them into the output topic (agents.runners.run_replay).  This module
is the Kafka edge of that: read one partition from a position, delete the records already
copied (DeleteRecords), delete a buffer topic no longer needed.  Kafka is the only store:
the replay positions live in the `units` table like every other position.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import UnknownTopicOrPartitionError
from aiokafka.structs import TopicPartition

from app.settings import Settings

log = logging.getLogger(__name__)

# Kept until copied, whatever the snapshot's duration: the replay deletes what it copied,
# and the whole topic goes once the table streams (or its epoch is superseded).
BUFFER_TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}

Record = tuple[int, bytes, bytes | None]  # offset, key, value (None: a tombstone)


class BufferReader:
    """One partition of a buffer topic, read in offset order from a position."""

    def __init__(self, settings: Settings, auth: dict[str, Any], topic: str, partition: int):
        self.topic, self.partition = topic, partition
        self.tp = TopicPartition(topic, partition)
        common: dict[str, Any] = {
            "bootstrap_servers": settings.bootstrap_servers(),
            "request_timeout_ms": int(max(30.0, settings.kafka_send_timeout) * 1000),
            **auth,
        }
        self._consumer = AIOKafkaConsumer(
            client_id=f"{settings.app_id}-replay",
            group_id=None,  # positions are the units table's, never committed to Kafka
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a position below the log start: what is left
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **common,
        )
        self._admin = AIOKafkaAdminClient(client_id=f"{settings.app_id}-replay", **common)
        self._admin_started = False

    async def start(self, position: int | None) -> None:
        await self._consumer.start()
        self._consumer.assign([self.tp])
        if position is None:
            await self._consumer.seek_to_beginning(self.tp)
        else:
            self._consumer.seek(self.tp, position)

    async def partitions(self) -> int:
        """How many partitions the topic has (the replay plan expects a number)."""
        (described,) = await (await self._admin_client()).describe_topics([self.topic])
        return len(described["partitions"]) if described["error_code"] == 0 else 0

    async def read(self, max_records: int, timeout: float) -> list[Record]:
        batches = await self._consumer.getmany(
            self.tp, timeout_ms=int(timeout * 1000), max_records=max_records
        )
        return [(r.offset, r.key, r.value) for r in batches.get(self.tp, [])]

    async def end(self, timeout: float = 30.0) -> int:
        """The partition's end offset now, asked of the broker (what a read from here must
        reach); TimeoutError if no answer (aiokafka's call may otherwise wait for ever)."""
        offsets = await asyncio.wait_for(self._consumer.end_offsets([self.tp]), timeout)
        return int(offsets[self.tp])

    async def position(self) -> int:
        """The next offset this reader reads (after a seek to the start: the log start,
        which moves up as copied records are deleted)."""
        return int(await self._consumer.position(self.tp))

    def known_end(self) -> int | None:
        """The partition's end as of the last fetch (None: nothing fetched yet): cheap, for
        "caught up", never for where a drain ends."""
        hw = self._consumer.highwater(self.tp)
        return None if hw is None else int(hw)

    async def delete_before(self, offset: int) -> None:
        """Free the disk of what was copied already (every record before ``offset``)."""
        admin = await self._admin_client()
        await admin.delete_records({self.tp: RecordsToDelete(offset)}, timeout_ms=30_000)

    async def _admin_client(self) -> AIOKafkaAdminClient:
        if not self._admin_started:
            await self._admin.start()
            self._admin_started = True
        return self._admin

    async def close(self) -> None:
        await self._consumer.stop()
        if self._admin_started:
            await self._admin.close()


class Buffers:
    """The buffer topics of one worker: readers for the replay units, and the emptying of
    a buffer no longer needed (in the background, logged; the control loop never waits).

    A buffer is emptied (DeleteRecords up to its end), not deleted: every worker whose
    shards wrote into it keeps it in its producer's metadata, and a broker that creates
    topics on demand (auto.create.topics.enable, Kafka's default) would re-create a
    deleted one at their next metadata refresh.  An empty topic costs no disk."""

    def __init__(self, settings: Settings, auth: dict[str, Any]) -> None:
        self.settings, self.auth = settings, auth
        self._tasks: set[asyncio.Task[None]] = set()

    async def reader(self, topic: str, partition: int) -> BufferReader:
        return BufferReader(self.settings, self.auth, topic, partition)

    def empty_soon(self, topic: str) -> None:
        task = asyncio.ensure_future(self._empty(topic))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _empty(self, topic: str) -> None:
        common: dict[str, Any] = {
            "bootstrap_servers": self.settings.bootstrap_servers(),
            "client_id": f"{self.settings.app_id}-buffer",
            **self.auth,
        }
        admin = AIOKafkaAdminClient(**common)
        consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **common)
        try:
            await admin.start()
            await consumer.start()
            (described,) = await admin.describe_topics([topic])
            if described["error_code"] == UnknownTopicOrPartitionError.errno:
                return  # never created: no change was buffered
            tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
            ends = await consumer.end_offsets(tps)
            await admin.delete_records(
                {tp: RecordsToDelete(end) for tp, end in ends.items()}, timeout_ms=30_000
            )
            log.info("buffer topic %s emptied (replayed or superseded)", topic)
        except Exception as exc:  # noqa: BLE001  # its records are copied: only disk is at stake
            log.warning(
                "buffer topic %s not emptied (%s: %s); its records expire only by hand "
                "(kafka-delete-records, or delete the topic)",
                topic,
                type(exc).__name__,
                exc,
            )
        finally:
            await consumer.stop()
            await admin.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
