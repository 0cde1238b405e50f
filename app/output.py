"""Kafka output: topic creation, batched sends through Faust's producer, dead letters.

A batch is acknowledged as a whole before its checkpoint is reported (no loss)."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from app.domain import codec

log = logging.getLogger(__name__)
Message = tuple[bytes, bytes | None]


class Output:
    def __init__(self, app: Any, settings: Any) -> None:
        self.app = app
        self.settings = settings
        self.dlq_topic = f"{settings.app_id}-dlq"
        self._declared: set[str] = set()
        self._lock = asyncio.Lock()

    async def ensure_topic(self, name: str) -> None:
        if name in self._declared:
            return
        async with self._lock:
            if name in self._declared:
                return
            topic = self.app.topic(name, partitions=self.settings.kafka_topic_partitions,
                                   replicas=self.settings.kafka_topic_replication)
            await topic.maybe_declare()
            self._declared.add(name)

    async def send_batch(self, topic: str, messages: Sequence[Message],
                         timestamp: float | None = None) -> None:
        """Send all, then wait for every acknowledgement (raises if any failed)."""
        if not messages:
            return
        await self.ensure_topic(topic)
        producer = self.app.producer
        futures = []
        for key, value in messages:
            futures.append(await producer.send(topic, key, value, None, timestamp, None))
        await asyncio.gather(*futures)

    async def dead_letter(self, table: str, where: str, error: str, keys: Any = None,
                          size: int | None = None) -> None:
        """Record an event we cannot deliver; the loop that found it carries on."""
        await self.ensure_topic(self.dlq_topic)
        body = codec.dumps({"table": table, "where": where, "error": error, "size": size,
                            "keys": keys, "ts_ms": int(time.time() * 1000)})
        fut = await self.app.producer.send(self.dlq_topic, table.encode(), body, None, None,
                                           None)
        await fut
