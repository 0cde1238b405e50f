"""Fakes for the runner tests: a recording FakeStreams, a paging raw-DynamoDB Scan
fake, and a recorder standing in for the Kafka output and the control reports."""
from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from tests.fakes.streams import FakeStreams, client_error


class RecordingStreams(FakeStreams):
    """FakeStreams that also records how each iterator was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.iterator_requests: list[tuple[str, str | None]] = []

    async def get_shard_iterator(self, **kw: Any) -> dict:
        self.iterator_requests.append((kw["ShardIteratorType"], kw.get("SequenceNumber")))
        return await super().get_shard_iterator(**kw)


class FakeDynamo:
    """Raw DynamoDB client stand-in: Scan pages items sorted by "pk" (S) with Limit."""

    def __init__(self, items: list[dict]) -> None:
        self.items = sorted(items, key=lambda i: i["pk"]["S"])
        self.requests: list[dict] = []
        self.faults: dict[int, str] = {}  # 1-based call number -> error code

    async def scan(self, **kw: Any) -> dict:
        self.requests.append(copy.deepcopy(kw))
        await asyncio.sleep(0)
        if code := self.faults.pop(len(self.requests), None):
            raise client_error(code, operation_name="Scan")
        after = (kw.get("ExclusiveStartKey") or {}).get("pk", {}).get("S")
        start = sum(1 for i in self.items if after is not None and i["pk"]["S"] <= after)
        page = self.items[start:start + kw.get("Limit", 1000)]
        out: dict[str, Any] = {"Items": copy.deepcopy(page),
                               "ConsumedCapacity": {"TableName": kw["TableName"],
                                                    "CapacityUnits": 0.5 * len(page)}}
        if start + len(page) < len(self.items):
            out["LastEvaluatedKey"] = {"pk": dict(page[-1]["pk"])}
        return out


class Kafka:
    """rt.output + rt.report: one ordered log of ("sent"|"failed", values) and
    ("report", key, message); a batch is logged as sent when send_batch returns."""

    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.dead: list[tuple] = []
        self.topics: set[str] = set()
        self.fail_next = 0
        self.entered = 0
        self.gate: asyncio.Event | None = None  # set: send_batch blocks until it is set

    async def send_batch(self, topic: str, messages: list[tuple[bytes, bytes | None]]) -> None:
        self.entered += 1
        if self.gate is not None:
            await self.gate.wait()
        values = [json.loads(v) for _, v in messages if v is not None]
        if self.fail_next:
            self.fail_next -= 1
            self.log.append(("failed", values))
            raise ConnectionError("broker unavailable")
        self.topics.add(topic)
        self.log.append(("sent", values))

    async def dead_letter(self, table: str, where: str, error: str, keys: Any = None,
                          size: int | None = None) -> None:
        self.dead.append((table, where, error, keys, size))

    async def report(self, key: str, message: dict[str, Any], wait: bool = False) -> None:
        self.log.append(("report", key, message))

    def values(self) -> list[dict]:
        return [v for e in self.log if e[0] == "sent" for v in e[1]]

    def seqs(self) -> list[str]:
        return [v["source"]["seq"] for v in self.values()]

    def reports(self, kind: str | None = None) -> list[dict]:
        return [e[2] for e in self.log if e[0] == "report" and kind in (None, e[2]["type"])]

    def last_pos(self) -> Any:
        progress = self.reports("progress")
        return progress[-1]["pos"] if progress else None
