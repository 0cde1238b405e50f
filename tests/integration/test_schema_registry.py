"""KAFKA_RECORD_FORMAT=avro|json_schema end to end, against the real Schema Registry of the
local stack (Apicurio Registry, Confluent-compatible API) and the real broker.

What the worker wrote is read back by an independent deserializer: the schema id from
each record's Confluent header, the schema fetched by id from the registry, Avro decoded
with fastavro, JSON validated with the `jsonschema` library; the values are compared
with what the test wrote to DynamoDB, attribute for attribute, for every type."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import jsonschema
import pytest

from app.domain import codec
from tests.integration.dynamo import BIG, client, create_table, full_item, worker_env
from tests.integration.helpers import ROOT, TopicReader, Worker, free_port, wait_until

sys.path.insert(0, str(ROOT / "scripts"))
import stack as stack_script  # scripts/stack.py: how the registry starts

N = 3  # items with every DynamoDB type


# ---------------------------------------------------------------- the independent reader
class Registry:
    def __init__(self, url: str) -> None:
        self.url = url
        self._schemas: dict[int, str] = {}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        req = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def schema(self, schema_id: int) -> str:
        if schema_id not in self._schemas:
            status, body = self.call("GET", f"/schemas/ids/{schema_id}")
            assert status == 200, (schema_id, status, body)
            self._schemas[schema_id] = body["schema"]
        return self._schemas[schema_id]


def unframe(data: bytes) -> tuple[int, bytes]:
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0, "Confluent wire format: magic byte 0"
    return schema_id, data[5:]


def decode(reg: Registry, data: bytes | None, fmt: str) -> Any:
    if data is None:
        return None
    schema_id, payload = unframe(data)
    text = reg.schema(schema_id)
    if fmt == "avro":
        return fastavro.schemaless_reader(
            io.BytesIO(payload), fastavro.parse_schema(json.loads(text))
        )
    doc = json.loads(payload, parse_float=Decimal, parse_int=Decimal)
    jsonschema.validate(json.loads(payload), json.loads(text))
    return doc


# ---------------------------------------------------------------- expected values
def plain(av: dict[str, Any]) -> Any:
    """DynamoDB typed value (boto3 form) -> the plain JSON value the contract promises."""
    ((tag, v),) = av.items()
    if tag == "S" or tag == "BOOL":
        return v
    if tag == "N":
        return Decimal(v)
    if tag == "B":
        return base64.b64encode(v).decode()
    if tag == "SS":
        return sorted(v)
    if tag == "NS":
        return sorted(Decimal(x) for x in v)
    if tag == "BS":
        return [base64.b64encode(b).decode() for b in sorted(v)]
    if tag == "M":
        return {k: plain(x) for k, x in v.items()}
    if tag == "L":
        return [plain(x) for x in v]
    if tag == "NULL":
        return None
    raise AssertionError(tag)


def plain_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: plain(v) for k, v in item.items()}


def text_json(text: str | None) -> Any:
    return None if text is None else json.loads(text, parse_float=Decimal, parse_int=Decimal)


def native_view(value: dict[str, Any], fmt: str) -> dict[str, Any]:
    """Avro carries keys/before/after as JSON text; JSON Schema as objects."""
    if fmt == "avro":
        return {
            **value,
            "keys": text_json(value["keys"]),
            "before": text_json(value["before"]),
            "after": text_json(value["after"]),
        }
    return value


CONNECT_READER = ROOT / "registry" / "connect-reader"


def connect_read(registry_url: str, topic: str, records: list[Any]) -> list[dict[str, Any]]:
    """The records as a Kafka Connect sink receives them: Apicurio's Kafka Connect
    AvroConverter (registry/connect-reader/ConnectRead.java) in Confluent mode."""
    lines = "".join(
        f"{base64.b64encode(r.key).decode()} "
        f"{'-' if r.value is None else base64.b64encode(r.value).decode()}\n"
        for r in records
    )
    v2 = registry_url.replace("/apis/ccompat/v6", "/apis/registry/v2")
    proc = subprocess.run(
        ["java", "-cp", str(CONNECT_READER / "libs" / "*"), "ConnectRead.java", v2, topic],
        cwd=CONNECT_READER,
        input=lines,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(out) == len(records), proc.stdout[-2000:]
    return out


def _item_keyed(ddb_item: dict[str, Any]) -> str:
    return str(ddb_item["pk"]["S"])


def _start_registry(port: int, logfile: Path) -> subprocess.Popen[bytes]:
    log = open(logfile, "ab")  # noqa: SIM115 (held by the process)
    return subprocess.Popen(
        stack_script.registry_command(port),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def status_json(worker: Worker) -> dict[str, Any]:
    """The worker's status.json; empty while its web server is not up yet."""
    url = f"http://127.0.0.1:{worker.web_port}/status.json"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return dict(json.loads(resp.read()))
    except OSError:  # URLError: connection refused while the worker starts
        return {}


def _changed(reg: Registry, records: list[Any], fmt: str) -> bool:
    """The update of item-00001 is among the records: only it carries the attribute
    "extra" (its earlier INSERT may be replayed too, from the snapshot's overlap)."""
    for r in records:
        if r.value is None:
            continue
        key = decode(reg, r.key, fmt)
        name = key["pk"] if isinstance(key, dict) else json.loads(key)["pk"]
        if name == "item-00001" and "extra" in json.dumps(decode(reg, r.value, fmt), default=str):
            return True
    return False


# ---------------------------------------------------------------- round trip
@pytest.mark.parametrize(
    ("output", "fmt"),
    [("native", "avro"), ("seed", "avro"), ("native", "json_schema"), ("seed", "json_schema")],
)
def test_round_trip_every_type(
    stack: dict[str, str], uid: str, workdir: Path, output: str, fmt: str
) -> None:
    assert "SCHEMA_REGISTRY_URL" in stack, "scripts/stack.py env names the registry"
    reg = Registry(stack["SCHEMA_REGISTRY_URL"])
    ddb = client(stack)
    table = f"sr-{uid}"
    topic = f"it-{uid}-{table}"
    create_table(ddb, table, [("pk", "S")], {f"itest-{uid}": "1"})
    items = {_item_keyed(it): it for it in (full_item(i) for i in range(N))}
    for it in items.values():
        ddb.put_item(TableName=table, Item=it)
    env = worker_env(
        stack,
        uid,
        KAFKA_OUTPUT_FORMAT=output,
        KAFKA_RECORD_FORMAT=fmt,
        SCHEMA_REGISTRY_URL=stack["SCHEMA_REGISTRY_URL"],
    )
    worker = Worker("app", env, workdir, f"{output}-{fmt}")
    reader = TopicReader(stack, topic)
    try:
        worker.start()
        reader.read_until(lambda rs: len({r.key for r in rs}) >= N, 120, "the snapshot")
        worker.wait_log(r"reading shard", timeout=60)
        # a MODIFY and a REMOVE on the stream
        changed = {**full_item(1), "small": {"N": "1000"}, "extra": {"S": "new"}}
        ddb.put_item(TableName=table, Item=changed)
        ddb.delete_item(TableName=table, Key={"pk": {"S": "item-00002"}})
        # both: the replay of the snapshot's buffer copies its partitions independently
        reader.read_until(
            lambda rs: any(r.value is None for r in rs) and _changed(reg, rs, fmt),
            90,
            "the tombstone and the update",
        )
        decoded = [(decode(reg, r.key, fmt), decode(reg, r.value, fmt)) for r in reader.records]
    finally:
        worker.kill()
        reader.close()

    # the schemas: TopicNameStrategy subjects, the ids the records carry
    key_ids = {unframe(r.key)[0] for r in reader.records}
    value_ids = {unframe(r.value)[0] for r in reader.records if r.value is not None}
    assert len(key_ids) == 1 and len(value_ids) == 1
    for part, ids in (("key", key_ids), ("value", value_ids)):
        status, latest = reg.call("GET", f"/subjects/{topic}-{part}/versions/latest")
        assert status == 200 and {latest["id"]} == ids, (part, latest)

    by_key: dict[str, list[Any]] = {}
    for key, value in decoded:
        name = key["pk"] if isinstance(key, dict) else json.loads(key)["pk"]
        by_key.setdefault(name, []).append(value)
    assert set(by_key) == set(items)
    assert by_key["item-00002"][-1] is None  # the tombstone after the delete

    if output == "native":
        for name, item in items.items():
            snap = next(native_view(v, fmt) for v in by_key[name] if v and v["op"] == "r")
            assert snap["keys"] == {"pk": name} and snap["before"] is None
            assert snap["after"] == plain_item(item)  # value for value, every type
            assert snap["table"] == table and snap["source"]["snapshot"] is True
        assert snap["after"]["n"] == Decimal(BIG)  # 38 significant digits, exact
        events = [native_view(v, fmt) for v in by_key["item-00001"] if v]
        update = next(v for v in events if v["op"] in ("u", "c") and v["after"]["small"] == 1000)
        assert update["after"] == plain_item(changed)
        assert update["source"]["seq"] and update["source"]["snapshot"] is False
        delete = next(native_view(v, fmt) for v in by_key["item-00002"] if v and v["op"] == "d")
        assert delete["after"] is None and delete["before"] == plain_item(items["item-00002"])
    else:
        for name, item in items.items():
            snap = next(v for v in by_key[name] if v and v["op"] == "r")
            assert snap["version"] == "1.0"
            # the document: the item in AWS SDK v1 JSON, as the JSON format writes it
            assert json.loads(snap["document"]) == json.loads(
                codec.dumps(codec.item_to_sdk_v1(item))
            )
            assert json.loads(snap["document"])["n"] == {"n": BIG}
            src = snap["source"]
            assert src["table_name"] == table and src["init_sync"] is True
            assert src["init_sync_state"] == "RUNNING" and src["init_sync_start"] > 0
        delete = next(v for v in by_key["item-00002"] if v and v["op"] == "d")
        assert delete["source"]["init_sync_state"] == "FINISHED"
    if fmt == "avro":  # a Kafka Connect-style consumer reads the same records
        connect = connect_read(reg.url, topic, reader.records)
        for got, rec in zip(connect, reader.records, strict=True):
            if rec.value is None:
                assert got["value"]["value"] is None
                continue
            value = got["value"]
            assert value["schema_type"] == "STRUCT"
            if output == "native":
                assert value["schema_name"] == "dynamodb_replicator.ChangeEvent"
                v = native_view(value["value"], "avro")
                name = v["keys"]["pk"]
                if v["op"] == "r":
                    assert v["after"] == plain_item(items[name])
            else:
                assert value["schema_name"] == "com.trustpilot.connector.dynamodb.envelope"
                assert got["key"]["schema_type"] == "STRUCT"
                assert got["key"]["schema_name"] == f"{topic}.Key".replace("-", "_")
                name = got["key"]["value"]["pk"]
                if value["value"]["op"] == "r":
                    document = json.loads(value["value"]["document"])
                    assert document["n"] == {"n": BIG} and document["pk"] == {"s": name}
                    assert value["value"]["source"]["init_sync_state"] == "RUNNING"
    if output == "seed" and fmt == "avro":  # the old connector's schemas, by name
        value_schema = json.loads(reg.schema(next(iter(value_ids))))
        assert value_schema["name"] == "envelope"
        assert value_schema["namespace"] == "com.trustpilot.connector.dynamodb"
        key_schema = json.loads(reg.schema(next(iter(key_ids))))
        assert key_schema["connect.name"] == f"{topic}.Key".replace("-", "_")


# ---------------------------------------------------------------- registry down
def test_registry_down_delays_then_delivers(stack: dict[str, str], uid: str, workdir: Path) -> None:
    port = free_port()  # nothing listens here until the test starts a registry on it
    url = stack_script.registry_url(port)
    ddb = client(stack)
    table = f"srdown-{uid}"
    topic = f"it-{uid}-{table}"
    create_table(ddb, table, [("pk", "S")], {f"itest-{uid}": "1"})
    items = [full_item(i) for i in range(N)]
    for it in items:
        ddb.put_item(TableName=table, Item=it)
    env = worker_env(stack, uid, KAFKA_RECORD_FORMAT="avro", SCHEMA_REGISTRY_URL=url)
    worker = Worker("app", env, workdir, "down")
    reader = TopicReader(stack, topic)
    registry: subprocess.Popen[bytes] | None = None
    try:
        worker.start()
        worker.wait_log(r"SchemaRegistryUnavailable", timeout=120, count=2)  # retried
        health = wait_until(
            lambda: status_json(worker).get("schema_registry"), 30, "registry health"
        )
        assert health["ok"] is False and "no answer" in health["error"]
        assert reader.poll(1.0) == [] and reader.records == []  # nothing sent unframed
        t_up = time.monotonic()
        registry = _start_registry(port, workdir / "registry.log")
        wait_until(lambda: stack_script.registry_ready(port), 120, "the second registry")
        reader.read_until(
            lambda rs: len({r.key for r in rs}) >= N, 120, "the snapshot after the registry"
        )
        print(f"delivered {time.monotonic() - t_up:.1f}s after the registry was started")
        reg = Registry(url)
        got = {}
        for r in reader.records:
            value = decode(reg, r.value, "avro")
            got[json.loads(decode(reg, r.key, "avro"))["pk"]] = text_json(value["after"])
        assert got == {it["pk"]["S"]: plain_item(it) for it in items}
        assert wait_until(
            lambda: (status_json(worker).get("schema_registry") or {}).get("ok"), 30, "ok again"
        )
    finally:
        worker.kill()
        reader.close()
        if registry is not None:
            _stop(registry)


# ---------------------------------------------------------------- incompatible schema
def test_incompatible_registered_schema_is_a_table_error(
    stack: dict[str, str], uid: str, workdir: Path
) -> None:
    reg = Registry(stack["SCHEMA_REGISTRY_URL"])
    ddb = client(stack)
    table = f"srbad-{uid}"
    topic = f"it-{uid}-{table}"
    # what another producer registered before, under a rule that refuses our schema
    theirs = {
        "type": "record",
        "name": "Other",
        "fields": [{"name": "amount", "type": "int"}],
    }
    status, body = reg.call(
        "POST", f"/subjects/{topic}-value/versions", {"schema": json.dumps(theirs)}
    )
    assert status == 200, body
    status, body = reg.call("PUT", f"/config/{topic}-value", {"compatibility": "BACKWARD"})
    assert status == 200, body
    create_table(ddb, table, [("pk", "S")], {f"itest-{uid}": "1"})
    ddb.put_item(TableName=table, Item=full_item(0))
    env = worker_env(
        stack, uid, KAFKA_RECORD_FORMAT="avro", SCHEMA_REGISTRY_URL=stack["SCHEMA_REGISTRY_URL"]
    )
    worker = Worker("app", env, workdir, "incompatible")
    reader = TopicReader(stack, topic)
    try:
        worker.start()

        def errored() -> dict[str, Any] | None:
            rows = [t for t in status_json(worker).get("tables", []) if t["table"] == table]
            return rows[0] if rows and rows[0]["phase"] == "ERROR" else None

        row = wait_until(errored, 120, f"{table} in phase ERROR")
        print(f"table error: {row['error']}")
        assert "incompatible" in row["error"] and f"{topic}-value" in row["error"]
        assert reader.poll(1.0) == [] and reader.records == []
    finally:
        worker.kill()
        reader.close()
