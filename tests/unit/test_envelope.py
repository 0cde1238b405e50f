"""app.domain.envelope: Kafka (key, value) bytes in the native and seed formats."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain import codec, envelope
from app.domain.envelope import Encoder, SnapshotInfo, SourceInfo
from app.domain.errors import CodecError, ConfigError
from app.domain.model import Item, StreamRecord

ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000"
KEYS: Item = {"pk": {"S": "order#1"}, "sk": {"N": "12345678901234567890123456789012345678"}}
OLD: Item = {**KEYS, "status": {"S": "new"}, "blob": {"B": b"\x00\xff"}}
NEW: Item = {
    **KEYS,
    "status": {"S": "paid"},
    "blob": {"B": b"\x00\xff"},
    "tags": {"SS": ["b", "a"]},
}


def record(event: str, *, ttl: bool = False, old: Any = OLD, new: Any = NEW) -> StreamRecord:
    return StreamRecord(
        event_name=event,  # type: ignore[arg-type]
        sequence_number="4960000000000000000001",
        approx_ts_ms=1_700_000_000_000,
        keys=KEYS,
        new_image=None if event == "REMOVE" else new,
        old_image=None if event == "INSERT" else old,
        ttl_delete=ttl,
    )


def loads(b: bytes | None) -> Any:
    assert b is not None
    return json.loads(b, parse_float=Decimal, parse_int=Decimal)


# --------------------------------------------------------------------------- op_for


@pytest.mark.parametrize(("name", "op"), [("INSERT", "c"), ("MODIFY", "u"), ("REMOVE", "d")])
def test_op_for(name: str, op: str) -> None:
    assert envelope.op_for(name) == op


def test_op_for_unknown() -> None:
    with pytest.raises(CodecError):
        envelope.op_for("UPSERT")


# --------------------------------------------------------------------------- native


def test_native_envelope_fields_exactly() -> None:
    src = SourceInfo("orders", stream_arn=ARN, shard_id="shardId-1", seq="42", ttl_delete=False)
    [(key, value)] = envelope.native("u", KEYS, OLD, NEW, 1_700_000_000_000, src, tombstones=True)
    assert key == b'{"pk":"order#1","sk":12345678901234567890123456789012345678}'
    assert value == (
        b'{"op":"u","table":"orders",'
        b'"keys":{"pk":"order#1","sk":12345678901234567890123456789012345678},'
        b'"before":{"pk":"order#1","sk":12345678901234567890123456789012345678,'
        b'"status":"new","blob":"AP8="},'
        b'"after":{"pk":"order#1","sk":12345678901234567890123456789012345678,'
        b'"status":"paid","blob":"AP8=","tags":["a","b"]},'
        b'"ts_ms":1700000000000,'
        b'"source":{"stream_arn":"' + ARN.encode() + b'","shard_id":"shardId-1","seq":"42",'
        b'"snapshot":false,"segment":null,"total_segments":null,"ttl_delete":false}}'
    )


def test_native_snapshot_source() -> None:
    src = SourceInfo("orders", snapshot=True, segment=3, total_segments=8)
    [(_, value)] = envelope.native("r", KEYS, None, NEW, 5, src, tombstones=True)
    v = loads(value)
    assert v["op"] == "r"
    assert v["before"] is None
    assert v["source"] == {
        "stream_arn": None,
        "shard_id": None,
        "seq": None,
        "snapshot": True,
        "segment": 3,
        "total_segments": 8,
        "ttl_delete": False,
    }


def test_native_tombstone_after_delete() -> None:
    src = SourceInfo("orders", seq="1", ttl_delete=True)
    out = envelope.native("d", KEYS, OLD, None, 7, src, tombstones=True)
    assert len(out) == 2
    (k1, v1), (k2, v2) = out
    assert k1 == k2 == codec.key_json(KEYS)
    assert v2 is None
    v = loads(v1)
    assert v["op"] == "d"
    assert v["after"] is None
    assert v["source"]["ttl_delete"] is True


def test_native_no_tombstone_when_disabled() -> None:
    out = envelope.native("d", KEYS, OLD, None, 7, SourceInfo("orders"), tombstones=False)
    assert len(out) == 1
    assert out[0][1] is not None


@pytest.mark.parametrize("op", ["r", "c", "u"])
def test_native_no_tombstone_for_other_ops(op: str) -> None:
    out = envelope.native(op, KEYS, None, NEW, 7, SourceInfo("orders"), tombstones=True)  # type: ignore[arg-type]
    assert len(out) == 1


def test_native_unknown_op() -> None:
    with pytest.raises(CodecError):
        envelope.native("x", KEYS, None, NEW, 7, SourceInfo("t"), True)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- seed


def test_seed_envelope_fields_exactly() -> None:
    snap = SnapshotInfo(running=True, start_ms=1000, end_ms=None, count=12)
    [(key, value)] = envelope.seed("r", KEYS, None, NEW, 1_700_000_000_000, "orders", snap, True)
    assert key == b'{"pk":"order#1","sk":"12345678901234567890123456789012345678"}'
    v = json.loads(value)  # type: ignore[arg-type]
    assert list(v) == ["version", "document", "source", "op", "ts_ms"]
    assert v == {
        "version": "1.0",
        "document": v["document"],
        "source": {
            "version": "1.0",
            "table_name": "orders",
            "init_sync": True,
            "init_sync_state": "RUNNING",
            "init_sync_start": 1000,
            "init_sync_end": None,
            "init_sync_count": 12,
        },
        "op": "r",
        "ts_ms": 1_700_000_000_000,
    }
    assert isinstance(v["document"], str)
    assert json.loads(v["document"]) == {
        "pk": {"s": "order#1"},
        "sk": {"n": "12345678901234567890123456789012345678"},
        "status": {"s": "paid"},
        "blob": {"b": "AP8="},
        "tags": {"ss": ["b", "a"]},
    }
    assert codec.sdk_v1_to_item(json.loads(v["document"])) == NEW


def test_seed_exact_bytes_small() -> None:
    keys = {"id": {"N": "7"}}
    snap = SnapshotInfo(running=False, start_ms=1, end_ms=2, count=3)
    out = envelope.seed("c", keys, None, {**keys, "x": {"BOOL": True}}, 9, "t", snap, True)
    assert out == [
        (
            b'{"id":"7"}',
            (
                b'{"version":"1.0","document":"{\\"id\\":{\\"n\\":\\"7\\"},\\"x\\":{\\"bool\\":true}}",'
                b'"source":{"version":"1.0","table_name":"t","init_sync":false,'
                b'"init_sync_state":"FINISHED","init_sync_start":1,"init_sync_end":2,'
                b'"init_sync_count":3},"op":"c","ts_ms":9}'
            ),
        )
    ]


def test_seed_without_snapshot_info() -> None:
    [(_, value)] = envelope.seed("u", KEYS, OLD, NEW, 1, "orders", None, True)
    src = json.loads(value)["source"]  # type: ignore[arg-type]
    assert src["init_sync"] is False
    assert src["init_sync_state"] is None
    assert src["init_sync_start"] is None
    assert src["init_sync_end"] is None
    assert src["init_sync_count"] is None


def test_seed_delete_documents_keys_then_tombstone() -> None:
    out = envelope.seed("d", KEYS, OLD, None, 1, "orders", None, True)
    assert len(out) == 2
    (k1, v1), (k2, v2) = out
    assert k1 == k2
    assert v2 is None
    v = json.loads(v1)  # type: ignore[arg-type]
    assert v["op"] == "d"
    assert json.loads(v["document"]) == {
        "pk": {"s": "order#1"},
        "sk": {"n": "12345678901234567890123456789012345678"},
    }


def test_seed_no_tombstone_when_disabled() -> None:
    assert len(envelope.seed("d", KEYS, OLD, None, 1, "orders", None, False)) == 1


def test_seed_binary_key() -> None:
    [(key, _)] = envelope.seed("c", {"id": {"B": b"\x01\xfe"}}, None, None, 1, "t", None, False)
    assert key == b'{"id":"Af4="}'


# --------------------------------------------------------------------------- Encoder


def test_encoder_rejects_unknown_format() -> None:
    with pytest.raises(ConfigError):
        Encoder("avro", True)  # type: ignore[arg-type]


def test_encoder_change_native() -> None:
    enc = Encoder("native", tombstones=True)
    out = enc.change("orders", ("pk", "sk"), record("MODIFY", ttl=False), ARN, "shardId-1", None)
    [(key, value)] = out
    assert key == codec.key_json(KEYS)
    v = loads(value)
    assert v["op"] == "u"
    assert v["table"] == "orders"
    assert v["ts_ms"] == 1_700_000_000_000
    assert v["before"]["status"] == "new"
    assert v["after"]["status"] == "paid"
    assert v["keys"] == {"pk": "order#1", "sk": Decimal(12345678901234567890123456789012345678)}
    assert v["source"] == {
        "stream_arn": ARN,
        "shard_id": "shardId-1",
        "seq": "4960000000000000000001",
        "snapshot": False,
        "segment": None,
        "total_segments": None,
        "ttl_delete": False,
    }


def test_encoder_change_ttl_remove_with_tombstone() -> None:
    enc = Encoder("native", tombstones=True)
    out = enc.change("orders", ("pk", "sk"), record("REMOVE", ttl=True), ARN, "s", None)
    assert [v is None for _, v in out] == [False, True]
    v = loads(out[0][1])
    assert v["op"] == "d"
    assert v["after"] is None
    assert v["source"]["ttl_delete"] is True


def test_encoder_insert_has_no_before() -> None:
    out = Encoder("native", False).change("orders", ("pk", "sk"), record("INSERT"), ARN, "s", None)
    v = loads(out[0][1])
    assert v["op"] == "c"
    assert v["before"] is None


def test_encoder_change_seed() -> None:
    snap = SnapshotInfo(running=False, start_ms=10, end_ms=20, count=2)
    out = Encoder("seed", True).change("orders", ("pk", "sk"), record("MODIFY"), ARN, "s", snap)
    [(key, value)] = out
    assert key == b'{"pk":"order#1","sk":"12345678901234567890123456789012345678"}'
    v = json.loads(value)  # type: ignore[arg-type]
    assert v["op"] == "u"
    assert v["source"]["init_sync"] is False
    assert v["source"]["init_sync_state"] == "FINISHED"
    assert codec.sdk_v1_to_item(json.loads(v["document"])) == NEW


@pytest.mark.parametrize("fmt", ["native", "seed"])
def test_encoder_snapshot(fmt: str) -> None:
    snap = SnapshotInfo(running=True, start_ms=10, end_ms=None, count=0)
    item = {"other": {"S": "x"}, **KEYS}
    [(key, value)] = Encoder(fmt, True).snapshot("orders", ("pk", "sk"), item, 2, 4, 99, snap)  # type: ignore[arg-type]
    v = json.loads(value)  # type: ignore[arg-type]
    assert v["op"] == "r"
    assert v["ts_ms"] == 99
    if fmt == "native":
        assert key == codec.key_json(KEYS)
        assert v["source"]["snapshot"] is True
        assert (v["source"]["segment"], v["source"]["total_segments"]) == (2, 4)
        assert v["keys"] == {"pk": "order#1", "sk": 12345678901234567890123456789012345678}
    else:
        assert key == codec.dumps(codec.seed_key(KEYS), orjson.OPT_SORT_KEYS)
        assert v["source"]["init_sync"] is True
        assert v["source"]["init_sync_state"] == "RUNNING"


def test_encoder_snapshot_missing_key_attribute() -> None:
    with pytest.raises(CodecError, match=r"table orders .*key attribute 'sk' missing"):
        Encoder("native", True).snapshot("orders", ("pk", "sk"), {"pk": {"S": "a"}}, 0, 1, 1, None)


@pytest.mark.parametrize("fmt", ["native", "seed"])
def test_encoder_change_error_names_table_and_seq(fmt: str) -> None:
    bad = {**NEW, "price": {"N": "NaN"}}
    rec = record("MODIFY", new=bad)
    with pytest.raises(
        CodecError, match=r"table orders seq 4960000000000000000001: attribute price: invalid"
    ) as ei:
        Encoder(fmt, True).change("orders", ("pk", "sk"), rec, ARN, "s", None)  # type: ignore[arg-type]
    assert ei.value.resource == "orders"


def test_source_info_defaults() -> None:
    s = SourceInfo("t")
    assert (s.stream_arn, s.shard_id, s.seq, s.snapshot) == (None, None, None, False)
    assert (s.segment, s.total_segments, s.ttl_delete) == (None, None, False)


# --------------------------------------------------------------------------- property


@settings(deadline=None, max_examples=100)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.one_of(
            st.builds(lambda s: {"S": s}, st.text(max_size=10)),
            st.builds(lambda i: {"N": str(i)}, st.integers(-(10**38) + 1, 10**38 - 1)),
            st.builds(lambda b: {"B": b}, st.binary(max_size=10)),
        ),
        min_size=1,
        max_size=2,
    ),
    st.sampled_from(["INSERT", "MODIFY", "REMOVE"]),
    st.booleans(),
)
def test_native_and_seed_agree_on_keys(keys: dict[str, Any], event: str, tomb: bool) -> None:
    rec = StreamRecord(event, "1", 0, keys, None if event == "REMOVE" else keys, None)  # type: ignore[arg-type]
    native = Encoder("native", tomb).change("t", tuple(keys), rec, None, None, None)
    seed = Encoder("seed", tomb).change("t", tuple(keys), rec, None, None, None)
    assert len(native) == len(seed) == (2 if tomb and event == "REMOVE" else 1)
    nk = json.loads(native[0][0], parse_int=str, parse_float=str)
    sk = json.loads(seed[0][0])
    assert list(nk) == sorted(keys) == list(sk)
    assert {k: str(v) for k, v in nk.items()} == sk


# --------------------------------------------------------------------------- Encoder fast path


@pytest.mark.parametrize("fmt", ["native", "seed"])
def test_encoder_snapshot_error_is_the_reference_one(fmt: str) -> None:
    """snapshot converts the item once (keys reused from it); when both a key and an
    earlier attribute are bad, the key's error is still the one reported, as when the
    keys were converted first."""
    item = {"bad": {"N": "NaN"}, "pk": {"S": 1}, "sk": {"N": "1"}}
    with pytest.raises(CodecError, match=r"table orders snapshot segment 0/1: attribute pk"):
        Encoder(fmt, True).snapshot("orders", ("pk", "sk"), item, 0, 1, 1, None)  # type: ignore[arg-type]


@settings(deadline=None, max_examples=100)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.one_of(
            st.builds(lambda s: {"S": s}, st.text(max_size=10)),
            st.builds(lambda i: {"N": str(i)}, st.integers(-(10**38) + 1, 10**38 - 1)),
            st.builds(lambda b: {"B": b}, st.binary(max_size=10)),
            st.builds(lambda b: {"BOOL": b}, st.booleans()),
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["INSERT", "MODIFY", "REMOVE"]),
    st.booleans(),
    st.sampled_from([None, SnapshotInfo(running=False, start_ms=1, end_ms=2, count=3)]),
)
def test_encoder_matches_native_and_seed(
    item: dict[str, Any], event: str, tomb: bool, snap: SnapshotInfo | None
) -> None:
    """Encoder.change/snapshot build envelopes directly; the bytes (or the error) are
    native()/seed()'s."""

    def outcome(fn: Any, *args: Any, prefix: str = "") -> Any:
        try:
            return fn(*args)
        except CodecError as e:
            return prefix + str(e)

    key_names = tuple(item)[:2]
    keys = {k: item[k] for k in key_names}
    old = None if event == "INSERT" else item
    new = None if event == "REMOVE" else item
    rec = StreamRecord(event, "42", 7, keys, new, old, ttl_delete=tomb)  # type: ignore[arg-type]
    op = envelope.op_for(event)
    src = SourceInfo("t", stream_arn=ARN, shard_id="s", seq="42", ttl_delete=tomb)
    snap_src = SourceInfo("t", snapshot=True, segment=1, total_segments=2)
    ch, sn = "table t seq 42: ", "table t snapshot segment 1/2: "
    expected = {
        "native": (
            outcome(envelope.native, op, keys, old, new, 7, src, tomb, prefix=ch),
            outcome(envelope.native, "r", keys, None, item, 9, snap_src, tomb, prefix=sn),
        ),
        "seed": (
            outcome(envelope.seed, op, keys, old, new, 7, "t", snap, tomb, prefix=ch),
            outcome(envelope.seed, "r", keys, None, item, 9, "t", snap, tomb, prefix=sn),
        ),
    }
    for fmt in ("native", "seed"):
        enc = Encoder(fmt, tomb)  # type: ignore[arg-type]
        got = (
            outcome(enc.change, "t", key_names, rec, ARN, "s", snap),
            outcome(enc.snapshot, "t", key_names, item, 1, 2, 9, snap),
        )
        assert got == expected[fmt]
