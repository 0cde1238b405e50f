"""A minimal Faust app used by tests/integration/test_stack.py to prove the stack:
a changelog-backed counter table (rocksdb:// by default) that survives a restart
with a fresh data directory, i.e. through changelog recovery alone."""

from __future__ import annotations

import os

import faust

PREFIX = os.environ["PROBE_PREFIX"]

app = faust.App(
    f"{PREFIX}-app",
    broker=os.environ.get("BROKER_URL", "kafka://127.0.0.1:9092"),
    store=os.environ.get("PROBE_STORE", "rocksdb://"),
    topic_partitions=1,
    web_enabled=False,
)
source = app.topic(
    f"{PREFIX}-in", partitions=1, internal=True, value_serializer="raw", key_serializer="raw"
)
sink = app.topic(f"{PREFIX}-out", partitions=1, value_serializer="raw", key_serializer="raw")
counts = app.Table("counts", default=int, partitions=1)


@app.agent(source)
async def count(stream):  # type: ignore[no-untyped-def]
    async for key, _value in stream.items():  # noqa: PERF102 (a Faust stream, not a dict)
        name = key.decode()
        counts[name] += 1
        await sink.send(key=key, value=str(counts[name]).encode())
