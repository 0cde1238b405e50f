"""In-process figures: the product's own runners against in-memory AWS fakes and the
real Kafka broker, next to a raw aiokafka producer sending the same bytes.

Run as a child process (``python -m bench.inproc '<json>'``) because app.settings reads
the environment once at import, and so that VmHWM belongs to one measurement only.
The last stdout line is the JSON result.

modes:
  ceiling  figure 1 (run_shard) and 2 (run_scan) vs raw producer, + pyinstrument profile
  memory   figure 5: 100 shard runners started by the product's Supervisor
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
import time
from typing import Any

from bench.common import BROKER, KEY_NAMES, OUT, item_pool, make_records, vm_status

PAGE = 1000  # GetRecords Limit the product uses; a 1 MB Scan page of ~1 KB items


# ---------------------------------------------------------------- in-memory AWS edges
class PagedStreams:
    """The product's ``app.aws.dynamodb.Streams`` interface over pre-built pages.

    Each shard reads ``pages`` in order; then either closes (``tail=False``: the last
    page has no next iterator, so run_shard reports ``finish`` and returns) or stays
    open returning empty pages (``tail=True``, like an idle DynamoDB shard).  Parsed
    pages: no raw transport (``raw`` None), as with DYNAMODB_RAW_HTTP=false."""

    raw = None

    def __init__(self, pages: list[list[Any]], tail: bool) -> None:
        from app.domain.model import RecordsPage, Shard, StreamDescription

        self._page, self._shard, self._desc = RecordsPage, Shard, StreamDescription
        self.pages, self.tail = pages, tail
        self.calls = 0

    async def iterator(self, stream_arn: str, shard_id: str, after_seq: str | None) -> str:
        return f"{shard_id}#0"

    async def records(self, iterator: str, shard: str, limit: int = 1000) -> Any:
        self.calls += 1
        sid, i = iterator.rsplit("#", 1)
        n = int(i)
        if n >= len(self.pages):  # tailing an idle open shard
            return self._page([], iterator)
        last = n + 1 == len(self.pages)
        return self._page(self.pages[n], None if last and not self.tail else f"{sid}#{n + 1}")

    async def describe(self, stream_arn: str) -> Any:
        return self._desc(
            stream_arn,
            "ENABLED",
            "NEW_AND_OLD_IMAGES",
            (self._shard("shardId-bench-0", None, "1", "9" * 21),),
        )


class PagedTables:
    """The product's ``app.aws.dynamodb.Tables.scan`` over pre-built pages of items (no
    raw transport)."""

    raw = None

    def __init__(self, pages: list[list[dict[str, Any]]]) -> None:
        from app.domain.model import ScanPage

        self._page, self.pages = ScanPage, pages

    async def scan(
        self, table: str, segment: int, total: int, start_key: Any, limit: int = 0
    ) -> Any:
        n = 0 if not start_key else int(start_key["sk"]["N"]) + 1
        items = self.pages[n]
        more = n + 1 < len(self.pages)
        lek = {"pk": {"S": f"cursor#{n}"}, "sk": {"N": str(n)}} if more else None
        return self._page(items, lek, consumed_capacity=len(items) * 0.125)


def _bench_runtime(streams: Any = None, tables: Any = None) -> Any:
    """The worker's real ports (settings, output, control reports), AWS replaced."""
    from agents.runners import RUNNERS
    from agents.runtime import Runtime, build_ports
    from app.main import app, settings
    from app.state import send_control, units

    async def fixed_streams() -> Any:
        return streams

    async def fixed_tables() -> Any:
        return tables

    ports = build_ports(settings, app, send_control, units.get)
    ports.streams, ports.tables = fixed_streams, fixed_tables
    return Runtime(ports, RUNNERS)


def _shard_unit(table: str, arn: str, shard: str, n: int) -> dict[str, Any]:
    from app.domain import coordinator as co

    spec = {
        "kind": "shard",
        "table": table,
        "epoch": 1,
        "key_names": list(KEY_NAMES),
        "stream_arn": arn,
        "cutoff_ms": 0,
        "snapshot_start_ms": None,
        "snapshot_end_ms": None,
        "snapshot_items": None,
        "shard_id": shard,
        "parent": None,
    }
    return {
        "id": co.shard_unit_id(table, 1, arn, shard) + f"~{n}",
        "spec": spec,
        "pos": None,
        "count": 0,
        "status": "active",
        "partition": 0,
    }


def _scan_unit(table: str, n: int) -> dict[str, Any]:
    from app.domain import coordinator as co

    spec = {
        "kind": "scan",
        "table": table,
        "epoch": 1,
        "key_names": list(KEY_NAMES),
        "stream_arn": None,
        "cutoff_ms": 0,
        "snapshot_start_ms": int(time.time() * 1000),
        "snapshot_end_ms": None,
        "snapshot_items": None,
        "segment": 0,
        "total": 1,
        "rcu": None,
    }
    return {
        "id": co.scan_unit_id(table, 1, 0, 1) + f"~{n}",
        "spec": spec,
        "pos": None,
        "count": 0,
        "status": "active",
        "partition": 0,
    }


async def _prepare(topics: list[str]) -> tuple[Any, Any]:
    from app.bootstrap import ensure_topics
    from app.main import app, settings

    p, r = settings.kafka_topic_partitions, settings.kafka_topic_replication
    await ensure_topics(
        [BROKER],
        {
            f"{settings.app_id}-control": (settings.state_partitions, r, {}),
            **{t: (p, r, {}) for t in topics},
        },
    )
    await app.producer.start()
    return app, settings


# ---------------------------------------------------------------- figure 1 + 2
async def _raw_send(raw: Any, topic: str, batches: list[list[tuple[bytes, Any]]]) -> float:
    """The floor of the send path: the product's own record-batch sender
    (``app.output.send_records``) on a bare producer, with nothing else around it."""
    from app.output import send_records

    t0 = time.perf_counter()
    for msgs in batches:
        failed = await send_records(raw, topic, msgs)
        assert not failed, failed[0][0]
    return time.perf_counter() - t0


async def _raw_send_each(raw: Any, topic: str, batches: list[list[tuple[bytes, Any]]]) -> float:
    """What a plain aiokafka application does: one send() per record, then every ack."""
    t0 = time.perf_counter()
    for msgs in batches:
        futs = [await raw.send(topic, v, key=k) for k, v in msgs]
        await asyncio.gather(*futs)
    return time.perf_counter() - t0


async def ceiling(args: dict[str, Any]) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

    from agents.runners import run_scan, run_shard
    from app.domain.envelope import SnapshotInfo

    n_pages, rounds = int(args["pages"]), int(args["rounds"])
    t_stream, t_scan = "stream-ceiling", "scan-ceiling"
    app, _settings = await _prepare([settings_topic(t_stream), settings_topic(t_scan)])
    arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{t_stream}/stream/bench"
    shard = "shardId-bench-0"

    pool = item_pool(2000)
    records = make_records(n_pages * PAGE, pool)
    rec_pages = [records[i : i + PAGE] for i in range(0, len(records), PAGE)]
    flat_items = [new for _, new in pool]
    item_pages = [
        [flat_items[(p * PAGE + j) % len(flat_items)] for j in range(PAGE)] for p in range(n_pages)
    ]
    streams, tables = PagedStreams(rec_pages, tail=False), PagedTables(item_pages)
    rt = _bench_runtime(streams, tables)

    # the same Kafka messages, encoded once, for the raw producer
    enc = rt.encoder
    stream_msgs = [
        [m for r in page for m in enc.change(t_stream, KEY_NAMES, r, arn, shard, None)]
        for page in rec_pages
    ]
    snap_start = int(time.time() * 1000)
    snap = SnapshotInfo(running=True, start_ms=snap_start, end_ms=None, count=0)
    scan_msgs = [
        [m for it in page for m in enc.snapshot(t_scan, KEY_NAMES, it, 0, 1, snap_start, snap)]
        for page in item_pages
    ]

    def encode_change() -> float:
        """Encoder only (CPU, no Kafka): the calls run_shard makes, events/s."""
        t0 = time.perf_counter()
        for page in rec_pages:
            for r in page:
                enc.change(t_stream, KEY_NAMES, r, arn, shard, None)
        return len(records) / (time.perf_counter() - t0)

    def encode_snapshot() -> float:
        t0 = time.perf_counter()
        for page in item_pages:
            for it in page:
                enc.snapshot(t_scan, KEY_NAMES, it, 0, 1, snap_start, snap)
        return n_pages * PAGE / (time.perf_counter() - t0)

    raw = AIOKafkaProducer(**app.producer._settings_default())
    await raw.start()
    counter = iter(range(10**6))

    async def product_stream(pages: int | None = None) -> float:
        streams.pages = rec_pages[:pages] if pages else rec_pages
        rt.supervisor.local_pos.clear()
        t0 = time.perf_counter()
        await run_shard(rt, _shard_unit(t_stream, arn, shard, next(counter)), asyncio.Event())
        return time.perf_counter() - t0

    async def product_scan(pages: int | None = None) -> float:
        tables.pages = item_pages[:pages] if pages else item_pages
        rt.supervisor.local_pos.clear()
        t0 = time.perf_counter()
        await run_scan(rt, _scan_unit(t_scan, next(counter)), asyncio.Event())
        return time.perf_counter() - t0

    n = n_pages * PAGE
    out: dict[str, Any] = {
        "events": n,
        "pages": n_pages,
        "kafka_msgs_stream": sum(map(len, stream_msgs)),
        "kafka_msgs_scan": sum(map(len, scan_msgs)),
        "value_bytes_stream": sum(len(v or b"") + len(k) for b in stream_msgs for k, v in b)
        // max(1, n),
        "producer": {
            k: v
            for k, v in app.producer._settings_default().items()
            if k in ("acks", "linger_ms", "max_batch_size", "compression_type", "max_request_size")
        },
    }
    # warm-up: topic metadata, connections, first batches
    await product_stream(3)
    await product_scan(3)
    await _raw_send(raw, settings_topic(t_stream), stream_msgs[:3])
    await _raw_send(raw, settings_topic(t_scan), scan_msgs[:3])
    rates: dict[str, list[float]] = {
        "stream": [],
        "stream_raw": [],
        "encode_change": [],
        "scan": [],
        "scan_raw": [],
        "encode_snapshot": [],
    }
    for _ in range(rounds):  # interleaved, so each pair shares the machine's conditions
        rates["encode_change"].append(encode_change())
        rates["stream"].append(n / await product_stream())
        rates["stream_raw"].append(n / await _raw_send(raw, settings_topic(t_stream), stream_msgs))
        rates["encode_snapshot"].append(encode_snapshot())
        rates["scan"].append(n / await product_scan())
        rates["scan_raw"].append(n / await _raw_send(raw, settings_topic(t_scan), scan_msgs))
    # note only: the same records through aiokafka's per-record send()
    await _raw_send_each(raw, settings_topic(t_stream), stream_msgs[:3])
    out["stream_raw_each"] = n / await _raw_send_each(raw, settings_topic(t_stream), stream_msgs)
    out["rates"] = rates
    out["best"] = {k: max(v) for k, v in rates.items()}
    out["median"] = {k: statistics.median(v) for k, v in rates.items()}

    # profile one more stream run (everything on the thread: runner, encoder, producer)
    from pyinstrument import Profiler

    prof = Profiler(interval=0.001, async_mode="disabled")
    prof.start()
    dt = await product_stream()
    prof.stop()
    out["profiled_rate"] = n / dt
    out["profile"] = _write_profile(prof, OUT / "profile-stream.txt", n / dt)
    await raw.stop()
    await app.producer.stop()
    return out


def settings_topic(table: str) -> str:
    from app.main import settings

    return settings.topic_for(table)


def _walk(frame: Any, acc: dict[tuple[str, str, int], list[float]], stack: tuple[Any, ...]) -> None:
    if frame.is_synthetic:  # "[self]"/"[await]" leaves: already in the parent's self time
        return
    key = (frame.function or "?", frame.file_path_short or "", frame.line_no or 0)
    a = acc.setdefault(key, [0.0, 0.0])
    a[0] += frame.total_self_time
    if key not in stack:  # inclusive time once per recursion chain
        a[1] += frame.time
    for child in frame.children:
        _walk(child, acc, (*stack, key))


def _write_profile(prof: Any, path: Any, rate: float) -> dict[str, Any]:
    session = prof.last_session
    root = session.root_frame()
    total = root.time if root is not None else 0.0
    acc: dict[tuple[str, str, int], list[float]] = {}
    if root is not None:
        _walk(root, acc, ())
    rows = sorted(acc.items(), key=lambda kv: -kv[1][0])
    top_self = [
        {
            "function": f,
            "file": p,
            "line": ln,
            "self_s": s,
            "total_s": t,
            "self_pct": 100 * s / total if total else 0.0,
        }
        for (f, p, ln), (s, t) in rows[:15]
    ]
    wanted = (
        "run_shard",
        "_deliver",
        "send_batch",
        "change",
        "native",
        "item_to_plain",
        "_conv",
        "dumps",
        "send",
        "report",
    )
    inclusive = {
        f"{f} ({p}:{ln})": {"total_s": t, "pct": 100 * t / total if total else 0.0}
        for (f, p, ln), (s, t) in acc.items()
        if f in wanted and ("app/" in p or "agents/" in p or "aiokafka" in p or "faust" in p)
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    head = (
        f"pyinstrument profile of one run_shard run: {rate:,.0f} events/s "
        f"(profiler overhead included); sampled {total:.2f}s\n\n"
    )
    flat = "\n".join(
        f"{r['self_s']:8.3f}s {r['self_pct']:5.1f}%  {r['function']}  {r['file']}:{r['line']}"
        for r in top_self
    )
    path.write_text(
        head
        + "== self time by function (top 15) ==\n"
        + flat
        + "\n\n"
        + "== call tree ==\n"
        + prof.output_text(unicode=False, color=False)
    )
    return {"total_s": total, "top_self": top_self, "inclusive": inclusive}


# ---------------------------------------------------------------- figure 5
async def memory(args: dict[str, Any]) -> dict[str, Any]:
    n_shards, n_pages = int(args["shards"]), int(args["pages"])
    table = "memory-100"
    _app, _settings = await _prepare([settings_topic(table)])
    arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/bench"
    pool = item_pool(500)
    pages = [
        make_records(PAGE, pool, seed=p, start_seq=10**20 + p * PAGE * 100) for p in range(n_pages)
    ]  # every shard reads these same record objects
    streams = PagedStreams(pages, tail=True)
    rt = _bench_runtime(streams)
    gc.collect()
    base_rss, base_hwm = vm_status("VmRSS"), vm_status("VmHWM")
    units = [_shard_unit(table, arn, f"shardId-{i:05d}", 0) for i in range(n_shards)]
    t0 = time.perf_counter()
    for u in units:
        rt.supervisor.ensure(u)
    want = n_pages * PAGE
    rss_samples = []
    while True:
        await asyncio.sleep(0.05)
        rss_samples.append(vm_status("VmRSS"))
        done = sum(1 for u in units if rt.supervisor.local_pos.get(u["id"], (None, 0))[1] >= want)
        if done == n_shards:
            break
        if time.perf_counter() - t0 > float(args.get("timeout", 240)):
            raise RuntimeError(f"only {done}/{n_shards} shards delivered their pages")
    delivered_s = time.perf_counter() - t0
    idle_calls = streams.calls
    await asyncio.sleep(float(args.get("idle", 2.0)))  # all 100 tailing idle shards
    idle_calls = streams.calls - idle_calls
    running = len(rt.supervisor.running())
    await rt.supervisor.stop_all()
    await _app.producer.stop()
    hwm = vm_status("VmHWM")
    probe = _page_memory_probe(rt.encoder, table, arn, pages[0])
    return {
        "shards": n_shards,
        "records_per_shard": want,
        "running_while_idle": running,
        "base_rss_kb": base_rss,
        "base_hwm_kb": base_hwm,
        "hwm_kb": hwm,
        "page": probe,
        "max_sampled_rss_kb": max(rss_samples),
        "delivered_s": delivered_s,
        "events_per_s": n_shards * want / delivered_s,
        "idle_polls_per_s": idle_calls / float(args.get("idle", 2.0)),
    }


def _page_memory_probe(enc: Any, table: str, arn: str, page: list[Any]) -> dict[str, Any]:
    """What one runner holds between encoding a page and its acks: the page's Kafka
    messages as run_shard builds them (Encoder.change), measured after the figure.

    ``held`` is what tracemalloc sees allocated for them (orjson.dumps hands back its
    working buffer, not a right-sized copy); ``right_sized`` the same bytes copied."""
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    msgs = [m for r in page for m in enc.change(table, KEY_NAMES, r, arn, "shardId-x", None)]
    held = tracemalloc.get_traced_memory()[0] - base
    copies = [(bytes(memoryview(k)), v if v is None else bytes(memoryview(v))) for k, v in msgs]
    right = tracemalloc.get_traced_memory()[0] - base - held
    tracemalloc.stop()
    logical = sum(len(k) + len(v or b"") for k, v in msgs)
    del copies
    return {
        "messages": len(msgs),
        "logical_bytes": logical,
        "held_bytes": held,
        "right_sized_bytes": right,
    }


def main() -> None:
    args = json.loads(sys.argv[1])
    mode = args["mode"]
    fn = {"ceiling": ceiling, "memory": memory}[mode]
    result = asyncio.run(fn(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
