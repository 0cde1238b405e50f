"""Container tests (marker `containers`): real containers on the machine's Docker engine,
from the images `make docker-images` builds here (docker/images.sh; names in
docker/local.env).  An engine that does not answer or an image that is missing is a
failure saying what to run, never a skip.

testcontainers' reaper (Ryuk) is an image on Docker Hub, which this machine cannot reach:
it is disabled, and every container and network is removed by the fixtures instead (and
whatever a crashed run left, by its session label, at the end of the session)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from testcontainers.core.labels import SESSION_ID

import docker

# read when the first container starts: the reaper's image is on Docker Hub
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

ROOT = Path(__file__).resolve().parents[2]
LOCAL_ENV = ROOT / "docker" / "local.env"
# Host ports this suite publishes (on 127.0.0.1 only): CONTAINERS_PORT_BASE + 10..29
PORT_BASE = int(os.environ.get("CONTAINERS_PORT_BASE", "39100"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/containers/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.containers)


def local_images() -> dict[str, str]:
    """docker/local.env: the names docker/images.sh builds the images under."""
    names = {}
    for line in LOCAL_ENV.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            names[key.strip()] = value.strip()
    return names


@pytest.fixture(scope="session")
def images() -> Iterator[dict[str, str]]:
    reason = ""
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:  # noqa: BLE001 (any failure means no engine: say which)
        reason = f"{type(exc).__name__}: {exc}"
    if reason:
        pytest.fail(
            f"no Docker engine answers ({reason}). The container tests need one: "
            "`make docker-engine` installs Debian's docker.io and starts dockerd (as root; "
            "it needs a kernel with overlay or vfs storage, cgroups and iptables), then "
            "`make docker-images` builds the images.",
            pytrace=False,
        )
    names = local_images()
    missing = [
        name
        for name in names.values()
        if not client.images.list(name=name)  # exact tag
    ]
    if missing:
        pytest.fail(
            f"images missing: {', '.join(missing)}; `make docker-images` builds them "
            "(docker/images.sh)",
            pytrace=False,
        )
    yield names
    # a run that crashed between a container's start and its fixture's cleanup
    for container in client.containers.list(
        all=True, filters={"label": f"org.testcontainers.session-id={SESSION_ID}"}
    ):
        container.remove(force=True, v=True)
    client.close()
