"""The control topic's protocol: unit ids and the one codec of its messages (pure)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain import protocol as pr
from app.domain.protocol import UnitId

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000"
SHARD_UID = f"shard|orders|3|{ARN}|shardId-00000001700000000000-abcdef01"
SCAN_UID = "scan|orders|3|2|8"
REPLAY_UID = "replay|orders|3|5"
INFO = {
    "name": "orders",
    "table_arn": "arn:aws:dynamodb:us-east-1:1:table/orders",
    "stream_arn": ARN,
    "key_names": ["pk"],
    "item_count": 1,
    "size_bytes": 2,
    "read_capacity": 0,
    "view_type": "NEW_AND_OLD_IMAGES",
}
SPEC = {
    "kind": "scan",
    "table": "orders",
    "epoch": 3,
    "key_names": ["pk"],
    "stream_arn": ARN,
    "cutoff_ms": 0,
    "snapshot_start_ms": 1,
    "snapshot_end_ms": None,
    "snapshot_items": 0,
    "segment": 2,
    "total": 8,
    "rcu": None,
}
LISTING = [["a", None, "100000000000000000000", "100000000000000000010"], ["b", "a", "1", None]]

# ---------------------------------------------------------------- unit ids
table_names = st.from_regex(r"[A-Za-z0-9_.\-]{1,255}", fullmatch=True)  # DynamoDB's alphabet
no_bar = st.text(st.characters(blacklist_characters="|", codec="utf-8"), min_size=1, max_size=80)
epochs = st.integers(min_value=0, max_value=10**9)
unplaced_ids = st.one_of(
    st.builds(UnitId.scan, table_names, epochs, st.integers(0, 10**6), st.integers(1, 10**6)),
    st.builds(UnitId.watch, table_names, epochs),
    st.builds(UnitId.shard, table_names, epochs, no_bar, no_bar),
    st.builds(UnitId.replay, table_names, epochs, st.integers(0, 10**4)),
)
unit_ids = st.builds(UnitId.placed, unplaced_ids, st.none() | st.integers(0, 1023))


@given(unit_ids)
def test_unit_id_format_parse_round_trip(uid: UnitId):
    text = uid.format()
    assert UnitId.parse(text) == uid
    assert UnitId.parse(text).format() == text == str(uid)


def test_unit_id_formats_are_the_ones_in_the_topics():
    assert UnitId.scan("orders", 3, 2, 8).format() == SCAN_UID
    assert UnitId.watch("orders", 3).format() == "watch|orders|3"
    assert (
        UnitId.shard("orders", 3, ARN, "shardId-00000001700000000000-abcdef01").format()
        == SHARD_UID
    )
    assert UnitId.parse(SHARD_UID) == UnitId(
        "shard", "orders", 3, stream_arn=ARN, shard_id="shardId-00000001700000000000-abcdef01"
    )
    assert UnitId.parse(SCAN_UID) == UnitId("scan", "orders", 3, segment=2, total=8)
    assert UnitId.replay("orders", 3, 5).format() == REPLAY_UID
    assert UnitId.parse(REPLAY_UID) == UnitId("replay", "orders", 3, partition=5)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "orders",
        "scan|orders|3",
        "scan|orders|3|2",
        "scan|orders|x|2|8",
        "scan|orders|3|2|8|9",
        "watch|orders",
        "watch|orders|3|4",
        "shard|orders|3|arn",
        "replay|orders|3",
        "replay|orders|3|x",
        "replay|orders|3|1|2",
        "replay|orders|3|01",
        "bogus|orders|3",
        "scan|orders|03|2|8",
        "scan||3|2|8",
        "shard|orders|3||s",
        "scan|orders|3|0|1~2",
        " scan|o|1",
    ],
)
def test_unit_id_parse_refuses_what_format_never_writes(text: str):
    with pytest.raises(pr.ProtocolError, match="not a unit id"):
        UnitId.parse(text)


def test_unit_id_parse_refuses_what_is_not_text():
    for value in (None, 3, ["scan"], {"kind": "scan"}):
        with pytest.raises(pr.ProtocolError):
            UnitId.parse(value)  # type: ignore[arg-type]


def test_unit_id_format_refuses_a_separator_or_empty_part():
    with pytest.raises(pr.ProtocolError):
        UnitId.watch("a|b", 1).format()
    with pytest.raises(pr.ProtocolError):
        UnitId.shard("t", 1, ARN, "").format()


# ---------------------------------------------------------------- the codec
# Every message as the senders wrote it before the typed protocol (key, value), and what
# it decodes to.  encode(decode(x)) must give x back, field order included.
WIRE: list[tuple[str, dict[str, Any], pr.Message]] = [
    (
        "t:orders",
        {"type": "discovered", "info": INFO, "now": 5, "fp": "f1"},
        pr.Discovered(table="orders", info=INFO, now=5, fp="f1"),
    ),
    ("t:orders", {"type": "discovered", "info": INFO}, pr.Discovered(table="orders", info=INFO)),
    (
        "t:orders",
        {"type": "refused", "reason": "KEYS_ONLY", "info": INFO, "now": 5, "fp": "f1"},
        pr.Refused(table="orders", reason="KEYS_ONLY", info=INFO, now=5, fp="f1"),
    ),
    (
        "t:orders",
        {
            "type": "unit_done",
            "unit": SCAN_UID,
            "kind": "scan",
            "epoch": 3,
            "segment": 2,
            "shard_id": None,
            "count": 9,
            "listing": None,
            "fp": "f1",
        },
        pr.UnitDone(
            table="orders", unit=SCAN_UID, kind="scan", epoch=3, segment=2, count=9, fp="f1"
        ),
    ),
    (
        "t:orders",
        {
            "type": "unit_done",
            "unit": SHARD_UID,
            "kind": "shard",
            "epoch": 3,
            "segment": None,
            "shard_id": "s1",
            "count": 4,
            "listing": LISTING,
        },
        pr.UnitDone(
            table="orders",
            unit=SHARD_UID,
            kind="shard",
            epoch=3,
            shard_id="s1",
            count=4,
            listing=LISTING,
        ),
    ),
    (
        "t:orders",
        {"type": "shards", "epoch": 3, "listing": LISTING, "fp": "f1"},
        pr.Shards(table="orders", epoch=3, listing=LISTING, fp="f1"),
    ),
    (
        "t:orders",
        {"type": "unit_failed", "unit": SHARD_UID, "epoch": 3, "error": "denied"},
        pr.UnitFailed(table="orders", unit=SHARD_UID, epoch=3, error="denied"),
    ),
    (
        "t:orders",
        {"type": "resnapshot", "reason": "trimmed", "epoch": 3, "fp": "f1"},
        pr.Resnapshot(table="orders", reason="trimmed", epoch=3, fp="f1"),
    ),
    (
        "t:orders",
        {
            "type": "resnapshot",
            "reason": "requested by an operator (resync)",
            "fp": "f2",
        },  # the CLI's resync: any epoch
        pr.Resnapshot(table="orders", reason="requested by an operator (resync)", fp="f2"),
    ),
    ("t:orders", {"type": "stop"}, pr.StopTable(table="orders")),
    ("t:orders", {"type": "stop", "reason": "x"}, pr.StopTable(table="orders", reason="x")),
    (
        "sweep",
        {"present": ["a", "b"], "now": 5, "fp": "f1"},
        pr.Sweep(present=["a", "b"], now=5, fp="f1"),
    ),
    ("sweep", {"present": []}, pr.Sweep(present=[])),
    (
        f"u:{SCAN_UID}",
        {"type": "create", "unit": SPEC, "fp": "f1"},
        pr.Create(uid=SCAN_UID, spec=SPEC, fp="f1"),
    ),
    (
        f"u:{SCAN_UID}",
        {"type": "progress", "pos": {"pk": {"S": "m"}}, "count": 3, "fp": "f1"},
        pr.Progress(uid=SCAN_UID, pos={"pk": {"S": "m"}}, count=3, fp="f1"),
    ),
    (
        f"u:{SHARD_UID}",
        {"type": "progress", "pos": "123", "count": 3, "lag_ms": 5, "ts_ms": 6, "fp": "f1"},
        pr.Progress(uid=SHARD_UID, pos="123", count=3, lag_ms=5, ts_ms=6, fp="f1"),
    ),
    (f"u:{SHARD_UID}", {"type": "caught_up", "fp": "f1"}, pr.CaughtUp(uid=SHARD_UID, fp="f1")),
    (
        f"u:{SCAN_UID}",
        {"type": "finish", "count": 9, "fp": "f1"},
        pr.Finish(uid=SCAN_UID, count=9, fp="f1"),
    ),
    (
        f"u:{SHARD_UID}",
        {"type": "finish", "pos": "1", "count": 3, "listing": LISTING},
        pr.Finish(uid=SHARD_UID, pos="1", count=3, listing=LISTING),
    ),
    (
        f"u:{SHARD_UID}",
        {"type": "failed", "error": "boom", "fp": "f1"},
        pr.Failed(uid=SHARD_UID, error="boom", fp="f1"),
    ),
    (f"u:{SHARD_UID}", {"type": "stop", "fp": "f1"}, pr.StopUnit(uid=SHARD_UID, fp="f1")),
    (f"u:{SHARD_UID}", {"type": "drop"}, pr.Drop(uid=SHARD_UID)),
    (f"u:{SHARD_UID}", {"type": "pause", "fp": "f1"}, pr.Pause(uid=SHARD_UID, fp="f1")),
    (f"u:{SHARD_UID}", {"type": "paused"}, pr.Paused(uid=SHARD_UID)),
    (f"u:{REPLAY_UID}", {"type": "drain"}, pr.Drain(uid=REPLAY_UID)),
    (
        "t:orders",
        {"type": "buffer_caught_up", "epoch": 3, "partition": 1},
        pr.BufferCaughtUp(table="orders", epoch=3, partition=1),
    ),
    (
        "t:orders",
        {"type": "shard_paused", "epoch": 3, "shard_id": "s1", "fp": "f2"},
        pr.ShardPaused(table="orders", epoch=3, shard_id="s1", fp="f2"),
    ),
]


@pytest.mark.parametrize(
    ("key", "value", "message"), WIRE, ids=[f"{k[0]}-{v.get('type', 'sweep')}" for k, v, _ in WIRE]
)
def test_old_wire_messages_decode_and_encode_back_unchanged(
    key: str, value: dict[str, Any], message: pr.Message
):
    assert pr.decode(key, value) == message
    assert pr.encode(message) == (key, value)
    assert json.dumps(pr.encode(message)[1]) == json.dumps(value)  # byte for byte
    assert pr.decode(key, json.loads(json.dumps(value))) == message  # through JSON


def test_every_message_type_is_covered():
    covered = {type(m) for _, _, m in WIRE}
    assert covered == {*pr.TABLE_TYPES.values(), *pr.UNIT_TYPES.values(), pr.Sweep}


def test_table_and_unit_stop_share_the_type_the_key_tells_them_apart():
    assert isinstance(pr.decode("t:orders", {"type": "stop"}), pr.StopTable)
    assert isinstance(pr.decode(f"u:{SCAN_UID}", {"type": "stop"}), pr.StopUnit)


def test_a_shard_finish_without_listing_means_the_same_encoded_again():
    # the one shape not written back as it came: a null listing is left out (same meaning)
    old = {"type": "finish", "pos": "1", "count": 3, "listing": None}
    msg = pr.decode(f"u:{SHARD_UID}", old)
    assert msg == pr.Finish(uid=SHARD_UID, pos="1", count=3)
    assert pr.decode(*pr.encode(msg)) == msg


def test_wire_fields_this_version_does_not_know_are_ignored():
    msg = pr.decode("t:orders", {"type": "shards", "epoch": 3, "listing": [], "new": 1})
    assert msg == pr.Shards(table="orders", epoch=3, listing=[])


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        (
            "t:orders",
            {"type": "bogus"},
            (
                "unknown table message type 'bogus' for 't:orders' (known: buffer_caught_up, "
                "discovered, refused, resnapshot, shard_paused, shards, stop, unit_done, "
                "unit_failed)"
            ),
        ),
        (f"u:{SCAN_UID}", {"type": "unit_done"}, "unknown unit message type 'unit_done'"),
        ("t:orders", {"type": "create", "unit": SPEC}, "unknown table message type 'create'"),
        ("t:orders", {"no": "type"}, "unknown table message type None"),
        ("x:orders", {"type": "stop"}, "control message with unknown key 'x:orders'"),
        ("t:orders", {"type": "discovered"}, "discovered message for 't:orders' without 'info'"),
        ("t:orders", {"type": "unit_done", "epoch": 1}, "without 'kind'"),
        ("t:orders", {"type": "shards", "epoch": 1}, "without 'listing'"),
        (f"u:{SCAN_UID}", {"type": "create"}, f"create message for 'u:{SCAN_UID}' without 'unit'"),
        ("sweep", {"now": 1}, "sweep message for 'sweep' without 'present'"),
        ("t:orders", ["stop"], "not an object"),
        ("t:orders", None, "not an object"),
    ],
)
def test_what_the_codec_cannot_read_is_refused_clearly(key: str, value: Any, error: str):
    with pytest.raises(pr.ProtocolError, match=re.escape(error)):
        pr.decode(key, value)


def test_protocol_errors_are_value_errors():  # caught where bad input was caught before
    assert issubclass(pr.ProtocolError, ValueError)


def test_messages_are_frozen():
    msg = pr.Drop(uid=SCAN_UID)
    with pytest.raises(AttributeError):
        msg.uid = "x"  # type: ignore[misc]


positions = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)
opt_int = st.one_of(st.none(), st.integers(0, 2**40))
listings = st.one_of(
    st.none(),
    st.lists(
        st.lists(st.one_of(st.none(), st.text(max_size=8)), min_size=4, max_size=4), max_size=3
    ),
)
texts = st.text(max_size=30)
fps = st.one_of(st.none(), st.text(min_size=1, max_size=16))
uids = unit_ids.map(UnitId.format)
messages = st.one_of(
    st.builds(pr.Discovered, table=table_names, info=st.just(INFO), now=opt_int, fp=fps),
    st.builds(
        pr.Refused,
        table=table_names,
        reason=st.one_of(st.none(), texts),
        info=st.just(INFO),
        now=opt_int,
        fp=fps,
    ),
    st.builds(
        pr.UnitDone,
        table=table_names,
        unit=uids,
        kind=st.sampled_from(["scan", "watch", "shard"]),
        epoch=opt_int,
        segment=opt_int,
        shard_id=st.one_of(st.none(), texts),
        count=st.integers(0, 10**9),
        listing=listings,
        fp=fps,
    ),
    st.builds(
        pr.Shards,
        table=table_names,
        epoch=opt_int,
        listing=listings.filter(lambda x: x is not None),
        fp=fps,
    ),
    st.builds(
        pr.UnitFailed,
        table=table_names,
        unit=uids,
        epoch=opt_int,
        error=st.one_of(st.none(), texts),
        fp=fps,
    ),
    st.builds(
        pr.Resnapshot, table=table_names, reason=st.one_of(st.none(), texts), epoch=opt_int, fp=fps
    ),
    st.builds(pr.StopTable, table=table_names, reason=st.one_of(st.none(), texts), fp=fps),
    st.builds(pr.Sweep, present=st.lists(table_names, max_size=4), now=opt_int, fp=fps),
    st.builds(pr.Create, uid=uids, spec=st.just(SPEC), fp=fps),
    st.builds(
        pr.Progress,
        uid=uids,
        pos=positions,
        count=st.integers(0, 10**9),
        lag_ms=opt_int,
        ts_ms=opt_int,
        fp=fps,
    ),
    st.builds(pr.CaughtUp, uid=uids, fp=fps),
    st.builds(pr.Finish, uid=uids, pos=positions, count=opt_int, listing=listings, fp=fps),
    st.builds(pr.Failed, uid=uids, error=st.one_of(st.none(), texts), fp=fps),
    st.builds(pr.StopUnit, uid=uids, fp=fps),
    st.builds(pr.Drop, uid=uids, fp=fps),
    st.builds(pr.Pause, uid=uids, fp=fps),
    st.builds(pr.Paused, uid=uids, fp=fps),
    st.builds(pr.Drain, uid=uids, fp=fps),
    st.builds(
        pr.BufferCaughtUp, table=table_names, epoch=opt_int, partition=st.integers(0, 99), fp=fps
    ),
    st.builds(pr.ShardPaused, table=table_names, epoch=opt_int, shard_id=no_bar, fp=fps),
)


@given(messages)
def test_every_message_survives_encode_json_decode(msg: pr.Message):
    key, value = pr.encode(msg)
    assert pr.decode(key, json.loads(json.dumps(value))) == msg


# ---------------------------------------------------------------- placement
@given(unplaced_ids, st.integers(0, 1023))
def test_a_placed_unit_id_names_its_control_partition(uid: UnitId, at: int):
    placed = uid.placed(at)
    assert placed.format() == f"{uid.format()}|@{at}"
    assert pr.control_partition(pr.unit_key(placed.format())) == at
    assert pr.control_partition(pr.unit_key(uid.format())) is None  # hashed, as before


def test_only_placed_unit_keys_choose_a_partition():
    assert pr.control_partition(pr.table_key("orders")) is None
    assert pr.control_partition(pr.table_key("t|@3")) is None  # not a unit key
    assert pr.control_partition(pr.SWEEP_KEY) is None
    assert pr.control_partition("u:scan|orders|3|2|8|@5") == 5
    assert pr.control_partition("u:watch|orders|3|@0") == 0
    # not canonical, or not where a placement may stand: not a placed id
    for bad in ("u:scan|orders|3|2|8|@05", "u:scan|orders|3|2|8|@-1", "u:watch|orders|3|@x"):
        assert pr.control_partition(bad) is None
        with pytest.raises(pr.ProtocolError):
            UnitId.parse(bad[2:])


def test_a_shard_id_that_looks_like_a_placement_stays_a_shard_id():
    uid = UnitId.shard("orders", 3, ARN, "@7")
    assert UnitId.parse(uid.format()) == uid and uid.at is None
    assert pr.control_partition(pr.unit_key(uid.format())) is None
