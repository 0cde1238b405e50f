"""All configuration, read once from the environment into a frozen :class:`Settings`.

Each field names its variable(s) and a parser in its metadata; :meth:`Settings.from_env`
parses the raw text (the documented default when unset) and turns a parser's ValueError into
``ConfigError(VARIABLE, "expected ...; got '...'")``.  A variable set to an empty or blank
string counts as unset, except where empty is itself meaningful (``empty_ok``: topic
prefix, tag filters, table lists).  Secret fields never show their value in errors,
``repr`` or :meth:`Settings.masked`.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, cast, get_args
from urllib.parse import urlsplit

from app.domain.coordinator import Policy
from app.domain.deployment import DEFAULT_STATE_PARTITIONS, IDENTITY
from app.domain.discovery import (
    APP_ID_MAX,
    EXCLUDE_PATTERN_MAX,
    KAFKA_TOPIC_MAX,
    ExcludePattern,
    TagFilter,
    parse_tag_filters,
    render_tag_filters,
)
from app.domain.errors import ConfigError
from app.domain.limits import STATE_MAX_MESSAGE_BYTES

SyncMode = Literal["snapshot_and_stream", "stream_only", "snapshot_only"]
StreamStart = Literal["trim_horizon", "latest"]
OutputFormat = Literal["native", "seed"]
RecordFormat = Literal["json", "avro", "json_schema"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "AWS_MSK_IAM"]
LogLevel = Literal["debug", "info", "warning", "error"]
StateStore = Literal["rocksdb://", "memory://"]

_NAME = re.compile(r"[A-Za-z0-9._-]+")
_TABLE = re.compile(r"[A-Za-z0-9._-]{3,255}")
_TOPIC_MAX = KAFKA_TOPIC_MAX
_SERVICES = {
    "dynamodb": "aws_endpoint_url_dynamodb",
    "dynamodbstreams": "aws_endpoint_url_dynamodb_streams",
    "resourcegroupstaggingapi": "aws_endpoint_url_resource_groups_tagging_api",
    "sts": "aws_endpoint_url_sts",
}
# IAM role ARN: partition aws / aws-cn / aws-us-gov / ..., 12-digit account, optional path.
_ROLE_ARN = re.compile(r"arn:aws[-a-z]*:iam::\d{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}")
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")  # STS RoleSessionName
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")  # STS ExternalId


# ---- parsers: raw text -> value; ValueError says what is accepted ------------------------


class _Hidden(ValueError):
    """A parser error whose raw value must not be echoed."""


def _int(lo: int, hi: int) -> Callable[[str], int]:
    accepted = f"an integer from {lo} to {hi}"

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:  # also past Python's 4300 digits
            raise ValueError(accepted) from None
        if not lo <= value <= hi:
            raise ValueError(accepted)
        return value

    return parse


def _float(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str], float]:
    accepted = f"a number {'>' if lo_open else '>='} {lo:g} and <= {hi:g}"

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (value > lo if lo_open else value >= lo) and value <= hi):
            raise ValueError(accepted)
        return value

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in options:
            raise ValueError(f"one of {', '.join(options)}")
        return raw.lower()

    return parse


def _security_protocol(raw: str) -> SecurityProtocol:
    options = (p.lower() for p in get_args(SecurityProtocol))
    return cast(SecurityProtocol, _choice(*options)(raw).upper())


def _sasl_mechanism(raw: str) -> SaslMechanism:
    options = (m.lower() for m in get_args(SaslMechanism))
    return cast(SaslMechanism, _choice(*options)(raw).upper())


def _log_level(raw: str) -> LogLevel:
    return cast(LogLevel, _choice(*get_args(LogLevel))(raw))


def _state_store(raw: str) -> StateStore:
    return cast(StateStore, _choice(*get_args(StateStore))(raw))


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _bool(raw: str) -> bool:
    if raw.lower() not in _TRUE | _FALSE:
        raise ValueError("true/false, 1/0, yes/no or on/off")
    return raw.lower() in _TRUE


def _app_id(raw: str) -> str:
    if not _NAME.fullmatch(raw) or len(raw) > APP_ID_MAX:
        raise ValueError(
            f"1-{APP_ID_MAX} letters, digits, '.', '_' or '-' (the longest topic "
            f"named after it, <APP_ID>-__assignor-__leader, must fit Kafka's "
            f"{KAFKA_TOPIC_MAX} characters)"
        )
    return raw


def _topic_prefix(raw: str) -> str:
    if (raw and not _NAME.fullmatch(raw)) or len(raw) > _TOPIC_MAX - 3:
        raise ValueError(f"up to {_TOPIC_MAX - 3} letters, digits, '.', '_' or '-'")
    return raw


def _brokers(raw: str) -> tuple[str, ...]:
    accepted = "comma-separated kafka://host[:port] or host:port entries"
    urls = []
    for entry in filter(None, (e.strip() for e in raw.split(","))):
        if "@" in entry:  # may carry credentials: never echo it
            raise _Hidden(f"{accepted} without user:password@ (use KAFKA_SASL_PASSWORD)")
        has_scheme = "://" in entry
        url = entry if has_scheme else f"kafka://{entry}"
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:  # not a number, or out of range
            raise ValueError(accepted) from None
        if (
            parts.scheme != "kafka"
            or not parts.hostname
            or port == 0
            or (not has_scheme and port is None)
            or parts.path.strip("/")
            or parts.query
            or parts.fragment
        ):
            raise ValueError(accepted)
        urls.append(url.rstrip("/"))
    if not urls:
        raise ValueError(accepted)
    return tuple(urls)


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    try:
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # bad port
        ok = False
    if not ok:
        if "@" in raw:  # may carry credentials: never echo it
            raise _Hidden("an http:// or https:// URL")
        raise ValueError("an http:// or https:// URL")
    return raw


def _registry_url(raw: str) -> str:
    if "@" in urlsplit(raw).netloc:  # credentials: never echo them
        raise _Hidden(
            "an http:// or https:// URL without user:password@ "
            "(use SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD)"
        )
    return _http_url(raw).rstrip("/")


def mask_url(text: str) -> str:
    """``scheme://user:password@host…`` -> ``scheme://***@host…`` (other text unchanged)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    netloc, slash, path = rest.partition("/")
    if "@" not in netloc:
        return text
    return f"{scheme}://***@{netloc.rsplit('@', 1)[1]}{slash}{path}"


def _region(raw: str) -> str:
    if not re.fullmatch(r"[a-z0-9-]+", raw):
        raise ValueError("an AWS region name such as eu-west-1")
    return raw


def _tag_filters(raw: str) -> tuple[TagFilter, ...]:
    try:
        return parse_tag_filters(raw)
    except ValueError as exc:
        raise ValueError(f"tag filters as key[:value,...][;key[:value,...]] ({exc})") from None


TABLES_MAX = 10_000  # DynamoDB's tables per account and region, at the raised quota


def _tables(raw: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
    if len(names) > TABLES_MAX:
        raise ValueError(f"at most {TABLES_MAX:,} comma-separated table names")
    for name in names:
        if not _TABLE.fullmatch(name):
            raise ValueError(f"comma-separated table names (3-255 of A-Za-z0-9._-), not {name!r}")
    return names


def _exclude(raw: str) -> ExcludePattern | None:
    if not raw:
        return None
    if len(raw) > EXCLUDE_PATTERN_MAX:
        raise ValueError(f"a regular expression of up to {EXCLUDE_PATTERN_MAX} characters")
    try:
        pattern = ExcludePattern(raw)
    except ValueError as exc:
        raise ValueError(f"a regular expression in Python re syntax ({exc})") from None
    slow = pattern.undecided_probe()
    if slow is not None:  # it would refuse tables at random, or hold discovery
        raise ValueError(
            f"a regular expression that decides within {pattern.probe_timeout * 1000:g} ms "
            f"whether it matches a table name; this one does not on {slow[:6]}… "
            f"({len(slow)} characters): nested quantifiers such as (a+)+ backtrack "
            "exponentially"
        )
    return pattern


def _role_arn(raw: str) -> str:
    if not _ROLE_ARN.fullmatch(raw) or len(raw) > 2048:
        raise ValueError("an IAM role ARN such as arn:aws:iam::123456789012:role/path/name")
    return raw


def _session_name(raw: str) -> str:
    if not _SESSION_NAME.fullmatch(raw):
        raise ValueError("2-64 letters, digits or any of _+=,.@-")
    return raw


def _external_id(raw: str) -> str:
    if not _EXTERNAL_ID.fullmatch(raw):
        raise ValueError("2-1224 letters, digits or any of _+=,.@:/-")
    return raw


def _kafka_name(topic: str) -> str:
    """Kafka treats '.' and '_' in topic names as the same character (metric names)."""
    return topic.replace(".", "_")


def _username(raw: str) -> str:
    if len(raw) > 1024 or any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise ValueError("a user name of up to 1024 characters without control characters")
    return raw


def _password(raw: str) -> str:
    if len(raw) > 1024 or any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise ValueError(
            "a password of up to 1024 characters without control characters such as a newline"
        )
    return raw


_TOKEN = re.compile(r"[\x21-\x7e]{16,256}")  # visible ASCII: an HTTP header value as is
_WEB_USER = re.compile(r"[A-Za-z0-9._@-]{1,64}")


def _token(raw: str) -> str:
    if not _TOKEN.fullmatch(raw):
        raise ValueError(
            "16 to 256 visible ASCII characters without spaces (e.g. `openssl rand -hex 32`)"
        )
    return raw


def _web_user(raw: str) -> str:
    if not _WEB_USER.fullmatch(raw):
        raise ValueError("1 to 64 letters, digits, '.', '_', '@' or '-'")
    return raw


def _path(raw: str) -> str:
    if any(ord(c) < 32 for c in raw):
        raise ValueError("a file path")
    return raw


def _env(
    env: str | tuple[str, ...],
    default: str | None,
    parse: Callable[[str], Any],
    *,
    empty_ok: bool = False,
    secret: bool = False,
) -> dict[str, Any]:
    """Field metadata: variable name(s) (first set wins), raw default, parser, flags."""
    envs = (env,) if isinstance(env, str) else env
    return {"env": envs, "default": default, "parse": parse, "empty_ok": empty_ok, "secret": secret}


# ---- the settings --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    broker_url: tuple[str, ...] = field(
        metadata=_env("BROKER_URL", "kafka://localhost:9092", _brokers)
    )
    app_id: str = field(metadata=_env("APP_ID", "dynamodb-replicator", _app_id))
    aws_region: str = field(
        metadata=_env(("AWS_REGION", "AWS_DEFAULT_REGION"), "us-east-1", _region)
    )
    aws_endpoint_url: str | None = field(metadata=_env("AWS_ENDPOINT_URL", None, _http_url))
    aws_endpoint_url_dynamodb: str | None = field(
        metadata=_env("AWS_ENDPOINT_URL_DYNAMODB", None, _http_url)
    )
    aws_endpoint_url_dynamodb_streams: str | None = field(
        metadata=_env("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", None, _http_url)
    )
    aws_endpoint_url_resource_groups_tagging_api: str | None = field(
        metadata=_env("AWS_ENDPOINT_URL_RESOURCE_GROUPS_TAGGING_API", None, _http_url)
    )
    aws_endpoint_url_sts: str | None = field(metadata=_env("AWS_ENDPOINT_URL_STS", None, _http_url))
    # Cross-account tables: credentials from sts:AssumeRole, refreshed before they expire.
    aws_role_arn: str | None = field(metadata=_env("AWS_ROLE_ARN", None, _role_arn))
    aws_role_session_name: str = field(
        metadata=_env("AWS_ROLE_SESSION_NAME", "dynamodb-replicator", _session_name)
    )
    aws_role_external_id: str | None = field(
        repr=False, metadata=_env("AWS_ROLE_EXTERNAL_ID", None, _external_id, secret=True)
    )
    aws_role_duration: int = field(  # seconds; STS allows 900 up to the role's maximum
        metadata=_env("AWS_ROLE_DURATION", "3600", _int(900, 43200))
    )
    # <= 15 min: a shard iterator expires by then anyway
    aws_read_timeout: float = field(metadata=_env("AWS_READ_TIMEOUT", "60", _float(1, 900)))
    dynamodb_tag_filters: tuple[TagFilter, ...] = field(
        metadata=_env("DYNAMODB_TAG_FILTERS", "datalake-ingest", _tag_filters, empty_ok=True)
    )
    dynamodb_tables: tuple[str, ...] = field(
        metadata=_env("DYNAMODB_TABLES", "", _tables, empty_ok=True)
    )
    # A table is excluded when the pattern matches anywhere in its name (re.search); each
    # search is bounded (app.domain.discovery.ExcludePattern).
    dynamodb_tables_exclude: ExcludePattern | None = field(
        metadata=_env("DYNAMODB_TABLES_EXCLUDE", "", _exclude, empty_ok=True)
    )
    dynamodb_discovery_interval: float = field(
        metadata=_env("DYNAMODB_DISCOVERY_INTERVAL", "60", _float(1, 86400))
    )
    dynamodb_sync_mode: SyncMode = field(
        metadata=_env(
            "DYNAMODB_SYNC_MODE",
            "snapshot_and_stream",
            _choice("snapshot_and_stream", "stream_only", "snapshot_only"),
        )
    )
    dynamodb_stream_start: StreamStart = field(
        metadata=_env("DYNAMODB_STREAM_START", "trim_horizon", _choice("trim_horizon", "latest"))
    )
    dynamodb_scan_segments: int = field(  # 0 = auto, see segments.plan_segments
        metadata=_env("DYNAMODB_SCAN_SEGMENTS", "0", _int(0, 1_000_000))
    )
    dynamodb_scan_rcu_percent: float = field(
        metadata=_env("DYNAMODB_SCAN_RCU_PERCENT", "50", _float(0, 100, lo_open=True))
    )
    dynamodb_scan_max_rcu: float = field(  # on-demand tables; 0 = no cap
        metadata=_env("DYNAMODB_SCAN_MAX_RCU", "0", _float(0, 1_000_000))
    )
    dynamodb_scan_page_limit: int = field(  # 0 = no Limit (1 MB pages)
        metadata=_env("DYNAMODB_SCAN_PAGE_LIMIT", "0", _int(0, 1_000_000))
    )
    dynamodb_shard_refresh_interval: float = field(
        metadata=_env("DYNAMODB_SHARD_REFRESH_INTERVAL", "30", _float(1, 3600))
    )
    dynamodb_poll_interval: float = field(
        metadata=_env("DYNAMODB_POLL_INTERVAL", "1.0", _float(0, 60))
    )
    # GetRecords and Scan signed and sent over aiohttp, bodies parsed with orjson
    # (app.aws.raw, app.domain.wire); false: through aiobotocore like the other calls
    dynamodb_raw_http: bool = field(metadata=_env("DYNAMODB_RAW_HTTP", "true", _bool))
    # >= 1 s: ApproximateCreationDateTime is rounded down to the second
    dynamodb_snapshot_overlap: float = field(
        metadata=_env("DYNAMODB_SNAPSHOT_OVERLAP", "60", _float(1, 3600))
    )
    # While a table is scanned, its stream is read into a buffer topic and replayed after
    # the scan (a snapshot may take any time); false: the stream is read after the scan,
    # which must then end within the stream's retention
    dynamodb_snapshot_buffer: bool = field(metadata=_env("DYNAMODB_SNAPSHOT_BUFFER", "true", _bool))
    # How long the table's stream keeps records (DynamoDB Streams: 24 h).  A position
    # older than this minus 1/24 is never resumed from: the table re-snapshots, loudly.
    # Lower it only to test (it compresses time); never above what AWS keeps.
    dynamodb_stream_retention: float = field(
        metadata=_env("DYNAMODB_STREAM_RETENTION", "86400", _float(24, 86400))
    )
    kafka_topic_prefix: str = field(
        metadata=_env("KAFKA_TOPIC_PREFIX", "dynamodb-", _topic_prefix, empty_ok=True)
    )
    kafka_topic_partitions: int = field(
        metadata=_env("KAFKA_TOPIC_PARTITIONS", "8", _int(1, 10_000))
    )
    # output topics and the internal ones (control, changelogs) alike
    kafka_topic_replication: int = field(metadata=_env("KAFKA_TOPIC_REPLICATION", "1", _int(1, 16)))
    kafka_output_format: OutputFormat = field(
        metadata=_env("KAFKA_OUTPUT_FORMAT", "native", _choice("native", "seed"))
    )
    kafka_tombstones: bool = field(metadata=_env("KAFKA_TOMBSTONES", "true", _bool))
    # How records are serialized: the plain JSON bytes, or Avro / JSON Schema in the
    # Confluent wire format with schemas in a Schema Registry (app/registry.py)
    kafka_record_format: RecordFormat = field(
        metadata=_env("KAFKA_RECORD_FORMAT", "json", _choice("json", "avro", "json_schema"))
    )
    schema_registry_url: str | None = field(
        metadata=_env("SCHEMA_REGISTRY_URL", None, _registry_url)
    )
    schema_registry_username: str | None = field(
        metadata=_env("SCHEMA_REGISTRY_USERNAME", None, _username)
    )
    schema_registry_password: str | None = field(
        repr=False, metadata=_env("SCHEMA_REGISTRY_PASSWORD", None, _password, secret=True)
    )
    schema_registry_ca_file: str | None = field(
        metadata=_env("SCHEMA_REGISTRY_CA_FILE", None, _path)
    )
    schema_registry_cert_file: str | None = field(
        metadata=_env("SCHEMA_REGISTRY_CERT_FILE", None, _path)
    )
    schema_registry_key_file: str | None = field(
        metadata=_env("SCHEMA_REGISTRY_KEY_FILE", None, _path)
    )
    schema_registry_timeout: float = field(
        metadata=_env("SCHEMA_REGISTRY_TIMEOUT", "10", _float(1, 300))
    )
    # What a dead-letter record holds besides table, place, error and the item's keys:
    # "event" = the event (or the item as received) to fix and replay; "keys" = nothing more
    kafka_dlq_content: str = field(
        metadata=_env("KAFKA_DLQ_CONTENT", "event", _choice("event", "keys"))
    )
    kafka_max_record_bytes: int = field(
        metadata=_env("KAFKA_MAX_RECORD_BYTES", "8388608", _int(1024, STATE_MAX_MESSAGE_BYTES))
    )
    # Every send to Kafka must be acknowledged within this many seconds, else it is sent
    # again (also the producer's request timeout and how long a batch may wait for a leader)
    kafka_send_timeout: float = field(metadata=_env("KAFKA_SEND_TIMEOUT", "30", _float(1, 900)))
    kafka_security_protocol: SecurityProtocol = field(
        metadata=_env("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", _security_protocol)
    )
    # with SASL_* and a mechanism other than AWS_MSK_IAM: KAFKA_SASL_USERNAME and
    # KAFKA_SASL_PASSWORD are required (from_env)
    kafka_sasl_mechanism: SaslMechanism = field(
        metadata=_env("KAFKA_SASL_MECHANISM", "PLAIN", _sasl_mechanism)
    )
    kafka_sasl_username: str | None = field(metadata=_env("KAFKA_SASL_USERNAME", None, _username))
    kafka_sasl_password: str | None = field(
        repr=False, metadata=_env("KAFKA_SASL_PASSWORD", None, _password, secret=True)
    )
    # Amazon MSK IAM (KAFKA_SASL_MECHANISM=AWS_MSK_IAM): the region the cluster is in (default
    # AWS_REGION) and an optional role to sign with.  Kafka auth does NOT use AWS_ROLE_ARN (the
    # tables' role, often in another account): MSK is usually in the worker's own account.
    kafka_msk_iam_region: str | None = field(metadata=_env("KAFKA_MSK_IAM_REGION", None, _region))
    kafka_msk_iam_role_arn: str | None = field(
        metadata=_env("KAFKA_MSK_IAM_ROLE_ARN", None, _role_arn)
    )
    # How soon a killed worker's work moves on; within the brokers' defaults of
    # group.min.session.timeout.ms (6 s) and group.max.session.timeout.ms (30 min).
    kafka_session_timeout: float = field(
        metadata=_env("KAFKA_SESSION_TIMEOUT", "30", _float(6, 1800))
    )
    # How many AWS pages (GetRecords / Scan) one worker holds at once, from the request
    # until Kafka acknowledged their events: bounds memory, whatever the shard count.
    worker_max_pages: int = field(metadata=_env("WORKER_MAX_PAGES", "16", _int(1, 10_000)))
    # the control topic's and state tables' partitions: the most workers that get work;
    # fixed after the first start (app.domain.deployment says what to set when it differs)
    state_partitions: int = field(
        metadata=_env("STATE_PARTITIONS", str(DEFAULT_STATE_PARTITIONS), _int(1, 1024))
    )
    state_store: StateStore = field(metadata=_env("STATE_STORE", "rocksdb://", _state_store))
    log_level: LogLevel = field(metadata=_env("LOG_LEVEL", "info", _log_level))
    log_format: str = field(metadata=_env("LOG_FORMAT", "text", _choice("text", "json")))
    # The status page, /status.json and /metrics (app/web.py): served on 127.0.0.1 unless
    # `--web-bind` says otherwise; with a token every page but /healthz asks for it (Bearer,
    # or Basic auth as WEB_AUTH_USER); with a certificate and key they are served over HTTPS.
    web_auth_token: str | None = field(
        repr=False, metadata=_env("WEB_AUTH_TOKEN", None, _token, secret=True)
    )
    web_auth_user: str = field(metadata=_env("WEB_AUTH_USER", "replicator", _web_user))
    web_tls_cert: str | None = field(metadata=_env("WEB_TLS_CERT", None, _path))
    web_tls_key: str | None = field(metadata=_env("WEB_TLS_KEY", None, _path))
    # INIT_SYNC progress (% done, rate, ETA) is logged by the leader at this interval.
    progress_log_interval: float = field(
        metadata=_env("PROGRESS_LOG_INTERVAL", "30", _float(1, 86400))
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Parse every setting from ``env`` (default ``os.environ``); raise ConfigError."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            meta = f.metadata
            name, raw = meta["env"][0], meta["default"]
            for candidate in meta["env"]:
                given = env.get(candidate)
                if given is not None and (meta["empty_ok"] or given.strip()):
                    name, raw = candidate, given if meta["secret"] else given.strip()
                    break
            if raw is None:
                values[f.name] = None
                continue
            try:
                values[f.name] = meta["parse"](raw)
            except _Hidden as exc:
                raise ConfigError(name, f"expected {exc}; the given value is not shown") from None
            except ValueError as exc:
                shown = "the given value is not shown" if meta["secret"] else f"got {raw!r}"
                raise ConfigError(name, f"expected {exc}; {shown}") from None
        if _kafka_name(values["kafka_topic_prefix"]).startswith(
            _kafka_name(values["app_id"]) + "-"
        ):
            # Output topics inside the app's own namespace: a table could be named like a
            # state topic, and no ACL on "<APP_ID>-" could tell state from output apart.
            raise ConfigError(
                "KAFKA_TOPIC_PREFIX",
                "expected a prefix outside the app's own "
                f"topics ({values['app_id']}-…); got "
                f"{values['kafka_topic_prefix']!r}",
            )
        if values["aws_role_external_id"] is not None and values["aws_role_arn"] is None:
            raise ConfigError(
                "AWS_ROLE_EXTERNAL_ID",
                "expected only together with AWS_ROLE_ARN "
                "(the role to assume); AWS_ROLE_ARN is unset",
            )
        if values["kafka_sasl_mechanism"] == "AWS_MSK_IAM":
            if values["kafka_security_protocol"] != "SASL_SSL":
                raise ConfigError(
                    "KAFKA_SASL_MECHANISM",
                    "expected AWS_MSK_IAM only with "
                    "KAFKA_SECURITY_PROTOCOL=SASL_SSL (MSK IAM listens on TLS, port 9098); "
                    f"KAFKA_SECURITY_PROTOCOL is {values['kafka_security_protocol']}",
                )
        else:
            for name in ("KAFKA_MSK_IAM_REGION", "KAFKA_MSK_IAM_ROLE_ARN"):
                if values[name.lower()] is not None:
                    raise ConfigError(
                        name,
                        "expected only together with "
                        "KAFKA_SASL_MECHANISM=AWS_MSK_IAM; it is "
                        f"{values['kafka_sasl_mechanism']}",
                    )
            if values["kafka_security_protocol"].startswith("SASL_"):
                # PLAIN / SCRAM: a user name and password (the password is never shown)
                for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
                    if not values[name.lower()]:
                        raise ConfigError(
                            name,
                            "required when KAFKA_SECURITY_PROTOCOL="
                            f"{values['kafka_security_protocol']} and KAFKA_SASL_MECHANISM="
                            f"{values['kafka_sasl_mechanism']}; it is unset",
                        )
        _check_registry(values)
        return cls(**values)

    def endpoint_for(self, service: str) -> str | None:
        """Endpoint override for ``dynamodb``, ``dynamodbstreams``,
        ``resourcegroupstaggingapi`` or ``sts``: the service's own variable, else
        AWS_ENDPOINT_URL."""
        try:
            specific = getattr(self, _SERVICES[service])
        except KeyError:
            raise ValueError(f"unknown service {service!r}; one of {sorted(_SERVICES)}") from None
        return specific or self.aws_endpoint_url

    @property
    def msk_iam_region(self) -> str:
        """Region of the MSK cluster: KAFKA_MSK_IAM_REGION, else AWS_REGION."""
        return self.kafka_msk_iam_region or self.aws_region

    def bootstrap_servers(self) -> list[str]:
        """BROKER_URL as ``host:port`` pairs, for plain aiokafka clients."""
        return [u.removeprefix("kafka://") for u in self.broker_url]

    def topic_for(self, table: str) -> str:
        """The output topic of ``table``: KAFKA_TOPIC_PREFIX + table name."""
        topic = self.kafka_topic_prefix + table
        if not _TABLE.fullmatch(table) or len(topic) > _TOPIC_MAX:
            raise ValueError(f"table {table!r} gives no valid Kafka topic name ({topic!r})")
        return topic

    def policy(self) -> Policy:
        """How the coordinator snapshots tables and spreads their work (its pure input)."""
        return Policy(
            mode=self.dynamodb_sync_mode,
            stream_start=self.dynamodb_stream_start,
            overlap_ms=int(self.dynamodb_snapshot_overlap * 1000),
            segments=self.dynamodb_scan_segments,
            rcu_percent=self.dynamodb_scan_rcu_percent,
            max_rcu=self.dynamodb_scan_max_rcu,
            retention_ms=int(self.dynamodb_stream_retention * 1000),
            buffer_partitions=self.kafka_topic_partitions if self.dynamodb_snapshot_buffer else 0,
        )

    def buffer_topic_for(self, table: str, epoch: int) -> str:
        """The buffer topic of ``table``'s snapshot in ``epoch`` (app.buffer); a table name
        too long for it is replaced by its digest."""
        topic = f"{self.app_id}-buffer-{table}-{epoch}"
        if len(topic) <= _TOPIC_MAX:
            return topic
        digest = hashlib.sha256(table.encode()).hexdigest()[:32]
        return f"{self.app_id}-buffer-{digest}-{epoch}"

    def masked(self) -> dict[str, str]:
        """Every setting as text for the startup log; secrets shown as '***' when set, and
        credentials inside URLs too."""
        return {f.name: _show(getattr(self, f.name), f.metadata["secret"]) for f in fields(self)}

    def identity(self) -> dict[str, str]:
        """The settings that make a deployment (app.domain.deployment.IDENTITY), by
        variable name, shown as in :meth:`masked`."""
        shown = self.masked()
        by_env = {f.metadata["env"][0]: shown[f.name] for f in fields(self)}
        return {name: by_env[name] for name in IDENTITY}

    def __repr__(self) -> str:  # the dataclass repr would show URL credentials
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self.masked().items())})"


_REGISTRY_SETTINGS = (
    "SCHEMA_REGISTRY_URL",
    "SCHEMA_REGISTRY_USERNAME",
    "SCHEMA_REGISTRY_PASSWORD",
    "SCHEMA_REGISTRY_CA_FILE",
    "SCHEMA_REGISTRY_CERT_FILE",
    "SCHEMA_REGISTRY_KEY_FILE",
)


def _check_registry(values: dict[str, Any]) -> None:
    """KAFKA_RECORD_FORMAT and the SCHEMA_REGISTRY_* settings that go with it."""
    fmt = values["kafka_record_format"]
    if fmt == "json":
        for name in _REGISTRY_SETTINGS:
            if values[name.lower()] is not None:
                raise ConfigError(
                    name,
                    "expected only together with KAFKA_RECORD_FORMAT=avro or json_schema "
                    "(records with registered schemas); KAFKA_RECORD_FORMAT is json",
                )
        return
    if values["schema_registry_url"] is None:
        raise ConfigError(
            "SCHEMA_REGISTRY_URL",
            f"required when KAFKA_RECORD_FORMAT={fmt} (the Schema Registry the schemas "
            "are registered in); it is unset",
        )
    pairs = (
        ("SCHEMA_REGISTRY_USERNAME", "SCHEMA_REGISTRY_PASSWORD"),
        ("SCHEMA_REGISTRY_CERT_FILE", "SCHEMA_REGISTRY_KEY_FILE"),
    )
    for a, b in pairs:
        for given, missing in ((a, b), (b, a)):
            if values[given.lower()] is not None and values[missing.lower()] is None:
                raise ConfigError(missing, f"required together with {given}; it is unset")
    if not values["schema_registry_url"].startswith("https://"):
        for name in ("SCHEMA_REGISTRY_CA_FILE", "SCHEMA_REGISTRY_CERT_FILE"):
            if values[name.lower()] is not None:
                raise ConfigError(
                    name,
                    "expected only with an https:// SCHEMA_REGISTRY_URL; it is http://",
                )


def _show(value: object, secret: bool) -> str:
    if value is None:
        return ""
    if secret:
        return "***"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, ExcludePattern):
        return value.pattern
    if isinstance(value, tuple):
        if value and isinstance(value[0], TagFilter):
            return render_tag_filters(value)
        return ",".join(mask_url(str(v)) for v in value)
    return mask_url(str(value))
