"""DynamoDB typed attribute values -> plain values ready for orjson.

Numbers never pass through float: an ``N`` becomes an :class:`orjson.Fragment`
holding its JSON number text, so all 38 significant digits survive.  Binary becomes
standard base64 text.  Sets are sorted so equal items always encode to equal bytes.

Also the seed ("AWS SDK v1 JSON", lower-case tags) document form used by the old
Kafka Connect connector, and its inverse so round-trips can be tested.

Pure: no boto, no faust.  This runs per record (~30 attribute values per 1 KB item,
two images per MODIFY), so there are two walks over an item:

* the *reference* walk (``_conv``, ``_v1``): validates as it goes and, on a bad value,
  raises a CodecError naming the attribute path;
* the *fast* walk (``_fast_map``, ``_fast_v1_map``, see "fast path" below): the same
  conversion with as few Python operations per value as we could measure, and no
  error reporting.  Anything unusual makes it give up, and the item is converted
  again by the reference walk, which returns the same value or raises the error.

Both produce byte-identical JSON; ``bench/micro/corpus.py`` checks that over a few
hundred thousand outputs (run it after any change here), ``bench/micro/encode.py``
times it.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, TypeGuard

import orjson

from app.domain.errors import CodecError
from app.domain.model import AttributeValue, Item

__all__ = [
    "dumps",
    "item_to_plain",
    "item_to_sdk_v1",
    "key_json",
    "key_of",
    "number_text",
    "sdk_v1_to_item",
    "seed_key",
    "to_plain",
]

# RFC 8259 number, ASCII digits only.
_json_number = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?").fullmatch
# What we are willing to normalise through Decimal: a sign, leading zeros, a bare
# leading/trailing point, surrounding whitespace.  No underscores, no non-ASCII
# digits, no NaN/Infinity (Decimal would accept all of those).
_loose_number = re.compile(
    r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*", re.ASCII
).fullmatch


def _is_json_number(v: Any) -> TypeGuard[str]:
    """Is ``v`` a str holding an RFC 8259 number?  Plain non-negative integers (most
    DynamoDB numbers) are recognised without the regex, which costs ~2x more."""
    if type(v) is not str:
        return False
    if v.isdigit() and v.isascii():
        return v[0] != "0" or len(v) == 1
    return _json_number(v) is not None


_Fragment = orjson.Fragment
_b2a = binascii.b2a_base64
_a2b = binascii.a2b_base64
_OPT_SORT = orjson.OPT_SORT_KEYS


_NO_CHILD: Any = object()


class _Bad(Exception):
    """Internal: carries the attribute path outwards (innermost part first)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str | int] = []
        self.child: Any = _NO_CHILD  # the attribute value the error came out of


def _path_text(path: list[str | int]) -> str:
    out = ""
    for part in reversed(path):
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "<value>"


def _codec_error(e: _Bad) -> CodecError:
    path = _path_text(e.path)
    return CodecError(f"attribute {path}: {e.message}", resource=path)


# --------------------------------------------------------------------------- numbers


def _invalid_number(text: str) -> str:
    # never the value itself: errors reach logs and the dead-letter topic (item data)
    return (
        f"invalid number ({len(text)} characters; not a finite decimal DynamoDB "
        "accepts, value not shown)"
    )


def _slow_number_text(v: Any) -> str:
    """Normalise a non-JSON number text (or int/Decimal) to JSON number text."""
    if type(v) is str:
        if _loose_number(v) is None:
            raise _Bad(_invalid_number(v))
        try:
            d = Decimal(v)
        except ArithmeticError:  # decimal.InvalidOperation: exponent out of range
            raise _Bad(_invalid_number(v)) from None
    elif type(v) is int:
        return str(v)
    elif type(v) is Decimal:
        d = v
    else:
        raise _Bad(f"number must be a string, got {type(v).__name__}")
    if not d.is_finite():
        raise _Bad(_invalid_number(str(v)))
    text = str(d)  # scientific form when needed: "1E+125", "1.5E-130": valid JSON
    if _json_number(text) is None:  # pragma: no cover - Decimal.__str__ of a finite value
        raise _Bad(_invalid_number(str(v)))
    return text


def _n_text(v: Any) -> str:
    """JSON number text of an ``N`` value; _Bad if it has none."""
    if type(v) is str and _json_number(v) is not None:
        return v
    return _slow_number_text(v)


def number_text(v: Any) -> str:
    """The JSON number text for an ``N`` value (raises CodecError if it has none)."""
    if _is_json_number(v):
        return v
    try:
        return _slow_number_text(v)
    except _Bad as e:
        raise _codec_error(e) from None


# --------------------------------------------------------------------------- binary


def _raw_bytes(v: Any) -> bytes | bytearray | memoryview:
    t = type(v)
    if t is bytes or t is bytearray or t is memoryview:
        return v  # type: ignore[no-any-return]
    if t is str:
        try:
            return _a2b(v, strict_mode=True)
        except (binascii.Error, ValueError):
            raise _Bad(
                f"binary string is not valid base64 ({len(v)} characters; value not shown)"
            ) from None
    raise _Bad(f"binary must be bytes, got {t.__name__}")


def _b64(v: Any) -> str:
    t = type(v)
    if t is not bytes and t is not bytearray and t is not memoryview:
        v = _raw_bytes(v)
    return _b2a(v, newline=False).decode("ascii")


# --------------------------------------------------------------------------- plain


def _check_set(v: Any, tag: str) -> None:
    t = type(v)
    if t is not list and t is not tuple and t is not set and t is not frozenset:
        raise _Bad(f"{tag} must be a list, got {t.__name__}")


def _ss(v: Any) -> list[str]:
    _check_set(v, "SS")
    for s in v:
        if type(s) is not str:
            raise _Bad(f"SS member must be a string, got {type(s).__name__}")
    return sorted(v)


def _ns(v: Any) -> list[orjson.Fragment]:
    _check_set(v, "NS")
    # Plain non-negative integers (most members) are checked inline, the rest as N.
    texts = [
        s
        if type(s) is str and s.isdigit() and s.isascii() and (s[0] != "0" or len(s) == 1)
        else _n_text(s)
        for s in v
    ]
    try:
        texts.sort(key=int)  # all integers (the common case): cheaper than Decimal
    except ValueError:
        texts.sort(key=Decimal)
    return list(map(_Fragment, texts))


def _bs(v: Any) -> list[str]:
    _check_set(v, "BS")
    raw = [bytes(_raw_bytes(b)) for b in v]
    raw.sort()
    return [_b2a(b, newline=False).decode("ascii") for b in raw]


def _null(v: Any) -> None:
    if v is not True:
        raise _Bad(f"NULL must be true, got {v!r}")


def _bool(v: Any) -> bool:
    if type(v) is not bool:
        raise _Bad(f"BOOL must be a boolean, got {type(v).__name__}")
    return v


def _s(v: Any) -> str:
    if type(v) is not str:
        raise _Bad(f"S must be a string, got {type(v).__name__}")
    return v


def _locate(container: Any, child: Any, path: list[str | int]) -> None:
    """Append the name/index under which ``child`` (by identity) sits in ``container``."""
    if child is _NO_CHILD:
        return
    if type(container) is dict:
        for k, a in container.items():
            if a is child:
                path.append(k)
                return
    elif type(container) is list or type(container) is tuple:
        for i, a in enumerate(container):
            if a is child:
                path.append(i)
                return


def _conv(av: Any) -> Any:
    # Errors: the innermost failure raises _Bad; each enclosing _conv on the way out
    # records where its failing child sat (found by identity, so the happy path pays
    # nothing: try blocks are free in 3.11+ until something raises).
    try:
        try:
            (tag,) = av
            v = av[tag]
        except (TypeError, ValueError, KeyError, IndexError):
            raise _Bad(_shape_message(av)) from None
        if tag == "S":
            if type(v) is str:
                return v
            return _s(v)
        if tag == "N":
            if type(v) is str and (
                (v.isdigit() and v.isascii() and (v[0] != "0" or len(v) == 1))
                or _json_number(v) is not None
            ):
                return _Fragment(v)
            return _Fragment(_slow_number_text(v))
        if tag == "M":
            if type(v) is not dict:
                raise _Bad(f"M must be a map, got {type(v).__name__}")
            return {k: _conv(a) for k, a in v.items()}
        if tag == "L":
            if type(v) is not list and type(v) is not tuple:
                raise _Bad(f"L must be a list, got {type(v).__name__}")
            return [_conv(a) for a in v]
        if tag == "BOOL":
            if type(v) is bool:
                return v
            return _bool(v)
        if tag == "NULL":
            if v is True:
                return None
            return _null(v)
        if tag == "B":
            return _b64(v)
        if tag == "SS":
            return _ss(v)
        if tag == "NS":
            return _ns(v)
        if tag == "BS":
            return _bs(v)
        raise _Bad(f"unknown type tag {tag!r}")
    except _Bad as e:
        if e.child is not _NO_CHILD:
            _locate(av.get(tag), e.child, e.path)
        e.child = av
        raise


def _shape_message(av: Any) -> str:
    if isinstance(av, dict):
        if not av:
            return "empty attribute value"
        return f"attribute value must have exactly one type tag, got {sorted(map(str, av))}"
    return f"attribute value must be a dict, got {type(av).__name__}"


def _item_map(item: Any, conv: Callable[[Any], Any] = _conv) -> dict[str, Any]:
    """Convert every attribute of an item; errors name the attribute path."""
    if type(item) is not dict:
        raise CodecError(f"item must be a map, got {type(item).__name__}")
    try:
        return {k: conv(a) for k, a in item.items()}
    except _Bad as e:
        _locate(item, e.child, e.path)
        raise _codec_error(e) from None


def to_plain(av: AttributeValue) -> Any:
    """One typed attribute value -> plain value (str, Fragment, list, dict, bool, None)."""
    try:
        return _conv(av)
    except _Bad as e:
        raise _codec_error(e) from None


def item_to_plain(item: Item) -> dict[str, Any]:
    """A whole item -> dict of plain values."""
    if type(item) is dict:
        try:
            return _fast_map(item)
        except Exception:  # noqa: BLE001, S110 - anything unusual: the reference walk decides
            pass
    return _item_map(item)


# --------------------------------------------------------------------------- fast path
#
# Same results as _conv / _v1 for every input they accept, fewer operations per value:
#
# * the map and list loops handle the common tags (S, N, M, and L in maps) inline, in
#   order of frequency, so most attribute values cost no function call at all; the
#   rest go through _fast_other (one call) and the reference helpers (_ss, _ns, _b64..).
#   A dispatch dict keyed by tag measured ~20% slower than this if-chain (a call per
#   value), and so did zip/map tricks that extract (tag, value) pairs in C;
# * numbers: a plain non-negative integer without leading zero is valid JSON text as
#   it is (str.isdigit is ~10x cheaper than the regex); others take the regex, and
#   only text that is not JSON goes to Decimal (_slow_number_text);
# * no try/except or path bookkeeping: a malformed value makes the fast walk raise
#   (_Unusual, or whatever the unpacking raises: ValueError, TypeError, _Bad ...), and
#   item_to_plain / item_to_sdk_v1 then run the reference walk over the whole item,
#   which returns the same value or raises the CodecError naming the path.
#
# So the one rule here: never accept a value the reference rejects, never return a
# different value.  Type checks are therefore as strict as the reference's (exact
# ``str``/``dict``/``bool``; ``list`` or ``tuple`` for L).  bench/micro/corpus.py
# checks the byte-identity.


class _Unusual(Exception):
    """Internal: the fast walk leaves this value to the reference walk."""


def _fast_map(m: dict[str, Any]) -> dict[str, Any]:
    """Typed map (an item, or an M value) -> plain dict.  Raises on anything unusual."""
    out: dict[str, Any] = {}
    for k, av in m.items():
        (tag,) = av  # exactly one type tag, else ValueError (and the reference reports)
        v = av[tag]
        if tag == "S":
            if type(v) is not str:
                raise _Unusual
            out[k] = v
        elif tag == "N":
            if type(v) is str and v.isdigit() and v.isascii() and (v[0] != "0" or len(v) == 1):
                out[k] = _Fragment(v)
            else:
                out[k] = _Fragment(_n_text(v))
        elif tag == "M":
            if type(v) is not dict:
                raise _Unusual
            out[k] = _fast_map(v)
        else:
            out[k] = _fast_other(tag, v)
    return out


def _fast_list(items: list[Any] | tuple[Any, ...]) -> list[Any]:
    """An L value -> plain list; the same inline cases as _fast_map."""
    out: list[Any] = []
    for av in items:
        (tag,) = av
        v = av[tag]
        if tag == "S":
            if type(v) is not str:
                raise _Unusual
            out.append(v)
        elif tag == "N":
            if type(v) is str and v.isdigit() and v.isascii() and (v[0] != "0" or len(v) == 1):
                out.append(_Fragment(v))
            else:
                out.append(_Fragment(_n_text(v)))
        elif tag == "M":
            if type(v) is not dict:
                raise _Unusual
            out.append(_fast_map(v))
        else:
            out.append(_fast_other(tag, v))
    return out


def _fast_other(tag: str, v: Any) -> Any:
    """The less frequent tags; the reference helpers raise _Bad on bad values."""
    if tag == "L":
        if type(v) is not list and type(v) is not tuple:
            raise _Unusual
        return _fast_list(v)
    if tag == "BOOL":
        if type(v) is not bool:
            raise _Unusual
        return v
    if tag == "NULL":
        if v is not True:
            raise _Unusual
        return None
    if tag == "B":
        if type(v) is bytes:
            return _b2a(v, newline=False).decode()  # base64 is ASCII: the default utf-8
        return _b64(v)  # bytearray, memoryview, base64 text
    if tag == "SS":
        return _ss(v)
    if tag == "NS":
        return _ns(v)
    if tag == "BS":
        return _bs(v)
    raise _Unusual  # unknown tag


def _fast_v1_map(m: dict[str, Any]) -> dict[str, Any]:
    """Typed map -> the seed (SDK v1) form; like _fast_map, rarer tags via _v1."""
    out: dict[str, Any] = {}
    for k, av in m.items():
        (tag,) = av
        v = av[tag]
        if tag == "S":
            if type(v) is not str:
                raise _Unusual
            out[k] = {"s": v}
        elif tag == "N":
            if type(v) is str and v.isdigit() and v.isascii() and (v[0] != "0" or len(v) == 1):
                out[k] = {"n": v}
            else:
                out[k] = {"n": _n_text(v)}
        elif tag == "M":
            if type(v) is not dict:
                raise _Unusual
            out[k] = {"m": _fast_v1_map(v)}
        elif tag == "L":
            if type(v) is not list and type(v) is not tuple:
                raise _Unusual
            out[k] = {"l": _fast_v1_list(v)}
        else:
            out[k] = _v1(av)  # reference; its _Bad makes the caller start over
    return out


def _fast_v1_list(items: list[Any] | tuple[Any, ...]) -> list[Any]:
    out: list[Any] = []
    for av in items:
        (tag,) = av
        v = av[tag]
        if tag == "S":
            if type(v) is not str:
                raise _Unusual
            out.append({"s": v})
        elif tag == "N":
            if type(v) is str and v.isdigit() and v.isascii() and (v[0] != "0" or len(v) == 1):
                out.append({"n": v})
            else:
                out.append({"n": _n_text(v)})
        elif tag == "M":
            if type(v) is not dict:
                raise _Unusual
            out.append({"m": _fast_v1_map(v)})
        else:
            out.append(_v1(av))
    return out


# --------------------------------------------------------------------------- keys


def key_of(item: Item, key_names: Sequence[str]) -> Item:
    """The key attributes of ``item`` (CodecError if one is missing)."""
    try:
        return {k: item[k] for k in key_names}
    except KeyError as e:
        raise CodecError(
            f"key attribute {e.args[0]!r} missing from item", resource=e.args[0]
        ) from None
    except TypeError:
        raise CodecError(f"item must be a map, got {type(item).__name__}") from None


def key_json(keys: Item) -> bytes:
    """Compact JSON, sorted keys, of the plain key values: b'{"pk":"a","sk":3}'."""
    return dumps(item_to_plain(keys), _OPT_SORT)


def as_received(obj: Any) -> Any:
    """An item or image as the AWS client returned it, made JSON-able without judging it
    (bytes as base64 text, numbers as their text, sets as lists): what the dead-letter
    topic keeps of an item the codec refused, so that it can be fixed and replayed."""
    t = type(obj)
    if t is dict:
        return {str(k): as_received(v) for k, v in obj.items()}
    if t is list or t is tuple or t is set or t is frozenset:
        return [as_received(v) for v in obj]
    if t is bytes or t is bytearray or t is memoryview:
        return _b2a(bytes(obj), newline=False).decode("ascii")
    if obj is None or t is bool or t is str or t is int:
        return obj
    return str(obj)  # Decimal, float, anything else: its text


def dumps(obj: Any, option: int = 0) -> bytes:
    """orjson.dumps (``option``: orjson flags); encoding failures become CodecError.

    The result is copied into an exactly-sized bytes object: orjson 3.13 hands back its
    working buffer (>= 4 KiB even for a 40-byte key), and batches of envelopes held
    until Kafka acknowledges them made a worker with 100 shards peak at 1.2 GB.
    """
    try:
        return memoryview(orjson.dumps(obj, option=option)).tobytes()  # ~20% < bytes(..)
    except orjson.JSONEncodeError as e:
        raise CodecError(f"cannot encode as JSON: {e}") from None


# --------------------------------------------------------------------------- seed (SDK v1)


def _v1(av: Any) -> dict[str, Any]:
    try:
        try:
            (tag,) = av
            v = av[tag]
        except (TypeError, ValueError, KeyError, IndexError):
            raise _Bad(_shape_message(av)) from None
        if tag == "S":
            return {"s": v if type(v) is str else _s(v)}
        if tag == "N":
            if _is_json_number(v):
                return {"n": v}
            return {"n": _slow_number_text(v)}
        if tag == "M":
            if type(v) is not dict:
                raise _Bad(f"M must be a map, got {type(v).__name__}")
            return {"m": {k: _v1(a) for k, a in v.items()}}
        if tag == "L":
            if type(v) is not list and type(v) is not tuple:
                raise _Bad(f"L must be a list, got {type(v).__name__}")
            return {"l": [_v1(a) for a in v]}
        if tag == "BOOL":
            return {"bool": _bool(v)}
        if tag == "NULL":
            _null(v)
            return {"null": True}
        if tag == "B":
            return {"b": _b64(v)}
        if tag == "SS":
            _ss(v)  # validates
            return {"ss": list(v)}
        if tag == "NS":
            _check_set(v, "NS")
            return {"ns": [s if _is_json_number(s) else _slow_number_text(s) for s in v]}
        if tag == "BS":
            _check_set(v, "BS")
            return {"bs": [_b64(b) for b in v]}
        raise _Bad(f"unknown type tag {tag!r}")
    except _Bad as e:
        if e.child is not _NO_CHILD:
            _locate(av.get(tag), e.child, e.path)
        e.child = av
        raise


def item_to_sdk_v1(item: Item) -> dict[str, Any]:
    """Item -> the old connector's document: {"attr": {"s": ..} | {"n": "1"} | ...}.

    Numbers stay strings (their JSON text), binary becomes base64, set order is kept.
    """
    if type(item) is dict:
        try:
            return _fast_v1_map(item)
        except Exception:  # noqa: BLE001, S110 - anything unusual: the reference walk decides
            pass
    return _item_map(item, _v1)


def _from_v1(doc: Any) -> AttributeValue:
    try:
        try:
            (tag,) = doc
            v = doc[tag]
        except (TypeError, ValueError, KeyError, IndexError):
            raise _Bad(_shape_message(doc)) from None
        if tag == "s":
            return {"S": _s(v)}
        if tag == "n":
            if type(v) is not str:
                raise _Bad(f"n must be a string, got {type(v).__name__}")
            return {"N": v}
        if tag == "b":
            return {"B": bytes(_raw_bytes(_s(v)))}
        if tag == "m":
            if type(v) is not dict:
                raise _Bad(f"m must be a map, got {type(v).__name__}")
            return {"M": {k: _from_v1(a) for k, a in v.items()}}
        if tag == "l":
            if type(v) is not list:
                raise _Bad(f"l must be a list, got {type(v).__name__}")
            return {"L": [_from_v1(a) for a in v]}
        if tag == "bool":
            return {"BOOL": _bool(v)}
        if tag == "null":
            _null(v)
            return {"NULL": True}
        if tag == "ss":
            _ss(v)
            return {"SS": list(v)}
        if tag == "ns":
            if type(v) is not list or any(type(s) is not str for s in v):
                raise _Bad("ns must be a list of strings")
            return {"NS": list(v)}
        if tag == "bs":
            if type(v) is not list:
                raise _Bad("bs must be a list of base64 strings")
            return {"BS": [bytes(_raw_bytes(_s(b))) for b in v]}
        raise _Bad(f"unknown type tag {tag!r}")
    except _Bad as e:
        if e.child is not _NO_CHILD:
            _locate(doc.get(tag), e.child, e.path)
        e.child = doc
        raise


def sdk_v1_to_item(doc: dict[str, Any]) -> Item:
    """Inverse of :func:`item_to_sdk_v1` (binary back to bytes)."""
    if type(doc) is not dict:
        raise CodecError(f"document must be a map, got {type(doc).__name__}")
    try:
        return {k: _from_v1(a) for k, a in doc.items()}
    except _Bad as e:
        _locate(doc, e.child, e.path)
        raise _codec_error(e) from None


def seed_key(keys: Item) -> dict[str, str]:
    """The old connector's key: each key attribute as a string (S, N text, B base64)."""
    out: dict[str, str] = {}
    for name, av in keys.items():
        try:
            try:
                ((tag, v),) = av.items()
            except (AttributeError, TypeError, ValueError):
                raise _Bad(_shape_message(av)) from None
            if tag == "S":
                out[name] = _s(v)
            elif tag == "N":
                out[name] = v if _is_json_number(v) else _slow_number_text(v)
            elif tag == "B":
                out[name] = _b64(v)
            else:
                raise _Bad(f"key attribute must be S, N or B, got {tag!r}")
        except _Bad as e:
            e.path.append(name)
            raise _codec_error(e) from None
    return out
