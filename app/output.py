"""Kafka output: topic creation, batched sends through Faust's producer, dead letters.

A batch is acknowledged as a whole before its checkpoint is reported (no loss).  Events
are appended straight into one record batch per partition (aiokafka's batch API on the
producer Faust manages) instead of one ``send()`` per event: half the CPU per event,
and the same partition for a key as Kafka's default partitioner gives.

A topic is made usable before its first send: created with the admin client (with a
``max.message.bytes`` that takes KAFKA_MAX_RECORD_BYTES), then polled until a metadata
request shows a leader for every partition and the producer's own metadata has them.
Every send has a deadline (KAFKA_SEND_TIMEOUT).  A send reports, per partition, what
was not acknowledged (from the first failed batch on, so a resend keeps the order)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

from aiokafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    ProducerClosed,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
)
from aiokafka.structs import TopicPartition

from app.buffer import BUFFER_TOPIC_CONFIG
from app.domain import codec, limits
from app.domain.discovery import STATE_TOPICS
from app.domain.errors import KafkaSendTimeout, SchemaRegistryRefused
from app.fastwire import partition_for
from app.registry import serializer_for

log = logging.getLogger(__name__)
Message = tuple[bytes, bytes | None]
Failure = tuple[BaseException, list[Message]]  # an error and the messages to send again
Verdict = Literal["too_large", "timeout", "retry", "permanent"]
_RECORD_FRAMING = 64  # bytes a record adds to a batch besides its key and value (varints)


def classify(exc: BaseException) -> Verdict:
    """What a failed send means: aiokafka errors carry `retriable`; a size refusal is
    isolated per record; what is neither retriable nor a size refusal is permanent."""
    if isinstance(exc, (MessageSizeTooLargeError, RecordListTooLargeError)):
        return "too_large"
    if isinstance(exc, (KafkaSendTimeout, KafkaTimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, SchemaRegistryRefused):
        return "permanent"  # an incompatible or invalid schema: the table goes to ERROR
    if (
        isinstance(exc, KafkaError)
        and type(exc) is not KafkaError
        and not exc.retriable
        and not isinstance(exc, ProducerClosed)
    ):
        return "permanent"  # a named refusal: authorization, invalid topic, policy, ...
    return "retry"  # broker down, connection reset, not leader, ... (and unknown errors)


async def send_records(
    kafka: Any,
    topic: str,
    messages: Sequence[Message],
    timestamp_ms: int | None = None,
    max_batch_bytes: int | None = None,
    timeout: float | None = None,
) -> list[Failure]:
    """Append the messages to record batches per partition of an aiokafka producer
    (Kafka's default partitioner), ship each batch when full (or over `max_batch_bytes`;
    0 = one record per batch), then wait (at most `timeout` s) for every ack.
    Returns, per partition with a failed or unacknowledged batch, the error and the
    messages from that batch on (a resend keeps the partition's order)."""
    n = len(await kafka.partitions_for(topic))
    shipped: dict[int, list[tuple[list[Message], asyncio.Future[Any]]]] = {}
    open_batches: dict[int, tuple[Any, list[Message]]] = {}
    appended = 0  # messages[:appended] are in a batch

    async def ship(part: int) -> None:
        batch, msgs = open_batches[part]
        fut = await kafka.send_batch(batch, topic, partition=part)
        del open_batches[part]
        fut.add_done_callback(_consume)  # failures are read below, or dropped if late
        shipped.setdefault(part, []).append((msgs, fut))

    deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
    try:
        async with asyncio.timeout_at(deadline):
            for key, value in messages:
                part = partition_for(key, n)
                current = open_batches.get(part)
                if (
                    current is not None
                    and max_batch_bytes is not None
                    and current[0].size() + len(key) + len(value or b"") + _RECORD_FRAMING
                    > max_batch_bytes
                ):
                    await ship(part)
                    current = None
                if current is None:
                    current = open_batches[part] = (kafka.create_batch(), [])
                if current[0].append(key=key, value=value, timestamp=timestamp_ms) is None:
                    await ship(part)  # full
                    current = open_batches[part] = (kafka.create_batch(), [])
                    current[0].append(key=key, value=value, timestamp=timestamp_ms)  # fits
                current[1].append((key, value))
                appended += 1
            for part in list(open_batches):
                await ship(part)
            futures = [fut for group in shipped.values() for _, fut in group]
            if futures:
                await asyncio.wait(futures)
    except TimeoutError:
        pass
    # the messages never appended (a deadline hit mid-way): rare, partitioned only then
    tail: dict[int, list[Message]] = {}
    for m in messages[appended:]:
        tail.setdefault(partition_for(m[0], n), []).append(m)
    failures: list[Failure] = []
    for part in sorted(shipped.keys() | open_batches.keys() | tail.keys()):
        group = shipped.get(part, [])
        bad = next(
            (
                i
                for i, (_, fut) in enumerate(group)
                if not fut.done() or fut.cancelled() or fut.exception() is not None
            ),
            None,
        )
        unsent = list(open_batches[part][1]) if part in open_batches else []
        unsent += tail.get(part, [])
        if bad is not None:
            fut = group[bad][1]
            if not fut.done():
                exc: BaseException = KafkaSendTimeout(
                    f"{topic}: no acknowledgement within {timeout}s"
                )
            else:
                exc = (
                    KafkaError("cancelled")
                    if fut.cancelled()
                    else (fut.exception() or KafkaError("no acknowledgement"))
                )
            failed = [m for msgs, _ in group[bad:] for m in msgs]
        elif unsent:
            exc = KafkaSendTimeout(f"{topic}: not handed to the producer within {timeout}s")
            failed = []
        else:
            continue
        failures.append((exc, failed + unsent))
    return failures


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class Output:
    def __init__(self, app: Any, settings: Any, auth: dict[str, Any] | None = None) -> None:
        self.app = app
        self.settings = settings
        self.auth = auth or {}
        self.dlq_topic = f"{settings.app_id}-dlq"
        # topic -> the largest key + value it accepts (its max.message.bytes, minus framing)
        self.record_limits: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._admin: Any = None
        # KAFKA_RECORD_FORMAT=avro|json_schema: Confluent-framed records (app/registry.py)
        self.serializer = serializer_for(settings)

    @property
    def topic_max_message_bytes(self) -> int:
        return limits.topic_max_message_bytes(self.settings.kafka_max_record_bytes)

    async def _admin_client(self) -> Any:
        if self._admin is None:
            from aiokafka.admin import AIOKafkaAdminClient

            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.settings.bootstrap_servers(),
                client_id=f"{self.settings.app_id}-output",
                request_timeout_ms=int(self.settings.kafka_send_timeout * 1000),
                **self.auth,
            )
            await admin.start()
            self._admin = admin
        return self._admin

    async def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            await admin.close()
        if self.serializer is not None:
            await self.serializer.close()

    async def ensure_topic(self, name: str) -> int:
        """Create the topic if absent and wait until it is usable; returns the largest
        record (key + value bytes) it accepts."""
        if name in self.record_limits:
            return self.record_limits[name]
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name not in self.record_limits:
                async with asyncio.timeout(self.settings.kafka_send_timeout):
                    self.record_limits[name] = await self._prepare(name)
        return self.record_limits[name]

    async def _prepare(self, name: str) -> int:
        from aiokafka.admin import NewTopic

        admin = await self._admin_client()
        need = self.topic_max_message_bytes
        created = False
        if name not in set(await admin.list_topics()):
            try:
                resp = await admin.create_topics(
                    [
                        NewTopic(
                            name,
                            self.settings.kafka_topic_partitions,
                            self.settings.kafka_topic_replication,
                            topic_configs={"max.message.bytes": str(need), **self._extra(name)},
                        )
                    ]
                )
                for _, code, *rest in resp.topic_errors:
                    if code not in (0, TopicAlreadyExistsError.errno):
                        from aiokafka.errors import for_code

                        raise for_code(code)(f"cannot create topic {name}: {rest[-1]}")
                created = True
            except TopicAlreadyExistsError:
                pass
        await self._wait_for_leaders(admin, name)
        have = await self._max_message_bytes(admin, name)
        if have < need:
            log.warning(
                "topic %s: max.message.bytes=%d is below the %d that "
                "KAFKA_MAX_RECORD_BYTES=%d needs; events over %d bytes go to the "
                "dead-letter topic %s. Raise the topic's max.message.bytes (kafka-configs "
                "--alter --entity-type topics --entity-name %s --add-config "
                "max.message.bytes=%d)",
                name,
                have,
                need,
                self.settings.kafka_max_record_bytes,
                limits.record_limit_for_topic(have),
                self.dlq_topic,
                name,
                need,
            )
        log.info(
            "topic %s %s: %s partitions with leaders, max.message.bytes=%d",
            name,
            "created" if created else "found",
            "all",
            have,
        )
        return limits.record_limit_for_topic(have)

    @staticmethod
    async def _max_message_bytes(admin: Any, name: str) -> int:
        """The topic's max.message.bytes (its own, else the broker's); asked again while
        the broker does not know the new topic's configuration yet."""
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        delay = 0.05
        while True:
            for resp in await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, {"max.message.bytes": None})]
            ):
                for resource in resp.resources:
                    for entry in resource[4]:  # (name, value, read_only, ...)
                        if entry[0] == "max.message.bytes":
                            return int(entry[1])
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    async def _wait_for_leaders(self, admin: Any, name: str) -> None:
        """Until a metadata request shows a leader for every partition, then until the
        producer's own metadata does too (its first send then meets a known leader)."""
        delay = 0.05
        while True:
            (topic,) = await admin.describe_topics([name])
            parts = topic["partitions"]
            if (
                topic["error_code"] == 0
                and parts
                and all(p["error_code"] == 0 and p["leader"] >= 0 for p in parts)
            ):
                break
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)
        kafka = self.app.producer._ensure_producer()
        # Track the topic in the producer's metadata for good.  aiokafka's producer asks for
        # the topics it tracks only (all topics while it tracks none), and tracks a topic
        # only if it was unknown at its first send: a topic it learnt from an all-topics
        # answer drops out of its metadata as soon as any other topic gets tracked, and a
        # batch of it waiting for a retry (NotLeaderForPartition on a new topic) then waits
        # for a leader that never shows, re-asking metadata in a loop (issue 10 item 9).
        for tracked in (name, *self._internal_topics()):
            kafka.client.add_topic(tracked)
        await kafka.partitions_for(name)
        while True:
            await kafka.client.force_metadata_update()
            leaders = [
                kafka.client.cluster.leader_for_partition(TopicPartition(name, p["partition"]))
                for p in parts
            ]
            if all(leader is not None and leader >= 0 for leader in leaders):
                return
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    def _is_buffer(self, name: str) -> bool:
        """A snapshot's buffer topic (app.buffer): its records stay until replayed, and
        they are the output's JSON, framed for the registry only when copied out."""
        return name.startswith(f"{self.settings.app_id}-buffer-")

    def _extra(self, name: str) -> dict[str, str]:
        return BUFFER_TOPIC_CONFIG if self._is_buffer(name) else {}

    def _internal_topics(self) -> tuple[str, ...]:
        return tuple(f"{self.settings.app_id}-{suffix}" for suffix in STATE_TOPICS)

    async def send_batch(
        self,
        topic: str,
        messages: Sequence[Message],
        timestamp: float | None = None,
        one_per_batch: bool = False,
    ) -> list[Failure]:
        """Send all, then wait (at most KAFKA_SEND_TIMEOUT) for every acknowledgement;
        returns what failed or was not acknowledged, with the error (empty: all acked)."""
        if not messages:
            return []
        limit = await self.ensure_topic(topic)
        cap = 0 if one_per_batch else min(1_048_576, limits.topic_max_message_bytes(limit))
        originals: dict[Message, Message] | None = None
        if self.serializer is not None and not self._is_buffer(topic):
            # raises SchemaRegistryUnavailable (retried) / SchemaRegistryRefused (table ERROR)
            framed = await self.serializer.serialize(topic, messages)
            originals = dict(zip(framed, messages, strict=True))
            messages = framed
        # aiokafka's producer inside Faust's (faust-streaming 0.15's driver keeps it there)
        failures = await send_records(
            self.app.producer._ensure_producer(),
            topic,
            messages,
            None if timestamp is None else int(timestamp * 1000),
            max_batch_bytes=cap,
            timeout=self.settings.kafka_send_timeout,
        )
        if originals is not None:  # the caller resends (and dead-letters) what it gave
            failures = [(exc, [originals[m] for m in failed]) for exc, failed in failures]
        return failures

    async def dead_letter(
        self,
        table: str,
        where: str,
        error: str,
        keys: Any = None,
        size: int | None = None,
        payload: bytes | None = None,
    ) -> None:
        """Record an event we cannot deliver; the loop that found it carries on.  The event
        itself goes along when the dead-letter topic takes it."""
        limit = await self.ensure_topic(self.dlq_topic)
        doc: dict[str, Any] = {
            "table": table,
            "where": where,
            "error": error,
            "size": size,
            "keys": keys,
            "ts_ms": int(time.time() * 1000),
        }
        if payload is not None and self.settings.kafka_dlq_content == "keys":
            doc["payload"] = None
            doc["payload_omitted"] = "KAFKA_DLQ_CONTENT=keys"
        elif payload is not None:
            doc["payload"] = payload.decode("utf-8", "replace")
        body = codec.dumps(doc)
        if len(body) + len(table) > limit:
            doc["payload"] = None
            doc["payload_omitted"] = (
                f"{len(body)} bytes with the event: over the dead-letter topic's limit of {limit}"
            )
            body = codec.dumps(doc)
        fut = await self.app.producer.send(self.dlq_topic, table.encode(), body, None, None, None)
        async with asyncio.timeout(self.settings.kafka_send_timeout):
            await fut
