"""moto-server helpers for integration tests: tables, items of every type, a ledger."""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import boto3

BIG = "12345678901234567890123456789012345678"  # 38 significant digits


def client(env: dict[str, str], service: str = "dynamodb") -> Any:
    return boto3.client(
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def worker_env(stack: dict[str, str], uid: str, **extra: str) -> dict[str, str]:
    # the registry's URL only for the tests that write registered schemas (a worker refuses
    # SCHEMA_REGISTRY_URL with the default KAFKA_RECORD_FORMAT=json)
    services = {k: v for k, v in stack.items() if k != "SCHEMA_REGISTRY_URL"}
    return {
        **services,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "APP_ID": f"it-{uid}-app",
        "KAFKA_TOPIC_PREFIX": f"it-{uid}-",
        "DYNAMODB_TAG_FILTERS": f"itest-{uid}",
        "DYNAMODB_DISCOVERY_INTERVAL": "2",
        "DYNAMODB_SHARD_REFRESH_INTERVAL": "1",
        "DYNAMODB_POLL_INTERVAL": "0.1",
        "STATE_PARTITIONS": "4",
        "KAFKA_TOPIC_PARTITIONS": "3",
        # moto serialises ~8 ms per large item: 1 MB pages would take a minute each
        "DYNAMODB_SCAN_PAGE_LIMIT": "500",
        **extra,
    }


def create_table(
    ddb: Any,
    name: str,
    keys: list[tuple[str, str]],
    tags: dict[str, str] | None,
    view: str | None = "NEW_AND_OLD_IMAGES",
) -> str:
    """keys: [(name, S|N|B)], hash first.  Returns the table ARN."""
    kwargs: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [
            {"AttributeName": k, "KeyType": "HASH" if i == 0 else "RANGE"}
            for i, (k, _) in enumerate(keys)
        ],
        "AttributeDefinitions": [{"AttributeName": k, "AttributeType": t} for k, t in keys],
    }
    if view:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view}
    if tags:
        kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    return str(ddb.create_table(**kwargs)["TableDescription"]["TableArn"])


def full_item(i: int) -> dict[str, Any]:
    """One item with every DynamoDB type."""
    return {
        "pk": {"S": f"item-{i:05d}"},
        "s": {"S": f"text {i} ünïcödé"},
        "n": {"N": BIG},
        "small": {"N": str(i)},
        "frac": {"N": "-0.000123"},
        "b": {"B": bytes([i % 256, 0, 255, 7])},
        "ss": {"SS": ["b", "a", f"s{i}"]},
        "ns": {"NS": ["3", "1", "2.5"]},
        "bs": {"BS": [b"\x02", b"\x01"]},
        "m": {"M": {"x": {"N": "1"}, "y": {"L": [{"S": "in"}, {"NULL": True}]}}},
        "l": {"L": [{"N": "1"}, {"S": "two"}, {"BOOL": False}]},
        "nul": {"NULL": True},
        "flag": {"BOOL": i % 2 == 0},
    }


def batch_put(ddb: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        chunk = items[start : start + 25]
        req: dict[str, Any] = {table: [{"PutRequest": {"Item": it}} for it in chunk]}
        while req:
            req = ddb.batch_write_item(RequestItems=req).get("UnprocessedItems") or {}


def decode(value: bytes | None) -> Any:
    return None if value is None else json.loads(value, parse_float=Decimal, parse_int=Decimal)


@dataclass
class Ledger:
    """Every write a test made, per Kafka key, in order: the truth Kafka is checked against."""

    ops: dict[bytes, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, key: bytes, op: str) -> None:
        self.ops[key].append(op)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.ops.values())


def check_against_ledger(records: list[Any], ledger: Ledger) -> dict[str, int]:
    """Per key, the Kafka c/u/d sequence (tombstones aside) must contain the ledger's as a
    subsequence in order (stream replays inside the snapshot overlap may add earlier
    events).  Returns lost events and duplicates (same key and sequence number again)."""
    seen: dict[bytes, list[str]] = defaultdict(list)
    seqs: set[tuple[bytes, str]] = set()
    dups = 0
    for r in records:
        if r.value is None:
            continue
        v = decode(r.value)
        if v["op"] != "r":
            seq = v["source"]["seq"]
            if (r.key, seq) in seqs:  # the same stream record delivered again
                dups += 1
                continue
            seqs.add((r.key, seq))
            seen[r.key].append(v["op"])
    lost = 0
    for key, want in ledger.ops.items():
        got = seen.get(key, [])
        i = 0
        for op in got:
            if i < len(want) and op == want[i]:
                i += 1
        lost += len(want) - i
    return {"lost": lost, "duplicates": dups}


def snapshot_keys(records: list[Any]) -> dict[int, set[bytes]]:
    """The keys of the snapshot ("r") records, per snapshot (told apart by its start,
    the records' ts_ms), in the order the snapshots started.  Distinct keys: a segment
    moved by a rebalance, or a batch resent after a Kafka error, repeats records, which
    the at-least-once contract allows; how many snapshots there were is exact."""
    snaps: dict[int, set[bytes]] = {}
    for x in records:
        if x.value and (v := decode(x.value))["op"] == "r":
            snaps.setdefault(int(v["ts_ms"]), set()).add(x.key)
    return dict(sorted(snaps.items()))


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def order_violations(records: list[Any]) -> int:
    """Keys whose stream events, first occurrences only (replays aside), are not in
    increasing sequence-number order."""
    per_key: dict[bytes, list[int]] = defaultdict(list)
    seen: set[tuple[bytes, int]] = set()
    for r in records:
        if r.value is None:
            continue
        v = decode(r.value)
        seq = v["source"].get("seq")
        if v["op"] == "r" or seq is None:
            continue
        s = int(seq)
        if (r.key, s) not in seen:
            seen.add((r.key, s))
            per_key[r.key].append(s)
    return sum(1 for seqs in per_key.values() if seqs != sorted(seqs))
