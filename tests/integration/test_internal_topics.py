"""Security item 5: the internal topics are checked at start against what Kafka describes.
ensure_topics ignored creation errors and never looked at existing topics (partitions,
cleanup policy, replication); now what breaks the worker stops it with a clear message and
what weakens it is a loud warning."""

from __future__ import annotations

import logging
import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

from app.bootstrap import ensure_topics
from app.domain.errors import InternalTopicError
from app.domain.topics import TopicSpec
from tests.integration.dynamo import worker_env
from tests.integration.helpers import Worker, bootstrap, wait_until

BIG = {"max.message.bytes": str(16 * 1024 * 1024)}
COMPACT = {"cleanup.policy": "compact", **BIG}


def wanted(prefix: str, partitions: int = 4, replication: int = 1) -> dict[str, TopicSpec]:
    return {
        f"{prefix}-control": TopicSpec(partitions, replication, BIG),
        f"{prefix}-tables-changelog": TopicSpec(partitions, replication, COMPACT),
        f"{prefix}-units-changelog": TopicSpec(partitions, replication, COMPACT),
    }


async def create(servers: str, *topics: NewTopic) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        resp = await admin.create_topics(list(topics))
        assert all(code == 0 for _, code, *_ in resp.topic_errors), resp.topic_errors
    finally:
        await admin.close()


async def test_fresh_topics_are_created_and_pass_the_check(stack, uid, caplog):
    caplog.set_level(logging.WARNING, logger="app.bootstrap")
    topics = wanted(f"it-{uid}")
    await ensure_topics(bootstrap(stack), topics, timeout=30)
    await ensure_topics(bootstrap(stack), topics, timeout=30)  # as found the second time
    assert not caplog.records, [r.getMessage() for r in caplog.records]


async def test_a_topic_kafka_refuses_to_create_stops_the_start_with_kafkas_reason(stack, uid):
    """Replication 3 on the test stack's single broker: Kafka refuses the topic; this was
    ignored and the worker went on without its control topic."""
    started = time.monotonic()
    with pytest.raises(InternalTopicError) as info:
        await ensure_topics(bootstrap(stack), wanted(f"it-{uid}", replication=3), timeout=30)
    assert time.monotonic() - started < 20  # not retried as if Kafka were unreachable
    message = str(info.value)
    assert f"it-{uid}-control" in message and "replication factor 3" in message
    assert "InvalidReplicationFactor" in message and "1 broker" in message  # Kafka's words


async def test_a_changelog_that_is_not_compacted_stops_the_start(stack, uid):
    prefix = f"it-{uid}"
    await create(
        bootstrap(stack),
        NewTopic(
            f"{prefix}-units-changelog", 4, 1, topic_configs={"cleanup.policy": "delete", **BIG}
        ),
    )
    with pytest.raises(InternalTopicError) as info:
        await ensure_topics(bootstrap(stack), wanted(prefix), timeout=30)
    assert f"{prefix}-units-changelog has cleanup.policy=delete" in str(info.value)
    assert "compact" in str(info.value)


async def test_fewer_replicas_than_the_setting_is_a_loud_warning(stack, uid, caplog):
    prefix = f"it-{uid}"
    await create(
        bootstrap(stack),
        *(
            NewTopic(name, spec.partitions, 1, topic_configs=dict(spec.config))
            for name, spec in wanted(prefix).items()
        ),
    )
    caplog.set_level(logging.WARNING, logger="app.bootstrap")
    await ensure_topics(bootstrap(stack), wanted(prefix, replication=2), timeout=30)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 3, warned
    assert all("replication factor 1, KAFKA_TOPIC_REPLICATION is 2" in w for w in warned)


def test_a_changelog_with_another_partition_count_stops_the_worker(stack, uid, workdir):
    """The changelog exists with 2 partitions (say, from a first start with
    STATE_PARTITIONS=2); the worker now runs with STATE_PARTITIONS=4.  Faust would fail at
    the first table write of the control agent, long after the start; the worker now stops
    at start saying which topic and both numbers."""
    import asyncio

    env = worker_env(stack, uid)
    assert env["STATE_PARTITIONS"] == "4"
    changelog = f"{env['APP_ID']}-tables-changelog"
    asyncio.run(create(bootstrap(stack), NewTopic(changelog, 2, 1, topic_configs=COMPACT)))
    worker = Worker("app", env, workdir).start()
    try:
        wait_until(lambda: not worker.alive, 90, "the worker to stop")
        log = worker.log()
        assert worker.proc is not None and worker.proc.returncode != 0, log[-3000:]
        assert f"internal topic {changelog} has 2 partitions, STATE_PARTITIONS is 4" in log, log[
            -3000:
        ]
    finally:
        worker.kill()


def test_a_deployment_from_before_records_with_the_old_default_is_told_what_to_set(
    stack, uid, workdir
):
    """A deployment first started with the old default (8 partitions) by a version that
    wrote no deployment record, upgraded without setting STATE_PARTITIONS (now 32 by
    default): the worker stops at start saying to set 8, and records nothing, so that with
    STATE_PARTITIONS=8 it starts as the same deployment."""
    import asyncio

    env = worker_env(stack, uid)
    del env["STATE_PARTITIONS"]  # the default
    prefix = env["APP_ID"]
    old = wanted(prefix, partitions=8)
    asyncio.run(ensure_topics(bootstrap(stack), old, timeout=30))  # the old version's topics
    worker = Worker("app", env, workdir, "upgraded").start()
    try:
        wait_until(lambda: not worker.alive, 90, "the worker to stop")
        log = worker.log()
        assert f"internal topic {prefix}-control has 8 partitions, STATE_PARTITIONS is 32" in log
        assert "STATE_PARTITIONS=8" in log, log[-3000:]
    finally:
        worker.kill()
    fixed = Worker("app", {**env, "STATE_PARTITIONS": "8"}, workdir, "fixed").start()
    try:
        fixed.wait_log(r"rebalance complete: 8 control partitions owned", timeout=90)
        assert "deployment conflict" not in fixed.log()
    finally:
        fixed.kill()
