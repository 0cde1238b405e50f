#!/usr/bin/env python3
"""The demo table and its writer: creates `demo-orders` (tagged datalake-ingest, stream
NEW_AND_OLD_IMAGES) with 100 items, then keeps writing puts, updates and deletes.
Used by `make run` (scripts/run_demo.py) and by docker-compose's demo-writer."""

from __future__ import annotations

import os
import random
import threading
from typing import Any

import boto3

TABLE = os.environ.get("DEMO_TABLE", "demo-orders")


def client(endpoint: str | None = None) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint or os.environ.get("AWS_ENDPOINT_URL"),
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "demo"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "demo"),
    )


def order(i: int) -> dict[str, Any]:
    return {
        "order_id": {"S": f"o-{i:04d}"},
        "amount": {"N": f"{random.randint(1, 99999)}.{i % 100:02d}"},
        "status": {"S": random.choice(["new", "paid", "shipped"])},
        "items": {"L": [{"M": {"sku": {"S": f"sku-{i % 17}"}, "qty": {"N": "1"}}}]},
    }


def ensure_table(c: Any) -> None:
    if TABLE in c.list_tables()["TableNames"]:
        return
    c.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        Tags=[{"Key": "datalake-ingest", "Value": "demo"}],
    )
    for i in range(100):
        c.put_item(TableName=TABLE, Item=order(i))
    print(f"[demo] created table {TABLE} (tag datalake-ingest) with 100 items", flush=True)


def write_forever(c: Any, stop: threading.Event, every: float = 0.5) -> None:
    n = 100
    while not stop.wait(every):
        r, i = random.random(), random.randrange(n)
        key = {"order_id": {"S": f"o-{i:04d}"}}
        if r < 0.5:
            c.update_item(
                TableName=TABLE,
                Key=key,
                UpdateExpression="SET #s = :s",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":s": {"S": random.choice(["paid", "shipped"])}},
            )
        elif r < 0.8:
            c.put_item(TableName=TABLE, Item=order(n))
            n += 1
        else:
            c.delete_item(TableName=TABLE, Key=key)


if __name__ == "__main__":
    c = client()
    ensure_table(c)
    write_forever(c, threading.Event())
