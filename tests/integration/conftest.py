"""Integration tests are marked `integration`; their fixtures (stack, uid, workdir) live in
tests/conftest.py, shared with tests/chaos."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.fspath).replace(os.sep, "/")
        if "tests/integration/" in path or "tests/chaos/" in path:
            item.add_marker(pytest.mark.integration)
