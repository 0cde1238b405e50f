"""Helpers of the container tests: containers on 127.0.0.1-only ports, readiness probes,
the worker's pages over HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from aiokafka.client import AIOKafkaClient  # type: ignore[import-untyped]
from docker.errors import APIError
from testcontainers.core.container import DockerContainer

from tests.integration.helpers import wait_until


def publish(container: DockerContainer, port: int, host_port: int) -> DockerContainer:
    """Publish a container port on the host's loopback only (testcontainers' own
    with_bind_ports binds every interface)."""
    container.ports[f"{port}/tcp"] = ("127.0.0.1", host_port)  # type: ignore[assignment]
    return container


def free_ports(first: int, last: int) -> Iterator[int]:
    """Ports of 127.0.0.1 in [first, last] nobody listens on or holds, in order.  The range
    lies inside Linux's ephemeral range (32768-60999): a client socket can hold one."""
    for port in range(first, last + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        yield port


def start_published(
    make: Callable[[int], DockerContainer], ports: Iterator[int], started: list[DockerContainer]
) -> tuple[DockerContainer, int]:
    """Start the container `make(host_port)` builds on the first port that is still free
    when Docker binds it (between our check and Docker's bind, a client socket may take it)."""
    for port in ports:
        container = make(port)
        started.append(container)
        try:
            return container.start(), port
        except APIError as exc:
            if "address already in use" not in str(exc):
                raise
            container.stop()
            started.remove(container)
    raise AssertionError("no free port left for the container")


def logs(container: DockerContainer) -> str:
    out, err = container.get_logs()
    return (out + err).decode(errors="replace")


def state(container: DockerContainer) -> dict[str, Any]:
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    return dict(wrapped.attrs["State"])


def running(container: DockerContainer) -> bool:
    st = state(container)
    if not st["Running"]:
        raise AssertionError(
            f"container {container.get_wrapped_container().name} exited "
            f"({st['ExitCode']}):\n{logs(container)[-4000:]}"
        )
    return True


def kafka_answers(host_port: int) -> bool:
    """A real Metadata request: the broker lists itself."""

    async def probe() -> bool:
        client = AIOKafkaClient(bootstrap_servers=f"127.0.0.1:{host_port}", request_timeout_ms=3000)
        try:
            await client.bootstrap()
            return len((await client.fetch_all_metadata()).brokers()) > 0
        except Exception:  # noqa: BLE001 (a probe: any failure means not ready yet)
            return False
        finally:
            await client.close()

    return asyncio.run(probe())


def moto_answers(host_port: int) -> bool:
    """A real DynamoDB ListTables call; any failure means not ready yet."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{host_port}/",
        data=b"{}",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/"
            "dynamodb/aws4_request, SignedHeaders=host, Signature=x",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return resp.status == 200 and b"TableNames" in resp.read()
    except OSError:
        return False


def topic_exists(host_port: int, topic: str) -> bool:
    async def probe() -> bool:
        client = AIOKafkaClient(bootstrap_servers=f"127.0.0.1:{host_port}")
        try:
            await client.bootstrap()
            return topic in (await client.fetch_all_metadata()).topics()
        except Exception:  # noqa: BLE001 (a probe)
            return False
        finally:
            await client.close()

    return asyncio.run(probe())


def wait_ready(container: DockerContainer, probe: Any, timeout: float, what: str) -> None:
    wait_until(lambda: running(container) and probe(), timeout, what, interval=0.25)


def http(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except OSError:
        return 0, b""


def status_json(port: int, token: str) -> dict[str, Any]:
    code, body = http(port, "/status.json", token)
    return json.loads(body) if code == 200 else {}


def stop(container: DockerContainer, grace: int) -> tuple[float, int]:
    """`docker stop`: SIGTERM (the image's STOPSIGNAL), SIGKILL after `grace` seconds.
    Returns (seconds until it exited, exit code)."""
    wrapped = container.get_wrapped_container()
    t0 = time.monotonic()
    wrapped.stop(timeout=grace)
    took = time.monotonic() - t0
    return took, int(state(container)["ExitCode"])
