"""Domain objects that cross the AWS edge.  Raw AWS dicts become these in app/aws."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# A DynamoDB attribute value in the SDK's typed form, e.g. {"S": "x"}, {"N": "1.5"},
# {"B": b"..."} (bytes, as botocore decodes it), {"M": {...}}, {"L": [...]}.
AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]

EventName = Literal["INSERT", "MODIFY", "REMOVE"]


@dataclass(frozen=True, slots=True)
class Shard:
    shard_id: str
    parent_shard_id: str | None
    starting_sequence_number: str | None
    ending_sequence_number: str | None  # None = shard still open

    @property
    def closed(self) -> bool:
        return self.ending_sequence_number is not None


@dataclass(frozen=True, slots=True)
class StreamDescription:
    stream_arn: str
    status: str  # ENABLING | ENABLED | DISABLING | DISABLED
    view_type: str  # KEYS_ONLY | NEW_IMAGE | OLD_IMAGE | NEW_AND_OLD_IMAGES
    shards: tuple[Shard, ...]


@dataclass(frozen=True, slots=True)
class StreamRecord:
    event_name: EventName
    sequence_number: str
    approx_ts_ms: int  # ApproximateCreationDateTime, ms (AWS rounds down to the second)
    keys: Item
    new_image: Item | None
    old_image: Item | None
    ttl_delete: bool = False
    size_bytes: int = 0


@dataclass(frozen=True, slots=True)
class RecordsPage:
    records: list[StreamRecord]
    next_iterator: str | None  # None = the shard is closed and fully read


@dataclass(frozen=True, slots=True)
class TableInfo:
    name: str
    arn: str
    key_names: tuple[str, ...]  # (hash,) or (hash, range)
    stream_arn: str | None
    stream_view_type: str | None  # None = no stream enabled
    item_count: int = 0
    size_bytes: int = 0
    read_capacity: int = 0  # provisioned RCU; 0 = on-demand
    status: str = "ACTIVE"
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScanPage:
    items: list[Item]
    last_evaluated_key: Item | None  # None = segment finished
    consumed_capacity: float = 0.0
