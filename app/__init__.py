"""The DynamoDB → Kafka replicator.  `faust -A app worker` reads the attribute `app`.

The Faust app is built lazily so that `import app.domain…` in unit tests neither
reads the environment nor imports Faust."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        # explicit, so that an import error stops the worker instead of being a warning
        # imported for what they register on the app (agents, timers, pages, commands)
        import agents.control
        import agents.discovery
        import agents.web_pages  # noqa: F401
        import app.cli
        import app.main

        return app.main.app
    raise AttributeError(name)
