"""Leader-only discovery timer: which tables to replicate.  It only emits messages
(idempotent: a worker may briefly believe it is leader after losing it)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from agents.worker import runtime
from app.domain import protocol as pr
from app.domain.discovery import matches, refusal, select, table_name_from_arn, topic_refusals
from app.domain.errors import AwsError
from app.domain.model import TableInfo
from app.main import app, settings
from app.state import send_control

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
    """False for a table in a passing state (being created, deleted, …): skipped, not
    refused (see :func:`app.domain.discovery.refusal` for what is refused)."""
    if info.status in ("CREATING", "DELETING", "ARCHIVED", "INACCESSIBLE_ENCRYPTION_CREDENTIALS"):
        _warn_once(info.name, f"status {info.status}")
        return False
    return True


def info_message(info: TableInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "table_arn": info.arn,
        "stream_arn": info.stream_arn,
        "key_names": list(info.key_names),
        "item_count": info.item_count,
        "size_bytes": info.size_bytes,
        "read_capacity": info.read_capacity,
        "view_type": info.stream_view_type,
    }


async def discover_once() -> list[str]:
    """One discovery round; returns the tables it asked to replicate."""
    # in a thread: the exclude pattern's searches release the GIL, so even a pattern that
    # times out on many names never holds the event loop (each search is bounded too)
    selection = await asyncio.to_thread(
        select, await candidates(), (), settings.dynamodb_tables_exclude
    )
    names = selection.names
    bad_topics = {
        **topic_refusals(names, settings.kafka_topic_prefix, settings.app_id),
        **selection.refused,
    }
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
        # a refused table is present too: its state says why (status page, CLI, metric);
        # the control agent logs the reason once per change
        present.append(name)
        reason = bad_topics.get(name) or refusal(info, needs_stream())
        message: pr.Message = (
            pr.Discovered(table=name, info=info_message(info), now=now)
            if reason is None
            else pr.Refused(table=name, reason=reason, info=info_message(info), now=now)
        )
        await send_control(*pr.encode(message))
    # the discovery was complete: tables not seen any more stop (on every partition)
    sweep = pr.encode(pr.Sweep(present=present, now=now))
    for partition in range(settings.state_partitions):
        await send_control(*sweep, partition)
    return present


@app.timer(settings.dynamodb_discovery_interval, on_leader=True)
async def discovery() -> None:
    try:
        present = await discover_once()
        log.info("discovery: %d table(s) found: %s", len(present), ", ".join(present))
    except AwsError as exc:
        log.warning("discovery round failed, nothing stopped: %s", exc)
