"""app.fastwire: the native pass (dynamodb_wire, built from native/) against the Python
reference (orjson.loads -> to_record -> Encoder), byte for byte.

Every test compares the two whole outcomes of one body: the encoded records (index,
Kafka messages, sequence number, timestamp, event name, size, TTL flag), the records
refused (index, record as received, error type, text and resource), the cursor and the
consumed capacity -- or, for a body that is not a response, the same error.

The extension is imported here unconditionally: where it is not built (``make native``,
run by ``make venv``), this module fails to import and the suite fails; it never skips.
The product itself falls back to the reference then (test_reference_is_the_fallback).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import dynamodb_wire  # noqa: F401 - not built: this module fails, by design
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import fastwire
from app.domain.envelope import SnapshotInfo
from app.domain.errors import CodecError
from bench.micro import corpus
from bench.micro.wire import (
    ARN,
    bench_records_body,
    bench_scan_body,
    dumps_ascii,
    record_dict,
    records_body,
    scan_body,
    wire_value,
)
from tests.unit.test_codec import attribute_values, number_texts

SNAPS = (None, SnapshotInfo(True, 1_700_000_000_000, None, 0), SnapshotInfo(False, 1, 2, 3))
FORMATS = ("native", "seed")


def outcome(fn: Callable[[bytes, Any], fastwire.EncodedPage], body: bytes, ctx: Any) -> Any:
    try:
        page = fn(body, ctx)
    except CodecError as e:
        return ("raised", type(e), str(e), e.resource)
    failed = [
        (f.position, f.raw, type(f.error), str(f.error), f.error.resource) for f in page.failed
    ]
    return ("ok", page.records, failed, page.cursor, page.consumed_capacity)


def assert_records_same(body: bytes, ctx: fastwire.ChangeContext) -> Any:
    native = outcome(fastwire.native_records_page, body, ctx)
    reference = outcome(fastwire.reference_records_page, body, ctx)
    assert native == reference
    return native


def assert_scan_same(body: bytes, ctx: fastwire.ScanContext) -> Any:
    native = outcome(fastwire.native_scan_page, body, ctx)
    reference = outcome(fastwire.reference_scan_page, body, ctx)
    assert native == reference
    return native


def change_ctx(
    fmt: str = "native",
    tombstones: bool = True,
    snap: SnapshotInfo | None = None,
    key_names: tuple[str, ...] = ("pk", "sk"),
    arn: str | None = ARN,
    shard: str | None = "shardId-00000001",
) -> fastwire.ChangeContext:
    return fastwire.ChangeContext("orders", key_names, arn, shard, snap, fmt, tombstones)  # type: ignore[arg-type]


def scan_ctx(
    fmt: str = "native", snap: SnapshotInfo | None = None, key_names: tuple[str, ...] = ("pk", "sk")
) -> fastwire.ScanContext:
    return fastwire.ScanContext("orders", key_names, 2, 8, 1_700_000_123_456, snap, fmt)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- which path


def test_native_pass_is_active() -> None:
    assert fastwire.ACTIVE == "native"
    assert fastwire.DESCRIPTION.startswith("native (dynamodb_wire ")
    assert fastwire.encode_records_page is fastwire.native_records_page
    assert fastwire.encode_scan_page is fastwire.native_scan_page


def test_bench_pages_are_taken_whole_by_the_native_pass() -> None:
    """The realistic pages: every record through the native pass, none refused, and the
    same bytes as the reference in every format / tombstone / snapshot-info setting."""
    body = bench_records_body(300)
    for fmt in FORMATS:
        for tombstones in (False, True):
            for snap in SNAPS:
                ctx = change_ctx(fmt, tombstones, snap)
                assert_records_same(body, ctx)
                page = fastwire.native_records_page(body, ctx)
                assert page.native == len(page.records) == 300
                assert page.cursor == "AAAA"
    body = bench_scan_body(300)
    for fmt in FORMATS:
        for snap in SNAPS:
            assert_scan_same(body, scan_ctx(fmt, snap))
            page = fastwire.native_scan_page(body, scan_ctx(fmt, snap))
            assert page.native == len(page.records) == 300
            assert page.consumed_capacity == 128.5
            assert page.cursor == {"pk": {"S": "customer#x"}, "sk": {"N": "1"}}


def test_record_metadata() -> None:
    keys = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    recs = [
        record_dict(
            "INSERT", "100000000000000000001", 1_732_790_001_000, keys, keys, None, False, 7
        ),
        record_dict(
            "REMOVE", "100000000000000000002", 1_732_790_002_999, keys, None, keys, True, 9
        ),
    ]
    body = records_body(recs, next_iterator=None)
    page = fastwire.native_records_page(body, change_ctx())
    assert page.cursor is None
    assert [(r.seq, r.ts_ms, r.event_name, r.size_bytes, r.ttl_delete) for r in page.records] == [
        ("100000000000000000001", 1_732_790_001_000, "INSERT", 7, False),
        ("100000000000000000002", 1_732_790_002_000, "REMOVE", 9, True),
    ]
    insert, remove = page.records
    assert len(insert.messages) == 1
    assert remove.messages[1] == (b'{"pk":"a","sk":1}', None)  # the tombstone
    assert orjson.loads(remove.messages[0][1])["source"]["ttl_delete"] is True
    assert page.messages == [*insert.messages, *remove.messages]
    assert_records_same(body, change_ctx())


def test_reference_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the extension the product runs the reference (same API, same bytes)."""
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "dynamodb_wire", None)  # import raises ImportError
    try:
        mod = importlib.reload(fastwire)
        assert mod.ACTIVE == "python"
        assert "make native" in mod.DESCRIPTION
        assert mod.encode_records_page is mod.reference_records_page
        assert mod.encode_scan_page is mod.reference_scan_page
    finally:
        monkeypatch.undo()
        importlib.reload(fastwire)
    assert fastwire.ACTIVE == "native"


# --------------------------------------------------------------------------- corpus


def _corpus_pages(item: dict[str, Any], key_names: tuple[str, ...]) -> list[dict[str, Any]]:
    keys = {k: item[k] for k in key_names if k in item}
    return [
        record_dict("INSERT", "100000000000000000011", 1_732_790_000_000, keys, item, None),
        record_dict("MODIFY", "100000000000000000012", 1_732_790_000_000, keys, item, item, True),
        record_dict("REMOVE", "100000000000000000013", 1_732_790_000_000, keys, None, item, True),
        record_dict("REMOVE", "100000000000000000014", 1_732_790_000_000, None, None, item),
    ]


def _dumps_variants(obj: Any) -> list[bytes]:
    out = [dumps_ascii(obj)]
    try:
        out.append(orjson.dumps(obj))
    except orjson.JSONEncodeError:
        pass  # lone surrogates: only the escaped form exists
    return out


def test_corpus_items_byte_for_byte() -> None:
    """bench/micro/corpus.py's items (bench items, hypothesis items, every odd and bad
    value of the codec's corpus at the top level and nested), in both formats, as
    GetRecords and Scan bodies, raw UTF-8 and \\u-escaped."""
    items, _records = corpus.bench_items(40)
    items = items + corpus.edge_items() + corpus.hypothesis_items(120)
    n = 0
    for i, item in enumerate(items):
        names = list(item)
        for key_names in (tuple(names[:2]), tuple(names[-1:]), ("missing",)):
            fmt = FORMATS[(i + len(key_names)) % 2]
            snap = SNAPS[i % 3]
            try:
                wire_item = wire_value(item)
                recs = [wire_value(r) for r in _corpus_pages(item, key_names)]
            except TypeError:  # not JSON-able at all (no wire form): nothing to compare
                continue
            for body in _dumps_variants({"Records": recs, "NextShardIterator": "it"}):
                assert_records_same(body, change_ctx(fmt, i % 2 == 0, snap, key_names))
                n += 1
            for body in _dumps_variants({"Items": [wire_item], "Count": 1}):
                assert_scan_same(body, scan_ctx(fmt, snap, key_names))
                n += 1
    assert n > 2500


# --------------------------------------------------------------------------- hypothesis

unicode_text = st.text(
    alphabet=st.characters(codec="utf-8"), max_size=12
)  # controls, astral planes (surrogate pairs once \u-escaped), U+2028 ...
EXTRA_VALUES = st.one_of(
    st.builds(lambda s: {"S": s}, unicode_text),
    st.sampled_from(
        [
            {"S": ""},
            {"SS": []},
            {"NS": []},
            {"BS": []},
            {"M": {}},
            {"L": []},
            {"N": "-0"},
            {"N": "0.000"},
            {"N": "007"},
            {"N": "1E+125"},
            {"N": "-1e-130"},
            {"N": "12345678901234567890123456789012345678"},
            {"N": "9.9999999999999999999999999999999999999E+125"},
            {"NS": ["1", "1.0", "-0", "0", "1e0"]},
            {"SS": ["b", "a", "é", "😀", "\uffff"]},
            {"BS": ["AP8=", "AA==", "QR=="]},  # QR==: non-zero trailing bits
            {"B": "QUJD="},  # stray padding strict mode accepts
            {"B": "not base64"},
            {"N": " 5"},
            {"N": 5},
            {"NULL": False},
        ]
    ),
    st.builds(lambda n: {"N": n}, number_texts()),
    st.builds(lambda b: {"B": base64.b64encode(b).decode()}, st.binary(max_size=40)),
)
wire_values = st.recursive(
    st.one_of(attribute_values(), EXTRA_VALUES),
    lambda children: st.one_of(
        st.builds(lambda m: {"M": m}, st.dictionaries(unicode_text, children, max_size=4)),
        st.builds(lambda v: {"L": v}, st.lists(children, max_size=4)),
    ),
    max_leaves=10,
)
key_values = st.one_of(
    st.builds(lambda s: {"S": s}, unicode_text),
    st.builds(lambda n: {"N": n}, number_texts()),
    st.builds(lambda b: {"B": base64.b64encode(b).decode()}, st.binary(max_size=16)),
)


@st.composite
def wire_items(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[str, ...]]:
    """An item with one or two key attributes (S/N/B, or, rarely, anything) and others."""
    key_names = tuple(draw(st.lists(unicode_text, min_size=1, max_size=2, unique=True)))
    item: dict[str, Any] = {}
    for k in key_names:
        item[k] = draw(key_values if draw(st.integers(0, 9)) else wire_values)
    for k, v in draw(st.dictionaries(unicode_text, wire_values, max_size=6)).items():
        item.setdefault(k, v)
    if draw(st.booleans()):  # attribute order is kept: shuffle keys among the others
        pairs = list(item.items())
        draw(st.randoms()).shuffle(pairs)
        item = dict(pairs)
    return item, key_names


HYP = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@HYP
@given(
    st.lists(wire_items(), min_size=1, max_size=4),
    st.sampled_from(FORMATS),
    st.booleans(),
    st.sampled_from(SNAPS),
    st.booleans(),
    st.data(),
)
def test_generated_records_byte_for_byte(
    items: list[tuple[dict[str, Any], tuple[str, ...]]],
    fmt: str,
    tombstones: bool,
    snap: SnapshotInfo | None,
    escaped: bool,
    data: st.DataObject,
) -> None:
    key_names = items[0][1]
    recs = []
    for j, (item, _) in enumerate(items):
        other = items[(j + 1) % len(items)][0]
        keys = {k: item[k] for k in key_names if k in item}
        event = data.draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"]))
        new = None if event == "REMOVE" else item
        old = None if event == "INSERT" else data.draw(st.sampled_from([item, other, None]))
        ts = data.draw(st.integers(0, 4_000_000_000_000))
        recs.append(
            record_dict(
                event, str(10**20 + j), ts, keys, new, old, data.draw(st.booleans()), 10 * j
            )
        )
    body = {"Records": recs, "NextShardIterator": data.draw(st.one_of(st.none(), unicode_text))}
    raw = dumps_ascii(body) if escaped else orjson.dumps(body)
    assert_records_same(raw, change_ctx(fmt, tombstones, snap, key_names))


@HYP
@given(
    st.lists(wire_items(), min_size=1, max_size=4),
    st.sampled_from(FORMATS),
    st.sampled_from(SNAPS),
    st.booleans(),
)
def test_generated_scan_byte_for_byte(
    items: list[tuple[dict[str, Any], tuple[str, ...]]],
    fmt: str,
    snap: SnapshotInfo | None,
    escaped: bool,
) -> None:
    key_names = items[0][1]
    plain = [i for i, _ in items]
    dumps = dumps_ascii if escaped else orjson.dumps
    body = scan_body(plain, {k: plain[0][k] for k in key_names if k in plain[0]}, 3.5, dumps)
    assert_scan_same(body, scan_ctx(fmt, snap, key_names))


# --------------------------------------------------------------------------- malformed

GOOD = record_dict(
    "MODIFY",
    "100000000000000000021",
    1_732_790_000_000,
    {"pk": {"S": "a"}, "sk": {"N": "1"}},
    {"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"S": "new"}},
    {"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"S": "old"}},
)
GOOD_JSON = orjson.dumps(GOOD).decode()


def _with(path: str, value: Any) -> str:
    """GOOD with one field replaced (path "dynamodb.Keys") or removed (value ...)."""
    rec = json.loads(GOOD_JSON)
    *parents, last = path.split(".")
    d = rec
    for p in parents:
        d = d[p]
    if value is ...:
        del d[last]
    else:
        d[last] = value
    return json.dumps(rec)


BAD_RECORDS = [
    "1",
    '"x"',
    "null",
    "[]",
    "{}",
    _with("eventName", ...),
    _with("eventName", "DELETE"),
    _with("eventName", 5),
    _with("dynamodb", ...),
    _with("dynamodb", []),
    _with("dynamodb.SequenceNumber", ...),
    _with("dynamodb.SequenceNumber", 100000000000000000021),
    _with("dynamodb.ApproximateCreationDateTime", ...),
    _with("dynamodb.ApproximateCreationDateTime", "1732790000"),
    _with("dynamodb.ApproximateCreationDateTime", "soon"),
    _with("dynamodb.ApproximateCreationDateTime", True),
    _with("dynamodb.ApproximateCreationDateTime", 1732790000.999),
    _with("dynamodb.ApproximateCreationDateTime", -1.5),
    _with("dynamodb.SizeBytes", 1.5),
    _with("dynamodb.SizeBytes", "12"),
    _with("dynamodb.SizeBytes", None),
    _with("dynamodb.SizeBytes", False),
    _with("dynamodb.SizeBytes", [1]),
    _with("dynamodb.Keys", ...),  # keys from the image (key_of)
    _with("dynamodb.Keys", {}),
    _with("dynamodb.Keys", []),
    _with("dynamodb.Keys", [1]),
    _with("dynamodb.Keys", {"pk": {"M": {}}}),
    _with("dynamodb.Keys", {"pk": {"SS": ["a"]}}),
    _with("dynamodb.NewImage", "x"),
    _with("dynamodb.NewImage", None),
    _with("dynamodb.OldImage", []),
    _with("dynamodb.NewImage", {"pk": {"S": "a"}, "x": {"N": "NaN"}}),
    _with("dynamodb.OldImage", {"pk": {"S": "a"}, "x": {"B": "%%"}}),
    _with("userIdentity", []),
    _with("userIdentity", ["x"]),
    _with("userIdentity", "Service"),
    _with("userIdentity", {"type": "Service", "principalId": "dynamodb.amazonaws.com"}),
    _with("userIdentity", {"type": "User", "principalId": "dynamodb.amazonaws.com"}),
    _with("userIdentity", {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}),
    _with("userIdentity", {"Type": "User", "PrincipalId": "dynamodb.amazonaws.com"}),
    GOOD_JSON.replace('"eventName"', '"eventName":"INSERT","eventName"'),  # repeated name
    GOOD_JSON.replace('"x":{"S":"new"}', '"x":{"S":"new","S":"newer"}'),
    GOOD_JSON.replace('"x":{"S":"new"}', '"x":{"S":"new","N":"1"}'),
    GOOD_JSON.replace('"x":{"S":"new"}', '"x":{"\\u0053":"escaped tag"}'),
    GOOD_JSON.replace('"eventName"', '"event\\u004eame"'),
    GOOD_JSON.replace('"SequenceNumber":"1', '"SequenceNumber":"\\u0031'),
    GOOD_JSON.replace('"x":{"S":"new"}', '"x":{"B":"QQ\\u003d\\u003d"}'),
    GOOD_JSON.replace('"x":{"S":"new"}', '"x":{"N":"1\\u0030"}'),
    GOOD_JSON.replace('"x":{"S":"new"}', '"x":{"N":"1e1234567890123456"}'),
    GOOD_JSON.replace('"x":{"S":"new"}', '"x":{"N":"1e99999999999999999999"}'),
    GOOD_JSON.replace('"x":{"S":"new"}', '"x":{"NS":["1",2]}'),
    GOOD_JSON.replace('"x":{"S":"new"}', '"x":{"NS":[1,2]}'),
    GOOD_JSON.replace('"x":{"S":"new"}', '"x":{"SS":["b",1]}'),
    GOOD_JSON.replace('"x":{"S":"new"}', '"x":{"BS":["AA==",null]}'),
    GOOD_JSON.replace('"x":{"S":"new"}', '"x":' + '{"L":[' * 60 + "]}" * 60),
]
# Bad records the native parser does not take (a number it leaves to orjson, nesting
# beyond its depth limit): the whole page goes through the reference.
PAGE_LEVEL = [
    _with("dynamodb.ApproximateCreationDateTime", 1e300),
    GOOD_JSON.replace('"x":{"S":"new"}', '"x":' + "[" * 300 + "]" * 300),
    GOOD_JSON.replace('"x":{"S":"new"}', '"x":' + '{"L":[' * 200 + "]}" * 200),
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_malformed_records_go_through_the_reference(fmt: str) -> None:
    """Each bad record in a page between two good ones: the good ones through the native
    pass, the bad one through the reference, which encodes it or reports its error."""
    for bad in BAD_RECORDS + PAGE_LEVEL:
        body = ('{"Records":[' + GOOD_JSON + "," + bad + "," + GOOD_JSON + "]}").encode()
        got = assert_records_same(body, change_ctx(fmt))
        assert got[0] == "ok", bad
        page = fastwire.native_records_page(body, change_ctx(fmt))
        if bad in PAGE_LEVEL:
            assert page.native == 0, bad
        else:  # the good ones at least (some odd ones are valid and taken too)
            assert page.native >= 2, bad
        for f in page.failed:
            assert f.position == 1
            assert f.raw == orjson.loads(bad)
    # one of each kind at least: refused then encoded, and refused then failed
    page = fastwire.native_records_page(
        ('{"Records":[' + ",".join(BAD_RECORDS) + "]}").encode(), change_ctx()
    )
    assert 0 < page.native < len(page.records) < len(BAD_RECORDS)
    assert len(page.failed) > 10
    assert all(type(f.error) is CodecError for f in page.failed)


BAD_BODIES = [
    b"",
    b"not json",
    b"[]",
    b"null",
    b'"Records"',
    b"\xef\xbb\xbf{}",  # BOM
    b'{"Records":[]} x',
    b'{"Records":[],}',
    b'{"Records":{}}',
    b'{"Records":null}',
    b'{"Records":"abc"}',
    b'{"Records":[], "NextShardIterator": 5}',
    b'{"Records":[], "NextShardIterator": null}',
    b'{"Records":[], "NextShardIterator": "a", "NextShardIterator": "b"}',
    b'{"Records":[1], "Records": []}',
    b'{"NextShardIterator": "only"}',
    b"{}",
    b'{"Records":[{"eventName":"\\ud800"}]}',  # lone surrogate
    b'{"Records":[{"eventName":"\\udc00\\ud800"}]}',
    b'{"Records":[{"eventName":"\xff"}]}',  # not UTF-8
    b'{"Records":[{"eventName":"a\x01"}]}',  # raw control character
    b'{"Records":[{"x":1e400}]}',
    b'{"Records":[{"x":100000000000000000000}]}',
    b'{"Records":[{"x":-0}]}',
    b'{"Records":[{"x":01}]}',
    b'{"Records":[{"x":1.}]}',
    b'{"Records":[{"x":.5}]}',
    b'{"Records":[{"x":+1}]}',
    b'{"Records":[{"x":NaN}]}',
    b'{"Records":[{"x":"\\x"}]}',
    b'{"Records":[' + b"[" * 2000 + b"]" * 2000 + b"]}",
    b'{"Records":[' + GOOD_JSON.encode() + b"]",
    b'  {"Records":[' + GOOD_JSON.encode() + b"]}\n\t ",
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("body", BAD_BODIES)
def test_malformed_records_bodies(body: bytes, fmt: str) -> None:
    assert_records_same(body, change_ctx(fmt))


SCAN_BODIES = [
    b'{"Items":{}}',
    b'{"Items":null,"Count":0}',
    b'{"Items":[],"LastEvaluatedKey":[]}',
    b'{"Items":[],"LastEvaluatedKey":{}}',
    b'{"Items":[],"LastEvaluatedKey":"k"}',
    b'{"Items":[],"ConsumedCapacity":[]}',
    b'{"Items":[],"ConsumedCapacity":{"CapacityUnits":"abc"}}',
    b'{"Items":[],"ConsumedCapacity":{"CapacityUnits":"2.5"}}',
    b'{"Items":[],"ConsumedCapacity":{"CapacityUnits":null}}',
    b'{"Items":[],"ConsumedCapacity":{"CapacityUnits":7}}',
    b'{"Items":[],"ConsumedCapacity":null}',
    b'{"Items":[1,"x",null,[],{}]}',
    b'{"Items":[{"pk":{"S":"a"}}]}',  # key attribute sk missing
    b'{"Items":[{"pk":{"S":"a"},"sk":{"N":"1"},"pk":{"S":"b"}}]}',
    b'{"Items":[{"pk":{"S":"a"},"sk":{"BOOL":true}}]}',
    b'{"Items":[{"pk":{"S":"a"},"sk":{"N":"x"}}]}',
    b'{"Items":[{"pk":{"S":"a"},"sk":{"N":"1"},"m":{"M":{"a":{"S":1}}}}]}',
    b'{"Items":[{"pk":{"S":"a"},"sk":{"N":"1"}}],"Count":1,"Count":2}',
    b'{"Items":[{"p\\u006b":{"S":"a"},"sk":{"N":"1"}}]}',
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("body", SCAN_BODIES + BAD_BODIES[:20])
def test_malformed_scan_bodies(body: bytes, fmt: str) -> None:
    assert_scan_same(body, scan_ctx(fmt))


def test_malformed_response_names_the_call_not_the_content() -> None:
    with pytest.raises(fastwire.MalformedResponse, match=r"GetRecords response is not JSON"):
        fastwire.native_records_page(b'{"Records":[{"secret":"\\ud800"}]}', change_ctx())
    with pytest.raises(fastwire.MalformedResponse, match=r"Scan LastEvaluatedKey is a list"):
        fastwire.native_scan_page(b'{"Items":[],"LastEvaluatedKey":["secret"]}', scan_ctx())


@pytest.mark.parametrize(
    ("table", "arn", "shard"),
    [('t"able\n', "arn:é", "shard\x00"), ("lone\ud800", ARN, "s"), ("t", None, None)],
)
def test_context_strings(table: str, arn: str | None, shard: str | None) -> None:
    """Names that need escaping, or that orjson cannot write (the reference reports)."""
    ctx = fastwire.ChangeContext(table, ("pk", "sk"), arn, shard, None, "native", True)
    assert_records_same(records_body([GOOD]), ctx)
    sctx = fastwire.ScanContext(table, ("pk",), 0, 1, 5, SNAPS[1], "seed")
    assert_scan_same(scan_body([{"pk": {"S": "a"}}]), sctx)


@pytest.mark.parametrize("fmt", FORMATS)
def test_special_characters_at_every_position(fmt: str) -> None:
    """Strings are scanned and escaped 8 bytes at a time: a character that ends or must be
    escaped, at every offset of a long string, raw and \\u-escaped on the wire."""
    specials = ['"', "\\", "\x00", "\x1f", "\n", "\x7f", "é", "\u2028", "😀", "/"]
    items = []
    for pos in range(19):
        for ch in specials:
            text = "a" * pos + ch + "b" * (18 - pos) + ch * (pos % 3)
            items.append({"pk": {"S": text}, "sk": {"N": "1"}, text: {"SS": [text, "x" * pos]}})
    for dumps in (orjson.dumps, dumps_ascii):
        assert_scan_same(scan_body(items, dumps=dumps), scan_ctx(fmt))
        recs = [record_dict("INSERT", "1" * 21, 0, {"pk": i["pk"]}, i, None) for i in items]
        assert_records_same(records_body(recs, dumps=dumps), change_ctx(fmt, key_names=("pk",)))
        page = fastwire.native_scan_page(scan_body(items, dumps=dumps), scan_ctx(fmt))
        assert page.native == len(items)
