"""DynamoDB, DynamoDB Streams and tagging calls: raw dicts in, domain objects out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from app import fastwire
from app.aws.errors import aws_call
from app.domain import wire
from app.domain.discovery import TagFilter, to_tagging_api_filters
from app.domain.errors import AwsError, TransientAwsError
from app.domain.model import (
    Item,
    RecordsPage,
    ScanPage,
    Shard,
    StreamDescription,
    TableInfo,
)
from app.domain.wire import TTL_PRINCIPAL, to_record

if TYPE_CHECKING:
    from app.aws.raw import RawJson

log = logging.getLogger(__name__)
T = TypeVar("T")


class Tables:
    """DynamoDB control plane + Scan.

    ``raw``: Scan's transport without botocore (DYNAMODB_RAW_HTTP); None = aiobotocore."""

    def __init__(self, client: Any, raw: RawJson | None = None) -> None:
        self.client = client
        self.raw = raw

    async def describe(self, name: str) -> TableInfo:
        async with aws_call("DescribeTable", name):
            t = (await self.client.describe_table(TableName=name))["Table"]
        keys = sorted(t.get("KeySchema", []), key=lambda k: k["KeyType"] != "HASH")
        spec = t.get("StreamSpecification") or {}
        enabled = spec.get("StreamEnabled", False) and t.get("LatestStreamArn")
        return TableInfo(
            name=t["TableName"],
            arn=t["TableArn"],
            key_names=tuple(k["AttributeName"] for k in keys),
            stream_arn=t.get("LatestStreamArn") if enabled else None,
            stream_view_type=spec.get("StreamViewType") if enabled else None,
            item_count=int(t.get("ItemCount", 0) or 0),
            size_bytes=int(t.get("TableSizeBytes", 0) or 0),
            read_capacity=int(
                (t.get("ProvisionedThroughput") or {}).get("ReadCapacityUnits", 0) or 0
            )
            if (t.get("BillingModeSummary") or {}).get("BillingMode") != "PAY_PER_REQUEST"
            else 0,
            status=t.get("TableStatus", "ACTIVE"),
        )

    async def list_names(self) -> list[str]:
        names: list[str] = []
        kwargs: dict[str, Any] = {}
        while True:
            async with aws_call("ListTables"):
                page = await self.client.list_tables(**kwargs)
            names.extend(page.get("TableNames", []))
            if not page.get("LastEvaluatedTableName"):
                return names
            kwargs["ExclusiveStartTableName"] = page["LastEvaluatedTableName"]

    async def tags(self, arn: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        kwargs: dict[str, Any] = {"ResourceArn": arn}
        while True:
            async with aws_call("ListTagsOfResource", arn):
                page = await self.client.list_tags_of_resource(**kwargs)
            tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
            if not page.get("NextToken"):
                return tags
            kwargs["NextToken"] = page["NextToken"]

    async def scan(
        self, table: str, segment: int, total: int, start_key: Item | None, limit: int = 0
    ) -> ScanPage:
        if self.raw is not None:
            body = await self.scan_body(table, segment, total, start_key, limit)
            return _parsed(wire.parse_scan, body, "Scan", f"{table}#{segment}/{total}")
        kwargs: dict[str, Any] = {"TableName": table, "ReturnConsumedCapacity": "TOTAL"}
        if total > 1:  # one segment is a plain Scan (and avoids moto's binary-key bug)
            kwargs.update(Segment=segment, TotalSegments=total)
        if start_key:
            kwargs["ExclusiveStartKey"] = start_key
        if limit:
            kwargs["Limit"] = limit
        async with aws_call("Scan", f"{table}#{segment}/{total}"):
            page = await self.client.scan(**kwargs)
        return wire.scan_page(page)

    async def encoded_scan(
        self,
        table: str,
        segment: int,
        total: int,
        start_key: Item | None,
        ctx: fastwire.ScanContext,
        limit: int = 0,
    ) -> fastwire.EncodedPage:
        """One Scan page straight from the response body to Kafka messages."""
        body = await self.scan_body(table, segment, total, start_key, limit)
        where = f"{table}#{segment}/{total}"
        return _parsed(lambda b: fastwire.encode_scan_page(b, ctx), body, "Scan", where)

    async def scan_body(
        self, table: str, segment: int, total: int, start_key: Item | None, limit: int = 0
    ) -> bytes:
        """The raw Scan response body (JSON 1.0 bytes) of the same request as :meth:`scan`:
        for parsers that go from bytes straight to Kafka records.  Needs the raw transport."""
        if self.raw is None:
            raise RuntimeError("Tables.scan_body needs the raw transport (DYNAMODB_RAW_HTTP)")
        request = wire.scan_request(table, segment, total, start_key, limit)
        async with aws_call("Scan", f"{table}#{segment}/{total}"):
            return await self.raw.call("Scan", request)


def _parsed(parse: Callable[[bytes], T], body: bytes, operation: str, resource: str) -> T:
    """``parse(body)``; a body that is not the response's shape (a proxy's page, a cut
    response) is a retriable error named like botocore's parser's (ResponseParserError)."""
    try:
        return parse(body)
    except (ValueError, KeyError, TypeError, AttributeError, fastwire.MalformedResponse) as exc:
        raise TransientAwsError(
            f"{operation} on {resource} failed: ResponseParserError: unexpected response "
            f"body ({type(exc).__name__}, {len(body)} bytes)",
            code="ResponseParserError",
            resource=resource,
        ) from exc


class Tagging:
    """Resource Groups Tagging API: tables carrying the configured tags."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def tables_with_tags(self, filters: Sequence[TagFilter]) -> list[str]:
        """Table ARNs matching all filters (paginated)."""
        arns: list[str] = []
        kwargs: dict[str, Any] = {
            "ResourceTypeFilters": ["dynamodb:table"],
            "TagFilters": to_tagging_api_filters(filters),
        }
        while True:
            async with aws_call("tag:GetResources"):
                page = await self.client.get_resources(**kwargs)
            arns.extend(r["ResourceARN"] for r in page.get("ResourceTagMappingList", []))
            token = page.get("PaginationToken")
            if not token:
                return arns
            kwargs["PaginationToken"] = token


class Streams:
    """DynamoDB Streams data plane.

    ``raw``: GetRecords' transport without botocore (DYNAMODB_RAW_HTTP); None =
    aiobotocore."""

    def __init__(self, client: Any, raw: RawJson | None = None) -> None:
        self.client = client
        self.raw = raw

    async def describe(self, stream_arn: str) -> StreamDescription:
        """All shards, following LastEvaluatedShardId across pages."""
        shards: list[Shard] = []
        kwargs: dict[str, Any] = {"StreamArn": stream_arn}
        while True:
            async with aws_call("DescribeStream", stream_arn):
                d = (await self.client.describe_stream(**kwargs))["StreamDescription"]
            for s in d.get("Shards", []):
                rng = s.get("SequenceNumberRange") or {}
                shards.append(
                    Shard(
                        s["ShardId"],
                        s.get("ParentShardId"),
                        rng.get("StartingSequenceNumber"),
                        rng.get("EndingSequenceNumber"),
                    )
                )
            last = d.get("LastEvaluatedShardId")
            if not last:
                return StreamDescription(
                    stream_arn,
                    d.get("StreamStatus", "ENABLED"),
                    d.get("StreamViewType", ""),
                    tuple(shards),
                )
            kwargs["ExclusiveStartShardId"] = last

    async def iterator(self, stream_arn: str, shard_id: str, after_seq: str | None) -> str:
        kwargs: dict[str, Any] = {"StreamArn": stream_arn, "ShardId": shard_id}
        if after_seq:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=after_seq)
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        async with aws_call("GetShardIterator", f"{stream_arn}#{shard_id}"):
            return str((await self.client.get_shard_iterator(**kwargs))["ShardIterator"])

    async def records(self, iterator: str, shard: str, limit: int = 1000) -> RecordsPage:
        if self.raw is not None:
            body = await self.records_body(iterator, limit, shard)
            return _parsed(wire.parse_records, body, "GetRecords", shard)
        async with aws_call("GetRecords", shard):
            page = await self.client.get_records(ShardIterator=iterator, Limit=limit)
        return wire.records_page(page)

    async def encoded_records(
        self, iterator: str, shard: str, ctx: fastwire.ChangeContext, limit: int = 1000
    ) -> fastwire.EncodedPage:
        """One GetRecords page straight from the response body to Kafka messages (the
        native pass, else the reference; app.fastwire).  Needs the raw transport."""
        body = await self.records_body(iterator, limit, shard)
        return _parsed(lambda b: fastwire.encode_records_page(b, ctx), body, "GetRecords", shard)

    async def records_body(self, iterator: str, limit: int = 1000, shard: str = "?") -> bytes:
        """The raw GetRecords response body (JSON 1.0 bytes) for ``iterator``: for parsers
        that go from bytes straight to Kafka records.  Needs the raw transport; ``shard``
        names the shard in errors."""
        if self.raw is None:
            raise RuntimeError("Streams.records_body needs the raw transport (DYNAMODB_RAW_HTTP)")
        async with aws_call("GetRecords", shard):
            return await self.raw.call("GetRecords", wire.records_request(iterator, limit))


__all__ = ["TTL_PRINCIPAL", "AwsError", "Streams", "Tables", "Tagging", "to_record"]
