"""aiobotocore clients for the three services we call, built from Settings.

Credentials come from the standard AWS chain.  With AWS_ROLE_ARN set, that chain only
signs the ``sts:AssumeRole`` call; the clients use the role's temporary credentials,
which aiobotocore's refreshable-credentials machinery renews before they expire (see
:func:`assumed_role_credentials`).  No credential value is ever logged: botocore's own
debug output (signatures, session tokens, STS responses) is kept at INFO or above."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.credentials import (
    AioAssumeRoleCredentialFetcher,
    AioCredentialResolver,
    AioDeferredRefreshableCredentials,
)
from aiobotocore.session import AioSession, get_session
from botocore.credentials import CredentialProvider
from botocore.exceptions import NoCredentialsError

from app.aws.raw import RawJson, http_session
from app.settings import Settings

log = logging.getLogger(__name__)
SERVICES = ("dynamodb", "dynamodbstreams", "resourcegroupstaggingapi")
# botocore loggers whose DEBUG output carries request headers (X-Amz-Security-Token),
# signing material and raw response bodies (AssumeRole returns a secret key).
_WIRE_LOGGERS = ("botocore", "aiobotocore")

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _version() -> str:
    try:
        return metadata.version("dynamodb-kafka-replicator")
    except metadata.PackageNotFoundError:
        return "0"


# Marks every request of the product (AWS CloudTrail `userAgent`; the IAM-policy test
# tells product calls from test fixtures' calls by it).
USER_AGENT_EXTRA = f"dynamodb-replicator/{_version()}"
CONNECT_TIMEOUT = 10.0  # seconds, botocore's default, for the clients and the raw path


def refresh_windows(duration: int) -> tuple[int, int]:
    """(advisory, mandatory) seconds before expiry at which role credentials are renewed.

    botocore's defaults (15 / 10 minutes) would renew 900-second credentials on every
    call, so short sessions renew after two thirds / five sixths of their life."""
    return min(15 * 60, duration // 3), min(10 * 60, duration // 6)


class _NoCache(dict):  # type: ignore[type-arg]
    """The fetcher's response cache, disabled: when to renew is decided by the
    refreshable credentials alone (one clock, one window)."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


class _RoleCredentials(AioDeferredRefreshableCredentials):
    """Fetched on first use, renewed in the advisory window (a failed renewal there keeps
    the current credentials), and at the latest in the mandatory window."""

    def __init__(self, refresh_using: Callable[[], Any], duration: int, clock: Clock) -> None:
        super().__init__(refresh_using, method="assume-role", time_fetcher=clock)
        self._advisory_refresh_timeout, self._mandatory_refresh_timeout = refresh_windows(duration)


class _AssumedRoleProvider(CredentialProvider):
    METHOD = "assume-role"

    def __init__(self, credentials: _RoleCredentials) -> None:
        self._credentials = credentials

    async def load(self) -> _RoleCredentials:
        return self._credentials


async def assumed_role_credentials(
    settings: Settings,
    source: AioSession,
    config: AioConfig,
    clock: Clock,
) -> _RoleCredentials:
    """Refreshable credentials of AWS_ROLE_ARN, obtained with ``source``'s credentials
    (the standard chain) from STS at ``settings.endpoint_for("sts")``."""
    source_credentials = await source.get_credentials()
    if source_credentials is None:
        raise NoCredentialsError()
    extra_args: dict[str, Any] = {
        "RoleSessionName": settings.aws_role_session_name,
        "DurationSeconds": settings.aws_role_duration,
    }
    if settings.aws_role_external_id is not None:
        extra_args["ExternalId"] = settings.aws_role_external_id
    fetcher = AioAssumeRoleCredentialFetcher(
        client_creator=functools.partial(
            source.create_client,
            region_name=settings.aws_region,
            endpoint_url=settings.endpoint_for("sts"),
            config=config,
        ),
        source_credentials=source_credentials,
        role_arn=settings.aws_role_arn,
        extra_args=extra_args,
        cache=_NoCache(),
    )
    return _RoleCredentials(fetcher.fetch_credentials, settings.aws_role_duration, clock)


def _quiet_wire_logs() -> None:
    for name in _WIRE_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


class AwsClients:
    """Holds one client per service for the worker's lifetime (open/close).

    ``clock`` (tests) is the time source of the assumed-role credentials' expiry checks."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self._clock = clock
        self._stack = AsyncExitStack()
        self.session: AioSession | None = None
        self.dynamodb: Any = None
        self.streams: Any = None
        self.tagging: Any = None
        # GetRecords / Scan without botocore (DYNAMODB_RAW_HTTP; see app.aws.raw)
        self.raw_dynamodb: RawJson | None = None
        self.raw_streams: RawJson | None = None

    async def open(self) -> AwsClients:
        _quiet_wire_logs()
        pool = max(50, self.settings.state_partitions * 4)
        config = AioConfig(
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=self.settings.aws_read_timeout,
            max_pool_connections=pool,
            user_agent_extra=USER_AGENT_EXTRA,
        )
        session = get_session()
        if self.settings.aws_role_arn:
            credentials = await assumed_role_credentials(
                self.settings, session, config, self._clock or _utc_now
            )
            session = get_session()
            session.register_component(
                "credential_provider", AioCredentialResolver([_AssumedRoleProvider(credentials)])
            )
        self.session = session
        made = []
        for service in SERVICES:
            client = await self._stack.enter_async_context(
                session.create_client(
                    service,
                    region_name=self.settings.aws_region,
                    endpoint_url=self.settings.endpoint_for(service),
                    config=config,
                )
            )
            made.append(client)
        self.dynamodb, self.streams, self.tagging = made
        if self.settings.dynamodb_raw_http:
            # the object the clients sign with (the session caches it)
            credentials = await session.get_credentials()
            http = http_session(
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=self.settings.aws_read_timeout,
                max_connections=pool,
            )
            self._stack.push_async_callback(http.close)
            agent = f"{USER_AGENT_EXTRA} raw-http"
            self.raw_dynamodb = RawJson(self.dynamodb, credentials, http, agent)
            self.raw_streams = RawJson(self.streams, credentials, http, agent)
        log.info(
            "GetRecords and Scan: %s",
            "raw HTTP + orjson (DYNAMODB_RAW_HTTP=true)"
            if self.settings.dynamodb_raw_http
            else "aiobotocore (DYNAMODB_RAW_HTTP=false)",
        )
        return self

    async def close(self) -> None:
        await self._stack.aclose()
