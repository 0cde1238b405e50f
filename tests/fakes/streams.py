"""A multi-shard DynamoDB Streams fake with teeth.

moto has one never-closing shard, no iterator expiry and no trimming.  This fake
mimics the raw aiobotocore ``dynamodbstreams`` client (async methods taking the
API's keyword arguments, returning raw response dicts, raising botocore
``ClientError`` with the real codes) and adds splits, rollovers, trimming,
iterator expiry and fault injection, driven by a sync control API.

Model: every shard owns a hash range of the key space; a split halves it, a
rollover keeps it, so a key lives in exactly one open shard and moves only to a
child.  Sequence numbers come from one counter per fake (21+ digits, gaps
between them), so they increase across the stream.  Shard ids sort in creation
order (parents before children) and DescribeStream lists them in that order.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import math
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

from botocore.exceptions import ClientError

REGION = "us-east-1"
ACCOUNT = "123456789012"
START_TIME = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
VIEW_TYPES = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")
ITERATOR_TYPES = ("TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER")
OPERATIONS = {
    "describe_stream": "DescribeStream",
    "get_shard_iterator": "GetShardIterator",
    "get_records": "GetRecords",
    "list_streams": "ListStreams",
}
_HASH_SPACE = 2**32
_MESSAGES = {
    "LimitExceededException": "Rate exceeded for shard",
    "ProvisionedThroughputExceededException": "The level of configured provisioned throughput for the table was exceeded.",
    "ThrottlingException": "Rate of requests exceeds the allowed throughput.",
    "InternalServerError": "Internal server error",
    "TrimmedDataAccessException": "The operation attempted to read past the oldest stream record in a shard.",
}
_STATUS = {"InternalServerError": 500}


def client_error(
    code: str, message: str = "", operation_name: str = "", status: int | None = None
) -> ClientError:
    """The exact shape botocore raises for a service error."""
    return ClientError(
        {
            "Error": {"Code": code, "Message": message or _MESSAGES.get(code, code)},
            "ResponseMetadata": {"HTTPStatusCode": status or _STATUS.get(code, 400)},
        },
        operation_name,
    )


def _epoch(ts: datetime | float) -> float:
    return ts.timestamp() if isinstance(ts, datetime) else float(ts)


@dataclass(eq=False)
class _Record:
    seq: int
    ts: float
    raw: dict


@dataclass(eq=False)
class _Shard:
    id: str
    parent: str | None
    lo: int  # hash range [lo, hi)
    hi: int
    start: int
    end: int | None = None
    closed_at: float | None = None
    records: list[_Record] = field(default_factory=list)
    horizon: int = 0  # lowest readable position; trimming raises it
    had_records: bool = False
    gone: bool = False  # closed, fully trimmed: no longer listed

    def to_api(self) -> dict:
        rng = {"StartingSequenceNumber": str(self.start)}
        if self.end is not None:
            rng["EndingSequenceNumber"] = str(self.end)
        out: dict[str, Any] = {"ShardId": self.id, "SequenceNumberRange": rng}
        if self.parent:
            out["ParentShardId"] = self.parent
        return out


@dataclass(eq=False)
class _Stream:
    arn: str
    table: str
    label: str
    key_names: tuple[str, ...]
    view_type: str
    created: float
    status: str = "ENABLED"
    shards: dict[str, _Shard] = field(default_factory=dict)  # creation order


@dataclass(frozen=True)
class _Iterator:
    arn: str
    shard_id: str
    pos: int  # next readable sequence number (records with seq >= pos)
    serial: int
    issued: float


class FakeStreams:
    """Raw ``dynamodbstreams`` client stand-in; see the module docstring."""

    def __init__(
        self,
        *,
        now: float = START_TIME,
        iterator_ttl: float = 900.0,
        seq_base: int = 10**20,
        seq_step: int = 100,
    ) -> None:
        self.now = now  # fake clock, epoch seconds; settable
        self.iterator_ttl = iterator_ttl
        self.calls: Counter[str] = Counter()  # per async method, failed calls included
        self._seq, self._step = seq_base, seq_step
        self._streams: dict[str, _Stream] = {}
        self._iterators: dict[str, _Iterator] = {}
        self._serial = 0
        self._valid_from = 0  # iterators with a lower serial are expired
        self._faults: dict[str, list[tuple[str, int | None]]] = {}
        self._ids = itertools.count(1)
        self._last_ms = 0

    # ---- control API (sync, for tests) -------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def create_stream(
        self,
        table_name: str,
        key_names: Sequence[str],
        view_type: str = "NEW_AND_OLD_IMAGES",
        arn: str | None = None,
    ) -> str:
        """A new stream; ``arn`` (e.g. moto's LatestStreamArn) fixes its ARN and label."""
        if view_type not in VIEW_TYPES:
            raise ValueError(f"bad view type {view_type!r}")
        if arn is not None:
            if arn in self._streams or "/stream/" not in arn:
                raise ValueError(f"stream ARN {arn!r} taken or malformed")
            label = arn.rsplit("/stream/", 1)[1]
        ms = int(self.now * 1000)
        while arn is None:
            label = (
                datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
                + f".{ms % 1000:03d}"
            )
            arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table_name}/stream/{label}"
            if arn in self._streams:
                arn, ms = None, ms + 1
        stream = _Stream(arn, table_name, label, tuple(key_names), view_type, self.now)
        self._streams[arn] = stream
        self._new_shard(stream, None, 0, _HASH_SPACE)
        return arn

    def write(
        self,
        stream_arn: str,
        event_name: str,
        keys: dict,
        new_image: dict | None = None,
        old_image: dict | None = None,
        ttl: bool = False,
        ts: datetime | float | None = None,
    ) -> str:
        """Append one record to the open shard owning ``keys``; returns its sequence number."""
        stream = self._streams[stream_arn]
        if event_name not in ("INSERT", "MODIFY", "REMOVE"):
            raise ValueError(f"bad event name {event_name!r}")
        if ttl and event_name != "REMOVE":
            raise ValueError("ttl deletes are REMOVE events")
        h = zlib.crc32(json.dumps(keys, sort_keys=True, default=repr).encode())
        shard = next(
            (s for s in stream.shards.values() if s.end is None and s.lo <= h < s.hi), None
        )
        if shard is None:
            raise ValueError(f"stream {stream_arn} has no open shard (disabled?)")
        ts = self.now if ts is None else _epoch(ts)
        seq = self._next_seq()
        vt = stream.view_type
        ddb: dict[str, Any] = {
            "ApproximateCreationDateTime": datetime.fromtimestamp(math.floor(ts), UTC),
            "Keys": copy.deepcopy(keys),
        }
        if new_image is not None and vt in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
            ddb["NewImage"] = copy.deepcopy(new_image)
        if old_image is not None and vt in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
            ddb["OldImage"] = copy.deepcopy(old_image)
        ddb["SequenceNumber"] = str(seq)
        ddb["SizeBytes"] = len(
            json.dumps([keys, ddb.get("NewImage"), ddb.get("OldImage")], default=repr)
        )
        ddb["StreamViewType"] = vt
        raw = {
            "eventID": f"{next(self._ids):032x}",
            "eventName": event_name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": REGION,
            "dynamodb": ddb,
        }
        if ttl:
            # the API's member names (botocore's model); Lambda events spell them in lower case
            raw["userIdentity"] = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
        shard.records.append(_Record(seq, ts, raw))
        shard.had_records = True
        return str(seq)

    def split(self, stream_arn: str, shard_id: str) -> tuple[str, str]:
        stream, shard = self._close(stream_arn, shard_id)
        if shard.hi - shard.lo < 2:
            raise ValueError(f"shard {shard_id} too narrow to split")
        mid = (shard.lo + shard.hi) // 2
        return (
            self._new_shard(stream, shard.id, shard.lo, mid).id,
            self._new_shard(stream, shard.id, mid, shard.hi).id,
        )

    def rollover(self, stream_arn: str, shard_id: str) -> str:
        stream, shard = self._close(stream_arn, shard_id)
        return self._new_shard(stream, shard.id, shard.lo, shard.hi).id

    def disable_stream(self, stream_arn: str) -> None:
        """Close every open shard without children (StreamStatus DISABLED)."""
        stream = self._streams[stream_arn]
        for shard in list(stream.shards.values()):
            if shard.end is None:
                self._close(stream_arn, shard.id)
        stream.status = "DISABLED"

    def trim(self, stream_arn: str, before_ts: datetime | float) -> None:
        """Drop records older than ``before_ts``; closed shards left empty vanish."""
        before = _epoch(before_ts)
        for shard in self._streams[stream_arn].shards.values():
            while shard.records and shard.records[0].ts < before:
                shard.horizon = shard.records.pop(0).seq + 1
            if (
                shard.end is not None
                and not shard.records
                and (shard.had_records or shard.closed_at < before)
            ):
                shard.gone, shard.horizon = True, shard.end + 1

    def expire_iterators(self) -> None:
        """Every iterator issued so far raises ExpiredIteratorException from now on."""
        self._valid_from = self._serial + 1

    def inject(
        self, method_name: str, error_code: str, times: int = 1, status: int | None = None
    ) -> None:
        """Fail the next ``times`` calls of ``method_name`` (HTTP 500 for InternalServerError)."""
        if method_name not in OPERATIONS:
            raise ValueError(f"unknown method {method_name!r}")
        self._faults.setdefault(method_name, []).extend([(error_code, status)] * times)

    def open_shards(self, stream_arn: str) -> list[str]:
        return [s.id for s in self._streams[stream_arn].shards.values() if s.end is None]

    # ---- the raw client's async API ----------------------------------------------------

    async def describe_stream(
        self, *, StreamArn: str, Limit: int = 100, ExclusiveStartShardId: str | None = None
    ) -> dict:
        op = await self._enter("describe_stream")
        stream = self._stream(StreamArn, op)
        if not 1 <= Limit <= 100:
            raise client_error("ValidationException", f"Limit {Limit} not in [1, 100]", op)
        shards = [s for s in stream.shards.values() if not s.gone]
        if ExclusiveStartShardId is not None:
            shards = [s for s in shards if s.id > ExclusiveStartShardId]
        page = shards[:Limit]
        desc: dict[str, Any] = {
            "StreamArn": stream.arn,
            "StreamLabel": stream.label,
            "StreamStatus": stream.status,
            "StreamViewType": stream.view_type,
            "CreationRequestDateTime": datetime.fromtimestamp(stream.created, UTC),
            "TableName": stream.table,
            "KeySchema": [
                {"AttributeName": name, "KeyType": kind}
                for name, kind in zip(stream.key_names, ("HASH", "RANGE"))
            ],
            "Shards": [s.to_api() for s in page],
        }
        if len(shards) > Limit:
            desc["LastEvaluatedShardId"] = page[-1].id
        return {"StreamDescription": desc}

    async def list_streams(
        self,
        *,
        TableName: str | None = None,
        Limit: int = 100,
        ExclusiveStartStreamArn: str | None = None,
    ) -> dict:
        op = await self._enter("list_streams")
        if not 1 <= Limit <= 100:
            raise client_error("ValidationException", f"Limit {Limit} not in [1, 100]", op)
        streams = [s for s in self._streams.values() if TableName in (None, s.table)]
        if ExclusiveStartStreamArn is not None:
            streams = [s for s in streams if s.arn > ExclusiveStartStreamArn]
        streams.sort(key=lambda s: s.arn)
        out: dict[str, Any] = {
            "Streams": [
                {"StreamArn": s.arn, "TableName": s.table, "StreamLabel": s.label}
                for s in streams[:Limit]
            ]
        }
        if len(streams) > Limit:
            out["LastEvaluatedStreamArn"] = streams[Limit - 1].arn
        return out

    async def get_shard_iterator(
        self,
        *,
        StreamArn: str,
        ShardId: str,
        ShardIteratorType: str,
        SequenceNumber: str | None = None,
    ) -> dict:
        op = await self._enter("get_shard_iterator")
        stream = self._stream(StreamArn, op)
        shard = stream.shards.get(ShardId)
        if shard is None or shard.gone:
            raise client_error(
                "ResourceNotFoundException",
                f"Requested resource not found: Shard: {ShardId} in Stream: {StreamArn} not found",
                op,
            )
        if ShardIteratorType not in ITERATOR_TYPES:
            raise client_error(
                "ValidationException", f"Invalid ShardIteratorType: {ShardIteratorType}", op
            )
        if ShardIteratorType == "TRIM_HORIZON":
            pos = shard.horizon
        elif ShardIteratorType == "LATEST":
            pos = self._seq + 1
        else:
            if SequenceNumber is None or not SequenceNumber.isdigit():
                raise client_error(
                    "ValidationException", f"SequenceNumber required for {ShardIteratorType}", op
                )
            n = int(SequenceNumber)
            if not shard.start <= n <= (self._seq if shard.end is None else shard.end):
                raise client_error(
                    "ValidationException",
                    f"Invalid SequenceNumber {SequenceNumber} for shard {ShardId}",
                    op,
                )
            pos = n if ShardIteratorType == "AT_SEQUENCE_NUMBER" else n + 1
            if pos < shard.horizon:
                raise client_error("TrimmedDataAccessException", operation_name=op)
        return {"ShardIterator": self._issue(stream.arn, shard.id, pos)}

    async def get_records(self, *, ShardIterator: str, Limit: int = 1000) -> dict:
        op = await self._enter("get_records")
        it = self._iterators.get(ShardIterator)
        if it is None:
            raise client_error("ValidationException", "Invalid ShardIterator", op)
        if not 1 <= Limit <= 1000:
            raise client_error("ValidationException", f"Limit {Limit} not in [1, 1000]", op)
        if it.serial < self._valid_from or self.now - it.issued > self.iterator_ttl:
            raise client_error(
                "ExpiredIteratorException",
                f"Iterator expired. The iterator was created at time {it.issued} while right "
                f"now it is {self.now} which is further in the future than the tolerated "
                f"delay of {int(self.iterator_ttl * 1000)} milliseconds.",
                op,
            )
        shard = self._streams[it.arn].shards[it.shard_id]
        if it.pos < shard.horizon:
            raise client_error("TrimmedDataAccessException", operation_name=op)
        page = [r for r in shard.records if r.seq >= it.pos][:Limit]
        pos = page[-1].seq + 1 if page else it.pos
        out: dict[str, Any] = {"Records": [copy.deepcopy(r.raw) for r in page]}
        if shard.end is None or any(r.seq >= pos for r in shard.records):
            out["NextShardIterator"] = self._issue(it.arn, it.shard_id, pos)
        return out

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    # ---- internals ---------------------------------------------------------------------

    async def _enter(self, method: str) -> str:
        self.calls[method] += 1
        await asyncio.sleep(0)
        op = OPERATIONS[method]
        if faults := self._faults.get(method):
            code, status = faults.pop(0)
            raise client_error(code, operation_name=op, status=status)
        return op

    def _stream(self, arn: str, op: str) -> _Stream:
        if arn not in self._streams:
            raise client_error(
                "ResourceNotFoundException",
                f"Requested resource not found: Stream: {arn} not found",
                op,
            )
        return self._streams[arn]

    def _next_seq(self) -> int:
        self._seq += self._step
        return self._seq

    def _new_shard(self, stream: _Stream, parent: str | None, lo: int, hi: int) -> _Shard:
        self._last_ms = max(self._last_ms, int(self.now * 1000))  # ids sort in creation order
        sid = f"shardId-{self._last_ms:020d}-{next(self._ids):08x}"
        start = self._next_seq()
        shard = stream.shards[sid] = _Shard(sid, parent, lo, hi, start, horizon=start)
        return shard

    def _close(self, stream_arn: str, shard_id: str) -> tuple[_Stream, _Shard]:
        stream = self._streams[stream_arn]
        shard = stream.shards[shard_id]
        if shard.end is not None:
            raise ValueError(f"shard {shard_id} is already closed")
        shard.end, shard.closed_at = self._next_seq(), self.now
        return stream, shard

    def _issue(self, arn: str, shard_id: str, pos: int) -> str:
        self._serial += 1
        token = f"{arn}|{shard_id}|{self._serial:012d}|{pos}"
        self._iterators[token] = _Iterator(arn, shard_id, pos, self._serial, self.now)
        return token
