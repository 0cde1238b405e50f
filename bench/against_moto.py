"""Figures 3, 4 and 6: real worker subprocesses (`faust -A app worker`) against moto and
the real broker, next to moto's own raw rates measured in the same run.

Each worker gets its own APP_ID, topic prefix and tag filter (tests/integration/dynamo's
worker_env), is started and waited for ("rebalance complete"), and only then is the
table tagged: the measured window never includes worker start-up.  Output topics are
created beforehand with the partitions the product would use, so a consumer never
auto-creates them first."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import BROKER, MOTO, make_item, percentile
from tests.integration.dynamo import batch_put, client, create_table, worker_env
from tests.integration.helpers import TopicReader, Worker

STACK = {"BROKER_URL": f"kafka://{BROKER}", "AWS_ENDPOINT_URL": MOTO}
POLL_INTERVAL = 1.0  # the product's default DYNAMODB_POLL_INTERVAL (the raw poller's too)
_TS = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", re.MULTILINE)


def log_times(text: str, pattern: str) -> list[float]:
    """Epoch seconds of the log lines matching ``pattern`` (Faust's "[date time,ms]")."""
    out = []
    for line in text.splitlines():
        if re.search(pattern, line):
            m = _TS.match(line)
            if m:
                out.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return out


def owned_partitions(text: str) -> int | None:
    found = re.findall(r"rebalance complete: (\d+) control partitions owned", text)
    return int(found[-1]) if found else None


def ensure_topics(names: list[str], partitions: int, config: dict[str, str] | None = None) -> None:
    from app.bootstrap import ensure_topics as _ensure  # aiokafka admin only, no settings

    asyncio.run(_ensure([BROKER], {n: (partitions, 1, config or {}) for n in names}))


def delete_topics(prefix: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(prefix)]
            if names:
                await admin.delete_topics(names)
            return len(names)
        finally:
            await admin.close()

    try:
        return asyncio.run(run())
    except Exception:  # noqa: BLE001 - best effort clean-up
        return 0


class Bench:
    def __init__(self, uid: str, workdir: Path, log: Any) -> None:
        self.uid, self.workdir, self.say = uid, workdir, log
        self.ddb = client(STACK)
        self.streams = client(STACK, "dynamodbstreams")
        self.workers: list[Worker] = []
        self.tables: list[str] = []

    # ------------------------------------------------------------ helpers
    def env(self, run: str, **extra: str) -> dict[str, str]:
        env = worker_env(STACK, f"{self.uid}-{run}", **extra)
        env.update(
            APP_ID=f"bench-{self.uid}-{run}-app",
            KAFKA_TOPIC_PREFIX=f"bench-{self.uid}-{run}-",
            DYNAMODB_TAG_FILTERS=f"bench-{self.uid}-{run}",
        )
        return env

    def start(self, run: str, env: dict[str, str], n: int = 1) -> list[Worker]:
        ws = [Worker("app", env, self.workdir, f"{run}-w{i + 1}") for i in range(n)]
        for w in ws:
            w.start()
        self.workers += ws
        want = int(env["STATE_PARTITIONS"])

        def ready() -> bool:
            owned = []
            for w in ws:
                if not w.alive:
                    raise RuntimeError(f"worker {w.name} exited:\n{w.log()[-3000:]}")
                owned.append(owned_partitions(w.log()))
            return all(o for o in owned) and sum(owned) == want  # type: ignore[arg-type]

        deadline = time.monotonic() + 120
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers of {run} not ready:\n{ws[0].log()[-3000:]}")
            time.sleep(0.2)
        return ws

    def stop(self, ws: list[Worker]) -> None:
        for w in ws:
            w.stop(timeout=20)

    def tag(self, table: str, run: str) -> float:
        arn = self.ddb.describe_table(TableName=table)["Table"]["TableArn"]
        t0 = time.time()
        self.ddb.tag_resource(
            ResourceArn=arn, Tags=[{"Key": f"bench-{self.uid}-{run}", "Value": "yes"}]
        )
        return t0

    def read(self, reader: TopicReader, done: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done(reader.records):
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what} ({len(reader.records)} read)")
            reader.poll(0.3)

    # ------------------------------------------------------------ fixtures
    def seed(self, n_snap: int, n_events: int) -> None:
        self.snap = f"bench-{self.uid}-snap"
        self.strm = f"bench-{self.uid}-strm"
        create_table(self.ddb, self.snap, [("pk", "S"), ("sk", "N")], None, view=None)
        create_table(self.ddb, self.strm, [("pk", "S"), ("sk", "N")], None)
        self.tables += [self.snap, self.strm]
        t0 = time.monotonic()
        batch_put(self.ddb, self.snap, [make_item(i) for i in range(n_snap)])
        # stream backlog: ~40% INSERT, ~40% MODIFY (put over an existing key), ~20% REMOVE
        n_ins = int(n_events * 0.4)
        n_mod = int(n_events * 0.4)
        n_del = n_events - n_ins - n_mod
        batch_put(self.ddb, self.strm, [make_item(i, 0) for i in range(n_ins)])
        batch_put(self.ddb, self.strm, [make_item(i, 1) for i in range(n_mod)])
        dels = [make_item(i) for i in range(n_del)]
        for s in range(0, len(dels), 25):
            req: dict[str, Any] = {
                self.strm: [
                    {"DeleteRequest": {"Key": {"pk": it["pk"], "sk": it["sk"]}}}
                    for it in dels[s : s + 25]
                ]
            }
            while req:
                req = self.ddb.batch_write_item(RequestItems=req).get("UnprocessedItems") or {}
        self.n_snap, self.n_events = n_snap, n_events
        desc = self.ddb.describe_table(TableName=self.strm)["Table"]
        self.stream_arn = desc["LatestStreamArn"]
        self.shard = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"][
            "Shards"
        ][0]["ShardId"]
        self.say(
            f"seeded {n_snap} items + {n_events} stream events in {time.monotonic() - t0:.1f}s"
        )

    # ------------------------------------------------------------ moto's own rates
    def raw_scan(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        n = pages = 0
        kwargs: dict[str, Any] = {"TableName": self.snap, "ReturnConsumedCapacity": "TOTAL"}
        while True:
            page = self.ddb.scan(**kwargs)
            n += len(page["Items"])
            pages += 1
            if not page.get("LastEvaluatedKey"):
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        dt = time.perf_counter() - t0
        return {"items": n, "pages": pages, "seconds": dt, "rate": n / dt}

    def raw_get_records(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        it = self.streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=self.shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        n = calls = 0
        kinds: dict[str, int] = {}
        while n < self.n_events:
            page = self.streams.get_records(ShardIterator=it, Limit=1000)
            calls += 1
            for r in page["Records"]:
                kinds[r["eventName"]] = kinds.get(r["eventName"], 0) + 1
            n += len(page["Records"])
            it = page["NextShardIterator"]
            if not page["Records"]:
                break
        dt = time.perf_counter() - t0
        return {"records": n, "calls": calls, "seconds": dt, "rate": n / dt, "kinds": kinds}

    # ------------------------------------------------------------ worker runs
    def snapshot_run(self, run: str, segments: int, workers: int) -> dict[str, Any]:
        env = self.env(
            run, DYNAMODB_SYNC_MODE="snapshot_only", DYNAMODB_SCAN_SEGMENTS=str(segments)
        )
        topic = env["KAFKA_TOPIC_PREFIX"] + self.snap
        ensure_topics(
            [topic], int(env["KAFKA_TOPIC_PARTITIONS"]), {"message.timestamp.type": "LogAppendTime"}
        )
        ws = self.start(run, env, workers)
        reader = TopicReader(STACK, topic)
        try:
            reader.poll(0.2)
            t_tag = self.tag(self.snap, run)
            n = self.n_snap
            self.read(
                reader,
                lambda rs: len({r.key for r in rs if b'"op":"r"' in (r.value or b"")}) >= n,
                150,
                f"{n} snapshot records ({run})",
            )
            t_end = max(r.timestamp for r in reader.records) / 1000
            deadline = time.monotonic() + 30  # the split is read once every segment reported
            while not any(f"{self.snap}: snapshot done" in w.log() for w in ws):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            logs = [w.log() for w in ws]
            t_scan = min(t for lg in logs for t in log_times(lg, rf"{self.snap}: scanning segment"))
            split = [
                len(re.findall(rf"{self.snap}: segment \d+/{segments} done", lg)) for lg in logs
            ]
            starts = [len(re.findall(rf"{self.snap}: scanning segment", lg)) for lg in logs]
            records = len(reader.records)
        finally:
            reader.close()
            self.stop(ws)
        return {
            "items": n,
            "records": records,
            "segments": segments,
            "workers": workers,
            "from_tag_s": t_end - t_tag,
            "from_scan_s": t_end - t_scan,
            "rate": n / (t_end - t_scan),
            "rate_from_tag": n / (t_end - t_tag),
            "segments_done_per_worker": split,
            "scans_started_per_worker": starts,
        }

    def stream_and_latency(self, n_writes: int) -> tuple[dict[str, Any], dict[str, Any]]:
        run = "strm"
        env = self.env(run, DYNAMODB_SYNC_MODE="stream_only")
        env.pop("DYNAMODB_POLL_INTERVAL")  # the product's default poll interval (1 s)
        topic = env["KAFKA_TOPIC_PREFIX"] + self.strm
        # broker append time as record timestamp: "in Kafka" means appended to the log
        ensure_topics(
            [topic], int(env["KAFKA_TOPIC_PARTITIONS"]), {"message.timestamp.type": "LogAppendTime"}
        )
        (w,) = self.start(run, env)
        reader = TopicReader(STACK, topic)
        try:
            reader.poll(0.2)
            t_tag = self.tag(self.strm, run)
            m = self.n_events

            def events(rs: list[Any]) -> int:
                return sum(1 for r in rs if r.value is not None)

            self.read(reader, lambda rs: events(rs) >= m, 150, f"{m} stream events")
            t_end = max(r.timestamp for r in reader.records if r.value is not None) / 1000
            t_read = log_times(w.log(), rf"{self.strm}: reading shard")[0]
            ops: dict[str, int] = {}
            for r in reader.records:
                if r.value is not None:
                    op = re.search(rb'"op":"(\w)"', r.value)
                    if op:
                        ops[op.group(1).decode()] = ops.get(op.group(1).decode(), 0) + 1
            stream = {
                "events": m,
                "kafka_records": len(reader.records),
                "ops": ops,
                "from_tag_s": t_end - t_tag,
                "from_shard_s": t_end - t_read,
                "rate": m / (t_end - t_read),
            }
            lat = self.latency(reader, n_writes)
            lat["shards_started"] = len(log_times(w.log(), r"reading shard"))
        finally:
            reader.close()
            self.stop([w])
        return stream, lat

    def latency(self, reader: TopicReader, n: int) -> dict[str, Any]:
        """Single puts, ~0.1-0.4 s apart; worker (broker timestamp) vs a raw GetRecords
        poller at the product's default cadence (1 s sleep after an empty page)."""
        seen: dict[str, float] = {}
        stop = threading.Event()
        started = threading.Event()
        raw_calls = [0]

        def poller() -> None:
            s = client(STACK, "dynamodbstreams")
            it = s.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=self.shard, ShardIteratorType="LATEST"
            )["ShardIterator"]
            started.set()
            while not stop.is_set():
                page = s.get_records(ShardIterator=it, Limit=1000)
                raw_calls[0] += 1
                now = time.time()
                for r in page["Records"]:
                    seen.setdefault(r["dynamodb"]["Keys"]["pk"]["S"], now)
                it = page["NextShardIterator"]
                if not page["Records"]:
                    stop.wait(POLL_INTERVAL)

        th = threading.Thread(target=poller, daemon=True)
        th.start()
        started.wait(30)
        rng = random.Random(4)
        writes: dict[str, float] = {}
        before = len(reader.records)
        for i in range(n):
            item = make_item(900_000 + i, 0)
            pk = item["pk"]["S"]
            writes[pk] = time.time()
            self.ddb.put_item(TableName=self.strm, Item=item)
            time.sleep(rng.uniform(0.1, 0.4))
            reader.poll(0.0)

        self.read(
            reader,
            lambda rs: len({r.key for r in rs[before:] if r.value}) >= n,
            60,
            "latency writes in Kafka",
        )
        deadline = time.monotonic() + 30
        while len(seen) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        th.join(10)
        ours, raw = [], []
        for r in reader.records[before:]:
            if r.value is None:
                continue
            m = re.search(rb'"pk":"([^"]+)"', r.key)
            if m and m.group(1).decode() in writes:
                ours.append(r.timestamp / 1000 - writes[m.group(1).decode()])
        raw = [seen[pk] - t for pk, t in writes.items() if pk in seen]
        return {
            "writes": n,
            "ours_n": len(ours),
            "raw_n": len(raw),
            "p50": percentile(ours, 50),
            "p99": percentile(ours, 99),
            "max": max(ours),
            "raw_p50": percentile(raw, 50),
            "raw_p99": percentile(raw, 99),
            "raw_calls": raw_calls[0],
        }

    def cleanup(self) -> None:
        for w in self.workers:
            if w.alive:
                w.kill()
        for t in self.tables:
            with contextlib.suppress(Exception):  # best effort clean-up
                self.ddb.delete_table(TableName=t)
