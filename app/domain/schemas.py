"""Registered schemas for KAFKA_RECORD_FORMAT=avro|json_schema, the Confluent wire format,
and the per-event values those schemas describe.  Pure: the Avro encoding itself
(fastavro) and the registry client live in app/registry.py.

Subjects follow Confluent's TopicNameStrategy: ``<topic>-key`` and ``<topic>-value``.

seed + avro
    The schemas the old connector's records had under Confluent's AvroConverter, i.e.
    Kafka Connect's ``AvroData.fromConnectSchema`` of its Connect schemas (default
    converter settings, ``connect.meta.data=true``):

    - value: Connect struct ``com.trustpilot.connector.dynamodb.envelope`` -> Avro record
      ``envelope`` in namespace ``com.trustpilot.connector.dynamodb`` (AvroData splits the
      Connect name at its last dot and keeps the whole name as ``connect.name``); required
      STRING/INT64/BOOLEAN fields -> ``string``/``long``/``boolean``; ``document`` is the
      named string type ``com.trustpilot.connector.dynamodb.json`` version 1 -> a
      ``string`` carrying ``connect.name`` and ``connect.version``; ``source`` is the
      struct ``com.trustpilot.connector.dynamodb.source`` whose OPTIONAL_INT64 fields
      ``init_sync_end``/``init_sync_count`` become ``["null","long"]`` with
      ``"default": null``.
    - key: Connect struct ``<topic>.Key`` (Avro-adjusted: characters outside
      ``[A-Za-z0-9_.]`` -> ``_``) with one required string field per key attribute, its
      name sanitised as the connector did (characters outside ``[A-Za-z0-9_]`` dropped,
      and a leading digit).

native + avro
    DynamoDB is schemaless: an item's attributes and their types change from item to
    item, so a per-table record schema would have to evolve on every new attribute (and
    break compatibility whenever an attribute changes type).  The envelope is typed;
    the item parts (``keys``, ``before``, ``after``) are JSON *text* strings holding
    exactly the JSON of KAFKA_RECORD_FORMAT=json (numbers with all their digits), which
    every sink can store or parse.  The key is an Avro ``string``: the compact JSON key.

json_schema (both formats)
    The payload is the JSON of KAFKA_RECORD_FORMAT=json itself; the schema types the
    envelope and leaves item parts as open objects.
"""

from __future__ import annotations

import json
import re
import struct
from typing import Any, Literal

import orjson

from app.domain.errors import CodecError

RecordFormat = Literal["json", "avro", "json_schema"]
MAGIC = 0
_HEADER = struct.Struct(">bI")

SEED_NAMESPACE = "com.trustpilot.connector.dynamodb"
NATIVE_NAMESPACE = "dynamodb_replicator"


# ---------------------------------------------------------------- wire format
def frame(schema_id: int, payload: bytes) -> bytes:
    """Confluent wire format: magic byte 0, the schema id (4 bytes, big-endian), payload."""
    return _HEADER.pack(MAGIC, schema_id) + payload


def unframe(data: bytes) -> tuple[int, bytes]:
    """(schema id, payload) of a Confluent-framed record."""
    if len(data) < _HEADER.size or data[0] != MAGIC:
        raise ValueError("not in the Confluent wire format (magic byte 0 + 4-byte schema id)")
    return _HEADER.unpack_from(data)[1], data[_HEADER.size :]


def subject(topic: str, part: Literal["key", "value"]) -> str:
    """TopicNameStrategy."""
    return f"{topic}-{part}"


# ---------------------------------------------------------------- names
_AVRO_FIRST = re.compile(r"[A-Za-z_]")
_AVRO_REST = re.compile(r"[A-Za-z0-9_.]")


def adjust_fullname(name: str) -> str:
    """Debezium/the connector's SchemaNameAdjuster: every character that may not stand in
    an Avro fullname there becomes ``_``."""
    return "".join(
        c if (_AVRO_FIRST if i == 0 else _AVRO_REST).fullmatch(c) else "_"
        for i, c in enumerate(name)
    )


_ATTRIBUTE_DROP = re.compile(r"^[^a-zA-Z_]|(?<!^)[^a-zA-Z0-9_]")


def sanitise_attribute(name: str) -> str:
    """The connector's key field names: a leading non-letter and every other character
    outside [A-Za-z0-9_] are dropped."""
    out = _ATTRIBUTE_DROP.sub("", name)
    if not out:
        raise CodecError(f"key attribute {name!r} has no Avro field name (seed format)")
    return out


def _split(fullname: str) -> dict[str, str]:
    namespace, _, name = fullname.rpartition(".")
    return {"name": name, "namespace": namespace} if namespace else {"name": name}


# ---------------------------------------------------------------- Avro schemas
def _optional_long() -> dict[str, Any]:
    return {"type": ["null", "long"], "default": None}


SEED_VALUE_AVRO: dict[str, Any] = {
    "type": "record",
    "name": "envelope",
    "namespace": SEED_NAMESPACE,
    "fields": [
        {"name": "version", "type": "string"},
        {
            "name": "document",
            "type": {
                "type": "string",
                "connect.version": 1,
                "connect.name": f"{SEED_NAMESPACE}.json",
            },
        },
        {
            "name": "source",
            "type": {
                "type": "record",
                "name": "source",
                "namespace": SEED_NAMESPACE,
                "fields": [
                    {"name": "version", "type": "string"},
                    {"name": "table_name", "type": "string"},
                    {"name": "init_sync", "type": "boolean"},
                    {"name": "init_sync_state", "type": "string"},
                    {"name": "init_sync_start", "type": "long"},
                    {"name": "init_sync_end", **_optional_long()},
                    {"name": "init_sync_count", **_optional_long()},
                ],
                "connect.name": f"{SEED_NAMESPACE}.source",
            },
        },
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": "long"},
    ],
    "connect.name": f"{SEED_NAMESPACE}.envelope",
}


def seed_key_avro(topic: str, attributes: list[str]) -> dict[str, Any]:
    """The connector's key schema for ``topic`` with these (sanitised) key attributes."""
    fullname = adjust_fullname(f"{topic}.Key")
    return {
        "type": "record",
        **_split(fullname),
        "fields": [{"name": a, "type": "string"} for a in attributes],
        "connect.name": fullname,
    }


def _optional(t: str) -> dict[str, Any]:
    return {"type": ["null", t], "default": None}


NATIVE_VALUE_AVRO: dict[str, Any] = {
    "type": "record",
    "name": "ChangeEvent",
    "namespace": NATIVE_NAMESPACE,
    "doc": "A DynamoDB change event. keys/before/after hold the item's attributes as JSON "
    "text (DynamoDB items have no fixed schema): S string, N number with all its digits, "
    "B base64, SS/NS/BS sorted arrays, M object, L array, NULL null, BOOL boolean.",
    "fields": [
        {
            "name": "op",
            "type": "string",
            "doc": "r snapshot read, c insert, u modify, d remove",
        },
        {"name": "table", "type": "string"},
        {"name": "keys", "type": "string", "doc": "primary key attributes, JSON object text"},
        {"name": "before", **_optional("string"), "doc": "old image, JSON object text"},
        {"name": "after", **_optional("string"), "doc": "new image, JSON object text"},
        {"name": "ts_ms", "type": "long"},
        {
            "name": "source",
            "type": {
                "type": "record",
                "name": "Source",
                "fields": [
                    {"name": "stream_arn", **_optional("string")},
                    {"name": "shard_id", **_optional("string")},
                    {"name": "seq", **_optional("string"), "doc": "stream sequence number"},
                    {"name": "snapshot", "type": "boolean"},
                    {"name": "segment", **_optional("long")},
                    {"name": "total_segments", **_optional("long")},
                    {"name": "ttl_delete", "type": "boolean"},
                ],
            },
        },
    ],
}

NATIVE_KEY_AVRO: dict[str, Any] = {"type": "string"}


# ---------------------------------------------------------------- JSON Schemas
_DRAFT = "http://json-schema.org/draft-07/schema#"
_ITEM = {"type": "object", "description": "DynamoDB attributes as plain JSON"}


def _nullable(t: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(t, str):
        return {"type": [t, "null"]}
    return {"oneOf": [{"type": "null"}, t]}


NATIVE_VALUE_JSON: dict[str, Any] = {
    "$schema": _DRAFT,
    "title": "dynamodb_replicator.ChangeEvent",
    "type": "object",
    "additionalProperties": False,
    "required": ["op", "table", "keys", "before", "after", "ts_ms", "source"],
    "properties": {
        "op": {"type": "string", "enum": ["r", "c", "u", "d"]},
        "table": {"type": "string"},
        "keys": _ITEM,
        "before": _nullable(_ITEM),
        "after": _nullable(_ITEM),
        "ts_ms": {"type": "integer"},
        "source": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "stream_arn",
                "shard_id",
                "seq",
                "snapshot",
                "segment",
                "total_segments",
                "ttl_delete",
            ],
            "properties": {
                "stream_arn": _nullable("string"),
                "shard_id": _nullable("string"),
                "seq": _nullable("string"),
                "snapshot": {"type": "boolean"},
                "segment": _nullable("integer"),
                "total_segments": _nullable("integer"),
                "ttl_delete": {"type": "boolean"},
            },
        },
    },
}

NATIVE_KEY_JSON: dict[str, Any] = {
    "$schema": _DRAFT,
    "title": "dynamodb_replicator.Key",
    "description": "the item's primary key attributes as plain JSON",
    "type": "object",
}

SEED_VALUE_JSON: dict[str, Any] = {
    "$schema": _DRAFT,
    "title": f"{SEED_NAMESPACE}.envelope",
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "document", "source", "op", "ts_ms"],
    "properties": {
        "version": {"type": "string"},
        "document": {"type": "string", "description": "the item in AWS SDK v1 JSON"},
        "source": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "version",
                "table_name",
                "init_sync",
                "init_sync_state",
                "init_sync_start",
                "init_sync_end",
                "init_sync_count",
            ],
            "properties": {
                "version": {"type": "string"},
                "table_name": {"type": "string"},
                "init_sync": {"type": "boolean"},
                "init_sync_state": _nullable("string"),
                "init_sync_start": _nullable("integer"),
                "init_sync_end": _nullable("integer"),
                "init_sync_count": _nullable("integer"),
            },
        },
        "op": {"type": "string", "enum": ["r", "c", "u", "d"]},
        "ts_ms": {"type": "integer"},
    },
}

SEED_KEY_JSON: dict[str, Any] = {
    "$schema": _DRAFT,
    "title": f"{SEED_NAMESPACE}.Key",
    "description": "the item's key attributes as strings",
    "type": "object",
    "additionalProperties": {"type": "string"},
}


def canonical(schema: dict[str, Any]) -> str:
    """The schema text registered (stable: the same text for the same schema)."""
    return orjson.dumps(schema).decode()


# ---------------------------------------------------------------- values
_I64 = (-(2**63), 2**63 - 1)


def _exact_int(text: str) -> int | orjson.Fragment:
    n = int(text)
    return n if _I64[0] <= n <= _I64[1] else orjson.Fragment(text)  # orjson: 64-bit ints


def load_exact(data: bytes) -> Any:
    """JSON -> Python with every number kept exactly (decimals, and integers past 64
    bits, as their text in an orjson.Fragment), so that dumping a part again gives the
    very digits the encoder wrote (38-digit N values)."""
    return json.loads(data, parse_int=_exact_int, parse_float=orjson.Fragment)


def _int_or_none(v: Any) -> int | None:
    return None if v is None else int(v)


def _json_text(v: Any) -> str:
    return orjson.dumps(v).decode()


def _load_envelope(value: bytes) -> Any:
    """orjson's parse when it gives the bytes back exactly (most events: ~70x faster),
    else the exact parse (decimals orjson would round, integers past 64 bits, number
    texts such as 1.50 or 1E+125)."""
    try:
        doc = orjson.loads(value)
        if orjson.dumps(doc) == value:
            return doc
    except orjson.JSONDecodeError:
        pass
    return load_exact(value)


def native_avro_value(value: bytes) -> dict[str, Any]:
    """The native envelope's JSON -> the datum of NATIVE_VALUE_AVRO."""
    doc = _load_envelope(value)
    src = doc["source"]
    return {
        "op": doc["op"],
        "table": doc["table"],
        "keys": _json_text(doc["keys"]),
        "before": None if doc["before"] is None else _json_text(doc["before"]),
        "after": None if doc["after"] is None else _json_text(doc["after"]),
        "ts_ms": _int_or_none(doc["ts_ms"]),
        "source": {
            "stream_arn": src["stream_arn"],
            "shard_id": src["shard_id"],
            "seq": src["seq"],
            "snapshot": src["snapshot"],
            "segment": _int_or_none(src["segment"]),
            "total_segments": _int_or_none(src["total_segments"]),
            "ttl_delete": src["ttl_delete"],
        },
    }


def native_avro_key(key: bytes) -> str:
    return key.decode()


# The connector's SourceInfo after skipInitSync(): what its records carried when no
# snapshot ran (our seed JSON has nulls there; the Avro schema, like the connector's,
# requires init_sync_state and init_sync_start).
SKIPPED = {
    "init_sync_state": "SKIPPED",
    "init_sync_start": 0,
    "init_sync_end": 0,
    "init_sync_count": 0,
}


def seed_avro_value(value: bytes) -> dict[str, Any]:
    """The seed envelope's JSON -> the datum of SEED_VALUE_AVRO."""
    doc = orjson.loads(value)
    src = dict(doc["source"])
    if src["init_sync_state"] is None:
        src.update(SKIPPED)
    return {
        "version": doc["version"],
        "document": doc["document"],
        "source": src,
        "op": doc["op"],
        "ts_ms": doc["ts_ms"],
    }


def seed_avro_key(key: bytes) -> dict[str, str]:
    """The seed key's JSON -> the datum of :func:`seed_key_avro` (sanitised names)."""
    return {sanitise_attribute(k): v for k, v in orjson.loads(key).items()}


def seed_key_attributes(key: bytes) -> list[str]:
    """The key schema's fields for a topic, from one of its keys."""
    return list(seed_avro_key(key))
