"""Response bodies of the hot calls (GetRecords, Scan) -> domain objects (pure).

The JSON wire form is already almost the output form: ``B``/``BS`` values arrive as
base64 text and stay text (the codec accepts base64 text for binary and produces the
same bytes as from ``bytes``), ``N`` as digit strings, ``ApproximateCreationDateTime``
as epoch seconds.  So a body becomes domain objects with one ``orjson.loads`` and a
small walk over the records: no service model, no base64 round trip, no datetimes.

``to_record`` is shared with the aiobotocore path (``app.aws.dynamodb``), whose dicts
carry ``bytes`` and ``datetime`` instead; both give equal records up to that."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from app.domain.model import Item, RecordsPage, ScanPage, StreamRecord

TTL_PRINCIPAL = "dynamodb.amazonaws.com"


def _ts_ms(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(float(value) * 1000)


def to_record(raw: dict[str, Any]) -> StreamRecord:
    """One GetRecords ``Records`` entry (wire JSON or botocore-parsed) as a StreamRecord."""
    d = raw["dynamodb"]
    ident = raw.get("userIdentity") or {}
    # GetRecords spells them Type / PrincipalId (the API, botocore's model); Lambda's
    # stream events type / principalId: a TTL delete is recognised in both
    kind = ident.get("Type") or ident.get("type")
    principal = ident.get("PrincipalId") or ident.get("principalId")
    return StreamRecord(
        event_name=raw["eventName"],
        sequence_number=d["SequenceNumber"],
        approx_ts_ms=_ts_ms(d["ApproximateCreationDateTime"]),
        keys=d.get("Keys") or {},
        new_image=d.get("NewImage"),
        old_image=d.get("OldImage"),
        ttl_delete=kind == "Service" and principal == TTL_PRINCIPAL,
        size_bytes=int(d.get("SizeBytes", 0) or 0),
    )


def records_page(doc: dict[str, Any]) -> RecordsPage:
    """A GetRecords response (as a dict) as a RecordsPage."""
    return RecordsPage(
        [to_record(r) for r in doc.get("Records") or ()], doc.get("NextShardIterator") or None
    )


def scan_page(doc: dict[str, Any]) -> ScanPage:
    """A Scan response (as a dict) as a ScanPage."""
    return ScanPage(
        items=doc.get("Items") or [],
        last_evaluated_key=doc.get("LastEvaluatedKey") or None,
        consumed_capacity=float((doc.get("ConsumedCapacity") or {}).get("CapacityUnits", 0) or 0),
    )


def parse_records(body: bytes) -> RecordsPage:
    """A GetRecords response body as a RecordsPage."""
    return records_page(_object(body, "GetRecords"))


def parse_scan(body: bytes) -> ScanPage:
    """A Scan response body as a ScanPage."""
    return scan_page(_object(body, "Scan"))


def _object(body: bytes, operation: str) -> dict[str, Any]:
    doc = orjson.loads(body)
    if type(doc) is not dict:
        raise ValueError(f"{operation} response is not a JSON object: {type(doc).__name__}")
    return doc


def request_body(request: dict[str, Any]) -> bytes:
    """A request as JSON 1.0 bytes; ``bytes`` values (binary attributes of a cursor that
    went through the checkpoint codec) become base64 text, as the SDKs send them."""
    return orjson.dumps(request, default=_b64_default)


def _b64_default(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        from base64 import b64encode

        return b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def records_request(iterator: str, limit: int) -> bytes:
    return request_body({"ShardIterator": iterator, "Limit": limit})


def scan_request(
    table: str, segment: int, total: int, start_key: Item | None, limit: int = 0
) -> bytes:
    """The Scan request the aiobotocore path sends, as bytes (one segment of one is a
    plain Scan: it avoids moto's binary-key bug)."""
    req: dict[str, Any] = {"TableName": table, "ReturnConsumedCapacity": "TOTAL"}
    if total > 1:
        req["Segment"] = segment
        req["TotalSegments"] = total
    if start_key:
        req["ExclusiveStartKey"] = start_key
    if limit:
        req["Limit"] = limit
    return request_body(req)
