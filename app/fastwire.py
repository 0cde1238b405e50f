"""GetRecords / Scan response bodies -> Kafka (key, value) bytes, in one pass.

The hot path of a worker: a raw response body (bytes, as the service sent it) becomes
the messages of every record or item in it, plus what the runner needs besides (per
record: sequence number, approximate creation time, event name, size, TTL-delete flag;
per page: the cursor and the consumed capacity).

Two implementations, byte-for-byte equal (tests/unit/test_fastwire.py):

* the **native** pass, the ``dynamodb_wire`` extension built from ``native/`` (Rust,
  PyO3) by ``make``: it parses the body and writes the envelopes without building a
  Python object per attribute value;
* the **reference**: ``orjson.loads(body)``, each record made a StreamRecord the way
  ``app.domain.wire.to_record`` does, then ``Encoder.change`` (``Encoder.snapshot``
  for scanned items).  It is what runs when the extension cannot be imported, and it
  decides every case the native pass does not take: a body the native parser refuses
  goes through it whole, a record it refuses goes through it alone.  So errors are
  exactly the reference's: a CodecError per bad record, with the record as received
  for the dead-letter topic.

``ACTIVE`` says which one runs ("native" or "python"); ``DESCRIPTION`` says it for the
start-up log line.

A runner's use, per page (one format per worker, as the Encoder's)::

    ctx = ChangeContext(table, key_names, stream_arn, shard_id, snap, format, tombstones)
    page = encode_records_page(body, ctx)      # MalformedResponse: not a response at all
    messages = page.messages                   # every record's, in page order
    for f in page.failed:                      # CodecError per record, as Encoder raises
        dead_letter(f.error, f.raw)            # f.raw: the record as received (orjson)
    next_iterator = page.cursor                # None: the shard is closed

and for a Scan page ``encode_scan_page(body, ScanContext(...))``, whose ``cursor`` is the
LastEvaluatedKey (None: the segment is done) and ``consumed_capacity`` its RCU.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import orjson

from app.domain import codec, partition
from app.domain.envelope import SEED_VERSION, Encoder, Format, Message, SnapshotInfo
from app.domain.errors import CodecError
from app.domain.wire import to_record


def _load() -> tuple[Any, str]:
    """The extension module, or None and why not (not built: pure Python)."""
    try:
        return importlib.import_module("dynamodb_wire"), ""
    except ImportError as e:
        return None, f"{type(e).__name__}: {e}"


_native, _why = _load()
ACTIVE: Literal["native", "python"] = "python" if _native is None else "native"
DESCRIPTION = (
    f"native (dynamodb_wire {_native.__version__})"
    if _native is not None
    else f"python reference (dynamodb_wire not importable: {_why}; run `make native`)"
)

# Kafka's default partitioner for a key (app.output spreads every record with it): the
# extension's murmur2, else the reference (app.domain.partition, tested equal)
partition_for: Callable[[bytes, int], int] = getattr(
    _native, "partition_for", partition.partition_for
)


class MalformedResponse(CodecError):
    """The body as a whole is not a GetRecords / Scan response (not JSON, not an
    object, a list or cursor of the wrong type).  Names the call, never the content."""


@dataclass(frozen=True, slots=True)
class ChangeContext:
    """What a GetRecords page of one shard is encoded with."""

    table: str
    key_names: tuple[str, ...]
    stream_arn: str | None
    shard_id: str | None
    snap: SnapshotInfo | None  # the seed format's snapshot info block
    format: Format = "native"
    tombstones: bool = True


@dataclass(frozen=True, slots=True)
class ScanContext:
    """What a Scan page of one segment is encoded with."""

    table: str
    key_names: tuple[str, ...]
    segment: int
    total_segments: int
    ts_ms: int  # the snapshot's start: every item's ts_ms
    snap: SnapshotInfo | None
    format: Format = "native"


class EncodedRecord(NamedTuple):
    """One record (or scanned item) of a page and its Kafka messages.  A NamedTuple: the
    native pass hands over its fields as one tuple per record (``_make``, no __init__)."""

    position: int  # in the page
    messages: list[Message]  # (key, value), then (key, None) after a delete with tombstones
    seq: str | None  # SequenceNumber; None for a scanned item
    ts_ms: int  # ApproximateCreationDateTime in ms; the snapshot's ts for a scanned item
    event_name: str | None  # INSERT | MODIFY | REMOVE; None for a scanned item
    size_bytes: int
    ttl_delete: bool

    # what a page decision reads of a stream record (app.domain.pages.Record)
    @property
    def sequence_number(self) -> str:
        return self.seq or ""

    @property
    def approx_ts_ms(self) -> int:
        return self.ts_ms


@dataclass(frozen=True, slots=True)
class FailedRecord:
    """A record the reference refused: the CodecError it raised (naming the table, the
    sequence number or segment, and the attribute path, never a value) and the record
    or item as received, for the dead-letter topic."""

    position: int
    raw: Any
    error: CodecError


@dataclass(frozen=True, slots=True)
class EncodedPage:
    records: list[EncodedRecord]  # in page order, failed ones left out
    failed: list[FailedRecord]
    cursor: Any  # NextShardIterator (str | None) or LastEvaluatedKey (Item | None)
    consumed_capacity: float  # Scan's ConsumedCapacity.CapacityUnits; 0.0 for GetRecords
    native: int  # how many records the native pass encoded (the rest: the reference)

    @property
    def messages(self) -> list[Message]:
        return [m for r in self.records for m in r.messages]


# --------------------------------------------------------------------------- page fields


def _loads(body: bytes, call: str, table: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedResponse(
            f"table {table}: {call} response is not JSON ({len(body)} bytes)", resource=table
        ) from None
    if type(doc) is not dict:
        raise MalformedResponse(
            f"table {table}: {call} response is a {type(doc).__name__}, not an object",
            resource=table,
        )
    return doc


def _list(doc: dict[str, Any], name: str, call: str, table: str) -> list[Any]:
    got = doc.get(name) or []
    if type(got) is not list:
        raise MalformedResponse(
            f"table {table}: {call} {name} is a {type(got).__name__}, not a list", resource=table
        )
    return got


def _next_iterator(get: Callable[[str], Any], table: str) -> str | None:
    it = get("NextShardIterator")
    if it is not None and type(it) is not str:
        raise MalformedResponse(
            f"table {table}: GetRecords NextShardIterator is a {type(it).__name__}",
            resource=table,
        )
    return it


def _scan_cursor(get: Callable[[str], Any], table: str) -> tuple[Any, float]:
    """LastEvaluatedKey and consumed capacity, as app.aws.dynamodb.Tables.scan reads them."""
    last = get("LastEvaluatedKey") or None
    if last is not None and type(last) is not dict:
        raise MalformedResponse(
            f"table {table}: Scan LastEvaluatedKey is a {type(last).__name__}", resource=table
        )
    try:
        capacity = float((get("ConsumedCapacity") or {}).get("CapacityUnits", 0) or 0)
    except (AttributeError, TypeError, ValueError, OverflowError):
        raise MalformedResponse(
            f"table {table}: Scan ConsumedCapacity is malformed", resource=table
        ) from None
    return last, capacity


def _fields(body: bytes, spans: list[tuple[str, int, int]]) -> Callable[[str], Any]:
    """doc.get for the top-level members the native pass located (parsed on demand)."""
    where = {name: (start, end) for name, start, end in spans}

    def get(name: str) -> Any:
        span = where.get(name)
        return None if span is None else orjson.loads(body[span[0] : span[1]])

    return get


# --------------------------------------------------------------------------- reference


def _malformed_record(table: str, index: int, e: Exception) -> CodecError:
    what = f"missing {e.args[0]!r}" if isinstance(e, KeyError) else type(e).__name__
    return CodecError(
        f"table {table} record {index}: malformed stream record ({what})", resource=table
    )


def _reference_change(
    enc: Encoder, ctx: ChangeContext, index: int, raw: Any
) -> EncodedRecord | FailedRecord:
    try:
        rec = to_record(raw)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        return FailedRecord(index, raw, _malformed_record(ctx.table, index, e))
    try:
        messages = enc.change(ctx.table, ctx.key_names, rec, ctx.stream_arn, ctx.shard_id, ctx.snap)
    except CodecError as e:
        return FailedRecord(index, raw, e)
    except (AttributeError, TypeError) as e:
        # Keys that are not a map reach codec.seed_key, which assumes one (reported): the
        # record is malformed, not the worker
        return FailedRecord(index, raw, _malformed_record(ctx.table, index, e))
    return EncodedRecord(
        index,
        messages,
        rec.sequence_number,
        rec.approx_ts_ms,
        rec.event_name,
        rec.size_bytes,
        rec.ttl_delete,
    )


def _reference_snapshot(
    enc: Encoder, ctx: ScanContext, index: int, item: Any
) -> EncodedRecord | FailedRecord:
    try:
        messages = enc.snapshot(
            ctx.table, ctx.key_names, item, ctx.segment, ctx.total_segments, ctx.ts_ms, ctx.snap
        )
    except CodecError as e:
        return FailedRecord(index, item, e)
    return EncodedRecord(index, messages, None, ctx.ts_ms, None, 0, False)


def _page(
    results: list[EncodedRecord | FailedRecord], cursor: Any, capacity: float, native: int
) -> EncodedPage:
    records = [r for r in results if isinstance(r, EncodedRecord)]
    failed = [r for r in results if isinstance(r, FailedRecord)]
    return EncodedPage(records, failed, cursor, capacity, native)


def reference_records_page(body: bytes, ctx: ChangeContext) -> EncodedPage:
    """The reference: orjson.loads, to_record, Encoder.change."""
    doc = _loads(body, "GetRecords", ctx.table)
    records = _list(doc, "Records", "GetRecords", ctx.table)
    cursor = _next_iterator(doc.get, ctx.table)
    enc = Encoder(ctx.format, ctx.tombstones)
    results = [_reference_change(enc, ctx, i, raw) for i, raw in enumerate(records)]
    return _page(results, cursor, 0.0, 0)


def reference_scan_page(body: bytes, ctx: ScanContext) -> EncodedPage:
    """The reference: orjson.loads, Encoder.snapshot per item."""
    doc = _loads(body, "Scan", ctx.table)
    items = _list(doc, "Items", "Scan", ctx.table)
    cursor, capacity = _scan_cursor(doc.get, ctx.table)
    enc = Encoder(ctx.format, False)  # a snapshot read is never followed by a tombstone
    results = [_reference_snapshot(enc, ctx, i, item) for i, item in enumerate(items)]
    return _page(results, cursor, capacity, 0)


# --------------------------------------------------------------------------- native


def _seed_source(table: str, snap: SnapshotInfo | None, init_sync: bool) -> bytes:
    """The seed envelope's source block (envelope._seed_messages), once per page."""
    if snap is None:
        source: dict[str, Any] = {
            "version": SEED_VERSION,
            "table_name": table,
            "init_sync": init_sync,
            "init_sync_state": None,
            "init_sync_start": None,
            "init_sync_end": None,
            "init_sync_count": None,
        }
    else:
        source = {
            "version": SEED_VERSION,
            "table_name": table,
            "init_sync": init_sync,
            "init_sync_state": "RUNNING" if snap.running else "FINISHED",
            "init_sync_start": snap.start_ms,
            "init_sync_end": snap.end_ms,
            "init_sync_count": snap.count,
        }
    return codec.dumps(source)


def _merge(
    done: list[EncodedRecord], refused: list[EncodedRecord | FailedRecord]
) -> list[EncodedRecord | FailedRecord]:
    if not refused:
        return list(done)
    out: list[EncodedRecord | FailedRecord] = [*done, *refused]
    out.sort(key=lambda r: r.position)
    return out


def native_records_page(body: bytes, ctx: ChangeContext) -> EncodedPage:
    """The native pass (``dynamodb_wire`` must be importable)."""
    try:
        got = _native.encode_records(
            body,
            ctx.format == "seed",
            ctx.tombstones,
            codec.dumps(ctx.table),
            codec.dumps(ctx.stream_arn),
            codec.dumps(ctx.shard_id),
            _seed_source(ctx.table, ctx.snap, False),
        )
    except CodecError:  # a context orjson cannot write (lone surrogates): the reference says
        got = None
    if got is None:
        return reference_records_page(body, ctx)
    rows, refused, spans = got
    cursor = _next_iterator(_fields(body, spans), ctx.table)
    done = list(map(EncodedRecord._make, rows))
    enc = Encoder(ctx.format, ctx.tombstones)
    slow = [_reference_change(enc, ctx, i, orjson.loads(body[s:e])) for i, s, e in refused]
    return _page(_merge(done, slow), cursor, 0.0, len(done))


def native_scan_page(body: bytes, ctx: ScanContext) -> EncodedPage:
    """The native pass (``dynamodb_wire`` must be importable)."""
    try:
        native_source = codec.dumps(
            {
                "stream_arn": None,
                "shard_id": None,
                "seq": None,
                "snapshot": True,
                "segment": ctx.segment,
                "total_segments": ctx.total_segments,
                "ttl_delete": False,
            }
        )
        got = _native.encode_scan(
            body,
            ctx.format == "seed",
            codec.dumps(ctx.table),
            list(dict.fromkeys(ctx.key_names)),  # key_of: a repeated name counts once
            codec.dumps(ctx.ts_ms),
            native_source,
            _seed_source(ctx.table, ctx.snap, True),
        )
    except CodecError:
        got = None
    if got is None:
        return reference_scan_page(body, ctx)
    rows, refused, spans = got
    cursor, capacity = _scan_cursor(_fields(body, spans), ctx.table)
    ts = ctx.ts_ms
    done = [EncodedRecord(i, messages, None, ts, None, 0, False) for i, messages in rows]
    enc = Encoder(ctx.format, False)
    slow = [_reference_snapshot(enc, ctx, i, orjson.loads(body[s:e])) for i, s, e in refused]
    return _page(_merge(done, slow), cursor, capacity, len(done))


if _native is None:
    encode_records_page = reference_records_page
    encode_scan_page = reference_scan_page
else:
    encode_records_page = native_records_page
    encode_scan_page = native_scan_page
