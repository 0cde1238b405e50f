"""The runners' side of the snapshot's buffer (issue 13): a shard writing into the buffer
topic, a pause that is reported only once the runner ended, and the replay of one buffer
partition into the output topic (through fakes: no Kafka here)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agents import runners
from agents.runtime import Ports, Runtime
from app.aws.dynamodb import Streams
from app.domain import coordinator as co
from app.settings import Settings
from tests.agents.runner_fakes import Kafka, RecordingStreams
from tests.agents.test_runners import TABLE, put, shard_unit, until

BUFFER = f"test-agents-buffer-{TABLE}-1"


class FakeReader:
    """One buffer partition: records appended by the test, read in offset order."""

    def __init__(self, records: list[tuple[bytes, bytes | None]], partitions: int = 2) -> None:
        self.records = list(records)
        self.partitions_found = partitions
        self.position_ = 0
        self.deleted_before = 0
        self.closed = False

    async def start(self, position: int | None) -> None:
        self.position_ = self.deleted_before if position is None else position  # log start

    async def partitions(self) -> int:
        return self.partitions_found

    async def read(self, max_records: int, timeout: float) -> list[tuple[int, bytes, Any]]:
        batch = [
            (offset, k, v) for offset, (k, v) in enumerate(self.records) if offset >= self.position_
        ][:max_records]
        if not batch:
            await asyncio.sleep(min(timeout, 0.01))
            return []
        self.position_ = batch[-1][0] + 1
        return batch

    async def end(self, timeout: float = 30.0) -> int:
        return len(self.records)

    async def position(self) -> int:
        return self.position_

    def known_end(self) -> int:
        return len(self.records)

    async def delete_before(self, offset: int) -> None:
        self.deleted_before = offset

    async def close(self) -> None:
        self.closed = True


class FakeBuffers:
    def __init__(self, reader: FakeReader) -> None:
        self.reader_ = reader
        self.asked: list[tuple[str, int]] = []

    async def reader(self, topic: str, partition: int) -> FakeReader:
        self.asked.append((topic, partition))
        return self.reader_


@pytest.fixture
async def rt_with(kafka: Kafka) -> AsyncIterator[Any]:
    runtimes: list[Runtime] = []
    stored: dict[str, dict[str, Any]] = {}

    def make(fake: RecordingStreams | None = None, reader: FakeReader | None = None) -> Runtime:
        settings = dataclasses.replace(Settings.from_env(), dynamodb_poll_interval=0.005)

        async def streams() -> Streams:
            assert fake is not None
            return Streams(fake)

        async def none() -> Any:
            raise AssertionError("not used")

        ports = Ports(
            settings,
            kafka,  # type: ignore[arg-type]
            kafka.send_control,
            streams,
            none,
            none,
            stored_unit=stored.get,
            buffers=FakeBuffers(reader) if reader else None,  # type: ignore[arg-type]
        )
        rt = Runtime(ports, runners.RUNNERS)
        rt.stored = stored  # type: ignore[attr-defined]
        runtimes.append(rt)
        return rt

    yield make
    for rt in runtimes:
        await rt.supervisor.stop_all(grace=1.0)


@pytest.fixture
def kafka() -> Kafka:
    return Kafka()


def buffered(unit: dict[str, Any]) -> dict[str, Any]:
    return {**unit, "spec": {**unit["spec"], "sink": "buffer", "partitions": 2}}


def replay_unit(partition: int = 0, pos: int | None = None, count: int = 0) -> dict[str, Any]:
    spec = {
        "kind": "replay",
        "table": TABLE,
        "epoch": 1,
        "key_names": ["pk"],
        "partition": partition,
        "partitions": 2,
    }
    uid = co.replay_unit_id(TABLE, 1, partition)
    return {"id": uid, "spec": spec, "pos": pos, "count": count, "status": "active"}


async def test_a_buffering_shard_writes_its_changes_into_the_buffer_topic(kafka, rt_with):
    fake = RecordingStreams()
    arn = fake.create_stream(TABLE, ["pk"])
    shard = fake.open_shards(arn)[0]
    rt = rt_with(fake)
    seqs = put(fake, arn, "a", "b", "c")
    rt.supervisor.ensure(buffered(shard_unit(arn, shard)))
    await until(lambda: kafka.last_pos() == seqs[-1], "the checkpoint after the 3rd record")
    assert kafka.topics == {BUFFER}  # nothing went to the output topic
    assert kafka.seqs() == seqs  # the same events, in stream order
    buffered_events = rt.metrics.registry.get_sample_value(
        "dynamodb_replicator_events_out_total", {"table": TABLE, "kind": "buffered"}
    )
    assert buffered_events == 3


async def test_a_paused_shard_says_paused_only_once_its_runner_ended(kafka, rt_with):
    fake = RecordingStreams()
    arn = fake.create_stream(TABLE, ["pk"])
    shard = fake.open_shards(arn)[0]
    rt = rt_with(fake)
    unit = buffered(shard_unit(arn, shard))
    put(fake, arn, "a")
    kafka.gate = asyncio.Event()  # the first page's send hangs until released
    rt.supervisor.ensure(unit)
    await until(lambda: kafka.entered == 1, "the first page in flight")
    rt.supervisor.pause_soon(unit["id"], grace=5.0)
    await asyncio.sleep(0.05)
    assert kafka.reports("paused") == []  # its page is still in flight
    kafka.gate.set()
    await until(lambda: kafka.reports("paused"), "the paused report")
    assert rt.supervisor.running() == []
    # the page in flight was acknowledged before the pause was said
    kinds = [e[0] if e[0] != "report" else e[2]["type"] for e in kafka.log]
    assert kinds.index("sent") < kinds.index("paused")


async def test_a_pause_for_a_unit_not_running_here_is_answered_at_once(kafka, rt_with):
    rt = rt_with()
    rt.supervisor.pause_soon("shard|t|1|arn|s9")
    await until(lambda: kafka.reports("paused"), "the paused report")


async def test_the_replay_copies_its_partition_in_order_and_says_caught_up(kafka, rt_with):
    records = [
        (json.dumps({"pk": f"k{i % 3}"}).encode(), json.dumps({"n": i}).encode()) for i in range(7)
    ]
    records.append((b'{"pk":"k0"}', None))  # a tombstone is copied too
    reader = FakeReader(records)
    rt = rt_with(reader=reader)
    unit = replay_unit()
    rt.supervisor.ensure(unit)
    await until(lambda: kafka.reports("caught_up"), "caught up at the partition's end")
    assert kafka.topics == {f"dynamodb-{TABLE}"}
    assert [v["n"] for v in kafka.values()] == list(range(7))  # offset order
    assert kafka.reports("progress")[-1] == {"type": "progress", "pos": 8, "count": 8}
    assert kafka.reports("finish") == []  # not told to drain: it keeps following
    # more is buffered meanwhile, then it is told to drain: copy to the end, then finish
    reader.records.append((b'{"pk":"k9"}', b'{"n": 99}'))
    rt.stored[unit["id"]] = {**unit, "drain": True}
    await until(lambda: kafka.reports("finish"), "the finish after the drain")
    assert kafka.reports("finish") == [{"type": "finish", "pos": 9, "count": 9}]
    assert [v["n"] for v in kafka.values()][-1] == 99
    assert reader.deleted_before == 9 and reader.closed


async def test_the_replay_resumes_after_its_checkpoint(kafka, rt_with):
    records = [(b'{"pk":"a"}', json.dumps({"n": i}).encode()) for i in range(5)]
    rt = rt_with(reader=FakeReader(records))
    unit = replay_unit(pos=3, count=3)
    rt.stored[unit["id"]] = {**unit, "drain": True}
    rt.supervisor.ensure(unit)
    await until(lambda: kafka.reports("finish"), "the finish")
    assert [v["n"] for v in kafka.values()] == [3, 4]
    assert kafka.reports("finish") == [{"type": "finish", "pos": 5, "count": 5}]


async def test_a_buffer_with_other_partitions_than_planned_fails_the_table_loudly(kafka, rt_with):
    rt = rt_with(reader=FakeReader([(b'{"pk":"a"}', b"{}")], partitions=3))
    rt.supervisor.ensure(replay_unit())
    await until(lambda: kafka.reports("failed"), "the failure")
    (failed,) = kafka.reports("failed")
    assert "has 3 partitions, the replay plan 2" in failed["error"]
    assert kafka.values() == []  # nothing copied: it all stays in the buffer


async def test_a_replay_without_checkpoint_over_a_deleted_prefix_catches_up_and_finishes(
    kafka, rt_with
):
    """A run copied and deleted every record, then died before its checkpoint was
    stored: the next run starts at the log start, has nothing to copy, and must still
    say caught up, and finish there once told to drain (not wait at offset 0 for ever)."""
    reader = FakeReader([(b'{"pk":"a"}', b'{"n": 1}')] * 3)
    reader.deleted_before = 3
    rt = rt_with(reader=reader)
    unit = replay_unit()
    rt.supervisor.ensure(unit)
    await until(lambda: kafka.reports("caught_up"), "caught up")
    rt.stored[unit["id"]] = {**unit, "drain": True}
    await until(lambda: kafka.reports("finish"), "the finish")
    assert kafka.reports("finish") == [{"type": "finish", "pos": 3, "count": 0}]
    assert kafka.values() == []
