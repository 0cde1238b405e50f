"""ClusterView folds changelog records (JSON key/value, None = deleted) into state + rates."""

from __future__ import annotations

import json
from types import SimpleNamespace

from app.cluster_view import ClusterView
from app.domain import coordinator as co

NOW = 1_800_000_000_000
T, U = "app-tables-changelog", "app-units-changelog"


def rec(view: ClusterView, topic: str, key: str, value: dict | None, ts: int) -> None:
    view.apply(
        topic, json.dumps(key).encode(), None if value is None else json.dumps(value).encode(), ts
    )


def test_latest_row_wins_deletes_forget_and_counts_become_rates():
    view = ClusterView(SimpleNamespace(app_id="app", broker_url=("kafka://x:9092",)))
    state = {
        "name": "orders",
        "phase": "INIT_SYNC",
        "epoch": 1,
        "item_count": 100,
        "snapshot": {"start_ms": NOW, "end_ms": None, "total": 1, "done": [], "items": 0},
        "shards": {},
    }
    rec(view, T, "orders", state, NOW - 30_000)
    uid = co.scan_unit_id("orders", 1, 0, 1)
    spec = {"kind": "scan", "table": "orders", "epoch": 1, "segment": 0, "total": 1}
    for i, count in enumerate((10, 30, 60)):  # three pages, 1 s apart
        rec(
            view,
            U,
            uid,
            {"id": uid, "spec": spec, "status": "active", "count": count},
            NOW - 2000 + i * 1000,
        )
    (row,) = view.rows(NOW)
    assert row["snapshot"]["items"] == 60
    assert row["snapshot"]["items_per_s"] == 25.0  # 50 items over the last 2 s
    rec(view, U, uid, None, NOW)  # dropped unit
    rec(view, T, "gone", {**state, "name": "gone"}, NOW)
    rec(view, T, "gone", None, NOW)
    assert list(view.tables) == ["orders"] and view.units == {} and view.records == 7
    view.apply(U, None, b"{}", NOW)  # a keyless record is not ours: ignored
    assert view.records == 7


def test_records_that_are_not_the_replicators_are_skipped_not_raised():
    """Issue 11 item 2: one foreign record in a changelog made the view raise on every
    re-read (e.g. an item of a table named replicator-tables-changelog)."""
    view = ClusterView(SimpleNamespace(app_id="app", broker_url=("kafka://x:9092",)))
    view.apply_or_skip(T, b'{"pk":"item-1"}', b'{"op":"r"}', NOW)  # key is not a name
    view.apply_or_skip(T, b"not json", b"{}", NOW)
    view.apply_or_skip(U, json.dumps("no-unit-id").encode(), b'{"count": 1}', NOW)
    view.apply_or_skip(U, json.dumps("scan|t|1|0|1").encode(), b'"a string"', NOW)
    assert view.skipped == 4 and view.units == {} and view.tables == {}
    rec(view, T, "orders", {"name": "orders", "phase": "STREAMING", "epoch": 1}, NOW)
    assert view.tables["orders"]["phase"] == "STREAMING"
    assert [r["table"] for r in view.rows(NOW)] == ["orders"]  # the page still renders
