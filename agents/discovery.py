"""Leader-only discovery timer: which tables to replicate.  It only emits messages
(idempotent: a worker may briefly believe it is leader after losing it)."""
from __future__ import annotations

import logging
import time
from typing import Any

from agents.runtime import runtime
from app.domain import coordinator as co
from app.domain.discovery import matches, select, table_name_from_arn
from app.domain.model import TableInfo
from app.errors import AwsError
from app.main import app, settings
from app.state import control_topic

log = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()


def _warn_once(table: str, reason: str) -> None:
    if (table, reason) not in _warned:
        _warned.add((table, reason))
        log.warning("discovery: table %s skipped: %s", table, reason)


async def candidates() -> list[str]:
    """Table names before the exclude pattern: include list, or tag match."""
    if settings.dynamodb_tables:
        return list(settings.dynamodb_tables)
    if not settings.dynamodb_tag_filters:
        return []
    try:
        arns = await (await runtime.tagging()).tables_with_tags(settings.dynamodb_tag_filters)
        return [table_name_from_arn(a) for a in arns]
    except AwsError as exc:
        log.info("discovery: tagging API unavailable (%s); using ListTables + tags", exc.code)
    tables = await runtime.tables()
    names = []
    for name in await tables.list_names():
        info = await tables.describe(name)
        if matches(await tables.tags(info.arn), settings.dynamodb_tag_filters):
            names.append(name)
    return names


def needs_stream() -> bool:
    return settings.dynamodb_sync_mode != "snapshot_only"


def usable(info: TableInfo) -> bool:
    if info.status in ("CREATING", "DELETING", "ARCHIVED", "INACCESSIBLE_ENCRYPTION_CREDENTIALS"):
        _warn_once(info.name, f"status {info.status}")
        return False
    if needs_stream() and not info.stream_arn:
        _warn_once(info.name, "no DynamoDB stream enabled (enable NEW_AND_OLD_IMAGES)")
        return False
    if needs_stream() and info.stream_view_type == "KEYS_ONLY":
        _warn_once(info.name, "stream view type KEYS_ONLY carries no item images "
                   "(use NEW_AND_OLD_IMAGES or NEW_IMAGE)")
        return False
    return True


def info_message(info: TableInfo) -> dict[str, Any]:
    return {"name": info.name, "table_arn": info.arn, "stream_arn": info.stream_arn,
            "key_names": list(info.key_names), "item_count": info.item_count,
            "size_bytes": info.size_bytes, "read_capacity": info.read_capacity,
            "view_type": info.stream_view_type}


async def discover_once() -> list[str]:
    """One discovery round; returns the tables it asked to replicate."""
    names = select(await candidates(), (), settings.dynamodb_tables_exclude)
    tables = await runtime.tables()
    present: list[str] = []
    now = int(time.time() * 1000)
    for name in names:
        try:
            info = await tables.describe(name)
        except AwsError as exc:
            if exc.retriable:
                raise
            _warn_once(name, f"{exc.code}: cannot describe")
            continue
        if not usable(info):
            continue
        present.append(name)
        await control_topic.send(key=co.table_key(name),
                                 value={"type": "discovered", "info": info_message(info),
                                        "now": now})
    # the discovery was complete: tables not seen any more stop (on every partition)
    for partition in range(settings.state_partitions):
        await control_topic.send(key="sweep", value={"present": present, "now": now},
                                 partition=partition)
    return present


@app.timer(settings.dynamodb_discovery_interval, on_leader=True)
async def discovery() -> None:
    try:
        present = await discover_once()
        log.info("discovery: %d table(s) replicated: %s", len(present), ", ".join(present))
    except AwsError as exc:
        log.warning("discovery round failed, nothing stopped: %s", exc)
