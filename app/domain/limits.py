"""How large one Kafka record of ours can get, and what a topic must accept.  Pure.

DynamoDB caps an item at 400 KB, counted its way: attribute names and values as UTF-8,
a number as ~1 byte per 2 significant digits + 1, NULL/BOOL as 1 byte, 1 byte per
List/Map element, 3 bytes per List/Map.  Our JSON can be much larger per counted byte:

- a control character in a string (or attribute name) becomes ``\\u0001``: 6 bytes;
- a BOOL/NULL list element (2 counted bytes) becomes ``false,``: 6 bytes; a top-level
  attribute with a 1-byte name and a BOOL (2 counted bytes) ``"\\u0001":false,``: 15;
- B becomes base64 (4/3);
- ``seed`` writes the item as SDK v1 JSON (``{"s":""}`` per value) *inside* a JSON string,
  escaping it again: an empty-string list element (1 counted byte) becomes
  ``{\\"s\\":\\"\\"},``: 13 bytes;
- ``native`` carries two images (before and after) of a MODIFY.

The factors below bound those ratios (checked against real worst-case items in
tests/unit/test_limits.py); the envelope (keys twice, ARN, shard, sequence number, ...)
adds a few KB at most.
"""

from __future__ import annotations

from typing import Literal

ITEM_MAX_BYTES = 400 * 1024
# output bytes per counted item byte, per image, at most
NATIVE_FACTOR = 7.5
SEED_FACTOR = 14.0
ENVELOPE_MAX_BYTES = 64 * 1024  # keys (<= 2 KB hash + 1 KB range, escaped) x2, ARN, ...
# a record batch's header (61 B) and one record's framing (varints, headers): rounded up
BATCH_OVERHEAD_BYTES = 1024
# A table's state and a shard listing grow with its stream's shards (~120 bytes each in
# both): a ~7,000-shard stream passes 1 MB, Kafka's default record limit.  The internal
# topics accept records up to this size, and the producer sends them.  It is also the
# ceiling of KAFKA_MAX_RECORD_BYTES: no event of a legal item comes near it (max_event_bytes:
# 6.2 MB), and the producer's request size stays what the state records need.
STATE_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def max_event_bytes(format: Literal["native", "seed"]) -> int:
    """Upper bound of key + value bytes of one event of an item DynamoDB accepts."""
    if format == "native":
        body = 2 * NATIVE_FACTOR * ITEM_MAX_BYTES  # before and after of a MODIFY
    elif format == "seed":
        body = SEED_FACTOR * ITEM_MAX_BYTES  # the new image only
    else:
        raise ValueError(f"unknown output format {format!r}")
    return int(body) + ENVELOPE_MAX_BYTES


def topic_max_message_bytes(record_limit: int) -> int:
    """``max.message.bytes`` a topic needs so that a record of `record_limit` key + value
    bytes, alone in its batch, is accepted."""
    return record_limit + BATCH_OVERHEAD_BYTES


def record_limit_for_topic(max_message_bytes: int) -> int:
    """The largest key + value a topic with this ``max.message.bytes`` surely accepts."""
    return max(0, max_message_bytes - BATCH_OVERHEAD_BYTES)


def record_bytes(key: bytes | None, value: bytes | None) -> int:
    return len(key or b"") + len(value or b"")
