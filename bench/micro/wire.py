"""Realistic GetRecords / Scan response bodies, as DynamoDB sends them, from the typed
items of bench.common and the tests (binary as base64 text, sets as lists).

Used by bench/micro/fastwire.py and tests/unit/test_fastwire.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-11-28T00:00:00.000"


def wire_value(v: Any) -> Any:
    """A typed item / attribute value (as botocore returns it) in its wire JSON form."""
    t = type(v)
    if t is bytes or t is bytearray or t is memoryview:
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, dict):
        return {k: wire_value(x) for k, x in v.items()}
    if t is set or t is frozenset:
        members = list(v)
        try:
            members.sort()
        except TypeError:
            pass
        return [wire_value(x) for x in members]
    if t is list or t is tuple:
        return [wire_value(x) for x in v]
    if t is Decimal:
        return str(v)
    return v


def record_dict(
    event_name: str,
    seq: str,
    ts_ms: int,
    keys: dict[str, Any] | None,
    new: dict[str, Any] | None,
    old: dict[str, Any] | None,
    ttl_delete: bool = False,
    size_bytes: int = 0,
) -> dict[str, Any]:
    """One GetRecords record (what a NEW_AND_OLD_IMAGES stream returns)."""
    d: dict[str, Any] = {
        "ApproximateCreationDateTime": ts_ms // 1000,  # AWS: seconds, rounded down
        "SequenceNumber": seq,
        "SizeBytes": size_bytes,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if keys is not None:
        d["Keys"] = wire_value(keys)
    if new is not None:
        d["NewImage"] = wire_value(new)
    if old is not None:
        d["OldImage"] = wire_value(old)
    rec: dict[str, Any] = {
        "eventID": f"e{seq[-12:]}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": d,
    }
    if ttl_delete:
        rec["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return rec


def dumps_ascii(obj: Any) -> bytes:
    """JSON with every non-ASCII character escaped (astral ones as surrogate pairs), as
    some services and proxies send it."""
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode()


Dumps = Callable[[Any], bytes]


def records_body(
    records: list[dict[str, Any]], next_iterator: str | None = "AAAA", dumps: Dumps = orjson.dumps
) -> bytes:
    body: dict[str, Any] = {"Records": records}
    if next_iterator is not None:
        body["NextShardIterator"] = next_iterator
    return dumps(body)


def scan_body(
    items: list[dict[str, Any]],
    last_key: dict[str, Any] | None = None,
    capacity: float = 128.5,
    dumps: Dumps = orjson.dumps,
) -> bytes:
    body: dict[str, Any] = {
        "Items": [wire_value(i) for i in items],
        "Count": len(items),
        "ScannedCount": len(items),
        "ConsumedCapacity": {"TableName": "orders", "CapacityUnits": capacity},
    }
    if last_key is not None:
        body["LastEvaluatedKey"] = wire_value(last_key)
    return dumps(body)


def bench_records_body(n: int = 1000) -> bytes:
    """``n`` NEW_AND_OLD_IMAGES records of bench.common's ~1 KB items (40% INSERT, 40%
    MODIFY, 20% REMOVE), as one GetRecords body."""
    from bench.common import item_pool, make_records

    recs = make_records(n, item_pool(min(n, 500)))
    return records_body(
        [
            record_dict(
                r.event_name,
                r.sequence_number,
                r.approx_ts_ms,
                r.keys,
                r.new_image,
                r.old_image,
                r.ttl_delete,
                r.size_bytes,
            )
            for r in recs
        ]
    )


def bench_scan_body(n: int = 1000) -> bytes:
    from bench.common import make_item

    return scan_body(
        [make_item(i) for i in range(n)], {"pk": {"S": "customer#x"}, "sk": {"N": "1"}}
    )
