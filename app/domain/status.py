"""What the status page, the CLI and the progress log say about each table — pure.

Input: the ``tables`` and ``units`` state rows (app.domain.coordinator) as the cluster
stored them, plus the count increments seen over time (:class:`Rates`).  Output: one
JSON-able row per table.  No I/O, no clock: ``now_ms`` is passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from app.domain.coordinator import TableState
from app.domain.protocol import UnitId

RATE_WINDOW_MS = 30_000


class Rates:
    """Events (stream) and items (snapshot) per table over a sliding window, from the
    count increments of their units and the time each was stored."""

    def __init__(self, window_ms: int = RATE_WINDOW_MS) -> None:
        self.window_ms = window_ms
        self._seen: dict[tuple[str, str], deque[tuple[int, int]]] = {}

    def add(self, table: str, kind: str, ts_ms: int, delta: int) -> None:
        if delta > 0:
            self._seen.setdefault((table, kind), deque()).append((ts_ms, delta))

    def per_second(self, table: str, kind: str, now_ms: int) -> float:
        seen = self._seen.get((table, kind))
        if not seen:
            return 0.0
        start = now_ms - self.window_ms
        while seen and seen[0][0] < start:
            seen.popleft()
        if not seen:
            return 0.0
        first_ts = seen[0][0]
        if first_ts - start < 1000:  # the window is covered
            return sum(d for _, d in seen) * 1000.0 / self.window_ms
        # work that began inside the window: the first increment's own duration is
        # unknown, so measure from it
        span_ms = max(1000, now_ms - first_ts)
        return sum(d for _, d in list(seen)[1:]) * 1000.0 / span_ms

    def forget(self, table: str) -> None:
        for key in [k for k in self._seen if k[0] == table]:
            del self._seen[key]


def _snapshot(
    s: TableState, scans: list[Mapping[str, Any]], rate: float, running: bool
) -> dict[str, Any] | None:
    snap = s.get("snapshot")
    if not snap:
        return None
    done = set(snap.get("done") or [])
    total = int(snap.get("total") or 0)
    if running:  # finished segments are summed in snap.items; running ones in their unit
        items = int(snap.get("items") or 0) + sum(
            int(u.get("count") or 0) for u in scans if u["spec"].get("segment") not in done
        )
    else:
        items = int(snap.get("items") or 0)
    estimate = int(s.get("item_count") or 0)
    if not running:
        percent = 100.0
    elif estimate > 0:  # ItemCount is refreshed by AWS about every 6 hours: an estimate
        percent = min(99.9, 100.0 * items / estimate)
    else:
        percent = 100.0 * len(done) / total if total else 0.0
    eta = None
    if running and rate > 0 and estimate > items:
        eta = (estimate - items) / rate
    return {
        "segments_done": len(done),
        "segments_total": total,
        "items": items,
        "item_count_estimate": estimate,
        "percent": round(percent, 1),
        "items_per_s": round(rate, 1),
        "eta_s": None if eta is None else round(eta),
        "start_ms": snap.get("start_ms"),
        "end_ms": snap.get("end_ms"),
    }


def refusal_reason(s: TableState) -> str | None:
    """The reason a REFUSED table is refused (app.domain.coordinator.on_refused)."""
    if s.get("phase") != "REFUSED":
        return None
    refused = s.get("refused")
    return str((refused.get("reason") if refused else None) or s.get("error") or "refused")


def refused_tables(tables: Mapping[str, TableState]) -> dict[str, str]:
    """{table: reason} of every refused table (the ``tables_refused`` gauge)."""
    return {name: reason for name, s in tables.items() if (reason := refusal_reason(s)) is not None}


def table_rows(
    tables: Mapping[str, TableState],
    units: Mapping[str, Mapping[str, Any]],
    rates: Rates,
    now_ms: int,
) -> list[dict[str, Any]]:
    by_table: dict[str, list[Mapping[str, Any]]] = {}
    for uid, u in units.items():
        unit = UnitId.parse(uid)
        t = tables.get(unit.table)
        if t is not None and t.get("epoch") == unit.epoch:
            by_table.setdefault(unit.table, []).append(u)
    rows = []
    for name in sorted(tables):
        s = tables[name]
        if s.get("phase") == "FORGOTTEN":  # a former table's epoch record, not a table
            continue
        mine = by_table.get(name, [])
        scans = [u for u in mine if u["spec"]["kind"] == "scan"]
        shard_units = [u for u in mine if u["spec"]["kind"] == "shard"]
        replays = [u for u in mine if u["spec"]["kind"] == "replay"]
        shards = s.get("shards") or {}
        statuses = [e.get("status") for e in shards.values()]
        streaming = s.get("phase") == "STREAMING"
        lags = [
            int(u["lag_ms"])
            for u in shard_units
            if u.get("status") == "active" and u.get("lag_ms") is not None
        ]
        last_ts = [int(u["ts_ms"]) for u in shard_units if u.get("ts_ms")]
        rows.append(
            {
                "table": name,
                "phase": s.get("phase"),
                "epoch": s.get("epoch"),
                "reason": s.get("reason"),
                "error": s.get("error"),
                # why discovery refuses the table (phase REFUSED), e.g. a KEYS_ONLY stream
                "refused": refusal_reason(s),
                "resnapshots": int(s.get("resnapshots") or 0),
                "snapshot": _snapshot(
                    s, scans, rates.per_second(name, "scan", now_ms), s.get("phase") == "INIT_SYNC"
                ),
                "shards": {
                    "open": statuses.count("running"),
                    "finished": statuses.count("finished"),
                    "pending": statuses.count("pending"),
                    "total": len(statuses),
                },
                "events": sum(int(u.get("count") or 0) for u in shard_units),
                "buffer": _buffer(s, shard_units, replays),
                "events_per_s": round(rates.per_second(name, "shard", now_ms), 1),
                # delivery time - ApproximateCreationDateTime, worst open shard, last batch
                "lag_s": round(max(lags) / 1000, 3) if streaming and lags else None,
                # now - ApproximateCreationDateTime of the newest record delivered
                "last_event_age_s": round((now_ms - max(last_ts)) / 1000, 1) if last_ts else None,
                "stream_arn": s.get("stream_arn"),
                "updated_ms": s.get("updated_ms"),
            }
        )
    return rows


def _buffer(
    s: TableState,
    shard_units: list[Mapping[str, Any]],
    replays: list[Mapping[str, Any]],
) -> dict[str, Any] | None:
    """The snapshot's buffer while it is in use: changes buffered, copied out, and where
    the switch to direct output stands."""
    buffer = s.get("buffer")
    if not buffer or s.get("phase") not in ("INIT_SYNC", "CATCHING_UP", "SWITCHING"):
        return None
    return {
        "partitions": buffer["partitions"],
        # events the shards sent while the table was scanned: into the buffer
        "buffered": sum(int(u.get("count") or 0) for u in shard_units),
        "replayed": sum(int(u.get("count") or 0) for u in replays),
        "partitions_caught_up": len(buffer.get("caught_up") or []),
        "shards_to_pause": len(buffer.get("waiting") or []),
        "draining": bool(buffer.get("draining")),
        "partitions_done": len(buffer.get("done") or []),
    }


def checkpoints(
    table: str, tables: Mapping[str, TableState], units: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Every unit of the table's current epoch with its position (for the CLI)."""
    s = tables.get(table)
    if s is None:
        return []
    out = []
    for uid, u in sorted(units.items()):
        unit = UnitId.parse(uid)
        if unit.table != table or unit.epoch != s.get("epoch"):
            continue
        kind, spec = unit.kind, u["spec"]
        where = (
            spec.get("shard_id")
            if kind == "shard"
            else f"segment {spec.get('segment')}/{spec.get('total')}"
            if kind == "scan"
            else "stream watcher"
        )
        out.append(
            {
                "unit": kind,
                "where": where,
                "status": u.get("status"),
                "position": u.get("pos"),
                "count": int(u.get("count") or 0),
                "parent": spec.get("parent"),
                "updated_ms": u.get("updated_ms"),
            }
        )
    return out


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_line(row: Mapping[str, Any]) -> str | None:
    """One log line for a table in INIT_SYNC, else None."""
    snap = row.get("snapshot")
    if row.get("phase") != "INIT_SYNC" or not snap:
        return None
    est = snap["item_count_estimate"]
    of = f" of ~{est:,}" if est else ""
    return (
        f"{row['table']}: INIT_SYNC {snap['percent']:.1f}% ({snap['items']:,} items{of}; "
        f"{snap['segments_done']}/{snap['segments_total']} segments done), "
        f"{snap['items_per_s']:,.0f} items/s, ETA {duration(snap['eta_s'])}"
    )
