"""DynamoDB, DynamoDB Streams and tagging calls: raw dicts in, domain objects out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.aws.errors import aws_call
from app.domain.discovery import TagFilter, to_tagging_api_filters
from app.domain.errors import AwsError
from app.domain.model import (
    Item,
    RecordsPage,
    ScanPage,
    Shard,
    StreamDescription,
    StreamRecord,
    TableInfo,
)

log = logging.getLogger(__name__)
TTL_PRINCIPAL = "dynamodb.amazonaws.com"


class Tables:
    """DynamoDB control plane + Scan."""

    def __init__(self, client: Any) -> None:
        self.client = client

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
        kwargs: dict[str, Any] = {"TableName": table, "ReturnConsumedCapacity": "TOTAL"}
        if total > 1:  # one segment is a plain Scan (and avoids moto's binary-key bug)
            kwargs.update(Segment=segment, TotalSegments=total)
        if start_key:
            kwargs["ExclusiveStartKey"] = start_key
        if limit:
            kwargs["Limit"] = limit
        async with aws_call("Scan", f"{table}#{segment}/{total}"):
            page = await self.client.scan(**kwargs)
        return ScanPage(
            items=page.get("Items", []),
            last_evaluated_key=page.get("LastEvaluatedKey") or None,
            consumed_capacity=float(
                (page.get("ConsumedCapacity") or {}).get("CapacityUnits", 0) or 0
            ),
        )


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


def _ts_ms(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(float(value) * 1000)


def to_record(raw: dict[str, Any]) -> StreamRecord:
    d = raw["dynamodb"]
    ident = raw.get("userIdentity") or {}
    return StreamRecord(
        event_name=raw["eventName"],
        sequence_number=d["SequenceNumber"],
        approx_ts_ms=_ts_ms(d["ApproximateCreationDateTime"]),
        keys=d.get("Keys") or {},
        new_image=d.get("NewImage"),
        old_image=d.get("OldImage"),
        ttl_delete=ident.get("type") == "Service" and ident.get("principalId") == TTL_PRINCIPAL,
        size_bytes=int(d.get("SizeBytes", 0) or 0),
    )


class Streams:
    """DynamoDB Streams data plane."""

    def __init__(self, client: Any) -> None:
        self.client = client

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
        async with aws_call("GetRecords", shard):
            page = await self.client.get_records(ShardIterator=iterator, Limit=limit)
        return RecordsPage(
            [to_record(r) for r in page.get("Records", [])], page.get("NextShardIterator")
        )


__all__ = ["AwsError", "Streams", "Tables", "Tagging", "to_record"]
