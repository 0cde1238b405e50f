"""Which DynamoDB Streams shards may be read now.

A stream is a forest of shards: a closed parent has one child (rollover) or two
(split).  A key's records move from parent to child, so a child may start only
once its parent is finished (fully read).  A parent id that DescribeStream no
longer lists was trimmed (older than 24h): there is nothing left to wait for.

``plan`` is a pure function over the persisted lineage state
``{shard_id: {"parent": str | None, "status": ShardStatus, "start": seq}}`` (``start``:
the shard's starting sequence number, to tell a trimmed shard from one a stale listing
does not know yet), plus a *floor*: the starting sequence number of the newest shard ever
pruned.  A listing older than a prune still names the pruned shard; one whose start is at
or below the floor is that kind of ghost and is never added again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Required, TypedDict

from app.domain.model import Shard

ShardStatus = Literal["pending", "running", "finished"]


class ShardEntry(TypedDict, total=False):
    """One shard of the lineage (a value of a table state's ``shards``)."""

    parent: Required[str | None]
    status: Required[ShardStatus]
    start: str | None  # its starting sequence number, once a listing said it
    at: int  # the control partition of its unit (app.domain.placement; absent: not placed)


@dataclass(frozen=True)
class Plan:
    start: list[str]  # start reading now (parents first, then by starting seq, then id)
    lost: list[str]  # unread data trimmed away: the caller re-snapshots
    prune: list[str]  # finished and no longer listed: forget them
    known: dict[str, ShardEntry]  # the new lineage state
    floor: str | None = None  # starting seq of the newest shard pruned so far


def seq_key(seq: str | None) -> int:
    """Sequence numbers are 21-40 digit decimal strings: compare as int (None first)."""
    return -1 if seq is None else int(seq)


def plan(
    known: Mapping[str, ShardEntry],
    listing: Sequence[Shard] | None,
    finished: Iterable[str] = (),
    floor: str | None = None,
) -> Plan:
    state = {sid: ShardEntry(**entry) for sid, entry in known.items()}
    listed = None if listing is None else {s.shard_id: s for s in listing}
    for s in listing or ():
        if (
            s.shard_id not in state
            and floor is not None
            and seq_key(s.starting_sequence_number) <= seq_key(floor)
        ):
            continue  # pruned already (finished): a stale listing must not revive it
        entry = state.setdefault(s.shard_id, {"parent": s.parent_shard_id, "status": "pending"})
        if s.starting_sequence_number is not None:
            entry.setdefault("start", s.starting_sequence_number)
    for sid in finished:
        if sid in state:
            state[sid]["status"] = "finished"

    lost: list[str] = []
    prune: list[str] = []
    if listed is not None:
        # A listing can be older than what we know (a DescribeStream answer that waited in
        # the control topic behind a newer one): shards that started after its newest shard
        # are missing because they did not exist yet, not because they were trimmed.
        newest = max((seq_key(s.starting_sequence_number) for s in listed.values()), default=-1)
        gone = sorted(
            sid for sid in state if sid not in listed and seq_key(state[sid].get("start")) <= newest
        )
        lost = [sid for sid in gone if state[sid]["status"] != "finished"]
        for sid in lost:
            del state[sid]
        needed = {e.get("parent") for e in state.values() if e["status"] != "finished"}
        prune = [sid for sid in gone if sid in state and sid not in needed]
        for sid in prune:
            seq = state.pop(sid).get("start")
            if seq is not None and seq_key(seq) > seq_key(floor):
                floor = seq

    def ready(entry: ShardEntry) -> bool:
        parent = entry.get("parent")
        # Every listed shard is in ``state`` by now, so an unknown parent was trimmed.
        return parent is None or parent not in state or state[parent]["status"] == "finished"

    def depth(sid: str) -> int:
        n, seen, at = 0, {sid}, sid
        while (parent := state[at].get("parent")) in state and parent not in seen:
            n, seen, at = n + 1, seen | {parent}, parent
        return n

    def order(sid: str) -> tuple[int, int, str]:
        shard = listed.get(sid) if listed else None
        return depth(sid), seq_key(shard.starting_sequence_number if shard else None), sid

    start = sorted(
        (sid for sid, e in state.items() if e["status"] == "pending" and ready(e)), key=order
    )
    for sid in start:
        state[sid]["status"] = "running"
    return Plan(start=start, lost=lost, prune=prune, known=state, floor=floor)
