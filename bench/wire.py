"""Figure 7, "from the wire": a real `faust -A app worker` reads GetRecords and Scan
bodies from a local HTTP endpoint that answers at wire speed, end to end into Kafka,
next to two raw producers sending the same bytes in the same run: aiokafka's record-batch
path (what the product uses) and confluent-kafka (librdkafka).

    python -m bench.wire serve --port 8124 --moto http://127.0.0.1:5000   (the endpoint)
    python -m bench.wire '{"stream_pages": 48, "busy_shards": 16, ...}'  (the references)

The endpoint answers DescribeStream, GetShardIterator and GetRecords for the streams it
was told to generate, and Scan for the tables it was told to generate, with pages built
once when they are registered (so serving costs a socket write, not JSON encoding):
1000 NEW_AND_OLD_IMAGES records of ~2.4 KB per GetRecords page, 1000 items of ~1 KB per
Scan page (bench.common's items: S, N, BOOL, SS, NS, B, M, L, NULL).  Every other
request (DescribeTable, ...) is passed through to moto, where the tables really exist
(discovery by tag, DescribeTable).

A generated stream has ``busy`` shards that share its pages round robin (page g goes to
busy shard g mod busy; keys distinct over the whole stream, sequence numbers increasing
within each shard), then answer empty pages for ever, and ``idle`` shards that only ever
answer empty pages.  Many busy shards at once, because that is what a per-worker figure
can meet: a stream shard follows one table partition, and one partition takes at most
1,000 write units/s ("each individual partition is limited to 1000 write units per
second and 3000 read units per second", DynamoDB Developer Guide, warm throughput
scenarios); GetRecords returns at most 1000 records or 1 MB a call, and more than two
readers of a shard at a time get throttled (LimitExceededException, DynamoDB Streams API
reference).  So one shard can never feed a worker tens of thousands of events a second;
a large table's stream has many shards that a worker reads at once.  (The "5 GetRecords
calls per second per shard" figure is Kinesis Data Streams'; the DynamoDB Streams
reference found states no per-shard call rate beyond the two-readers limit.)  The
endpoint counts GetRecords calls per shard, so the bench reads the calls per idle shard
per second at the product's default DYNAMODB_POLL_INTERVAL."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import re
import sys
import time
from collections import Counter
from typing import Any, Self

import orjson

from bench.common import KEY_NAMES, make_item

PAGE = 1000
SEQ_BASE = 4 * 10**20
SEQ_STEP = 10
BUSY = "shardId-00000001764300000000-busy"  # + 3 digits; ShardId: 28 to 65 characters
STREAM_PAD = 380  # make_item padding: ~2.4 KB per NEW_AND_OLD_IMAGES record on the wire
SCAN_PAD = 290  # ~1 KB per item on the wire
POOL = 500  # distinct item bodies; keys are made unique per record
log = logging.getLogger("bench.wire")
_pools: dict[int, list[tuple[dict[str, Any], dict[str, Any]]]] = {}


def _pool(pad: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    if pad not in _pools:
        _pools[pad] = [
            (_wire_item(make_item(i, 0, pad)), _wire_item(make_item(i, 1, pad)))
            for i in range(POOL)
        ]
    return _pools[pad]


def _keyed(item: dict[str, Any], i: int) -> dict[str, Any]:
    return {**item, "pk": {"S": f"customer#{i:08d}"}, "sk": {"N": str(i)}}


def _json(doc: Any) -> bytes:
    return orjson.dumps(doc, default=lambda b: base64.b64encode(bytes(b)).decode())


def _wire_item(item: dict[str, Any]) -> dict[str, Any]:
    """An item as the wire carries it (binary as base64 text)."""
    return dict(orjson.loads(_json(item)))


def busy_shard(k: int) -> str:
    return f"{BUSY}{k:03d}"


def stream_layout(pages: int, busy: int) -> dict[str, list[int]]:
    """Busy shard id -> the stream's page numbers it serves, in order (round robin)."""
    return {busy_shard(k): list(range(k, pages, busy)) for k in range(min(busy, pages))}


def stream_page(page: int, next_iterator: str, ts: int) -> bytes:
    """GetRecords page ``page`` of a stream: 1000 MODIFY records, keys distinct over the
    stream, sequence numbers increasing with ``page`` (so within each shard)."""
    records = []
    pool = _pool(STREAM_PAD)
    for j in range(PAGE):
        i = page * PAGE + j
        old, new = (_keyed(image, i) for image in pool[i % POOL])
        records.append(
            {
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": ts,
                    "Keys": {k: new[k] for k in KEY_NAMES},
                    "NewImage": new,
                    "OldImage": old,
                    "SequenceNumber": str(SEQ_BASE + i * SEQ_STEP),
                    "SizeBytes": 2000,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
                "eventID": f"e{i}",
                "eventName": "MODIFY",
                "eventSource": "aws:dynamodb",
                "eventVersion": "1.1",
            }
        )
    return _json({"Records": records, "NextShardIterator": next_iterator})


def stream_bodies(sid: int, pages: int, busy: int, ts: int) -> dict[str, list[bytes]]:
    """Busy shard id -> its GetRecords bodies (stream ``sid`` of the endpoint)."""
    return {
        shard: [stream_page(g, f"gen|{sid}|{shard}|{p + 1}", ts) for p, g in enumerate(gs)]
        for shard, gs in stream_layout(pages, busy).items()
    }


def scan_page(segment: int, page: int, per_segment: int, table: str) -> bytes:
    pool, first = _pool(SCAN_PAD), (segment * per_segment + page) * PAGE
    items = [_keyed(pool[(first + j) % POOL][1], first + j) for j in range(PAGE)]
    doc: dict[str, Any] = {
        "Items": items,
        "Count": PAGE,
        "ScannedCount": PAGE,
        "ConsumedCapacity": {"TableName": table, "CapacityUnits": 128.0},
    }
    if page + 1 < per_segment:
        doc["LastEvaluatedKey"] = {"pk": {"S": "cursor"}, "sk": {"N": str(page + 1)}}
    return _json(doc)


# ---------------------------------------------------------------- the endpoint
class Endpoint:
    def __init__(self, moto_url: str) -> None:
        self.moto_url = moto_url
        self.streams: dict[str, dict[str, Any]] = {}  # arn -> {sid, table, busy, idle, bodies}
        self.scans: dict[str, dict[str, Any]] = {}  # table -> {total, per, bodies}
        self.calls: Counter[str] = Counter()  # GetRecords calls per "<sid>|<shard id>"
        self.by_sid: list[dict[str, Any]] = []
        self.http: Any = None

    async def api(self, request: Any) -> Any:
        from aiohttp import web

        target = request.headers.get("X-Amz-Target", "")
        body = await request.read()
        op = target.rpartition(".")[2]
        req = orjson.loads(body) if body else {}
        answer: bytes | None = None
        if op == "GetRecords" and req.get("ShardIterator", "").startswith("gen|"):
            answer = self.get_records(req["ShardIterator"])
        elif op in ("DescribeStream", "GetShardIterator") and req.get("StreamArn") in self.streams:
            answer = (
                self.describe(req["StreamArn"]) if op == "DescribeStream" else self.iterator(req)
            )
        elif op == "Scan" and req.get("TableName") in self.scans:
            answer = self.scan(req)
        if answer is not None:
            return web.Response(body=answer, content_type="application/x-amz-json-1.0")
        return await self.proxy(request, body)

    async def proxy(self, request: Any, body: bytes) -> Any:
        from aiohttp import web

        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        async with self.http.post(self.moto_url + "/", data=body, headers=headers) as resp:
            payload = await resp.read()
            return web.Response(
                body=payload,
                status=resp.status,
                content_type=resp.content_type or "application/x-amz-json-1.0",
            )

    def describe(self, arn: str) -> bytes:
        s = self.streams[arn]
        idle = [f"shardId-00000001764300000001-idle{i:03d}" for i in range(s["idle"])]
        return _json(
            {
                "StreamDescription": {
                    "StreamArn": arn,
                    "StreamStatus": "ENABLED",
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                    "TableName": s["table"],
                    "Shards": [
                        {"ShardId": sid, "SequenceNumberRange": {"StartingSequenceNumber": "1"}}
                        for sid in [*s["bodies"], *idle]
                    ],
                }
            }
        )

    def iterator(self, req: dict[str, Any]) -> bytes:
        s, page = self.streams[req["StreamArn"]], 0
        if req.get("SequenceNumber"):  # a restart or expiry: from the page holding it
            g = (int(req["SequenceNumber"]) - SEQ_BASE) // SEQ_STEP // PAGE  # stream page
            page = g // int(s["busy"])  # its place in its shard (round robin)
        return _json({"ShardIterator": f"gen|{s['sid']}|{req['ShardId']}|{max(page, 0)}"})

    def get_records(self, iterator: str) -> bytes:
        _, sid, shard, page = iterator.split("|")
        self.calls[f"{sid}|{shard}"] += 1
        bodies = self.by_sid[int(sid)]["bodies"].get(shard, [])
        if int(page) < len(bodies):
            return bodies[int(page)]  # type: ignore[no-any-return]
        return _json({"Records": [], "NextShardIterator": iterator})

    def scan(self, req: dict[str, Any]) -> bytes:
        s = self.scans[req["TableName"]]
        if int(req.get("TotalSegments", 1)) != s["total"]:
            raise ValueError(f"scan registered for {s['total']} segments, got {req}")
        start = req.get("ExclusiveStartKey")
        page = int(start["sk"]["N"]) if start else 0
        return s["bodies"][(int(req.get("Segment", 0)), page)]  # type: ignore[no-any-return]

    async def control(self, request: Any) -> Any:
        from aiohttp import web

        msg = await request.json()
        op = msg.pop("op")
        if op == "stream":  # one more generated stream (its own table and ARN)
            sid, ts = len(self.by_sid), int(time.time())
            bodies = stream_bodies(sid, int(msg["pages"]), int(msg["busy"]), ts)
            self.streams[msg["arn"]] = s = {**msg, "sid": sid, "bodies": bodies}
            self.by_sid.append(s)
            first = next(iter(bodies.values()))[0]
            return web.json_response({"bytes_per_record": len(first) / PAGE, "sid": sid})
        if op == "scan":
            total, pages = int(msg["total"]), int(msg["pages"])
            per = pages // total
            scan_bodies = {
                (seg, p): scan_page(seg, p, per, msg["table"])
                for seg in range(total)
                for p in range(per)
            }
            self.scans[msg["table"]] = {"total": total, "per": per, "bodies": scan_bodies}
            return web.json_response({"bytes_per_item": len(scan_bodies[(0, 0)]) / PAGE})
        if op == "stats":
            return web.json_response({"calls": dict(self.calls), "now": time.monotonic()})
        return web.json_response({"error": f"unknown op {op}"}, status=400)


async def serve(port: int, moto_url: str) -> None:
    import aiohttp
    from aiohttp import web

    endpoint = Endpoint(moto_url)
    endpoint.http = aiohttp.ClientSession()
    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post("/", endpoint.api)
    app.router.add_post("/_control", endpoint.control)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    log.info("wire endpoint on http://127.0.0.1:%d (moto %s)", port, moto_url)
    await asyncio.Event().wait()


# ---------------------------------------------------------------- the raw references
Groups = list[list[list[tuple[bytes, bytes | None]]]]  # shard/segment -> pages -> messages


async def aiokafka_reference(topic: str, stream: Groups, scan: Groups) -> dict[str, float]:
    """aiokafka with the Faust producer's settings, through the product's record-batch
    sender (``app.output.send_records``): "pages" sends the pages one after the other,
    each acknowledged before the next (the previous figure's reference); "groups" runs
    one such loop per shard / scan segment at once, as a worker reading them all does."""
    from aiokafka import AIOKafkaProducer

    from app.main import app
    from app.output import classify, send_records

    producer: Any = app.producer  # Faust's aiokafka Producer (its settings, not its type)
    raw = AIOKafkaProducer(**producer._settings_default())
    await raw.start()

    retries = 0

    async def pages(group: list[list[Any]]) -> None:
        """Each page sent and acknowledged, then the next.  What failed is sent again
        after 0.1 s, as a runner does (agents.runners): with many pages waiting for the
        same partitions, aiokafka's ``add_batch`` raises KafkaTimeoutError long before
        its request timeout (its wait loop subtracts the time elapsed since it began
        from the time left on every wake-up), seen with 16 shards on 3 partitions."""
        nonlocal retries
        for msgs in group:
            while failed := await send_records(raw, topic, msgs):
                assert all(classify(e) in ("timeout", "retry") for e, _ in failed), failed[0][0]
                retries += 1
                msgs = [m for _, ms in failed for m in ms]
                await asyncio.sleep(0.1)

    async def timed(groups: Groups, mode: str) -> float:
        t0 = time.perf_counter()
        if mode == "pages":
            await pages([m for g in groups for m in g])
        else:
            await asyncio.gather(*(pages(g) for g in groups))
        return sum(len(m) for g in groups for m in g) / (time.perf_counter() - t0)

    try:
        await pages(stream[0][:1])  # warm-up: metadata, connections
        out: dict[str, list[float]] = {}
        for rnd in range(2):  # the table's mode twice, the one-page-at-a-time one once
            for what, groups in (("stream", stream), ("scan", scan)):
                for mode in ("pages", "groups")[1 if rnd else 0 :]:
                    out.setdefault(f"{what}_{mode}", []).append(await timed(groups, mode))
    finally:
        await raw.stop()
    return {k: max(v) for k, v in out.items()} | {"retries": retries}


def confluent_reference(topic: str, stream: Groups, scan: Groups) -> dict[str, float]:
    """confluent-kafka (librdkafka) with the product's producer settings (app.main: acks
    all, linger 5 ms, 1 MiB batches, no compression, the request size limit; Java's
    murmur2 partitioner, as app.domain.partition): the same messages in the same two
    modes as ``aiokafka_reference`` (a page is done when all its delivery reports came)."""
    from confluent_kafka import Producer

    from app.main import app
    from bench.common import BROKER

    faust_producer: Any = app.producer
    d = faust_producer._settings_default()
    assert d["compression_type"] is None and d["acks"] == -1, d
    p = Producer(
        {
            "bootstrap.servers": BROKER,
            "acks": "all",
            "linger.ms": d["linger_ms"],
            "batch.size": d["max_batch_size"],
            "message.max.bytes": d["max_request_size"],
            "compression.type": "none",
            "partitioner": "murmur2_random",
            "request.timeout.ms": d["request_timeout_ms"],
        }
    )
    errors: list[Any] = []

    def run(groups: Groups) -> None:
        todo = [list(g) for g in groups]  # pages still to send, per group
        left = [0] * len(groups)  # delivery reports awaited, per group's current page

        def submit(k: int) -> None:
            msgs = todo[k].pop(0)
            left[k] = len(msgs)

            def done(err: Any, _msg: Any) -> None:
                if err is not None:
                    errors.append(err)
                left[k] -= 1

            for key, value in msgs:
                while True:
                    try:
                        p.produce(topic, value=value, key=key, on_delivery=done)
                        break
                    except BufferError:  # the local queue is full: serve reports
                        p.poll(0.01)

        for k in range(len(groups)):
            if todo[k]:
                submit(k)
        while any(left):
            p.poll(0.001)
            for k in range(len(groups)):
                if not left[k] and todo[k]:
                    submit(k)
        assert not errors, errors[0]

    def timed(groups: Groups, mode: str) -> float:
        t0 = time.perf_counter()
        run([[m for g in groups for m in g]] if mode == "pages" else groups)
        return sum(len(m) for g in groups for m in g) / (time.perf_counter() - t0)

    run([stream[0][:1]])  # warm-up: metadata, connections
    out: dict[str, list[float]] = {}
    for rnd in range(2):  # as aiokafka_reference
        for what, groups in (("stream", stream), ("scan", scan)):
            for mode in ("pages", "groups")[1 if rnd else 0 :]:
                out.setdefault(f"{what}_{mode}", []).append(timed(groups, mode))
    p.flush(30)
    return {k: max(v) for k, v in out.items()}


async def raw_reference(args: dict[str, Any]) -> dict[str, Any]:
    """The same bytes the worker would send: the same bodies turned into messages by
    ``app.fastwire`` (the worker's one-pass encoder: the native pass when built; timed
    alone, no Kafka), then sent by aiokafka and by confluent-kafka into a topic like the
    worker's."""
    from app import fastwire
    from app.bootstrap import ensure_topics
    from app.domain.envelope import SnapshotInfo
    from app.main import settings
    from bench.common import BROKER

    topic = str(args["topic"])
    await ensure_topics([BROKER], {topic: (int(args["partitions"]), 1, {})})
    fmt, tombstones = settings.kafka_output_format, settings.kafka_tombstones
    ts = int(time.time())
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/bench"
    bodies = stream_bodies(0, int(args["stream_pages"]), int(args["busy_shards"]), ts)
    segs, per = int(args["scan_segments"]), int(args["scan_pages"]) // int(args["scan_segments"])
    scan_bodies = [[scan_page(seg, p, per, "t") for p in range(per)] for seg in range(segs)]
    n_stream = sum(map(len, bodies.values())) * PAGE
    n_scan = segs * per * PAGE

    t0 = time.perf_counter()
    stream: Groups = [
        [
            fastwire.encode_records_page(
                b, fastwire.ChangeContext("t", KEY_NAMES, arn, shard, None, fmt, tombstones)
            ).messages
            for b in shard_bodies
        ]
        for shard, shard_bodies in bodies.items()
    ]
    parse_encode_stream = n_stream / (time.perf_counter() - t0)
    snap = SnapshotInfo(running=True, start_ms=ts * 1000, end_ms=None, count=0)
    t0 = time.perf_counter()
    scan: Groups = [
        [
            fastwire.encode_scan_page(
                b, fastwire.ScanContext("t", KEY_NAMES, seg, segs, ts * 1000, snap, fmt)
            ).messages
            for b in seg_bodies
        ]
        for seg, seg_bodies in enumerate(scan_bodies)
    ]
    parse_encode_scan = n_scan / (time.perf_counter() - t0)
    del bodies, scan_bodies
    assert all(len(m) == PAGE for g in stream + scan for m in g)

    out: dict[str, Any] = {
        "parse_encode_stream": parse_encode_stream,
        "parse_encode_scan": parse_encode_scan,
        "codec": fastwire.ACTIVE,
        "value_bytes_stream": sum(len(v or b"") for _, v in stream[0][0]) / PAGE,
        "stream_groups": len(stream),
        "scan_groups": len(scan),
    }
    out["aiokafka"] = await aiokafka_reference(topic, stream, scan)
    out["confluent"] = confluent_reference(topic, stream, scan)
    return out


def main() -> None:
    if sys.argv[1] == "serve":
        parser = argparse.ArgumentParser()
        parser.add_argument("cmd")
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--moto", required=True)
        a = parser.parse_args()
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        asyncio.run(serve(a.port, a.moto))
    else:  # '<json args>' (bench.common.run_child): the raw reference
        print(json.dumps(asyncio.run(raw_reference(json.loads(sys.argv[1])))), flush=True)


if __name__ == "__main__":
    main()


# ---------------------------------------------------------------- the driver (bench.__main__)
class Offsets:
    """End offsets and last-record timestamps of one topic (no full read while timing)."""

    def __init__(self, topic: str) -> None:
        from bench.common import BROKER

        self.topic, self.broker = topic, BROKER
        self.loop = asyncio.new_event_loop()
        self.consumer: Any = None

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        async def go() -> Any:
            c = AIOKafkaConsumer(bootstrap_servers=self.broker, enable_auto_commit=False)
            await c.start()
            parts = c.partitions_for_topic(self.topic)
            while not parts:
                await c._client.force_metadata_update()
                parts = c.partitions_for_topic(self.topic)
            self.parts = [TopicPartition(self.topic, p) for p in sorted(parts)]
            c.assign(self.parts)
            return c

        self.consumer = self._run(go())

    def total(self) -> int:
        ends = self._run(self.consumer.end_offsets(self.parts))
        return int(sum(ends.values()))

    def wait_total(self, n: int, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while self.total() < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what} ({self.total()} of {n})")
            time.sleep(0.1)

    def last_timestamp(self) -> float:
        """The broker append time (s) of the newest record of the topic."""

        async def go() -> float:
            ends = await self.consumer.end_offsets(self.parts)
            newest = 0
            for tp in self.parts:
                if ends[tp] == 0:
                    continue
                self.consumer.seek(tp, ends[tp] - 1)
                batch = await self.consumer.getmany(tp, timeout_ms=5000)
                newest = max([newest] + [r.timestamp for r in batch.get(tp, [])])
            return newest / 1000

        return float(self._run(go()))

    def distinct(self, pattern: bytes) -> int:
        """Distinct values of ``pattern``'s group over the whole topic (the at-least-once
        check after the timed window: duplicates never count twice)."""
        import re

        rx = re.compile(pattern)

        async def go() -> int:
            ends = await self.consumer.end_offsets(self.parts)
            seen: set[bytes] = set()
            for tp in self.parts:
                self.consumer.seek(tp, 0)
            left = dict(ends)
            while any(v > 0 for v in left.values()):
                batch = await self.consumer.getmany(timeout_ms=2000, max_records=20_000)
                if not batch:
                    break
                for tp, recs in batch.items():
                    for r in recs:
                        m = rx.search(r.value or b"")
                        if m:
                            seen.add(m.group(1))
                    left[tp] = ends[tp] - (recs[-1].offset + 1)
            return len(seen)

        return int(self._run(go()))

    def close(self) -> None:
        self._run(self.consumer.stop())
        self.loop.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat)."""
    import os

    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runq_seconds(pid: int) -> float:
    """Time the threads of a process spent runnable but waiting for a CPU so far
    (/proc/<pid>/task/*/schedstat, second field, ns): the share of a run the machine's
    load took from the worker, as against the time it was idle (waiting on I/O)."""
    import glob

    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            pass  # a thread gone meanwhile
    return total / 1e9


def _control(url: str, op: str, **args: Any) -> Any:
    import urllib.request

    req = urllib.request.Request(
        f"{url}/_control",
        data=json.dumps({"op": op, **args}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


class WireBench:
    """Figure 7 with bench.against_moto's Bench (workers, tags, moto tables)."""

    def __init__(self, b: Any, sizes: dict[str, int]) -> None:
        """``sizes``: stream_pages over busy_shards, scan_pages over scan_segments (the
        raw path's runs), idle shards, and boto_pages (stream and Scan pages for the
        slower aiobotocore runs, over the same shards / segments)."""
        self.b, self.sizes = b, sizes
        self.proc: Any = None
        self.profile: Any = None  # called with the raw stream worker's pid once tagged

    def __enter__(self) -> Self:
        import subprocess

        from bench.common import MOTO, ROOT
        from tests.standin import _free_port

        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.logfile = open(self.b.workdir / "wire-endpoint.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.wire", "serve", f"--port={port}", f"--moto={MOTO}"],
            cwd=ROOT,
            stdout=self.logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                _control(self.url, "stats")
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the wire endpoint did not start") from None
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.logfile.close()

    def seed(self) -> dict[str, Any]:
        """A stream table and a snapshot table for each path (raw: the full sizes;
        aiobotocore: boto_pages), the same shards and segments."""
        from tests.integration.dynamo import create_table

        b, z = self.b, self.sizes
        out: dict[str, Any] = {}
        self.tables: dict[str, str] = {}
        for path, pages, scan_pages in (
            ("raw", z["stream_pages"], z["scan_pages"]),
            ("boto", z["boto_pages"], z["boto_pages"]),
        ):
            strm, snap = f"bench-{b.uid}-wstrm-{path}", f"bench-{b.uid}-wsnap-{path}"
            self.tables |= {f"stream-{path}": strm, f"snapshot-{path}": snap}
            create_table(b.ddb, strm, [("pk", "S"), ("sk", "N")], None)
            create_table(b.ddb, snap, [("pk", "S"), ("sk", "N")], None, view=None)
            b.tables += [strm, snap]
            arn = b.ddb.describe_table(TableName=strm)["Table"]["LatestStreamArn"]
            busy, idle = z["busy_shards"], z["idle"]
            out |= _control(
                self.url, "stream", arn=arn, table=strm, pages=pages, busy=busy, idle=idle
            )
            out[f"sid-{path}"] = out.pop("sid")
            segs = z["scan_segments"]
            out |= _control(self.url, "scan", table=snap, pages=scan_pages, total=segs)
            out[f"stream_pages-{path}"], out[f"scan_pages-{path}"] = pages, scan_pages
            self.seeded = out
        return out

    def env(self, run: str, raw: bool, **extra: str) -> dict[str, str]:
        env: dict[str, str] = self.b.env(
            run,
            AWS_ENDPOINT_URL_DYNAMODB=self.url,
            AWS_ENDPOINT_URL_DYNAMODB_STREAMS=self.url,
            DYNAMODB_RAW_HTTP="true" if raw else "false",
            **extra,
        )
        env.pop("DYNAMODB_POLL_INTERVAL")  # the product's default (1 s)
        env.pop("DYNAMODB_SCAN_PAGE_LIMIT")  # 1 MB pages, as against DynamoDB
        return env

    def _topic(self, env: dict[str, str], table: str) -> Offsets:
        from bench.against_moto import ensure_topics

        topic = env["KAFKA_TOPIC_PREFIX"] + table
        ensure_topics(
            [topic], int(env["KAFKA_TOPIC_PARTITIONS"]), {"message.timestamp.type": "LogAppendTime"}
        )
        watch = Offsets(topic)
        watch.start()
        return watch

    def stream(self, raw: bool, idle_window: float) -> dict[str, Any]:
        from bench.against_moto import log_times

        path = "raw" if raw else "boto"
        run, table, sid = f"wstrm-{path}", self.tables[f"stream-{path}"], self.seeded[f"sid-{path}"]
        env = self.env(run, raw, DYNAMODB_SYNC_MODE="stream_only")
        watch = self._topic(env, table)
        (w,) = self.b.start(run, env)
        try:
            # all MODIFY: one Kafka record per event
            n = self.seeded[f"stream_pages-{path}"] * PAGE
            cpu0, wall0, rq0 = cpu_seconds(w.proc.pid), time.time(), runq_seconds(w.proc.pid)
            self.b.tag(table, run)
            if self.profile is not None and raw:
                self.profile(w.proc.pid)
            watch.wait_total(n, 180, f"{n} wire stream events ({run})")
            cpu1, wall1, rq1 = cpu_seconds(w.proc.pid), time.time(), runq_seconds(w.proc.pid)
            t_end = watch.last_timestamp()
            # from the first busy shard's 'reading shard' line (they start together)
            t_read = min(log_times(w.log(), rf"{table}: reading shard {BUSY}"))
            out: dict[str, Any] = {"events": n, "seconds": t_end - t_read}
            out["rate"] = n / out["seconds"]
            out["busy_shards"] = min(self.sizes["busy_shards"], n // PAGE)
            # the worker's CPU share from tagging to the end (1.0 = one core all the time),
            # and its threads' time waiting for a CPU (the machine's load) likewise
            out["worker_cpu_share"] = (cpu1 - cpu0) / (wall1 - wall0)
            out["worker_runq_share"] = (rq1 - rq0) / (wall1 - wall0)
            # page sends that failed and were sent again (aiokafka's KafkaTimeoutError
            # while a batch waited for its partition's previous one: the retries' delay
            # is in the figure)
            out["send_retries"] = len(re.findall(r"Kafka send to \S+ failed", w.log()))
            if idle_window:  # every shard idle now: count GetRecords calls per shard
                a = _control(self.url, "stats")
                time.sleep(idle_window)  # an observation window, not a readiness wait
                z = _control(self.url, "stats")
                shards = [s for s in z["calls"] if s.startswith(f"{sid}|")]
                calls = sum(z["calls"].get(s, 0) - a["calls"].get(s, 0) for s in shards)
                out["idle_calls_per_shard_s"] = calls / len(shards) / (z["now"] - a["now"])
                out["idle_shards"] = len(shards)
            out["distinct_seqs"] = watch.distinct(rb'"seq":"(\d+)"')
        finally:
            watch.close()
            self.b.stop([w])
        if out["distinct_seqs"] < n:
            raise RuntimeError(f"{run}: {out['distinct_seqs']} distinct events of {n} in Kafka")
        return out

    def snapshot(self, raw: bool) -> dict[str, Any]:
        from bench.against_moto import log_times

        path = "raw" if raw else "boto"
        run, table = f"wsnap-{path}", self.tables[f"snapshot-{path}"]
        segs = self.sizes["scan_segments"]
        env = self.env(
            run, raw, DYNAMODB_SYNC_MODE="snapshot_only", DYNAMODB_SCAN_SEGMENTS=str(segs)
        )
        watch = self._topic(env, table)
        (w,) = self.b.start(run, env)
        try:
            n = self.seeded[f"scan_pages-{path}"] // segs * segs * PAGE
            cpu0, wall0, rq0 = cpu_seconds(w.proc.pid), time.time(), runq_seconds(w.proc.pid)
            self.b.tag(table, run)
            watch.wait_total(n, 180, f"{n} wire snapshot items ({run})")
            cpu1, wall1, rq1 = cpu_seconds(w.proc.pid), time.time(), runq_seconds(w.proc.pid)
            t_end = watch.last_timestamp()
            t_scan = min(log_times(w.log(), rf"{table}: scanning segment"))
            out: dict[str, Any] = {"items": n, "segments": segs, "seconds": t_end - t_scan}
            out["rate"] = n / out["seconds"]
            out["worker_cpu_share"] = (cpu1 - cpu0) / (wall1 - wall0)
            out["worker_runq_share"] = (rq1 - rq0) / (wall1 - wall0)
            out["send_retries"] = len(re.findall(r"Kafka send to \S+ failed", w.log()))
            out["distinct_keys"] = watch.distinct(rb'"keys":(\{[^}]*\})')
        finally:
            watch.close()
            self.b.stop([w])
        if out["distinct_keys"] < n:
            raise RuntimeError(f"{run}: {out['distinct_keys']} distinct items of {n} in Kafka")
        return out
