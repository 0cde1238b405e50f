"""app.domain.wire and app.aws.raw without a network: a GetRecords / Scan body parsed by
the raw path gives the same Kafka bytes as the same body through botocore's own
model-driven parser (what aiobotocore does); errors and requests match botocore's."""

from __future__ import annotations

import base64
import json
from typing import Any

import botocore.session
import orjson
import pytest
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.aws.raw import error_from_body
from app.domain import codec, wire
from app.domain.envelope import Encoder, SnapshotInfo
from app.domain.model import RecordsPage, ScanPage
from bench.common import item_pool
from tests.integration.dynamo import BIG, full_item
from tests.unit.test_codec import items as hypothesis_items

SESSION = botocore.session.get_session()
STREAMS = SESSION.get_service_model("dynamodbstreams")
DYNAMODB = SESSION.get_service_model("dynamodb")
ENCODERS = [Encoder("native", True), Encoder("seed", True), Encoder("native", False)]
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"
SNAP = SnapshotInfo(running=False, start_ms=1, end_ms=2, count=3)


def wire_json(doc: Any) -> bytes:
    """``doc`` as DynamoDB sends it: binary as base64 text."""
    return orjson.dumps(doc, default=lambda b: base64.b64encode(bytes(b)).decode())


def botocore_parsed(service: Any, operation: str, body: bytes) -> dict[str, Any]:
    shape = service.operation_model(operation).output_shape
    parsed: dict[str, Any] = create_parser("json").parse(
        {"status_code": 200, "headers": {}, "body": body}, shape
    )
    parsed.pop("ResponseMetadata", None)
    return parsed


def records_body(images: list[tuple[dict[str, Any] | None, dict[str, Any] | None]]) -> bytes:
    records = []
    for i, (old, new) in enumerate(images):
        event = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
        d: dict[str, Any] = {
            "ApproximateCreationDateTime": 1_764_300_000 + i,
            "Keys": {"pk": (new or old or {})["pk"]},
            "SequenceNumber": str(10**30 + i * 7),
            "SizeBytes": 100 + i,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if new is not None:
            d["NewImage"] = new
        if old is not None:
            d["OldImage"] = old
        rec: dict[str, Any] = {
            "eventID": f"e{i}",
            "eventName": event,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": d,
        }
        if i % 5 == 4 and new is None:
            rec["userIdentity"] = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
        records.append(rec)
    return wire_json({"Records": records, "NextShardIterator": "it-next"})


def encode_records(page: RecordsPage) -> list[list[Any]]:
    return [
        [m for r in page.records for m in enc.change("t", ("pk",), r, ARN, "shard-1", SNAP)]
        for enc in ENCODERS
    ]


def encode_scan(page: ScanPage) -> list[list[Any]]:
    return [
        [m for it in page.items for m in enc.snapshot("t", ("pk",), it, 2, 8, 7, SNAP)]
        for enc in ENCODERS
    ]


def assert_same_records(body: bytes) -> RecordsPage:
    raw = wire.parse_records(body)
    boto = wire.records_page(botocore_parsed(STREAMS, "GetRecords", body))
    assert raw.next_iterator == boto.next_iterator
    for a, b in zip(raw.records, boto.records, strict=True):
        assert (a.event_name, a.sequence_number, a.approx_ts_ms, a.ttl_delete, a.size_bytes) == (
            b.event_name,
            b.sequence_number,
            b.approx_ts_ms,
            b.ttl_delete,
            b.size_bytes,
        )
    assert encode_records(raw) == encode_records(boto)
    return raw


def test_bench_records_give_the_same_bytes() -> None:
    pool = item_pool(60)
    images: list[tuple[Any, Any]] = []
    for i, (old, new) in enumerate(pool):
        images.append([(None, new), (old, new), (old, None)][i % 3])
    raw = assert_same_records(records_body(images))
    assert len(raw.records) == 60
    assert sum(r.ttl_delete for r in raw.records) >= 1


def test_ttl_deletes_in_both_spellings() -> None:
    """GetRecords' Type/PrincipalId (what botocore's model keeps) and Lambda's lower case."""
    base = {"eventName": "REMOVE", "dynamodb": {"SequenceNumber": "1", "Keys": {}}}
    base["dynamodb"]["ApproximateCreationDateTime"] = 1
    for ident in (
        {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"},
        {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
    ):
        assert wire.to_record({**base, "userIdentity": ident}).ttl_delete
    other = {"Type": "Service", "PrincipalId": "someone.amazonaws.com"}
    assert not wire.to_record({**base, "userIdentity": other}).ttl_delete
    assert not wire.to_record(base).ttl_delete


def test_every_type_gives_the_same_bytes() -> None:
    """Binary, sets, nested maps, 38-digit numbers, NULL, BOOL, unicode."""
    items = [full_item(i) for i in range(6)]
    items.append(
        {
            "pk": {"B": b"\x00\xfe\xff"},
            "big": {"N": f"-{BIG}E-130"},
            "exp": {"N": "9.9999999999999999999999999999999999999E+125"},
            "empty": {"S": ""},
            "bs": {"BS": [b"", b"\xff\xfe"]},
            "deep": {"M": {"a": {"L": [{"M": {"b": {"BS": [b"\x01"]}}}, {"NS": [BIG, "-1"]}]}}},
            "u": {"S": 'é\u2028\x00"\\ 𝄞'},
        }
    )
    raw = assert_same_records(records_body([(None, it) for it in items] + [(items[0], None)]))
    assert raw.records[0].new_image is not None
    assert raw.records[0].new_image["b"]["B"] == base64.b64encode(bytes([0, 0, 255, 7])).decode()
    body = wire_json({"Items": items, "Count": len(items), "ScannedCount": len(items)})
    assert encode_scan(wire.parse_scan(body)) == encode_scan(
        wire.scan_page(botocore_parsed(DYNAMODB, "Scan", body))
    )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(hypothesis_items(json_only=True), min_size=1, max_size=4))
def test_generated_items_give_the_same_bytes(items: list[dict[str, Any]]) -> None:
    items = [{**it, "pk": {"S": f"k{i}"}} for i, it in enumerate(items)]
    assert_same_records(records_body([(None, it) for it in items]))
    assert_same_records(records_body([(it, it) for it in items]))
    body = wire_json({"Items": items, "LastEvaluatedKey": {"pk": items[-1]["pk"]}})
    raw = wire.parse_scan(body)
    boto = wire.scan_page(botocore_parsed(DYNAMODB, "Scan", body))
    assert encode_scan(raw) == encode_scan(boto)
    assert raw.last_evaluated_key == boto.last_evaluated_key


def test_scan_page_fields() -> None:
    key = {"pk": {"B": "AP8="}, "rk": {"N": BIG}}
    body = wire_json(
        {
            "Items": [full_item(1)],
            "Count": 1,
            "LastEvaluatedKey": key,
            "ConsumedCapacity": {"TableName": "t", "CapacityUnits": 12.5},
        }
    )
    raw = wire.parse_scan(body)
    boto = wire.scan_page(botocore_parsed(DYNAMODB, "Scan", body))
    assert raw.consumed_capacity == boto.consumed_capacity == 12.5
    assert raw.last_evaluated_key == key
    # the checkpoint form of the cursor does not depend on the path
    assert codec.item_to_sdk_v1(key) == codec.item_to_sdk_v1(boto.last_evaluated_key or {})
    last = wire.parse_scan(b'{"Items":[],"Count":0,"ScannedCount":0}')
    assert (last.items, last.last_evaluated_key, last.consumed_capacity) == ([], None, 0.0)


def test_a_closed_shard_and_an_empty_page() -> None:
    closed = wire.parse_records(b'{"Records":[]}')
    assert (closed.records, closed.next_iterator) == ([], None)
    assert wire.parse_records(b'{"Records":[],"NextShardIterator":"x"}').next_iterator == "x"
    with pytest.raises(ValueError, match="not a JSON object"):
        wire.parse_records(b"[]")


def _serialized(service: Any, operation: str, params: dict[str, Any]) -> Any:
    request = create_serializer("json").serialize_to_request(
        params, service.operation_model(operation)
    )
    return json.loads(request["body"])


def test_requests_are_what_botocore_sends() -> None:
    """A cursor back from the checkpoint form carries bytes: sent as base64, like botocore."""
    start = codec.sdk_v1_to_item(codec.item_to_sdk_v1({"pk": {"B": "AP8="}, "rk": {"N": BIG}}))
    assert start["pk"]["B"] == b"\x00\xff"
    for args, params in [
        (("t", 3, 8, start, 100), {"Segment": 3, "TotalSegments": 8, "Limit": 100}),
        (("t", 0, 1, None, 0), {}),
    ]:
        table, segment, total, key, limit = args
        want = {"TableName": "t", "ReturnConsumedCapacity": "TOTAL", **params}
        if key:
            want["ExclusiveStartKey"] = key
        got = json.loads(wire.scan_request(table, segment, total, key, limit))
        assert got == _serialized(DYNAMODB, "Scan", want)
    assert json.loads(wire.records_request("it", 1000)) == _serialized(
        STREAMS, "GetRecords", {"ShardIterator": "it", "Limit": 1000}
    )


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        (
            400,
            (
                b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",'
                b'"message":"slow down"}'
            ),
            {},
        ),
        (400, b'{"__type":"ExpiredIteratorException","Message":"Iterator expired"}', {}),
        (400, b'{"__type":"com.amazon.coral.service#UnrecognizedClientException"}', {}),
        (500, b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError"}', {}),
        (503, b"", {}),
        (502, b"<html>bad gateway</html>", {}),
    ],
)
def test_error_bodies_parse_like_botocore(
    status: int, body: bytes, headers: dict[str, str]
) -> None:
    reason = {400: "Bad Request", 500: "Internal Server Error", 502: "Bad Gateway"}
    phrase = reason.get(status, "Service Unavailable")
    ours = error_from_body(status, phrase, body, "GetRecords").response
    theirs = create_parser("json").parse(
        {"status_code": status, "headers": headers, "body": body},
        STREAMS.operation_model("GetRecords").output_shape,
    )
    assert ours["Error"]["Code"] == theirs["Error"]["Code"]
    assert ours["ResponseMetadata"]["HTTPStatusCode"] == status
    if theirs["Error"].get("Message"):
        assert ours["Error"]["Message"] == theirs["Error"]["Message"]


class _Body:
    """A raw transport answering every call with one body."""

    def __init__(self, body: bytes) -> None:
        self.body, self.sent = body, []

    async def call(self, operation: str, body: bytes) -> bytes:
        self.sent.append((operation, body))
        return self.body


@pytest.mark.parametrize("body", [b"<html>proxy error</html>", b'{"Records":[{"x":1}]}', b"[1]"])
async def test_a_body_that_is_no_response_is_a_retriable_parse_error(body: bytes) -> None:
    from app.aws.dynamodb import Streams, Tables
    from app.domain.errors import TransientAwsError

    raw = _Body(body)
    with pytest.raises(TransientAwsError) as err:
        await Streams(None, raw).records("it", "t/shard-1")  # type: ignore[arg-type]
    assert err.value.code == "ResponseParserError" and "t/shard-1" in str(err.value)
    assert raw.sent == [("GetRecords", b'{"ShardIterator":"it","Limit":1000}')]
    with pytest.raises(TransientAwsError):
        await Tables(None, _Body(b"")).scan("t", 0, 1, None)  # type: ignore[arg-type]


async def test_raw_bodies_are_handed_out_unparsed() -> None:
    from app.aws.dynamodb import Streams, Tables

    body = b'{"Records":[],"NextShardIterator":"n"}'
    streams = Streams(None, _Body(body))  # type: ignore[arg-type]
    assert await streams.records_body("it", 10) == body
    tables = Tables(None, _Body(b'{"Items":[]}'))  # type: ignore[arg-type]
    assert await tables.scan_body("t", 1, 4, {"pk": {"B": b"\x00"}}, 5) == b'{"Items":[]}'
    assert json.loads(tables.raw.sent[0][1]) == {  # type: ignore[union-attr]
        "TableName": "t",
        "ReturnConsumedCapacity": "TOTAL",
        "Segment": 1,
        "TotalSegments": 4,
        "ExclusiveStartKey": {"pk": {"B": "AA=="}},
        "Limit": 5,
    }
    with pytest.raises(RuntimeError, match="DYNAMODB_RAW_HTTP"):
        await Streams(None).records_body("it", 10)
