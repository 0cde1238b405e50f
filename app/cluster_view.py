"""The whole cluster's replication state, read from the two changelog topics.

Each worker's Faust tables hold only the partitions it owns; the status page, the
progress log and the CLI need every table.  :class:`ClusterView` reads
``<APP_ID>-tables-changelog`` and ``<APP_ID>-units-changelog`` from the start with a
plain consumer (no group, nothing committed), keeps the latest row per key and turns
the units' count increments into rates.  A worker follows them for as long as it runs;
the CLI reads them up to their end once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, cast

from app.domain.coordinator import TableState
from app.domain.protocol import UnitId
from app.domain.status import Rates, checkpoints, table_rows

log = logging.getLogger(__name__)


class ClusterView:
    def __init__(self, settings: Any, auth: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.auth = auth or {}
        self.topics = {
            f"{settings.app_id}-tables-changelog": "tables",
            f"{settings.app_id}-units-changelog": "units",
        }
        self.tables: dict[str, TableState] = {}
        self.units: dict[str, dict[str, Any]] = {}
        self.rates = Rates()
        self.caught_up = asyncio.Event()
        self.records = 0
        self.skipped = 0  # records of the changelogs that are not the replicator's

    # ------------------------------------------------------------------ folding
    def apply(self, topic: str, key: bytes | None, value: bytes | None, ts_ms: int) -> None:
        """One changelog record (Faust tables: JSON key and value; None = deleted)."""
        if key is None:
            return
        self.records += 1
        name = json.loads(key)
        row = None if value is None else json.loads(value)
        if self.topics[topic] == "tables":
            if not isinstance(name, str) or not (row is None or isinstance(row, dict)):
                raise TypeError(f"{name!r}: not a table state")
            if row is None or row.get("phase") == "FORGOTTEN":  # only its epoch is kept
                self.tables.pop(name, None)
                self.rates.forget(name)
            else:
                self.tables[name] = cast(TableState, row)  # a stored table state (JSON)
            return
        old = self.units.get(name)
        if row is None:
            self.units.pop(name, None)
            return
        unit = UnitId.parse(name)  # raises for what is not a unit id: not stored
        if not isinstance(row, dict) or not isinstance(row.get("spec"), dict):
            raise TypeError(f"unit {name!r}: not a unit state")
        self.units[name] = row
        before = int(old.get("count") or 0) if old and old.get("spec") == row.get("spec") else 0
        self.rates.add(unit.table, unit.kind, ts_ms, int(row.get("count") or 0) - before)

    def rows(self, now_ms: int | None = None) -> list[dict[str, Any]]:
        return table_rows(
            self.tables,
            self.units,
            self.rates,
            int(time.time() * 1000) if now_ms is None else now_ms,
        )

    def checkpoints(self, table: str) -> list[dict[str, Any]]:
        return checkpoints(table, self.tables, self.units)

    # ------------------------------------------------------------------ Kafka
    def _consumer(self) -> Any:
        from aiokafka import AIOKafkaConsumer

        return AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"{self.settings.app_id}-view",
            **self.auth,
        )

    async def _partitions(self, timeout: float) -> dict[str, list[int]]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.bootstrap_servers(),
            client_id=f"{self.settings.app_id}-view",
            **self.auth,
        )
        await admin.start()
        try:
            deadline = time.monotonic() + timeout
            while True:
                described = await admin.describe_topics(list(self.topics))
                parts = {
                    d["topic"]: sorted(p["partition"] for p in d.get("partitions") or [])
                    for d in described
                    if not d.get("error_code")
                }
                missing = [t for t in self.topics if not parts.get(t)]
                if not missing:
                    return parts
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"changelog topic(s) not found: {missing} (has a "
                        "worker with this APP_ID ever started?)"
                    )
                await asyncio.sleep(0.5)
        finally:
            await admin.close()

    async def _assign(self, consumer: Any, timeout: float) -> dict[Any, int]:
        """Assign every partition of both changelogs; their end offsets now."""
        from aiokafka import TopicPartition

        parts = await self._partitions(timeout)
        tps = [TopicPartition(t, p) for t, ps in parts.items() for p in ps]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        return dict(await consumer.end_offsets(tps))

    async def load(self, timeout: float = 30.0) -> None:
        """Read both changelogs up to their current end, once (the CLI)."""
        consumer = self._consumer()
        await consumer.start()
        try:
            ends = await self._assign(consumer, timeout)
            deadline = time.monotonic() + timeout
            while not await self._at_end(consumer, ends):
                if time.monotonic() > deadline:
                    raise RuntimeError("timed out reading the changelog topics")
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                self._apply_batch(batch)
        finally:
            await consumer.stop()
        self.caught_up.set()

    async def follow(self, stopping: asyncio.Event | None = None) -> None:
        """Read both changelogs from the start and keep following them (a worker)."""
        consumer = self._consumer()
        await consumer.start()
        try:
            ends = await self._assign(consumer, timeout=120.0)
            while stopping is None or not stopping.is_set():
                batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
                self._apply_batch(batch)
                if not self.caught_up.is_set() and await self._at_end(consumer, ends):
                    self.caught_up.set()
                    log.info(
                        "cluster view: %d tables, %d units from %d changelog records",
                        len(self.tables),
                        len(self.units),
                        self.records,
                    )
        finally:
            await consumer.stop()

    @staticmethod
    async def _at_end(consumer: Any, ends: dict[Any, int]) -> bool:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return False
        return True

    def _apply_batch(self, batch: dict[Any, list[Any]]) -> None:
        for tp, records in batch.items():
            for r in records:
                self.apply_or_skip(tp.topic, r.key, r.value, r.timestamp)

    def apply_or_skip(self, topic: str, key: bytes | None, value: bytes | None, ts_ms: int) -> None:
        """apply(), but a record that is not the replicator's (a foreign writer, a table
        whose items once reached this topic) is skipped and counted, never raised on
        every re-read."""
        try:
            self.apply(topic, key, value, ts_ms)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            self.skipped += 1
            if self.skipped == 1 or self.skipped % 1000 == 0:
                log.warning(
                    "status view: skipped %d record(s) of %s it cannot read (%s: %s)",
                    self.skipped,
                    topic,
                    type(exc).__name__,
                    exc,
                )
