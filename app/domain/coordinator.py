"""State transitions of a replicated table and of its work units — pure functions.

The control agent (agents/control.py) loads a state from a Faust table, calls one of
these functions with the message it is processing, writes back the new state and sends
the commands returned.  Nothing here does I/O, so every transition is unit-tested.

Table state (JSON-able dict, typed as :class:`TableState`):
    name, phase (INIT_SYNC | CATCHING_UP | SWITCHING | STREAMING | SNAPSHOT_DONE | STOPPED |
    ERROR | REFUSED | FORGOTTEN), epoch,
    table_arn, stream_arn, key_names, item_count, read_capacity,
    snapshot {start_ms, end_ms, total, done[], items, rcu} | None,
    cutoff_ms (stream records older than this are covered by the snapshot),
    shards {shard_id: {parent, status}} (lineage, app.domain.lineage),
    shard_floor (starting seq of the newest shard pruned: a stale listing never revives it),
    resume_phase, stopped_ms, halted_ms (since when the stream positions have not provably
    advanced), resumed_ms, retired {units, heals} (drops of the superseded epoch,
    repeated by the sweep), error, reason, resnapshots, updated_ms,
    buffer {partitions, caught_up[], waiting[] | None, draining, done[]} | None (below),
    refused {reason, resume_phase, stopped_ms[, new]} | None (on_refused),
    partition (the control partition that owns the row: written by agents/control.py).

The snapshot's buffer (Policy.buffer_partitions > 0, a table with a stream): while the
table is scanned (INIT_SYNC) its shards are already read, from the snapshot's start, into
a buffer topic of its epoch instead of the output topic.  When every segment is done
(CATCHING_UP) one replay unit per buffer partition copies the buffer into the output
topic while the shards keep buffering.  When every replay unit has reached its
partition's end once (SWITCHING), the running shards are paused at a page boundary; once
each said so (its last page acknowledged), the replay units are told to drain to the
buffer's end and finish; then (STREAMING) the shards run again from their checkpoints,
writing to the output topic.  Per key, every buffered event reaches the output topic
before any event written directly: a snapshot may take as long as it needs.

A table forgotten after STOPPED for longer than the retention keeps a tiny FORGOTTEN row
(name, epoch): a table of the same name that comes back continues the epoch count, so
unit ids (which carry the epoch) never repeat across lives.

Work units are named (app.domain.protocol.UnitId) so that the table state can enumerate
them.  Messages in and out are the typed messages of app.domain.protocol; the commands
returned are already encoded by its codec (key, wire dict).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, Required, TypedDict, TypeVar

from app.domain import lineage, placement
from app.domain import protocol as pr
from app.domain.lineage import ShardEntry
from app.domain.model import Shard
from app.domain.protocol import table_key, unit_key  # the runners import them from here too
from app.domain.segments import plan_segments, rcu_budget

Phase = Literal[
    "INIT_SYNC",
    "CATCHING_UP",
    "SWITCHING",
    "STREAMING",
    "SNAPSHOT_DONE",
    "STOPPED",
    "ERROR",
    "REFUSED",
    "FORGOTTEN",
]

RETENTION_MS = 24 * 3600 * 1000
ACTIVE: tuple[Phase, ...] = ("INIT_SYNC", "CATCHING_UP", "SWITCHING", "STREAMING")
# shards write to the buffer (if the table has one)
BUFFERING: tuple[Phase, ...] = ("INIT_SYNC", "CATCHING_UP")
RETIRED_HEALS = 5  # sweeps that repeat the drops of a superseded epoch


class Snapshot(TypedDict):
    """A table state's ``snapshot``: the scan of its epoch."""

    start_ms: int
    end_ms: int | None
    total: int  # segments
    done: list[int]  # segments finished
    items: int
    rcu: float | None  # the scan's read capacity budget (None: unpaced)
    at: NotRequired[list[int]]  # each segment's control partition (absent: not placed)


class Buffer(TypedDict):
    """A table state's ``buffer``: the snapshot's buffer topic and its replay."""

    partitions: int
    caught_up: list[int]  # replay partitions that reached their end once
    waiting: list[str] | None  # SWITCHING: shards not yet paused
    draining: bool
    done: list[int]  # replay partitions drained to the end
    at: NotRequired[list[int]]  # each replay unit's control partition (absent: not placed)


class Retired(TypedDict):
    """A table state's ``retired``: the units of a superseded epoch, dropped again."""

    units: list[str]
    heals: int  # sweeps left that repeat the drops


class Refused(TypedDict, total=False):
    """A table state's ``refused``: what a refusal interrupted (see on_refused)."""

    reason: Required[str | None]
    resume_phase: Required[Phase | None]
    stopped_ms: Required[int | None]
    new: bool  # refused before it ever started (in this life)


class _TableFields(TypedDict, total=False):
    name: Required[str]
    table_arn: str | None
    stream_arn: str | None
    key_names: list[str] | None
    item_count: int | None
    size_bytes: int | None
    read_capacity: int | None
    view_type: str | None
    snapshot: Snapshot | None
    cutoff_ms: int  # stream records older than this are covered by the snapshot
    shards: dict[str, ShardEntry]  # the lineage (app.domain.lineage)
    shard_floor: str | None
    resume_phase: Phase | None
    stopped_ms: int | None
    halted_ms: int | None
    resumed_ms: int | None
    retired: Retired | None
    error: str | None
    reason: str
    resnapshots: int
    updated_ms: int
    buffer: Buffer | None
    refused: Refused | None
    partition: int  # the control partition that owns the row (agents/control.py)
    watch_at: int | None  # the stream watcher's control partition (None: not placed)


class TableState(_TableFields, total=False):
    """A row of the ``tables`` table (the module docstring).  Every row has a name, a
    phase and an epoch; a FORGOTTEN row has little more."""

    phase: Required[Phase]
    epoch: Required[int]


class _Unstarted(_TableFields, total=False):
    """What :func:`_begin` starts an epoch from: a table state, or the fields of a table
    never started (no phase yet; the epoch of a forgotten row, if any)."""

    phase: Phase
    epoch: int


State = TableState  # the name the callers use


class _Spec(TypedDict, total=False):
    table: Required[str]
    epoch: Required[int]
    key_names: Required[list[str]]
    cutoff_ms: int  # stream records older than this are covered by the snapshot
    snapshot_start_ms: int | None
    snapshot_end_ms: int | None
    snapshot_items: int | None


class ScanSpec(_Spec, total=False):
    """Scan segment `segment` of `total`, at `rcu` capacity units/s (None: unpaced)."""

    kind: Required[Literal["scan"]]
    segment: Required[int]
    total: Required[int]
    rcu: float | None
    stream_arn: str | None


class ShardSpec(_Spec, total=False):
    """One shard of the table's stream, read after its parent; into the snapshot's buffer
    (``sink`` "buffer") or the output topic (absent or "output")."""

    kind: Required[Literal["shard"]]
    stream_arn: Required[str]
    shard_id: Required[str]
    parent: str | None
    sink: Literal["output", "buffer"]
    partitions: int  # the buffer topic's (sink "buffer")


class WatchSpec(_Spec, total=False):
    """The stream's shard listing, refreshed."""

    kind: Required[Literal["watch"]]
    stream_arn: Required[str]


class ReplaySpec(_Spec, total=False):
    """One partition of the snapshot's buffer, copied into the output topic."""

    kind: Required[Literal["replay"]]
    partition: Required[int]
    partitions: Required[int]
    stream_arn: str | None


# What a work unit does, fixed when it is created (the ``spec`` of a unit row); ``kind``
# tells the variant.
UnitSpec = ScanSpec | ShardSpec | WatchSpec | ReplaySpec


class UnitState(TypedDict, total=False):
    """A unit row of the ``units`` table (one per scan segment, shard, stream watcher)."""

    id: Required[str]
    spec: Required[UnitSpec]
    status: Literal["active", "finished", "failed", "stopped"]
    pos: Any  # scan: the SDK-v1 cursor; shard: the last sequence number sent (a string)
    count: int  # items or records sent
    partition: int  # the control partition that owns it
    lag_ms: int | None
    ts_ms: int | None
    error: str | None
    updated_ms: int
    drain: bool  # replay: nothing more is buffered (copy to the end, then finish)


def scan_spec(unit: UnitState) -> ScanSpec:
    spec = unit["spec"]
    if spec["kind"] != "scan":
        raise ValueError(f"unit {unit['id']} is a {spec['kind']} unit, not a scan segment")
    return spec


def shard_spec(unit: UnitState) -> ShardSpec:
    spec = unit["spec"]
    if spec["kind"] != "shard":
        raise ValueError(f"unit {unit['id']} is a {spec['kind']} unit, not a shard")
    return spec


def replay_spec(unit: UnitState) -> ReplaySpec:
    spec = unit["spec"]
    if spec["kind"] != "replay":
        raise ValueError(f"unit {unit['id']} is a {spec['kind']} unit, not a buffer replay")
    return spec


def watch_spec(unit: UnitState) -> WatchSpec:
    spec = unit["spec"]
    if spec["kind"] != "watch":
        raise ValueError(f"unit {unit['id']} is a {spec['kind']} unit, not a stream watcher")
    return spec


_T = TypeVar("_T", pr.UnitDone, pr.Shards, pr.UnitFailed)
Command = tuple[str, dict[str, Any]]  # (control-topic key, message), from pr.encode


@dataclass(frozen=True)
class Policy:
    mode: Literal["snapshot_and_stream", "stream_only", "snapshot_only"] = "snapshot_and_stream"
    stream_start: Literal["trim_horizon", "latest"] = "trim_horizon"
    overlap_ms: int = 60_000
    segments: int = 0
    rcu_percent: float = 50.0
    max_rcu: float = 0.0
    error_retry_ms: int = 300_000
    retention_ms: int = RETENTION_MS  # DynamoDB Streams keep records 24 h
    # partitions of a snapshot's buffer topic (one replay unit each); 0: no buffer (the
    # stream is read after the scan, which must then end within the retention)
    buffer_partitions: int = 0
    # the workers' control partitions, new units are spread over (app.domain.placement);
    # (): units are not placed (their messages go where their key hashes to)
    placement: placement.Groups = ()

    @property
    def resume_limit_ms(self) -> int:
        """How old a position the stream must resume from may be: the retention minus a
        safety margin (1 h of 24; trimming is not to the second)."""
        return self.retention_ms - self.retention_ms // 24


@dataclass
class Outcome:
    state: State | None  # None: forget the table
    commands: list[Command] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # logged by the agent
    events: list[str] = field(default_factory=list)  # metric names: resnapshot, lost_shard…
    # epochs of this table whose buffer topic is no longer needed (replayed, or retired)
    buffers_done: list[int] = field(default_factory=list)


# ``at``: the control partition the unit is placed on (None: not placed)
def scan_unit_id(name: str, epoch: int, segment: int, total: int, at: int | None = None) -> str:
    return pr.UnitId.scan(name, epoch, segment, total).placed(at).format()


def watch_unit_id(name: str, epoch: int, at: int | None = None) -> str:
    return pr.UnitId.watch(name, epoch).placed(at).format()


def replay_unit_id(name: str, epoch: int, partition: int, at: int | None = None) -> str:
    return pr.UnitId.replay(name, epoch, partition).placed(at).format()


def shard_unit_id(name: str, epoch: int, stream_arn: str, shard: str, at: int | None = None) -> str:
    """The id of the unit reading DynamoDB shard ``shard`` (not a shard id)."""
    return pr.UnitId.shard(name, epoch, stream_arn, shard).placed(at).format()


# ---------------------------------------------------------------- helpers
def _snapshot(s: State) -> Snapshot:
    """The snapshot of a phase that has one (INIT_SYNC, or the scan's done message)."""
    snap = s["snapshot"]
    assert snap is not None, f"{s['name']}: no snapshot in phase {s['phase']}"
    return snap


def _buffer(s: State) -> Buffer:
    """The buffer of a table that has one (CATCHING_UP, SWITCHING, buffering shards)."""
    buffer = s["buffer"]
    assert buffer is not None, f"{s['name']}: no buffer in phase {s['phase']}"
    return buffer


def _stream(s: State) -> str:
    """The stream of a table whose shards are read."""
    arn = s["stream_arn"]
    assert arn is not None, f"{s['name']}: no stream"
    return arn


def _typed(cls: type[_T], key: str, msg: _T | Mapping[str, Any]) -> _T:
    """Transitional: a wire dict (``type`` optional) from a caller that does not build
    typed messages yet (tests/agents/test_runners.py, tests/integration/test_state_size.py)
    goes through the codec.  Remove once they do."""
    if isinstance(msg, Mapping):
        decoded = pr.decode(key, {"type": cls.TYPE, **msg})
        assert isinstance(decoded, cls)
        return decoded
    return msg


def _drop(unit_id: str) -> Command:
    return pr.encode(pr.Drop(uid=unit_id))


def _stop(unit_id: str) -> Command:
    return pr.encode(pr.StopUnit(uid=unit_id))


def _create(unit_id: str, spec: UnitSpec) -> Command:
    return pr.encode(pr.Create(uid=unit_id, spec=dict(spec)))


def _unit_spec(
    s: State, kind: Literal["scan", "shard", "watch", "replay"], **extra: Any
) -> UnitSpec:
    snap: Mapping[str, Any] = s.get("snapshot") or {}
    spec: dict[str, Any] = {
        "kind": kind,
        "table": s["name"],
        "epoch": s["epoch"],
        "key_names": s["key_names"],
        "stream_arn": s.get("stream_arn"),
        "cutoff_ms": s.get("cutoff_ms", 0),
        "snapshot_start_ms": snap.get("start_ms"),
        "snapshot_end_ms": snap.get("end_ms"),
        "snapshot_items": snap.get("items"),
    }
    spec.update(extra)  # the kind's own keys
    return spec  # type: ignore[return-value]  # the variant `kind` names


def _at(block: Snapshot | Buffer, i: int) -> int | None:
    """Where unit ``i`` of a snapshot or buffer block is placed (None: not placed)."""
    at = block.get("at")
    return None if at is None else at[i]


def _scan_id(s: State, segment: int) -> str:
    snap = _snapshot(s)
    return scan_unit_id(s["name"], s["epoch"], segment, snap["total"], _at(snap, segment))


def _shard_id(s: State, sid: str) -> str:
    entry = s.get("shards", {}).get(sid)
    return shard_unit_id(s["name"], s["epoch"], _stream(s), sid, entry and entry.get("at"))


def _replay_id(s: State, partition: int) -> str:
    return replay_unit_id(s["name"], s["epoch"], partition, _at(_buffer(s), partition))


def _watch_id(s: State) -> str:
    return watch_unit_id(s["name"], s["epoch"], s.get("watch_at"))


def _scan_units(s: State) -> list[str]:
    snap = s.get("snapshot")
    if not snap:
        return []
    return [_scan_id(s, i) for i in range(snap["total"])]


def _shard_units(
    s: State, statuses: Sequence[str] = ("running", "finished", "pending")
) -> list[str]:
    return [
        _shard_id(s, sid)
        for sid, e in sorted(s.get("shards", {}).items())
        if e["status"] in statuses
    ]


def _replay_units(s: State) -> list[str]:
    buffer = s.get("buffer")
    if not buffer:
        return []
    return [_replay_id(s, i) for i in range(buffer["partitions"])]


def _place(
    p: Policy, s: State | _Unstarted, family: str, taken: Sequence[int], n: int
) -> list[int] | None:
    """Control partitions for ``n`` new units of a family of the table (None: placement
    is not used)."""
    if not p.placement:
        return None
    return placement.spread(p.placement, taken, n, f"{s['name']}/{s.get('epoch')}/{family}")


def _place_starting_shards(s: State, p: Policy, starting: Sequence[str]) -> State:
    """Place the shards starting now beside the table's running stream units (a shard
    that started unplaced, before placement existed, keeps its unit id)."""
    shards = s.get("shards", {})
    new = [sid for sid in starting if "at" not in shards[sid]]
    running = [
        e.get("at") for sid, e in shards.items() if sid not in new and e["status"] == "running"
    ]
    taken = [a for a in (s.get("watch_at"), *running) if a is not None]
    ats = _place(p, s, "stream", taken, len(new))
    if ats is None or not new:
        return s
    placed = dict(shards)
    for sid, at in zip(new, ats, strict=True):
        placed[sid] = {**placed[sid], "at": at}
    return {**s, "shards": placed}


def _buffering(s: State) -> bool:
    """Shards created now write to the snapshot's buffer."""
    return bool(s.get("buffer")) and s["phase"] in BUFFERING


def all_units(s: State) -> list[str]:
    """Every unit the table may have in its current epoch."""
    units = _scan_units(s) + _replay_units(s) + _shard_units(s)
    if s.get("stream_arn"):
        units.append(_watch_id(s))
    return units


def _create_scans(s: State, only_pending: bool = True) -> list[Command]:
    snap = _snapshot(s)
    done = set(snap["done"])
    rcu = snap.get("rcu")
    per_segment = rcu / snap["total"] if rcu else None
    return [
        _create(
            _scan_id(s, i),
            _unit_spec(s, "scan", segment=i, total=snap["total"], rcu=per_segment),
        )
        for i in range(snap["total"])
        if not (only_pending and i in done)
    ]


def _create_watch(s: State) -> Command:
    return _create(_watch_id(s), _unit_spec(s, "watch"))


def _create_shards(s: State, ids: Sequence[str]) -> list[Command]:
    sink = {"sink": "buffer", "partitions": _buffer(s)["partitions"]} if _buffering(s) else {}
    return [
        _create(
            _shard_id(s, sid),
            _unit_spec(s, "shard", shard_id=sid, parent=_parent(s["shards"].get(sid)), **sink),
        )
        for sid in ids
    ]


def _parent(entry: ShardEntry | None) -> str | None:
    return None if entry is None else entry.get("parent")


def _running_shards(s: State) -> list[str]:
    return sorted(sid for sid, e in s.get("shards", {}).items() if e["status"] == "running")


def _create_replays(s: State) -> list[Command]:
    n = _buffer(s)["partitions"]
    return [
        _create(
            _replay_id(s, i),
            _unit_spec(s, "replay", partition=i, partitions=n),
        )
        for i in range(n)
    ]


def _unit_command(message_type: type[pr.Pause | pr.Drain], unit_id: str) -> Command:
    return pr.encode(message_type(uid=unit_id))


def _pauses(s: State, shard_ids: Sequence[str]) -> list[Command]:
    return [_unit_command(pr.Pause, _shard_id(s, sid)) for sid in shard_ids]


def _drains(s: State) -> list[Command]:
    return [_unit_command(pr.Drain, u) for u in _replay_units(s)]


def _begin(s: _Unstarted, info: Mapping[str, Any], now: int, p: Policy, reason: str) -> Outcome:
    """Start a fresh epoch: a snapshot, or (stream_only) streaming from the start point."""
    epoch = s.get("epoch", 0) + 1
    base: _Unstarted = {
        **s,
        "epoch": epoch,
        "shards": {},
        "shard_floor": None,
        "error": None,
        "stopped_ms": None,
        "halted_ms": None,
        "resumed_ms": None,
        "resume_phase": None,
        "reason": reason,
        "updated_ms": now,
    }
    # the watcher's place (it may start later: after the scan)
    at = _place(p, base, "stream", [], 1) if s.get("stream_arn") else None
    base["watch_at"] = at[0] if at else None
    commands: list[Command] = []
    new: State
    if p.mode == "stream_only":
        new = {
            **base,
            "epoch": epoch,
            "phase": "STREAMING",
            "snapshot": None,
            "cutoff_ms": now if p.stream_start == "latest" and reason == "new" else 0,
        }
        commands.append(_create_watch(new))
    else:
        total = plan_segments(
            int(info.get("size_bytes", 0)), int(info.get("item_count", 0)), p.segments
        )
        rcu = rcu_budget(int(info.get("read_capacity", 0)), p.rcu_percent, p.max_rcu)
        buffered = p.buffer_partitions > 0 and p.mode != "snapshot_only" and s.get("stream_arn")
        buffer: Buffer = {
            "partitions": p.buffer_partitions,
            "caught_up": [],
            "waiting": None,
            "draining": False,
            "done": [],
        }
        snapshot: Snapshot = {
            "start_ms": now,
            "end_ms": None,
            "total": total,
            "done": [],
            "items": 0,
            "rcu": rcu,
        }
        if p.placement:
            snapshot["at"] = _place(p, base, "scan", [], total) or []
            buffer["at"] = _place(p, base, "replay", [], p.buffer_partitions) or []
        new = {
            **base,
            "epoch": epoch,
            "buffer": buffer if buffered else None,
            "phase": "INIT_SYNC",
            "cutoff_ms": max(0, now - p.overlap_ms),
            "snapshot": snapshot,
        }
        commands += _create_scans(new)
        if buffered:  # the stream is read from the snapshot's start on, into the buffer
            commands.append(_create_watch(new))
    return Outcome(
        new, commands, [f"{new['name']}: {new['phase']} epoch {new['epoch']} ({reason})"]
    )


class _Info(TypedDict):
    table_arn: str | None
    stream_arn: str | None
    key_names: list[str] | None
    item_count: int | None
    size_bytes: int | None
    read_capacity: int | None
    view_type: str | None


class _Fresh(_Info):
    name: str


def _first_row(info: Mapping[str, Any]) -> _Unstarted:
    """The row of a table seen for the first time (in this life): its name and
    description, as ``{"name": ..., **_info_fields(info)}``."""
    return {
        "name": info["name"],
        "table_arn": info.get("table_arn"),
        "stream_arn": info.get("stream_arn"),
        "key_names": info.get("key_names"),
        "item_count": info.get("item_count"),
        "size_bytes": info.get("size_bytes"),
        "read_capacity": info.get("read_capacity"),
        "view_type": info.get("view_type"),
    }


def _info_fields(info: Mapping[str, Any]) -> _Info:
    """The fields of a table state that discovery's description of the table sets."""
    return {
        "table_arn": info.get("table_arn"),
        "stream_arn": info.get("stream_arn"),
        "key_names": info.get("key_names"),
        "item_count": info.get("item_count"),
        "size_bytes": info.get("size_bytes"),
        "read_capacity": info.get("read_capacity"),
        "view_type": info.get("view_type"),
    }


# ---------------------------------------------------------------- table transitions
def _retire(old: State, out: Outcome) -> Outcome:
    """`out` starts a new epoch: drop every unit of the old one now, and remember them so
    that the sweeps repeat the drops (a control message can be lost around a rebalance,
    and an undropped unit of a superseded epoch would run again at every rebalance)."""
    units = all_units(old)
    out.commands[:0] = [_drop(u) for u in units]
    if old.get("buffer") and old.get("epoch"):
        out.buffers_done.append(old["epoch"])
    if out.state is not None:
        out.state = {
            **out.state,
            "retired": {"units": units, "heals": RETIRED_HEALS} if units else None,
        }
    return out


def _heal_retired(s: State) -> Outcome:
    """Repeat the drops of the superseded epoch, a few sweeps long."""
    retired = s.get("retired")
    if not retired:
        return Outcome(s)
    heals = int(retired.get("heals", 0)) - 1
    s = {**s, "retired": {**retired, "heals": heals} if heals > 0 else None}
    return Outcome(s, [_drop(u) for u in retired["units"]])


def on_discovered(s: State | None, info: Mapping[str, Any], now: int, p: Policy) -> Outcome:
    """Discovery saw the table (idempotent: it says so every interval)."""
    fresh: _Fresh = {"name": info["name"], **_info_fields(info)}
    if s is None or s["phase"] == "FORGOTTEN":
        # a forgotten table's row keeps its epoch: the new life continues the count
        first: _Unstarted = (
            {**_first_row(info), "resnapshots": 0}
            if s is None
            else {**s, **fresh, "resnapshots": 0}
        )
        return _begin(first, info, now, p, "new")
    if s.get("refused"):  # usable again after a refusal: see on_refused
        return _accepted(s, info, now, p)
    same_stream = s.get("stream_arn") == info.get("stream_arn")
    same_table = s.get("table_arn") == info.get("table_arn")
    if not (same_stream and same_table):
        # table re-created or its stream replaced: the old positions mean nothing
        return _retire(s, _begin({**s, **fresh}, info, now, p, "table or stream replaced"))
    s = {**s, **_info_fields(info)}
    if s["phase"] in ACTIVE or s["phase"] == "SNAPSHOT_DONE":
        return Outcome(s, _heal(s))
    if s["phase"] == "ERROR" and now - (s.get("updated_ms") or 0) < p.error_retry_ms:
        return Outcome(s)
    return _resume(s, info, now, p)


def _heal(s: State) -> list[Command]:
    """The commands that keep the current phase's work running, re-sent every discovery
    round.  A control message can be lost around a rebalance (faust may ack events a new
    owner fetched before seeking to never-committed offsets); every command is idempotent
    at the unit (a running unit stays as it is, a finished one repeats its unit_done), so
    repeating them heals a lost create or unit_done within one discovery interval."""
    buffered = bool(s.get("buffer"))
    stream = [_create_watch(s), *_create_shards(s, _running_shards(s))]
    if s["phase"] == "INIT_SYNC":
        return [*_create_scans(s), *(stream if buffered else [])]
    if s["phase"] == "CATCHING_UP":
        return [*_create_replays(s), *stream]
    if s["phase"] == "SWITCHING":
        buffer = _buffer(s)
        drains = _drains(s) if buffer["draining"] else []
        return [*_create_replays(s), *_pauses(s, buffer["waiting"] or []), *drains]
    if s["phase"] == "STREAMING":
        return stream
    return []


def _running_units(s: State) -> list[str]:
    units = _scan_units(s) + _replay_units(s) + _shard_units(s, ("running",))
    if s.get("stream_arn"):
        units.append(_watch_id(s))
    return units


def _resume(s: State, info: Mapping[str, Any], now: int, p: Policy) -> Outcome:
    """A stopped (untagged) or failed table is back: continue if the stream still holds
    our positions, else start over, loudly."""
    phase = s.get("resume_phase") or "STREAMING"
    halted = s.get("halted_ms") or s.get("stopped_ms") or s.get("updated_ms") or now
    if phase != "SNAPSHOT_DONE" and now - halted >= p.resume_limit_ms:
        what = "STOPPED" if s["phase"] == "STOPPED" else "in ERROR"
        return on_resnapshot(
            {**s, "phase": phase},
            f"the table was {what} (positions frozen) for {_hours(now - halted)}, longer than "
            f"the stream retention allows ({_hours(p.resume_limit_ms)} of "
            f"{_hours(p.retention_ms)}): changes may have been trimmed unread",
            info,
            now,
            p,
        )
    s = {
        **s,
        "phase": phase,
        "stopped_ms": None,
        "error": None,
        "resume_phase": None,
        "resumed_ms": now,
        "updated_ms": now,
    }
    return Outcome(s, _heal(s), [f"{s['name']}: resumed {phase} epoch {s['epoch']}"])


def _hours(ms: int) -> str:
    return f"{ms / 3_600_000:.1f} h"


def on_stop(s: State, reason: str, now: int, error: bool = False) -> Outcome:
    """Stop every runner of the table; positions are kept so it can resume."""
    if s["phase"] == "FORGOTTEN":
        return Outcome(s)
    if s["phase"] in ("STOPPED", "ERROR"):  # again: repeat the stops (one may be lost)
        return Outcome(s, [_stop(u) for u in _running_units(s)])
    resume = s["phase"] if s["phase"] in (*ACTIVE, "SNAPSHOT_DONE") else None
    # the positions stop advancing now, or stopped already: a table that failed again
    # right after its retry never advanced in between, so the first halt still counts
    halted = s.get("halted_ms") or now
    s = {
        **s,
        "phase": "ERROR" if error else "STOPPED",
        "resume_phase": resume,
        "stopped_ms": now,
        "halted_ms": halted,
        "updated_ms": now,
        "reason": reason,
        "error": reason if error else s.get("error"),
    }
    return Outcome(
        s, [_stop(u) for u in _running_units(s)], [f"{s['name']}: {s['phase']} ({reason})"]
    )


def on_refused(s: State | None, info: Mapping[str, Any], reason: str, now: int) -> Outcome:
    """Discovery found the table but cannot replicate it (``reason``: free text, e.g. a
    stream without the new item image): phase REFUSED, ``error`` = reason, every running
    unit stopped, positions kept.  Idempotent (discovery says it every round; the stops
    are repeated as one may be lost); ``events`` holds "refused" only when the reason is
    new, so the agent warns once per change.

    ``s["refused"]`` = {reason, resume_phase, stopped_ms}: what the refusal interrupted.
    It survives on_stop/on_sweep (a refused table no longer discovered stops and is
    forgotten like any other) and is what :func:`_accepted` resumes when discovery
    finds the table usable again.  A table refused before it ever started has epoch 0."""
    running = s is not None and s["phase"] in (*ACTIVE, "SNAPSHOT_DONE")
    old = None if s is None else s.get("refused")
    if s is None or s["phase"] == "FORGOTTEN":  # never started (in this life)
        s = {
            **_first_row(info),
            "epoch": 0 if s is None else s.get("epoch", 0),
            "resnapshots": 0,
            "snapshot": None,
            "shards": {},
            "resume_phase": None,
            "stopped_ms": None,
            "phase": "REFUSED",  # as below (a known table gets it there)
        }
        old = {"reason": None, "resume_phase": None, "stopped_ms": None, "new": True}
        first = True
    else:
        first = False
    if running or old is None:  # running now, it resumes the phase it is in
        old = {
            "reason": None,
            "resume_phase": s["phase"] if running else s.get("resume_phase"),
            "stopped_ms": now if running else s.get("stopped_ms"),
        }
    stops = [] if old.get("new") else [_stop(u) for u in _running_units(s)]
    if not first and s["phase"] == "REFUSED" and old["reason"] == reason:
        return Outcome(s, stops)
    s = {
        **s,
        "phase": "REFUSED",
        "reason": reason,
        "error": reason,
        "updated_ms": now,
        "refused": {**old, "reason": reason},
        # its positions stop advancing (see on_stop): the retention clock runs
        "halted_ms": s.get("halted_ms") or (now if running else None),
    }
    return Outcome(s, stops, events=["refused"])


def _accepted(s: State, info: Mapping[str, Any], now: int, p: Policy) -> Outcome:
    """on_discovered for a table refused before: put back what the refusal interrupted,
    then decide as for any known table (stream replaced: new epoch; positions older
    than the retention: new epoch; else resume the interrupted phase)."""
    refused, s = s["refused"], {**s, "refused": None}
    if s["phase"] not in ("REFUSED", "STOPPED"):
        return on_discovered(s, info, now, p)  # started again since (a resnapshot)
    assert refused is not None  # the caller's condition
    if refused.get("new") or not s.get("epoch"):  # refused before it ever started: new
        # (a forgotten table's epoch is kept: its new life continues the count)
        return _begin({**s, "name": info["name"], **_info_fields(info)}, info, now, p, "new")
    s = {
        **s,
        "phase": "STOPPED",
        "resume_phase": refused.get("resume_phase"),
        "stopped_ms": refused.get("stopped_ms"),
    }
    out = on_discovered(s, info, now, p)
    out.notes.insert(0, f"{s['name']}: no longer refused ({refused.get('reason')})")
    return out


def on_sweep(s: State, present: set[str], now: int) -> Outcome:
    """Broadcast after a complete discovery: tables no longer desired stop; tables
    stopped for longer than the stream retention are forgotten."""
    if s["phase"] == "FORGOTTEN":
        return _heal_retired(s)
    if s["name"] not in present:
        if s["phase"] == "STOPPED" and now - (s.get("stopped_ms") or now) >= RETENTION_MS:
            # keep the epoch (only): unit ids of a later life must never repeat these
            row: State = {
                "name": s["name"],
                "phase": "FORGOTTEN",
                "epoch": s["epoch"],
                "updated_ms": now,
            }
            note = f"{s['name']}: forgotten (stopped for more than 24 h)"
            return _retire(s, Outcome(row, [], [note]))
        out = on_stop(s, "no longer discovered (tag removed, excluded or table deleted)", now)
    else:
        out = Outcome(s)
    healed = _heal_retired(out.state) if out.state is not None else Outcome(None)
    if healed.commands:
        out = Outcome(healed.state, [*out.commands, *healed.commands], out.notes, out.events)
    return out


def on_resnapshot(
    s: State, reason: str, info: Mapping[str, Any] | None, now: int, p: Policy
) -> Outcome:
    """Positions are unusable (trimmed) or an operator asked: start a new epoch."""
    if s["phase"] in ("STOPPED", "FORGOTTEN", "REFUSED"):
        return Outcome(s)
    out = _retire(
        s,
        _begin(
            {**s, "resnapshots": s.get("resnapshots", 0) + 1},
            info or {**s, "name": s["name"]},
            now,
            p,
            reason,
        ),
    )
    assert out.state is not None
    out.state["error"] = f"re-snapshot (epoch {out.state['epoch']}): {reason}"  # on the page
    out.events.append("resnapshot")
    return out


def _stale(s: State, msg: pr.UnitDone | pr.Shards | pr.UnitFailed) -> bool:
    return msg.epoch != s.get("epoch") or s["phase"] not in ACTIVE


def on_unit_done(s: State, msg: pr.UnitDone | Mapping[str, Any], now: int, p: Policy) -> Outcome:
    msg = _typed(pr.UnitDone, table_key(s["name"]), msg)
    if _stale(s, msg):
        return Outcome(s)
    if msg.kind == "scan":
        snap = _snapshot(s).copy()
        if msg.segment is None:
            raise KeyError("segment")  # as before the typed messages: the message is bad
        if msg.segment in snap["done"]:
            return Outcome(s)
        snap["done"] = sorted({*snap["done"], msg.segment})
        snap["items"] += int(msg.count)
        s = {**s, "snapshot": snap, "updated_ms": now}
        if len(snap["done"]) < snap["total"]:
            return Outcome(s)
        snap["end_ms"] = now
        drops = [_drop(u) for u in _scan_units(s)]
        if p.mode == "snapshot_only":
            return Outcome(
                {**s, "phase": "SNAPSHOT_DONE"},
                drops,
                [f"{s['name']}: snapshot done, {snap['items']} items"],
            )
        if s.get("buffer"):  # the stream was read all along: replay what it buffered
            s = {**s, "phase": "CATCHING_UP"}
            return Outcome(
                s,
                [*drops, *_create_replays(s)],
                [f"{s['name']}: snapshot done, {snap['items']} items; CATCHING_UP"],
            )
        cutoff = max(0, snap["start_ms"] - p.overlap_ms)
        if now - cutoff >= p.resume_limit_ms:
            # the stream must be read from the cutoff on, but may have trimmed it already:
            # a shard without a checkpoint would start at TRIM_HORIZON and skip the gap
            return on_resnapshot(
                s,
                f"the snapshot took {_hours(now - snap['start_ms'])}: the stream no longer "
                f"holds every change since its start ({_hours(p.resume_limit_ms)} of "
                f"{_hours(p.retention_ms)} retention usable)",
                None,
                now,
                p,
            )
        s = {**s, "phase": "STREAMING", "cutoff_ms": cutoff, "halted_ms": None}
        return Outcome(
            s,
            [*drops, _create_watch(s)],
            [f"{s['name']}: snapshot done, {snap['items']} items; streaming"],
        )
    if msg.kind == "shard":  # a shard read to its end: the positions do advance
        if msg.shard_id is None:
            raise KeyError("shard_id")  # as before the typed messages: the message is bad
        out = _replan({**s, "halted_ms": None}, msg.listing, [msg.shard_id], now, p)
        if out.state is not None and out.state.get("phase") == "SWITCHING":
            # it ended before its pause arrived: nothing more of it will be written
            return _paused(out.state, msg.shard_id, out)
        return out
    if msg.kind == "replay" and s["phase"] == "SWITCHING" and _buffer(s)["draining"]:
        if msg.segment is None:
            raise KeyError("segment")
        buffer = _buffer(s)
        if msg.segment in buffer["done"]:
            return Outcome(s)
        buffer = {**buffer, "done": sorted({*buffer["done"], msg.segment})}
        s = {**s, "buffer": buffer, "updated_ms": now}
        if len(buffer["done"]) < buffer["partitions"]:
            return Outcome(s)
        s = {**s, "phase": "STREAMING", "halted_ms": None}
        return Outcome(
            s,
            [
                *[_drop(u) for u in _replay_units(s)],
                _create_watch(s),
                *_create_shards(s, _running_shards(s)),  # from their checkpoints, to the output
            ],
            [f"{s['name']}: buffer replayed; STREAMING epoch {s['epoch']}"],
            buffers_done=[s["epoch"]],
        )
    return Outcome(s)


def on_buffer_caught_up(s: State, msg: pr.BufferCaughtUp, now: int) -> Outcome:
    """A replay unit reached its partition's end: once all have, pause the shards."""
    if msg.epoch != s.get("epoch") or s["phase"] != "CATCHING_UP" or not s.get("buffer"):
        return Outcome(s)
    buffer = _buffer(s)
    if msg.partition in buffer["caught_up"]:
        return Outcome(s)
    buffer = {**buffer, "caught_up": sorted({*buffer["caught_up"], msg.partition})}
    s = {**s, "buffer": buffer, "updated_ms": now}
    if len(buffer["caught_up"]) < buffer["partitions"]:
        return Outcome(s)
    waiting = _running_shards(s)
    s = {**s, "phase": "SWITCHING", "buffer": {**buffer, "waiting": waiting}}
    out = Outcome(
        s,
        _pauses(s, waiting),
        [f"{s['name']}: buffer caught up; SWITCHING (pausing {len(waiting)} shard(s))"],
    )
    return _drain_when_paused(out)


def on_shard_paused(s: State, msg: pr.ShardPaused, now: int) -> Outcome:
    """A shard stopped for the switch, its last page acknowledged."""
    if msg.epoch != s.get("epoch") or s["phase"] != "SWITCHING":
        return Outcome(s)
    return _paused({**s, "updated_ms": now}, msg.shard_id, Outcome(s))


def _paused(s: State, shard_id: str, out: Outcome) -> Outcome:
    buffer = _buffer(s)
    waiting = [sid for sid in buffer["waiting"] or [] if sid != shard_id]
    out.state = {**s, "buffer": {**buffer, "waiting": waiting}}
    return _drain_when_paused(out)


def _drain_when_paused(out: Outcome) -> Outcome:
    """Every running shard paused: nothing more is buffered, the replay units drain."""
    s = out.state
    assert s is not None
    buffer = _buffer(s)
    if buffer["waiting"] or buffer["draining"]:
        return out
    s = {**s, "buffer": {**buffer, "draining": True}}
    out.state = s
    out.commands.extend(_drains(s))
    out.notes.append(f"{s['name']}: shards paused; draining the buffer")
    return out


def on_shards(s: State, msg: pr.Shards | Mapping[str, Any], now: int, p: Policy) -> Outcome:
    msg = _typed(pr.Shards, table_key(s["name"]), msg)
    # while switching, no shard starts (the watcher says it again within 10 refreshes)
    if _stale(s, msg) or not (s["phase"] == "STREAMING" or _buffering(s)):
        return Outcome(s)
    if s.get("halted_ms") and now - (s.get("resumed_ms") or now) >= 2 * p.error_retry_ms:
        # running for a while since the resume without failing: the runners advance
        s = {**s, "halted_ms": None}
    return _replan(s, msg.listing, [], now, p)


def on_unit_failed(s: State, msg: pr.UnitFailed | Mapping[str, Any], now: int) -> Outcome:
    msg = _typed(pr.UnitFailed, table_key(s["name"]), msg)
    if _stale(s, msg):
        return Outcome(s)
    out = on_stop(s, f"{msg.unit}: {msg.error}", now, error=True)
    out.events.append("table_error")
    return out


def decode_listing(listing: Sequence[Sequence[Any]] | None) -> list[Shard] | None:
    if listing is None:
        return None
    return [Shard(str(x[0]), x[1], x[2], x[3]) for x in listing]


def encode_listing(shards: Sequence[Shard]) -> list[list[Any]]:
    return [
        [x.shard_id, x.parent_shard_id, x.starting_sequence_number, x.ending_sequence_number]
        for x in shards
    ]


def _replan(
    s: State, listing: Sequence[Sequence[Any]] | None, finished: list[str], now: int, p: Policy
) -> Outcome:
    result = lineage.plan(
        s.get("shards", {}), decode_listing(listing), finished, s.get("shard_floor")
    )
    if result.lost:
        # our unread position fell behind the 24 h trim horizon: data is gone.  Drop the
        # units of the lineage as it was: result.known no longer names the lost shards.
        out = on_resnapshot(
            {**s, "updated_ms": now},
            f"shards trimmed before they were read: {result.lost}",
            None,
            now,
            p,
        )
        out.events.append("lost_shard")
        return out
    drops = [_drop(_shard_id(s, sid)) for sid in result.prune]  # their places: in s
    s = {**s, "shards": result.known, "shard_floor": result.floor, "updated_ms": now}
    s = _place_starting_shards(s, p, result.start)
    if s["phase"] == "SWITCHING":  # children start (as running) once STREAMING
        return Outcome(s, drops)
    return Outcome(s, [*_create_shards(s, result.start), *drops])


# ---------------------------------------------------------------- unit transitions
UnitAction = Literal["ensure", "stop", "pause"] | None
# a unit row as the transitions below build it (read as a UnitState by the runners)
UnitRow = dict[str, Any]


@dataclass
class UnitOutcome:
    state: UnitRow | None
    action: UnitAction = None
    forward: list[Command] = field(default_factory=list)


def _seq_after(new: Any, old: Any) -> bool:
    return old is None or (new is not None and int(new) > int(old))


def _unit_done(
    u: UnitRow, count: int | None = None, listing: list[list[Any]] | None = None
) -> Command:
    spec = u["spec"]
    return pr.encode(
        pr.UnitDone(
            table=spec["table"],
            unit=u["id"],
            kind=spec["kind"],
            epoch=spec["epoch"],
            segment=spec.get("partition") if spec["kind"] == "replay" else spec.get("segment"),
            shard_id=spec.get("shard_id"),
            count=int(u["count"] if count is None else count),
            listing=listing,
        )
    )


def _shard_paused(u: UnitRow) -> Command:
    spec = u["spec"]
    return pr.encode(
        pr.ShardPaused(table=spec["table"], epoch=spec["epoch"], shard_id=spec["shard_id"])
    )


def _on_pause(u: UnitRow | None, unit_id: str, now: int) -> UnitOutcome:
    """Pause a shard for the switch: a running one stops at a page boundary (the agent
    says Paused once its runner ended); one that runs nowhere says so at once."""
    if u is None:  # never created (its create lost): nothing of it can be in flight
        uid = pr.UnitId.parse(unit_id)
        paused = pr.ShardPaused(table=uid.table, epoch=uid.epoch, shard_id=str(uid.shard_id))
        return UnitOutcome(None, None, [pr.encode(paused)])
    if u["status"] in ("active", "pausing"):  # again: its runner may have gone meanwhile
        return UnitOutcome({**u, "status": "pausing", "updated_ms": now}, "pause")
    status = "finished" if u["status"] == "finished" else "paused"
    return UnitOutcome({**u, "status": status, "updated_ms": now}, None, [_shard_paused(u)])


def on_unit(
    u: UnitRow | None,
    unit_id: str,
    msg: pr.UnitMessage | Mapping[str, Any],
    partition: int,
    now: int,
) -> UnitOutcome:
    if isinstance(msg, Mapping):  # transitional, as _typed: a wire dict goes through the codec
        decoded = pr.decode(unit_key(unit_id), msg)
        assert not isinstance(decoded, pr.Sweep | pr.TableMessage)
        msg = decoded
    if isinstance(msg, pr.Create):
        spec = dict(msg.spec)
        if u is None or u["spec"].get("epoch") != spec.get("epoch"):
            u = {
                "id": unit_id,
                "spec": spec,
                "status": "active",
                "pos": None,
                "count": 0,
                "lag_ms": None,
                "error": None,
            }
        elif u["status"] == "finished":  # a repeated create: repeat the unit_done
            return UnitOutcome(u, None, [_unit_done(u)])
        u = {**u, "spec": spec, "status": "active", "partition": partition, "updated_ms": now}
        return UnitOutcome(u, "ensure")
    if isinstance(msg, pr.Pause):
        return _on_pause(u, unit_id, now)
    if u is None:
        return UnitOutcome(None)  # a late report for a dropped unit
    match msg:
        case pr.Progress():
            if u["spec"]["kind"] == "shard":
                if not _seq_after(msg.pos, u.get("pos")):
                    return UnitOutcome(u)
            elif int(msg.count) <= int(u.get("count", 0)):
                return UnitOutcome(u)
            return UnitOutcome(
                {
                    **u,
                    "pos": msg.pos,
                    "count": int(msg.count),
                    "lag_ms": msg.lag_ms,
                    "ts_ms": msg.ts_ms,
                    "updated_ms": now,
                }
            )
        case pr.CaughtUp() if u["spec"]["kind"] == "replay":  # at its partition's end
            spec = u["spec"]
            caught_up = pr.BufferCaughtUp(
                table=spec["table"], epoch=spec["epoch"], partition=spec["partition"]
            )
            return UnitOutcome({**u, "lag_ms": 0}, None, [pr.encode(caught_up)])
        case pr.CaughtUp():  # an open shard's read came back empty: nothing waits
            if u["status"] != "active" or u.get("lag_ms") == 0:
                return UnitOutcome(u)
            return UnitOutcome({**u, "lag_ms": 0, "updated_ms": now})
        case pr.Paused():
            if u["status"] not in ("pausing", "paused"):
                return UnitOutcome(u)  # created again meanwhile: a late report
            return UnitOutcome(
                {**u, "status": "paused", "updated_ms": now}, None, [_shard_paused(u)]
            )
        case pr.Drain():
            return UnitOutcome({**u, "drain": True, "updated_ms": now})
        case pr.Finish():
            if u["status"] == "finished":
                return UnitOutcome(u)
            done = _unit_done(u, msg.count, msg.listing)
            pos = msg.pos if msg.pos is not None else u.get("pos")
            count = int(u["count"] if msg.count is None else msg.count)
            return UnitOutcome(
                {**u, "status": "finished", "pos": pos, "count": count, "updated_ms": now},
                "stop",
                [done],
            )
        case pr.Failed():
            spec = u["spec"]
            fail = pr.encode(
                pr.UnitFailed(
                    table=spec["table"], unit=u["id"], epoch=spec["epoch"], error=msg.error
                )
            )
            return UnitOutcome(
                {**u, "status": "failed", "error": msg.error, "updated_ms": now}, "stop", [fail]
            )
        case pr.StopUnit():
            if u["status"] == "finished":
                return UnitOutcome(u, "stop")
            return UnitOutcome({**u, "status": "stopped", "updated_ms": now}, "stop")
        case pr.Drop():
            return UnitOutcome(None, "stop")
    raise ValueError(f"not a unit message: {msg!r}")
