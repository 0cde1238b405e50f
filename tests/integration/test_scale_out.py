"""Multi-shard streams end to end: worker processes read DynamoDB Streams from the
stand-in (tests.standin: moto's stream tailed into a FakeStreams with splits, rollovers,
trimming, iterator expiry and fault injection), DynamoDB itself stays moto."""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from app.domain.protocol import UnitId
from tests.integration.dynamo import (
    Ledger,
    batch_put,
    check_against_ledger,
    client,
    create_table,
    order_violations,
    snapshot_keys,
    worker_env,
)
from tests.integration.helpers import TopicReader, Worker, wait_until
from tests.integration.test_replication import _mutate
from tests.standin import StandInProcess

READING = re.compile(r"reading shard (\S+) from")
FINISHED = re.compile(r"shard (\S+) finished")


@pytest.fixture
def standin(stack: dict[str, str], workdir: Path) -> Iterator[StandInProcess]:
    with StandInProcess(stack["AWS_ENDPOINT_URL"], workdir / "standin.log") as s:
        yield s


class Writes:
    """Random puts/updates/deletes over a key pool, recorded in a ledger."""

    def __init__(self, ddb: Any, table: str, keys: int, seed: int = 1) -> None:
        self.ddb, self.table = ddb, table
        self.rng = random.Random(seed)
        self.pool = [f"k{i:04d}" for i in range(keys)]
        self.exists: set[bytes] = set()
        self.ledger = Ledger()

    def burst(self, n: int, ledger: Ledger | None = None) -> None:
        for _ in range(n):
            pk = self.rng.choice(self.pool)
            _mutate(
                self.ddb,
                self.table,
                {"pk": {"S": pk}},
                f'{{"pk":"{pk}"}}'.encode(),
                ledger or self.ledger,
                self.rng,
                self.exists,
            )


def _setup(
    stack: dict[str, str], standin: StandInProcess, uid: str, tagged: bool = True, **extra: str
) -> tuple[Any, str, dict[str, str], TopicReader]:
    """A table registered with the stand-in; tagged (discoverable) unless told not to."""
    ddb, table = client(stack), f"so-{uid}"
    create_table(ddb, table, [("pk", "S")], {f"itest-{uid}": "1"} if tagged else None)
    standin.register(table)
    env = worker_env(stack, uid, AWS_ENDPOINT_URL_DYNAMODB_STREAMS=standin.url, **extra)
    return ddb, table, env, TopicReader(stack, f"it-{uid}-{table}")


def _wait_delivered(
    reader: TopicReader, ledger: Ledger, workers: list[Worker], timeout: float = 60
) -> None:
    try:
        reader.read_until(
            lambda rs: check_against_ledger(rs, ledger)["lost"] == 0,
            timeout,
            f"all {ledger.total} stream events",
        )
    except AssertionError as exc:
        tails = "\n".join(f"--- {w.name}:\n{w.log()[-3000:]}" for w in workers)
        raise AssertionError(f"{exc}\n{tails}") from None
    assert order_violations(reader.records) == 0


def _shards_read(worker: Worker) -> list[str]:
    return READING.findall(worker.log())


def test_standin_protocol(stack: dict[str, str], standin: StandInProcess, uid: str) -> None:
    """Plain botocore against the stand-in: shapes, binary, timestamps, exact error codes."""
    ddb, table = client(stack), f"proto-{uid}"
    create_table(ddb, table, [("pk", "S")], None)
    arn = standin.register(table)
    assert arn == ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "b": {"B": b"\x00\xff"}})
    ddb.delete_item(TableName=table, Key={"pk": {"S": "a"}})
    assert standin.drain(table) == 2
    children = standin.split(table)
    st = boto3.client(
        "dynamodbstreams",
        endpoint_url=standin.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}),
    )
    shards = st.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    root = shards[0]["ShardId"]
    assert [(s["ShardId"], s.get("ParentShardId")) for s in shards[1:]] == [
        (c, root) for c in children
    ]
    assert "EndingSequenceNumber" in shards[0]["SequenceNumberRange"]
    it = st.get_shard_iterator(
        StreamArn=arn, ShardId=shards[0]["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    page = st.get_records(ShardIterator=it)
    assert [r["eventName"] for r in page["Records"]] == ["INSERT", "REMOVE"]
    assert "NextShardIterator" not in page  # closed and read to its end
    d = page["Records"][0]["dynamodb"]
    assert d["NewImage"]["b"] == {"B": b"\x00\xff"}
    assert abs(d["ApproximateCreationDateTime"].timestamp() - time.time()) < 60
    for code, status in [
        ("LimitExceededException", 400),
        ("InternalServerError", 500),
        ("TrimmedDataAccessException", 400),
        ("ProvisionedThroughputExceededException", 400),
    ]:
        standin.inject("get_records", code)
        with pytest.raises(ClientError) as err:
            st.get_records(ShardIterator=it)
        assert err.value.response["Error"]["Code"] == code
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    standin.expire()
    with pytest.raises(ClientError, match="ExpiredIteratorException"):
        st.get_records(ShardIterator=it)
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        st.describe_stream(StreamArn=arn.replace(table, f"{table}-gone"))


def test_three_workers_share_split_stream(
    stack: dict[str, str], standin: StandInProcess, uid: str, workdir: Path
) -> None:
    """(a) 8 open shards (root split three levels deep), 3 workers, one APP_ID.

    The table is tagged before the workers start, so its control messages flow while the
    group is still rebalancing: some are lost there (faust fetches before seeking to
    committed offsets, and never-committed partitions are not rewound); the coordinator's
    heal (creates repeated every discovery round) must make up for them."""
    ddb, table, env, reader = _setup(
        stack,
        standin,
        uid,
        STATE_PARTITIONS="12",
        DYNAMODB_SYNC_MODE="stream_only",
        DYNAMODB_STREAM_START="trim_horizon",
    )
    for _ in range(3):
        standin.split(table)
    leaves = standin.open_shards(table)
    assert len(leaves) == 8
    workers = [Worker("app", env, workdir, f"w{i}") for i in range(3)]
    t0 = time.monotonic()
    try:
        for w in workers:
            w.start()

        def settled() -> bool:  # every worker owns control partitions, 12 in all
            owned = [
                re.findall(r"rebalance complete: (\d+) control partitions", w.log())
                for w in workers
            ]
            return (
                all(o and int(o[-1]) > 0 for o in owned)
                and sum(int(o[-1]) for o in owned) == 12
                and all(w.alive for w in workers)
            )

        wait_until(settled, 90, "3 workers sharing 12 control partitions")
        wait_until(
            lambda: set(leaves) <= {s for w in workers for s in _shards_read(w)},
            60,
            "every leaf shard being read",
        )
        t_ready = time.monotonic()
        writes = Writes(ddb, table, keys=300)
        writes.burst(700)
        _wait_delivered(reader, writes.ledger, workers, timeout=90)
        print(
            f"\n3 workers up in {t_ready - t0:.1f}s; {writes.ledger.total} events over "
            f"{len(leaves)} shards delivered in {time.monotonic() - t_ready:.1f}s"
        )
        per_shard = {s["id"]: s["records"] for s in standin.shards(table)}
        assert all(per_shard[s] > 30 for s in leaves), per_shard  # really spread
        readers_of = {s: {w.name for w in workers if s in _shards_read(w)} for s in leaves}
        by_worker = Counter(n for names in readers_of.values() for n in names)
        print(f"leaf shards read per worker: {dict(by_worker)}")
        assert len(by_worker) >= 2, readers_of
        result = check_against_ledger(reader.records, writes.ledger)
        assert result["lost"] == 0
        assert all(w.alive for w in workers)
    finally:
        for w in workers:
            w.kill()
        reader.close()


def test_lineage_live(
    stack: dict[str, str], standin: StandInProcess, uid: str, workdir: Path
) -> None:
    """(b) rollovers and splits mid-write: children start only after their parent ended."""
    ddb, table, env, reader = _setup(
        stack, standin, uid, DYNAMODB_SYNC_MODE="stream_only", DYNAMODB_STREAM_START="trim_horizon"
    )
    worker = Worker("app", env, workdir, "w").start()
    writes = Writes(ddb, table, keys=120, seed=2)
    try:
        worker.wait_log(r"reading shard", timeout=90)
        t0 = time.monotonic()
        steps = [
            lambda: standin.rollover(table),
            lambda: standin.split(table),
            lambda: standin.split(table, standin.open_shards(table)[0]),
            lambda: standin.rollover(table),
            lambda: standin.split(table),
        ]
        for step in steps:
            writes.burst(80)
            standin.drain(table)  # the burst lands in the shards about to close
            step()
        writes.burst(80)
        _wait_delivered(reader, writes.ledger, [worker])
        shards = standin.shards(table)
        log = worker.log()
        reading = {m.group(1): m.start() for m in reversed(list(READING.finditer(log)))}
        finished = {m.group(1): m.start() for m in FINISHED.finditer(log)}
        print(
            f"\n{writes.ledger.total} events through {len(shards)} shards "
            f"({sum(s['open'] for s in shards)} open) in {time.monotonic() - t0:.1f}s"
        )
        assert len(shards) >= 12
        for s in shards:
            assert s["id"] in reading, f"shard {s['id']} never read"
            if not s["open"]:
                worker.wait_log(rf"shard {s['id']} finished", timeout=30)
                finished.setdefault(s["id"], worker.log().index(f"shard {s['id']} finished"))
            if s["parent"]:
                assert finished[s["parent"]] < reading[s["id"]], (
                    f"{s['id']} read before its parent {s['parent']} finished"
                )
        assert "re-snapshot" not in worker.log()
    finally:
        worker.kill()
        reader.close()


def test_expired_iterators_and_throttling(
    stack: dict[str, str], standin: StandInProcess, uid: str, workdir: Path
) -> None:
    """(c) iterators expired (by control and by the clock), throttles and 500s mid-stream."""
    ddb, table, env, reader = _setup(
        stack,
        standin,
        uid,
        DYNAMODB_SYNC_MODE="stream_only",
        DYNAMODB_STREAM_START="trim_horizon",
        DYNAMODB_POLL_INTERVAL="0.5",
    )
    standin.split(table)
    worker = Worker("app", env, workdir, "w").start()
    writes = Writes(ddb, table, keys=100, seed=3)
    try:
        worker.wait_log(r"reading shard", timeout=90, count=3)
        t0 = time.monotonic()
        writes.burst(120)
        standin.drain(table)
        standin.expire()
        writes.burst(120)
        standin.inject("get_records", "LimitExceededException", times=6)
        standin.inject("get_records", "InternalServerError", times=6)
        standin.inject("get_shard_iterator", "ProvisionedThroughputExceededException", times=4)
        standin.expire()  # re-acquiring the iterators now meets the throttled calls
        writes.burst(120)
        wait_until(lambda: not standin.stats()["faults_pending"], 60, "injected faults used")
        standin.config(iterator_ttl=0.3)  # idle polls every 0.5 s: every iterator expires
        before = standin.stats()["errors"].get("ExpiredIteratorException", 0)
        writes.burst(120)
        wait_until(
            lambda: standin.stats()["errors"].get("ExpiredIteratorException", 0) >= before + 6,
            30,
            "iterators expiring by the clock",
        )
        standin.config(iterator_ttl=900)
        _wait_delivered(reader, writes.ledger, [worker])
        stats = standin.stats()
        print(
            f"\n{writes.ledger.total} events in {time.monotonic() - t0:.1f}s; errors "
            f"served: {stats['errors']}; calls: {stats['calls']}"
        )
        errors = stats["errors"]
        assert errors["LimitExceededException"] == 6 and errors["InternalServerError"] == 6
        assert errors["ProvisionedThroughputExceededException"] == 4
        assert errors["ExpiredIteratorException"] >= 8
        retries = re.findall(r"retriable error \(attempt (\d+)\)", worker.log())
        assert len(retries) >= 3, worker.log()[-3000:]  # botocore retries once, we the rest
        assert "re-snapshot" not in worker.log() and "permanent error" not in worker.log()
        assert worker.alive
    finally:
        worker.kill()
        reader.close()


def test_trimmed_checkpoint_resnapshots(
    stack: dict[str, str], standin: StandInProcess, uid: str, workdir: Path
) -> None:
    """(d) stopped worker, stream trimmed past its checkpoint: one automatic re-snapshot,
    then streaming again."""
    ddb, table, env, reader = _setup(stack, standin, uid)
    writes = Writes(ddb, table, keys=80, seed=4)
    batch_put(ddb, table, [{"pk": {"S": f"k{i:04d}"}, "v": {"N": "0"}} for i in range(40)])
    writes.exists |= {f'{{"pk":"k{i:04d}"}}'.encode() for i in range(40)}
    worker = Worker("app", env, workdir, "w").start()
    first = {f'{{"pk":"k{i:04d}"}}'.encode() for i in range(40)}

    def snapshots() -> list[set[bytes]]:  # distinct keys per snapshot: repeats allowed
        return list(snapshot_keys(reader.records).values())

    try:
        worker.wait_log(rf"{table}: snapshot done", timeout=90)
        worker.wait_log(r"reading shard", timeout=60)
        writes.burst(60)
        standin.drain(table)
        standin.split(table)  # the trim below makes the closed root vanish from listings
        writes.burst(60)
        _wait_delivered(reader, writes.ledger, [worker])
        worker.wait_log(r"reading shard", count=3)
        reader.read_until(lambda rs: first <= set().union(*snapshots()), 30, "the snapshot")
        assert snapshots() == [first]
        assert worker.stop() < 30
        writes.burst(100, Ledger())  # while stopped; trimmed before anyone reads it
        trimmed = standin.trim(table)["tables"][table]["shards"]
        assert sum(s["records"] for s in trimmed) == 0 and trimmed[0]["gone"]
        t0 = time.monotonic()
        worker.start()
        worker.wait_log(rf"{table}: INIT_SYNC epoch 2", timeout=90)
        worker.wait_log(rf"{table}: snapshot done", timeout=90, count=2)
        worker.wait_log(r"reading shard .* from TRIM_HORIZON", timeout=60, count=3 + 2)
        live = {f'{{"pk":"{it["pk"]["S"]}"}}'.encode() for it in ddb.scan(TableName=table)["Items"]}
        reader.read_until(
            lambda rs: len(snapshots()) == 2 and snapshots()[1] == live, 60, "the re-snapshot"
        )
        print(f"\nre-snapshot of {len(live)} items {time.monotonic() - t0:.1f}s after restart")
        after = Ledger()
        writes.burst(100, after)
        _wait_delivered(reader, after, [worker])
        reader.poll(1.0)
        assert snapshots() == [first, live]  # one re-snapshot: each live item once more
        log = worker.log()
        assert "automatic re-snapshot" in log and "re-snapshot: shard" in log
        assert "epoch 3" not in log and "permanent error" not in log
        assert worker.alive
    finally:
        worker.kill()
        reader.close()


OWNED = re.compile(r"rebalance complete: \d+ control partitions owned \[([\d, ]*)\]")


def test_two_workers_get_a_tables_stream_units_evenly(
    stack: dict[str, str], standin: StandInProcess, uid: str, workdir: Path
) -> None:
    """(e) Placement: a table tagged once 2 workers share the 8 control partitions gets
    its stream units (the watcher and the 8 leaf shards, after their parents) spread
    over both within one; every unit's row lives on the partition its id names."""
    ddb, table, env, reader = _setup(
        stack,
        standin,
        uid,
        tagged=False,
        STATE_PARTITIONS="8",
        DYNAMODB_SYNC_MODE="stream_only",
        DYNAMODB_STREAM_START="trim_horizon",
    )
    for _ in range(3):
        standin.split(table)
    leaves = standin.open_shards(table)
    workers = [Worker("app", env, workdir, f"w{i}") for i in range(2)]
    units_log = TopicReader(stack, f"{env['APP_ID']}-units-changelog")
    try:
        for w in workers:
            w.start()

        def owned() -> list[set[int]]:
            last = [OWNED.findall(w.log())[-1:] for w in workers]
            return [{int(p) for p in m[0].split(",") if p.strip()} if m else set() for m in last]

        wait_until(
            lambda: all(owned()) and sum(len(o) for o in owned()) == 8,
            90,
            "2 workers sharing the 8 control partitions",
        )
        arn = ddb.describe_table(TableName=table)["Table"]["TableArn"]
        ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": f"itest-{uid}", "Value": "1"}])
        wait_until(
            lambda: set(leaves) <= {s for w in workers for s in _shards_read(w)},
            90,
            "every leaf shard being read",
        )
        writes = Writes(ddb, table, keys=200, seed=5)
        writes.burst(300)
        _wait_delivered(reader, writes.ledger, workers, timeout=90)
        rows: dict[str, Any] = {}

        def every_leaf_active(records: list[Any]) -> bool:
            rows.clear()
            for r in records:  # the latest row per unit
                rows[json.loads(r.key)] = None if r.value is None else json.loads(r.value)
            active = {
                UnitId.parse(u).shard_id
                for u, row in rows.items()
                if row and row["status"] == "active"
            }
            return set(leaves) <= active

        units_log.read_until(every_leaf_active, 30, "the leaves' unit rows")
        where = owned()
        running: Counter[int] = Counter()
        for unit_id, row in rows.items():
            parsed = UnitId.parse(unit_id)
            assert parsed.at is not None, f"{unit_id}: not placed"
            assert row is None or row["partition"] == parsed.at, (unit_id, row)
            if row is not None and row["status"] == "active":
                running[next(i for i, o in enumerate(where) if parsed.at in o)] += 1
        print(f"\nstream units per worker: {dict(running)}; owned: {where}")
        assert sum(running.values()) == len(leaves) + 1  # the leaves and the watcher
        assert abs(running[0] - running[1]) <= 1, running
        assert all(w.alive for w in workers)
    finally:
        for w in workers:
            w.kill()
        reader.close()
        units_log.close()
