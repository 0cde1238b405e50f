"""The control agent in Faust's ``test_context()``: real agent, real tables, no broker.

What leaves the agent is recorded instead of produced: follow-up control messages
(``agents.control._send``) and the supervisor's ensure/stop/stop_soon (no runner starts).  The
tests feed recorded commands back to the agent, as the control topic would.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from faust.stores.rocksdb import Store as RocksStore
from faust.types import TP

import agents.control as ctl
from app.domain import coordinator as co
from app.domain import protocol as pr
from app.main import app, settings
from app.state import tables, units

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
STREAM = f"{ARN}/stream/2024-01-01T00:00:00.000"
INFO = {
    "name": "orders",
    "table_arn": ARN,
    "stream_arn": STREAM,
    "key_names": ["pk"],
    "item_count": 100,
    "size_bytes": 150 * 2**20,
    "read_capacity": 0,
    "view_type": "NEW_AND_OLD_IMAGES",
}  # 150 MiB: 3 auto segments
SCANS = [f"scan|orders|1|{i}|3" for i in range(3)]
WATCH = "watch|orders|1"
IDLE_PARTITION = settings.state_partitions - 1  # no table lives there


class Recorder:
    def __init__(self) -> None:
        self.sent: list[co.Command] = []
        self.ensured: list[dict[str, Any]] = []
        self.stopped: list[str] = []

    async def send(self, commands: list[co.Command]) -> None:
        self.sent.extend(commands)

    def ensure(self, unit: dict[str, Any]) -> None:
        self.ensured.append(unit)

    async def stop(self, uids: list[str], grace: float = 5.0) -> None:
        self.stopped.extend(uids)

    def stop_soon(self, uids: list[str], grace: float = 5.0, forget: bool = False) -> None:
        self.stopped.extend(uids)

    def take(self) -> list[co.Command]:
        sent, self.sent = self.sent, []
        return sent


class Control:
    """The agent under test plus what it emitted."""

    def __init__(self, agent: Any, rec: Recorder) -> None:
        self.agent, self.rec = agent, rec

    async def put(self, key: str, value: dict[str, Any], partition: int = 0) -> None:
        await self.agent.put(key=key, value=value, partition=partition)
        # put() returns once the value entered the agent's stream; the agent (concurrency
        # 1) takes the next value only after handling this one: a no-op sweep is a barrier.
        await self.agent.put(key="sweep", value={"present": []}, partition=IDLE_PARTITION)

    async def deliver(self, *, unless: tuple[str, ...] = ()) -> list[co.Command]:
        """Feed every recorded command back, and what that produces, until quiet."""
        delivered: list[co.Command] = []
        for _ in range(20):
            batch = self.rec.take()
            if not batch:
                return delivered
            for key, msg in batch:
                if msg["type"] not in unless:  # where app.state.send_control sends it
                    await self.put(key, msg, pr.control_partition(key) or 0)
                    delivered.append((key, msg))
        raise AssertionError("the control loop did not settle")


def clear_tables() -> None:
    for t in (tables, units):
        t.data.data.clear()  # the memory store's dict (Table.clear would need an event)


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    r = Recorder()
    monkeypatch.setattr(ctl, "_send", r.send)
    monkeypatch.setattr(ctl.runtime.supervisor, "ensure", r.ensure)
    monkeypatch.setattr(ctl.runtime.supervisor, "stop", r.stop)
    monkeypatch.setattr(ctl.runtime.supervisor, "stop_soon", r.stop_soon)
    return r


@pytest.fixture(autouse=True)
def unbuffered(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests walk the flow without the snapshot's buffer (the stream read after the
    scan); test_the_snapshots_buffer_flow_through_the_agent walks the buffered one."""
    monkeypatch.setattr(ctl, "policy", dataclasses.replace(ctl.policy, buffer_partitions=0))
    # and unplaced units, as a table created before placement has (ids without "@p"):
    # test_units_are_placed_over_the_workers_and_their_messages_follow walks placement
    monkeypatch.setattr(ctl, "_policy", lambda: ctl.policy)


@pytest.fixture
async def control(rec: Recorder) -> AsyncIterator[Control]:
    clear_tables()
    async with ctl.control.test_context() as agent:
        yield Control(agent, rec)
    clear_tables()


def row(name: str) -> dict[str, Any]:
    return tables[name]


# ---------------------------------------------------------------- the flow, step by step
async def test_message_partition_in_test_context(control: Control):
    event = await control.agent.put(key="t:nobody", value={"type": "stop"})
    assert event.message.partition == 0 and event.message.topic == "test-agents-control"


async def test_discovered_writes_init_sync_and_sends_creates(control: Control):
    await control.put("t:orders", {"type": "discovered", "info": INFO})
    s = row("orders")
    assert (s["phase"], s["epoch"], s["partition"]) == ("INIT_SYNC", 1, 0)
    assert s["snapshot"]["total"] == 3 and s["stream_arn"] == STREAM
    assert [k for k, _ in control.rec.sent] == [f"u:{u}" for u in SCANS]
    assert [m["type"] for _, m in control.rec.sent] == ["create"] * 3
    assert [m["unit"]["segment"] for _, m in control.rec.sent] == [0, 1, 2]
    assert control.rec.ensured == [] and list(units.keys()) == []
    # discovery repeats every interval: same state, the same creates repeated (a heal for
    # lost control messages; idempotent at the unit)
    first = control.rec.take()
    await control.put("t:orders", {"type": "discovered", "info": INFO})
    assert control.rec.sent == first and row("orders")["epoch"] == 1


async def test_creates_make_active_units_and_ensure_runners(control: Control):
    await control.put("t:orders", {"type": "discovered", "info": INFO})
    await control.deliver()
    assert sorted(units.keys()) == SCANS
    for uid in SCANS:
        u = units[uid]
        assert (u["status"], u["partition"], u["pos"], u["count"]) == ("active", 0, None, 0)
        assert u["spec"]["table"] == "orders" and u["spec"]["epoch"] == 1
    assert [u["id"] for u in control.rec.ensured] == SCANS
    assert control.rec.stopped == []


async def test_progress_then_finish(control: Control):
    await control.put("t:orders", {"type": "discovered", "info": INFO})
    await control.deliver()
    uid = SCANS[1]
    await control.put(f"u:{uid}", {"type": "progress", "pos": {"pk": {"S": "k9"}}, "count": 40})
    assert (units[uid]["pos"], units[uid]["count"]) == ({"pk": {"S": "k9"}}, 40)
    await control.put(f"u:{uid}", {"type": "progress", "pos": {"pk": {"S": "k1"}}, "count": 10})
    assert units[uid]["count"] == 40  # an older report does not move it back
    assert control.rec.sent == []

    await control.put(f"u:{uid}", {"type": "finish", "count": 55})
    assert units[uid]["status"] == "finished" and units[uid]["count"] == 55
    assert control.rec.stopped == [uid]
    assert control.rec.sent == [
        (
            "t:orders",
            {
                "type": "unit_done",
                "unit": uid,
                "kind": "scan",
                "epoch": 1,
                "segment": 1,
                "shard_id": None,
                "count": 55,
                "listing": None,
            },
        )
    ]
    await control.put(f"u:{uid}", {"type": "finish", "count": 55})  # redelivered
    assert len(control.rec.sent) == 1

    await control.deliver()
    snap = row("orders")["snapshot"]
    assert snap["done"] == [1] and snap["items"] == 55
    assert row("orders")["phase"] == "INIT_SYNC"


async def test_all_segments_done_switches_to_streaming(control: Control):
    await control.put("t:orders", {"type": "discovered", "info": INFO})
    await control.deliver()
    for i, uid in enumerate(SCANS):
        await control.put(f"u:{uid}", {"type": "finish", "count": 10 + i})
    delivered = await control.deliver()
    s = row("orders")
    assert s["phase"] == "STREAMING" and s["snapshot"]["items"] == 33
    assert s["snapshot"]["end_ms"] is not None
    assert [k for k, m in delivered if m["type"] == "drop"] == [f"u:{u}" for u in SCANS]
    assert [k for k, m in delivered if m["type"] == "create"] == [f"u:{WATCH}"]
    # the scan rows are gone, the watcher runs
    assert sorted(units.keys()) == [WATCH]
    assert units[WATCH]["status"] == "active" and units[WATCH]["spec"]["kind"] == "watch"
    assert control.rec.ensured[-1]["id"] == WATCH


async def test_sweep_without_the_table_stops_it(control: Control):
    await control.put("t:orders", {"type": "discovered", "info": INFO})
    await control.deliver()
    control.rec.stopped.clear()

    # a sweep of another partition does not touch this table
    await control.put("sweep", {"present": []}, partition=1)
    assert row("orders")["phase"] == "INIT_SYNC" and control.rec.sent == []

    await control.put("sweep", {"present": ["other"]}, partition=0)
    s = row("orders")
    assert s["phase"] == "STOPPED" and s["resume_phase"] == "INIT_SYNC"
    stops = [k for k, m in control.rec.sent if m["type"] == "stop"]
    assert set(stops) >= {f"u:{u}" for u in SCANS}
    await control.deliver()
    assert control.rec.stopped[:3] == SCANS
    assert all(units[u]["status"] == "stopped" for u in SCANS)

    # rediscovered: the same units resume where they were
    control.rec.ensured.clear()
    await control.put("t:orders", {"type": "discovered", "info": INFO})
    await control.deliver()
    assert row("orders")["phase"] == "INIT_SYNC" and row("orders")["epoch"] == 1
    assert sorted(u["id"] for u in control.rec.ensured) == SCANS
    assert all(units[u]["status"] == "active" for u in SCANS)


async def test_refused_table_is_stored_with_its_reason_and_warned_once(
    control: Control, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="agents.control")
    reason = "stream view type OLD_IMAGE carries no new item image"
    old = {**INFO, "name": "old", "view_type": "OLD_IMAGE"}
    for _ in range(3):  # discovery says it every round
        await control.put("t:old", {"type": "refused", "info": old, "reason": reason})
    s = row("old")
    assert (s["phase"], s["error"], s["epoch"], s["partition"]) == ("REFUSED", reason, 0, 0)
    assert control.rec.sent == [] and control.rec.ensured == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"old: REFUSED: {reason}"]

    # a replicating table whose stream turned KEYS_ONLY: its runners stop
    await control.put("t:orders", {"type": "discovered", "info": INFO})
    await control.deliver()
    await control.put(
        "t:orders",
        {"type": "refused", "info": {**INFO, "view_type": "KEYS_ONLY"}, "reason": "KEYS_ONLY"},
    )
    await control.deliver()
    assert row("orders")["phase"] == "REFUSED"
    assert all(units[u]["status"] == "stopped" for u in SCANS)
    assert control.rec.stopped[-3:] == SCANS
    # usable again: the same units resume
    control.rec.ensured.clear()
    await control.put("t:orders", {"type": "discovered", "info": INFO})
    await control.deliver()
    assert row("orders")["phase"] == "INIT_SYNC" and row("orders")["epoch"] == 1
    assert sorted(u["id"] for u in control.rec.ensured) == SCANS


async def test_bad_messages_do_not_stop_the_agent(
    control: Control, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.ERROR, logger="agents.control")
    await control.put("t:orders", {"type": "discovered", "info": INFO})
    await control.deliver()
    # what the codec (app.domain.protocol) cannot read is logged and skipped
    await control.put("t:orders", {"type": "bogus"})  # unknown table message type
    await control.put(f"u:{SCANS[0]}", {"type": "bogus"})  # unknown unit message type
    await control.put("x:what", {"type": "progress"})  # unknown key
    await control.put("t:orders", {"no": "type"})  # no type
    await control.put("t:orders", {"type": "shards", "epoch": 1})  # a required field missing
    await control.put("t:orders", ["not", "an", "object"])
    # decoded, but the transition raises (a scan's unit_done without its segment): caught
    await control.put("t:orders", {"type": "unit_done", "kind": "scan", "epoch": 1})
    # the agent is still alive and applies the next message
    await control.put(f"u:{SCANS[0]}", {"type": "progress", "pos": {"k": 1}, "count": 7})
    assert units[SCANS[0]]["count"] == 7 and row("orders")["phase"] == "INIT_SYNC"
    messages = [r.getMessage() for r in caplog.records]
    assert any("unknown table message type 'bogus' for 't:orders'" in m for m in messages)
    assert any(f"unknown unit message type 'bogus' for 'u:{SCANS[0]}'" in m for m in messages)
    assert any("unknown key 'x:what'" in m for m in messages)
    assert any("unknown table message type None" in m for m in messages)
    assert any("shards message for 't:orders' without 'listing'" in m for m in messages)
    assert any("is not an object" in m for m in messages)
    assert any("failed to apply UnitDone for t:orders" in m for m in messages)


async def test_late_reports_for_unknown_tables_and_units_are_ignored(control: Control):
    await control.put("t:ghost", {"type": "unit_done", "kind": "scan", "epoch": 1, "segment": 0})
    await control.put("u:scan|ghost|1|0|1", {"type": "progress", "pos": None, "count": 3})
    assert "ghost" not in tables and "scan|ghost|1|0|1" not in units
    assert control.rec.sent == [] and control.rec.ensured == []


# ---------------------------------------------------------------- the same on rocksdb://
@pytest.fixture
def rocksdb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Both tables on fresh RocksDB stores (test_context never starts the app, so the
    stores are swapped in directly).  RocksDB iterates only over actively assigned
    partitions: we own partition 0 of both changelogs, as after a rebalance."""
    monkeypatch.setattr(RocksStore, "path", property(lambda self: tmp_path))
    stores = []
    for t in (tables, units):
        store = t._new_store_by_url("rocksdb://")
        monkeypatch.setattr(t, "_data", store)
        stores.append(store)
    actives = {TP(tables.changelog_topic_name, 0), TP(units.changelog_topic_name, 0)}
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: actives)
    yield stores
    for store in stores:
        store._dbs.clear()


async def test_flow_on_rocksdb(rocksdb: Any, rec: Recorder, tmp_path: Path):
    async with ctl.control.test_context() as agent:
        c = Control(agent, rec)
        await c.put("t:orders", {"type": "discovered", "info": INFO})
        await c.deliver()
        assert isinstance(tables.data, RocksStore) and isinstance(units.data, RocksStore)
        assert sorted(units.keys()) == SCANS and row("orders")["phase"] == "INIT_SYNC"
        await c.put(f"u:{SCANS[0]}", {"type": "progress", "pos": {"pk": {"S": "a"}}, "count": 5})
        assert units[SCANS[0]]["pos"] == {"pk": {"S": "a"}}
        for uid in SCANS:
            await c.put(f"u:{uid}", {"type": "finish", "count": 5})
        await c.deliver()
        s = row("orders")
        assert s["phase"] == "STREAMING" and s["snapshot"]["items"] == 15
        assert sorted(units.keys()) == [WATCH]
        await c.put("sweep", {"present": []}, partition=0)
        assert row("orders")["phase"] == "STOPPED"
        assert [k for k, m in rec.sent if m["type"] == "stop"][-1] == f"u:{WATCH}"
        await c.deliver()
        assert units[WATCH]["status"] == "stopped"
    assert any(p.name.startswith("tables-0") for p in tmp_path.rglob("*"))


# ---------------------------------------------------------------- the fence (issue 10 item 6)
async def test_a_unit_is_current_only_while_active_in_its_epoch_on_an_owned_partition(
    control: Control, monkeypatch: pytest.MonkeyPatch
):
    owned = {TP(ctl.control_topic.get_topic_name(), 0)}
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: owned)
    await control.put("t:orders", {"type": "discovered", "info": INFO})
    await control.deliver()
    unit = units[SCANS[0]]
    assert ctl.is_current(unit)
    owned.clear()  # the partition went to another worker
    assert not ctl.is_current(unit)
    owned.add(TP(ctl.control_topic.get_topic_name(), 0))
    # a resync: epoch 2; the epoch-1 unit is superseded even before its drop arrives
    await control.put("t:orders", {"type": "resnapshot", "reason": "requested"})
    assert row("orders")["epoch"] == 2 and SCANS[0] in units
    assert not ctl.is_current(unit)
    await control.deliver()
    assert SCANS[0] not in units and not ctl.is_current(unit)
    assert ctl.is_current(units["scan|orders|2|0|3"])


async def test_a_table_row_of_a_partition_not_owned_here_never_fences(
    control: Control, monkeypatch: pytest.MonkeyPatch
):
    """RocksDB keeps the rows of partitions that moved to another worker, frozen: such a
    row's old epoch fenced every unit of the new epoch (test_operations, after a resync:
    the new scans were refused at every page, the second snapshot never came)."""
    owned = {TP(ctl.control_topic.get_topic_name(), 0)}
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: owned)
    await control.put("t:orders", {"type": "discovered", "info": INFO}, partition=1)
    await control.deliver()
    assert row("orders")["epoch"] == 1 and row("orders")["partition"] == 1  # not owned
    spec = {**units[SCANS[0]]["spec"], "epoch": 2}
    await control.put("u:scan|orders|2|0|3", {"type": "create", "unit": spec})
    assert ctl.is_current(units["scan|orders|2|0|3"])
    owned.add(TP(ctl.control_topic.get_topic_name(), 1))  # now the row is current: epoch 1
    assert not ctl.is_current(units["scan|orders|2|0|3"])


async def test_messages_from_another_deployment_are_counted_and_logged_once(
    control: Control, caplog: pytest.LogCaptureFixture
):
    """Issue 11 item 3: a sender with other deployment settings (two deployments on one
    APP_ID, or an adopted change rolling out) is seen; its message is still applied."""
    from agents.worker import runtime
    from app.state import DEPLOYMENT

    caplog.set_level(logging.ERROR, logger="agents.control")
    counter = runtime.metrics.foreign_control_messages
    ctl._foreign_seen.clear()
    before = counter.labels("f0reign")._value.get()
    await control.put("t:orders", {"type": "discovered", "info": INFO, "fp": DEPLOYMENT})
    await control.put("t:orders", {"type": "discovered", "info": INFO})  # an older version
    assert counter.labels("f0reign")._value.get() == before
    for _ in range(3):
        await control.put("t:orders", {"type": "discovered", "info": INFO, "fp": "f0reign"})
    assert counter.labels("f0reign")._value.get() == before + 3
    errors = [r.getMessage() for r in caplog.records if "other deployment" in r.getMessage()]
    assert len(errors) == 1 and "f0reign" in errors[0] and DEPLOYMENT in errors[0]
    assert row("orders")["phase"] == "INIT_SYNC"  # applied all the same


# ---------------------------------------------------------------- stops run beside the agent
async def test_a_stop_does_not_hold_the_control_agent(
    control: Control, monkeypatch: pytest.MonkeyPatch
):
    """The agent awaited the runner's stop inside the event (up to the 5 s grace and the
    cancel after it): every message of its partitions waited, and rebalances with them.
    Now the stop runs beside it; the fence refuses the stopped runner's sends meanwhile."""
    import asyncio
    import time

    owned = {TP(ctl.control_topic.get_topic_name(), 0)}
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: owned)
    sup = ctl.runtime.supervisor
    for name in ("stop", "stop_soon"):  # the real ones (the Recorder's are the instance's)
        monkeypatch.delattr(sup, name)
    await control.put("t:orders", {"type": "discovered", "info": INFO})
    await control.deliver()
    uid = SCANS[0]
    last_batch = asyncio.Event()  # a runner whose last batch waits for Kafka
    runner, stopping = asyncio.ensure_future(last_batch.wait()), asyncio.Event()
    monkeypatch.setitem(sup.tasks, uid, (runner, stopping, 0))

    started = time.monotonic()
    await control.put(f"u:{uid}", {"type": "stop"})
    await control.put(f"u:{SCANS[1]}", {"type": "progress", "pos": {"k": 1}, "count": 4})
    assert time.monotonic() - started < 1.0  # not the grace period
    assert units[uid]["status"] == "stopped" and units[SCANS[1]]["count"] == 4
    assert stopping.is_set() and not runner.done()  # told at once, still finishing
    assert not ctl.is_current(units[uid])  # its next commit is refused
    last_batch.set()
    for _ in range(200):
        if uid not in sup.tasks:
            break
        await asyncio.sleep(0.005)
    assert runner.done() and uid not in sup.tasks and not sup._stops


# ---------------------------------------------------------------- placement
async def test_units_are_placed_over_the_workers_and_their_messages_follow(
    control: Control, monkeypatch: pytest.MonkeyPatch
):
    """The agent reads the workers' partitions from Faust's assignment: the 3 segments
    and the watcher land on both workers' partitions, each unit's messages reach its
    partition, its row lives there, and after a rebalance a worker runs exactly the
    units of the partitions it owns."""
    monkeypatch.undo()  # the placed path, as for every table created from now on
    rec = Recorder()
    monkeypatch.setattr(ctl, "_send", rec.send)
    monkeypatch.setattr(ctl.runtime.supervisor, "ensure", rec.ensure)
    monkeypatch.setattr(ctl, "policy", dataclasses.replace(ctl.policy, buffer_partitions=0))
    changelog = units.changelog_topic.get_topic_name()
    worker_a, worker_b = (0, 2, 4, 6), (1, 3, 5, 7)
    distribution = {
        "http://a:6066": {changelog: list(worker_a)},
        "http://b:6066": {changelog: list(worker_b)},
    }
    monkeypatch.setattr(app.assignor, "changelog_distribution", distribution, raising=False)
    control.rec = rec
    await control.put("t:orders", {"type": "discovered", "info": INFO})
    creates = list(rec.sent)
    placed = {key[2:]: pr.control_partition(key) for key, _ in creates}
    assert len(placed) == 3 and None not in placed.values()
    on_a = [uid for uid, at in placed.items() if at in worker_a]
    assert sorted([len(on_a), 3 - len(on_a)]) == [1, 2]  # 3 segments: 2 + 1
    await control.deliver()
    for uid, at in placed.items():  # the row says where it lives: its fence checks that
        assert units[uid]["partition"] == at and units[uid]["status"] == "active"
    for uid, at in placed.items():
        await control.put(f"u:{uid}", {"type": "finish", "count": 5}, at or 0)
    await control.deliver()
    s = row("orders")
    assert s["phase"] == "STREAMING"
    watch = co.watch_unit_id("orders", 1, s["watch_at"])
    assert units[watch]["partition"] == s["watch_at"] is not None
    # a rebalance: worker A runs the active units on its partitions, and only those
    owned = {TP(ctl.control_topic.get_topic_name(), p) for p in worker_a}
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: owned)
    rec.ensured.clear()
    await ctl._rebalanced(app)
    expected = [watch] if s["watch_at"] in worker_a else []
    assert [u["id"] for u in rec.ensured] == expected


# ---------------------------------------------------------------- the snapshot's buffer
async def test_the_snapshots_buffer_flow_through_the_agent(
    control: Control, monkeypatch: pytest.MonkeyPatch
):
    """INIT_SYNC (shards into the buffer) -> CATCHING_UP (replays) -> SWITCHING (the shard
    paused by its supervisor, which then says Paused) -> drain -> STREAMING (the shard
    again, into the output topic; the buffer emptied in the background)."""
    monkeypatch.setattr(ctl, "policy", dataclasses.replace(ctl.policy, buffer_partitions=2))
    paused: list[str] = []
    emptied: list[str] = []
    monkeypatch.setattr(ctl.runtime.supervisor, "pause_soon", paused.append)

    class Buffers:
        def empty_soon(self, topic: str) -> None:
            emptied.append(topic)

    monkeypatch.setattr(ctl.runtime, "buffers", Buffers())
    await control.put("t:orders", {"type": "discovered", "info": INFO})
    await control.deliver()
    assert sorted(units) == [*SCANS, WATCH]
    listing = [["s1", None, "100", None]]
    await control.put("t:orders", {"type": "shards", "epoch": 1, "listing": listing})
    await control.deliver()
    shard = co.shard_unit_id("orders", 1, STREAM, "s1")
    assert units[shard]["spec"]["sink"] == "buffer"
    for uid in SCANS:
        await control.put(f"u:{uid}", {"type": "finish", "count": 5})
    await control.deliver()
    assert row("orders")["phase"] == "CATCHING_UP"
    replays = [co.replay_unit_id("orders", 1, p) for p in range(2)]
    assert all(units[r]["status"] == "active" for r in replays)
    for r in replays:
        await control.put(f"u:{r}", {"type": "caught_up"})
    await control.deliver()
    assert row("orders")["phase"] == "SWITCHING"
    assert paused == [shard] and units[shard]["status"] == "pausing"
    await control.put(f"u:{shard}", {"type": "paused"})  # what pause_soon reports
    await control.deliver()
    assert all(units[r].get("drain") for r in replays)
    for r in replays:
        await control.put(f"u:{r}", {"type": "finish", "pos": 3, "count": 3})
    await control.deliver()
    assert row("orders")["phase"] == "STREAMING"
    assert units[shard]["status"] == "active" and "sink" not in units[shard]["spec"]
    assert emptied == [settings.buffer_topic_for("orders", 1)]


async def test_send_control_sends_a_placed_units_messages_to_its_partition(
    monkeypatch: pytest.MonkeyPatch,
):
    from app import state

    sent: list[tuple[str, int | None]] = []

    async def send(key: str, value: dict[str, Any], partition: int | None) -> None:
        sent.append((key, partition))

    monkeypatch.setattr(state.control_topic, "send", send)
    await state.send_control("u:scan|orders|1|0|3|@5", {"type": "progress"})
    await state.send_control("u:scan|orders|1|0|3", {"type": "progress"})  # unplaced
    await state.send_control("t:orders", {"type": "stop"})
    await state.send_control("sweep", {"present": []}, 6)
    assert sent == [
        ("u:scan|orders|1|0|3|@5", 5),
        ("u:scan|orders|1|0|3", None),
        ("t:orders", None),
        ("sweep", 6),
    ]
