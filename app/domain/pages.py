"""What one page of a work unit means (pure: no I/O, no clock).

A runner requests a page (GetRecords for a shard, Scan for a segment), asks this module
what the page means, and carries it out: encode and send the records named here, report
the new position after Kafka acknowledged them, finish the unit.  The decisions hold no
reference to the page's records (only their indices), so a runner waiting for its next
page slot keeps no page alive."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from app.domain.codec import item_to_sdk_v1
from app.domain.lineage import seq_key


class Record(Protocol):
    """What the decision reads of a stream record (app.domain.model.StreamRecord)."""

    @property
    def sequence_number(self) -> str: ...

    @property
    def approx_ts_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ShardAt:
    """Where a shard runner is: its checkpoint (the sequence number of the last record
    handed to a commit, None before the first), the records counted up to it, and whether
    it reported the shard caught up since its last commit."""

    pos: str | None
    count: int
    caught_up: bool = False


@dataclass(frozen=True, slots=True)
class ShardPage:
    """One GetRecords page, decided.

    ``send``: indices of the records to encode and send, in stream order (those at or
    after the cutoff); ``skipped``: how many records are older than the cutoff (not sent,
    but checkpointed past).  ``commit``: the page moves the position: deliver what `send`
    names, then report ``at.pos``/``at.count``; a page that does not move it (empty, or
    nothing after the position) is neither delivered nor checkpointed.  ``finished``: the
    shard is closed and fully read (no next iterator): children may start.
    ``report_caught_up``: an empty page of an open shard with every earlier commit
    completed and not reported yet: the lag is 0."""

    send: tuple[int, ...]
    skipped: int
    commit: bool
    at: ShardAt
    last_ts_ms: int
    idle: bool
    finished: bool
    report_caught_up: bool


def shard_page(
    records: Sequence[Record], next_iterator: str | None, at: ShardAt, cutoff_ms: int, settled: bool
) -> ShardPage:
    """Decide a GetRecords page read after ``at``.  ``cutoff_ms``: records whose
    ApproximateCreationDateTime is before it are skipped (0: none); ``settled``: no commit
    of an earlier page is still in flight."""
    send = tuple(i for i, rec in enumerate(records) if rec.approx_ts_ms >= cutoff_ms)
    idle = not records
    report = idle and next_iterator is not None and not at.caught_up and settled
    after, last_ts, commit = ShardAt(at.pos, at.count, at.caught_up or report), 0, False
    if records:
        last = records[-1]
        last_ts = last.approx_ts_ms
        if seq_key(last.sequence_number) > seq_key(at.pos):  # the position moves
            after, commit = ShardAt(last.sequence_number, at.count + len(records)), True
    return ShardPage(
        send=send,
        skipped=len(records) - len(send),
        commit=commit,
        at=after,
        last_ts_ms=last_ts,
        idle=idle,
        finished=next_iterator is None,
        report_caught_up=report,
    )


@dataclass(frozen=True, slots=True)
class ScanStep:
    """One Scan page of a segment, decided: every item is sent; ``count`` items read so
    far; ``cursor`` the next request's ExclusiveStartKey and ``pos`` its checkpoint form
    (both None: the segment is done, ``finished``)."""

    count: int
    cursor: dict[str, Any] | None
    pos: Any
    finished: bool


def scan_page(items: int, last_evaluated_key: dict[str, Any] | None, count: int) -> ScanStep:
    """Decide a Scan page of ``items`` items read after ``count`` items."""
    cursor = last_evaluated_key or None
    return ScanStep(
        count=count + items,
        cursor=cursor,
        pos=None if cursor is None else item_to_sdk_v1(cursor),
        finished=cursor is None,
    )
