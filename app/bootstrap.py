"""Create the internal topics before the consumer subscribes, and check them.

Faust declares internal topics while it subscribes, which races the first group join:
the join can miss the brand-new control topic and the worker then sits idle until a
metadata refresh.  Creating them first (idempotently) removes the race.

An existing topic is used as it is, so it is checked against what Kafka describes of it
(partitions, replication, cleanup.policy, max.message.bytes): what would break the worker
stops it here, naming the topic (app.domain.topics judges); what weakens it is a warning at
every start."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import (
    ConfigResource,
    ConfigResourceType,
)
from aiokafka.errors import (
    KafkaError,
    TopicAlreadyExistsError,
    for_code,
)

from app.domain import deployment
from app.domain.discovery import DEPLOYMENT_TOPIC
from app.domain.errors import InternalTopicError
from app.domain.topics import TopicFacts, TopicSpec, internal_topic_problems

log = logging.getLogger(__name__)

# the topic settings the check reads (app.domain.topics)
_CHECKED_CONFIGS = ("cleanup.policy", "max.message.bytes")


async def ensure_topics(
    bootstrap: list[str] | str,
    topics: Mapping[str, tuple[int, int, Mapping[str, str]]],
    timeout: float = 60.0,
    **client_kwargs: object,
) -> None:
    """topics: name -> (partitions, replication, config), created when absent; then every
    one is checked.  Raises InternalTopicError when Kafka refuses to create one, or one
    exists in a shape the worker cannot run on; RuntimeError when Kafka stays unreachable
    for ``timeout`` seconds."""
    wanted = {name: TopicSpec(*spec) for name, spec in topics.items()}
    servers = bootstrap if isinstance(bootstrap, str) else ",".join(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = {n: s for n, s in wanted.items() if n not in existing}
            if missing:
                await _create(admin, missing)
                log.info("created internal topics: %s", ", ".join(missing))
            found, errors = await _describe(admin, list(wanted), deadline)
            brokers = len((await admin.describe_cluster())["brokers"])
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Kafka at {servers} unreachable for {timeout:.0f}s: {exc}"
                ) from exc
            log.warning("Kafka not reachable yet (%s); retrying", exc)
            await asyncio.sleep(1.0)
        finally:
            await admin.close()
    problems = internal_topic_problems(wanted, found, brokers, errors)
    for problem in problems:
        (log.error if problem.fatal else log.warning)("%s", problem.message)
    fatal = [p for p in problems if p.fatal]
    if fatal:
        raise InternalTopicError("; ".join(p.message for p in fatal), resource=fatal[0].topic)


async def _create(admin: Any, missing: Mapping[str, TopicSpec]) -> None:
    """Create the topics; a topic that appeared meanwhile is fine, a retriable error is
    raised for the caller's retry, anything else stops the start naming the topic."""
    resp = await admin.create_topics(
        [
            NewTopic(name, s.partitions, s.replication, topic_configs=dict(s.config))
            for name, s in missing.items()
        ]
    )
    refused = []
    for name, code, *rest in resp.topic_errors:
        if code in (0, TopicAlreadyExistsError.errno):
            continue
        error = for_code(code)
        reason = rest[-1] if rest and rest[-1] else error.description
        if error.retriable:
            raise error(f"creating topic {name}: {reason}")
        spec = missing[name]
        message = (
            f"cannot create internal topic {name} ({spec.partitions} partitions = "
            f"STATE_PARTITIONS, replication factor {spec.replication} = "
            f"KAFKA_TOPIC_REPLICATION): Kafka says {error.__name__}: {reason}"
        )
        refused.append((name, message))
    if refused:
        for _, message in refused:
            log.error("%s", message)
        raise InternalTopicError("; ".join(m for _, m in refused), resource=refused[0][0])


async def _describe(
    admin: Any, names: list[str], deadline: float
) -> tuple[dict[str, TopicFacts], dict[str, str]]:
    """What Kafka describes of the topics, and its error for what it does not.  A topic
    just created may be unknown to the broker answering for a moment (a retriable error):
    asked again until the deadline; a lasting error (no permission) is not waited for."""
    delay = 0.05
    while True:
        found: dict[str, TopicFacts] = {}
        errors: dict[str, str] = {}
        pending = False
        configs: dict[str, dict[str, str] | None] = {}
        for resp in await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, name, dict.fromkeys(_CHECKED_CONFIGS))
                for name in names
            ]
        ):
            for code, message, _, name, entries in resp.resources:
                if code == 0:
                    configs[name] = {e[0]: e[1] for e in entries if e[1] is not None}
                elif for_code(code).retriable:
                    pending = True
                    errors[name] = f"{for_code(code).__name__} until the deadline"
                else:
                    configs[name] = None
                    errors[name] = f"{for_code(code).__name__}: {message or ''}".rstrip(": ")
        for topic in await admin.describe_topics(names):
            name, code, parts = topic["topic"], topic["error_code"], topic["partitions"]
            if code == 0 and parts:  # its configuration: None while not known
                found[name] = TopicFacts(
                    len(parts), min(len(p["replicas"]) for p in parts), configs.get(name)
                )
            elif code == 0 or for_code(code).retriable:
                pending = True
                errors.setdefault(name, for_code(code).__name__ if code else "no partitions")
            else:
                errors[name] = for_code(code).__name__
        if not pending or time.monotonic() > deadline:
            return found, errors
        await asyncio.sleep(delay)
        delay = min(1.0, delay * 2)


class DeploymentConflict(RuntimeError):
    """This worker's settings are not those of the deployment that owns its APP_ID."""


async def read_deployment(
    bootstrap: list[str], topic: str, **client_kwargs: object
) -> list[deployment.Record]:
    """Every readable record of the deployment topic, in order (one partition)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **client_kwargs
    )
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
                        log.warning(
                            "%s: unreadable record at offset %d skipped", topic, message.offset
                        )
                    else:
                        records.append(record)
        return records
    finally:
        await consumer.stop()


async def write_deployment(
    bootstrap: list[str], topic: str, record: deployment.Record, **client_kwargs: object
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **client_kwargs)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            json.dumps(record.to_json()).encode(),
            key=record.key(int(time.time() * 1000)).encode(),
            partition=0,
        )
    finally:
        await producer.stop()


def new_record(
    kind: str, identity: dict[str, str], supersedes: str | None = None
) -> deployment.Record:
    return deployment.Record(
        kind,
        deployment.fingerprint(identity),
        identity,
        socket.gethostname(),
        datetime.now(UTC).isoformat(timespec="seconds"),
        supersedes,
    )


async def check_deployment(
    bootstrap: list[str],
    app_id: str,
    identity: dict[str, str],
    before_recording: Callable[[], Awaitable[None]] | None = None,
    **client_kwargs: object,
) -> deployment.Record:
    """The deployment this worker belongs to (recording it on a first start); raises
    DeploymentConflict when the APP_ID belongs to a deployment with other settings.
    ``before_recording`` runs before a first record is written (it may raise): a
    deployment started before records existed has only its topics to say what it is."""
    topic = f"{app_id}-{DEPLOYMENT_TOPIC}"
    owner = deployment.current(await read_deployment(bootstrap, topic, **client_kwargs))
    if owner is None:
        if before_recording is not None:
            await before_recording()
        await write_deployment(bootstrap, topic, new_record("initial", identity), **client_kwargs)
        # a first start racing another: the first record in the topic wins, for both
        owner = deployment.current(await read_deployment(bootstrap, topic, **client_kwargs))
        assert owner is not None, "the record just written is not readable"
    why = deployment.conflict(app_id, identity, owner)
    if why is not None:
        raise DeploymentConflict(why)
    return owner
