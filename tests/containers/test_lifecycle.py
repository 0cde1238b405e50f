"""The worker's container life cycle, on real containers (testcontainers): Kafka and moto
containers, two workers from the product's image, a tagged table with writes; the snapshot
and the changes arrive in Kafka; one worker is killed (SIGKILL) and another started, and
nothing is lost; SIGTERM stops a worker within the grace period with its final
checkpoints stored (it says so, exits 0, and its successor repeats none of its records);
the status page and /metrics answer on the container's published port, behind the token.

Output is at-least-once: the checks count distinct keys and (key, sequence number) pairs,
never records."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from tests.containers.conftest import PORT_BASE
from tests.containers.support import (
    free_ports,
    http,
    kafka_answers,
    logs,
    moto_answers,
    publish,
    running,
    start_published,
    state,
    status_json,
    stop,
    topic_exists,
    wait_ready,
)
from tests.integration.dynamo import (
    Ledger,
    batch_put,
    check_against_ledger,
    client,
    create_table,
    decode,
    full_item,
    snapshot_keys,
)
from tests.integration.helpers import TopicReader, wait_until

PORTS = (PORT_BASE + 10, PORT_BASE + 49)  # host ports this test may publish, on 127.0.0.1
TOKEN = "container-test-token-" + uuid.uuid4().hex  # WEB_AUTH_TOKEN: 16+ characters
GRACE = 30  # seconds: docker-compose.yml's stop_grace_period, Kubernetes' default
N_ITEMS = 300


@pytest.fixture
def network() -> Iterator[Network]:
    with Network() as net:
        yield net


@pytest.fixture
def started() -> Iterator[list[DockerContainer]]:
    """Every container the test starts, removed (with its volumes) at the end."""
    containers: list[DockerContainer] = []
    yield containers
    for c in reversed(containers):
        c.stop()


def kafka(image: str, net: Network, port: int) -> DockerContainer:
    """The broker: `kafka:19092` inside the network, 127.0.0.1:<port> for this test."""
    container = (
        DockerContainer(image)
        .with_network(net)
        .with_network_aliases("kafka")
        .with_envs(
            KAFKA_LISTENERS="INTERNAL://:19092,EXTERNAL://:9092,CONTROLLER://:9093",
            KAFKA_ADVERTISED_LISTENERS=(f"INTERNAL://kafka:19092,EXTERNAL://127.0.0.1:{port}"),
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=(
                "CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT"
            ),
            KAFKA_INTER_BROKER_LISTENER_NAME="INTERNAL",
        )
    )
    return publish(container, 9092, port)


def moto(image: str, net: Network, port: int) -> DockerContainer:
    return publish(
        DockerContainer(image).with_network(net).with_network_aliases("moto"), 5000, port
    )


def worker(image: str, net: Network, uid: str, name: str, port: int) -> DockerContainer:
    """A worker from the product's image, with the image's own command (web on 0.0.0.0:6066
    inside the container, published on 127.0.0.1 only)."""
    container = (
        DockerContainer(image)
        .with_network(net)
        .with_name(f"replicator-{uid}-{name}")
        .with_envs(
            BROKER_URL="kafka://kafka:19092",
            AWS_ENDPOINT_URL="http://moto:5000",
            AWS_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            APP_ID=f"ct-{uid}-app",
            KAFKA_TOPIC_PREFIX=f"ct-{uid}-",
            DYNAMODB_TAG_FILTERS=f"ctest-{uid}",
            DYNAMODB_DISCOVERY_INTERVAL="2",
            DYNAMODB_SHARD_REFRESH_INTERVAL="1",
            DYNAMODB_POLL_INTERVAL="0.1",
            STATE_PARTITIONS="4",
            KAFKA_TOPIC_PARTITIONS="3",
            DYNAMODB_SCAN_PAGE_LIMIT="500",
            WEB_AUTH_TOKEN=TOKEN,
        )
    )
    return publish(container, 6066, port)


def stream_events(records: list[Any]) -> set[tuple[bytes, str]]:
    """(key, sequence number) of every change event (c/u/d) read."""
    found = set()
    for r in records:
        if r.value is not None and (v := decode(r.value))["op"] != "r":
            found.add((r.key, v["source"]["seq"]))
    return found


def test_worker_containers_survive_kill_and_stop_gracefully(
    images: dict[str, str],
    network: Network,
    started: list[DockerContainer],
) -> None:
    uid = uuid.uuid4().hex[:8]
    t0 = time.monotonic()
    marks: dict[str, float] = {}

    ports = free_ports(*PORTS)
    web: dict[str, int] = {}

    def start_worker(name: str) -> DockerContainer:
        image = images["REPLICATOR_IMAGE"]
        container, web[name] = start_published(
            lambda port: worker(image, network, uid, name, port), ports, started
        )
        return container

    # ---- Kafka and moto
    k, kafka_port = start_published(
        lambda port: kafka(images["KAFKA_IMAGE"], network, port), ports, started
    )
    m, moto_port = start_published(
        lambda port: moto(images["MOTO_IMAGE"], network, port), ports, started
    )
    ddb = client({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}"})
    wait_ready(m, lambda: moto_answers(moto_port), 60, "moto's ListTables")
    wait_ready(k, lambda: kafka_answers(kafka_port), 90, "the Kafka container's metadata")
    marks["services"] = time.monotonic() - t0

    # ---- a tagged table with items, then two workers
    table = f"ct-{uid}"
    create_table(ddb, table, [("pk", "S")], {f"ctest-{uid}": "1"})
    batch_put(ddb, table, [full_item(i) for i in range(N_ITEMS)])
    workers = {name: start_worker(name) for name in ("a", "b")}
    topic = f"ct-{uid}-{table}"
    wait_until(
        lambda: all(running(w) for w in workers.values()) and topic_exists(kafka_port, topic),
        120,
        f"the output topic {topic}",
        interval=0.5,
    )
    reader = TopicReader({"BROKER_URL": f"kafka://127.0.0.1:{kafka_port}"}, topic)
    try:
        want = {f'{{"pk":"item-{i:05d}"}}'.encode() for i in range(N_ITEMS)}
        reader.read_until(
            lambda recs: want <= set().union(*snapshot_keys(recs).values() or [set()]),
            120,
            f"the snapshot's {N_ITEMS} keys",
        )
        marks["snapshot"] = time.monotonic() - t0

        # ---- changes while both run
        ledger = Ledger()

        def put(i: int) -> None:
            batch_put(ddb, table, [full_item(i)])
            ledger.add(f'{{"pk":"item-{i:05d}"}}'.encode(), "c" if i >= N_ITEMS else "u")

        def delete(i: int) -> None:
            ddb.delete_item(TableName=table, Key={"pk": {"S": f"item-{i:05d}"}})
            ledger.add(f'{{"pk":"item-{i:05d}"}}'.encode(), "d")

        def delivered(what: str, timeout: float = 90) -> None:
            try:
                reader.read_until(
                    lambda recs: check_against_ledger(recs, ledger)["lost"] == 0,
                    timeout,
                    what,
                )
            except AssertionError as exc:  # say what the workers were doing
                tails = "\n".join(
                    f"--- worker {name}:\n{logs(w)[-6000:]}" for name, w in workers.items()
                )
                raise AssertionError(f"{exc}\n{tails}") from None

        for i in range(40):
            put(i)  # modify
        for i in range(N_ITEMS, N_ITEMS + 40):
            put(i)  # insert
        delivered("the changes written while two workers ran")

        # ---- SIGKILL one worker, start another; nothing is lost
        workers["a"].get_wrapped_container().kill()  # SIGKILL
        wait_until(lambda: not state(workers["a"])["Running"], 30, "worker a to die")
        assert state(workers["a"])["ExitCode"] == 137, state(workers["a"])
        workers["c"] = start_worker("c")
        for i in range(40, 80):
            put(i)
        for i in range(N_ITEMS + 40, N_ITEMS + 80):
            put(i)
        for i in range(80, 100):
            delete(i)
        delivered("the changes written after worker a was killed", timeout=150)
        marks["kill"] = time.monotonic() - t0

        # ---- the status page and /metrics on the container's published port
        port = web["b"]
        assert http(port, "/healthz") == (200, b"ok\n")
        assert http(port, "/status.json")[0] == 401  # the token is required
        status = wait_until(
            lambda: (
                (s := status_json(port, TOKEN))
                and any(row.get("table") == table for row in s.get("tables", []))
                and s
            ),
            30,
            "the table on b's status page",
        )
        assert status["app_id"] == f"ct-{uid}-app"
        code, page = http(port, "/status", TOKEN)
        assert code == 200 and page.startswith(b"<!doctype html>")  # it renders /status.json
        code, metrics = http(port, "/metrics", TOKEN)
        assert code == 200 and b"dynamodb_replicator_" in metrics, metrics[:500]
        assert http(port, "/metrics")[0] == 401
        # the image's HEALTHCHECK command, run in the container
        health = workers["b"].exec(["python", "scripts/healthcheck.py", "6066"])
        assert health.exit_code == 0, health.output

        # ---- SIGTERM: b stops within the grace period, final checkpoints stored
        reader.poll()
        before = stream_events(reader.records)
        took, code = stop(workers["b"], GRACE)
        b_log = logs(workers["b"])
        assert code == 0, f"exit {code} after {took:.1f}s (137: killed at the grace period)"
        assert took < GRACE, took
        assert "shutdown: runners stopped, final checkpoints stored" in b_log, b_log[-3000:]
        marks["sigterm"] = took
        reader.poll()
        seen_at_stop = len(reader.records)

        for i in range(100, 140):
            put(i)
        for i in range(N_ITEMS + 80, N_ITEMS + 100):
            put(i)
        delivered("the changes written after worker b stopped", timeout=150)
        # b's units resumed on c from b's final checkpoints: no record b had sent is sent
        # again (a stale checkpoint would repeat b's last batch)
        again = [
            r
            for r in reader.records[seen_at_stop:]
            if r.value is not None
            and (v := decode(r.value))["op"] != "r"
            and (r.key, v["source"]["seq"]) in before
        ]
        assert not again, f"{len(again)} records repeated after the graceful stop"
        snapshot = set().union(*snapshot_keys(reader.records).values())
        assert want <= snapshot
        assert running(workers["c"])
    finally:
        reader.close()
    marks["total"] = time.monotonic() - t0
    print("container life cycle timings (s):", {k: round(v, 1) for k, v in marks.items()})
