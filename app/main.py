"""The Faust application, configured once from the environment (app.settings)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import faust

from app.domain.discovery import DEPLOYMENT_TOPIC, FAUST_TOPICS, STATE_TOPICS
from app.domain.errors import ConfigError
from app.domain.limits import STATE_MAX_MESSAGE_BYTES
from app.domain.topics import TopicSpec
from app.kafka_auth import client_kwargs, faust_credentials
from app.settings import Settings
from app.web import auth_middleware, exposure_warning, ssl_context

log = logging.getLogger(__name__)


T = TypeVar("T")


def _or_exit(build: Callable[[], T]) -> T:
    try:
        return build()
    except ConfigError as exc:
        # A bad setting stops the worker at start, naming the variable.
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


settings = _or_exit(Settings.from_env)


class ReplicatorApp(faust.App):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # run first at stop (agents/worker.py adds the runners' drain)
        self.before_stop: list[Callable[[], Awaitable[None]]] = []

    async def on_stop(self) -> None:
        """Graceful shutdown (SIGTERM): runners finish their batch and report their last
        checkpoint while the control agent still runs, so a restart resumes exactly there;
        only then does Faust drain streams and close the tables."""
        for hook in self.before_stop:
            await hook()
        await super().on_stop()

    async def on_first_start(self) -> None:
        await super().on_first_start()
        from app import fastwire
        from app.bootstrap import DeploymentConflict, check_deployment, ensure_topics
        from app.logs import configure

        configure(settings.log_level, settings.log_format)
        log.info("settings: %s", settings.masked())
        log.info("response codec: %s", fastwire.DESCRIPTION)
        warning = exposure_warning(
            self.conf.web_bind, settings.web_auth_token, tls=settings.web_tls_cert is not None
        )
        if warning:
            log.warning(warning)

        # which deployment owns the APP_ID first: a worker of another one must stop with that
        # reason (and create or check nothing else of the other's)
        topics = internal_topics(settings)
        deployment_topic = f"{settings.app_id}-{DEPLOYMENT_TOPIC}"
        await ensure_topics(
            settings.bootstrap_servers(),
            {deployment_topic: topics.pop(deployment_topic)},
            **client_kwargs(settings),
        )

        async def state_topics_fit() -> None:
            # no record yet: a new deployment, or one started before records existed,
            # whose topics must fit this worker's settings before its identity is recorded
            # (it says "set STATE_PARTITIONS=8" to one started with the old default)
            await ensure_topics(settings.bootstrap_servers(), topics, **client_kwargs(settings))

        try:
            owner = await check_deployment(
                settings.bootstrap_servers(),
                settings.app_id,
                settings.identity(),
                state_topics_fit,
                **client_kwargs(settings),
            )
        except DeploymentConflict as exc:
            # before this worker joins the group: the other deployment is left undisturbed
            log.critical("%s", exc)
            print(f"deployment conflict: {exc}", file=sys.stderr, flush=True)
            logging.shutdown()
            os._exit(3)  # Faust would restart a crashed service; nothing to clean up yet
        log.info("deployment %s (recorded by %s at %s)", owner.fingerprint, owner.host, owner.at)
        await ensure_topics(settings.bootstrap_servers(), topics, **client_kwargs(settings))


def internal_topics(s: Settings) -> dict[str, TopicSpec]:
    """The app's own topics: name -> (partitions, replication, topic config).  They share
    KAFKA_TOPIC_REPLICATION with the output topics; created at start when absent, and
    checked at every start (app.bootstrap)."""
    p, r = s.state_partitions, s.kafka_topic_replication
    big = {"max.message.bytes": str(STATE_MAX_MESSAGE_BYTES)}
    compact = {"cleanup.policy": "compact", **big}
    topics = {
        f"{s.app_id}-{suffix}": TopicSpec(p, r, compact if suffix.endswith("changelog") else big)
        for suffix in STATE_TOPICS
    }
    # a handful of small records, all kept: which deployment owns this APP_ID
    topics[f"{s.app_id}-{DEPLOYMENT_TOPIC}"] = TopicSpec(
        1, r, {"retention.ms": "-1", "retention.bytes": "-1"}
    )
    # Faust's leader election (faust/assignor/leader_assignor.py: 1 partition, declared as
    # the worker starts).  Created here first, too: declared by Faust on a first start
    # while the broker was still busy creating the state topics' partitions, it was
    # missing from the first join's metadata, so no worker was ever assigned it, no worker
    # was leader, and discovery never ran (seen with STATE_PARTITIONS=32 in compose)
    topics[f"{s.app_id}-{FAUST_TOPICS[0]}"] = TopicSpec(1, r, {})
    return topics


def _web_options(s: Settings) -> dict[str, Any]:
    """TLS and the token check of the status pages (app/web.py), when configured."""
    options: dict[str, Any] = {}
    context = ssl_context(s.web_tls_cert, s.web_tls_key)
    if context is not None:
        options["web_ssl_context"] = context
    if s.web_auth_token is not None:
        options["web_application_options"] = {
            "middlewares": [auth_middleware(s.web_auth_user, s.web_auth_token)]
        }
    return options


app = ReplicatorApp(
    settings.app_id,
    broker=list(settings.broker_url),
    store=settings.state_store,
    autodiscover=False,
    origin="app",
    topic_partitions=settings.state_partitions,
    topic_replication_factor=settings.kafka_topic_replication,
    producer_acks=-1,
    # a record of KAFKA_MAX_RECORD_BYTES (or a state record) alone in its batch must fit
    producer_max_request_size=max(STATE_MAX_MESSAGE_BYTES, settings.kafka_max_record_bytes)
    + 65_536,
    # a batch not acknowledged by then fails (and is sent again by the runner); Faust's
    # default (1200 s) let a batch wait 20 minutes for a partition leader
    producer_request_timeout=settings.kafka_send_timeout,
    producer_linger_ms=5,
    producer_max_batch_size=1_048_576,  # per partition; 16 KiB halved the ack rate (bench/)
    broker_commit_interval=1.0,
    broker_session_timeout=settings.kafka_session_timeout,
    # Faust refuses a session timeout above the request timeout (90 s by default): the
    # consumer did not start with KAFKA_SESSION_TIMEOUT=120
    broker_request_timeout=max(90.0, settings.kafka_session_timeout),
    broker_heartbeat_interval=max(1.0, settings.kafka_session_timeout / 10),
    table_standby_replicas=0,
    web_enabled=True,
    # Serve on loopback unless told otherwise (`faust worker --web-bind 0.0.0.0`, as the
    # container image does); web_host is only the address Faust advertises.
    web_bind="127.0.0.1",
    web_host="127.0.0.1",
    # Faust's own endpoints are off: /table/<name>/<key> would hand out scan cursors
    # (item primary keys), /router the partition map.  Only the product's pages remain.
    web_router_enabled=False,
    web_tables_enabled=False,
    web_stats_enabled=False,
    web_graph_enabled=False,
    **_or_exit(lambda: _web_options(settings)),
    **faust_credentials(settings),
)
