"""The raw data path (DYNAMODB_RAW_HTTP, app.aws.raw + app.domain.wire) against the
streams stand-in and moto, side by side with the aiobotocore path it replaces.

Every error kind -- service errors from the JSON body, read timeouts, refused
connections -- must surface as the very app error aiobotocore's path produces (class,
code, message, retriable), and the same items and records must encode to the same Kafka
bytes in both output formats.  aiobotocore retries throttling, 5xx and timeouts
internally (``max_attempts`` 2: three attempts in all), so its side gets each fault three
times; the raw path leaves retrying to the runners' backoff and gets it once."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from app.aws.clients import AwsClients
from app.aws.dynamodb import Streams, Tables
from app.domain import codec
from app.domain.envelope import Encoder, SnapshotInfo
from app.domain.errors import (
    AccessDeniedError,
    AwsError,
    ExpiredIteratorError,
    ResourceNotFoundError,
    ThrottledError,
    TransientAwsError,
    TrimmedDataError,
)
from app.settings import Settings
from tests.integration.dynamo import BIG, batch_put, client, create_table, full_item
from tests.standin import StandInProcess

ENCODERS = [Encoder("native", True), Encoder("seed", True)]


@pytest.fixture
def standin(stack: dict[str, str], workdir: Path) -> Iterator[StandInProcess]:
    with StandInProcess(stack["AWS_ENDPOINT_URL"], workdir / "standin.log") as s:
        yield s


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ROLE_ARN", raising=False)


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def settings(stack: dict[str, str], streams_url: str | None, raw: bool, **extra: str) -> Settings:
    env = {
        "AWS_ENDPOINT_URL": stack["AWS_ENDPOINT_URL"],
        "AWS_REGION": "us-east-1",
        "DYNAMODB_RAW_HTTP": "true" if raw else "false",
        **extra,
    }
    if streams_url:
        env["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"] = streams_url
    return Settings.from_env(env)


@asynccontextmanager
async def paths(
    stack: dict[str, str], streams_url: str | None = None, **extra: str
) -> AsyncIterator[dict[str, tuple[Tables, Streams]]]:
    """{"boto": (Tables, Streams), "raw": (...)} built as agents.runtime builds them."""
    made: dict[str, AwsClients] = {}
    try:
        for name, raw in (("boto", False), ("raw", True)):
            made[name] = await AwsClients(settings(stack, streams_url, raw, **extra)).open()
        assert made["raw"].raw_streams is not None and made["boto"].raw_streams is None
        yield {
            name: (Tables(aws.dynamodb, aws.raw_dynamodb), Streams(aws.streams, aws.raw_streams))
            for name, aws in made.items()
        }
    finally:
        for aws in made.values():
            await aws.close()


async def failure(call: Awaitable[Any]) -> AwsError:
    with pytest.raises(AwsError) as err:
        await call
    return err.value


def same_error(
    boto: AwsError, raw: AwsError, cls: type[AwsError], code: str, upto: str = ""
) -> None:
    """``upto``: compare the messages up to this text (the rest names a time)."""
    assert type(boto) is type(raw) is cls, (type(boto), type(raw))
    assert boto.code == raw.code == code
    if upto:
        assert upto in str(raw)
        assert str(boto).partition(upto)[0] == str(raw).partition(upto)[0]
    else:
        assert str(boto) == str(raw)
    assert boto.retriable == raw.retriable == cls.retriable
    assert "testing" not in str(raw)  # no credential in the message


def stream_table(stack: dict[str, str], standin: StandInProcess, name: str) -> str:
    ddb = client(stack)
    create_table(ddb, name, [("pk", "S")], None)
    arn = standin.register(name)
    items = [full_item(i) for i in range(30)]
    batch_put(ddb, name, items)
    ddb.put_item(TableName=name, Item={**items[0], "s": {"S": "changed"}})  # MODIFY
    ddb.delete_item(TableName=name, Key={"pk": items[1]["pk"]})  # REMOVE
    assert standin.drain(name) == 32
    return arn


async def first_shard(streams: Streams, arn: str) -> str:
    return (await streams.describe(arn)).shards[0].shard_id


# ------------------------------------------------------------------ service errors
@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        ("ProvisionedThroughputExceededException", 400, ThrottledError),
        ("ThrottlingException", 400, ThrottledError),
        ("LimitExceededException", 400, ThrottledError),
        ("RequestLimitExceeded", 400, ThrottledError),
        ("InternalServerError", 500, TransientAwsError),
        ("ServiceUnavailable", 503, TransientAwsError),
        ("TrimmedDataAccessException", 400, TrimmedDataError),
        ("ResourceNotFoundException", 400, ResourceNotFoundError),
        ("AccessDeniedException", 400, AccessDeniedError),
        ("UnrecognizedClientException", 400, AccessDeniedError),
        ("ValidationException", 400, AwsError),
    ],
)
async def test_get_records_errors_map_like_aiobotocore(
    stack: dict[str, str],
    standin: StandInProcess,
    uid: str,
    code: str,
    status: int,
    cls: type[AwsError],
) -> None:
    arn = stream_table(stack, standin, f"rawerr-{uid}")
    got: dict[str, AwsError] = {}
    async with paths(stack, standin.url) as p:
        for name, attempts in (("boto", 3), ("raw", 1)):
            streams = p[name][1]
            shard = await first_shard(streams, arn)
            iterator = await streams.iterator(arn, shard, None)
            standin.inject("get_records", code, times=attempts, status=status)
            got[name] = await failure(streams.records(iterator, f"t/{shard}"))
            if name == "raw":  # exactly one request: no retry of its own
                assert standin.stats()["faults_pending"] == {}
            standin.clear()  # faults aiobotocore did not retry into
            # the path works again right after (the session is not poisoned)
            assert len((await streams.records(iterator, f"t/{shard}")).records) == 32
    same_error(got["boto"], got["raw"], cls, code)


async def test_expired_iterator_maps_like_aiobotocore(
    stack: dict[str, str], standin: StandInProcess, uid: str
) -> None:
    arn = stream_table(stack, standin, f"rawexp-{uid}")
    async with paths(stack, standin.url) as p:
        iterators = {}
        for name, (_, streams) in p.items():
            shard = await first_shard(streams, arn)
            iterators[name] = (streams, shard, await streams.iterator(arn, shard, None))
        standin.expire()  # every iterator issued so far is now expired
        got = {
            name: await failure(s.records(it, f"t/{sh}")) for name, (s, sh, it) in iterators.items()
        }
    same_error(
        got["boto"], got["raw"], ExpiredIteratorError, "ExpiredIteratorException", " at time "
    )


async def test_read_timeout_maps_like_aiobotocore(
    stack: dict[str, str], standin: StandInProcess, uid: str
) -> None:
    """The code the scan runner halves its page size on: ReadTimeoutError."""
    arn = stream_table(stack, standin, f"rawslow-{uid}")
    got: dict[str, AwsError] = {}
    async with paths(stack, standin.url, AWS_READ_TIMEOUT="1") as p:
        for name, attempts in (("boto", 3), ("raw", 1)):
            streams = p[name][1]
            shard = await first_shard(streams, arn)
            iterator = await streams.iterator(arn, shard, None)
            standin.clear()
            standin.delay("get_records", 2.5, times=attempts)
            got[name] = await failure(streams.records(iterator, f"t/{shard}"))
    same_error(got["boto"], got["raw"], TransientAwsError, "ReadTimeoutError")


async def test_refused_connection_maps_like_aiobotocore(stack: dict[str, str]) -> None:
    nobody = _closed_port()
    async with paths(stack, nobody) as p:
        got = {name: await failure(s.records("it", "t/shard-1")) for name, (_, s) in p.items()}
    same_error(got["boto"], got["raw"], TransientAwsError, "EndpointConnectionError")
    assert nobody in str(got["raw"])


async def test_scan_errors_against_moto_map_like_aiobotocore(
    stack: dict[str, str], uid: str
) -> None:
    async with paths(stack) as p:
        missing = {
            name: await failure(t.scan(f"absent-{uid}", 0, 1, None)) for name, (t, _) in p.items()
        }
        invalid = {  # Segment >= TotalSegments: moto's ValidationException
            name: await failure(t.scan(f"absent-{uid}", 5, 2, None)) for name, (t, _) in p.items()
        }
    same_error(missing["boto"], missing["raw"], ResourceNotFoundError, "ResourceNotFoundException")
    assert type(invalid["raw"]) is type(invalid["boto"])
    assert invalid["raw"].code == invalid["boto"].code
    assert str(invalid["raw"]) == str(invalid["boto"])


# ------------------------------------------------------------------ same bytes in Kafka
def _changes(records: list[Any], arn: str, shard: str) -> list[list[Any]]:
    snap = SnapshotInfo(running=False, start_ms=1, end_ms=2, count=3)
    return [
        [m for r in records for m in enc.change("t", ("pk",), r, arn, shard, snap)]
        for enc in ENCODERS
    ]


async def test_get_records_encode_to_the_same_bytes(
    stack: dict[str, str], standin: StandInProcess, uid: str
) -> None:
    arn = stream_table(stack, standin, f"rawsame-{uid}")
    out = {}
    async with paths(stack, standin.url) as p:
        for name, (_, streams) in p.items():
            shard = await first_shard(streams, arn)
            page = await streams.records(await streams.iterator(arn, shard, None), f"t/{shard}")
            assert page.next_iterator
            out[name] = (page, _changes(page.records, arn, shard))
    (boto, boto_bytes), (raw, raw_bytes) = out["boto"], out["raw"]
    assert [r.event_name for r in raw.records].count("INSERT") == 30
    assert [r.sequence_number for r in raw.records] == [r.sequence_number for r in boto.records]
    assert [r.approx_ts_ms for r in raw.records] == [r.approx_ts_ms for r in boto.records]
    assert isinstance(raw.records[0].new_image["b"]["B"], str)  # base64 text, never decoded
    assert isinstance(boto.records[0].new_image["b"]["B"], bytes)
    assert sum(len(m) for m in raw_bytes) >= 2 * 32
    assert raw_bytes == boto_bytes
    assert BIG.encode() in raw_bytes[0][0][1]


async def test_scan_pages_and_cursors_are_the_same(stack: dict[str, str], uid: str) -> None:
    """A binary hash key and a 38-digit range key: the cursor goes through the checkpoint
    form (item_to_sdk_v1 / sdk_v1_to_item) as the scan runner does, and back to DynamoDB."""
    ddb, table = client(stack), f"rawscan-{uid}"
    create_table(ddb, table, [("id", "B"), ("rk", "N")], None)
    items = [
        {**full_item(i), "id": {"B": bytes([i, 0, 255])}, "rk": {"N": f"{BIG[:-3]}{i:03d}"}}
        for i in range(25)
    ]
    batch_put(ddb, table, items)
    pages: dict[str, list[Any]] = {}
    async with paths(stack) as p:
        for name, (tables, _) in p.items():
            cursor, got = None, []
            while True:
                page = await tables.scan(table, 0, 1, cursor, 7)
                pos = codec.item_to_sdk_v1(page.last_evaluated_key or {})
                got.append((page.items, pos, page.consumed_capacity))
                if page.last_evaluated_key is None:
                    break
                cursor = codec.sdk_v1_to_item(pos)
            pages[name] = got
    assert len(pages["raw"]) == len(pages["boto"]) >= 4
    for (raw_items, raw_pos, raw_cost), (boto_items, boto_pos, boto_cost) in zip(
        pages["raw"], pages["boto"], strict=True
    ):
        assert raw_pos == boto_pos and raw_cost == boto_cost
        for enc in ENCODERS:
            snap = SnapshotInfo(running=True, start_ms=5, end_ms=None, count=0)
            assert [
                m for it in raw_items for m in enc.snapshot(table, ("id", "rk"), it, 0, 1, 5, snap)
            ] == [
                m for it in boto_items for m in enc.snapshot(table, ("id", "rk"), it, 0, 1, 5, snap)
            ]
    assert sum(len(items) for items, _, _ in pages["raw"]) == 25
