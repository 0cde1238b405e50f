"""DynamoDB Streams stand-in over HTTP, for worker *processes*.

Speaks the DynamoDB Streams JSON 1.0 protocol (POST /, ``X-Amz-Target:
DynamoDBStreams_20120810.<Op>``) for DescribeStream, GetShardIterator, GetRecords and
ListStreams, backed by a :class:`tests.fakes.streams.FakeStreams` on the real clock.
Each registered table's moto stream is tailed (TRIM_HORIZON, then GetRecords in a loop)
into the fake stream with the same ARN as moto's LatestStreamArn, so boto3 writes to
moto tables show up here, multi-shard, with the fake's own sequence numbers.

POST /_control {"op": ...} drives it (see ``Control``): register, split, rollover,
trim, expire, inject, delay, clear, config, retention, drain, stats.

    python -m tests.standin.server --port 8123 --moto http://127.0.0.1:5000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import time
from collections import Counter
from datetime import datetime
from typing import Any

from aiobotocore.session import get_session
from aiohttp import web
from botocore.exceptions import ClientError

from tests.fakes.streams import OPERATIONS, FakeStreams

log = logging.getLogger("standin")
TARGET_PREFIX = "DynamoDBStreams_20120810."
METHODS = {op: method for method, op in OPERATIONS.items()}  # "GetRecords" -> "get_records"
ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
JSON_TYPE = "application/x-amz-json-1.0"


class LiveStreams(FakeStreams):
    """The fake on the wall clock: iterators expire ``iterator_ttl`` seconds after issue."""

    @property  # type: ignore[override]
    def now(self) -> float:
        return time.time()

    @now.setter
    def now(self, value: float) -> None:  # the base __init__ sets it: ignore
        pass


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, default=_default).encode(), status=status, content_type=JSON_TYPE
    )


def _error(code: str, message: str, status: int | None = None) -> web.Response:
    status = status or (500 if code == "InternalServerError" else 400)
    return _json({"__type": ERROR_PREFIX + code, "message": message}, status)


class Tailer:
    """Copies one moto table stream into the fake stream of the same ARN."""

    def __init__(self, fake: LiveStreams, moto: Any, table: str, arn: str) -> None:
        self.fake, self.moto, self.table, self.arn = fake, moto, table, arn
        self.tailed = 0
        self.round = 0  # GetRecords calls started
        self.idle_round = -1  # last call (by start number) that found moto drained
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        iterator = None
        while True:
            try:
                if iterator is None:
                    desc = await self.moto.describe_stream(StreamArn=self.arn)
                    shard = desc["StreamDescription"]["Shards"][0]["ShardId"]
                    iterator = (
                        await self.moto.get_shard_iterator(
                            StreamArn=self.arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
                        )
                    )["ShardIterator"]
                started = self.round = self.round + 1
                page = await self.moto.get_records(ShardIterator=iterator, Limit=1000)
            except Exception as exc:  # noqa: BLE001  moto hiccup: retry, never give up
                log.warning("tailing %s: %s", self.table, exc)
                await asyncio.sleep(0.5)
                continue
            for rec in page.get("Records", []):
                d = rec["dynamodb"]
                self.fake.write(
                    self.arn, rec["eventName"], d["Keys"], d.get("NewImage"), d.get("OldImage")
                )
                self.tailed += 1
            iterator = page.get("NextShardIterator")
            if not page.get("Records"):
                self.idle_round = started
                await asyncio.sleep(0.02)

    async def drain(self, timeout: float = 30.0) -> int:
        """Wait until a moto poll started after this call found nothing new."""
        want = self.round
        deadline = time.monotonic() + timeout
        while self.idle_round <= want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"tailer of {self.table} did not catch up in {timeout}s")
            await asyncio.sleep(0.01)
        return self.tailed


class StandIn:
    def __init__(self, moto_url: str, iterator_ttl: float = 900.0) -> None:
        self.fake = LiveStreams(iterator_ttl=iterator_ttl)
        self.moto_url = moto_url
        self.errors: Counter[str] = Counter()  # error codes returned, injected or not
        self.tailers: dict[str, Tailer] = {}  # table -> tailer
        self._clients: dict[str, Any] = {}
        self._retention: asyncio.Task[None] | None = None
        self.retention_trims = 0  # records dropped by the retention
        self.delays: dict[str, list[float]] = {}  # method -> seconds before the next answers

    async def start(self) -> None:
        session = get_session()
        for service in ("dynamodb", "dynamodbstreams"):
            self._clients[service] = await session.create_client(
                service,
                endpoint_url=self.moto_url,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            ).__aenter__()

    # ---- the AWS API ---------------------------------------------------------------
    async def api(self, request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        method = METHODS.get(target.removeprefix(TARGET_PREFIX))
        if not target.startswith(TARGET_PREFIX) or method is None:
            self.errors["UnknownOperationException"] += 1
            return _error("UnknownOperationException", f"unknown target {target!r}")
        if delays := self.delays.get(method):
            await asyncio.sleep(delays.pop(0))  # a slow answer (read timeouts)
        try:
            body = json.loads(await request.read() or b"{}")
            return _json(await getattr(self.fake, method)(**body))
        except ClientError as exc:
            err = exc.response["Error"]
            self.errors[err["Code"]] += 1
            return _error(
                err["Code"], err["Message"], exc.response["ResponseMetadata"]["HTTPStatusCode"]
            )
        except (TypeError, ValueError) as exc:  # unknown/garbled parameters
            self.errors["ValidationException"] += 1
            return _error("ValidationException", str(exc))
        except Exception as exc:
            log.exception("%s failed", target)
            self.errors["InternalServerError"] += 1
            return _error("InternalServerError", f"{type(exc).__name__}: {exc}")

    # ---- control ---------------------------------------------------------------------
    async def control(self, request: web.Request) -> web.Response:
        msg = await request.json()
        handler = getattr(self, f"op_{msg.pop('op', '')}", None)
        if handler is None:
            return web.json_response({"error": "unknown op"}, status=400)
        try:
            return web.json_response(await handler(**msg))
        except Exception as exc:
            log.exception("control %s", handler.__name__)
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)

    def _arn(self, table: str) -> str:
        return self.tailers[table].arn

    async def op_register(self, table: str) -> dict:
        if table in self.tailers:
            return {"arn": self._arn(table)}
        t = (await self._clients["dynamodb"].describe_table(TableName=table))["Table"]
        keys = sorted(t["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
        arn = t["LatestStreamArn"]
        self.fake.create_stream(
            table,
            [k["AttributeName"] for k in keys],
            t["StreamSpecification"]["StreamViewType"],
            arn=arn,
        )
        tailer = self.tailers[table] = Tailer(
            self.fake, self._clients["dynamodbstreams"], table, arn
        )
        tailer.task = asyncio.get_running_loop().create_task(tailer.run())
        return {"arn": arn}

    def _targets(self, table: str, shard: str | None) -> list[str]:
        return [shard] if shard else self.fake.open_shards(self._arn(table))

    async def op_split(self, table: str, shard: str | None = None) -> dict:
        """Split ``shard``, or every open shard of the table; returns the children."""
        return {
            "new": [
                c for s in self._targets(table, shard) for c in self.fake.split(self._arn(table), s)
            ]
        }

    async def op_rollover(self, table: str, shard: str | None = None) -> dict:
        return {
            "new": [self.fake.rollover(self._arn(table), s) for s in self._targets(table, shard)]
        }

    async def op_trim(self, table: str, before: float | None = None) -> dict:
        """Drop the table's records older than ``before`` (default: all of them)."""
        await self.tailers[table].drain()
        self.fake.trim(self._arn(table), time.time() + 1e-3 if before is None else before)
        return await self.op_stats(table)

    async def op_expire(self) -> dict:
        self.fake.expire_iterators()
        return {}

    async def op_inject(
        self, method: str, code: str, times: int = 1, status: int | None = None
    ) -> dict:
        self.fake.inject(method, code, times, status)
        return {}

    async def op_delay(self, method: str, seconds: float, times: int = 1) -> dict:
        """Answer the next ``times`` calls of ``method`` after ``seconds``."""
        if method not in METHODS.values():
            raise ValueError(f"unknown method {method!r}")
        self.delays.setdefault(method, []).extend([seconds] * times)
        return {}

    async def op_clear(self) -> dict:
        """Forget every injected fault and delay not used yet."""
        self.fake._faults.clear()
        self.delays.clear()
        return {}

    async def op_config(self, iterator_ttl: float) -> dict:
        self.fake.iterator_ttl = iterator_ttl
        return {}

    async def op_retention(self, seconds: float | None) -> dict:
        """Keep stream records ``seconds`` only, like DynamoDB Streams' 24 h (None: for
        ever): every 0.2 s the records older than that are trimmed from every stream, read
        or not, so a position left behind raises TrimmedDataAccessException."""
        if self._retention is not None:
            self._retention.cancel()
            self._retention = None
        if seconds is not None:
            self._retention = asyncio.get_running_loop().create_task(self._retain(seconds))
        return {"retention": seconds}

    async def _retain(self, seconds: float) -> None:
        while True:
            before = time.time() - seconds
            for tailer in self.tailers.values():
                stream = self.fake._streams[tailer.arn]
                kept = sum(len(s.records) for s in stream.shards.values())
                self.fake.trim(tailer.arn, before)
                self.retention_trims += kept - sum(len(s.records) for s in stream.shards.values())
            await asyncio.sleep(0.2)

    async def op_drain(self, table: str, timeout: float = 30.0) -> dict:
        return {"tailed": await self.tailers[table].drain(timeout)}

    async def op_stats(self, table: str | None = None) -> dict:
        out: dict[str, Any] = {
            "calls": dict(self.fake.calls),
            "errors": dict(self.errors),
            "faults_pending": {m: len(f) for m, f in self.fake._faults.items() if f},
            "retention_trims": self.retention_trims,
            "tables": {},
        }
        for name, tailer in self.tailers.items():
            if table in (None, name):
                stream = self.fake._streams[tailer.arn]
                out["tables"][name] = {
                    "arn": tailer.arn,
                    "tailed": tailer.tailed,
                    "shards": [
                        {
                            "id": s.id,
                            "parent": s.parent,
                            "open": s.end is None,
                            "records": len(s.records),
                            "gone": s.gone,
                        }
                        for s in stream.shards.values()
                    ],
                }
        return out


async def serve(port: int, moto_url: str, host: str = "127.0.0.1") -> None:
    standin = StandIn(moto_url)
    await standin.start()
    app = web.Application(client_max_size=16 * 2**20)
    app.router.add_post("/", standin.api)
    app.router.add_post("/_control", standin.control)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("stand-in listening on http://%s:%d (moto %s)", host, port, moto_url)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--moto", default="http://127.0.0.1:5000")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(args.port, args.moto))


if __name__ == "__main__":
    main()
