"""Shared fixtures: one local stack (real Kafka broker + moto server) per session, started
by the project's own scripts/stack.py; isolation by unique names, not restarts.
A missing service is a failure, never a skip: the stack is ours to start."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STACK = [sys.executable, str(ROOT / "scripts" / "stack.py")]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-long",
        action="store_true",
        default=False,
        help="the full chaos run (make chaos) instead of the short variant",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`chaos_long` tests belong to `make chaos` only: their short variants run in `make
    test` under another name, so without --chaos-long they are deselected (not skipped)."""
    if config.getoption("--chaos-long"):
        return
    long_only = [item for item in items if item.get_closest_marker("chaos_long")]
    if long_only:
        config.hook.pytest_deselected(items=long_only)
        items[:] = [item for item in items if not item.get_closest_marker("chaos_long")]


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    proc = subprocess.run([*STACK, "up"], capture_output=True, text=True, timeout=300, check=False)
    sys.stderr.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        pytest.fail(
            f"local stack did not come up (CI={os.environ.get('CI')}):\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    env = dict(
        line.split("=", 1)
        for line in subprocess.run(
            [*STACK, "env"], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    return env


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
