"""Kafka (key, value) bytes for one change event, in the "native" or "seed" format.

native: key   = {"pk":..,"sk":..} (sorted, plain values, see codec.key_json)
        value = {"op","table","keys","before","after","ts_ms","source":{...}}
seed:   the old Kafka Connect connector's shape (key attributes as strings; value with
        "version", "document" (a JSON *string* of the SDK v1 typed item), "source",
        "op", "ts_ms").

A delete is followed by a tombstone (key, None) when tombstones are enabled, so
compacted topics drop the key.  Pure: no boto, no faust.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from app.domain import codec
from app.domain.errors import CodecError, ConfigError
from app.domain.model import Item, StreamRecord

Op = Literal["r", "c", "u", "d"]
Format = Literal["native", "seed"]
Message = tuple[bytes, bytes | None]

SEED_VERSION = "1.0"

_OPS = frozenset(("r", "c", "u", "d"))
_OP_FOR: dict[str, Op] = {"INSERT": "c", "MODIFY": "u", "REMOVE": "d"}
_SORT = orjson.OPT_SORT_KEYS
_item_to_plain = codec.item_to_plain
_dumps = codec.dumps


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """Where an event came from."""

    table: str
    stream_arn: str | None = None
    shard_id: str | None = None
    seq: str | None = None
    snapshot: bool = False
    segment: int | None = None
    total_segments: int | None = None
    ttl_delete: bool = False


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """The table's initial sync, for the seed format's source block."""

    running: bool  # init_sync_state RUNNING vs FINISHED
    start_ms: int
    end_ms: int | None
    count: int


def op_for(event_name: str) -> Op:
    """INSERT -> "c", MODIFY -> "u", REMOVE -> "d"."""
    try:
        return _OP_FOR[event_name]
    except KeyError:
        raise CodecError(f"unknown stream event name {event_name!r}") from None


def _check_op(op: str) -> None:
    if op not in _OPS:
        raise CodecError(f"unknown op {op!r}")


def native(
    op: Op,
    keys: Item,
    before: Item | None,
    after: Item | None,
    ts_ms: int,
    src: SourceInfo,
    tombstones: bool,
) -> list[Message]:
    _check_op(op)
    plain_keys = _item_to_plain(keys)
    key = _dumps(plain_keys, _SORT)
    source = {
        "stream_arn": src.stream_arn,
        "shard_id": src.shard_id,
        "seq": src.seq,
        "snapshot": src.snapshot,
        "segment": src.segment,
        "total_segments": src.total_segments,
        "ttl_delete": src.ttl_delete,
    }
    return _native_messages(
        op,
        src.table,
        key,
        plain_keys,
        None if before is None else _item_to_plain(before),
        None if after is None else _item_to_plain(after),
        ts_ms,
        source,
        tombstones,
    )


def _native_messages(
    op: Op,
    table: str,
    key: bytes,
    plain_keys: dict[str, Any],
    plain_before: dict[str, Any] | None,
    plain_after: dict[str, Any] | None,
    ts_ms: int,
    source: dict[str, Any],
    tombstones: bool,
) -> list[Message]:
    value = _dumps(
        {
            "op": op,
            "table": table,
            "keys": plain_keys,
            "before": plain_before,
            "after": plain_after,
            "ts_ms": ts_ms,
            "source": source,
        }
    )
    if op == "d" and tombstones:
        return [(key, value), (key, None)]
    return [(key, value)]


def seed(
    op: Op,
    keys: Item,
    before: Item | None,  # unused: the seed format carries no old image
    after: Item | None,
    ts_ms: int,
    table: str,
    snap: SnapshotInfo | None,
    tombstones: bool,
) -> list[Message]:
    _check_op(op)
    return _seed_messages(op, keys, after, ts_ms, table, snap, tombstones)


def _seed_messages(
    op: Op,
    keys: Item,
    after: Item | None,
    ts_ms: int,
    table: str,
    snap: SnapshotInfo | None,
    tombstones: bool,
) -> list[Message]:
    key = _dumps(codec.seed_key(keys), _SORT)
    doc_item = keys if op == "d" or after is None else after
    document = _dumps(codec.item_to_sdk_v1(doc_item)).decode()
    source: dict[str, Any]
    if snap is None:
        source = {
            "version": SEED_VERSION,
            "table_name": table,
            "init_sync": op == "r",
            "init_sync_state": None,
            "init_sync_start": None,
            "init_sync_end": None,
            "init_sync_count": None,
        }
    else:
        source = {
            "version": SEED_VERSION,
            "table_name": table,
            "init_sync": op == "r",
            "init_sync_state": "RUNNING" if snap.running else "FINISHED",
            "init_sync_start": snap.start_ms,
            "init_sync_end": snap.end_ms,
            "init_sync_count": snap.count,
        }
    value = _dumps(
        {
            "version": SEED_VERSION,
            "document": document,
            "source": source,
            "op": op,
            "ts_ms": ts_ms,
        }
    )
    if op == "d" and tombstones:
        return [(key, value), (key, None)]
    return [(key, value)]


class Encoder:
    """One format chosen once, so callers never branch on it.

    ``change`` and ``snapshot`` are the per-event hot path: they build the envelope
    directly (no SourceInfo per event; for a snapshot, the key values are taken from the
    converted item instead of converting them twice) and produce the same bytes as
    :func:`native` / :func:`seed`.  Those stay the reference: when anything raises,
    the event is encoded again through them, so errors (and which of two errors is
    reported) are exactly theirs.
    """

    __slots__ = ("format", "tombstones")

    def __init__(self, format: Format, tombstones: bool) -> None:
        if format not in ("native", "seed"):
            raise ConfigError("format", f"unknown output format {format!r} (native|seed)")
        self.format: Format = format
        self.tombstones = tombstones

    def _encode(
        self,
        op: Op,
        keys: Item,
        before: Item | None,
        after: Item | None,
        ts_ms: int,
        src: SourceInfo,
        snap: SnapshotInfo | None,
    ) -> list[Message]:
        """The reference path (see the class docstring)."""
        if self.format == "native":
            return native(op, keys, before, after, ts_ms, src, self.tombstones)
        return seed(op, keys, before, after, ts_ms, src.table, snap, self.tombstones)

    def snapshot(
        self,
        table: str,
        key_names: tuple[str, ...] | list[str],
        item: Item,
        segment: int,
        total: int,
        ts_ms: int,
        snap: SnapshotInfo | None,
    ) -> list[Message]:
        """A scanned item -> op "r"."""
        try:
            keys = codec.key_of(item, key_names)
            try:
                if self.format == "native":
                    # keys hold the item's own attribute values: convert the item once
                    after = _item_to_plain(item)
                    plain_keys = {k: after[k] for k in keys}
                    key = _dumps(plain_keys, _SORT)
                    source = {
                        "stream_arn": None,
                        "shard_id": None,
                        "seq": None,
                        "snapshot": True,
                        "segment": segment,
                        "total_segments": total,
                        "ttl_delete": False,
                    }
                    return _native_messages(
                        "r", table, key, plain_keys, None, after, ts_ms, source, False
                    )
                return _seed_messages("r", keys, item, ts_ms, table, snap, False)
            except CodecError:
                pass  # encode again the reference way, for its error (checks run in its order)
            src = SourceInfo(table, snapshot=True, segment=segment, total_segments=total)
            return self._encode("r", keys, None, item, ts_ms, src, snap)
        except CodecError as e:
            raise CodecError(
                f"table {table} snapshot segment {segment}/{total}: {e}", resource=table
            ) from e

    def change(
        self,
        table: str,
        key_names: tuple[str, ...] | list[str],
        record: StreamRecord,
        stream_arn: str | None,
        shard_id: str | None,
        snap: SnapshotInfo | None,
    ) -> list[Message]:
        """A stream record -> op c/u/d; before = old image, after = new image."""
        try:
            keys = record.keys
            if not keys:  # defensive: streams always carry Keys
                keys = codec.key_of(record.new_image or record.old_image or {}, key_names)
            op = _OP_FOR.get(record.event_name) or op_for(record.event_name)  # op_for: error
            if self.format == "native":
                # The same steps, in the same order, as native(): no reference re-run
                # is needed for its errors.
                plain_keys = _item_to_plain(keys)
                key = _dumps(plain_keys, _SORT)
                before, after = record.old_image, record.new_image
                source = {
                    "stream_arn": stream_arn,
                    "shard_id": shard_id,
                    "seq": record.sequence_number,
                    "snapshot": False,
                    "segment": None,
                    "total_segments": None,
                    "ttl_delete": record.ttl_delete,
                }
                return _native_messages(
                    op,
                    table,
                    key,
                    plain_keys,
                    None if before is None else _item_to_plain(before),
                    None if after is None else _item_to_plain(after),
                    record.approx_ts_ms,
                    source,
                    self.tombstones,
                )
            return _seed_messages(
                op, keys, record.new_image, record.approx_ts_ms, table, snap, self.tombstones
            )
        except CodecError as e:
            raise CodecError(
                f"table {table} seq {record.sequence_number}: {e}", resource=table
            ) from e
