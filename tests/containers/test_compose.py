"""docker-compose.yml, verified: the file users run, brought up on the images
`make docker-images` builds here (only the images and the host ports are overridden, from
the environment: docker/local.env), replicates the demo table, then comes down leaving
no container behind.  Distinct keys are counted, never records (at-least-once)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from typing import Any

import pytest

import docker
from tests.containers.conftest import PORT_BASE, ROOT
from tests.containers.support import free_ports, http, kafka_answers, topic_exists
from tests.integration.dynamo import client as aws_client
from tests.integration.dynamo import decode
from tests.integration.helpers import TopicReader, wait_until


def compose_command() -> list[str]:
    """Compose v2 (the docker CLI plugin) when there is one, else Debian's docker-compose
    (v1: bookworm packages no v2 plugin)."""
    docker_cli = shutil.which("docker")
    if (
        docker_cli
        and subprocess.run(
            [docker_cli, "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return [docker_cli, "compose"]
    if v1 := shutil.which("docker-compose"):
        return [v1]
    pytest.fail("neither `docker compose` nor docker-compose: `make docker-engine` installs it")


def test_compose_file_replicates_the_demo_table(images: dict[str, str]) -> None:
    project = f"replicator-ct-{uuid.uuid4().hex[:8]}"
    ports = free_ports(PORT_BASE + 50, PORT_BASE + 99)
    kafka_port, moto_port, web_port = next(ports), next(ports), next(ports)
    env = {
        **os.environ,
        "KAFKA_IMAGE": images["KAFKA_IMAGE"],
        "MOTO_IMAGE": images["MOTO_IMAGE"],
        "REPLICATOR_IMAGE": images["REPLICATOR_IMAGE"],
        "KAFKA_HOST_PORT": str(kafka_port),
        "MOTO_HOST_PORT": str(moto_port),
        "WEB_HOST_PORT": str(web_port),
    }
    compose = [*compose_command(), "-p", project, "-f", str(ROOT / "docker-compose.yml")]

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*compose, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    t0 = time.monotonic()
    up = run("up", "-d", "--no-build")  # the local images, never a build or a pull
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        took_up = time.monotonic() - t0
        wait_until(lambda: kafka_answers(kafka_port), 60, "compose's Kafka on the host port")
        status = wait_until(
            lambda: (
                (r := http(web_port, "/status.json"))[0] == 200
                and any(t.get("table") == "demo-orders" for t in json.loads(r[1])["tables"])
                and json.loads(r[1])
            ),
            180,
            "demo-orders on the worker's status page",
            interval=0.5,
        )
        assert status["tables"]
        topic = "dynamodb-demo-orders"
        wait_until(lambda: topic_exists(kafka_port, topic), 60, f"the topic {topic}")
        # the items in the table now (the writer keeps changing it): each must reach Kafka
        ddb = aws_client({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}"})
        pages = ddb.get_paginator("scan").paginate(TableName="demo-orders")
        in_table = {
            json.dumps({"order_id": item["order_id"]["S"]}, separators=(",", ":")).encode()
            for page in pages
            for item in page["Items"]
        }
        assert len(in_table) >= 50, in_table

        def replicated(recs: list[Any]) -> bool:
            keys = {r.key for r in recs if r.value and decode(r.value)["op"] in "rcu"}
            changes = any(r.value and decode(r.value)["op"] != "r" for r in recs)
            return in_table <= keys and changes

        reader = TopicReader({"BROKER_URL": f"kafka://127.0.0.1:{kafka_port}"}, topic)
        try:
            records = reader.read_until(
                replicated, 180, f"the demo table's {len(in_table)} items and a change"
            )
        finally:
            reader.close()
        ops = {decode(r.value)["op"] for r in records if r.value}
        assert "r" in ops and ops & {"c", "u", "d"}, ops
        code, metrics = http(web_port, "/metrics")
        assert code == 200 and b"dynamodb_replicator_" in metrics
        print(f"compose: up in {took_up:.1f}s, demo replicated in {time.monotonic() - t0:.1f}s")
    finally:
        t1 = time.monotonic()
        down = run("down", "-v", "--timeout", "30")
        print(f"compose: down in {time.monotonic() - t1:.1f}s")
    assert down.returncode == 0, down.stdout + down.stderr
    client = docker.from_env()
    left = client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={project}"}
    )
    client.close()
    assert not left, [c.name for c in left]
