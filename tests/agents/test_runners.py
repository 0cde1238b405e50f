"""Shard/scan runners and the supervisor, driven through fakes.

The real Streams/Tables edges wrap raw-client fakes (tests.fakes.streams.FakeStreams, and
a paging Scan fake in runner_fakes.py); Kafka output and control reports go to one recorder
keeping an ordered log of acknowledged batches and reports.  Runners run as tasks; tests
wait for recorded effects with a deadline, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agents import runners
from agents.runtime import Backoff, Ports, Runtime
from app.aws.dynamodb import Streams, Tables
from app.domain import coordinator as co
from app.domain import protocol as pr
from app.settings import Settings
from tests.agents.runner_fakes import FakeDynamo, Kafka, RawFake, RecordingStreams
from tests.fakes.streams import START_TIME, FakeStreams

TABLE = "orders"
MAX_BYTES = 2048


def assert_checkpoints_after_delivery(kafka: Kafka, must_deliver: list[str]) -> None:
    """No progress/finish position covers a record Kafka had not acknowledged yet."""
    acked: set[str] = set()
    for entry in kafka.log:
        if entry[0] == "sent":
            acked.update(v["source"]["seq"] for v in entry[1])
        elif entry[0] == "report" and entry[2].get("pos") is not None:
            pos = int(entry[2]["pos"])
            early = [s for s in must_deliver if int(s) <= pos and s not in acked]
            assert not early, f"checkpoint {pos} reported before Kafka acked {early}"


def metric(rt: Runtime, name: str, **labels: str) -> float:
    return rt.metrics.registry.get_sample_value(f"dynamodb_replicator_{name}_total", labels) or 0


async def until(cond: Callable[[], bool], what: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


def put(fake: FakeStreams, arn: str, *pks: str, **extra: dict) -> list[str]:
    """INSERT one record per key; their sequence numbers."""
    return [
        fake.write(arn, "INSERT", {"pk": {"S": pk}}, new_image={"pk": {"S": pk}, **extra})
        for pk in pks
    ]


def shard_unit(
    arn: str,
    shard: str,
    *,
    pos: str | None = None,
    count: int = 0,
    cutoff_ms: int = 0,
    table: str = TABLE,
    partition: int = 0,
) -> dict[str, Any]:
    spec = {
        "kind": "shard",
        "table": table,
        "epoch": 1,
        "key_names": ["pk"],
        "stream_arn": arn,
        "shard_id": shard,
        "cutoff_ms": cutoff_ms,
        "snapshot_start_ms": None,
        "snapshot_end_ms": None,
        "snapshot_items": None,
    }
    return {
        "id": co.shard_unit_id(table, 1, arn, shard),
        "spec": spec,
        "status": "active",
        "pos": pos,
        "count": count,
        "partition": partition,
    }


def scan_unit(*, pos: dict | None = None, count: int = 0) -> dict[str, Any]:
    spec = {
        "kind": "scan",
        "table": TABLE,
        "epoch": 1,
        "key_names": ["pk"],
        "segment": 0,
        "total": 1,
        "rcu": None,
        "snapshot_start_ms": 1_767_225_600_000,
    }
    return {
        "id": co.scan_unit_id(TABLE, 1, 0, 1),
        "spec": spec,
        "status": "active",
        "pos": pos,
        "count": count,
        "partition": 0,
    }


# ---------------------------------------------------------------- fixtures
class FastBackoff(Backoff):
    def __init__(self, base: float = 0.1, cap: float = 20.0) -> None:
        super().__init__(0.001, 0.004)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runners, "Backoff", FastBackoff)


@pytest.fixture
def fake() -> RecordingStreams:
    return RecordingStreams()


@pytest.fixture
def stream(fake: RecordingStreams) -> tuple[str, str]:
    arn = fake.create_stream(TABLE, ["pk"])
    return arn, fake.open_shards(arn)[0]


@pytest.fixture
def kafka() -> Kafka:
    return Kafka()


@pytest.fixture
def dynamo() -> FakeDynamo:
    return FakeDynamo([{"pk": {"S": f"k{i:02d}"}, "n": {"N": str(i)}} for i in range(8)])


@pytest.fixture(params=["botocore", "raw"])
async def rt(
    fake: RecordingStreams, dynamo: FakeDynamo, kafka: Kafka, request: pytest.FixtureRequest
) -> AsyncIterator[Runtime]:
    """Every runner test twice: pages through aiobotocore's parsed dicts, and as response
    bodies through the one-pass encoder (app.fastwire, DYNAMODB_RAW_HTTP)."""
    raw = request.param == "raw"
    settings = dataclasses.replace(
        Settings.from_env(),
        dynamodb_poll_interval=0.005,
        kafka_max_record_bytes=MAX_BYTES,
        dynamodb_scan_page_limit=3,
    )

    async def streams() -> Streams:
        return Streams(fake, RawFake(fake) if raw else None)  # type: ignore[arg-type]

    async def tables() -> Tables:
        return Tables(dynamo, RawFake(dynamo) if raw else None)  # type: ignore[arg-type]

    async def tagging() -> Any:
        raise AssertionError("runners never list tags")

    ports = Ports(settings, kafka, kafka.send_control, streams, tables, tagging)  # type: ignore[arg-type]
    rt = Runtime(ports, runners.RUNNERS)  # its own Metrics registry and Supervisor
    yield rt
    await rt.supervisor.stop_all(grace=1.0)


@pytest.fixture
async def launch(rt: Runtime) -> AsyncIterator[Callable[..., asyncio.Task]]:
    started: list[tuple[asyncio.Task, asyncio.Event]] = []

    def start(runner: Any, unit: dict[str, Any]) -> asyncio.Task:
        stopping = asyncio.Event()
        task = asyncio.create_task(runner(rt, unit, stopping))
        started.append((task, stopping))
        return task

    yield start
    for _, stopping in started:
        stopping.set()
    if started:
        done, pending = await asyncio.wait([t for t, _ in started], timeout=2.0)
        for task in pending:
            task.cancel()
        assert not pending, "a runner ignored its stopping event"
        for task in done:  # a runner's crash fails the test
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


# ---------------------------------------------------------------- run_shard
@pytest.mark.parametrize("close", ["split", "rollover"])
async def test_shard_delivers_in_order_checkpoints_after_ack_and_finishes(
    fake, stream, kafka, launch, close
):
    arn, shard = stream
    first = put(fake, arn, *"abcde")
    task = launch(runners.run_shard, shard_unit(arn, shard))
    await until(lambda: kafka.last_pos() == first[-1], "progress at the 5th record")
    rest = put(fake, arn, "f", "g", "h")
    children = list(fake.split(arn, shard)) if close == "split" else [fake.rollover(arn, shard)]
    await asyncio.wait_for(task, 3.0)  # the runner ends by itself at the shard end

    assert kafka.seqs() == first + rest and kafka.topics == {f"dynamodb-{TABLE}"}
    assert [v["op"] for v in kafka.values()] == ["c"] * 8
    assert_checkpoints_after_delivery(kafka, first + rest)
    uid = shard_unit(arn, shard)["id"]
    assert {e[1] for e in kafka.log if e[0] == "report"} == {f"u:{uid}"}
    assert kafka.reports("progress")[-1]["pos"] == rest[-1]
    assert kafka.log[-1][0] == "report"
    finish = kafka.log[-1][2]
    assert (finish["type"], finish["pos"], finish["count"]) == ("finish", rest[-1], 8)
    assert [(sid, parent) for sid, parent, *_ in finish["listing"]] == [(shard, None)] + [
        (c, shard) for c in children
    ]


async def test_expired_iterator_is_reacquired_after_the_checkpoint(fake, stream, kafka, launch, rt):
    arn, shard = stream
    first = put(fake, arn, "a", "b", "c")
    kafka.gate = asyncio.Event()
    launch(runners.run_shard, shard_unit(arn, shard))
    await until(lambda: kafka.entered == 1, "the first batch in flight")
    later = put(fake, arn, "d", "e")
    fake.expire_iterators()  # the NextShardIterator held for after this batch is dead
    kafka.gate.set()
    await until(lambda: kafka.last_pos() == later[-1], "progress at the 5th record")
    fake.expire_iterators()  # again while polling an idle shard
    last = put(fake, arn, "f")
    await until(lambda: kafka.last_pos() == last[-1], "progress at the 6th record")

    assert kafka.seqs() == first + later + last  # none lost, none twice
    assert_checkpoints_after_delivery(kafka, first + later + last)
    assert fake.iterator_requests == [
        ("TRIM_HORIZON", None),
        ("AFTER_SEQUENCE_NUMBER", first[-1]),
        ("AFTER_SEQUENCE_NUMBER", later[-1]),
    ]
    assert metric(rt, "retries", table=TABLE, reason="expired_iterator") == 2


async def test_throttles_and_server_errors_are_retried_without_loss(
    fake, stream, kafka, launch, rt
):
    arn, shard = stream
    first = put(fake, arn, "a", "b")
    launch(runners.run_shard, shard_unit(arn, shard))
    await until(lambda: kafka.last_pos() == first[-1], "progress at the 2nd record")
    for code in (
        "LimitExceededException",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "InternalServerError",
    ):
        fake.inject("get_records", code)
    later = put(fake, arn, "c", "d")
    await until(lambda: kafka.last_pos() == later[-1], "progress at the 4th record")

    assert kafka.seqs() == first + later
    assert metric(rt, "throttles", table=TABLE, operation="GetRecords") == 3
    assert metric(rt, "retries", table=TABLE, reason="InternalServerError") == 1
    assert len(fake.iterator_requests) == 1  # retried with the iterator it held


@pytest.mark.parametrize("how", ["trimmed", "shard gone"])
async def test_checkpoint_behind_trim_horizon_asks_for_a_resnapshot(
    fake, stream, kafka, launch, how
):
    arn, shard = stream
    old = put(fake, arn, "a", "b", "c")
    if how == "shard gone":
        fake.rollover(arn, shard)
    fake.advance(100)
    put(fake, arn, "d")
    fake.trim(arn, fake.now - 50)
    task = launch(runners.run_shard, shard_unit(arn, shard, pos=old[0], count=1))
    await asyncio.wait_for(task, 3.0)

    assert [e[:2] for e in kafka.log] == [("report", f"t:{TABLE}")]
    msg = kafka.log[0][2]
    assert (msg["type"], msg["epoch"]) == ("resnapshot", 1) and shard in msg["reason"]


async def test_records_before_cutoff_are_skipped_but_checkpointed(fake, stream, kafka, launch, rt):
    arn, shard = stream
    old = put(fake, arn, "a", "b", "c")  # at START_TIME
    cutoff_ms = int((START_TIME + 5) * 1000)
    launch(runners.run_shard, shard_unit(arn, shard, cutoff_ms=cutoff_ms))
    await until(lambda: kafka.last_pos() == old[-1], "a checkpoint past the skipped records")
    assert kafka.entered == 0 and metric(rt, "skipped_before_cutoff", table=TABLE) == 3
    fake.advance(10)
    new = put(fake, arn, "d", "e")
    await until(lambda: kafka.last_pos() == new[-1], "progress at the 5th record")

    assert kafka.seqs() == new
    assert [p["count"] for p in kafka.reports("progress")] == [3, 5]
    assert metric(rt, "skipped_before_cutoff", table=TABLE) == 3
    # only what reached Kafka counts as delivered
    assert metric(rt, "events_out", table=TABLE, kind="stream") == 2


async def test_oversize_and_unrepresentable_records_are_dead_lettered(
    fake, stream, kafka, launch, rt
):
    arn, shard = stream
    (a,) = put(fake, arn, "a")
    put(fake, arn, "big", blob={"S": "x" * 4000})
    (c,) = put(fake, arn, "c")
    (bad,) = put(fake, arn, "bad", n={"N": "NaN"})
    (d,) = put(fake, arn, "d")
    launch(runners.run_shard, shard_unit(arn, shard))
    await until(lambda: kafka.last_pos() == d, "progress past all five records")
    (e,) = put(fake, arn, "e")  # the loop goes on
    await until(lambda: kafka.last_pos() == e, "progress at the 6th record")

    assert kafka.seqs() == [a, c, d, e]
    (too_large, codec_err) = sorted(kafka.dead, key=lambda x: not x[2].startswith("too large"))
    assert too_large[:2] == (TABLE, f"shard {shard}") and too_large[3] == '{"pk":"big"}'
    assert too_large[2].startswith("too large") and "KAFKA_MAX_RECORD_BYTES" in too_large[2]
    assert too_large[4] > MAX_BYTES
    assert codec_err[:2] == (TABLE, f"shard {shard} seq {bad}")
    assert "attribute n: invalid number" in codec_err[2] and "NaN" not in codec_err[2]
    # the record as received goes along (to fix and replay), with its keys
    assert codec_err[3] == {"pk": {"S": "bad"}}
    received = json.loads(codec_err[5])
    assert received["new_image"] == {"pk": {"S": "bad"}, "n": {"N": "NaN"}}
    assert received["sequence_number"] == bad and received["keys"] == {"pk": {"S": "bad"}}
    assert metric(rt, "dead_letters", table=TABLE, reason="too_large") == 1
    assert metric(rt, "dead_letters", table=TABLE, reason="codec") == 1


async def test_failed_sends_are_retried_and_checkpointed_once_after_success(
    fake, stream, kafka, launch, rt
):
    arn, shard = stream
    kafka.fail_next = 2
    seqs = put(fake, arn, "a", "b", "c")
    launch(runners.run_shard, shard_unit(arn, shard))
    await until(lambda: kafka.last_pos() == seqs[-1], "progress after the third attempt")

    kinds = [
        e[0] if e[0] != "report" else e[2]["type"]
        for e in kafka.log
        if e[0] != "report" or e[2]["type"] != "caught_up"
    ]
    assert kinds == ["failed", "failed", "sent", "progress"]
    assert [v["source"]["seq"] for v in kafka.log[2][1]] == seqs
    assert metric(rt, "retries", table=TABLE, reason="kafka") == 2


def held_pages(rt: Runtime) -> int:
    return rt.settings.worker_max_pages - rt.pages._value  # slots taken right now


async def test_next_page_is_read_while_kafka_acks_the_previous_but_sent_after_it(
    fake, stream, kafka, launch, rt
):
    arn, shard = stream
    kafka.gate = asyncio.Event()
    first = put(fake, arn, "a", "b")
    launch(runners.run_shard, shard_unit(arn, shard))
    await until(lambda: kafka.entered == 1, "page 1 in flight")
    second = put(fake, arn, "c", "d")
    # page 2 read and encoded while page 1 waits for Kafka: both hold a page slot
    await until(lambda: held_pages(rt) == 2, "page 2 read beside page 1 in flight")
    assert kafka.entered == 1 and kafka.reports() == []  # nothing of page 2 sent yet
    kafka.fail_next = 1  # page 1's first attempt fails: it is resent before page 2
    kafka.gate.set()
    await until(lambda: kafka.last_pos() == second[-1], "progress after page 2")

    kinds = [
        (e[0], [v["source"]["seq"] for v in e[1]])
        if e[0] != "report"
        else (e[2]["type"], e[2]["pos"])
        for e in kafka.log
        if e[0] != "report" or e[2]["type"] != "caught_up"
    ]
    assert kinds == [
        ("failed", first),
        ("sent", first),
        ("progress", first[-1]),
        ("sent", second),
        ("progress", second[-1]),
    ]
    await until(lambda: held_pages(rt) == 0, "slots given back")


async def test_a_page_slot_is_given_back_on_leaving_unless_a_commit_took_it():
    slots = asyncio.Semaphore(2)
    flight = runners.InFlight(slots)
    with pytest.raises(RuntimeError):
        async with flight.slot():
            assert slots._value == 1
            raise RuntimeError("the request failed")
    assert slots._value == 2
    async with flight.slot():  # a page with nothing to commit
        pass
    assert slots._value == 2
    ack = asyncio.Event()
    async with flight.slot():
        await flight.commit(ack.wait())
    assert slots._value == 1 and not flight.settled()  # held by the commit in flight
    ack.set()
    await flight.wait()
    assert slots._value == 2 and flight.settled()


async def test_one_page_slot_is_shared_by_all_shards_without_deadlock(fake, kafka, rt):
    rt.pages = asyncio.Semaphore(1)
    rt.settings = dataclasses.replace(rt.settings, worker_max_pages=1)
    units, expected = [], []
    for name in ("tab1", "tab2", "tab3"):
        arn = fake.create_stream(name, ["pk"])
        units.append(shard_unit(arn, fake.open_shards(arn)[0], table=name))
        expected.append(put(fake, arn, f"{name}-a", f"{name}-b"))
    for unit in units:
        rt.supervisor.ensure(unit)
    await until(
        lambda: set(expected[0] + expected[1] + expected[2]) <= set(kafka.seqs()),
        "every shard's first records",
    )
    more = [put(fake, u["spec"]["stream_arn"], f"{u['spec']['table']}-c") for u in units]
    await until(lambda: {m[0] for m in more} <= set(kafka.seqs()), "every shard's next record")
    for unit, first, nxt in zip(units, expected, more, strict=True):
        arn = unit["spec"]["stream_arn"]
        mine = [v["source"]["seq"] for v in kafka.values() if v["source"]["stream_arn"] == arn]
        assert mine == first + nxt  # each shard in order, nothing twice


# ---------------------------------------------------------------- run_scan
def keys_sent(kafka: Kafka) -> list[str]:
    return [v["keys"]["pk"] for v in kafka.values()]


async def test_scan_pages_reports_cursor_progress_and_retries(dynamo, kafka, launch, rt):
    dynamo.faults = {2: "ProvisionedThroughputExceededException", 3: "InternalServerError"}
    task = launch(runners.run_scan, scan_unit())
    await asyncio.wait_for(task, 3.0)

    assert keys_sent(kafka) == [f"k{i:02d}" for i in range(8)]
    assert {v["op"] for v in kafka.values()} == {"r"}
    kinds = [e[0] if e[0] != "report" else e[2]["type"] for e in kafka.log]
    assert kinds == ["sent", "progress", "sent", "progress", "sent", "finish"]
    assert kafka.reports() == [
        {"type": "progress", "pos": {"pk": {"s": "k02"}}, "count": 3},
        {"type": "progress", "pos": {"pk": {"s": "k05"}}, "count": 6},
        {"type": "finish", "count": 8},
    ]
    # the retries repeat the same page
    assert [r.get("ExclusiveStartKey") for r in dynamo.requests] == [None] + [
        {"pk": {"S": "k02"}}
    ] * 3 + [{"pk": {"S": "k05"}}]
    assert all(r["Limit"] == 3 and "Segment" not in r for r in dynamo.requests)
    assert metric(rt, "throttles", table=TABLE, operation="Scan") == 1
    assert metric(rt, "retries", table=TABLE, reason="InternalServerError") == 1


async def test_scan_resumes_after_a_saved_cursor(dynamo, kafka, launch):
    task = launch(runners.run_scan, scan_unit(pos={"pk": {"s": "k04"}}, count=5))
    await asyncio.wait_for(task, 3.0)

    assert keys_sent(kafka) == ["k05", "k06", "k07"]
    assert dynamo.requests[0]["ExclusiveStartKey"] == {"pk": {"S": "k04"}}
    assert kafka.reports() == [{"type": "finish", "count": 8}]


async def test_scan_permanent_error_reports_failed(dynamo, kafka, launch):
    dynamo.faults = {1: "AccessDeniedException"}
    task = launch(runners.run_scan, scan_unit())
    await asyncio.wait_for(task, 3.0)

    assert [e[:2] for e in kafka.log] == [("report", f"u:{scan_unit()['id']}")]
    assert kafka.log[0][2]["type"] == "failed"
    assert "AccessDeniedException" in kafka.log[0][2]["error"]
    assert len(dynamo.requests) == 1


# ---------------------------------------------------------------- Supervisor
async def test_ensure_twice_starts_one_runner(fake, stream, kafka, rt, monkeypatch):
    arn, shard = stream
    calls = []

    async def counting(rt_: Runtime, unit: dict, stopping: asyncio.Event) -> None:
        calls.append(unit["id"])
        await runners.run_shard(rt_, unit, stopping)

    monkeypatch.setitem(runners.RUNNERS, "shard", counting)
    unit = shard_unit(arn, shard)
    rt.supervisor.ensure(unit)
    task = rt.supervisor.tasks[unit["id"]][0]
    rt.supervisor.ensure(unit)
    seqs = put(fake, arn, "a")
    await until(lambda: kafka.last_pos() == seqs[-1], "progress")

    assert rt.supervisor.tasks[unit["id"]][0] is task and calls == [unit["id"]]
    assert rt.supervisor.running() == [unit["id"]] and kafka.seqs() == seqs


async def test_stop_lets_the_current_batch_complete(fake, stream, kafka, rt, caplog):
    arn, shard = stream
    unit = shard_unit(arn, shard)
    kafka.gate = asyncio.Event()
    seqs = put(fake, arn, "a", "b")
    rt.supervisor.ensure(unit)
    task, stopping, _ = rt.supervisor.tasks[unit["id"]]
    await until(lambda: kafka.entered == 1, "a batch in flight")
    stopper = asyncio.create_task(rt.supervisor.stop([unit["id"]], grace=2.0))
    await until(stopping.is_set, "the stopping event")
    assert not task.done()
    reads = fake.calls["get_records"]
    kafka.gate.set()
    await asyncio.wait_for(stopper, 3.0)

    assert task.done() and not task.cancelled() and "crashed" not in caplog.text
    assert kafka.seqs() == seqs and kafka.last_pos() == seqs[-1]
    assert fake.calls["get_records"] == reads  # no further read once stopping
    assert rt.supervisor.running() == []


async def test_stop_partitions_stops_only_their_units(fake, stream, kafka, rt):
    arn, shard = stream
    other_arn = fake.create_stream("users", ["pk"])
    mine = shard_unit(arn, shard, partition=0)
    other = shard_unit(other_arn, fake.open_shards(other_arn)[0], table="users", partition=1)
    rt.supervisor.ensure(mine)
    rt.supervisor.ensure(other)
    tasks = {uid: t for uid, (t, _, _) in rt.supervisor.tasks.items()}
    await until(lambda: fake.calls["get_records"] >= 2, "both runners reading")
    await rt.supervisor.stop_partitions({0}, grace=2.0)

    assert tasks[mine["id"]].done() and not tasks[other["id"]].done()
    assert rt.supervisor.running() == [other["id"]]
    seqs = put(fake, other_arn, "u1")  # the other one still replicates
    await until(lambda: kafka.last_pos() == seqs[-1], "progress of the remaining unit")


async def test_ensure_while_stopping_waits_for_the_old_runner(fake, stream, kafka, rt):
    arn, shard = stream
    unit = shard_unit(arn, shard)
    kafka.gate = asyncio.Event()
    put(fake, arn, "a")
    rt.supervisor.ensure(unit)
    old, stopping, _ = rt.supervisor.tasks[unit["id"]]
    await until(lambda: kafka.entered == 1, "a batch in flight")
    stopper = asyncio.create_task(rt.supervisor.stop([unit["id"]], grace=2.0))
    await until(stopping.is_set, "the stopping event")
    rt.supervisor.ensure(unit)  # e.g. stop + create of the same unit in quick succession
    new, _, _ = rt.supervisor.tasks[unit["id"]]
    assert new is not old
    iterators = fake.calls["get_shard_iterator"]
    await asyncio.sleep(0)  # let the new task run up to its wait on the old one
    assert fake.calls["get_shard_iterator"] == iterators  # not reading beside the old one
    kafka.gate.set()
    await asyncio.wait_for(stopper, 3.0)
    assert old.done()
    await until(lambda: fake.calls["get_shard_iterator"] > iterators, "the new runner reading")
    assert rt.supervisor.running() == [unit["id"]]


async def test_stop_soon_returns_at_once_and_the_batch_completes_beside(
    fake, stream, kafka, rt, caplog
):
    """The control agent's stop: the runner is told at once, its last batch is delivered
    and checkpointed after stop_soon returned; an ensure() right after waits for it; a
    dropped unit's memory is forgotten once its runner ended (its last commit remembered
    a position after the agent's forget)."""
    arn, shard = stream
    unit = shard_unit(arn, shard)
    kafka.gate = asyncio.Event()
    seqs = put(fake, arn, "a", "b")
    rt.supervisor.ensure(unit)
    old, stopping, _ = rt.supervisor.tasks[unit["id"]]
    await until(lambda: kafka.entered == 1, "a batch in flight")
    rt.supervisor.stop_soon([unit["id"]], grace=2.0, forget=True)
    assert stopping.is_set() and not old.done()  # told now, not waited for
    rt.supervisor.forget(unit["id"])  # what the agent does next for a dropped unit
    kafka.gate.set()
    await until(old.done, "the old runner's end")
    assert kafka.seqs() == seqs and kafka.last_pos() == seqs[-1]
    await until(lambda: unit["id"] not in rt.supervisor.tasks, "the stop's cleanup")
    assert unit["id"] not in rt.supervisor.local_pos  # remembered after forget: forgotten

    # stop_soon then ensure of the same unit (a stop and a create in quick succession)
    kafka.gate = asyncio.Event()
    more = put(fake, arn, "c")
    unit = shard_unit(arn, shard, pos=seqs[-1], count=2)  # as stored (the memory is gone)
    rt.supervisor.ensure(unit)
    first, _, _ = rt.supervisor.tasks[unit["id"]]
    await until(lambda: kafka.entered == 2, "its batch in flight")
    rt.supervisor.stop_soon([unit["id"]], grace=2.0, forget=True)
    rt.supervisor.ensure(unit)
    second, _, _ = rt.supervisor.tasks[unit["id"]]
    assert second is not first
    reads = fake.calls["get_shard_iterator"]
    await asyncio.sleep(0.01)
    assert fake.calls["get_shard_iterator"] == reads  # not reading beside the old one
    kafka.gate.set()
    await until(lambda: fake.calls["get_shard_iterator"] > reads, "the new runner reading")
    assert rt.supervisor.running() == [unit["id"]] and first.done()
    assert rt.supervisor.tasks[unit["id"]][0] is second  # the old stop left it alone
    assert unit["id"] in rt.supervisor.local_pos  # and did not forget the new one's memory
    assert not rt.supervisor._stops and "stopping runners failed" not in caplog.text
    assert kafka.seqs() == seqs + more


async def test_a_failing_background_stop_is_logged(rt, caplog, monkeypatch):
    async def broken(*args: Any) -> None:
        raise RuntimeError("boom")

    task = asyncio.ensure_future(asyncio.sleep(10))
    rt.supervisor.tasks["u1"] = (task, asyncio.Event(), 0)
    with monkeypatch.context() as patch:
        patch.setattr(rt.supervisor, "_stopped", broken)
        rt.supervisor.stop_soon(["u1"])
        await until(lambda: not rt.supervisor._stops, "the stop task's end")
    assert "stopping runners failed" in caplog.text and "boom" in caplog.text
    task.cancel()
    del rt.supervisor.tasks["u1"]


async def test_a_runner_that_fails_is_restarted_from_its_position(
    fake, stream, kafka, rt, monkeypatch, caplog
):
    import agents.runtime

    monkeypatch.setattr(agents.runtime, "Backoff", lambda *a: FastBackoff())
    arn, shard = stream
    unit = shard_unit(arn, shard)
    real_report = kafka.report
    failures = []

    async def flaky_report(message, wait=False):
        if isinstance(message, pr.Progress) and not failures:
            failures.append(message)
            raise ConnectionError("Kafka unreachable")
        await real_report(message, wait)

    rt.report = flaky_report
    first = put(fake, arn, "a", "b")
    rt.supervisor.ensure(unit)
    await until(lambda: failures, "the failed checkpoint report")
    second = put(fake, arn, "c")
    await until(lambda: kafka.last_pos() == second[-1], "progress after the restart")
    assert "restarting it" in caplog.text
    assert (
        rt.metrics.registry.get_sample_value(
            "dynamodb_replicator_retries_total", {"table": "orders", "reason": "runner_restart"}
        )
        == 1
    )
    # Kafka had acknowledged the batch, so the restart resumes after it: no gap, no repeat
    assert kafka.seqs() == first + second


async def test_a_unit_finished_here_is_not_rerun_when_created_again(fake, stream, kafka, rt):
    arn, shard = stream
    unit = shard_unit(arn, shard)
    seqs = put(fake, arn, "a", "b")
    fake.rollover(arn, shard)
    rt.supervisor.ensure(unit)
    await until(lambda: kafka.reports("finish"), "the finish report")
    await asyncio.wait_for(rt.supervisor.tasks[unit["id"]][0], 3.0)
    reads = fake.calls["get_records"]
    # a create that overtook the finish (a discovery heal): no second runner, the finish
    # report is repeated instead (which also heals a finish the agent never got)
    rt.supervisor.ensure(unit)
    await until(lambda: len(kafka.reports("finish")) == 2, "the repeated finish report")
    assert fake.calls["get_records"] == reads and rt.supervisor.running() == []
    assert kafka.reports("finish")[0] == kafka.reports("finish")[1]
    assert kafka.seqs() == seqs  # nothing delivered twice
    rt.supervisor.forget(unit["id"])  # dropped: a later create of the same id runs again
    rt.supervisor.ensure(unit)
    await until(lambda: fake.calls["get_records"] > reads, "a new runner after forget")


# ---------------------------------------------------------------- issue 10: fencing, lag, memory
def lag(rt: Runtime, shard: str) -> float | None:
    return rt.metrics.registry.get_sample_value(
        "dynamodb_replicator_lag_seconds", {"table": TABLE, "shard": shard}
    )


async def test_a_runner_no_longer_current_sends_nothing_more(fake, stream, kafka, launch, rt):
    """Item 6: nothing fenced a runner whose unit was dropped, stopped, moved to another
    epoch or another worker; its pages could land after the current owner's."""
    arn, shard = stream
    current = {"yes": True}
    rt.fence = lambda unit: current["yes"]
    first = put(fake, arn, "a", "b")
    task = launch(runners.run_shard, shard_unit(arn, shard))
    await until(lambda: kafka.last_pos() == first[-1], "the first page")
    current["yes"] = False  # e.g. a resync: the unit of the old epoch was dropped
    put(fake, arn, "c", "d")
    await asyncio.wait_for(task, 3.0)  # it ends by itself
    assert kafka.seqs() == first and kafka.last_pos() == first[-1]
    assert kafka.reports("finish") == []
    assert metric(rt, "retries", table=TABLE, reason="superseded") == 1
    assert held_pages(rt) == 0


async def test_a_scan_no_longer_current_neither_sends_nor_finishes(dynamo, kafka, launch, rt):
    rt.fence = lambda unit: False
    await asyncio.wait_for(launch(runners.run_scan, scan_unit()), 3.0)
    assert kafka.values() == [] and kafka.reports() == []
    assert metric(rt, "retries", table=TABLE, reason="superseded") == 1


async def test_an_idle_caught_up_shard_has_no_lag(fake, stream, kafka, launch, rt):
    """Item 8: an idle shard kept its last batch's lag (a quiet table showed 14.3 s)."""
    arn, shard = stream
    seqs = put(fake, arn, "a")  # written at the fake's START_TIME: long ago
    launch(runners.run_shard, shard_unit(arn, shard))
    await until(lambda: kafka.reports("caught_up"), "the caught-up report")
    progress = kafka.reports("progress")
    assert progress[-1]["pos"] == seqs[-1] and progress[-1]["lag_ms"] > 60_000
    assert lag(rt, shard) == 0
    assert len(kafka.reports("caught_up")) == 1  # once, not at every empty page
    # and the unit state shows it
    u = co.on_unit(None, "u", {"type": "create", "unit": {"epoch": 1, "kind": "shard"}}, 0, 0).state
    u = co.on_unit(u, "u", progress[-1], 0, 1).state
    assert co.on_unit(u, "u", {"type": "caught_up"}, 0, 2).state["lag_ms"] == 0


async def test_a_shards_lag_series_ends_with_its_runner(fake, stream, kafka, launch, rt):
    """Item 8: lag_seconds{table,shard} of finished shards stayed for ever (unbounded with
    shard churn, stale values exported)."""
    arn, shard = stream
    put(fake, arn, "a")
    task = launch(runners.run_shard, shard_unit(arn, shard))
    await until(lambda: lag(rt, shard) is not None, "the lag series")
    (child,) = [fake.rollover(arn, shard)]
    await asyncio.wait_for(task, 3.0)
    assert lag(rt, shard) is None
    put(fake, arn, "b")
    rt.supervisor.ensure(shard_unit(arn, child))
    await until(lambda: lag(rt, child) is not None, "the child's lag series")
    await rt.supervisor.stop_all(grace=1.0)  # e.g. its partition moved to another worker
    assert lag(rt, child) is None


async def test_worker_memory_of_units_does_not_outlive_them(rt):
    """Items 2 and 8: Supervisor.finished/local_pos kept every unit ever run here; after a
    rebalance only the units this worker still runs are remembered."""
    for uid in ("kept", "moved", "dropped-elsewhere"):
        rt.supervisor.remember(uid, "1", 1)
        rt.supervisor.finished[uid] = {"type": "finish"}
    rt.supervisor.retain({"kept"})
    assert set(rt.supervisor.local_pos) == {"kept"} and set(rt.supervisor.finished) == {"kept"}


async def test_no_runner_starts_once_the_worker_drains(fake, stream, kafka, rt, monkeypatch):
    """A rebalance completing during the graceful shutdown started a runner after the
    drain had stopped them all (seen in a worker log: it read on after 'runners stopped')."""
    arn, shard = stream
    await rt.drain(timeout=0.2)
    rt.supervisor.ensure(shard_unit(arn, shard))
    assert rt.supervisor.running() == []


# ---------------------------------------------------------------- Kafka refusals (item 5)
async def test_a_record_kafka_refuses_as_too_large_is_dead_lettered_and_the_rest_flows(
    fake, stream, kafka, launch, rt
):
    from aiokafka.errors import MessageSizeTooLargeError

    arn, shard = stream
    first = put(fake, arn, "a", "b", "huge", "c", "d")
    kafka.refuse[b'{"pk":"huge"}'] = MessageSizeTooLargeError()
    launch(runners.run_shard, shard_unit(arn, shard))
    await until(lambda: kafka.last_pos() == first[-1], "progress past the refused record")
    later = put(fake, arn, "e")
    await until(lambda: kafka.last_pos() == later[-1], "the shard goes on")

    huge = first[2]
    assert set(kafka.seqs()) == set(first + later) - {huge}
    # per partition in order: the batch went again one record per batch
    assert [s for s in kafka.seqs() if s != huge][-5:] == [
        first[0],
        first[1],
        first[3],
        first[4],
        later[0],
    ]
    assert kafka.calls[1][2] is True
    ((table, _, error, keys, _, payload),) = kafka.dead
    assert (table, keys) == (TABLE, '{"pk":"huge"}') and "refused" in error
    assert "MessageSizeTooLargeError" in error and json.loads(payload)["source"]["seq"] == huge
    assert metric(rt, "dead_letters", table=TABLE, reason="too_large") == 1
    assert_checkpoints_after_delivery(kafka, [s for s in first + later if s != huge])


async def test_a_record_over_the_topics_own_limit_goes_to_the_dlq_unsent(
    fake, stream, kafka, launch, rt
):
    arn, shard = stream
    kafka.topic_limit = 600  # an existing topic with a small max.message.bytes
    seqs = put(fake, arn, "a")
    big = put(fake, arn, "big", blob={"S": "x" * 700})  # under KAFKA_MAX_RECORD_BYTES
    launch(runners.run_shard, shard_unit(arn, shard))
    await until(lambda: kafka.last_pos() == big[-1], "progress past both")
    assert kafka.seqs() == seqs
    ((_, _, error, keys, size, payload),) = kafka.dead
    assert keys == '{"pk":"big"}' and "max.message.bytes" in error and size > 600
    assert payload is not None


async def test_kafka_authorization_failure_pauses_the_table_and_others_keep_flowing(
    fake, kafka, rt
):
    from aiokafka.errors import TopicAuthorizationFailedError

    rt.pages = asyncio.Semaphore(1)  # one page slot for both tables: a wedge would stop both
    rt.settings = dataclasses.replace(rt.settings, worker_max_pages=1)
    units, seqs = [], []
    for name in ("denied", "fine"):
        arn = fake.create_stream(name, ["pk"])
        units.append(shard_unit(arn, fake.open_shards(arn)[0], table=name))
        seqs.append(put(fake, arn, f"{name}-a", f"{name}-b"))
    kafka.refuse[b'{"pk":"denied-a"}'] = TopicAuthorizationFailedError("dynamodb-denied")
    for unit in units:
        rt.supervisor.ensure(unit)
    await until(lambda: kafka.reports("failed"), "the denied table's unit reports failed")
    (failed,) = kafka.reports("failed")
    assert "TopicAuthorizationFailedError" in failed["error"]
    assert not any(
        e[1] == co.unit_key(units[0]["id"])
        for e in kafka.log
        if e[0] == "report" and e[2]["type"] == "progress"
    )
    await until(lambda: set(seqs[1]) <= set(kafka.seqs()), "the other table's records")
    more = put(fake, units[1]["spec"]["stream_arn"], "fine-c")
    await until(lambda: more[0] in kafka.seqs(), "the other table keeps flowing")
    assert len(kafka.reports("failed")) == 1  # the coordinator pauses the table (its units stop)


async def test_a_partly_acknowledged_batch_is_sent_again_only_for_what_was_not_acked(
    fake, stream, kafka, launch, rt
):
    from aiokafka.errors import NotLeaderForPartitionError

    from app.domain.errors import KafkaSendTimeout

    arn, shard = stream
    kafka.partial = [NotLeaderForPartitionError(), KafkaSendTimeout("no ack within 30s")]
    seqs = put(fake, arn, "a", "b", "c", "d")
    launch(runners.run_shard, shard_unit(arn, shard))
    await until(lambda: kafka.last_pos() == seqs[-1], "progress after the retries")
    assert [n for _, n, _ in kafka.calls] == [4, 2, 1]  # only what was not acknowledged
    assert kafka.seqs() == seqs  # in order, nothing twice
    assert metric(rt, "retries", table=TABLE, reason="kafka") == 1
    assert metric(rt, "retries", table=TABLE, reason="kafka_timeout") == 1


async def test_pages_with_records_follow_at_once_an_idle_shard_waits(
    fake, stream, kafka, launch, rt
):
    """Issue 14 item 4: every GetRecords call is billed, so an empty page waits
    DYNAMODB_POLL_INTERVAL (default 1 s: at most one call a second per idle shard), but
    a page with records -- full (1000) or not -- is followed at once."""
    rt.settings = dataclasses.replace(rt.settings, dynamodb_poll_interval=30.0)
    arn, shard = stream
    seqs = put(fake, arn, *[f"k{i:04d}" for i in range(2500)])
    launch(runners.run_shard, shard_unit(arn, shard))
    # 1000 + 1000 + 500 records, then the empty page: far sooner than one 30 s interval
    await until(lambda: kafka.last_pos() == seqs[-1], "all 2500 records", timeout=10.0)
    await until(lambda: kafka.reports("caught_up"), "the empty page")
    assert fake.calls["get_records"] == 4
    # an observation window, not a readiness wait: no further call inside the interval
    await asyncio.sleep(0.3)
    assert fake.calls["get_records"] == 4
