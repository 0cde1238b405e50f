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


def _credentials(s: Settings) -> dict[str, object]:
    """Faust broker settings for SSL / SASL (PLAIN, SCRAM)."""
    proto = s.kafka_security_protocol
    if proto == "PLAINTEXT":
        return {}
    import ssl

    context = ssl.create_default_context() if proto.endswith("SSL") else None
    if proto == "SSL":
        return {"broker_credentials": faust.SSLCredentials(context)}
    if not (s.kafka_sasl_username and s.kafka_sasl_password):
        print("configuration error: KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD: required when "
              f"KAFKA_SECURITY_PROTOCOL={proto}", file=sys.stderr)
        raise SystemExit(2)
    if s.kafka_sasl_mechanism == "PLAIN":
        creds = faust.SASLCredentials(username=s.kafka_sasl_username,
                                      password=s.kafka_sasl_password, ssl_context=context)
    else:
        from faust.auth import SASLCredentials

        creds = SASLCredentials(username=s.kafka_sasl_username, password=s.kafka_sasl_password,
                                mechanism=s.kafka_sasl_mechanism, ssl_context=context)
    return {"broker_credentials": creds}

def _admin_auth(s: Settings) -> dict[str, object]:
    """The same security settings for the aiokafka admin client used at start."""
    if s.kafka_security_protocol == "PLAINTEXT":
        return {}
    import ssl

    auth: dict[str, object] = {"security_protocol": s.kafka_security_protocol}
    if s.kafka_security_protocol.endswith("SSL"):
        auth["ssl_context"] = ssl.create_default_context()
    if s.kafka_security_protocol.startswith("SASL"):
        auth.update(sasl_mechanism=s.kafka_sasl_mechanism,
                    sasl_plain_username=s.kafka_sasl_username,
                    sasl_plain_password=s.kafka_sasl_password)
    return auth


class ReplicatorApp(faust.App):
    async def on_stop(self) -> None:
        """Graceful shutdown (SIGTERM): runners finish their batch and report their last
        checkpoint while the control agent still runs, so a restart resumes exactly there;
        only then does Faust drain streams and close the tables."""
        from agents.runtime import runtime

        await runtime.drain(timeout=20.0)
        await super().on_stop()

    async def on_first_start(self) -> None:
        await super().on_first_start()
        from app.bootstrap import ensure_topics
        from app.logs import configure

        configure(settings.log_level, settings.log_format)
        log.info("settings: %s", settings.masked())

        p, r = settings.state_partitions, settings.kafka_topic_replication
        compact = {"cleanup.policy": "compact"}
        await ensure_topics(
            [u.removeprefix("kafka://") for u in settings.broker_url],
            {f"{settings.app_id}-control": (p, r, {}),
             f"{settings.app_id}-tables-changelog": (p, r, compact),
             f"{settings.app_id}-units-changelog": (p, r, compact)},
            **_admin_auth(settings))


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
    producer_max_batch_size=1_048_576,  # per partition; 16 KiB halved the ack rate (bench/)
    broker_commit_interval=1.0,
    broker_session_timeout=settings.kafka_session_timeout,
    broker_heartbeat_interval=max(1.0, settings.kafka_session_timeout / 10),
    table_standby_replicas=0,
    web_enabled=True,
    web_host="127.0.0.1",
    **_credentials(settings),
)
