"""Fakes for the runner tests: a recording FakeStreams, a paging raw-DynamoDB Scan
fake, and a recorder standing in for the Kafka output and the control reports."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from datetime import datetime
from typing import Any

from app.domain import protocol as pr
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
        page = self.items[start : start + kw.get("Limit", 1000)]
        out: dict[str, Any] = {
            "Items": copy.deepcopy(page),
            "ConsumedCapacity": {"TableName": kw["TableName"], "CapacityUnits": 0.5 * len(page)},
        }
        if start + len(page) < len(self.items):
            out["LastEvaluatedKey"] = {"pk": dict(page[-1]["pk"])}
        return out


class Kafka:
    """rt.output + rt.report: one ordered log of ("sent"|"failed", values) and
    ("report", key, message); a batch is logged as sent when send_batch returns.

    Like app.output.Output, send_batch returns the (error, messages) it could not deliver
    instead of raising.  Faults: ``fail_next`` (the whole send raises), ``refuse`` (key ->
    error: a batch holding that record fails as a whole, as the broker refuses a batch;
    one record per batch, the records before it go through), ``partial`` (errors for the
    next sends: only the first half of the batch is acknowledged), ``topic_limit``."""

    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.dead: list[tuple] = []
        self.topics: set[str] = set()
        self.fail_next = 0
        self.entered = 0
        self.gate: asyncio.Event | None = None  # set: send_batch blocks until it is set
        self.refuse: dict[bytes, BaseException] = {}
        self.partial: list[BaseException] = []
        self.topic_limit = 1 << 30
        self.calls: list[tuple[str, int, bool]] = []  # (topic, messages, one_per_batch)

    async def ensure_topic(self, topic: str) -> int:
        return self.topic_limit

    async def send_batch(
        self, topic: str, messages: list[tuple[bytes, bytes | None]], one_per_batch: bool = False
    ) -> list[tuple[BaseException, list]]:
        self.entered += 1
        self.calls.append((topic, len(messages), one_per_batch))
        if self.gate is not None:
            await self.gate.wait()

        def values(msgs: list) -> list:
            return [json.loads(v) for _, v in msgs if v is not None]

        if self.fail_next:
            self.fail_next -= 1
            self.log.append(("failed", values(messages)))
            raise ConnectionError("broker unavailable")
        refused = next((i for i, (k, _) in enumerate(messages) if k in self.refuse), None)
        if refused is not None:
            exc = self.refuse[messages[refused][0]]
            ok = messages[:refused] if one_per_batch else []
            if ok:
                self.topics.add(topic)
                self.log.append(("sent", values(ok)))
            self.log.append(("failed", values(messages[len(ok) :])))
            return [(exc, list(messages[len(ok) :]))]
        if self.partial:
            half = len(messages) // 2
            self.topics.add(topic)
            self.log.append(("sent", values(messages[:half])))
            self.log.append(("failed", values(messages[half:])))
            return [(self.partial.pop(0), list(messages[half:]))]
        self.topics.add(topic)
        self.log.append(("sent", values(messages)))
        return []

    async def dead_letter(
        self,
        table: str,
        where: str,
        error: str,
        keys: Any = None,
        size: int | None = None,
        payload: bytes | None = None,
    ) -> None:
        self.dead.append((table, where, error, keys, size, payload))

    async def send_control(self, key: str, value: dict[str, Any]) -> asyncio.Future[None]:
        """The control topic's port: logged as sent, delivered at once."""
        self.log.append(("report", key, value))
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    async def report(self, message: pr.Message, wait: bool = False) -> None:
        await self.send_control(*pr.encode(message))  # what the control topic would carry

    def values(self) -> list[dict]:
        return [v for e in self.log if e[0] == "sent" for v in e[1]]

    def seqs(self) -> list[str]:
        return [v["source"]["seq"] for v in self.values()]

    def reports(self, kind: str | None = None) -> list[dict]:
        return [e[2] for e in self.log if e[0] == "report" and kind in (None, e[2]["type"])]

    def last_pos(self) -> Any:
        progress = self.reports("progress")
        return progress[-1]["pos"] if progress else None


class RawFake:
    """The raw transport (app.aws.raw.RawJson's ``call``) over a raw-client fake: the
    request body decoded, the fake's answer encoded as the service's JSON 1.0 body (times
    as epoch seconds, binary as base64), its ClientErrors raised as they are."""

    def __init__(self, fake: Any) -> None:
        self.fake = fake
        self.methods = {"GetRecords": "get_records", "Scan": "scan"}

    async def call(self, operation: str, body: bytes) -> bytes:
        answer = await getattr(self.fake, self.methods[operation])(**json.loads(body))
        return json.dumps(answer, default=_wire_default).encode()


def _wire_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
