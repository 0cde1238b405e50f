"""Status rows (page, JSON, CLI, progress log) from table and unit states — pure."""

from __future__ import annotations

from app.domain import coordinator as co
from app.domain.status import (
    Rates,
    checkpoints,
    duration,
    progress_line,
    refused_tables,
    table_rows,
)

NOW = 1_800_000_000_000
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026"


def table(phase: str = "INIT_SYNC", **extra) -> dict:
    s = {
        "name": "orders",
        "phase": phase,
        "epoch": 2,
        "item_count": 1000,
        "reason": "new",
        "error": None,
        "resnapshots": 1,
        "stream_arn": ARN,
        "updated_ms": NOW - 5,
        "snapshot": {
            "start_ms": NOW - 60_000,
            "end_ms": None,
            "total": 4,
            "done": [0],
            "items": 250,
            "rcu": None,
        },
        "shards": {},
    }
    s.update(extra)
    return s


def scan(seg: int, count: int, epoch: int = 2) -> tuple[str, dict]:
    uid = co.scan_unit_id("orders", epoch, seg, 4)
    return uid, {
        "id": uid,
        "spec": {"kind": "scan", "table": "orders", "epoch": epoch, "segment": seg, "total": 4},
        "status": "active",
        "pos": {"pk": {"s": f"c{seg}"}},
        "count": count,
    }


def shard(
    sid: str, count: int, lag_ms: int | None, ts_ms: int | None, status: str = "active"
) -> tuple[str, dict]:
    uid = co.shard_unit_id("orders", 2, ARN, sid)
    return uid, {
        "id": uid,
        "spec": {"kind": "shard", "table": "orders", "epoch": 2, "shard_id": sid, "parent": None},
        "status": status,
        "pos": "123",
        "count": count,
        "lag_ms": lag_ms,
        "ts_ms": ts_ms,
    }


def test_rate_over_a_full_window_and_over_work_that_just_began():
    r = Rates(window_ms=10_000)
    for i in range(20):  # 50 items every 500 ms for 10 s
        r.add("t", "scan", NOW - 10_000 + i * 500, 50)
    assert r.per_second("t", "scan", NOW) == 100.0
    r2 = Rates(window_ms=30_000)
    r2.add("t", "scan", NOW - 4000, 400)  # how long this first page took is unknown
    r2.add("t", "scan", NOW - 2000, 200)
    r2.add("t", "scan", NOW, 200)
    assert r2.per_second("t", "scan", NOW) == 100.0  # 400 items over the last 4 s
    assert r2.per_second("t", "shard", NOW) == 0.0
    r2.add("t", "scan", NOW, -5)  # a count that went back (new epoch) is no work
    assert r2.per_second("t", "scan", NOW + 40_000) == 0.0  # all older than the window


def test_init_sync_row_sums_finished_and_running_segments_with_eta():
    units = dict(
        [scan(0, 250), scan(1, 100), scan(2, 150), scan(3, 0), scan(1, 999, epoch=1)]
    )  # an old epoch's unit is not counted
    rates = Rates(window_ms=10_000)
    rates.add("orders", "scan", NOW - 10_000, 100)
    rates.add("orders", "scan", NOW - 5_000, 400)
    (row,) = table_rows({"orders": table()}, units, rates, NOW)
    snap = row["snapshot"]
    # 250 (segment 0, done) + 100 + 150 + 0 running
    assert (snap["items"], snap["segments_done"], snap["segments_total"]) == (500, 1, 4)
    assert snap["percent"] == 50.0 and snap["items_per_s"] == 50.0
    assert snap["eta_s"] == 10  # 500 items left at 50/s
    assert row["phase"] == "INIT_SYNC" and row["lag_s"] is None
    assert progress_line(row) == (
        "orders: INIT_SYNC 50.0% (500 items of ~1,000; 1/4 segments done), 50 items/s, ETA 10s"
    )


def test_estimate_overtaken_or_missing():
    units = dict([scan(1, 900)])
    (row,) = table_rows({"orders": table()}, units, Rates(), NOW)
    assert row["snapshot"]["percent"] == 99.9 and row["snapshot"]["eta_s"] is None
    (row,) = table_rows({"orders": table(item_count=0)}, units, Rates(), NOW)
    assert row["snapshot"]["percent"] == 25.0  # 1 of 4 segments
    assert "of ~" not in progress_line(row) and "ETA -" in progress_line(row)


def test_streaming_row_lag_shards_and_events():
    shards = {
        "s1": {"parent": None, "status": "finished"},
        "s2": {"parent": "s1", "status": "running"},
        "s3": {"parent": "s1", "status": "running"},
        "s4": {"parent": "s2", "status": "pending"},
    }
    s = table("STREAMING", shards=shards)
    s["snapshot"] = {**s["snapshot"], "end_ms": NOW - 1000, "done": [0, 1, 2, 3], "items": 990}
    units = dict(
        [
            shard("s1", 10, 50, NOW - 90_000, "finished"),
            shard("s2", 5, 1200, NOW - 3000),
            shard("s3", 7, 300, NOW - 2000),
        ]
    )
    rates = Rates(window_ms=10_000)
    rates.add("orders", "shard", NOW - 9_500, 30)
    (row,) = table_rows({"orders": s}, units, rates, NOW)
    assert row["shards"] == {"open": 2, "finished": 1, "pending": 1, "total": 4}
    assert row["events"] == 22 and row["events_per_s"] == 3.0
    assert row["lag_s"] == 1.2  # the worst open shard, finished ones aside
    assert row["last_event_age_s"] == 2.0
    assert row["snapshot"]["percent"] == 100.0 and row["snapshot"]["items"] == 990
    assert progress_line(row) is None


def test_error_and_stopped_rows():
    (row,) = table_rows({"orders": table("ERROR", error="AccessDenied: no")}, {}, Rates(), NOW)
    assert row["error"] == "AccessDenied: no" and row["phase"] == "ERROR"
    (row,) = table_rows({"orders": table("STOPPED", snapshot=None)}, {}, Rates(), NOW)
    assert row["snapshot"] is None and row["shards"]["total"] == 0


def test_a_forgotten_tables_epoch_record_is_not_a_row():
    rows = table_rows(
        {
            "gone": {"name": "gone", "phase": "FORGOTTEN", "epoch": 3},
            "orders": table("STOPPED", snapshot=None),
        },
        {},
        Rates(),
        NOW,
    )
    assert [r["table"] for r in rows] == ["orders"]


def test_refused_row_says_why():
    reason = "stream view type OLD_IMAGE carries no new item image"
    refused = co.on_refused(
        None, {"name": "old", "stream_arn": ARN, "view_type": "OLD_IMAGE"}, reason, NOW
    ).state
    tables = {"old": refused, "orders": table("STREAMING")}
    rows = {r["table"]: r for r in table_rows(tables, {}, Rates(), NOW)}
    assert (rows["old"]["phase"], rows["old"]["refused"], rows["old"]["error"]) == (
        "REFUSED",
        reason,
        reason,
    )
    assert rows["old"]["snapshot"] is None and progress_line(rows["old"]) is None
    assert rows["orders"]["refused"] is None
    assert refused_tables(tables) == {"old": reason}
    # no longer discovered: STOPPED, no longer counted as refused
    swept = co.on_sweep(refused, set(), NOW).state
    assert refused_tables({"old": swept}) == {}


def test_checkpoints_lists_the_current_epoch_units():
    units = dict([scan(0, 5), scan(2, 9, epoch=1), shard("s9", 4, 10, NOW)])
    cps = checkpoints("orders", {"orders": table()}, units)
    assert [(c["unit"], c["where"], c["count"]) for c in cps] == [
        ("scan", "segment 0/4", 5),
        ("shard", "s9", 4),
    ]
    assert cps[1]["position"] == "123" and checkpoints("nope", {}, units) == []


def test_duration():
    assert [duration(x) for x in (None, 5, 65, 3725)] == ["-", "5s", "1m05s", "1h02m"]


def test_the_snapshots_buffer_is_shown_while_it_is_in_use():
    buffer = {"partitions": 2, "caught_up": [1], "waiting": None, "draining": False, "done": []}
    s = table("CATCHING_UP", buffer=buffer)
    r0 = co.replay_unit_id("orders", 2, 0)
    r1 = co.replay_unit_id("orders", 2, 1)
    units = dict([shard("a", 40, None, NOW - 9), shard("b", 2, None, NOW - 9)])
    for uid, p, count in ((r0, 0, 7), (r1, 1, 30)):
        spec = {"kind": "replay", "table": "orders", "epoch": 2, "partition": p, "partitions": 2}
        units[uid] = {"id": uid, "spec": spec, "status": "active", "pos": count, "count": count}
    (row,) = table_rows({"orders": s}, units, Rates(), NOW)
    assert row["phase"] == "CATCHING_UP"
    assert row["buffer"] == {
        "partitions": 2,
        "buffered": 42,
        "replayed": 37,
        "partitions_caught_up": 1,
        "shards_to_pause": 0,
        "draining": False,
        "partitions_done": 0,
    }
    switching = {**buffer, "caught_up": [0, 1], "waiting": ["b"]}
    (row,) = table_rows({"orders": table("SWITCHING", buffer=switching)}, units, Rates(), NOW)
    assert row["buffer"]["shards_to_pause"] == 1 and row["buffer"]["partitions_caught_up"] == 2
    (row,) = table_rows({"orders": table("STREAMING", buffer=buffer)}, units, Rates(), NOW)
    assert row["buffer"] is None  # replayed: nothing held any more
