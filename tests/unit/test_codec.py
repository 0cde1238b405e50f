"""app.domain.codec: DynamoDB typed values -> plain JSON-ready values, and the seed form."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain import codec
from app.domain.errors import CodecError
from app.domain.model import Item

# --------------------------------------------------------------------------- strategies

MAX_DIGITS = 38


@st.composite
def dynamo_decimals(draw: st.DrawFn) -> Decimal:
    """Any number DynamoDB can hold: up to 38 significant digits, 1E-130 .. 9.9..9E+125."""
    if draw(st.integers(0, 20)) == 0:
        return Decimal(draw(st.sampled_from(["0", "-0"])))
    ndigits = draw(st.integers(1, MAX_DIGITS))
    coeff = draw(st.integers(10 ** (ndigits - 1), 10**ndigits - 1))
    adjusted = draw(st.integers(-130, 125))  # exponent of the leading digit
    sign = draw(st.integers(0, 1))
    digits = tuple(int(c) for c in str(coeff))
    return Decimal((sign, digits, adjusted - (ndigits - 1)))


def _positional(d: Decimal) -> str:
    return format(d, "f")


def _json_forms(d: Decimal) -> list[str]:
    """Renderings that are valid JSON numbers."""
    sci = format(d, "e")  # e.g. "1.5e-130" (always valid JSON)
    return [str(d), _positional(d), sci, sci.upper(), sci.replace("e+", "e").replace("e-0", "e-")]


def _loose_forms(d: Decimal) -> list[str]:
    """Renderings DynamoDB accepts but JSON does not: must be normalised."""
    pos = _positional(d)
    forms = [f" {pos} ", "00" + pos if not pos.startswith("-") else pos]
    if not pos.startswith("-"):
        forms.append("+" + pos)
    if "." not in pos and "e" not in pos.lower():
        forms.append(pos + ".")
    if pos.startswith("0."):
        forms.append(pos[1:])  # ".5"
    if pos.startswith("-0."):
        forms.append("-" + pos[2:])  # "-.5"
    return forms


@st.composite
def number_texts(draw: st.DrawFn, json_only: bool = False) -> str:
    d = draw(dynamo_decimals())
    forms = _json_forms(d) if json_only else _json_forms(d) + _loose_forms(d)
    text: str = draw(st.sampled_from(forms))
    return text


names = st.text(min_size=1, max_size=8)


def _unique_numbers(json_only: bool) -> st.SearchStrategy[list[str]]:
    return st.lists(number_texts(json_only), min_size=1, max_size=5, unique_by=Decimal)


def attribute_values(json_only: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    scalars = st.one_of(
        st.builds(lambda s: {"S": s}, st.text(max_size=20)),
        st.builds(lambda n: {"N": n}, number_texts(json_only)),
        st.builds(lambda b: {"B": b}, st.binary(max_size=20)),
        st.builds(
            lambda v: {"SS": v}, st.lists(st.text(max_size=6), min_size=1, max_size=5, unique=True)
        ),
        st.builds(lambda v: {"NS": v}, _unique_numbers(json_only)),
        st.builds(
            lambda v: {"BS": v},
            st.lists(st.binary(max_size=8), min_size=1, max_size=5, unique=True),
        ),
        st.just({"NULL": True}),
        st.builds(lambda b: {"BOOL": b}, st.booleans()),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.builds(lambda m: {"M": m}, st.dictionaries(names, children, max_size=4)),
            st.builds(lambda v: {"L": v}, st.lists(children, max_size=4)),
        ),
        max_leaves=12,
    )


def items(json_only: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(names, attribute_values(json_only), min_size=1, max_size=6)


# --------------------------------------------------------------------------- reference model


def expected_plain(av: dict[str, Any]) -> Any:
    """What a JSON reader must see (numbers as Decimal, binary as standard base64)."""
    ((tag, v),) = av.items()
    if tag == "S":
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
        return {k: expected_plain(a) for k, a in v.items()}
    if tag == "L":
        return [expected_plain(a) for a in v]
    if tag == "NULL":
        return None
    if tag == "BOOL":
        return v
    raise AssertionError(tag)


def read_json(data: bytes) -> Any:
    return json.loads(data, parse_float=Decimal, parse_int=Decimal)


def exact(obj: Any) -> Any:
    """Decimal('1.0') == Decimal('1'); compare numbers by (value, type) and structure."""
    if isinstance(obj, dict):
        return {k: exact(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [exact(v) for v in obj]
    if isinstance(obj, bool) or obj is None:
        return (type(obj).__name__, obj)
    return obj


# --------------------------------------------------------------------------- properties


@settings(deadline=None, max_examples=300)
@given(number_texts())
def test_number_value_survives(text: str) -> None:
    out = codec.dumps(codec.to_plain({"N": text}))
    assert read_json(out) == Decimal(text)
    # never through float: sign, every significant digit and the exponent survive
    assert Decimal(out.decode()).as_tuple() == Decimal(text).as_tuple()


@settings(deadline=None, max_examples=300)
@given(number_texts(json_only=True))
def test_valid_json_number_text_is_kept_byte_for_byte(text: str) -> None:
    assert codec.dumps({"n": codec.to_plain({"N": text})}) == b'{"n":' + text.encode() + b"}"


@settings(deadline=None, max_examples=200)
@given(items())
def test_item_encodes_to_expected_plain_model(item: dict[str, Any]) -> None:
    out = codec.dumps(codec.item_to_plain(item))
    expected = {k: expected_plain(a) for k, a in item.items()}
    got = read_json(out)
    assert exact(got) == exact(expected)


@settings(deadline=None, max_examples=200)
@given(items(json_only=True))
def test_sdk_v1_round_trip(item: dict[str, Any]) -> None:
    doc = codec.item_to_sdk_v1(item)
    back = codec.sdk_v1_to_item(orjson.loads(orjson.dumps(doc)))
    assert back == item


@settings(deadline=None, max_examples=100)
@given(items())
def test_sdk_v1_round_trip_normalises_numbers(item: dict[str, Any]) -> None:
    back = codec.sdk_v1_to_item(orjson.loads(codec.dumps(codec.item_to_sdk_v1(item))))
    assert exact(read_json(codec.dumps(codec.item_to_plain(back)))) == exact(
        read_json(codec.dumps(codec.item_to_plain(item)))
    )


@settings(deadline=None)
@given(st.binary())
def test_binary_is_standard_base64(raw: bytes) -> None:
    expected = base64.b64encode(raw).decode()
    for form in (raw, bytearray(raw), memoryview(raw), expected):
        assert codec.to_plain({"B": form}) == expected


# --------------------------------------------------------------------------- numbers


def test_38_digit_number_preserved_byte_for_byte() -> None:
    text = "12345678901234567890123456789012345678"
    item = {"big": {"N": text}, "neg": {"N": "-9.9999999999999999999999999999999999999E+125"}}
    out = codec.dumps(codec.item_to_plain(item))
    assert out == (
        b'{"big":12345678901234567890123456789012345678,'
        b'"neg":-9.9999999999999999999999999999999999999E+125}'
    )


@pytest.mark.parametrize("text", ["-1.5E-130", "1e125", "1E+125", "0", "-0", "0.001", "1.0"])
def test_extreme_numbers_kept_exact(text: str) -> None:
    assert codec.dumps(codec.to_plain({"N": text})) == text.encode()


@pytest.mark.parametrize(
    ("text", "json_text"),
    [
        (".5", "0.5"),
        ("+5", "5"),
        ("5.", "5"),
        (" 5", "5"),
        ("007", "7"),
        ("-.25", "-0.25"),
        ("+1.5e3", "1.5E+3"),
        ("1e+125 ", "1E+125"),
    ],
)
def test_non_json_number_text_is_normalised(text: str, json_text: str) -> None:
    assert codec.dumps(codec.to_plain({"N": text})) == json_text.encode()
    assert codec.number_text(text) == json_text


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "sNaN",
        "",
        " ",
        "abc",
        "1_000",
        "1e",
        "--1",
        "0x10",
        "١٢",
        "1.2.3",
        "5e5.5",
        "+1e999999999999999999999999",
    ],
)
def test_bad_number_raises(text: str) -> None:
    with pytest.raises(CodecError, match="invalid number"):
        codec.to_plain({"N": text})
    with pytest.raises(CodecError):
        codec.item_to_sdk_v1({"a": {"N": text}})


def test_number_must_be_text() -> None:
    with pytest.raises(CodecError):
        codec.to_plain({"N": 1.5})
    # ints and Decimals (e.g. from boto3's resource layer) are exact, so accepted
    assert codec.dumps(codec.to_plain({"N": 12})) == b"12"
    assert codec.dumps(codec.to_plain({"N": Decimal("1.50")})) == b"1.50"


# --------------------------------------------------------------------------- sets


def test_sets_are_sorted() -> None:
    plain = codec.item_to_plain(
        {
            "ss": {"SS": ["b", "a", "C"]},
            "ns": {"NS": ["10", "9", "-1e3", "2.5", "1E-130"]},
            "bs": {"BS": [b"\xff", b"\x00\x01", b"\x00"]},
        }
    )
    assert codec.dumps(plain) == (
        b'{"ss":["C","a","b"],"ns":[-1e3,1E-130,2.5,9,10],"bs":["AA==","AAE=","/w=="]}'
    )


def test_sdk_v1_keeps_set_order() -> None:
    doc = codec.item_to_sdk_v1({"ns": {"NS": ["10", "9"]}, "ss": {"SS": ["b", "a"]}})
    assert doc == {"ns": {"ns": ["10", "9"]}, "ss": {"ss": ["b", "a"]}}


# --------------------------------------------------------------------------- shapes / errors


def test_all_types_plain() -> None:
    item: Item = {
        "s": {"S": "x"},
        "n": {"N": "1.5"},
        "b": {"B": b"\x00\xff"},
        "m": {"M": {"inner": {"L": [{"NULL": True}, {"BOOL": False}, {"BOOL": True}]}}},
        "e": {"M": {}},
        "l": {"L": []},
    }
    assert codec.dumps(codec.item_to_plain(item)) == (
        b'{"s":"x","n":1.5,"b":"AP8=","m":{"inner":[null,false,true]},"e":{},"l":[]}'
    )


def test_unknown_tag_names_the_path() -> None:
    item = {"a": {"M": {"x": {"L": [{"S": "ok"}, {"Q": "?"}]}}}}
    with pytest.raises(CodecError, match=r"attribute a\.x\[1\]: unknown type tag 'Q'") as ei:
        codec.item_to_plain(item)
    assert ei.value.resource == "a.x[1]"
    with pytest.raises(CodecError, match=r"a\.x\[1\]"):
        codec.item_to_sdk_v1(item)


@pytest.mark.parametrize(
    "av",
    [
        {"S": "a", "N": "1"},
        {},
        "S",
        None,
        ["S"],
        {"S": 1},
        {"BOOL": "true"},
        {"NULL": False},
        {"M": []},
        {"L": {}},
        {"SS": "abc"},
        {"SS": ["a", 1]},
        {"BS": [b"a", 3]},
        {"B": 5},
        {"B": "not base64!"},
        {"s": "lower-case tag"},
    ],
)
def test_malformed_values_raise(av: Any) -> None:
    with pytest.raises(CodecError, match="attribute x"):
        codec.item_to_plain({"x": av})
    with pytest.raises(CodecError):
        codec.to_plain(av)
    with pytest.raises(CodecError):
        codec.item_to_sdk_v1({"x": av})


def test_multi_key_error_is_named() -> None:
    with pytest.raises(CodecError, match=r"attribute deep\.k: .*exactly one type tag"):
        codec.item_to_plain({"deep": {"M": {"k": {"S": "a", "N": "1"}}}})


def test_item_must_be_a_dict() -> None:
    with pytest.raises(CodecError):
        codec.item_to_plain([])  # type: ignore[arg-type]


def test_bad_number_path_in_nested_list() -> None:
    with pytest.raises(CodecError, match=r"attribute l\[0\]\.y: invalid number \(3 char"):
        codec.item_to_plain({"l": {"L": [{"M": {"y": {"N": "NaN"}}}]}})


@pytest.mark.parametrize(
    "item",
    [
        {"ssn": {"N": "123-45-6789"}},
        {"card": {"N": "4111-1111-1111-1111"}},
        {"secret": {"B": "not*base64-but-secret"}},
    ],
)
def test_errors_never_quote_the_value(item: dict[str, Any]) -> None:
    """Issue 11 item 4: codec errors reach logs and the dead-letter topic."""
    value = next(iter(next(iter(item.values())).values()))
    with pytest.raises(CodecError) as err:
        codec.item_to_plain(item)
    assert value not in str(err.value) and value[:8] not in str(err.value)
    assert next(iter(item)) in str(err.value)  # the attribute is named


def test_as_received_keeps_a_refused_item_replayable() -> None:
    from decimal import Decimal

    raw = {
        "pk": {"S": "a"},
        "n": {"N": "NaN"},
        "b": {"B": b"\x00\xff"},
        "ns": {"NS": {"1", "2"}},
        "d": Decimal("1.5"),
        "l": ({"NULL": True},),
    }
    got = codec.as_received(raw)
    assert got["pk"] == {"S": "a"} and got["n"] == {"N": "NaN"} and got["b"] == {"B": "AP8="}
    assert sorted(got["ns"]["NS"]) == ["1", "2"] and got["d"] == "1.5"
    assert got["l"] == [{"NULL": True}]
    assert codec.dumps(got)  # JSON-able


def test_deep_nesting_error_is_linear() -> None:
    av: dict[str, Any] = {"Q": 1}
    for _ in range(32):
        av = {"M": {"k": av, "j": {"S": "x"}}}
    with pytest.raises(CodecError, match=r"^attribute top(\.k){32}: unknown"):
        codec.item_to_plain({"top": av})


# --------------------------------------------------------------------------- keys


def test_key_of_picks_key_attributes() -> None:
    item = {"pk": {"S": "a"}, "sk": {"N": "3"}, "other": {"S": "x"}}
    assert codec.key_of(item, ("pk", "sk")) == {"pk": {"S": "a"}, "sk": {"N": "3"}}


def test_key_of_missing_attribute() -> None:
    with pytest.raises(CodecError, match="key attribute 'sk' missing"):
        codec.key_of({"pk": {"S": "a"}}, ["pk", "sk"])


def test_key_json_sorts_and_is_compact() -> None:
    assert codec.key_json({"sk": {"N": "3"}, "pk": {"S": "a"}}) == b'{"pk":"a","sk":3}'


def test_key_json_binary_and_numeric_keys() -> None:
    keys: Item = {
        "id": {"B": b"\x01\x02\xfe"},
        "n": {"N": "12345678901234567890123456789012345678"},
    }
    assert codec.key_json(keys) == b'{"id":"AQL+","n":12345678901234567890123456789012345678}'


def test_seed_key() -> None:
    keys: Item = {"pk": {"S": "a"}, "n": {"N": "1.50"}, "b": {"B": b"\x01\x02\xfe"}}
    assert codec.seed_key(keys) == {"pk": "a", "n": "1.50", "b": "AQL+"}


@pytest.mark.parametrize("av", [{"M": {}}, {"N": "NaN"}, {"BOOL": True}, {}])
def test_seed_key_rejects_non_key_types(av: Any) -> None:
    with pytest.raises(CodecError, match="attribute pk"):
        codec.seed_key({"pk": av})


def test_sdk_v1_form() -> None:
    item: Item = {
        "s": {"S": "x"},
        "n": {"N": "1.5"},
        "b": {"B": b"\x00\xff"},
        "ss": {"SS": ["a"]},
        "ns": {"NS": ["1"]},
        "bs": {"BS": [b"\x01"]},
        "m": {"M": {"l": {"L": [{"NULL": True}, {"BOOL": True}]}}},
    }
    assert codec.item_to_sdk_v1(item) == {
        "s": {"s": "x"},
        "n": {"n": "1.5"},
        "b": {"b": "AP8="},
        "ss": {"ss": ["a"]},
        "ns": {"ns": ["1"]},
        "bs": {"bs": ["AQ=="]},
        "m": {"m": {"l": {"l": [{"null": True}, {"bool": True}]}}},
    }
    assert codec.sdk_v1_to_item(codec.item_to_sdk_v1(item)) == item


@pytest.mark.parametrize(
    "doc", [{"x": {"q": 1}}, {"x": {"b": "%%"}}, {"x": {"n": 1}}, {"x": {"m": {"y": {}}}}]
)
def test_sdk_v1_to_item_rejects_bad_documents(doc: Any) -> None:
    with pytest.raises(CodecError, match="attribute x"):
        codec.sdk_v1_to_item(doc)


def test_dumps_wraps_encode_errors() -> None:
    with pytest.raises(CodecError):
        codec.dumps({"x": object()})


# --------------------------------------------------------------------------- fast walk


def _reference_plain(item: Any) -> Any:
    try:
        return ("ok", codec.dumps(codec._item_map(item)))
    except CodecError as e:
        return ("error", str(e), e.resource)


def _reference_v1(item: Any) -> Any:
    try:
        return ("ok", codec.dumps(codec._item_map(item, codec._v1)))
    except CodecError as e:
        return ("error", str(e), e.resource)


def _outcome(fn: Any, item: Any) -> Any:
    try:
        return ("ok", codec.dumps(fn(item)))
    except CodecError as e:
        return ("error", str(e), e.resource)


MALFORMED: list[Any] = [
    {"S": "a", "N": "1"},
    {},
    "S",
    None,
    ["S"],
    {"S": 1},
    {"BOOL": "true"},
    {"NULL": False},
    {"M": []},
    {"L": {}},
    {"SS": "abc"},
    {"SS": ["a", 1]},
    {"BS": [b"a", 3]},
    {"B": 5},
    {"B": "not base64!"},
    {"Q": 1},
    {"N": "NaN"},
    {"N": 1.5},
    {"N": True},
    {"N": "١٢"},
    {"NS": ["1", "x"]},
    {"L": [{"S": "a"}, {"N": "x"}]},
]


@settings(deadline=None, max_examples=200)
@given(items(), st.lists(st.tuples(st.sampled_from(MALFORMED), st.integers(0, 3)), max_size=2))
def test_fast_walk_matches_the_reference_walk(item: dict[str, Any], bad: Any) -> None:
    """item_to_plain / item_to_sdk_v1 take a faster walk; output and errors are the
    reference walk's, also for malformed values at the top level or nested."""
    item = dict(item)
    for n, (av, where) in enumerate(bad):
        if where == 0:
            item[f"bad{n}"] = av
        elif where == 1:
            item[f"bad{n}"] = {"M": {"ok": {"S": "x"}, "in": av}}
        elif where == 2:
            item[f"bad{n}"] = {"L": [{"N": "1"}, av]}
        else:
            item = {f"bad{n}": av, **item}
    assert _outcome(codec.item_to_plain, item) == _reference_plain(item)
    assert _outcome(codec.item_to_sdk_v1, item) == _reference_v1(item)


@pytest.mark.parametrize(
    "av",
    [
        {"N": "007"},  # loose numbers are normalised, not rejected
        {"N": 12},
        {"N": Decimal("1.50")},
        {"B": bytearray(b"\x00\xff")},
        {"B": memoryview(b"\x00\xff")},
        {"B": "AP8="},
        {"L": ({"S": "tuple"},)},
        {"SS": ("b", "a")},
        {"NS": ["10", "9", "-1e3", "007"]},
        {"M": {"deep": {"L": [{"M": {"x": {"NULL": True}}}, {"BOOL": False}]}}},
    ],
)
def test_fast_walk_unusual_but_valid_values(av: Any) -> None:
    item = {"x": av, "y": {"S": "after"}}
    assert _outcome(codec.item_to_plain, item) == _reference_plain(item)
    assert _outcome(codec.item_to_sdk_v1, item) == _reference_v1(item)
    assert _outcome(codec.item_to_plain, item)[0] == "ok"
