"""The control topic and the two changelog-backed tables it feeds, declared once (the
coordinator's Policy is the settings' own: Settings.policy()).

All three share STATE_PARTITIONS partitions (co-partitioned): a message keyed
``t:<table>`` or ``u:<unit>`` lands on the partition whose table rows it may write.
"""

from __future__ import annotations

from typing import Any

from app.domain.deployment import fingerprint
from app.domain.protocol import control_partition
from app.main import app, settings

control_topic = app.topic(
    f"{settings.app_id}-control",
    partitions=settings.state_partitions,
    internal=True,
    key_type=str,
    value_serializer="json",
)

# Every control message carries the sender's deployment fingerprint: a worker (or CLI)
# with other settings writing into this APP_ID's control topic is seen (agents.control).
DEPLOYMENT = fingerprint(settings.identity())


async def send_control(key: str, value: dict[str, Any], partition: int | None = None) -> Any:
    """Send a control message stamped with this deployment; returns the delivery future.
    A message for a placed unit goes to the unit's control partition (its id says which),
    any other where its key hashes to, unless ``partition`` is given."""
    if partition is None:
        partition = control_partition(key)
    return await control_topic.send(key=key, value={**value, "fp": DEPLOYMENT}, partition=partition)


# table name -> table state (app.domain.coordinator)
tables = app.Table(
    "tables",
    partitions=settings.state_partitions,
    key_type=str,
    help="Replicated DynamoDB tables: phase, epoch, lineage",
)
# work unit id -> unit state (cursor / checkpoint)
units = app.Table(
    "units",
    partitions=settings.state_partitions,
    key_type=str,
    help="Scan segments, shards and watchers: positions",
)
