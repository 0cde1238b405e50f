"""Create the internal topics before the consumer subscribes.

Faust declares internal topics while it subscribes, which races the first group join:
the join can miss the brand-new control topic and the worker then sits idle until a
metadata refresh.  Creating them first (idempotently) removes the race."""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError, TopicAlreadyExistsError  # type: ignore[import-untyped]

from app.domain import deployment
from app.domain.discovery import DEPLOYMENT_TOPIC

log = logging.getLogger(__name__)


async def ensure_topics(bootstrap: list[str], topics: dict[str, tuple[int, int, dict[str, str]]],
                        timeout: float = 60.0, **client_kwargs: object) -> None:
    """topics: name -> (partitions, replication, config).  Existing topics are left alone."""
    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [NewTopic(name, n, r, topic_configs=cfg)
                       for name, (n, r, cfg) in topics.items() if name not in existing]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
                log.info("created internal topics: %s", ", ".join(t.name for t in missing))
            return
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka at {','.join(bootstrap)} unreachable for "
                                   f"{timeout:.0f}s: {exc}") from exc
            log.warning("Kafka not reachable yet (%s); retrying", exc)
            await asyncio.sleep(1.0)
        finally:
            await admin.close()


class DeploymentConflict(RuntimeError):
    """This worker's settings are not those of the deployment that owns its APP_ID."""


async def read_deployment(bootstrap: list[str], topic: str,
                          **client_kwargs: object) -> list[deployment.Record]:
    """Every readable record of the deployment topic, in order (one partition)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                **client_kwargs)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        records: list[deployment.Record] = []
        while await consumer.position(tp) < end:
            for batch in (await consumer.getmany(tp, timeout_ms=1000)).values():
                for message in batch:
                    try:
                        value = json.loads(message.value or b"null")
                    except ValueError:
                        value = None
                    record = deployment.Record.from_json(value)
                    if record is None:
                        log.warning("%s: unreadable record at offset %d skipped", topic,
                                    message.offset)
                    else:
                        records.append(record)
        return records
    finally:
        await consumer.stop()


async def write_deployment(bootstrap: list[str], topic: str, record: deployment.Record,
                           **client_kwargs: object) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **client_kwargs)
    await producer.start()
    try:
        await producer.send_and_wait(topic, json.dumps(record.to_json()).encode(),
                                     key=record.key(int(time.time() * 1000)).encode(),
                                     partition=0)
    finally:
        await producer.stop()


def new_record(kind: str, identity: dict[str, str],
               supersedes: str | None = None) -> deployment.Record:
    return deployment.Record(kind, deployment.fingerprint(identity), identity,
                             socket.gethostname(),
                             datetime.now(UTC).isoformat(timespec="seconds"), supersedes)


async def check_deployment(bootstrap: list[str], app_id: str, identity: dict[str, str],
                           **client_kwargs: object) -> deployment.Record:
    """The deployment this worker belongs to (recording it on a first start); raises
    DeploymentConflict when the APP_ID belongs to a deployment with other settings."""
    topic = f"{app_id}-{DEPLOYMENT_TOPIC}"
    owner = deployment.current(await read_deployment(bootstrap, topic, **client_kwargs))
    if owner is None:
        await write_deployment(bootstrap, topic, new_record("initial", identity),
                               **client_kwargs)
        # a first start racing another: the first record in the topic wins, for both
        owner = deployment.current(await read_deployment(bootstrap, topic, **client_kwargs))
        assert owner is not None, "the record just written is not readable"
    why = deployment.conflict(app_id, identity, owner)
    if why is not None:
        raise DeploymentConflict(why)
    return owner
