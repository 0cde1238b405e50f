"""The control topic's protocol: unit ids, typed messages and the one codec — pure.

Every message on ``<APP_ID>-control`` is one of the frozen dataclasses below.  Its key
says whom it is for:

    t:<table>   a table message  (:class:`Discovered`, :class:`Refused`, :class:`UnitDone`,
                :class:`Shards`, :class:`UnitFailed`, :class:`Resnapshot`, :class:`StopTable`,
                :class:`BufferCaughtUp`, :class:`ShardPaused`)
    u:<unit>    a unit message   (:class:`Create`, :class:`Progress`, :class:`CaughtUp`,
                :class:`Finish`, :class:`Failed`, :class:`StopUnit`, :class:`Drop`,
                :class:`Pause`, :class:`Paused`, :class:`Drain`)
    sweep       :class:`Sweep` (sent to every partition; it has no ``type`` on the wire)

:func:`encode` turns a message into ``(key, JSON-able dict)`` and :func:`decode` back; a
key or ``type`` that is not listed here raises :class:`ProtocolError` instead of being a
silent no-op.  The wire format is the one the workers always wrote (a ``type`` field, the
fields below by their wire name, ``fp`` when the sender stamped one): messages already in
the topic decode, and encoding a decoded message gives the same dict.  Wire fields this
module does not know are ignored (a newer sender may add some).

Unit ids (:class:`UnitId`) are formatted and parsed here only:

    scan|<table>|<epoch>|<segment>|<total>
    watch|<table>|<epoch>                 (DescribeStream poller, one per streaming table)
    shard|<table>|<epoch>|<stream_arn>|<shard_id>
    replay|<table>|<epoch>|<partition>    (copies one partition of the snapshot's buffer)

A unit placed on a control partition by the coordinator (app.domain.placement) carries it
as a last part, ``|@<control partition>``: every message for it is sent to that partition
(:func:`control_partition`), whoever sends it.  A unit id without one (a unit created
before placement existed) is sent where its key hashes to, as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias

UnitKind = Literal["scan", "watch", "shard", "replay"]
SEP = "|"
AT = "@"  # the placement part of a unit id: "@<control partition>"
_PARTS = {"scan": 5, "watch": 3, "shard": 5, "replay": 4}  # parts of an unplaced id


class ProtocolError(ValueError):
    """A control message or unit id this version cannot read."""


# ---------------------------------------------------------------- unit ids
@dataclass(frozen=True)
class UnitId:
    """The name of a work unit; it carries the table's epoch, so ids never repeat across
    epochs (see app.domain.coordinator)."""

    kind: UnitKind
    table: str
    epoch: int
    segment: int | None = None  # scan
    total: int | None = None  # scan
    stream_arn: str | None = None  # shard
    shard_id: str | None = None  # shard: the DynamoDB shard id
    partition: int | None = None  # replay: the buffer topic's partition
    at: int | None = None  # the control partition the unit was placed on (None: by key hash)

    @classmethod
    def scan(cls, table: str, epoch: int, segment: int, total: int) -> UnitId:
        return cls("scan", table, epoch, segment=segment, total=total)

    @classmethod
    def watch(cls, table: str, epoch: int) -> UnitId:
        return cls("watch", table, epoch)

    @classmethod
    def shard(cls, table: str, epoch: int, stream_arn: str, shard_id: str) -> UnitId:
        return cls("shard", table, epoch, stream_arn=stream_arn, shard_id=shard_id)

    @classmethod
    def replay(cls, table: str, epoch: int, partition: int) -> UnitId:
        return cls("replay", table, epoch, partition=partition)

    def _parts(self) -> list[str]:
        head = [self.kind, self.table, str(self.epoch)]
        if self.kind == "scan":
            return [*head, str(self.segment), str(self.total)]
        if self.kind == "watch":
            return head
        if self.kind == "replay":
            return [*head, str(self.partition)]
        return [*head, str(self.stream_arn), str(self.shard_id)]

    def placed(self, at: int | None) -> UnitId:
        return dataclasses.replace(self, at=at)

    def format(self) -> str:
        parts = self._parts()
        if self.at is not None:
            if self.at < 0:
                raise ProtocolError(f"cannot place a unit on control partition {self.at}")
            parts.append(f"{AT}{self.at}")
        if any(SEP in p or not p for p in parts) or self.kind not in (
            "scan",
            "watch",
            "shard",
            "replay",
        ):
            raise ProtocolError(f"cannot name a unit {self!r}: empty part or {SEP!r} in one")
        return SEP.join(parts)

    def __str__(self) -> str:
        return self.format()

    @classmethod
    def parse(cls, text: str) -> UnitId:
        """The unit id ``text`` names; ProtocolError for anything :meth:`format` would not
        have written."""
        parts = text.split(SEP) if isinstance(text, str) else []
        try:
            kind, table, epoch = parts[0], parts[1], int(parts[2])
            at = None
            if len(parts) == _PARTS.get(kind, -1) + 1 and parts[-1].startswith(AT):
                at = int(parts.pop()[len(AT) :])
            if kind == "scan" and len(parts) == 5:
                uid = cls.scan(table, epoch, int(parts[3]), int(parts[4]))
            elif kind == "watch" and len(parts) == 3:
                uid = cls.watch(table, epoch)
            elif kind == "shard" and len(parts) == 5:
                uid = cls.shard(table, epoch, parts[3], parts[4])
            elif kind == "replay" and len(parts) == 4:
                uid = cls.replay(table, epoch, int(parts[3]))
            else:
                raise ValueError(kind)
            uid = uid.placed(at)
            ok = uid.format() == text  # canonical only: "01" is not epoch 1's id
        except (IndexError, ValueError):
            ok = False
        if not ok:
            raise ProtocolError(f"not a unit id: {text!r}")
        return uid


# ---------------------------------------------------------------- keys
def control_partition(key: str) -> int | None:
    """The control partition a message keyed ``key`` must be sent to: a placed unit's
    (see :class:`UnitId`); None for every other key (sent where it hashes to)."""
    if not key.startswith("u:") or not key.endswith(tuple("0123456789")):
        return None
    try:
        return UnitId.parse(key[2:]).at
    except ProtocolError:
        return None


def table_key(name: str) -> str:
    return f"t:{name}"


def unit_key(unit_id: str) -> str:
    return f"u:{unit_id}"


SWEEP_KEY = "sweep"


# ---------------------------------------------------------------- messages
def _wire(name: str) -> Any:
    """A dataclass field written under another name on the wire."""
    return {"wire": name}


@dataclass(frozen=True, kw_only=True)
class _Message:
    TYPE: ClassVar[str]
    ADDRESS: ClassVar[str]  # the field that is the key, not a wire field
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset()  # wire fields left out when None
    fp: str | None = None  # the sender's deployment fingerprint (app.state.send_control)


@dataclass(frozen=True, kw_only=True)
class _TableMessage(_Message):
    ADDRESS: ClassVar[str] = "table"
    table: str


@dataclass(frozen=True, kw_only=True)
class _UnitMessage(_Message):
    ADDRESS: ClassVar[str] = "uid"
    uid: str


# table messages (key t:<table>) -----------------------------------------
@dataclass(frozen=True, kw_only=True)
class Discovered(_TableMessage):
    """Discovery saw the table, usable (every interval: idempotent)."""

    TYPE: ClassVar[str] = "discovered"
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"now"})
    info: Mapping[str, Any]  # agents.discovery.info_message
    now: int | None = None


@dataclass(frozen=True, kw_only=True)
class Refused(_TableMessage):
    """Discovery saw the table but cannot replicate it (``reason``)."""

    TYPE: ClassVar[str] = "refused"
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"now"})
    reason: str | None = None
    info: Mapping[str, Any]
    now: int | None = None


@dataclass(frozen=True, kw_only=True)
class UnitDone(_TableMessage):
    """A unit's work is complete (forwarded by the unit's agent on its Finish)."""

    TYPE: ClassVar[str] = "unit_done"
    unit: str | None = None
    kind: UnitKind
    epoch: int | None = None
    segment: int | None = None
    shard_id: str | None = None
    count: int = 0
    listing: list[list[Any]] | None = None


@dataclass(frozen=True, kw_only=True)
class Shards(_TableMessage):
    """The stream's shard listing (the watcher, every refresh)."""

    TYPE: ClassVar[str] = "shards"
    epoch: int | None = None
    listing: list[list[Any]]


@dataclass(frozen=True, kw_only=True)
class UnitFailed(_TableMessage):
    TYPE: ClassVar[str] = "unit_failed"
    unit: str | None = None
    epoch: int | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class Resnapshot(_TableMessage):
    """Start a new epoch (a runner found its positions trimmed, or an operator asked);
    ``epoch`` None: whatever epoch is current."""

    TYPE: ClassVar[str] = "resnapshot"
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"reason", "epoch"})
    reason: str | None = None
    epoch: int | None = None


@dataclass(frozen=True, kw_only=True)
class StopTable(_TableMessage):
    TYPE: ClassVar[str] = "stop"
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"reason"})
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class BufferCaughtUp(_TableMessage):
    """A replay unit read its buffer partition up to the end once (forwarded by its
    agent): when every partition has, the table pauses its shards for the switch."""

    TYPE: ClassVar[str] = "buffer_caught_up"
    epoch: int | None = None
    partition: int


@dataclass(frozen=True, kw_only=True)
class ShardPaused(_TableMessage):
    """A shard unit stopped at a page boundary for the switch, its last page
    acknowledged (forwarded by its agent on Paused)."""

    TYPE: ClassVar[str] = "shard_paused"
    epoch: int | None = None
    shard_id: str


# unit messages (key u:<unit id>) ----------------------------------------
@dataclass(frozen=True, kw_only=True)
class Create(_UnitMessage):
    """Run the unit (idempotent: a running unit stays, a finished one repeats its done)."""

    TYPE: ClassVar[str] = "create"
    spec: Mapping[str, Any] = dataclasses.field(metadata=_wire("unit"))


@dataclass(frozen=True, kw_only=True)
class Progress(_UnitMessage):
    """A runner's checkpoint: position and count, after Kafka acknowledged them."""

    TYPE: ClassVar[str] = "progress"
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"lag_ms", "ts_ms"})
    pos: Any = None
    count: int = 0
    lag_ms: int | None = None  # shards only
    ts_ms: int | None = None  # shards only


@dataclass(frozen=True, kw_only=True)
class CaughtUp(_UnitMessage):
    """An open shard's read came back empty: nothing waits."""

    TYPE: ClassVar[str] = "caught_up"


@dataclass(frozen=True, kw_only=True)
class Finish(_UnitMessage):
    """The runner completed the unit (scan segment read, shard closed and read)."""

    TYPE: ClassVar[str] = "finish"
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"pos", "count", "listing"})
    pos: Any = None
    count: int | None = None  # None: the count stored last
    listing: list[list[Any]] | None = None  # shards: the listing after the shard's end


@dataclass(frozen=True, kw_only=True)
class Failed(_UnitMessage):
    """A permanent error: the unit's table goes to ERROR."""

    TYPE: ClassVar[str] = "failed"
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class StopUnit(_UnitMessage):
    """Stop the runner, keep the position (the table stopped)."""

    TYPE: ClassVar[str] = "stop"


@dataclass(frozen=True, kw_only=True)
class Drop(_UnitMessage):
    """Forget the unit (its epoch is over)."""

    TYPE: ClassVar[str] = "drop"


@dataclass(frozen=True, kw_only=True)
class Pause(_UnitMessage):
    """Stop reading at a page boundary and say so (Paused) once the last page sent is
    acknowledged; the position is kept (the snapshot's switch to direct output)."""

    TYPE: ClassVar[str] = "pause"


@dataclass(frozen=True, kw_only=True)
class Paused(_UnitMessage):
    """The unit's runner ended for a Pause, nothing of it in flight any more."""

    TYPE: ClassVar[str] = "paused"


@dataclass(frozen=True, kw_only=True)
class Drain(_UnitMessage):
    """A replay unit: nothing more is buffered; copy to the buffer's end, then finish."""

    TYPE: ClassVar[str] = "drain"


# the broadcast (key sweep) ----------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Sweep(_Message):
    """After a complete discovery, to every partition: tables not ``present`` stop."""

    TYPE: ClassVar[str] = ""  # no "type" on the wire: the key says it
    ADDRESS: ClassVar[str] = ""
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"now"})
    present: list[str]
    now: int | None = None


TableMessage: TypeAlias = (
    Discovered
    | Refused
    | UnitDone
    | Shards
    | UnitFailed
    | Resnapshot
    | StopTable
    | BufferCaughtUp
    | ShardPaused
)
UnitMessage: TypeAlias = (
    Create | Progress | CaughtUp | Finish | Failed | StopUnit | Drop | Pause | Paused | Drain
)
Message: TypeAlias = TableMessage | UnitMessage | Sweep

TABLE_TYPES: dict[str, type[_TableMessage]] = {
    c.TYPE: c
    for c in (
        Discovered,
        Refused,
        UnitDone,
        Shards,
        UnitFailed,
        Resnapshot,
        StopTable,
        BufferCaughtUp,
        ShardPaused,
    )
}
UNIT_TYPES: dict[str, type[_UnitMessage]] = {
    c.TYPE: c
    for c in (Create, Progress, CaughtUp, Finish, Failed, StopUnit, Drop, Pause, Paused, Drain)
}


def _wire_fields(cls: type[_Message]) -> list[tuple[str, str, bool]]:
    """(attribute, wire name, required) of the fields carried in the value, in wire order
    (the fingerprint last)."""
    out = []
    for f in dataclasses.fields(cls):
        if f.name in (cls.ADDRESS, "fp"):
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append((f.name, f.metadata.get("wire", f.name), required))
    return out


def key_of(msg: Message) -> str:
    if isinstance(msg, Sweep):
        return SWEEP_KEY
    if isinstance(msg, _TableMessage):
        return table_key(msg.table)
    return unit_key(msg.uid)


def encode(msg: Message) -> tuple[str, dict[str, Any]]:
    """(control-topic key, JSON-able value) of a message."""
    value: dict[str, Any] = {"type": msg.TYPE} if msg.TYPE else {}
    for attr, wire, _ in _wire_fields(type(msg)):
        v = getattr(msg, attr)
        if v is None and attr in msg.OMIT_NONE:
            continue
        value[wire] = v
    if msg.fp is not None:
        value["fp"] = msg.fp
    return key_of(msg), value


def decode(key: str, value: Any) -> Message:
    """The message a control-topic record carries; ProtocolError if this version cannot
    read it (unknown key or type, a required field missing, not a JSON object)."""
    if not isinstance(value, Mapping):
        raise ProtocolError(f"control message for {key!r} is not an object: {value!r:.80}")
    cls: type[_Message]
    address: dict[str, str]
    if key == SWEEP_KEY:
        cls, address = Sweep, {}
    elif isinstance(key, str) and key.startswith(("t:", "u:")):
        types: Mapping[str, type[_Message]] = TABLE_TYPES if key[0] == "t" else UNIT_TYPES
        kind = value.get("type")
        if not isinstance(kind, str) or kind not in types:
            what = "table" if key[0] == "t" else "unit"
            raise ProtocolError(
                f"unknown {what} message type {kind!r} for {key!r} "
                f"(known: {', '.join(sorted(types))})"
            )
        cls = types[kind]
        address = {"table" if key[0] == "t" else "uid": key[2:]}
    else:
        raise ProtocolError(f"control message with unknown key {key!r}")
    kwargs: dict[str, Any] = dict(address)
    for attr, wire, required in _wire_fields(cls):
        if wire in value:
            kwargs[attr] = value[wire]
        elif required:
            raise ProtocolError(f"{cls.TYPE or 'sweep'} message for {key!r} without {wire!r}")
    if value.get("fp") is not None:
        kwargs["fp"] = value["fp"]
    return cls(**kwargs)  # type: ignore[return-value]
