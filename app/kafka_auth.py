"""Kafka authentication, from the settings: what the Faust app (:func:`faust_credentials`)
and the project's own aiokafka clients (:func:`client_kwargs`: the admin client used at
start, the cluster view, the CLI's consumer and producer) are given for PLAINTEXT, SSL and
SASL (PLAIN, SCRAM, Amazon MSK IAM over OAUTHBEARER), and the MSK IAM token provider.

The settings are already validated (:meth:`app.settings.Settings.from_env`): SASL
credentials are present where they are needed, AWS_MSK_IAM only comes with SASL_SSL.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import faust
from aiokafka.abc import AbstractTokenProvider
from aiokafka.errors import KafkaError
from faust.auth import OAuthCredentials, SASLCredentials

from app.settings import Settings

__all__ = [
    "MSKAuthError",
    "MSKIAMTokenProvider",
    "client_kwargs",
    "faust_credentials",
    "msk_token_provider",
]

log = logging.getLogger(__name__)

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

    def __init__(
        self,
        region: str,
        role_arn: str | None = None,
        session_name: str = "dynamodb-replicator",
        *,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = 120.0,
    ) -> None:
        self.region, self.role_arn, self.session_name = region, role_arn, session_name
        self._clock, self._margin = clock, refresh_margin
        self._lock = threading.Lock()  # not asyncio's: the provider may serve several loops
        self._current: tuple[str, float] | None = None  # (token, expiry in epoch seconds)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} region={self.region} "
            f"identity={self.role_arn or 'AWS credential chain'}>"
        )

    def _cached(self) -> str | None:
        current = self._current
        if current is not None and self._clock() < current[1] - self._margin:
            return current[0]
        return None

    async def token(self) -> str:
        """The current token, signed anew when none is cached or it is about to expire."""
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
            log.info(
                "signed an MSK IAM auth token (region %s, identity %s), valid %.0f s",
                self.region,
                self.role_arn or "AWS credential chain",
                expiry_ms / 1000 - self._clock(),
            )
            return token

    def _sign(self) -> tuple[str, int]:
        for name in _SIGNER_LOGGERS:
            logger = logging.getLogger(name)
            if logger.getEffectiveLevel() < logging.INFO:
                logger.setLevel(logging.INFO)
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

        try:
            if self.role_arn:
                token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_role_arn(
                    self.region, self.role_arn, self.session_name
                )
            else:
                token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(self.region)
            return str(token), int(expiry_ms)
        except Exception as exc:  # botocore errors name the operation/code, never a secret
            # No credentials: the library dereferences the chain's None, or finds them empty.
            if (isinstance(exc, AttributeError) and "NoneType" in str(exc)) or (
                isinstance(exc, ValueError) and "can not be empty" in str(exc)
            ):
                raise MSKAuthError(
                    "MSK IAM: no AWS credentials found to sign the auth token "
                    f"(identity {self.role_arn or 'AWS credential chain'})"
                ) from None
            raise MSKAuthError(
                f"MSK IAM: could not sign the auth token (identity "
                f"{self.role_arn or 'AWS credential chain'}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def msk_token_provider(s: Settings) -> MSKIAMTokenProvider:
    """A token provider for the MSK cluster's region (KAFKA_MSK_IAM_REGION, else AWS_REGION),
    signing as KAFKA_MSK_IAM_ROLE_ARN when set, else with the base AWS credential chain.
    Deliberately not AWS_ROLE_ARN: that is the tables' role."""
    return MSKIAMTokenProvider(s.msk_iam_region, s.kafka_msk_iam_role_arn, s.aws_role_session_name)


def faust_credentials(s: Settings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App``: ``{}`` for PLAINTEXT, else
    ``{"broker_credentials": ...}`` for SSL or SASL (PLAIN, SCRAM, AWS_MSK_IAM =
    OAUTHBEARER).  TLS uses the default context (system CAs, host names checked)."""
    proto = s.kafka_security_protocol
    if proto == "PLAINTEXT":
        return {}
    context = ssl.create_default_context() if proto.endswith("SSL") else None
    if proto == "SSL":
        return {"broker_credentials": faust.SSLCredentials(context)}
    if s.kafka_sasl_mechanism == "AWS_MSK_IAM":  # Settings ensures SASL_SSL
        return {
            "broker_credentials": OAuthCredentials(
                oauth_cb=msk_token_provider(s), ssl_context=context
            )
        }
    # Settings ensures both are set for SASL with a user name and password
    creds: SASLCredentials
    if s.kafka_sasl_mechanism == "PLAIN":
        creds = faust.SASLCredentials(
            username=s.kafka_sasl_username, password=s.kafka_sasl_password, ssl_context=context
        )
    else:
        creds = SASLCredentials(
            username=s.kafka_sasl_username,
            password=s.kafka_sasl_password,
            mechanism=s.kafka_sasl_mechanism,
            ssl_context=context,
        )
    return {"broker_credentials": creds}


def client_kwargs(s: Settings) -> dict[str, Any]:
    """The same security settings as aiokafka client keyword arguments (``security_protocol``,
    ``ssl_context``, ``sasl_*``): for the admin client used at start (app.bootstrap), the
    output's admin client, the cluster view (app/cluster_view.py) and the CLI's consumer/producer.
    ``{}`` for PLAINTEXT."""
    if s.kafka_security_protocol == "PLAINTEXT":
        return {}
    auth: dict[str, Any] = {"security_protocol": s.kafka_security_protocol}
    if s.kafka_security_protocol.endswith("SSL"):
        auth["ssl_context"] = ssl.create_default_context()
    if s.kafka_sasl_mechanism == "AWS_MSK_IAM":
        auth.update(sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=msk_token_provider(s))
    elif s.kafka_security_protocol.startswith("SASL"):
        auth.update(
            sasl_mechanism=s.kafka_sasl_mechanism,
            sasl_plain_username=s.kafka_sasl_username,
            sasl_plain_password=s.kafka_sasl_password,
        )
    return auth
