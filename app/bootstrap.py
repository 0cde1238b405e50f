"""Create the internal topics before the consumer subscribes.

Faust declares internal topics while it subscribes, which races the first group join:
the join can miss the brand-new control topic and the worker then sits idle until a
metadata refresh.  Creating them first (idempotently) removes the race."""
from __future__ import annotations

import asyncio
import logging
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError, TopicAlreadyExistsError  # type: ignore[import-untyped]

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
