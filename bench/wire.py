"""Figure 7, "from the wire": a real `faust -A app worker` reads GetRecords and Scan
bodies from a local HTTP endpoint that answers at wire speed, end to end into Kafka,
next to a raw aiokafka producer sending the same bytes in the same run.

    python -m bench.wire serve --port 8124 --moto http://127.0.0.1:5000   (the endpoint)
    python -m bench.wire '{"stream_pages": 15, "scan_pages": 15, ...}'  (the reference)

The endpoint answers DescribeStream, GetShardIterator and GetRecords for the streams it
was told to generate, and Scan for the tables it was told to generate, with pages built
once when they are registered (so serving costs a socket write, not JSON encoding):
1000 NEW_AND_OLD_IMAGES records of ~2.4 KB per GetRecords page, 1000 items of ~1 KB per
Scan page (bench.common's items: S, N, BOOL, SS, NS, B, M, L, NULL).  Every other
request (DescribeTable, ...) is passed through to moto, where the tables really exist
(discovery by tag, DescribeTable).  A generated stream has one busy shard (the pages,
then empty pages for ever) and ``idle`` shards that only ever answer empty pages; the
endpoint counts GetRecords calls per shard, so the bench reads the calls per idle shard
per second at the product's default DYNAMODB_POLL_INTERVAL."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import sys
import time
from collections import Counter
from typing import Any, Self

import orjson

from bench.common import KEY_NAMES, make_item

PAGE = 1000
SEQ_BASE = 4 * 10**20
SEQ_STEP = 10
BUSY = "shardId-00000001764300000000-busy"  # ShardId: 28 to 65 characters
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


def stream_page(page: int, pages: int, ts: int) -> bytes:
    """GetRecords page ``page`` of the busy shard: 1000 MODIFY records, distinct keys."""
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
    return _json({"Records": records, "NextShardIterator": f"gen|{BUSY}|{page + 1}"})


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
        self.streams: dict[str, dict[str, Any]] = {}  # arn -> {table, pages, idle, bodies}
        self.scans: dict[str, dict[str, Any]] = {}  # table -> {total, per, bodies}
        self.calls: Counter[str] = Counter()  # GetRecords calls per shard
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
        shards = [BUSY] + [f"shardId-00000001764300000001-idle{i:03d}" for i in range(s["idle"])]
        return _json(
            {
                "StreamDescription": {
                    "StreamArn": arn,
                    "StreamStatus": "ENABLED",
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                    "TableName": s["table"],
                    "Shards": [
                        {"ShardId": sid, "SequenceNumberRange": {"StartingSequenceNumber": "1"}}
                        for sid in shards
                    ],
                }
            }
        )

    def iterator(self, req: dict[str, Any]) -> bytes:
        page = 0
        if req.get("SequenceNumber"):  # a restart or expiry: from the page holding it
            page = (int(req["SequenceNumber"]) - SEQ_BASE) // SEQ_STEP // PAGE
        return _json({"ShardIterator": f"gen|{req['ShardId']}|{max(page, 0)}"})

    def get_records(self, iterator: str) -> bytes:
        _, shard, page = iterator.split("|")
        self.calls[shard] += 1
        if shard == BUSY:
            bodies = next(iter(self.streams.values()))["bodies"]
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
        if op == "stream":
            ts = int(time.time())
            bodies = [stream_page(p, msg["pages"], ts) for p in range(msg["pages"])]
            self.streams = {msg["arn"]: {**msg, "bodies": bodies}}  # one generated stream
            return web.json_response({"bytes_per_record": len(bodies[0]) / PAGE})
        if op == "scan":
            total, pages = int(msg["total"]), int(msg["pages"])
            per = pages // total
            bodies = {
                (seg, p): scan_page(seg, p, per, msg["table"])
                for seg in range(total)
                for p in range(per)
            }
            self.scans[msg["table"]] = {"total": total, "per": per, "bodies": bodies}
            return web.json_response({"bytes_per_item": len(bodies[(0, 0)]) / PAGE})
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


# ---------------------------------------------------------------- the raw reference
async def raw_reference(args: dict[str, Any]) -> dict[str, Any]:
    """The same bytes the worker would send, through a bare aiokafka producer with the
    Faust producer's settings and the product's record-batch sender
    (``app.output.send_records``): the floor of the send path.  Also timed: the raw
    path's parse (``app.domain.wire``) + encode of the same bodies, no Kafka."""
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

    from app.bootstrap import ensure_topics
    from app.domain import wire
    from app.domain.envelope import Encoder, SnapshotInfo
    from app.main import app, settings
    from app.output import send_records
    from bench.common import BROKER

    topic = str(args["topic"])
    await ensure_topics([BROKER], {topic: (int(args["partitions"]), 1, {})})
    enc = Encoder(settings.kafka_output_format, settings.kafka_tombstones)
    ts = int(time.time())
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/bench"
    bodies = [stream_page(p, args["stream_pages"], ts) for p in range(args["stream_pages"])]
    per = int(args["scan_pages"])
    scan_bodies = [scan_page(0, p, per, "t") for p in range(per)]

    t0 = time.perf_counter()
    stream_msgs = [
        [
            m
            for r in wire.parse_records(b).records
            for m in enc.change("t", KEY_NAMES, r, arn, BUSY, None)
        ]
        for b in bodies
    ]
    parse_encode_stream = len(bodies) * PAGE / (time.perf_counter() - t0)
    snap = SnapshotInfo(running=True, start_ms=ts * 1000, end_ms=None, count=0)
    t0 = time.perf_counter()
    scan_msgs = [
        [
            m
            for it in wire.parse_scan(b).items
            for m in enc.snapshot("t", KEY_NAMES, it, 0, 1, ts * 1000, snap)
        ]
        for b in scan_bodies
    ]
    parse_encode_scan = per * PAGE / (time.perf_counter() - t0)

    raw = AIOKafkaProducer(**app.producer._settings_default())
    await raw.start()
    try:

        async def send(batches: list[list[Any]]) -> float:
            t0 = time.perf_counter()
            for msgs in batches:
                failed = await send_records(raw, topic, msgs)
                assert not failed, failed[0][0]
            return time.perf_counter() - t0

        await send(stream_msgs[:2])  # warm-up: metadata, connections
        stream_rates, scan_rates = [], []
        for _ in range(2):
            stream_rates.append(len(bodies) * PAGE / await send(stream_msgs))
            scan_rates.append(per * PAGE / await send(scan_msgs))
    finally:
        await raw.stop()
    return {
        "stream_raw": max(stream_rates),
        "scan_raw": max(scan_rates),
        "parse_encode_stream": parse_encode_stream,
        "parse_encode_scan": parse_encode_scan,
        "value_bytes_stream": sum(len(v or b"") for _, v in stream_msgs[0]) / PAGE,
    }


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

    def __init__(self, b: Any, stream_pages: int, scan_pages: int, idle: int) -> None:
        self.b, self.stream_pages, self.scan_pages, self.idle = b, stream_pages, scan_pages, idle
        self.proc: Any = None

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
        from tests.integration.dynamo import create_table

        b = self.b
        self.strm, self.snap = f"bench-{b.uid}-wstrm", f"bench-{b.uid}-wsnap"
        create_table(b.ddb, self.strm, [("pk", "S"), ("sk", "N")], None)
        create_table(b.ddb, self.snap, [("pk", "S"), ("sk", "N")], None, view=None)
        b.tables += [self.strm, self.snap]
        arn = b.ddb.describe_table(TableName=self.strm)["Table"]["LatestStreamArn"]
        out = _control(
            self.url, "stream", arn=arn, table=self.strm, pages=self.stream_pages, idle=self.idle
        )
        out |= _control(self.url, "scan", table=self.snap, pages=self.scan_pages, total=1)
        return dict(out)

    def env(self, run: str, raw: bool, **extra: str) -> dict[str, str]:
        env = self.b.env(
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

        run = f"wstrm-{'raw' if raw else 'boto'}"
        env = self.env(run, raw, DYNAMODB_SYNC_MODE="stream_only")
        watch = self._topic(env, self.strm)
        (w,) = self.b.start(run, env)
        try:
            n = self.stream_pages * PAGE  # all MODIFY: one Kafka record per event
            cpu0, wall0 = cpu_seconds(w.proc.pid), time.time()
            self.b.tag(self.strm, run)
            watch.wait_total(n, 180, f"{n} wire stream events ({run})")
            cpu1, wall1 = cpu_seconds(w.proc.pid), time.time()
            t_end = watch.last_timestamp()
            t_read = log_times(w.log(), rf"{self.strm}: reading shard {BUSY}")[0]
            out: dict[str, Any] = {"events": n, "seconds": t_end - t_read}
            out["rate"] = n / out["seconds"]
            # the worker's CPU share from tagging to the end (1.0 = one core all the time)
            out["worker_cpu_share"] = (cpu1 - cpu0) / (wall1 - wall0)
            if idle_window:  # every shard idle now: count GetRecords calls per shard
                a = _control(self.url, "stats")
                time.sleep(idle_window)  # an observation window, not a readiness wait
                z = _control(self.url, "stats")
                shards = [s for s in z["calls"] if "idle" in s] + [BUSY]
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

        run = f"wsnap-{'raw' if raw else 'boto'}"
        env = self.env(run, raw, DYNAMODB_SYNC_MODE="snapshot_only", DYNAMODB_SCAN_SEGMENTS="1")
        watch = self._topic(env, self.snap)
        (w,) = self.b.start(run, env)
        try:
            n = self.scan_pages * PAGE
            cpu0, wall0 = cpu_seconds(w.proc.pid), time.time()
            self.b.tag(self.snap, run)
            watch.wait_total(n, 180, f"{n} wire snapshot items ({run})")
            cpu1, wall1 = cpu_seconds(w.proc.pid), time.time()
            t_end = watch.last_timestamp()
            t_scan = log_times(w.log(), rf"{self.snap}: scanning segment")[0]
            out: dict[str, Any] = {"items": n, "seconds": t_end - t_scan}
            out["rate"] = n / out["seconds"]
            out["worker_cpu_share"] = (cpu1 - cpu0) / (wall1 - wall0)
            out["distinct_keys"] = watch.distinct(rb'"keys":(\{[^}]*\})')
        finally:
            watch.close()
            self.b.stop([w])
        if out["distinct_keys"] < n:
            raise RuntimeError(f"{run}: {out['distinct_keys']} distinct items of {n} in Kafka")
        return out
