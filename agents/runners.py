"""Per-unit loops: scan a segment, tail a shard, watch a stream's shard list.

Each loop does AWS and Kafka I/O only, and reports positions as control messages
after Kafka acknowledged the batch (the checkpoint is the position after the last
record delivered).  Errors: retriable ones back off with jitter; a trimmed position
asks for a re-snapshot; a permanent error pauses the table with its reason."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, NamedTuple

from agents.runtime import Backoff, Runtime, pause
from app import fastwire
from app.aws.dynamodb import Streams
from app.buffer import BufferReader
from app.domain import codec, coordinator, limits, pages
from app.domain import protocol as pr
from app.domain.coordinator import UnitState
from app.domain.envelope import SnapshotInfo
from app.domain.errors import (
    AwsError,
    CodecError,
    ExpiredIteratorError,
    KafkaRefusedError,
    ReplicatorError,
    ResourceNotFoundError,
    ThrottledError,
    TrimmedDataError,
)
from app.domain.model import StreamRecord
from app.domain.segments import TokenBucket
from app.domain.wire import to_record
from app.output import classify

log = logging.getLogger(__name__)
Message = tuple[bytes, Any]  # a Kafka key and value (None: a tombstone)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _start_pos(rt: Runtime, unit: UnitState) -> tuple[Any, int]:
    pos, count = unit.get("pos"), int(unit.get("count") or 0)
    local = rt.supervisor.local_pos.get(unit["id"])
    if local and local[1] > count:
        pos, count = local
    return pos, count


async def _deliver(
    rt: Runtime,
    unit: UnitState,
    topic: str,
    messages: list[tuple[bytes, Any]],
    where: str,
    kind: str,
) -> None:
    """Send a batch until Kafka acknowledged all of it.  Counts what was delivered (events,
    not tombstones; their bytes) as `kind`.

    Events over KAFKA_MAX_RECORD_BYTES or the topic's own limit, and a record the broker
    refuses as too large (a refused batch is sent again one record per batch to find it),
    go to the DLQ with the reason.  Retriable errors and sends past KAFKA_SEND_TIMEOUT are
    retried with backoff, sending again only what was not acknowledged.  Any other refusal
    (authorization, invalid topic, ...) reports the unit failed (its table pauses with the
    reason) and raises KafkaRefusedError: no checkpoint, the page slot is freed, the
    runner ends at its next commit."""
    table = unit["spec"]["table"]
    setting = rt.settings.kafka_max_record_bytes
    limit = min(setting, await _topic_limit(rt, unit, topic))
    todo: list[tuple[bytes, Any]] = []
    for key, value in messages:
        size = limits.record_bytes(key, value)
        if value is not None and size > limit:
            why = (
                f"too large: event of {size} bytes exceeds KAFKA_MAX_RECORD_BYTES={setting}"
                if size > setting
                else f"too large: event of {size} bytes exceeds the {limit} bytes topic {topic} "
                f"accepts (its max.message.bytes)"
            )
            await _dead_letter_size(rt, table, where, why, key, value)
        else:
            todo.append((key, value))
    backoff = Backoff(0.5, 10.0)
    one_per_batch = False
    delivered = list(todo)
    while todo:
        try:
            failures = await rt.output.send_batch(topic, todo, one_per_batch=one_per_batch)
        except Exception as exc:  # noqa: BLE001  # producer trouble: all of it again, classified
            failures = [(exc, todo)]
        todo = []
        retry: BaseException | None = None
        split = False
        for error, failed in failures:
            verdict = classify(error)
            if verdict == "permanent":
                log.error(
                    "%s %s: Kafka refused the send to %s for good (%s: %s)",
                    table,
                    where,
                    topic,
                    type(error).__name__,
                    error,
                )
                refused = KafkaRefusedError(
                    f"Kafka refused writes to {topic}: {type(error).__name__}: {error}",
                    resource=table,
                )
                await _fail(rt, unit, refused)
                raise refused from error
            if verdict == "too_large" and not one_per_batch:
                split = True
                todo += failed  # again one record per batch: which one is refused?
            elif verdict == "too_large":
                key, value = failed[0]  # alone in its batch, the first of its partition
                why = (
                    f"too large: record of {limits.record_bytes(key, value)} bytes refused by "
                    f"topic {topic} ({type(error).__name__}); raise its max.message.bytes"
                )
                await _dead_letter_size(rt, table, where, why, key, value)
                delivered.remove(failed[0])
                todo += failed[1:]
            else:
                retry = error
                todo += failed
        one_per_batch = one_per_batch or split
        if retry is not None:
            reason = getattr(retry, "retry_reason", None) or (
                "kafka_timeout" if classify(retry) == "timeout" else "kafka"
            )
            rt.metrics.retries.labels(table, reason).inc()
            delay = backoff.next()
            log.warning(
                "%s %s: Kafka send to %s failed (%s: %s); sending %d unacknowledged "
                "events again in %.1fs",
                table,
                where,
                topic,
                type(retry).__name__,
                retry,
                len(todo),
                delay,
            )
            await asyncio.sleep(delay)
    values = [v for _, v in delivered if v is not None]
    rt.metrics.events_out.labels(table, kind).inc(len(values))
    rt.metrics.bytes_out.labels(table).inc(sum(map(len, values)))


async def _topic_limit(rt: Runtime, unit: UnitState, topic: str) -> int:
    """The largest record the topic takes (a topic made usable on its first use)."""
    backoff = Backoff(0.5, 10.0)
    while True:
        try:
            return await rt.output.ensure_topic(topic)
        except Exception as exc:  # broker unreachable, metadata not there yet: again
            if classify(exc) == "permanent":
                refused = KafkaRefusedError(
                    f"cannot prepare topic {topic}: {type(exc).__name__}: {exc}"
                )
                await _fail(rt, unit, refused)
                raise refused from exc
            rt.metrics.retries.labels(unit["spec"]["table"], "kafka_topic").inc()
            delay = backoff.next()
            log.warning(
                "topic %s not usable yet (%s: %s); again in %.1fs",
                topic,
                type(exc).__name__,
                exc,
                delay,
            )
            await asyncio.sleep(delay)


async def _dead_letter_size(
    rt: Runtime, table: str, where: str, why: str, key: bytes, value: bytes | None
) -> None:
    log.error("%s %s: %s; dead-lettered", table, where, why)
    rt.metrics.dead_letters.labels(table, "too_large").inc()
    await rt.output.dead_letter(table, where, why, key.decode(), len(value or b""), payload=value)


async def _dead_letter_codec(
    rt: Runtime, table: str, where: str, exc: CodecError, keys: Any, received: dict[str, Any]
) -> None:
    """An item the codec refused: its keys and the item as received go to the DLQ (the
    error names the attribute, never its value)."""
    log.error("%s %s: not representable, dead-lettered: %s", table, where, exc)
    rt.metrics.dead_letters.labels(table, "codec").inc()
    await rt.output.dead_letter(
        table,
        where,
        str(exc),
        codec.as_received(keys),
        payload=codec.dumps(codec.as_received(received)),
    )


async def _aws_retry(
    rt: Runtime, table: str, op: str, exc: AwsError, backoff: Backoff, stopping: asyncio.Event
) -> None:
    if isinstance(exc, ThrottledError):
        rt.metrics.throttles.labels(table, op).inc()
    else:
        rt.metrics.retries.labels(table, exc.code or type(exc).__name__).inc()
    delay = backoff.next()
    level = logging.WARNING if backoff.attempt >= 5 else logging.INFO
    log.log(
        level,
        "%s: %s retriable error (attempt %d): %s; backing off %.2fs",
        table,
        op,
        backoff.attempt,
        exc,
        delay,
    )
    await pause(stopping, delay)


async def _fail(rt: Runtime, unit: UnitState, exc: BaseException) -> None:
    log.error("%s: permanent error, pausing the table: %s", unit["id"], exc)
    await rt.report(pr.Failed(uid=unit["id"], error=str(exc)[:500]), wait=True)


async def _finish(rt: Runtime, unit: UnitState, message: pr.Finish) -> None:
    """The unit's work is complete: remember it in this worker (a repeated create must not
    re-run it) and report it."""
    rt.supervisor.finished[unit["id"]] = message
    await rt.report(message, wait=True)


def _superseded(rt: Runtime, unit: UnitState) -> bool:
    """True when this runner may no longer send for the unit (dropped, stopped, another
    epoch, or its partition is no longer ours): its page is not sent and not
    checkpointed; the unit's current owner reads it again."""
    if rt.fence(unit):
        return False
    rt.metrics.retries.labels(unit["spec"]["table"], "superseded").inc()
    log.info(
        "%s: no longer current here (dropped, stopped, other epoch or owner); "
        "its page is left to the current owner",
        unit["id"],
    )
    return True


async def _resnapshot(rt: Runtime, unit: UnitState, reason: str) -> None:
    spec = unit["spec"]
    log.warning("%s: %s -> automatic re-snapshot of table %s", unit["id"], reason, spec["table"])
    await rt.report(
        pr.Resnapshot(table=spec["table"], reason=reason, epoch=spec["epoch"]), wait=True
    )


# ---------------------------------------------------------------- one page in flight
class InFlight:
    """Overlap Kafka's acknowledgement of page N with the fetch and encoding of page N+1.

    At most one commit (deliver + checkpoint report) runs in the background; the next
    one starts only after it completed, so records leave in order and a checkpoint is
    still reported only after every record before it was acknowledged.  Each page holds
    one of the worker's ``WORKER_MAX_PAGES`` slots from its request until its commit
    ended, which bounds memory whatever the number of shards."""

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self.slots = slots
        self._task: asyncio.Task[None] | None = None
        self._held = False

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """A page slot for one page, from its request on: a commit started inside takes
        it along (freed when that commit ended); otherwise (an error, a page with nothing
        to commit) it is given back on leaving the block."""
        await self.slots.acquire()
        self._held = True
        try:
            yield
        finally:
            self._free()

    def _free(self) -> None:
        if self._held:
            self._held = False
            self.slots.release()

    async def commit(self, work: Coroutine[Any, Any, None]) -> None:
        """Wait for the previous commit, then run `work` in the background; the page's
        slot goes with it."""
        try:
            await self.wait()
        except BaseException:
            work.close()  # never started: no 'never awaited' warning
            raise
        held, self._held = self._held, False
        self._task = asyncio.ensure_future(self._run(work, held))
        # let it hand its batches to the producer now, so the broker works on page N
        # while this runner fetches and encodes page N+1
        await asyncio.sleep(0)

    async def _run(self, work: Coroutine[Any, Any, None], held: bool) -> None:
        try:
            await work
        finally:
            if held:
                self.slots.release()

    def settled(self) -> bool:
        """No commit in flight (or the last one completed)."""
        return self._task is None or self._task.done()

    async def wait(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await task

    def abandon(self) -> None:
        """On cancellation or failure: the page in flight will be re-read (duplicates,
        never loss: its checkpoint was not reported)."""
        self._free()
        if self._task is not None and not self._task.done():
            self._task.cancel()


async def _after_aws_error(
    rt: Runtime,
    unit: UnitState,
    op: str,
    exc: AwsError,
    backoff: Backoff,
    stopping: asyncio.Event,
    flight: InFlight,
) -> bool:
    """A failed page request (its slot given back): True to request it again (retriable,
    after a backoff); False when the unit stopped on a permanent error (after the page in
    flight was delivered)."""
    if exc.retriable:
        await _aws_retry(rt, unit["spec"]["table"], op, exc, backoff, stopping)
        return True
    await flight.wait()
    await _fail(rt, unit, exc)
    return False


# ---------------------------------------------------------------- scan segment
async def run_scan(rt: Runtime, unit: UnitState, stopping: asyncio.Event) -> None:
    spec = coordinator.scan_spec(unit)
    table, seg, total = spec["table"], spec["segment"], spec["total"]
    topic = rt.settings.topic_for(table)
    pos, count = _start_pos(rt, unit)
    cursor = codec.sdk_v1_to_item(pos) if pos else None
    bucket = TokenBucket(
        spec.get("rcu"), burst=max(1.0, spec.get("rcu") or 1.0), now=time.monotonic()
    )
    snap_start = spec.get("snapshot_start_ms") or _now_ms()
    where = f"segment {seg}/{total}"
    names = tuple(spec["key_names"])
    tables, backoff = await rt.tables(), Backoff()
    limit = rt.settings.dynamodb_scan_page_limit
    flight, fenced = InFlight(rt.pages), asyncio.Event()  # fenced: set by a superseded commit
    log.info("%s: scanning %s from %s", table, where, "a cursor" if cursor else "the start")

    async def read_page() -> tuple[pages.ScanStep, float]:
        """Request, decide, encode, hand to its commit: all under one page slot."""
        nonlocal cursor, count
        async with flight.slot():
            snap = SnapshotInfo(running=True, start_ms=snap_start, end_ms=None, count=count)
            if tables.raw is not None:  # response bytes -> messages in one pass
                context = fastwire.ScanContext(
                    table, names, seg, total, snap_start, snap, rt.encoder.format
                )
                encoded = await tables.encoded_scan(table, seg, total, cursor, context, limit)
                backoff.reset()
                messages = encoded.messages
                for f in encoded.failed:
                    keys = {k: f.raw[k] for k in names if isinstance(f.raw, dict) and k in f.raw}
                    await _dead_letter_codec(rt, table, where, f.error, keys, {"item": f.raw})
                items, last_key, cost = (
                    len(encoded.records) + len(encoded.failed),
                    encoded.cursor,
                    encoded.consumed_capacity,
                )
            else:
                page = await tables.scan(table, seg, total, cursor, limit)
                backoff.reset()
                messages = await _encode_items(rt, unit, page.items, snap_start, snap, where)
                items, last_key, cost = (
                    len(page.items),
                    page.last_evaluated_key,
                    page.consumed_capacity,
                )
            step = pages.scan_page(items, last_key, count)
            cursor, count = step.cursor, step.count
            await flight.commit(_commit_scan(rt, unit, fenced, topic, messages, items, step))
            return step, cost

    try:
        while not (stopping.is_set() or fenced.is_set()):
            try:
                step, cost = await read_page()
            except AwsError as exc:
                if exc.code == "ReadTimeoutError":  # pages too slow to serve: smaller ones
                    limit = max(10, (limit or 1000) // 2)
                    log.warning(
                        "%s %s: Scan page timed out; Limit lowered to %d", table, where, limit
                    )
                if await _after_aws_error(rt, unit, "Scan", exc, backoff, stopping, flight):
                    continue
                return
            if step.finished:
                await flight.wait()
                if not fenced.is_set():  # superseded: the page was not sent
                    await _finish(rt, unit, pr.Finish(uid=unit["id"], count=step.count))
                    log.info("%s: %s done, %d items", table, where, step.count)
                return
            if not fenced.is_set():
                await pause(stopping, bucket.delay_for(cost, time.monotonic()))
        await flight.wait()
    finally:
        flight.abandon()


async def _encode_items(
    rt: Runtime,
    unit: UnitState,
    items: list[dict[str, Any]],
    snap_start: int,
    snap: SnapshotInfo,
    where: str,
) -> list[Message]:
    spec = coordinator.scan_spec(unit)
    table, names = spec["table"], spec["key_names"]
    messages: list[Message] = []
    for item in items:
        try:
            messages += rt.encoder.snapshot(
                table, names, item, spec["segment"], spec["total"], snap_start, snap
            )
        except CodecError as exc:
            keys = {k: item[k] for k in names if k in item}
            await _dead_letter_codec(rt, table, where, exc, keys, {"item": item})
    return messages


async def _commit_scan(
    rt: Runtime,
    unit: UnitState,
    fenced: asyncio.Event,
    topic: str,
    messages: list[Message],
    items: int,
    step: pages.ScanStep,
) -> None:
    if _superseded(rt, unit):
        fenced.set()
        return
    spec = coordinator.scan_spec(unit)
    table = spec["table"]
    await _deliver(
        rt, unit, topic, messages, f"segment {spec['segment']}/{spec['total']}", "snapshot"
    )
    rt.metrics.snapshot_items.labels(table).inc(items)
    if step.pos is not None:
        rt.supervisor.remember(unit["id"], step.pos, step.count)
        await rt.report(pr.Progress(uid=unit["id"], pos=step.pos, count=step.count))


# ---------------------------------------------------------------- shard
async def run_shard(rt: Runtime, unit: UnitState, stopping: asyncio.Event) -> None:
    spec = coordinator.shard_spec(unit)
    table, arn, shard = spec["table"], spec["stream_arn"], spec["shard_id"]
    buffered = spec.get("sink") == "buffer"  # the table is being scanned: into its buffer
    topic = (
        rt.settings.buffer_topic_for(table, spec["epoch"])
        if buffered
        else rt.settings.topic_for(table)
    )
    at = pages.ShardAt(*_start_pos(rt, unit))
    streams, backoff = await rt.streams(), Backoff()
    iterator: str | None = None
    flight, fenced = InFlight(rt.pages), asyncio.Event()  # fenced: set by a superseded commit
    log.info(
        "%s: reading shard %s from %s into %s",
        table,
        shard,
        f"after {at.pos}" if at.pos else "TRIM_HORIZON",
        f"the snapshot's buffer {topic}" if buffered else topic,
    )

    async def read_page() -> pages.ShardPage:
        """Request, decide, encode, hand to its commit: all under one page slot."""
        nonlocal iterator, at
        async with flight.slot():
            if iterator is None:
                iterator = await streams.iterator(arn, shard, at.pos)
            step, messages, next_iterator = await _shard_page(
                rt, unit, streams, iterator, at, flight.settled()
            )
            backoff.reset()
            if step.skipped:
                rt.metrics.skipped_before_cutoff.labels(table).inc(step.skipped)
            if step.commit:
                await flight.commit(_commit_shard(rt, unit, fenced, topic, messages, step))
            at, iterator = step.at, next_iterator
            return step

    try:
        while not (stopping.is_set() or fenced.is_set()):
            try:
                step = await read_page()
            except ExpiredIteratorError:
                iterator = None  # re-acquire after the last record read
                rt.metrics.retries.labels(table, "expired_iterator").inc()
                log.info(
                    "%s: shard %s iterator expired; re-acquiring after %s", table, shard, at.pos
                )
                if backoff.attempt:  # expiring again right away: do not spin
                    await pause(stopping, backoff.next())
                else:
                    backoff.attempt = 1
                continue
            except (TrimmedDataError, ResourceNotFoundError) as exc:
                await flight.wait()
                await _resnapshot(rt, unit, f"shard {shard} position trimmed ({exc.code})")
                return
            except AwsError as exc:
                if await _after_aws_error(rt, unit, "GetRecords", exc, backoff, stopping, flight):
                    continue
                return
            if fenced.is_set():  # superseded: the page was not sent
                break
            if step.report_caught_up:  # nothing waiting: lag 0, not the last batch's
                rt.metrics.lag_seconds.labels(table, shard).set(0)
                await rt.report(pr.CaughtUp(uid=unit["id"]))
            if step.finished:  # closed and fully read: children may start
                await _finish_shard(rt, unit, flight, fenced, streams, at)
                return
            if step.idle:
                await pause(stopping, rt.settings.dynamodb_poll_interval)
        await flight.wait()
    finally:
        flight.abandon()
        # the shard's lag series ends with its runner here: finished, or moved to another
        # worker (which exports its own), or dropped; never a stale value for ever
        try:
            rt.metrics.lag_seconds.remove(table, shard)
        except KeyError:
            pass


async def _shard_page(
    rt: Runtime,
    unit: UnitState,
    streams: Streams,
    iterator: str,
    at: pages.ShardAt,
    settled: bool,
) -> tuple[pages.ShardPage, list[Message], str | None]:
    """One GetRecords page decided and encoded, and the next iterator: as a response body
    through the one-pass encoder (app.fastwire) on the raw path, else as parsed records."""
    spec = coordinator.shard_spec(unit)
    table, shard, cutoff = spec["table"], spec["shard_id"], int(spec.get("cutoff_ms") or 0)
    if streams.raw is None:
        page = await streams.records(iterator, f"{table}/{shard}")
        step = pages.shard_page(page.records, page.next_iterator, at, cutoff, settled)
        messages = await _encode_changes(rt, unit, [page.records[i] for i in step.send])
        return step, messages, page.next_iterator
    context = fastwire.ChangeContext(
        table,
        tuple(spec["key_names"]),
        spec["stream_arn"],
        shard,
        _stream_snapshot(spec),
        rt.encoder.format,
        rt.encoder.tombstones,
    )
    encoded = await streams.encoded_records(iterator, f"{table}/{shard}", context)
    marks, unplaced = _marks(encoded)
    for f in unplaced:
        await _dead_letter_record(rt, table, shard, f, "?")
    step = pages.shard_page(marks, encoded.cursor, at, cutoff, settled)
    messages = await _sendable(rt, table, shard, [marks[i] for i in step.send])
    return step, messages, encoded.cursor


async def _encode_changes(
    rt: Runtime, unit: UnitState, records: list[StreamRecord]
) -> list[Message]:
    spec = coordinator.shard_spec(unit)
    table, arn, shard = spec["table"], spec["stream_arn"], spec["shard_id"]
    snap = _stream_snapshot(spec)
    messages: list[Message] = []
    for rec in records:
        try:
            messages += rt.encoder.change(table, spec["key_names"], rec, arn, shard, snap)
        except CodecError as exc:
            await _dead_letter_codec(
                rt,
                table,
                f"shard {shard} seq {rec.sequence_number}",
                exc,
                rec.keys,
                _as_received(rec),
            )
    return messages


def _as_received(rec: StreamRecord) -> dict[str, Any]:
    """A stream record as its dead letter carries it (to fix and replay)."""
    return {
        "event_name": rec.event_name,
        "sequence_number": rec.sequence_number,
        "approx_ts_ms": rec.approx_ts_ms,
        "keys": rec.keys,
        "new_image": rec.new_image,
        "old_image": rec.old_image,
    }


def _stream_snapshot(spec: coordinator.ShardSpec) -> SnapshotInfo | None:
    """The seed format's snapshot block of the stream events (None: no snapshot ran)."""
    if not (start_ms := spec.get("snapshot_start_ms")):
        return None
    return SnapshotInfo(
        running=False,
        start_ms=start_ms,
        end_ms=spec.get("snapshot_end_ms"),
        count=spec.get("snapshot_items") or 0,
    )


class _Mark(NamedTuple):
    """A record of an encoded page, for the page decision (pages.Record): its messages,
    or the reference's refusal of it (dead-lettered instead)."""

    sequence_number: str
    approx_ts_ms: int
    encoded: fastwire.EncodedRecord | None
    failed: fastwire.FailedRecord | None


def _marks(
    page: fastwire.EncodedPage,
) -> tuple[Sequence[_Mark | fastwire.EncodedRecord], list[fastwire.FailedRecord]]:
    """Every record of the page in stream order, and the refused records that name no
    usable sequence number or time (they cannot be placed: dead-lettered as they come).
    A page with no refused record is its records as they are (in page order)."""
    if not page.failed:
        return page.records, []
    placed: list[tuple[int, _Mark]] = [
        (r.position, _Mark(r.seq or "", r.ts_ms, r, None)) for r in page.records
    ]
    unplaced: list[fastwire.FailedRecord] = []
    for f in page.failed:
        d = f.raw.get("dynamodb") if isinstance(f.raw, dict) else None
        seq = d.get("SequenceNumber") if isinstance(d, dict) else None
        ts = d.get("ApproximateCreationDateTime") if isinstance(d, dict) else None
        if isinstance(seq, str) and seq.isdigit() and isinstance(ts, int | float):
            placed.append((f.position, _Mark(seq, int(ts * 1000), None, f)))
        else:
            unplaced.append(f)
    placed.sort(key=lambda p: p[0])
    return [m for _, m in placed], unplaced


async def _sendable(
    rt: Runtime, table: str, shard: str, marks: list[_Mark | fastwire.EncodedRecord]
) -> list[Message]:
    """The messages of these records; the refused ones dead-lettered (as _encode_changes)."""
    messages: list[Message] = []
    for m in marks:
        if isinstance(m, fastwire.EncodedRecord):
            messages += m.messages
        elif m.encoded is not None:
            messages += m.encoded.messages
        elif m.failed is not None:
            await _dead_letter_record(rt, table, shard, m.failed, m.sequence_number)
    return messages


async def _dead_letter_record(
    rt: Runtime, table: str, shard: str, failed: fastwire.FailedRecord, seq: str
) -> None:
    raw = failed.raw
    keys: Any
    received: dict[str, Any]
    try:  # the same dead letter as from a parsed page (_encode_changes)
        rec = to_record(raw)
        keys, received = rec.keys, _as_received(rec)
    except Exception:  # noqa: BLE001  # not even a record's shape: as received
        d = raw.get("dynamodb") if isinstance(raw, dict) else None
        keys, received = (d.get("Keys") if isinstance(d, dict) else None), {"record": raw}
    await _dead_letter_codec(rt, table, f"shard {shard} seq {seq}", failed.error, keys, received)


async def _commit_shard(
    rt: Runtime,
    unit: UnitState,
    fenced: asyncio.Event,
    topic: str,
    messages: list[Message],
    step: pages.ShardPage,
) -> None:
    if _superseded(rt, unit):
        fenced.set()
        return
    spec = coordinator.shard_spec(unit)
    table, shard = spec["table"], spec["shard_id"]
    if messages:
        kind = "buffered" if spec.get("sink") == "buffer" else "stream"
        await _deliver(rt, unit, topic, messages, f"shard {shard}", kind)
    lag_ms = max(0, _now_ms() - step.last_ts_ms)
    rt.metrics.lag_seconds.labels(table, shard).set(lag_ms / 1000)
    rt.supervisor.remember(unit["id"], step.at.pos, step.at.count)
    await rt.report(
        pr.Progress(
            uid=unit["id"],
            pos=step.at.pos,
            count=step.at.count,
            lag_ms=lag_ms,
            ts_ms=step.last_ts_ms,
        )
    )


async def _finish_shard(
    rt: Runtime,
    unit: UnitState,
    flight: InFlight,
    fenced: asyncio.Event,
    streams: Streams,
    at: pages.ShardAt,
) -> None:
    """The shard is closed and fully read: once its last commit is through (and was not
    superseded), report it finished with the stream's shard listing (children may start)."""
    await flight.wait()
    if fenced.is_set():
        return
    spec = coordinator.shard_spec(unit)
    table, shard = spec["table"], spec["shard_id"]
    listing = None
    try:
        listing = coordinator.encode_listing((await streams.describe(spec["stream_arn"])).shards)
    except AwsError as exc:
        log.warning("%s: DescribeStream after shard end failed: %s", table, exc)
    await _finish(rt, unit, pr.Finish(uid=unit["id"], pos=at.pos, count=at.count, listing=listing))
    log.info("%s: shard %s finished (%d records)", table, shard, at.count)


# ---------------------------------------------------------------- buffer replay
REPLAY_BATCH = 2000  # records copied per batch (one checkpoint each)
DELETE_EVERY = 50_000  # copied records between two DeleteRecords of the copied part


async def run_replay(rt: Runtime, unit: UnitState, stopping: asyncio.Event) -> None:
    """Copy one partition of the snapshot's buffer into the output topic, in offset order
    (one item's events sit in one partition in stream order, so per key the order is the
    stream's).  The position is the next offset, checkpointed after Kafka acknowledged the
    copy; copied records are deleted from the buffer.  At the partition's end it says
    CaughtUp (the table then pauses its shards); once told to drain (nothing more is
    buffered) it copies to the end and finishes."""
    spec = coordinator.replay_spec(unit)
    table, part = spec["table"], spec["partition"]
    source = rt.settings.buffer_topic_for(table, spec["epoch"])
    topic = rt.settings.topic_for(table)
    where = f"buffer {source} partition {part}"
    if rt.buffers is None:
        raise RuntimeError("this runtime has no buffer port")
    pos, count = _start_pos(rt, unit)
    reader = await rt.buffers.reader(source, part)
    try:
        async with asyncio.timeout(120):  # a setup that hangs fails (logged, restarted)
            await rt.output.ensure_topic(source)  # it exists once a change was buffered
            await reader.start(pos)
            found = await reader.partitions()
        if found != spec["partitions"]:
            await _fail(
                rt,
                unit,
                ReplicatorError(
                    f"{where}: the buffer topic has {found} partitions, the replay plan "
                    f"{spec['partitions']} (was KAFKA_TOPIC_PARTITIONS changed while the table "
                    "was scanned?); nothing was lost: the buffered changes stay in it",
                    resource=table,
                ),
            )
            return
        log.info("%s: replaying %s from %s", table, where, pos if pos is not None else "its start")
        end: int | None = None  # draining: the offset to reach
        copied_since_delete, said_caught_up = 0, 0.0
        while not stopping.is_set():
            if end is None and _draining(rt, unit):
                end = await reader.end()
            batch = await reader.read(REPLAY_BATCH, timeout=0.5)
            if batch:
                if _superseded(rt, unit):
                    return
                messages = [(key, value) for _, key, value in batch]
                await _deliver(rt, unit, topic, messages, where, "replayed")
                pos, count = batch[-1][0] + 1, count + len(batch)
                rt.supervisor.remember(unit["id"], pos, count)
                await rt.report(pr.Progress(uid=unit["id"], pos=pos, count=count))
                copied_since_delete += len(batch)
                if copied_since_delete >= DELETE_EVERY:
                    await _delete_copied(reader, pos, where)
                    copied_since_delete = 0
                continue
            # nothing copied by this unit yet: where the partition starts (records before
            # it were copied and deleted by a run whose checkpoint was not stored)
            at = pos if pos is not None else await reader.position()
            if end is not None and at >= end:
                await _delete_copied(reader, at, where)
                await _finish(rt, unit, pr.Finish(uid=unit["id"], pos=at, count=count))
                log.info("%s: %s replayed (%d events)", table, where, count)
                return
            known = reader.known_end()
            if (
                end is None
                and known is not None
                and at >= known
                and (time.monotonic() - said_caught_up > 1)
            ):
                await rt.report(pr.CaughtUp(uid=unit["id"]))  # again while nothing comes
                said_caught_up = time.monotonic()
    finally:
        await reader.close()


def _draining(rt: Runtime, unit: UnitState) -> bool:
    stored = rt.ports.stored_unit(unit["id"])
    return bool(stored and stored.get("drain"))


async def _delete_copied(reader: BufferReader, offset: int, where: str) -> None:
    try:
        await reader.delete_before(offset)
    except Exception as exc:  # noqa: BLE001  # disk only: the topic goes after the switch
        log.warning("%s: copied records not deleted yet (%s: %s)", where, type(exc).__name__, exc)


# ---------------------------------------------------------------- stream watcher
async def run_watch(rt: Runtime, unit: UnitState, stopping: asyncio.Event) -> None:
    spec = coordinator.watch_spec(unit)
    table, arn = spec["table"], spec["stream_arn"]
    streams = await rt.streams()
    last: list[Any] | None = None
    rounds = 0
    while not stopping.is_set():
        try:
            listing = coordinator.encode_listing((await streams.describe(arn)).shards)
            if listing != last or rounds % 10 == 0:
                await rt.report(
                    pr.Shards(table=table, epoch=spec["epoch"], listing=listing), wait=True
                )
                last = listing
            rounds += 1
        except ReplicatorError as exc:
            log.warning("%s: DescribeStream failed: %s", table, exc)
        await pause(stopping, rt.settings.dynamodb_shard_refresh_interval)


RUNNERS = {"scan": run_scan, "shard": run_shard, "watch": run_watch, "replay": run_replay}
