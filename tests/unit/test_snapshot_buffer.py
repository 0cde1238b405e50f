"""The snapshot's buffer (issue 13) in the coordinator: while a table is scanned its shards
write into a buffer topic; after the scan the buffer is replayed, the shards are paused at
a page boundary, the buffer drained, and the shards resume writing to the output topic."""

from __future__ import annotations

from typing import Any

from app.domain import coordinator as co
from app.domain import protocol as pr
from app.domain.coordinator import Policy
from tests.unit.test_coordinator import (
    NOW,
    STREAM,
    done,
    info,
    keys,
    listing,
    on_shards,
    on_unit,
    on_unit_done,
    scan_keys,
    shard_key,
)

PB = Policy(segments=3, buffer_partitions=2)


def replay_key(p: int, epoch: int = 1) -> str:
    return f"u:replay|orders|{epoch}|{p}"


def specs(cmds: list[co.Command], kind: str = "create") -> dict[str, dict[str, Any]]:
    return {k: m["unit"] for k, m in cmds if m["type"] == kind}


def scanning() -> co.State:
    s = co.on_discovered(None, info(), NOW, PB).state
    out = on_shards(
        s, {"epoch": 1, "listing": listing(("a", None, 0, None), ("b", None, 5, None))}, NOW, PB
    )
    return out.state


def catching_up() -> co.State:
    s = scanning()
    for i in range(3):
        s = on_unit_done(s, done(i, count=10), NOW + 1000, PB).state
    assert s["phase"] == "CATCHING_UP"
    return s


def caught_up(p: int, epoch: int = 1) -> pr.BufferCaughtUp:
    return pr.BufferCaughtUp(table="orders", epoch=epoch, partition=p)


def switching() -> co.State:
    s = catching_up()
    for p in range(2):
        s = co.on_buffer_caught_up(s, caught_up(p), NOW + 2000).state
    assert s["phase"] == "SWITCHING"
    return s


def paused(sid: str) -> pr.ShardPaused:
    return pr.ShardPaused(table="orders", epoch=1, shard_id=sid)


def replay_done(p: int) -> dict[str, Any]:
    return {"kind": "replay", "epoch": 1, "segment": p, "count": 5}


def test_a_new_table_scans_and_reads_its_stream_into_the_buffer_at_once():
    out = co.on_discovered(None, info(), NOW, PB)
    s = out.state
    assert s["phase"] == "INIT_SYNC"
    assert s["buffer"] == {
        "partitions": 2,
        "caught_up": [],
        "waiting": None,
        "draining": False,
        "done": [],
    }
    assert keys(out.commands) == [*scan_keys(1, range(3)), "u:watch|orders|1"]
    out = on_shards(s, {"epoch": 1, "listing": listing(("a", None, 0, None))}, NOW, PB)
    (spec,) = specs(out.commands).values()
    assert spec["kind"] == "shard" and spec["sink"] == "buffer" and spec["partitions"] == 2
    assert spec["cutoff_ms"] == NOW - PB.overlap_ms  # what the snapshot covers is skipped


def test_without_a_stream_or_in_snapshot_only_mode_there_is_no_buffer():
    assert co.on_discovered(None, info(stream_arn=None), NOW, PB).state["buffer"] is None
    only = Policy(segments=3, buffer_partitions=2, mode="snapshot_only")
    out = co.on_discovered(None, info(), NOW, only)
    assert out.state["buffer"] is None and "u:watch|orders|1" not in keys(out.commands)
    # and with the buffer off the stream is read after the scan, as before
    assert co.on_discovered(None, info(), NOW, Policy(segments=3)).state["buffer"] is None


def test_after_the_scan_one_replay_unit_per_buffer_partition_copies_it():
    s = scanning()
    for i in range(2):
        s = on_unit_done(s, done(i, count=10), NOW + 1000, PB).state
    out = on_unit_done(s, done(2, count=10), NOW + 1000, PB)
    assert out.state["phase"] == "CATCHING_UP" and out.state["snapshot"]["end_ms"] == NOW + 1000
    assert keys(out.commands, "drop") == scan_keys(1, range(3))
    created = specs(out.commands)
    assert list(created) == [replay_key(0), replay_key(1)]
    assert [(c["kind"], c["partition"], c["partitions"]) for c in created.values()] == [
        ("replay", 0, 2),
        ("replay", 1, 2),
    ]
    # no shard is stopped or created: they keep buffering
    assert not [k for k in keys(out.commands) if "shard|" in k]


def test_a_snapshot_longer_than_the_retention_needs_no_resnapshot_with_the_buffer():
    s = scanning()
    late = NOW + 30 * 24 * 3600 * 1000  # a month-long scan
    for i in range(3):
        out = on_unit_done(s, done(i, count=10), late, PB)
        s = out.state
    assert s["phase"] == "CATCHING_UP" and "resnapshot" not in out.events
    assert s["resnapshots"] == 0


def test_new_shards_while_catching_up_still_write_to_the_buffer():
    s = catching_up()
    out = on_shards(
        s,
        {
            "epoch": 1,
            "listing": listing(("a", None, 0, None), ("b", None, 5, None), ("c", None, 9, None)),
        },
        NOW,
        PB,
    )
    assert specs(out.commands)[shard_key("c")]["sink"] == "buffer"


def test_once_every_partition_caught_up_the_running_shards_are_paused():
    s = catching_up()
    out = co.on_buffer_caught_up(s, caught_up(1), NOW)
    assert out.state["phase"] == "CATCHING_UP" and out.commands == []
    assert co.on_buffer_caught_up(out.state, caught_up(1), NOW).state["buffer"]["caught_up"] == [1]
    assert co.on_buffer_caught_up(out.state, caught_up(0, epoch=7), NOW).state == out.state
    out = co.on_buffer_caught_up(out.state, caught_up(0), NOW)
    assert out.state["phase"] == "SWITCHING"
    assert out.state["buffer"]["waiting"] == ["a", "b"]
    assert keys(out.commands, "pause") == [shard_key("a"), shard_key("b")]


def test_a_shard_listing_while_switching_starts_nothing():
    s = switching()
    out = on_shards(
        s, {"epoch": 1, "listing": listing(("a", None, 0, None), ("c", None, 9, None))}, NOW, PB
    )
    assert out.commands == [] and out.state == s


def test_a_shard_that_ends_while_switching_counts_as_paused_and_its_children_wait():
    s = switching()
    out = on_unit_done(
        s,
        {
            "kind": "shard",
            "epoch": 1,
            "shard_id": "a",
            "listing": listing(("a", None, 0, 4), ("b", None, 5, None), ("a2", "a", 5, None)),
        },
        NOW,
        PB,
    )
    assert out.state["buffer"]["waiting"] == ["b"]
    assert out.state["shards"]["a2"]["status"] == "running"  # known, started once STREAMING
    assert keys(out.commands, "create") == []


def test_when_every_shard_paused_the_replay_units_drain():
    s = switching()
    out = co.on_shard_paused(s, paused("a"), NOW)
    assert out.commands == [] and out.state["buffer"]["waiting"] == ["b"]
    out = co.on_shard_paused(out.state, paused("b"), NOW)
    assert out.state["buffer"]["draining"] is True and out.state["buffer"]["waiting"] == []
    assert keys(out.commands, "drain") == [replay_key(0), replay_key(1)]
    again = co.on_shard_paused(out.state, paused("b"), NOW)
    assert again.commands == []  # drained once


def test_a_table_without_running_shards_drains_at_once():
    s = co.on_discovered(None, info(), NOW, PB).state  # no listing yet: no shard
    for i in range(3):
        s = on_unit_done(s, done(i), NOW, PB).state
    s = co.on_buffer_caught_up(s, caught_up(0), NOW).state
    out = co.on_buffer_caught_up(s, caught_up(1), NOW)
    assert out.state["phase"] == "SWITCHING" and out.state["buffer"]["draining"]
    assert keys(out.commands, "drain") == [replay_key(0), replay_key(1)]


def test_once_every_partition_is_replayed_the_shards_resume_into_the_output_topic():
    s = switching()
    for sid in ("a", "b"):
        s = co.on_shard_paused(s, paused(sid), NOW).state
    s = on_unit_done(s, replay_done(0), NOW, PB).state
    assert s["phase"] == "SWITCHING"
    out = on_unit_done(s, replay_done(1), NOW + 5, PB)
    assert out.state["phase"] == "STREAMING"
    assert out.buffers_done == [1]
    assert keys(out.commands, "drop") == [replay_key(0), replay_key(1)]
    created = specs(out.commands)
    assert set(created) == {"u:watch|orders|1", shard_key("a"), shard_key("b")}
    assert all("sink" not in spec for spec in created.values())  # the output topic
    # the heal of STREAMING creates the same shards, still into the output topic
    healed = co.on_discovered(out.state, info(), NOW + 10, PB)
    assert all("sink" not in spec for spec in specs(healed.commands).values())


def test_a_replay_done_before_the_drain_is_not_the_end():
    s = catching_up()
    out = on_unit_done(s, replay_done(0), NOW, PB)
    assert out.state == s  # a replay unit finishes only after Drain


def test_each_phase_heals_its_own_work():
    s = scanning()
    healed = keys(co.on_discovered(s, info(), NOW, PB).commands)
    assert healed == [*scan_keys(1, range(3)), "u:watch|orders|1", shard_key("a"), shard_key("b")]
    s = catching_up()
    healed = keys(co.on_discovered(s, info(), NOW, PB).commands)
    assert healed == [
        replay_key(0),
        replay_key(1),
        "u:watch|orders|1",
        shard_key("a"),
        shard_key("b"),
    ]
    s = co.on_shard_paused(switching(), paused("a"), NOW).state
    cmds = co.on_discovered(s, info(), NOW, PB).commands
    assert keys(cmds, "create") == [replay_key(0), replay_key(1)]
    assert keys(cmds, "pause") == [shard_key("b")]  # the one still awaited
    s = co.on_shard_paused(s, paused("b"), NOW).state
    assert keys(co.on_discovered(s, info(), NOW, PB).commands, "drain") == [
        replay_key(0),
        replay_key(1),
    ]


def test_a_resnapshot_while_catching_up_retires_the_buffer_of_the_old_epoch():
    s = catching_up()
    out = co.on_resnapshot(s, "requested", None, NOW, PB)
    assert out.buffers_done == [1]
    assert {replay_key(0), replay_key(1), shard_key("a"), shard_key("b")} <= set(
        keys(out.commands, "drop")
    )
    assert out.state["epoch"] == 2 and out.state["phase"] == "INIT_SYNC"
    assert out.state["buffer"]["caught_up"] == []


def test_stopping_while_switching_stops_the_replays_and_resumes_the_pause():
    s = co.on_shard_paused(switching(), paused("a"), NOW).state
    out = co.on_stop(s, "untagged", NOW)
    assert {replay_key(0), replay_key(1), shard_key("b")} <= set(keys(out.commands, "stop"))
    resumed = co.on_discovered(out.state, info(), NOW + 1000, PB)
    assert resumed.state["phase"] == "SWITCHING"
    assert keys(resumed.commands, "pause") == [shard_key("b")]


# ---------------------------------------------------------------- the units' side
SHARD_UID = co.shard_unit_id("orders", 1, STREAM, "a")
REPLAY_UID = co.replay_unit_id("orders", 1, 0)


def created(uid: str, spec: dict[str, Any]) -> co.State:
    out = on_unit(None, uid, {"type": "create", "unit": spec}, 3, NOW)
    assert out.action == "ensure"
    return out.state


def shard_spec() -> dict[str, Any]:
    return {
        "kind": "shard",
        "table": "orders",
        "epoch": 1,
        "key_names": ["pk"],
        "stream_arn": STREAM,
        "shard_id": "a",
        "sink": "buffer",
        "partitions": 2,
    }


def test_a_running_shard_is_paused_by_its_agent_and_says_so_when_its_runner_ended():
    u = created(SHARD_UID, shard_spec())
    out = on_unit(u, SHARD_UID, {"type": "pause"}, 3, NOW)
    assert out.state["status"] == "pausing" and out.action == "pause" and out.forward == []
    again = on_unit(out.state, SHARD_UID, {"type": "pause"}, 3, NOW)
    assert again.action == "pause"  # its runner may have gone meanwhile: ask again
    out = on_unit(out.state, SHARD_UID, {"type": "paused"}, 3, NOW)
    assert out.state["status"] == "paused"
    assert out.forward == [pr.encode(paused("a"))]
    # resumed by a create into the output topic: active again, its position kept
    spec = {k: v for k, v in shard_spec().items() if k not in ("sink", "partitions")}
    out = on_unit({**out.state, "pos": "42"}, SHARD_UID, {"type": "create", "unit": spec}, 3, NOW)
    assert out.state["status"] == "active" and out.state["pos"] == "42" and out.action == "ensure"
    assert "sink" not in out.state["spec"]


def test_a_pause_for_a_unit_that_runs_nowhere_is_answered_at_once():
    out = on_unit(None, SHARD_UID, {"type": "pause"}, 3, NOW)
    assert out.state is None and out.forward == [pr.encode(paused("a"))]
    u = {**created(SHARD_UID, shard_spec()), "status": "finished"}
    out = on_unit(u, SHARD_UID, {"type": "pause"}, 3, NOW)
    assert out.state["status"] == "finished" and out.forward == [pr.encode(paused("a"))]
    u = {**u, "status": "stopped"}
    assert on_unit(u, SHARD_UID, {"type": "pause"}, 3, NOW).forward == [pr.encode(paused("a"))]


def test_a_late_paused_report_of_a_resumed_shard_changes_nothing():
    u = created(SHARD_UID, shard_spec())
    out = on_unit(u, SHARD_UID, {"type": "paused"}, 3, NOW)
    assert out.state == u and out.forward == []


def test_a_replay_unit_forwards_caught_up_and_drain_marks_it():
    spec = {"kind": "replay", "table": "orders", "epoch": 1, "key_names": ["pk"]}
    u = created(REPLAY_UID, {**spec, "partition": 0, "partitions": 2})
    out = on_unit(u, REPLAY_UID, {"type": "caught_up"}, 3, NOW)
    assert out.forward == [pr.encode(caught_up(0))]
    out = on_unit(out.state, REPLAY_UID, {"type": "drain"}, 3, NOW)
    assert out.state["drain"] is True and out.action is None
    out = on_unit(out.state, REPLAY_UID, {"type": "finish", "pos": 17, "count": 9}, 3, NOW)
    ((key, message),) = out.forward
    assert key == "t:orders" and message["kind"] == "replay" and message["segment"] == 0
