from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.lineage import plan
from app.domain.model import Shard
from tests.fakes.streams import START_TIME, FakeStreams, client_error


def key(i: int) -> dict:
    return {"pk": {"S": f"k{i}"}}


@pytest.fixture
def fake() -> FakeStreams:
    return FakeStreams()


@pytest.fixture
def arn(fake: FakeStreams) -> str:
    return fake.create_stream("orders", ["pk"])


async def list_shards(client, arn: str, limit: int = 100) -> list[Shard]:
    shards, start = [], None
    while True:
        kw = {"ExclusiveStartShardId": start} if start else {}
        desc = (await client.describe_stream(StreamArn=arn, Limit=limit, **kw))["StreamDescription"]
        shards += [
            Shard(
                s["ShardId"],
                s.get("ParentShardId"),
                s["SequenceNumberRange"]["StartingSequenceNumber"],
                s["SequenceNumberRange"].get("EndingSequenceNumber"),
            )
            for s in desc["Shards"]
        ]
        if not (start := desc.get("LastEvaluatedShardId")):
            return shards


async def read_all(fake: FakeStreams, arn: str, shard_id: str, **kw) -> tuple[list, str | None]:
    it = (
        await fake.get_shard_iterator(
            StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )
    )["ShardIterator"]
    records = []
    while it:
        page = await fake.get_records(ShardIterator=it, **kw)
        records += page["Records"]
        if not page["Records"]:
            return records, page.get("NextShardIterator")
        it = page.get("NextShardIterator")
    return records, None


def code(exc: pytest.ExceptionInfo) -> tuple[str, int, str]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], exc.value.operation_name


async def test_create_stream_has_one_open_root_shard(fake, arn):
    assert arn == (
        "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"
    )
    desc = (await fake.describe_stream(StreamArn=arn))["StreamDescription"]
    assert desc["StreamStatus"] == "ENABLED" and desc["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert desc["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    [root] = desc["Shards"]
    assert "ParentShardId" not in root and "EndingSequenceNumber" not in root["SequenceNumberRange"]
    assert "LastEvaluatedShardId" not in desc
    assert fake.create_stream("orders", ["pk"]) != arn  # same label: bumped by a millisecond


async def test_pagination_across_more_than_100_shards(fake, arn):
    for _ in range(150):
        fake.rollover(arn, fake.open_shards(arn)[0])
    p1 = (await fake.describe_stream(StreamArn=arn))["StreamDescription"]
    assert len(p1["Shards"]) == 100 and p1["LastEvaluatedShardId"] == p1["Shards"][-1]["ShardId"]
    p2 = await fake.describe_stream(StreamArn=arn, ExclusiveStartShardId=p1["LastEvaluatedShardId"])
    assert len(p2["StreamDescription"]["Shards"]) == 51
    assert "LastEvaluatedShardId" not in p2["StreamDescription"]
    ids = [s.shard_id for s in await list_shards(fake, arn, limit=7)]
    assert len(ids) == len(set(ids)) == 151 and ids == sorted(ids)
    assert fake.calls["describe_stream"] == 2 + 22
    with pytest.raises(ClientError) as exc:
        await fake.describe_stream(StreamArn=arn, Limit=101)
    assert code(exc) == ("ValidationException", 400, "DescribeStream")


async def test_split_and_rollover_ordering_and_key_routing(fake, arn):
    root = fake.open_shards(arn)[0]
    before = [int(fake.write(arn, "INSERT", key(i), {"pk": {"S": f"k{i}"}})) for i in range(5)]
    c1, c2 = fake.split(arn, root)
    after = {
        i: int(fake.write(arn, "MODIFY", key(i), {"pk": {"S": "n"}}, {"pk": {"S": "o"}}))
        for i in range(40)
    }
    c3 = fake.rollover(arn, c1)
    shards = {s.shard_id: s for s in await list_shards(fake, arn)}
    assert list(shards) == [root, c1, c2, c3]
    r, s1, s2, s3 = shards.values()
    assert max(before) < int(r.ending_sequence_number) < int(s1.starting_sequence_number)
    assert int(s1.starting_sequence_number) < int(s2.starting_sequence_number)
    assert (s1.parent_shard_id, s2.parent_shard_id, s3.parent_shard_id) == (root, root, c1)
    assert s1.closed and not s2.closed and not s3.closed and len(r.ending_sequence_number) >= 21
    # one key stays in one shard; keys spread over both children
    seen = {}
    for sid in (c1, c2):
        recs, _ = await read_all(fake, arn, sid)
        seen.update({int(rec["dynamodb"]["SequenceNumber"]): sid for rec in recs})
    assert set(seen) == set(after.values()) and set(seen.values()) == {c1, c2}
    again = {i: fake.write(arn, "REMOVE", key(i), old_image={"pk": {"S": "x"}}) for i in range(40)}
    recs3, _ = await read_all(fake, arn, c3)
    recs2, _ = await read_all(fake, arn, c2)
    in3 = {rec["dynamodb"]["Keys"]["pk"]["S"] for rec in recs3}
    assert in3 == {f"k{i}" for i in range(40) if seen[after[i]] == c1}
    n1 = len(in3)  # c2 holds the other keys' MODIFYs and REMOVEs
    assert len(recs3) == n1 and len(recs2) == 2 * (len(again) - n1)
    with pytest.raises(ValueError):
        fake.split(arn, root)


async def test_record_shape_and_paging(fake):
    arn = fake.create_stream("t", ["pk", "sk"], view_type="NEW_IMAGE")
    fake.now = START_TIME + 0.75
    k = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    s1 = fake.write(arn, "INSERT", k, new_image={**k, "v": {"B": b"\x00"}})
    s2 = fake.write(arn, "MODIFY", k, new_image=k, old_image=k)
    s3 = fake.write(arn, "REMOVE", k, old_image=k, ttl=True)
    assert len(s1) >= 21 and int(s1) < int(s2) < int(s3)
    shard = fake.open_shards(arn)[0]
    it = (
        await fake.get_shard_iterator(
            StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )
    )["ShardIterator"]
    page = await fake.get_records(ShardIterator=it, Limit=2)
    a, b = page["Records"]
    assert a["eventName"] == "INSERT" and a["eventSource"] == "aws:dynamodb"
    assert a["awsRegion"] == "us-east-1" and "userIdentity" not in a
    d = a["dynamodb"]
    assert d["ApproximateCreationDateTime"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert d["Keys"] == k and d["NewImage"]["v"] == {"B": b"\x00"} and "OldImage" not in d
    assert d["SequenceNumber"] == s1 and d["StreamViewType"] == "NEW_IMAGE" and d["SizeBytes"] > 0
    assert "OldImage" not in b["dynamodb"]
    page = await fake.get_records(ShardIterator=page["NextShardIterator"])
    [c] = page["Records"]
    assert c["userIdentity"] == {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
    assert "NewImage" not in c["dynamodb"]
    empty = await fake.get_records(ShardIterator=page["NextShardIterator"])
    assert empty["Records"] == [] and empty["NextShardIterator"]  # open shard: empty page
    fake.rollover(arn, shard)
    page = await fake.get_records(ShardIterator=empty["NextShardIterator"])
    assert page == {"Records": []}  # closed and fully read
    with pytest.raises(ClientError) as exc:
        await fake.get_records(ShardIterator="garbage")
    assert code(exc) == ("ValidationException", 400, "GetRecords")


async def test_closed_shard_last_page_has_no_next_iterator(fake, arn):
    shard = fake.open_shards(arn)[0]
    for i in range(3):
        fake.write(arn, "INSERT", key(i))
    fake.rollover(arn, shard)
    it = (
        await fake.get_shard_iterator(
            StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )
    )["ShardIterator"]
    p1 = await fake.get_records(ShardIterator=it, Limit=2)
    assert len(p1["Records"]) == 2 and p1["NextShardIterator"]
    p2 = await fake.get_records(ShardIterator=p1["NextShardIterator"], Limit=2)
    assert len(p2["Records"]) == 1 and "NextShardIterator" not in p2


async def test_iterator_positions(fake, arn):
    shard = fake.open_shards(arn)[0]
    seqs = [fake.write(arn, "INSERT", key(i)) for i in range(3)]

    async def first(kind: str, seq: str | None = None) -> list[str]:
        kw = {"SequenceNumber": seq} if seq else {}
        it = (
            await fake.get_shard_iterator(
                StreamArn=arn, ShardId=shard, ShardIteratorType=kind, **kw
            )
        )["ShardIterator"]
        return [
            r["dynamodb"]["SequenceNumber"]
            for r in (await fake.get_records(ShardIterator=it))["Records"]
        ]

    assert await first("TRIM_HORIZON") == seqs
    assert await first("AT_SEQUENCE_NUMBER", seqs[1]) == seqs[1:]
    assert await first("AFTER_SEQUENCE_NUMBER", seqs[1]) == seqs[2:]
    assert await first("LATEST") == []
    for kind, seq, err in [
        ("AT_SEQUENCE_NUMBER", None, "ValidationException"),
        ("AT_SEQUENCE_NUMBER", "1" + "0" * 30, "ValidationException"),
        ("AFTER_SEQUENCE_NUMBER", "0" * 21, "ValidationException"),
        ("SIDEWAYS", None, "ValidationException"),
    ]:
        with pytest.raises(ClientError) as exc:
            await first(kind, seq)
        assert code(exc) == (err, 400, "GetShardIterator")
    for kw in [
        {"StreamArn": arn, "ShardId": "shardId-nope"},
        {"StreamArn": arn + "x", "ShardId": shard},
    ]:
        with pytest.raises(ClientError) as exc:
            await fake.get_shard_iterator(ShardIteratorType="LATEST", **kw)
        assert code(exc)[0] == "ResourceNotFoundException"


async def test_iterator_expiry(fake, arn):
    shard = fake.open_shards(arn)[0]

    async def iterator() -> str:
        return (
            await fake.get_shard_iterator(
                StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
            )
        )["ShardIterator"]

    old = await iterator()
    fake.expire_iterators()
    new = await iterator()
    with pytest.raises(ClientError) as exc:
        await fake.get_records(ShardIterator=old)
    assert code(exc) == ("ExpiredIteratorException", 400, "GetRecords")
    fake.advance(899)
    nxt = (await fake.get_records(ShardIterator=new))["NextShardIterator"]
    fake.advance(2)
    with pytest.raises(ClientError):
        await fake.get_records(ShardIterator=new)
    await fake.get_records(ShardIterator=nxt)  # issued 2s ago: still fine


async def test_trim(fake, arn):
    root = fake.open_shards(arn)[0]
    old = [fake.write(arn, "INSERT", key(i)) for i in range(3)]
    fake.advance(3600)
    early = (
        await fake.get_shard_iterator(StreamArn=arn, ShardId=root, ShardIteratorType="TRIM_HORIZON")
    )["ShardIterator"]
    new = fake.write(arn, "INSERT", key(9))
    fake.trim(arn, START_TIME + 10)
    recs, _ = await read_all(fake, arn, root)
    assert [r["dynamodb"]["SequenceNumber"] for r in recs] == [new]
    with pytest.raises(ClientError) as exc:
        await fake.get_records(ShardIterator=early)
    assert code(exc) == ("TrimmedDataAccessException", 400, "GetRecords")
    with pytest.raises(ClientError) as exc:
        await fake.get_shard_iterator(
            StreamArn=arn,
            ShardId=root,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=old[2],
        )
    assert code(exc) == ("TrimmedDataAccessException", 400, "GetShardIterator")
    await fake.get_shard_iterator(
        StreamArn=arn,
        ShardId=root,  # just past the trimmed data
        ShardIteratorType="AFTER_SEQUENCE_NUMBER",
        SequenceNumber=old[2],
    )
    child = fake.rollover(arn, root)
    fake.trim(arn, START_TIME + 3600)  # root still holds `new`: stays listed
    assert [s.shard_id for s in await list_shards(fake, arn)] == [root, child]
    fake.advance(10)
    fake.trim(arn, fake.now)
    [only] = await list_shards(fake, arn)
    assert only.shard_id == child and only.parent_shard_id == root
    with pytest.raises(ClientError) as exc:
        await fake.get_shard_iterator(StreamArn=arn, ShardId=root, ShardIteratorType="LATEST")
    assert code(exc)[0] == "ResourceNotFoundException"


async def test_injected_faults(fake, arn):
    shard = fake.open_shards(arn)[0]
    fake.inject("get_shard_iterator", "ProvisionedThroughputExceededException", times=2)
    fake.inject("get_records", "InternalServerError")
    fake.inject("describe_stream", "ThrottlingException")
    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            await fake.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")
        assert code(exc) == ("ProvisionedThroughputExceededException", 400, "GetShardIterator")
    it = (await fake.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST"))[
        "ShardIterator"
    ]
    with pytest.raises(ClientError) as exc:
        await fake.get_records(ShardIterator=it)
    assert code(exc) == ("InternalServerError", 500, "GetRecords")
    await fake.get_records(ShardIterator=it)
    with pytest.raises(ClientError) as exc:
        await fake.describe_stream(StreamArn=arn)
    assert code(exc) == ("ThrottlingException", 400, "DescribeStream")
    assert fake.calls == {"get_shard_iterator": 3, "get_records": 2, "describe_stream": 1}
    fake.inject("get_records", "LimitExceededException")
    with pytest.raises(ClientError) as exc:
        await fake.get_records(ShardIterator=it)
    assert code(exc) == ("LimitExceededException", 400, "GetRecords")


def test_client_error_shape():
    err = client_error("ThrottlingException", "slow down", "GetRecords")
    assert err.response == {
        "Error": {"Code": "ThrottlingException", "Message": "slow down"},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }
    assert err.operation_name == "GetRecords" and "slow down" in str(err)


# ---- end to end with the lineage planner: every record once, per-key order kept -------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(["write", "write", "write", "split", "rollover", "read"]), max_size=120
    ),
    st.randoms(use_true_random=False),
)
def test_reading_by_lineage_delivers_every_record_once_in_key_order(steps, rnd: random.Random):
    asyncio.run(_read_by_lineage(steps, rnd))


async def _read_by_lineage(steps: list[str], rnd: random.Random) -> None:
    fake = FakeStreams()
    arn = fake.create_stream("t", ["pk"])
    written: dict[str, str] = {}  # seq -> key
    got: list[tuple[str, str]] = []
    known: dict = {}
    iterators: dict[str, str | None] = {}

    async def step() -> bool:
        nonlocal known
        finished = [s for s, it in iterators.items() if it is None]
        p = plan(known, await list_shards(fake, arn, limit=3), finished)
        assert not p.lost
        known = p.known
        for s in finished:
            del iterators[s]
        for s in p.start:
            iterators[s] = (
                await fake.get_shard_iterator(
                    StreamArn=arn, ShardId=s, ShardIteratorType="TRIM_HORIZON"
                )
            )["ShardIterator"]
        for s in rnd.sample(sorted(iterators), len(iterators)):
            page = await fake.get_records(ShardIterator=iterators[s], Limit=rnd.randint(1, 4))
            got.extend(
                (r["dynamodb"]["Keys"]["pk"]["S"], r["dynamodb"]["SequenceNumber"])
                for r in page["Records"]
            )
            iterators[s] = page.get("NextShardIterator")
        return bool(p.start or iterators)

    for op in steps:
        opened = fake.open_shards(arn)
        if op == "write":
            k = f"k{rnd.randrange(12)}"
            written[fake.write(arn, "INSERT", {"pk": {"S": k}})] = k
        elif op in ("split", "rollover"):
            getattr(fake, op)(arn, rnd.choice(opened))
        else:
            await step()
    fake.disable_stream(arn)
    while await step():
        pass

    assert sorted(seq for _, seq in got) == sorted(written)  # each record exactly once
    last: dict[str, int] = defaultdict(int)
    for k, seq in got:
        assert written[seq] == k and int(seq) > last[k], f"{k} out of order"
        last[k] = int(seq)
