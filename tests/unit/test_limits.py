"""The largest event of a legal item fits under the default KAFKA_MAX_RECORD_BYTES (issue 10
item 7: a MODIFY of a ~390 KB item was dead-lettered by default)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.domain import limits
from app.domain.envelope import Encoder
from app.domain.model import StreamRecord
from app.settings import Settings

KEY = {"pk": {"S": "k"}}


# ---- DynamoDB's item size, as AWS documents it (names + values, UTF-8) ---------------------
def _value_size(v: dict[str, Any]) -> int:
    ((t, x),) = v.items()
    if t == "S":
        return len(x.encode())
    if t == "B":
        return len(x)
    if t == "N":
        digits = x.lstrip("-").split("E")[0].replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if t in ("NULL", "BOOL"):
        return 1
    if t == "L":
        return 3 + sum(1 + _value_size(e) for e in x)
    if t == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(e) for k, e in x.items())
    raise AssertionError(t)


def item_size(item: dict[str, Any]) -> int:
    return sum(len(k.encode()) + _value_size(v) for k, v in item.items())


def _names(n: int, width: int) -> list[str]:
    """n distinct attribute names of `width` control characters (escaped to 6 bytes each)."""
    return [bytes(1 + (i // 31**d) % 31 for d in range(width)).decode() for i in range(n)]


def _fill(make: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
    """The largest item `make(n)` gives that DynamoDB still accepts (<= 400 KB); every
    construct below grows by a fixed size per unit."""
    base = item_size(make(0))
    n = (limits.ITEM_MAX_BYTES - base) // (item_size(make(1)) - base)
    item = make(n)
    assert limits.ITEM_MAX_BYTES - 64 < item_size(item) <= limits.ITEM_MAX_BYTES
    return item


WORST_ITEMS: dict[str, Callable[[int], dict[str, Any]]] = {
    "control characters": lambda n: {**KEY, "s": {"S": "\x01" * n}},
    "quotes": lambda n: {**KEY, "s": {"S": '"' * n}},
    "binary": lambda n: {**KEY, "b": {"B": b"\xff" * n}},
    "BOOL list": lambda n: {**KEY, "l": {"L": [{"BOOL": False}] * n}},
    "empty-string list": lambda n: {**KEY, "l": {"L": [{"S": ""}] * n}},
    "tiny numbers": lambda n: {**KEY, "l": {"L": [{"N": "-1E-130"}] * n}},
    "BOOL attributes with control-character names": lambda n: {
        **KEY,
        **{name: {"BOOL": False} for name in _names(n, 4)},
    },
    "NULL map entries with control-character names": lambda n: {
        **KEY,
        "m": {"M": {name: {"NULL": True} for name in _names(n, 4)}},
    },
}


@pytest.mark.parametrize("fmt", ["native", "seed"])
def test_the_largest_event_of_any_legal_item_fits_the_default_record_limit(fmt: str) -> None:
    default = Settings.from_env({}).kafka_max_record_bytes
    bound = limits.max_event_bytes(fmt)  # type: ignore[arg-type]
    assert bound <= default
    encoder = Encoder(fmt, tombstones=True)  # type: ignore[arg-type]
    sizes = {}
    for name, make in WORST_ITEMS.items():
        item = _fill(make)
        # a MODIFY carrying the item as both its old and its new image
        record = StreamRecord("MODIFY", "1" * 40, 1_767_225_600_000, KEY, item, item)
        ((key, value),) = encoder.change(
            "t" * 255,
            ["pk"],
            record,
            "arn:aws:dynamodb:us-east-1:123456789012:table/"
            + "t" * 255
            + "/stream/2026-01-01T00:00:00.000",
            "shardId-00000001767225600000-" + "a" * 36,
            None,
        )
        sizes[name] = limits.record_bytes(key, value)
    assert max(sizes.values()) <= bound, sizes
    # the old default (1,000,000) dead-lettered every one of these in native format
    assert fmt == "seed" or min(sizes.values()) > 1_000_000


def test_topics_are_created_to_accept_the_record_limit() -> None:
    limit = Settings.from_env({}).kafka_max_record_bytes
    need = limits.topic_max_message_bytes(limit)
    assert need > limit
    assert limits.record_limit_for_topic(need) == limit
    assert limits.record_limit_for_topic(100) == 0
