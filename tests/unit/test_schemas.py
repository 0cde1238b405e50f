"""app/domain/schemas.py: the registered schemas, the Confluent framing and the datums,
checked with fastavro and jsonschema on the encoder's own output (no registry here;
tests/integration/test_schema_registry.py has the real one)."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from typing import Any

import fastavro
import jsonschema
import pytest

from app.domain import schemas
from app.domain.envelope import Encoder, SnapshotInfo
from app.domain.errors import CodecError
from app.domain.model import StreamRecord

BIG = "12345678901234567890123456789012345678"
ITEM: dict[str, Any] = {
    "pk": {"S": "a"},
    "sk": {"N": "3"},
    "n": {"N": BIG},
    "frac": {"N": "-1.2345678901234567890123456789012345678E-120"},
    "huge": {"N": "9" * 38},
    "b": {"B": "AAH/"},
    "ss": {"SS": ["b", "a"]},
    "ns": {"NS": ["10", "2"]},
    "bs": {"BS": ["Ag==", "AQ=="]},
    "m": {"M": {"x": {"L": [{"NULL": True}, {"BOOL": True}]}}},
}


def _avro_round_trip(schema: dict[str, Any], datum: Any) -> Any:
    parsed = fastavro.parse_schema(json.loads(schemas.canonical(schema)))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, datum)
    return fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), parsed)


def test_frame_is_magic_zero_and_a_big_endian_id() -> None:
    framed = schemas.frame(258, b"payload")
    assert framed == b"\x00\x00\x00\x01\x02payload"
    assert schemas.unframe(framed) == (258, b"payload")
    with pytest.raises(ValueError, match="wire format"):
        schemas.unframe(b"\x01\x00\x00\x00\x01x")
    with pytest.raises(ValueError, match="wire format"):
        schemas.unframe(b"\x00\x00")


def test_subjects_follow_the_topic_name_strategy() -> None:
    assert schemas.subject("dynamodb-orders", "key") == "dynamodb-orders-key"
    assert schemas.subject("dynamodb-orders", "value") == "dynamodb-orders-value"


def test_names_are_adjusted_as_the_connector_did() -> None:
    assert schemas.adjust_fullname("dynamodb-orders.Key") == "dynamodb_orders.Key"
    assert schemas.adjust_fullname("9x.y") == "_x.y"
    assert schemas.sanitise_attribute("user-id") == "userid"
    assert schemas.sanitise_attribute("1st") == "st"
    with pytest.raises(CodecError, match="no Avro field name"):
        schemas.sanitise_attribute("-")


def test_the_seed_value_schema_is_avrodata_of_the_connectors_connect_schema() -> None:
    s = schemas.SEED_VALUE_AVRO
    assert (s["name"], s["namespace"]) == ("envelope", "com.trustpilot.connector.dynamodb")
    assert s["connect.name"] == "com.trustpilot.connector.dynamodb.envelope"
    fields = {f["name"]: f["type"] for f in s["fields"]}
    assert list(fields) == ["version", "document", "source", "op", "ts_ms"]
    assert fields["version"] == "string" and fields["op"] == "string"
    assert fields["ts_ms"] == "long"
    assert fields["document"]["connect.name"] == "com.trustpilot.connector.dynamodb.json"
    source = {f["name"]: f for f in fields["source"]["fields"]}
    assert source["init_sync_start"]["type"] == "long"  # INT64_SCHEMA: required
    assert source["init_sync_end"]["type"] == ["null", "long"]  # OPTIONAL_INT64_SCHEMA
    assert source["init_sync_end"]["default"] is None
    key = schemas.seed_key_avro("dynamodb-orders", ["pk", "sk"])
    assert (key["name"], key["namespace"]) == ("Key", "dynamodb_orders")
    assert [f["type"] for f in key["fields"]] == ["string", "string"]


def test_native_avro_keeps_every_digit_and_every_type() -> None:
    (key, value), *_ = Encoder("native", True).snapshot("t", ("pk", "sk"), ITEM, 2, 4, 99, None)
    datum = schemas.native_avro_value(value)
    back = _avro_round_trip(schemas.NATIVE_VALUE_AVRO, datum)
    # the item parts are exactly the JSON of KAFKA_RECORD_FORMAT=json
    expected = json.loads(value)
    assert json.loads(back["after"]) == expected["after"]
    assert f'"n":{BIG}' in back["after"] and '"huge":' + "9" * 38 in back["after"]
    assert json.loads(back["after"], parse_float=Decimal)["frac"] == Decimal(
        "-1.2345678901234567890123456789012345678E-120"
    )
    assert json.loads(back["keys"]) == {"pk": "a", "sk": 3} and back["before"] is None
    assert back["source"]["segment"] == 2 and back["source"]["total_segments"] == 4
    assert back["ts_ms"] == 99 and back["op"] == "r"
    assert _avro_round_trip(schemas.NATIVE_KEY_AVRO, schemas.native_avro_key(key)) == (key.decode())


def test_native_delete_and_tombstone() -> None:
    rec = StreamRecord(
        event_name="REMOVE",
        sequence_number="1" * 30,
        keys={"pk": {"S": "a"}},
        old_image={"pk": {"S": "a"}, "n": {"N": BIG}},
        new_image=None,
        approx_ts_ms=5,
        ttl_delete=True,
    )
    (key, value), (tkey, tomb) = Encoder("native", True).change(
        "t", ("pk",), rec, "arn", "s1", None
    )
    back = _avro_round_trip(schemas.NATIVE_VALUE_AVRO, schemas.native_avro_value(value))
    assert back["op"] == "d" and back["after"] is None and f'"n":{BIG}' in back["before"]
    assert back["source"]["seq"] == "1" * 30 and back["source"]["ttl_delete"] is True
    assert tomb is None and tkey == key


def test_seed_avro_value_and_key() -> None:
    snap = SnapshotInfo(running=False, start_ms=10, end_ms=20, count=3)
    (key, value), *_ = Encoder("seed", True).snapshot("t", ("pk", "sk"), ITEM, 0, 1, 7, snap)
    back = _avro_round_trip(schemas.SEED_VALUE_AVRO, schemas.seed_avro_value(value))
    assert back == {**json.loads(value), "source": {**json.loads(value)["source"]}}
    assert back["source"]["init_sync_state"] == "FINISHED"
    attrs = schemas.seed_key_attributes(key)
    key_back = _avro_round_trip(schemas.seed_key_avro("t", attrs), schemas.seed_avro_key(key))
    assert key_back == {"pk": "a", "sk": "3"}


def test_seed_avro_without_snapshot_info_is_the_connectors_skipped_sync() -> None:
    (_, value), *_ = Encoder("seed", True).snapshot("t", ("pk", "sk"), ITEM, 0, 1, 7, None)
    assert json.loads(value)["source"]["init_sync_state"] is None
    src = _avro_round_trip(schemas.SEED_VALUE_AVRO, schemas.seed_avro_value(value))["source"]
    assert (src["init_sync_state"], src["init_sync_start"]) == ("SKIPPED", 0)
    assert (src["init_sync_end"], src["init_sync_count"]) == (0, 0)


@pytest.mark.parametrize(
    ("fmt", "key_schema", "value_schema"),
    [
        ("native", schemas.NATIVE_KEY_JSON, schemas.NATIVE_VALUE_JSON),
        ("seed", schemas.SEED_KEY_JSON, schemas.SEED_VALUE_JSON),
    ],
)
def test_json_schemas_accept_the_encoders_json_and_refuse_other_shapes(
    fmt: Any, key_schema: dict[str, Any], value_schema: dict[str, Any]
) -> None:
    jsonschema.Draft7Validator.check_schema(value_schema)
    (key, value), *_ = Encoder(fmt, True).snapshot("t", ("pk", "sk"), ITEM, 0, 1, 7, None)
    jsonschema.validate(json.loads(key), key_schema)
    jsonschema.validate(json.loads(value), value_schema)
    wrong = {**json.loads(value), "op": "x"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, value_schema)
    missing = {k: v for k, v in json.loads(value).items() if k != "ts_ms"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(missing, value_schema)


def test_load_exact_keeps_numbers_as_written() -> None:
    text = b'{"a":1.50,"b":123456789012345678901234567890,"c":-7,"d":[1e400]}'
    doc = schemas.load_exact(text)
    assert doc["c"] == -7  # 64-bit integers stay ints (the envelope's ts_ms, segment)
    assert schemas.canonical(doc).encode() == text
