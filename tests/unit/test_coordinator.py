"""Pure state transitions of a replicated table and of its work units (no services)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from app.domain import coordinator as co
from app.domain import protocol as pr
from app.domain.coordinator import RETENTION_MS, Policy

NOW = 1_700_000_000_000
HOUR = 3600 * 1000
ARN = "arn:aws:dynamodb:us-east-1:123:table/orders"
STREAM = f"{ARN}/stream/2024-01-01T00:00:00.000"
STREAM2 = f"{ARN}/stream/2024-02-02T00:00:00.000"
P = Policy(segments=3)
SEQ21 = "1" + "0" * 20  # 21 digits
SEQ21_HI = "9" * 21
SEQ40 = "1" + "0" * 39  # 40 digits: larger than any 21-digit seq, smaller as a string


def info(**kw: Any) -> dict[str, Any]:
    return {
        "name": "orders",
        "table_arn": ARN,
        "stream_arn": STREAM,
        "key_names": ["pk", "sk"],
        "item_count": 10,
        "size_bytes": 1000,
        "read_capacity": 0,
        "view_type": "NEW_AND_OLD_IMAGES",
        **kw,
    }


# The transitions take typed messages (app.domain.protocol); these tests write them as
# they travel on the control topic and decode them with the one codec.
def table_msg(kind: str, msg: Mapping[str, Any] | pr.Message) -> Any:
    if not isinstance(msg, Mapping):
        return msg
    return pr.decode(co.table_key("orders"), {"type": kind, **msg})


def on_unit_done(s: co.State, msg: Any, now: int, p: Policy) -> co.Outcome:
    return co.on_unit_done(s, table_msg("unit_done", msg), now, p)


def on_shards(s: co.State, msg: Any, now: int, p: Policy) -> co.Outcome:
    return co.on_shards(s, table_msg("shards", msg), now, p)


def on_unit_failed(s: co.State, msg: Any, now: int) -> co.Outcome:
    return co.on_unit_failed(s, table_msg("unit_failed", msg), now)


def on_unit(u: co.State | None, uid: str, msg: Any, partition: int, now: int) -> co.UnitOutcome:
    typed = pr.decode(co.unit_key(uid), msg) if isinstance(msg, Mapping) else msg
    return co.on_unit(u, uid, typed, partition, now)


def keys(cmds: list[co.Command], kind: str | None = None) -> list[str]:
    return [k for k, m in cmds if kind is None or m["type"] == kind]


def scan_keys(epoch: int, segments: Any, total: int = 3) -> list[str]:
    return [f"u:scan|orders|{epoch}|{i}|{total}" for i in segments]


def shard_key(sid: str, epoch: int = 1, stream: str = STREAM) -> str:
    return f"u:shard|orders|{epoch}|{stream}|{sid}"


def done(segment: int, epoch: int = 1, count: int = 0) -> dict[str, Any]:
    return {
        "type": "unit_done",
        "kind": "scan",
        "epoch": epoch,
        "segment": segment,
        "count": count,
        "unit": co.scan_unit_id("orders", epoch, segment, 3),
    }


def new_table(p: Policy = P, now: int = NOW, **kw: Any) -> co.State:
    return co.on_discovered(None, info(**kw), now, p).state


def streaming(p: Policy = P) -> co.State:
    """A table whose snapshot (3 segments, 10 items each) is done: STREAMING, epoch 1."""
    s = new_table(p)
    for i in range(3):
        s = on_unit_done(s, done(i, count=10), NOW + 1000, p).state
    assert s["phase"] == "STREAMING"
    return s


def listing(*shards: tuple[str, str | None, int, int | None]) -> list[list[Any]]:
    return [
        [sid, parent, str(10**20 + start), None if end is None else str(10**20 + end)]
        for sid, parent, start, end in shards
    ]


def with_shards(p: Policy = P) -> co.State:
    """STREAMING with lineage a (finished) -> b (running), c (running), d (pending, child of c)."""
    s = streaming(p)
    s = on_shards(
        s,
        {
            "epoch": 1,
            "listing": listing(("a", None, 0, 10), ("b", "a", 11, None), ("c", None, 5, 20)),
        },
        NOW,
        p,
    ).state
    s = on_unit_done(
        s, {"kind": "shard", "epoch": 1, "shard_id": "a", "listing": None}, NOW, p
    ).state
    s = on_shards(
        s,
        {
            "epoch": 1,
            "listing": listing(
                ("a", None, 0, 10), ("b", "a", 11, None), ("c", None, 5, 20), ("d", "c", 21, None)
            ),
        },
        NOW,
        p,
    ).state
    assert {k: e["status"] for k, e in s["shards"].items()} == {
        "a": "finished",
        "b": "running",
        "c": "running",
        "d": "pending",
    }
    return s


# ================================================================ discovery of a new table
def test_new_table_snapshot_and_stream_starts_init_sync():
    out = co.on_discovered(None, info(read_capacity=30), NOW, P)
    s = out.state
    assert s["phase"] == "INIT_SYNC" and s["epoch"] == 1 and s["resnapshots"] == 0
    assert s["name"] == "orders" and s["stream_arn"] == STREAM and s["table_arn"] == ARN
    assert s["cutoff_ms"] == NOW - 60_000
    assert s["snapshot"] == {
        "start_ms": NOW,
        "end_ms": None,
        "total": 3,
        "done": [],
        "items": 0,
        "rcu": 15.0,
    }
    assert s["shards"] == {} and s["error"] is None and s["stopped_ms"] is None
    assert keys(out.commands) == scan_keys(1, range(3))
    for i, (key, msg) in enumerate(out.commands):
        assert msg["type"] == "create"
        unit = msg["unit"]
        assert key == f"u:{co.scan_unit_id('orders', 1, i, 3)}"
        assert unit == {
            "kind": "scan",
            "table": "orders",
            "epoch": 1,
            "key_names": ["pk", "sk"],
            "stream_arn": STREAM,
            "cutoff_ms": NOW - 60_000,
            "snapshot_start_ms": NOW,
            "snapshot_end_ms": None,
            "snapshot_items": 0,
            "segment": i,
            "total": 3,
            "rcu": 5.0,
        }


def test_a_units_spec_is_read_as_the_variant_its_kind_names():
    out = co.on_discovered(None, info(read_capacity=30), NOW, P)
    key, msg = out.commands[0]
    created = co.on_unit(None, key.removeprefix("u:"), msg, 0, NOW).state
    assert created is not None
    unit: co.UnitState = {"id": created["id"], "spec": created["spec"]}
    assert co.scan_spec(unit)["segment"] == 0 and co.scan_spec(unit)["total"] == 3
    with pytest.raises(ValueError, match="is a scan unit, not a shard"):
        co.shard_spec(unit)
    with pytest.raises(ValueError, match="is a scan unit, not a stream watcher"):
        co.watch_spec(unit)


def test_new_table_auto_segments_and_unlimited_rcu():
    out = co.on_discovered(None, info(item_count=20_000, size_bytes=1), NOW, Policy())
    assert out.state["snapshot"]["total"] == 4  # > 10,000 items: at least 4 segments
    assert keys(out.commands) == scan_keys(1, range(4), total=4)
    assert all(m["unit"]["rcu"] is None for _, m in out.commands)


def test_cutoff_never_negative():
    assert new_table(now=1000)["cutoff_ms"] == 0


def test_new_table_stream_only_trim_horizon():
    out = co.on_discovered(None, info(), NOW, Policy(mode="stream_only"))
    s = out.state
    assert (s["phase"], s["epoch"], s["cutoff_ms"], s["snapshot"]) == ("STREAMING", 1, 0, None)
    assert out.commands == [
        (
            "u:watch|orders|1",
            {
                "type": "create",
                "unit": {
                    "kind": "watch",
                    "table": "orders",
                    "epoch": 1,
                    "key_names": ["pk", "sk"],
                    "stream_arn": STREAM,
                    "cutoff_ms": 0,
                    "snapshot_start_ms": None,
                    "snapshot_end_ms": None,
                    "snapshot_items": None,
                },
            },
        )
    ]


def test_new_table_stream_only_latest_cuts_off_at_now():
    out = co.on_discovered(None, info(), NOW, Policy(mode="stream_only", stream_start="latest"))
    assert out.state["cutoff_ms"] == NOW and out.state["phase"] == "STREAMING"
    assert keys(out.commands, "create") == ["u:watch|orders|1"]
    assert out.commands[0][1]["unit"]["cutoff_ms"] == NOW


def test_new_table_snapshot_only_scans_like_snapshot_and_stream():
    out = co.on_discovered(None, info(), NOW, Policy(mode="snapshot_only", segments=2))
    assert out.state["phase"] == "INIT_SYNC" and out.state["epoch"] == 1
    assert keys(out.commands, "create") == scan_keys(1, range(2), total=2)


# ================================================================ rediscovery
@pytest.mark.parametrize("build", [new_table, streaming, with_shards])
def test_rediscovery_keeps_state_and_repeats_only_the_work_in_progress(build):
    s = build()
    out = co.on_discovered(s, info(item_count=99), NOW + HOUR, P)
    # the heal: creates for exactly the units that should be running now (idempotent)
    assert all(m["type"] == "create" for _, m in out.commands)
    if s["phase"] == "INIT_SYNC":
        pending = [i for i in range(s["snapshot"]["total"]) if i not in s["snapshot"]["done"]]
        assert keys(out.commands) == scan_keys(s["epoch"], pending, total=s["snapshot"]["total"])
    else:
        running = sorted(k for k, e in s["shards"].items() if e["status"] == "running")
        assert keys(out.commands) == [co.unit_key(co.watch_unit_id(s["name"], s["epoch"]))] + [
            co.unit_key(co.shard_unit_id(s["name"], s["epoch"], s["stream_arn"], k))
            for k in running
        ]
    assert out.state["phase"] == s["phase"] and out.state["epoch"] == s["epoch"]
    assert out.state["snapshot"] == s["snapshot"] and out.state["shards"] == s["shards"]
    assert out.state["item_count"] == 99  # the describe fields are refreshed


def test_rediscovery_of_snapshot_done_is_a_noop():
    p = Policy(mode="snapshot_only", segments=1)
    s = on_unit_done(new_table(p), done(0), NOW, p).state
    assert s["phase"] == "SNAPSHOT_DONE"
    out = co.on_discovered(s, info(), NOW + HOUR, p)
    assert out.commands == [] and out.state["phase"] == "SNAPSHOT_DONE"


@pytest.mark.parametrize("changed", [{"stream_arn": STREAM2}, {"table_arn": ARN + "-new"}])
def test_replaced_stream_or_table_drops_every_old_unit_and_starts_new_epoch(changed):
    s = with_shards()
    out = co.on_discovered(s, info(**changed), NOW + HOUR, P)
    new = out.state
    assert new["epoch"] == 2 and new["phase"] == "INIT_SYNC" and new["shards"] == {}
    assert new["snapshot"]["start_ms"] == NOW + HOUR and new["snapshot"]["done"] == []
    assert new["reason"] == "table or stream replaced"
    for k, v in changed.items():
        assert new[k] == v
    old = [
        *scan_keys(1, range(3)),
        shard_key("a"),
        shard_key("b"),
        shard_key("c"),
        shard_key("d"),
        "u:watch|orders|1",
    ]
    assert sorted(keys(out.commands, "drop")) == sorted(old)
    # drops come before the new epoch's creates
    assert out.commands[: len(old)] == [(k, {"type": "drop"}) for k in keys(out.commands, "drop")]
    assert keys(out.commands, "create") == scan_keys(2, range(3))


# ================================================================ snapshot completion
def test_all_segments_done_switches_to_streaming():
    s = new_table()
    for i, n in [(2, 7), (0, 5)]:
        out = on_unit_done(s, done(i, count=n), NOW + 10, P)
        assert out.commands == [] and out.state["phase"] == "INIT_SYNC"
        s = out.state
    assert s["snapshot"]["done"] == [0, 2] and s["snapshot"]["items"] == 12
    out = on_unit_done(s, done(1, count=3), NOW + 5000, P)
    s = out.state
    assert s["phase"] == "STREAMING"
    assert s["snapshot"]["items"] == 15 and s["snapshot"]["end_ms"] == NOW + 5000
    assert s["cutoff_ms"] == NOW - 60_000
    assert keys(out.commands, "drop") == scan_keys(1, range(3))
    assert keys(out.commands, "create") == ["u:watch|orders|1"]
    watch = out.commands[-1][1]["unit"]
    assert watch["kind"] == "watch" and watch["stream_arn"] == STREAM
    assert (watch["snapshot_start_ms"], watch["snapshot_end_ms"], watch["snapshot_items"]) == (
        NOW,
        NOW + 5000,
        15,
    )


def test_unit_done_does_not_mutate_its_input():
    s = new_table()
    before = repr(s)
    on_unit_done(s, done(0, count=4), NOW, P)
    assert repr(s) == before


def test_snapshot_only_finishes_in_snapshot_done_without_watch():
    p = Policy(mode="snapshot_only", segments=2)
    s = new_table(p)
    s = on_unit_done(s, done(0, count=1), NOW, p).state
    out = on_unit_done(s, done(1, count=2), NOW + 1, p)
    assert out.state["phase"] == "SNAPSHOT_DONE" and out.state["snapshot"]["items"] == 3
    assert out.commands == [(k, {"type": "drop"}) for k in scan_keys(1, range(2), total=2)]


@pytest.mark.parametrize("epoch", [0, 2, None])
def test_unit_done_of_another_epoch_is_ignored(epoch):
    s = new_table()
    out = on_unit_done(s, done(0, count=5) | {"epoch": epoch}, NOW, P)
    assert out.state is s and out.commands == []


def test_duplicate_unit_done_counts_once():
    s = on_unit_done(new_table(), done(1, count=5), NOW, P).state
    out = on_unit_done(s, done(1, count=5), NOW, P)
    assert out.state["snapshot"]["items"] == 5 and out.state["snapshot"]["done"] == [1]
    assert out.commands == []
    s = on_unit_done(out.state, done(0, count=1), NOW, P).state
    s = on_unit_done(s, done(2, count=1), NOW, P).state
    assert s["phase"] == "STREAMING" and s["snapshot"]["items"] == 7
    # a late duplicate after the switch changes nothing either
    again = on_unit_done(s, done(2, count=1), NOW, P)
    assert again.state["snapshot"]["items"] == 7 and again.commands == []


# ================================================================ shards
def test_listing_creates_units_only_for_ready_shards():
    s = streaming()
    out = on_shards(
        s,
        {
            "epoch": 1,
            "listing": listing(
                ("a", None, 0, 10), ("b", "a", 11, None), ("t", "trimmed-parent", 3, None)
            ),
        },
        NOW,
        P,
    )
    assert keys(out.commands, "create") == [shard_key("a"), shard_key("t")]
    assert {k: (e["parent"], e["status"]) for k, e in out.state["shards"].items()} == {
        "a": (None, "running"),
        "b": ("a", "pending"),
        "t": ("trimmed-parent", "running"),
    }
    spec = out.commands[1][1]["unit"]
    assert (spec["kind"], spec["shard_id"], spec["parent"], spec["epoch"]) == (
        "shard",
        "t",
        "trimmed-parent",
        1,
    )
    assert spec["cutoff_ms"] == NOW - 60_000 and spec["snapshot_items"] == 30
    # the same listing again starts nothing twice
    again = on_shards(
        out.state,
        {
            "epoch": 1,
            "listing": listing(
                ("a", None, 0, 10), ("b", "a", 11, None), ("t", "trimmed-parent", 3, None)
            ),
        },
        NOW,
        P,
    )
    assert again.commands == []


def test_shards_message_ignored_when_stale_or_not_streaming():
    lst = {"epoch": 1, "listing": listing(("a", None, 0, None))}
    s = new_table()
    assert on_shards(s, lst, NOW, P).state is s
    s = streaming()
    assert on_shards(s, lst | {"epoch": 2}, NOW, P).commands == []


def test_finished_shard_starts_its_children():
    s = streaming()
    lst = listing(("a", None, 0, 10), ("b", "a", 11, None), ("c", "a", 12, None))
    s = on_shards(s, {"epoch": 1, "listing": lst}, NOW, P).state
    out = on_unit_done(s, {"kind": "shard", "epoch": 1, "shard_id": "a", "listing": lst}, NOW, P)
    assert keys(out.commands, "create") == [shard_key("b"), shard_key("c")]
    assert {k: e["status"] for k, e in out.state["shards"].items()} == {
        "a": "finished",
        "b": "running",
        "c": "running",
    }


def test_finished_and_unlisted_shard_is_pruned():
    s = with_shards()  # a finished, b (child of a) running
    lst = listing(("b", "a", 11, 30), ("c", None, 5, 20), ("d", "c", 21, None))
    out = on_shards(s, {"epoch": 1, "listing": lst}, NOW, P)
    assert out.commands == [] and out.state["shards"]["a"]["status"] == "finished"  # b needs it
    out = on_unit_done(
        out.state, {"kind": "shard", "epoch": 1, "shard_id": "b", "listing": lst}, NOW, P
    )
    assert out.commands == [(shard_key("a"), {"type": "drop"})]
    assert "a" not in out.state["shards"] and out.state["epoch"] == 1


def test_running_shard_missing_from_listing_resnapshots():
    s = with_shards()  # a finished, b and c running, d pending
    out = on_shards(
        s,
        {
            "epoch": 1,
            "listing": listing(("a", None, 0, 10), ("b", "a", 11, None), ("d", "c", 21, None)),
        },
        NOW + HOUR,
        P,
    )
    new = out.state
    assert new["epoch"] == 2 and new["phase"] == "INIT_SYNC" and new["resnapshots"] == 1
    assert new["shards"] == {} and "['c']" in new["reason"]
    assert out.events == ["resnapshot", "lost_shard"]
    # every unit of epoch 1 is dropped, the lost shard's own (still registered) unit included
    assert sorted(keys(out.commands, "drop")) == sorted(
        [
            *scan_keys(1, range(3)),
            shard_key("a"),
            shard_key("b"),
            shard_key("c"),
            shard_key("d"),
            "u:watch|orders|1",
        ]
    )
    assert keys(out.commands, "create") == scan_keys(2, range(3))


def test_resnapshot_request_starts_new_epoch_but_not_when_stopped():
    s = streaming()
    out = co.on_resnapshot(s, "requested", None, NOW + HOUR, P)
    assert out.state["epoch"] == 2 and out.state["snapshot"]["total"] == 3
    assert out.events == ["resnapshot"] and "u:watch|orders|1" in keys(out.commands, "drop")
    stopped = co.on_sweep(s, set(), NOW).state
    assert co.on_resnapshot(stopped, "requested", None, NOW, P).state is stopped


# ================================================================ sweep / stop
def test_sweep_without_the_table_stops_its_running_units():
    s = with_shards()
    out = co.on_sweep(s, {"other"}, NOW + HOUR)
    st_ = out.state
    assert st_["phase"] == "STOPPED" and st_["resume_phase"] == "STREAMING"
    assert st_["stopped_ms"] == NOW + HOUR and st_["epoch"] == 1
    stops = keys(out.commands, "stop")
    assert len(stops) == len(out.commands)
    assert {"u:watch|orders|1", shard_key("b"), shard_key("c")} <= set(stops)
    assert shard_key("a") not in stops and shard_key("d") not in stops  # finished / pending
    assert st_["shards"] == s["shards"]  # positions kept for resuming


def test_sweep_during_init_sync_keeps_resume_phase():
    s = on_unit_done(new_table(), done(1, count=3), NOW, P).state
    out = co.on_sweep(s, set(), NOW + 1)
    assert out.state["phase"] == "STOPPED" and out.state["resume_phase"] == "INIT_SYNC"
    assert set(scan_keys(1, [0, 2])) <= set(keys(out.commands, "stop"))


def test_sweep_with_the_table_present_is_unchanged():
    s = streaming()
    out = co.on_sweep(s, {"orders"}, NOW + HOUR)
    assert out.state is s and out.commands == []


def test_stopped_table_is_kept_then_forgotten_after_24h():
    s = with_shards()
    stopped = co.on_sweep(s, set(), NOW).state
    out = co.on_sweep(stopped, set(), NOW + RETENTION_MS - 1)
    # unchanged, but the stops are repeated each sweep (one may have been lost)
    assert out.state is stopped and out.commands
    assert all(m["type"] == "stop" for _, m in out.commands)
    out = co.on_sweep(stopped, set(), NOW + RETENTION_MS)
    # forgotten: only the epoch is kept (unit ids of a later life must not repeat)
    assert {k: out.state[k] for k in ("name", "phase", "epoch")} == {
        "name": "orders",
        "phase": "FORGOTTEN",
        "epoch": 1,
    }
    assert co.all_units(out.state) == []
    assert sorted(keys(out.commands, "drop")) == sorted(co.unit_key(u) for u in co.all_units(s))
    assert len(out.commands) == len(co.all_units(s))


# ================================================================ resume
def test_stopped_init_sync_resumes_only_pending_segments():
    s = on_unit_done(new_table(), done(1, count=3), NOW, P).state
    stopped = co.on_sweep(s, set(), NOW + 10).state
    out = co.on_discovered(stopped, info(), NOW + HOUR, P)
    r = out.state
    assert (r["phase"], r["epoch"], r["stopped_ms"], r["resume_phase"]) == (
        "INIT_SYNC",
        1,
        None,
        None,
    )
    assert r["snapshot"] == s["snapshot"] and r["cutoff_ms"] == s["cutoff_ms"]
    assert keys(out.commands) == scan_keys(1, [0, 2])
    assert all(m["type"] == "create" for _, m in out.commands)


def test_stopped_streaming_resumes_watch_and_running_shards():
    s = with_shards()
    stopped = co.on_sweep(s, set(), NOW).state
    out = co.on_discovered(stopped, info(), NOW + 22 * HOUR, P)
    assert out.state["phase"] == "STREAMING" and out.state["epoch"] == 1
    assert out.state["shards"] == s["shards"]
    assert keys(out.commands) == ["u:watch|orders|1", shard_key("b"), shard_key("c")]
    assert all(m["type"] == "create" for _, m in out.commands)


def test_stopped_snapshot_done_resumes_to_snapshot_done_not_streaming():
    p = Policy(mode="snapshot_only", segments=1)
    s = on_unit_done(new_table(p), done(0, count=2), NOW, p).state
    stopped = co.on_sweep(s, set(), NOW).state
    assert stopped["phase"] == "STOPPED"
    out = co.on_discovered(stopped, info(), NOW + HOUR, p)
    assert out.state["phase"] == "SNAPSHOT_DONE" and out.state["epoch"] == 1
    assert keys(out.commands, "create") == []


def test_stopped_longer_than_retention_starts_a_fresh_epoch():
    s = with_shards()
    stopped = co.on_sweep(s, set(), NOW).state
    # still resumable just before (24 h - 1 h safety margin) ...
    assert P.resume_limit_ms == 23 * HOUR
    assert co.on_discovered(stopped, info(), NOW + 23 * HOUR - 1, P).state["epoch"] == 1
    # ... not at it: the stream may no longer hold our positions; loudly
    out = co.on_discovered(stopped, info(), NOW + 23 * HOUR, P)
    assert out.state["epoch"] == 2 and out.state["phase"] == "INIT_SYNC"
    assert out.state["shards"] == {} and out.state["resume_phase"] is None
    assert out.events == ["resnapshot"] and out.state["resnapshots"] == 1
    assert "STOPPED" in out.state["error"] and "retention" in out.state["error"]
    assert sorted(keys(out.commands, "drop")) == sorted(co.unit_key(u) for u in co.all_units(s))
    assert keys(out.commands, "create") == scan_keys(2, range(3))


# ================================================================ refused (issue 10, item 3)
OLD = "stream view type OLD_IMAGE carries no new item image"
KEYS = "stream view type KEYS_ONLY carries no new item image"
RUNNING = ["u:watch|orders|1", shard_key("b"), shard_key("c")]


def test_refused_new_table_shows_its_reason_and_runs_nothing():
    out = co.on_refused(None, info(view_type="OLD_IMAGE"), OLD, NOW)
    s = out.state
    assert (s["phase"], s["epoch"], s["error"], s["reason"]) == ("REFUSED", 0, OLD, OLD)
    assert s["refused"] == {"reason": OLD, "resume_phase": None, "stopped_ms": None, "new": True}
    assert out.commands == [] and out.events == ["refused"]
    again = co.on_refused(s, info(view_type="OLD_IMAGE"), OLD, NOW + HOUR)
    assert again.state is s and again.commands == [] and again.events == []  # no new warning
    changed = co.on_refused(s, info(stream_arn=None, view_type=None), "no stream", NOW + HOUR)
    assert changed.state["error"] == "no stream" and changed.events == ["refused"]
    # reports of a refused table's (old) units change nothing
    assert on_unit_done(s, done(0, epoch=0), NOW, P).state is s


def test_refused_streaming_table_stops_its_units_keeps_positions_and_resumes():
    s = with_shards()
    out = co.on_refused(s, info(view_type="KEYS_ONLY"), KEYS, NOW + HOUR)
    r = out.state
    assert r["phase"] == "REFUSED" and r["error"] == KEYS and out.events == ["refused"]
    stops = keys(out.commands, "stop")  # like on_stop: the (dropped) scans' stops too
    assert len(stops) == len(out.commands) and set(RUNNING) <= set(stops)
    assert shard_key("a") not in stops and shard_key("d") not in stops  # finished / pending
    assert (r["epoch"], r["shards"], r["snapshot"]) == (1, s["shards"], s["snapshot"])
    assert r["refused"] == {"reason": KEYS, "resume_phase": "STREAMING", "stopped_ms": NOW + HOUR}
    repeat = co.on_refused(r, info(view_type="KEYS_ONLY"), KEYS, NOW + 2 * HOUR)
    assert repeat.state is r and keys(repeat.commands, "stop") == stops  # one may be lost
    assert on_shards(r, {"epoch": 1, "listing": listing(("a", None, 0, None))}, NOW, P).state is r
    # the view type fixed (same stream): streaming resumes where it stopped
    back = co.on_discovered(r, info(), NOW + 3 * HOUR, P)
    b = back.state
    assert (b["phase"], b["epoch"], b["error"], b["refused"]) == ("STREAMING", 1, None, None)
    assert b["shards"] == s["shards"] and keys(back.commands, "create") == RUNNING
    assert any("no longer refused" in n for n in back.notes)


def test_refused_during_init_sync_then_swept_resumes_the_snapshot_not_streaming():
    s = on_unit_done(new_table(), done(1, count=3), NOW, P).state
    r = co.on_refused(s, info(view_type="OLD_IMAGE"), OLD, NOW + 10).state
    swept = co.on_sweep(r, set(), NOW + HOUR)  # no longer discovered: stops like any other
    assert swept.state["phase"] == "STOPPED" and swept.state["error"] == OLD
    back = co.on_discovered(swept.state, info(), NOW + 2 * HOUR, P)
    b = back.state
    assert (b["phase"], b["epoch"], b["snapshot"]["done"]) == ("INIT_SYNC", 1, [1])
    assert keys(back.commands) == scan_keys(1, [0, 2])


def test_refused_before_it_started_begins_as_a_new_table_once_usable():
    r = co.on_refused(None, info(view_type="KEYS_ONLY"), KEYS, NOW).state
    # e.g. DYNAMODB_SYNC_MODE=snapshot_only, which needs no stream
    p = Policy(mode="snapshot_only", segments=3)
    out = co.on_discovered(r, info(view_type="KEYS_ONLY"), NOW + HOUR, p)
    s = out.state
    assert (s["phase"], s["epoch"], s["error"], s["reason"]) == ("INIT_SYNC", 1, None, "new")
    assert s["snapshot"]["start_ms"] == NOW + HOUR and s.get("refused") is None
    assert keys(out.commands) == scan_keys(1, range(3))
    # swept (STOPPED) while refused, then usable: still a new table, not "resumed"
    stopped = co.on_sweep(r, set(), NOW + 1).state
    assert co.on_discovered(stopped, info(), NOW + HOUR, P).state["phase"] == "INIT_SYNC"


def test_refused_table_whose_stream_is_replaced_starts_a_new_epoch_dropping_old_units():
    s = with_shards()
    # the stream re-created as KEYS_ONLY (a new ARN): the state keeps the old stream's
    # identity, which names the units to stop and, later, to drop
    r = co.on_refused(s, info(stream_arn=STREAM2, view_type="KEYS_ONLY"), KEYS, NOW).state
    assert r["stream_arn"] == STREAM
    stream3 = f"{ARN}/stream/2024-03-03T00:00:00.000"
    out = co.on_discovered(r, info(stream_arn=stream3), NOW + HOUR, P)
    assert (out.state["epoch"], out.state["phase"], out.state["stream_arn"]) == (
        2,
        "INIT_SYNC",
        stream3,
    )
    assert sorted(keys(out.commands, "drop")) == sorted(co.unit_key(u) for u in co.all_units(s))


def test_refused_longer_than_retention_resnapshots():
    r = co.on_refused(with_shards(), info(view_type="OLD_IMAGE"), OLD, NOW).state
    swept = co.on_sweep(r, set(), NOW + 20 * HOUR).state  # stopped_ms would say 20 h later
    out = co.on_discovered(swept, info(), NOW + RETENTION_MS, P)
    assert out.state["epoch"] == 2 and out.state["phase"] == "INIT_SYNC"


def test_refused_table_no_longer_discovered_is_forgotten_after_24h():
    r = co.on_refused(None, info(view_type="OLD_IMAGE"), OLD, NOW).state
    stopped = co.on_sweep(r, set(), NOW).state
    assert stopped["phase"] == "STOPPED"
    assert co.on_sweep(stopped, set(), NOW + RETENTION_MS).state["phase"] == "FORGOTTEN"


# ================================================================ errors
def test_unit_failed_pauses_the_table_in_error():
    s = with_shards()
    out = on_unit_failed(s, {"epoch": 1, "unit": "shard|x", "error": "AccessDenied"}, NOW)
    e = out.state
    assert e["phase"] == "ERROR" and e["error"] == "shard|x: AccessDenied"
    assert e["resume_phase"] == "STREAMING" and e["updated_ms"] == NOW
    assert out.events == ["table_error"]
    assert {"u:watch|orders|1", shard_key("b"), shard_key("c")} <= set(keys(out.commands, "stop"))
    # errors are sticky until retried: a second failure or a sweep changes nothing
    assert on_unit_failed(e, {"epoch": 1, "unit": "u", "error": "x"}, NOW).commands == []
    assert co.on_sweep(e, set(), NOW + 1).state is e


def test_unit_failed_of_another_epoch_is_ignored():
    s = streaming()
    out = on_unit_failed(s, {"epoch": 7, "unit": "u", "error": "x"}, NOW)
    assert out.state is s and out.commands == []


def test_error_table_is_retried_by_discovery_only_after_error_retry_ms():
    p = Policy(segments=3, error_retry_ms=300_000)
    s = on_unit_done(new_table(p), done(0), NOW, p).state
    e = on_unit_failed(s, {"epoch": 1, "unit": "scan|x", "error": "boom"}, NOW + 10).state
    out = co.on_discovered(e, info(), NOW + 10 + 299_999, p)
    assert out.state["phase"] == "ERROR" and out.commands == []
    out = co.on_discovered(e, info(), NOW + 10 + 300_000, p)
    assert out.state["phase"] == "INIT_SYNC" and out.state["error"] is None
    assert out.state["epoch"] == 1
    assert keys(out.commands, "create") == scan_keys(1, [1, 2])


# ================================================================ unit transitions
def create(spec: dict[str, Any]) -> dict[str, Any]:
    return {"type": "create", "unit": spec}


SHARD_SPEC = {
    "kind": "shard",
    "table": "orders",
    "epoch": 1,
    "shard_id": "s1",
    "stream_arn": STREAM,
}
SCAN_SPEC = {"kind": "scan", "table": "orders", "epoch": 1, "segment": 2, "total": 3}
SHARD_UID = co.shard_unit_id("orders", 1, STREAM, "s1")
SCAN_UID = co.scan_unit_id("orders", 1, 2, 3)


def test_create_new_unit_is_active_and_ensured():
    out = on_unit(None, SCAN_UID, create(SCAN_SPEC), 3, NOW)
    assert out.action == "ensure" and out.forward == []
    assert out.state == {
        "id": SCAN_UID,
        "spec": SCAN_SPEC,
        "status": "active",
        "pos": None,
        "count": 0,
        "lag_ms": None,
        "error": None,
        "partition": 3,
        "updated_ms": NOW,
    }


def test_shard_progress_compares_sequence_numbers_as_integers():
    u = on_unit(None, SHARD_UID, create(SHARD_SPEC), 0, NOW).state
    u = on_unit(
        u,
        SHARD_UID,
        {"type": "progress", "pos": SEQ21_HI, "count": 5, "lag_ms": 7, "ts_ms": NOW - 7},
        0,
        NOW,
    ).state
    assert (u["pos"], u["count"], u["lag_ms"], u["ts_ms"]) == (SEQ21_HI, 5, 7, NOW - 7)
    u = on_unit(u, SHARD_UID, {"type": "progress", "pos": SEQ40, "count": 6}, 0, NOW).state
    assert u["pos"] == SEQ40  # "1000…" (40 digits) > "999…" (21 digits) as numbers
    for older in (SEQ21_HI, SEQ21, SEQ40):  # lower or equal: never moves back
        out = on_unit(u, SHARD_UID, {"type": "progress", "pos": older, "count": 99}, 0, NOW)
        assert out.state is u and out.state["pos"] == SEQ40 and out.state["count"] == 6
    out = on_unit(u, SHARD_UID, {"type": "progress", "pos": None, "count": 99}, 0, NOW)
    assert out.state["pos"] == SEQ40


def test_scan_progress_is_ordered_by_count():
    u = on_unit(None, SCAN_UID, create(SCAN_SPEC), 0, NOW).state
    u = on_unit(
        u, SCAN_UID, {"type": "progress", "pos": {"pk": {"S": "m"}}, "count": 10}, 0, NOW + 1
    ).state
    assert u["pos"] == {"pk": {"S": "m"}} and u["count"] == 10 and u["updated_ms"] == NOW + 1
    for stale in (10, 3):
        out = on_unit(
            u, SCAN_UID, {"type": "progress", "pos": {"pk": {"S": "a"}}, "count": stale}, 0, NOW + 2
        )
        assert out.state is u
    u = on_unit(
        u, SCAN_UID, {"type": "progress", "pos": {"pk": {"S": "z"}}, "count": 11}, 0, NOW
    ).state
    assert u["pos"] == {"pk": {"S": "z"}} and u["count"] == 11


def test_finish_forwards_unit_done_exactly_once():
    u = on_unit(None, SCAN_UID, create(SCAN_SPEC), 0, NOW).state
    u = on_unit(u, SCAN_UID, {"type": "progress", "pos": {"k": 1}, "count": 4}, 0, NOW).state
    out = on_unit(u, SCAN_UID, {"type": "finish", "count": 9}, 0, NOW + 5)
    assert out.action == "stop"
    assert out.forward == [
        (
            "t:orders",
            {
                "type": "unit_done",
                "unit": SCAN_UID,
                "kind": "scan",
                "epoch": 1,
                "segment": 2,
                "shard_id": None,
                "count": 9,
                "listing": None,
            },
        )
    ]
    assert out.state["status"] == "finished" and out.state["count"] == 9
    assert out.state["pos"] == {"k": 1}
    again = on_unit(out.state, SCAN_UID, {"type": "finish", "count": 9}, 0, NOW + 6)
    assert again.forward == [] and again.state is out.state


def test_shard_finish_carries_listing_and_position():
    u = on_unit(None, SHARD_UID, create(SHARD_SPEC), 0, NOW).state
    lst = listing(("s1", None, 0, 9), ("s2", "s1", 10, None))
    out = on_unit(
        u, SHARD_UID, {"type": "finish", "pos": SEQ21, "count": 3, "listing": lst}, 0, NOW
    )
    ((key, msg),) = out.forward
    assert key == "t:orders" and msg["kind"] == "shard" and msg["shard_id"] == "s1"
    assert msg["listing"] == lst and out.state["pos"] == SEQ21


def test_finished_unit_is_not_restarted_by_create_or_stop():
    u = on_unit(None, SCAN_UID, create(SCAN_SPEC), 0, NOW).state
    fin = on_unit(u, SCAN_UID, {"type": "finish", "count": 1}, 0, NOW).state
    out = on_unit(fin, SCAN_UID, create(SCAN_SPEC), 0, NOW)
    assert out.state is fin and out.action is None
    out = on_unit(fin, SCAN_UID, {"type": "stop"}, 0, NOW)
    assert out.state["status"] == "finished" and out.action == "stop"


def test_failed_forwards_unit_failed():
    u = on_unit(None, SHARD_UID, create(SHARD_SPEC), 0, NOW).state
    out = on_unit(u, SHARD_UID, {"type": "failed", "error": "denied"}, 0, NOW)
    assert out.state["status"] == "failed" and out.state["error"] == "denied"
    assert out.action == "stop"
    assert out.forward == [
        ("t:orders", {"type": "unit_failed", "unit": SHARD_UID, "epoch": 1, "error": "denied"})
    ]


def test_stop_keeps_position_and_create_in_same_epoch_resumes_it():
    u = on_unit(None, SHARD_UID, create(SHARD_SPEC), 0, NOW).state
    u = on_unit(u, SHARD_UID, {"type": "progress", "pos": SEQ40, "count": 8}, 0, NOW).state
    out = on_unit(u, SHARD_UID, {"type": "stop"}, 0, NOW)
    assert out.action == "stop" and out.state["status"] == "stopped"
    assert out.state["pos"] == SEQ40
    # a late progress from the stopping runner still advances the checkpoint
    late = SEQ40[:-1] + "5"
    s2 = on_unit(out.state, SHARD_UID, {"type": "progress", "pos": late, "count": 9}, 0, NOW).state
    assert s2["pos"] == late and s2["status"] == "stopped"
    spec = {**SHARD_SPEC, "cutoff_ms": 5}
    r = on_unit(s2, SHARD_UID, create(spec), 2, NOW + 1)
    assert r.action == "ensure" and r.state["status"] == "active"
    assert (r.state["pos"], r.state["count"], r.state["partition"]) == (late, 9, 2)
    assert r.state["spec"] == spec


def test_create_with_a_new_epoch_resets_the_position():
    u = on_unit(None, SHARD_UID, create(SHARD_SPEC), 0, NOW).state
    u = on_unit(u, SHARD_UID, {"type": "progress", "pos": SEQ40, "count": 8}, 0, NOW).state
    fin = on_unit(u, SHARD_UID, {"type": "finish", "count": 8}, 0, NOW).state
    r = on_unit(fin, SHARD_UID, create({**SHARD_SPEC, "epoch": 2}), 0, NOW)
    assert r.action == "ensure" and r.state["status"] == "active"
    assert (r.state["pos"], r.state["count"], r.state["spec"]["epoch"]) == (None, 0, 2)


def test_drop_forgets_and_late_reports_are_ignored():
    u = on_unit(None, SHARD_UID, create(SHARD_SPEC), 0, NOW).state
    out = on_unit(u, SHARD_UID, {"type": "drop"}, 0, NOW)
    assert out.state is None and out.action == "stop"
    for msg in (
        {"type": "progress", "pos": SEQ40, "count": 1},
        {"type": "finish", "count": 1},
        {"type": "failed", "error": "x"},
        {"type": "stop"},
        {"type": "drop"},
    ):
        late = on_unit(None, SHARD_UID, msg, 0, NOW)
        assert late.state is None and late.forward == [] and late.action is None


def test_unknown_unit_message_type_raises():
    with pytest.raises(pr.ProtocolError, match="unknown unit message type 'bogus'"):
        pr.decode(co.unit_key(SCAN_UID), {"type": "bogus"})


def test_wire_dicts_still_accepted_through_the_codec():
    # transitional, for callers that do not build typed messages yet (the runners' tests)
    u = co.on_unit(None, SCAN_UID, {"type": "create", "unit": SCAN_SPEC}, 0, NOW).state
    assert co.on_unit(u, SCAN_UID, {"type": "finish", "count": 2}, 0, NOW).forward
    with pytest.raises(pr.ProtocolError):
        co.on_unit(u, SCAN_UID, {"type": "bogus"}, 0, NOW)
    s = streaming()
    assert (
        co.on_shards(s, {"epoch": 1, "listing": listing(("a", None, 0, None))}, NOW, P).state[
            "shards"
        ]["a"]["status"]
        == "running"
    )
    assert (
        co.on_unit_failed(s, {"epoch": 1, "unit": "u", "error": "x"}, NOW).state["phase"] == "ERROR"
    )


def test_listing_round_trip():
    from app.domain.model import Shard

    shards = [Shard("a", None, SEQ21, SEQ40), Shard("b", "a", SEQ40, None)]
    assert co.decode_listing(co.encode_listing(shards)) == shards
    assert co.decode_listing(None) is None


# ================================================================ state machine
class Replication(RuleBasedStateMachine):
    """The control loop in miniature: one table, its units, and a DynamoDB stream whose
    shards split and get trimmed.  Commands and forwards are delivered in order, like
    the control topic does for one partition."""

    def __init__(self) -> None:
        super().__init__()
        self.p = Policy(segments=2, overlap_ms=1000, error_retry_ms=5000)
        self.now = NOW
        self.s: co.State | None = None
        self.units: dict[str, co.State] = {}
        self.running: set[str] = set()  # what the supervisor would run
        self.epochs: list[int] = []
        # the stream: shard id -> [parent, start, end]
        self.stream: dict[str, list[Any]] = {"r0": [None, 0, None]}
        self.next_id = 1
        self.present = True
        self.refused = False  # the stream's view type cannot carry the new state
        self.finished_counts: dict[int, int] = {}

    # ---- delivery
    def table(self, msg: dict[str, Any]) -> None:
        s, kind = self.s, msg["type"]
        if kind == "discovered":
            out = co.on_discovered(s, msg["info"], self.now, self.p)
        elif kind == "refused":
            out = co.on_refused(s, msg["info"], msg["reason"], self.now)
        elif s is None:
            return
        elif kind == "unit_done":
            out = on_unit_done(s, msg, self.now, self.p)
        elif kind == "shards":
            out = on_shards(s, msg, self.now, self.p)
        elif kind == "unit_failed":
            out = on_unit_failed(s, msg, self.now)
        elif kind == "resnapshot":
            if msg["epoch"] != s["epoch"]:
                return
            out = co.on_resnapshot(s, "trimmed", None, self.now, self.p)
        else:
            out = co.on_sweep(s, msg["present"], self.now)
        self.s = out.state
        if self.s is not None and self.s["epoch"]:  # epoch 0: refused, never started
            self.epochs.append(self.s["epoch"])
        for key, m in out.commands:
            assert key.startswith("u:")
            self.unit(key[2:], m)

    def unit(self, uid: str, msg: dict[str, Any]) -> None:
        out = on_unit(self.units.get(uid), uid, msg, 0, self.now)
        if out.state is None:
            self.units.pop(uid, None)
        else:
            self.units[uid] = out.state
        if out.action == "ensure":
            self.running.add(uid)
        elif out.action == "stop":
            self.running.discard(uid)
        for key, m in out.forward:
            assert key == "t:orders"
            self.table(m)

    def listing(self) -> list[list[Any]]:
        return [
            [sid, parent, str(10**20 + start), None if end is None else str(10**20 + end)]
            for sid, (parent, start, end) in sorted(self.stream.items())
        ]

    # ---- rules
    @rule()
    def discover(self) -> None:
        if self.present and self.refused:
            self.table(
                {"type": "refused", "info": info(view_type="OLD_IMAGE"), "reason": "OLD_IMAGE"}
            )
        elif self.present:
            self.table({"type": "discovered", "info": info()})
        self.table({"type": "sweep", "present": {"orders"} if self.present else set()})

    @rule(present=st.booleans())
    def tag(self, present: bool) -> None:
        self.present = present

    @rule(refused=st.booleans())
    def view_type(self, refused: bool) -> None:
        self.refused = refused

    @rule(ms=st.sampled_from([1, 1000, 6000, HOUR, RETENTION_MS]))
    def tick(self, ms: int) -> None:
        self.now += ms

    @precondition(lambda self: any(u.startswith("scan|") for u in self.running))
    @rule(data=st.data(), count=st.integers(0, 50))
    def scan_finishes(self, data: st.DataObject, count: int) -> None:
        uid = data.draw(st.sampled_from(sorted(u for u in self.running if u.startswith("scan|"))))
        self.unit(uid, {"type": "progress", "pos": {"k": count}, "count": count})
        self.unit(uid, {"type": "finish", "count": count})

    @precondition(lambda self: any(u.startswith("watch|") for u in self.running))
    @rule()
    def watch_reports(self) -> None:
        uid = next(u for u in sorted(self.running) if u.startswith("watch|"))
        self.table(
            {"type": "shards", "epoch": self.units[uid]["spec"]["epoch"], "listing": self.listing()}
        )

    @rule(data=st.data())
    def split(self, data: st.DataObject) -> None:
        open_ = sorted(sid for sid, (_, _, end) in self.stream.items() if end is None)
        if not open_:
            return
        sid = data.draw(st.sampled_from(open_))
        start = self.stream[sid][1]
        self.stream[sid][2] = start + 5
        for _ in range(data.draw(st.integers(1, 2))):
            self.stream[f"r{self.next_id}"] = [sid, start + 6, None]
            self.next_id += 1

    @precondition(lambda self: len(self.stream) > 1)
    @rule()
    def trim(self) -> None:
        oldest = min(self.stream, key=lambda sid: self.stream[sid][1])
        del self.stream[oldest]

    @precondition(lambda self: any(u.startswith("shard|") for u in self.running))
    @rule(data=st.data())
    def shard_reads_to_end(self, data: st.DataObject) -> None:
        candidates = sorted(
            u
            for u in self.running
            if u.startswith("shard|")
            and self.stream.get(pr.UnitId.parse(u).shard_id, [0, 0, None])[2] is not None
        )
        if not candidates:
            return
        uid = data.draw(st.sampled_from(candidates))
        end = self.stream[pr.UnitId.parse(uid).shard_id][2]
        self.unit(uid, {"type": "progress", "pos": str(10**20 + end), "count": 1})
        self.unit(
            uid, {"type": "finish", "pos": str(10**20 + end), "count": 1, "listing": self.listing()}
        )

    @precondition(lambda self: any(u.startswith("shard|") for u in self.running))
    @rule(data=st.data())
    def shard_finds_its_position_trimmed(self, data: st.DataObject) -> None:
        gone = sorted(
            u
            for u in self.running
            if u.startswith("shard|") and pr.UnitId.parse(u).shard_id not in self.stream
        )
        if gone:
            uid = data.draw(st.sampled_from(gone))
            self.table({"type": "resnapshot", "epoch": self.units[uid]["spec"]["epoch"]})

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def unit_fails(self, data: st.DataObject) -> None:
        self.unit(
            data.draw(st.sampled_from(sorted(self.running))), {"type": "failed", "error": "boom"}
        )

    # ---- invariants
    @invariant()
    def epochs_never_go_back(self) -> None:
        assert self.epochs == sorted(self.epochs)

    @invariant()
    def every_stored_unit_belongs_to_the_current_epoch(self) -> None:
        if self.s is None:
            assert self.units == {}
        else:
            assert set(self.units) <= set(co.all_units(self.s)), sorted(
                set(self.units) - set(co.all_units(self.s))
            )

    @invariant()
    def runners_only_for_an_active_table(self) -> None:
        active = {u for u, st_ in self.units.items() if st_["status"] == "active"}
        assert self.running == active
        if self.s is None or self.s["phase"] not in co.ACTIVE:
            assert self.running == set()

    @invariant()
    def streaming_has_exactly_its_watch_running(self) -> None:
        if self.s is not None and self.s["phase"] == "STREAMING":
            assert [u for u in self.running if u.startswith("watch|")] == [
                co.watch_unit_id("orders", self.s["epoch"], self.s.get("watch_at"))
            ]
            assert not any(u.startswith("scan|") for u in self.units)

    @invariant()
    def snapshot_items_count_each_segment_once(self) -> None:
        if self.s is None or not self.s.get("snapshot"):
            return
        snap = self.s["snapshot"]
        assert snap["done"] == sorted(set(snap["done"]))
        assert len(snap["done"]) <= snap["total"]
        assert (self.s["phase"] == "INIT_SYNC") == (len(snap["done"]) < snap["total"]) or (
            self.s["phase"] in ("STOPPED", "ERROR", "REFUSED")
        )


TestReplication = Replication.TestCase
TestReplication.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class BufferedReplication(Replication):
    """The same, with the snapshot's buffer: shards buffer while the table is scanned,
    replay units copy the buffer, shards pause, the buffer drains, shards resume."""

    def __init__(self) -> None:
        super().__init__()
        # its units are placed (app.domain.placement); Replication's are not (older tables)
        self.p = Policy(
            segments=2,
            overlap_ms=1000,
            error_retry_ms=5000,
            buffer_partitions=2,
            placement=((0, 2), (1, 3)),
        )

    def table(self, msg: dict[str, Any]) -> None:
        if msg["type"] in ("buffer_caught_up", "shard_paused") and self.s is not None:
            typed = pr.decode(co.table_key("orders"), msg)
            if isinstance(typed, pr.BufferCaughtUp):
                out = co.on_buffer_caught_up(self.s, typed, self.now)
            else:
                assert isinstance(typed, pr.ShardPaused)
                out = co.on_shard_paused(self.s, typed, self.now)
            self.s = out.state
            for key, m in out.commands:
                self.unit(key[2:], m)
            return
        super().table(msg)

    def unit(self, uid: str, msg: dict[str, Any]) -> None:
        out = on_unit(self.units.get(uid), uid, msg, 0, self.now)  # pure: asked twice
        if out.action != "pause":
            super().unit(uid, msg)
            return
        assert out.state is not None
        self.units[uid] = out.state  # the supervisor stops the runner, then says Paused
        self.running.discard(uid)
        self.unit(uid, {"type": "paused"})

    @precondition(lambda self: any(u.startswith("replay|") for u in self.running))
    @rule(data=st.data())
    def replays_reach_the_end(self, data: st.DataObject) -> None:
        replays = sorted(u for u in self.running if u.startswith("replay|"))
        for uid in data.draw(st.lists(st.sampled_from(replays), min_size=1, unique=True)):
            if uid not in self.running:
                continue  # stopped by what an earlier one caused
            if self.units[uid].get("drain"):
                self.unit(uid, {"type": "finish", "pos": 10, "count": 3})
            else:
                self.unit(uid, {"type": "caught_up"})

    @invariant()
    def every_unit_is_placed_on_a_control_partition(self) -> None:
        for uid in self.running:
            assert pr.UnitId.parse(uid).at in (0, 1, 2, 3), uid

    @invariant()
    def no_shard_writes_to_the_output_before_the_buffer_is_replayed(self) -> None:
        for uid in self.running:
            if not uid.startswith("shard|"):
                continue
            sink = self.units[uid]["spec"].get("sink", "output")
            phase = self.s["phase"] if self.s else None
            if sink == "output":
                assert phase == "STREAMING", (uid, phase)
            else:
                assert phase in ("INIT_SYNC", "CATCHING_UP", "SWITCHING"), (uid, phase)
                if phase == "SWITCHING":  # a buffering shard runs only until it paused
                    assert self.s is not None
                    buffer = self.s["buffer"]
                    assert not buffer["draining"], uid
                    assert pr.UnitId.parse(uid).shard_id in buffer["waiting"], uid


TestBufferedReplication = BufferedReplication.TestCase
TestBufferedReplication.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_a_repeated_create_of_a_finished_unit_repeats_its_unit_done():
    """The heal for a lost unit_done: discovery re-sends creates for work in progress."""
    u = on_unit(None, SCAN_UID, create(SCAN_SPEC), 0, NOW).state
    u = on_unit(u, SCAN_UID, {"type": "finish", "count": 9}, 0, NOW).state
    out = on_unit(u, SCAN_UID, create(SCAN_SPEC), 0, NOW + 60_000)
    assert out.state is u and out.action is None  # no runner starts again
    assert out.forward == [
        (
            "t:orders",
            {
                "type": "unit_done",
                "unit": SCAN_UID,
                "kind": "scan",
                "epoch": 1,
                "segment": 2,
                "shard_id": None,
                "count": 9,
                "listing": None,
            },
        )
    ]


def test_lost_unit_done_is_healed_by_the_next_discovery():
    s = new_table()  # INIT_SYNC, 3 segments; segment 1's unit_done was lost
    s = on_unit_done(s, done(0), NOW, P).state
    s = on_unit_done(s, done(2), NOW, P).state
    heal = co.on_discovered(s, info(), NOW + HOUR, P).commands
    assert keys(heal) == scan_keys(1, [1])  # only the segment still believed running
    out = on_unit_done(s, done(1), NOW + HOUR, P)  # what the repeated create brings back
    assert out.state["phase"] == "STREAMING"


# ================================================================ zero loss on the edges (issue 10)
def finish_snapshot(s: co.State, now: int, p: Policy = P) -> co.Outcome:
    out = co.Outcome(s)
    for i in range(3):
        out = on_unit_done(out.state, done(i, epoch=s["epoch"], count=10), now, p)
    return out


def test_a_snapshot_longer_than_the_retention_resnapshots_loudly():
    """Item 1: the cutoff was snapshot start - overlap however long the scan took; shards
    without a checkpoint then started at TRIM_HORIZON and skipped what was trimmed."""
    ok = finish_snapshot(new_table(), NOW + 23 * HOUR - 60_001)
    assert ok.state["phase"] == "STREAMING" and ok.events == []
    out = finish_snapshot(new_table(), NOW + 23 * HOUR - 60_000)  # cutoff 23 h old
    s = out.state
    assert (s["phase"], s["epoch"], s["resnapshots"]) == ("INIT_SYNC", 2, 1)
    assert out.events == ["resnapshot"]
    assert "snapshot took 23.0 h" in s["error"] and "retention" in s["error"]
    assert set(scan_keys(1, range(3))) <= set(keys(out.commands, "drop"))
    assert keys(out.commands, "create") == scan_keys(2, range(3))
    assert s["cutoff_ms"] == NOW + 23 * HOUR - 60_000 - P.overlap_ms


def test_the_retention_is_a_setting_so_tests_can_compress_time():
    p = Policy(segments=3, overlap_ms=1000, retention_ms=48_000)  # limit 46 s
    assert p.resume_limit_ms == 46_000
    assert finish_snapshot(new_table(p), NOW + 44_999, p).state["phase"] == "STREAMING"
    assert finish_snapshot(new_table(p), NOW + 45_000, p).events == ["resnapshot"]


def test_snapshot_only_tables_never_resnapshot_for_the_retention():
    p = Policy(mode="snapshot_only", segments=3)
    out = finish_snapshot(new_table(p), NOW + 30 * HOUR, p)
    assert out.state["phase"] == "SNAPSHOT_DONE" and out.events == []


def test_repeated_errors_do_not_reset_the_retention_clock():
    """Item 1: stopped_ms was reset on every ERROR entry; a table failing again at each
    retry (every 5 min) resumed after 24 h from trimmed positions without a word."""
    s = with_shards()
    t = NOW
    s = on_unit_failed(s, {"epoch": 1, "unit": "shard|x", "error": "AccessDenied"}, t).state
    while t < NOW + 23 * HOUR - P.error_retry_ms:
        t += P.error_retry_ms
        out = co.on_discovered(s, info(), t, P)
        assert out.state["phase"] == "STREAMING" and out.events == [], t - NOW
        t += 1000  # fails again right away
        s = on_unit_failed(out.state, {"epoch": 1, "unit": "shard|x", "error": "denied"}, t).state
    out = co.on_discovered(s, info(), t + P.error_retry_ms, P)  # >= 23 h after the 1st
    assert out.events == ["resnapshot"] and out.state["epoch"] == 2
    assert "in ERROR" in out.state["error"]


def test_a_table_that_streams_again_restarts_its_retention_clock():
    s = with_shards()
    s = co.on_sweep(s, set(), NOW).state  # STOPPED for 20 h
    s = co.on_discovered(s, info(), NOW + 20 * HOUR, P).state
    assert s["phase"] == "STREAMING" and s["halted_ms"] == NOW
    # a shard read to its end proves the positions advance
    s = on_unit_done(
        s, {"kind": "shard", "epoch": 1, "shard_id": "b", "listing": None}, NOW + 21 * HOUR, P
    ).state
    assert s["halted_ms"] is None
    s = co.on_sweep(s, set(), NOW + 22 * HOUR).state  # stopped again for 5 h: resumable
    out = co.on_discovered(s, info(), NOW + 27 * HOUR, P)
    assert out.state["phase"] == "STREAMING" and out.events == []


def test_a_table_running_without_error_for_a_while_restarts_its_retention_clock():
    s = co.on_sweep(with_shards(), set(), NOW).state
    s = co.on_discovered(s, info(), NOW + 20 * HOUR, P).state
    listing_ = listing(
        ("a", None, 0, 10), ("b", "a", 11, None), ("c", None, 5, 20), ("d", "c", 21, None)
    )
    t = NOW + 20 * HOUR + P.error_retry_ms
    assert on_shards(s, {"epoch": 1, "listing": listing_}, t, P).state["halted_ms"] == NOW
    t = NOW + 20 * HOUR + 2 * P.error_retry_ms
    assert on_shards(s, {"epoch": 1, "listing": listing_}, t, P).state["halted_ms"] is None


def test_a_forgotten_table_comes_back_with_new_unit_ids():
    """Item 2: forgotten after 24 h STOPPED, the table came back at epoch 1 and reused old
    unit ids; a worker's memory of them then repeated an old finish or resumed a cursor."""
    first = new_table()
    old_units = set(co.all_units(first))
    stopped = co.on_sweep(first, set(), NOW).state
    forgotten = co.on_sweep(stopped, set(), NOW + RETENTION_MS).state
    back = co.on_discovered(forgotten, info(), NOW + RETENTION_MS + HOUR, P)
    assert back.state["phase"] == "INIT_SYNC" and back.state["epoch"] == 2
    assert back.state["resnapshots"] == 0 and back.state["reason"] == "new"
    assert not old_units & set(co.all_units(back.state))
    assert not old_units & {k[2:] for k in keys(back.commands)}
    # a forgotten row ignores everything but a discovery
    assert co.on_stop(forgotten, "x", NOW).state is forgotten
    assert co.on_resnapshot(forgotten, "x", None, NOW, P).state is forgotten
    assert on_unit_done(forgotten, done(0), NOW, P).state is forgotten


def test_drops_of_a_superseded_epoch_are_repeated_by_the_sweeps():
    """Item 6: drops were sent once; a lost one left a unit of an old epoch that restarted
    at every rebalance."""
    s = with_shards()
    out = co.on_resnapshot(s, "requested", None, NOW, P)
    old = sorted(co.unit_key(u) for u in co.all_units(s))
    assert sorted(keys(out.commands, "drop")) == old
    state, repeats = out.state, []
    for n in range(co.RETIRED_HEALS + 2):
        swept = co.on_sweep(state, {"orders"}, NOW + n)
        repeats.append(sorted(keys(swept.commands, "drop")))
        state = swept.state
    assert repeats == [old] * co.RETIRED_HEALS + [[], []]
    assert state["retired"] is None
    # also for a forgotten table, and beside the repeated stops of a stopped one
    stopped = co.on_sweep(with_shards(), set(), NOW).state
    forgotten = co.on_sweep(stopped, set(), NOW + RETENTION_MS).state
    assert (
        sorted(keys(co.on_sweep(forgotten, set(), NOW + RETENTION_MS + 1).commands, "drop")) == old
    )


def test_a_stale_listing_never_revives_a_pruned_shard_in_the_table_state():
    """Item 4 at the table level: the pruned shard is not created again."""
    s = with_shards()  # a finished, b (child of a) running
    # b is read to its end, and a was trimmed meanwhile: a is pruned
    fresh = listing(("b", "a", 11, 30), ("c", None, 5, 20), ("d", "c", 21, None))
    s = on_unit_done(
        s, {"kind": "shard", "epoch": 1, "shard_id": "b", "listing": fresh}, NOW, P
    ).state
    assert "a" not in s["shards"] and s["shards"]["b"]["status"] == "finished"
    stale = listing(("a", None, 0, 10), ("b", "a", 11, None), ("c", None, 5, 20))
    out = on_shards(s, {"epoch": 1, "listing": stale}, NOW + 1, P)
    assert "a" not in out.state["shards"] and keys(out.commands) == []
    assert out.events == [] and out.state["epoch"] == 1


def test_a_forgotten_table_refused_then_accepted_starts_a_new_epoch_with_a_snapshot():
    """The FORGOTTEN row (item 2) meets the REFUSED phase (item 3): a forgotten table that
    comes back with an unusable stream, then a usable one, starts over with a snapshot in
    a new epoch; a late re-snapshot request never restarts a refused table."""
    stopped = co.on_sweep(streaming(), set(), NOW).state
    forgotten = co.on_sweep(stopped, set(), NOW + RETENTION_MS).state
    refused = co.on_refused(forgotten, info(view_type="OLD_IMAGE"), "OLD_IMAGE", NOW).state
    assert refused["phase"] == "REFUSED" and refused["epoch"] == 1
    assert co.on_resnapshot(refused, "late", None, NOW, P).state is refused
    out = co.on_discovered(refused, info(), NOW + HOUR, P)
    assert (out.state["phase"], out.state["epoch"]) == ("INIT_SYNC", 2)
    assert keys(out.commands, "create") == scan_keys(2, range(3))
