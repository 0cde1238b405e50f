"""The Faust application, configured once from the environment (app.settings)."""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import faust
from aiokafka.abc import AbstractTokenProvider  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from app.domain.discovery import DEPLOYMENT_TOPIC, STATE_TOPICS
from app.domain.limits import STATE_MAX_MESSAGE_BYTES
from app.domain.topics import TopicSpec
from app.errors import ConfigError
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


# botocore's DEBUG output of a signing carries the canonical request and the signature,
# i.e. everything of an MSK auth token: held at INFO whatever LOG_LEVEL says.
_SIGNER_LOGGERS = ("botocore", "boto3")


class MSKAuthError(KafkaError):  # aiokafka and ensure_topics retry on KafkaError
    """No MSK IAM auth token could be signed (no AWS credentials, AssumeRole refused, ...)."""


class MSKIAMTokenProvider(AbstractTokenProvider):
    """SASL/OAUTHBEARER token for Amazon MSK IAM authentication.

    The token is AWS's signer library's (``aws-msk-iam-sasl-signer-python``): a SigV4
    presigned ``kafka-cluster:Connect`` URL, base64url-encoded, valid 15 minutes.  It is
    signed by the base AWS credential chain, or, with ``role_arn``, by that role's credentials
    (one ``sts:AssumeRole`` per token).  Signing is synchronous botocore work (it may fetch
    instance/task credentials or call STS), so it runs in a thread; the token is reused by
    every connection until ``refresh_margin`` seconds before it expires.  Neither the token nor
    any credential is ever logged or shown in ``repr``.

    ``clock`` (tests) returns wall-clock seconds, compared with the token's expiry."""

    def __init__(self, region: str, role_arn: str | None = None,
                 session_name: str = "dynamodb-replicator", *,
                 clock: Callable[[], float] = time.time, refresh_margin: float = 120.0) -> None:
        self.region, self.role_arn, self.session_name = region, role_arn, session_name
        self._clock, self._margin = clock, refresh_margin
        self._lock = threading.Lock()  # not asyncio's: the provider may serve several loops
        self._current: tuple[str, float] | None = None  # (token, expiry in epoch seconds)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} region={self.region} "
                f"identity={self.role_arn or 'AWS credential chain'}>")

    def _cached(self) -> str | None:
        current = self._current
        if current is not None and self._clock() < current[1] - self._margin:
            return current[0]
        return None

    async def token(self) -> str:
        cached = self._cached()
        if cached is not None:
            return cached
        return await asyncio.to_thread(self._refresh)

    def _refresh(self) -> str:
        with self._lock:  # connections opening together share one signing
            cached = self._cached()
            if cached is not None:
                return cached
            token, expiry_ms = self._sign()
            self._current = (token, expiry_ms / 1000)
            log.info("signed an MSK IAM auth token (region %s, identity %s), valid %.0f s",
                     self.region, self.role_arn or "AWS credential chain",
                     expiry_ms / 1000 - self._clock())
            return token

    def _sign(self) -> tuple[str, int]:
        for name in _SIGNER_LOGGERS:
            logger = logging.getLogger(name)
            if logger.getEffectiveLevel() < logging.INFO:
                logger.setLevel(logging.INFO)
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider  # type: ignore[import-untyped]

        try:
            if self.role_arn:
                return MSKAuthTokenProvider.generate_auth_token_from_role_arn(
                    self.region, self.role_arn, self.session_name)
            return MSKAuthTokenProvider.generate_auth_token(self.region)
        except Exception as exc:  # botocore errors name the operation/code, never a secret
            # No credentials: the library dereferences the chain's None, or finds them empty.
            if (isinstance(exc, AttributeError) and "NoneType" in str(exc)) or (
                    isinstance(exc, ValueError) and "can not be empty" in str(exc)):
                raise MSKAuthError(
                    "MSK IAM: no AWS credentials found to sign the auth token "
                    f"(identity {self.role_arn or 'AWS credential chain'})") from None
            raise MSKAuthError(f"MSK IAM: could not sign the auth token (identity "
                               f"{self.role_arn or 'AWS credential chain'}): "
                               f"{type(exc).__name__}: {exc}") from exc


def _msk_token_provider(s: Settings) -> MSKIAMTokenProvider:
    return MSKIAMTokenProvider(s.msk_iam_region, s.kafka_msk_iam_role_arn,
                               s.aws_role_session_name)


def _credentials(s: Settings) -> dict[str, object]:
    """Faust broker settings for SSL / SASL (PLAIN, SCRAM, AWS_MSK_IAM = OAUTHBEARER)."""
    proto = s.kafka_security_protocol
    if proto == "PLAINTEXT":
        return {}
    import ssl

    context = ssl.create_default_context() if proto.endswith("SSL") else None
    if proto == "SSL":
        return {"broker_credentials": faust.SSLCredentials(context)}
    if s.kafka_sasl_mechanism == "AWS_MSK_IAM":  # Settings ensures SASL_SSL
        from faust.auth import OAuthCredentials

        return {"broker_credentials": OAuthCredentials(oauth_cb=_msk_token_provider(s),
                                                       ssl_context=context)}
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
    """The same security settings as aiokafka client kwargs: the admin client used at start,
    the cluster view (app/view.py) and the CLI's consumer/producer."""
    if s.kafka_security_protocol == "PLAINTEXT":
        return {}
    import ssl

    auth: dict[str, object] = {"security_protocol": s.kafka_security_protocol}
    if s.kafka_security_protocol.endswith("SSL"):
        auth["ssl_context"] = ssl.create_default_context()
    if s.kafka_sasl_mechanism == "AWS_MSK_IAM":
        auth.update(sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=_msk_token_provider(s))
    elif s.kafka_security_protocol.startswith("SASL"):
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
        from app.bootstrap import DeploymentConflict, check_deployment, ensure_topics
        from app.logs import configure

        configure(settings.log_level, settings.log_format)
        log.info("settings: %s", settings.masked())
        warning = exposure_warning(self.conf.web_bind, settings.web_auth_token,
                                   tls=settings.web_tls_cert is not None)
        if warning:
            log.warning(warning)

        # which deployment owns the APP_ID first: a worker of another one must stop with that
        # reason (and create or check nothing else of the other's)
        topics = internal_topics(settings)
        deployment_topic = f"{settings.app_id}-{DEPLOYMENT_TOPIC}"
        await ensure_topics(settings.bootstrap_servers(),
                            {deployment_topic: topics.pop(deployment_topic)},
                            **_admin_auth(settings))
        try:
            owner = await check_deployment(settings.bootstrap_servers(), settings.app_id,
                                           settings.identity(), **_admin_auth(settings))
        except DeploymentConflict as exc:
            # before this worker joins the group: the other deployment is left undisturbed
            log.critical("%s", exc)
            print(f"deployment conflict: {exc}", file=sys.stderr, flush=True)
            logging.shutdown()
            os._exit(3)  # Faust would restart a crashed service; nothing to clean up yet
        log.info("deployment %s (recorded by %s at %s)", owner.fingerprint, owner.host,
                 owner.at)
        await ensure_topics(settings.bootstrap_servers(), topics, **_admin_auth(settings))


def internal_topics(s: Settings) -> dict[str, TopicSpec]:
    """The app's own topics: name -> (partitions, replication, topic config).  They share
    KAFKA_TOPIC_REPLICATION with the output topics; created at start when absent, and
    checked at every start (app.bootstrap)."""
    p, r = s.state_partitions, s.kafka_topic_replication
    big = {"max.message.bytes": str(STATE_MAX_MESSAGE_BYTES)}
    compact = {"cleanup.policy": "compact", **big}
    topics = {f"{s.app_id}-{suffix}": TopicSpec(p, r, compact if suffix.endswith("changelog")
                                                 else big)
              for suffix in STATE_TOPICS}
    # a handful of small records, all kept: which deployment owns this APP_ID
    topics[f"{s.app_id}-{DEPLOYMENT_TOPIC}"] = TopicSpec(1, r, {"retention.ms": "-1",
                                                               "retention.bytes": "-1"})
    return topics


def _web_options(s: Settings) -> dict[str, object]:
    """TLS and the token check of the status pages (app/web.py), when configured."""
    options: dict[str, object] = {}
    context = ssl_context(s.web_tls_cert, s.web_tls_key)
    if context is not None:
        options["web_ssl_context"] = context
    if s.web_auth_token is not None:
        options["web_application_options"] = {
            "middlewares": [auth_middleware(s.web_auth_user, s.web_auth_token)]}
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
    producer_max_request_size=max(STATE_MAX_MESSAGE_BYTES,
                                  settings.kafka_max_record_bytes) + 65_536,
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
    **_credentials(settings),
)
