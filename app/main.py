"""The Faust application, configured once from the environment (app.settings)."""
from __future__ import annotations

import logging
import sys

import faust

from app.errors import ConfigError
from app.settings import Settings

log = logging.getLogger(__name__)


def _load_settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        # A bad setting stops the worker at start, naming the variable.
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


settings = _load_settings()

class ReplicatorApp(faust.App):
    async def on_first_start(self) -> None:
        await super().on_first_start()
        from app.bootstrap import ensure_topics

        p, r = settings.state_partitions, settings.kafka_topic_replication
        compact = {"cleanup.policy": "compact"}
        await ensure_topics(
            [u.removeprefix("kafka://") for u in settings.broker_url],
            {f"{settings.app_id}-control": (p, r, {}),
             f"{settings.app_id}-tables-changelog": (p, r, compact),
             f"{settings.app_id}-units-changelog": (p, r, compact)})


app = ReplicatorApp(
    settings.app_id,
    broker=list(settings.broker_url),
    store=settings.state_store,
    autodiscover=False,
    origin="app",
    topic_partitions=settings.state_partitions,
    topic_replication_factor=settings.kafka_topic_replication,
    producer_acks=-1,
    producer_max_request_size=max(1_048_576, settings.kafka_max_record_bytes + 65_536),
    producer_linger_ms=5,
    stream_wait_empty=False,
    table_standby_replicas=0,
    web_enabled=True,
    web_host="127.0.0.1",
    logging_config=None,
)
