"""The control topic and the two changelog-backed tables it feeds, declared once.

All three share STATE_PARTITIONS partitions (co-partitioned): a message keyed
``t:<table>`` or ``u:<unit>`` lands on the partition whose table rows it may write.
"""
from __future__ import annotations

from app.domain.coordinator import Policy
from app.main import app, settings

control_topic = app.topic(
    f"{settings.app_id}-control",
    partitions=settings.state_partitions,
    internal=True,
    key_type=str,
    value_serializer="json",
)

# table name -> table state (app.domain.coordinator)
tables = app.Table("tables", partitions=settings.state_partitions, key_type=str,
                   help="Replicated DynamoDB tables: phase, epoch, lineage")
# work unit id -> unit state (cursor / checkpoint)
units = app.Table("units", partitions=settings.state_partitions, key_type=str,
                  help="Scan segments, shards and watchers: positions")

policy = Policy(
    mode=settings.dynamodb_sync_mode,
    stream_start=settings.dynamodb_stream_start,
    overlap_ms=int(settings.dynamodb_snapshot_overlap * 1000),
    segments=settings.dynamodb_scan_segments,
    rcu_percent=settings.dynamodb_scan_rcu_percent,
    max_rcu=settings.dynamodb_scan_max_rcu,
    retention_ms=int(settings.dynamodb_stream_retention * 1000),
)
