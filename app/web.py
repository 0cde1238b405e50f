"""Who may read the status page, /status.json and /metrics, and over what.

By default the worker serves on 127.0.0.1 without authentication (whoever can reach the
loopback interface is already on the machine).  ``WEB_AUTH_TOKEN`` makes every page but
``/healthz`` ask for it, as ``Authorization: Bearer <token>`` (Prometheus'
``authorization``/``bearer_token``) or as the password of HTTP Basic auth for the user
``WEB_AUTH_USER`` (a browser's login prompt).  ``WEB_TLS_CERT`` + ``WEB_TLS_KEY`` serve HTTPS.
``/healthz`` answers ``ok`` to anyone: a liveness probe that reveals nothing.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web

from app.domain.errors import ConfigError

OPEN_PATHS = frozenset({"/healthz"})
REALM = "dynamodb-replicator"


def authorized(header: str | None, user: str, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (Bearer, or Basic as
    ``user``'s password).  Comparisons take the same time whatever the mismatch."""
    if not header:
        return False
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return hmac.compare_digest(credentials.encode(), token.encode())
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        given_user, sep, given_password = decoded.partition(":")
        same_user = hmac.compare_digest(given_user.encode(), user.encode())
        same_password = hmac.compare_digest(given_password.encode(), token.encode())
        return bool(sep) and same_user and same_password
    return False


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(
    user: str, token: str
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """aiohttp middleware: 401 with a Basic/Bearer challenge unless :func:`authorized`."""

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or authorized(
            request.headers.get("Authorization"), user, token
        ):
            return await handler(request)
        return web.Response(
            status=401,
            text="authentication required (WEB_AUTH_TOKEN)\n",
            headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
        )

    return require_token


def ssl_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The server's TLS context from PEM files, or None (plain HTTP); ConfigError naming the
    setting when one is missing or they do not load."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        missing = "WEB_TLS_CERT" if cert is None else "WEB_TLS_KEY"
        raise ConfigError(
            missing,
            f"expected WEB_TLS_CERT and WEB_TLS_KEY together (PEM files); {missing} is unset",
        )
    for name, path in (("WEB_TLS_CERT", cert), ("WEB_TLS_KEY", key)):
        if not os.path.isfile(path):
            raise ConfigError(name, f"expected a readable PEM file; {path} does not exist")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:  # the key's text is never part of the message
        raise ConfigError(
            "WEB_TLS_CERT",
            f"expected a PEM certificate chain and its private "
            f"key (WEB_TLS_KEY); they do not load: "
            f"{type(exc).__name__}",
        ) from None
    return context


def is_loopback(bind: str) -> bool:
    """Whether the web server's bind address only reaches this machine."""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def exposure_warning(bind: str, token: str | None, tls: bool) -> str | None:
    """What the startup log says when the pages are reachable from other machines
    without authentication or encryption; None when nothing is."""
    if is_loopback(bind):
        return None
    if token is None:
        return (
            f"the status page, /status.json and /metrics are served on {bind} WITHOUT "
            "authentication: anyone who reaches this port reads the table names, unit ids "
            "and errors (set WEB_AUTH_TOKEN, or keep --web-bind on 127.0.0.1 behind a "
            "reverse proxy)"
        )
    if not tls:
        return (
            f"the status pages are served on {bind} over plain HTTP: WEB_AUTH_TOKEN "
            "crosses the network in clear (set WEB_TLS_CERT/WEB_TLS_KEY or terminate TLS "
            "in a reverse proxy)"
        )
    return None
