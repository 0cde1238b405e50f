"""The two hot calls (Streams ``GetRecords``, DynamoDB ``Scan``) without botocore's parser.

botocore turns a 1000-record GetRecords body into Python objects by walking the service
model for every attribute (~2,500 records/s here); ``orjson.loads`` of the same bytes is
~10x cheaper, and the wire form is already the output form (``B`` as base64 text, ``N``
as digit strings).  So these two calls are POSTed here, JSON 1.0 protocol, each signed
with botocore's public SigV4 signer and the very credentials object the aiobotocore
client signs with (``AioSession.get_credentials`` caches it; refreshable assume-role
credentials are renewed by ``get_frozen_credentials`` before each request), over one
pooled aiohttp session, to the client's own endpoint (``client.meta.endpoint_url``:
``AWS_ENDPOINT_URL*`` keep working), with the client's timeouts.  The body comes back
as bytes; :mod:`app.domain.wire` makes domain objects of it.

Failures are raised as the botocore exceptions aiobotocore raises for the same
situation (``ClientError`` with the service's code, message and HTTP status,
``ReadTimeoutError``, ``ConnectTimeoutError``, ``EndpointConnectionError``), so
:func:`app.aws.errors.aws_call` maps both paths to the same app errors.  No credential
ever reaches a log line or an exception message."""

from __future__ import annotations

import logging
import os
import ssl
import zlib
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import (
    ChecksumError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.httpsession import where

log = logging.getLogger(__name__)

JSON_TYPE = "application/x-amz-json-1.0"
# JSON 1.0 X-Amz-Target prefixes of the two services (the IAM policy test reads these)
TARGETS = {"dynamodb": "DynamoDB_20120810", "dynamodbstreams": "DynamoDBStreams_20120810"}


def error_from_body(status: int, reason: str, body: bytes, operation: str) -> ClientError:
    """The ``ClientError`` botocore's JSON parser builds from an error response: the code
    is ``__type`` after its ``#`` (else the ``x-amzn-ErrorType`` header's, else the HTTP
    status), the message ``message`` or ``Message`` (else the reason phrase)."""
    import orjson

    code, message = "", ""
    try:
        doc = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        doc = {}
    if isinstance(doc, dict):
        code = str(doc.get("__type") or doc.get("code") or "").rpartition("#")[2]
        message = str(doc.get("message") or doc.get("Message") or "")
    return ClientError(
        {
            "Error": {"Code": code or str(status), "Message": message or reason},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


def ssl_context() -> ssl.SSLContext:
    """Certificates as botocore verifies them: AWS_CA_BUNDLE, else its bundle (certifi)."""
    return ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or where())


def http_session(
    *, connect_timeout: float, read_timeout: float, max_connections: int
) -> aiohttp.ClientSession:
    """The worker's one pooled session for the hot calls (closed by AwsClients.close)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=max_connections, ssl=ssl_context(), ttl_dns_cache=60, enable_cleanup_closed=True
        ),
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        ),
        trust_env=True,  # HTTPS_PROXY / NO_PROXY, as botocore honours them
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )


class RawJson:
    """Signed JSON 1.0 POSTs to one aiobotocore client's service endpoint.

    ``credentials``: what ``await session.get_credentials()`` returned for the session
    that made ``client`` (the same object the client signs with)."""

    def __init__(
        self, client: Any, credentials: Any, http: aiohttp.ClientSession, user_agent: str
    ) -> None:
        meta = client.meta
        self.endpoint_url: str = meta.endpoint_url
        # where botocore posts: the endpoint's own path, else "/"
        self.url = (
            self.endpoint_url if urlsplit(self.endpoint_url).path else self.endpoint_url + "/"
        )
        self.region: str = meta.region_name
        self.signing_name: str = meta.service_model.signing_name
        self.target_prefix = TARGETS[meta.service_model.service_name]
        self.credentials = credentials
        self.http = http
        self.user_agent = user_agent

    def _signed_headers(self, operation: str, body: bytes, frozen: Any) -> dict[str, str]:
        request = AWSRequest(
            method="POST",
            url=self.url,
            data=body,
            headers={
                "Content-Type": JSON_TYPE,
                "X-Amz-Target": f"{self.target_prefix}.{operation}",
                "User-Agent": self.user_agent,
                "Accept-Encoding": "identity",
            },
        )
        SigV4Auth(frozen, self.signing_name, self.region).add_auth(request)
        return dict(request.headers.items())

    async def call(self, operation: str, body: bytes) -> bytes:
        """POST ``body`` as ``operation``; the response body on HTTP 200, else raise as
        aiobotocore would."""
        if self.credentials is None:
            raise NoCredentialsError()
        frozen = await self.credentials.get_frozen_credentials()
        headers = self._signed_headers(operation, body, frozen)
        try:
            async with self.http.post(self.url, data=body, headers=headers) as resp:
                payload = await resp.read()
                status, reason = resp.status, resp.reason or ""
                crc = resp.headers.get("x-amz-crc32")
        except TimeoutError as exc:  # aiohttp.ServerTimeoutError is one
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise ConnectTimeoutError(endpoint_url=self.url, error=exc) from exc
            raise ReadTimeoutError(endpoint_url=self.url, error=exc) from exc
        except aiohttp.ClientConnectorError as exc:
            raise EndpointConnectionError(endpoint_url=self.url, error=exc) from exc
        if crc is not None and status == 200 and zlib.crc32(payload) != int(crc):
            raise ChecksumError(
                checksum_type="crc32", expected_checksum=crc, actual_checksum=zlib.crc32(payload)
            )
        if status != 200:
            raise error_from_body(status, reason, payload, operation)
        return payload
