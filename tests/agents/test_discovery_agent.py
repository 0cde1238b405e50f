"""One discovery round (agents.discovery.discover_once) with fake AWS and a recording
control topic: what it asks the control agent, for usable and for refused tables."""

from __future__ import annotations

from typing import Any

import pytest

import agents.discovery as disc
from app import state
from app.domain import protocol as pr
from app.domain.model import TableInfo
from app.main import settings
from app.state import DEPLOYMENT

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/"


def _info(name: str, view: str | None, status: str = "ACTIVE") -> TableInfo:
    return TableInfo(
        name, ARN + name, ("pk",), f"{ARN}{name}/stream/1" if view else None, view, status=status
    )


TABLES = {
    "good": _info("good", "NEW_AND_OLD_IMAGES"),
    "new": _info("new", "NEW_IMAGE"),
    "old": _info("old", "OLD_IMAGE"),
    "keys": _info("keys", "KEYS_ONLY"),
    "none": _info("none", None),
    "creating": _info("creating", "NEW_IMAGE", "CREATING"),
}


class FakeTables:
    async def describe(self, name: str) -> TableInfo:
        return TABLES[name]


class Topic:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send(self, key: str, value: dict[str, Any], partition: int | None = None) -> None:
        assert value.get("fp") == DEPLOYMENT  # every control message names its deployment
        self.sent.append((key, value))


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> Topic:
    t = Topic()

    async def candidates() -> list[str]:
        return list(TABLES)

    async def tables() -> FakeTables:
        return FakeTables()

    monkeypatch.setattr(state, "control_topic", t)  # what app.state.send_control sends to
    monkeypatch.setattr(disc, "candidates", candidates)
    monkeypatch.setattr(disc.runtime, "tables", tables)
    return t


def _by_table(topic: Topic) -> dict[str, dict[str, Any]]:
    return {k[2:]: v for k, v in topic.sent if k.startswith("t:")}


async def test_tables_without_the_new_image_are_refused_unless_snapshot_only(
    topic: Topic, monkeypatch: pytest.MonkeyPatch
):
    present = await disc.discover_once()
    sent = _by_table(topic)
    assert {t: m["type"] for t, m in sent.items()} == {
        "good": "discovered",
        "new": "discovered",
        "old": "refused",
        "keys": "refused",
        "none": "refused",
    }  # "creating": skipped
    assert "OLD_IMAGE" in sent["old"]["reason"] and "KEYS_ONLY" in sent["keys"]["reason"]
    assert sent["none"]["reason"].startswith("no DynamoDB stream enabled")
    assert sent["old"]["info"]["view_type"] == "OLD_IMAGE"
    # refused tables are present: the sweep must not stop them as if they were gone
    assert present == ["good", "keys", "new", "none", "old"]
    sweeps = [v for k, v in topic.sent if k == "sweep"]
    assert len(sweeps) == settings.state_partitions and sweeps[0]["present"] == present
    # the wire form is the one workers always wrote (fields in this order), and decodes
    assert list(sent["good"]) == ["type", "info", "now", "fp"]
    assert list(sent["old"]) == ["type", "reason", "info", "now", "fp"]
    assert list(sweeps[0]) == ["present", "now", "fp"]
    decoded = [pr.decode(k, v) for k, v in topic.sent]
    assert isinstance(decoded[0], pr.Discovered | pr.Refused)
    assert all(pr.encode(m) == (k, v) for m, (k, v) in zip(decoded, topic.sent, strict=True))

    topic.sent.clear()  # DYNAMODB_SYNC_MODE=snapshot_only reads no stream: all accepted
    monkeypatch.setattr(disc, "needs_stream", lambda: False)
    await disc.discover_once()
    assert {m["type"] for m in _by_table(topic).values()} == {"discovered"}


async def test_a_table_whose_topic_would_be_the_apps_own_is_refused_with_its_reason(
    topic: Topic, monkeypatch: pytest.MonkeyPatch
):
    """Issue 11 item 2: with the defaults a table named replicator-tables-changelog wrote
    its items into the state changelog (dynamodb- + replicator-tables-changelog)."""
    import dataclasses

    defaults = dataclasses.replace(
        settings, app_id="dynamodb-replicator", kafka_topic_prefix="dynamodb-"
    )
    monkeypatch.setattr(disc, "settings", defaults)
    evil = "replicator-tables-changelog"
    monkeypatch.setitem(TABLES, evil, _info(evil, "NEW_AND_OLD_IMAGES"))
    await disc.discover_once()
    sent = _by_table(topic)
    assert sent[evil]["type"] == "refused" and "own topics" in sent[evil]["reason"]
    assert sent["good"]["type"] == "discovered"


async def test_a_name_the_exclude_pattern_cannot_decide_on_is_refused_without_holding_the_loop(
    topic: Topic, monkeypatch: pytest.MonkeyPatch
):
    """Security item 5: DYNAMODB_TABLES_EXCLUDE ran on the event loop with Python's re:
    (a+)+$ held it for seconds per name, exponentially more per character.  Now each search
    is bounded, runs off the loop, and a table it cannot decide on is refused, with why."""
    import asyncio
    import dataclasses
    import time

    from app.domain.discovery import ExcludePattern

    slow = [("a" * (250 - i)) + "-" for i in range(4)]  # 4 names of ~250 characters
    for name in slow:
        monkeypatch.setitem(TABLES, name, _info(name, "NEW_AND_OLD_IMAGES"))
    monkeypatch.setitem(TABLES, "aaa", _info("aaa", "NEW_AND_OLD_IMAGES"))
    monkeypatch.setattr(
        disc,
        "settings",
        dataclasses.replace(settings, dynamodb_tables_exclude=ExcludePattern("(a+)+$")),
    )
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    beat = asyncio.create_task(ticker())
    started = time.monotonic()
    try:
        present = await disc.discover_once()
    finally:
        beat.cancel()
    elapsed = time.monotonic() - started
    sent = _by_table(topic)
    assert elapsed < 2.0, elapsed  # 4 names x 2 searches x 50 ms, and the rest
    assert "aaa" not in sent and "aaa" not in present  # excluded: (a+)+$ matches it
    for name in slow:
        assert sent[name]["type"] == "refused", name
        assert "DYNAMODB_TABLES_EXCLUDE" in sent[name]["reason"]
        assert "did not decide within 50 ms" in sent[name]["reason"]
    assert sent["good"]["type"] == "discovered"
    # the loop kept running meanwhile (it would have stood still for the whole search)
    assert ticks >= elapsed / 0.005 / 4, (ticks, elapsed)
