"""KAFKA_RECORD_FORMAT=avro|json_schema: records in the Confluent wire format, with their
schemas registered in a Confluent-compatible Schema Registry (TopicNameStrategy).

The encoder still produces the JSON of KAFKA_RECORD_FORMAT=json; :class:`RecordSerializer`
turns a batch of those (key, value) pairs into framed records just before the send
(app/output.py).  Avro is written by fastavro from the value's datum
(app/domain/schemas.py); JSON Schema records carry the JSON itself.

Each topic's key and value schemas are registered once (``POST
/subjects/<subject>/versions`` answers the existing id for a schema already there) and the
ids cached for the life of the worker.  A registry that does not answer raises
:class:`SchemaRegistryUnavailable` (retriable: the batch waits, the runner retries it with
backoff); a refusal (409 incompatible, 422 invalid, 401/403) raises
:class:`SchemaRegistryRefused`, which stops the table with the registry's reason.

Why a small aiohttp client rather than confluent-kafka's ``schema_registry``: that client
is synchronous (it would block the event loop that runs every shard) and brings
librdkafka along for two REST calls; aiohttp is already here (Faust's web server).
"""

from __future__ import annotations

import asyncio
import io
import logging
import ssl
import time
from collections.abc import Sequence
from typing import Any, Literal

import aiohttp
import fastavro
import orjson

from app.domain import schemas
from app.domain.errors import SchemaRegistryRefused, SchemaRegistryUnavailable
from app.settings import mask_url

log = logging.getLogger(__name__)
Message = tuple[bytes, bytes | None]
SchemaType = Literal["AVRO", "JSON"]
_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_RETRIABLE_STATUS = frozenset((408, 429))


class RegistryClient:
    """The two calls the worker makes, on one pooled aiohttp session."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Accept": _CONTENT_TYPE, "Content-Type": _CONTENT_TYPE}
        if username:  # never logged: only this header carries the password
            self._headers["Authorization"] = aiohttp.encode_basic_auth(username, password or "")
        self._ssl: ssl.SSLContext | None = None
        if url.startswith("https://") and (ca_file or cert_file):
            self._ssl = ssl.create_default_context(cafile=ca_file)
            if cert_file:
                self._ssl.load_cert_chain(cert_file, key_file)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def register(self, subject: str, schema: str, schema_type: SchemaType) -> int:
        """The id of ``schema`` under ``subject`` (registered if new)."""
        body: dict[str, Any] = {"schema": schema}
        if schema_type != "AVRO":
            body["schemaType"] = schema_type
        where = f"schema registry {self.url}: subject {subject}"
        try:
            async with self._client().post(
                f"{self.url}/subjects/{subject}/versions", json=body, ssl=self._ssl or True
            ) as resp:
                text = await resp.text()
                if resp.status == 200:
                    return int((await resp.json(content_type=None))["id"])
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SchemaRegistryUnavailable(
                f"{where}: no answer ({type(exc).__name__}: {exc})"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise SchemaRegistryUnavailable(f"{where}: unreadable answer ({exc})") from None
        reason = _reason(text)
        if resp.status >= 500 or resp.status in _RETRIABLE_STATUS:
            raise SchemaRegistryUnavailable(f"{where}: HTTP {resp.status} {reason}")
        if resp.status == 409:
            raise SchemaRegistryRefused(
                f"{where}: the {schema_type} schema is incompatible with the subject's "
                f"registered versions under its compatibility rule (HTTP 409: {reason})"
            )
        raise SchemaRegistryRefused(f"{where}: HTTP {resp.status} {reason}")


def _reason(text: str) -> str:
    return " ".join(text.split())[:500]


class RecordSerializer:
    """(key JSON, value JSON) -> Confluent-framed records for one output format."""

    def __init__(
        self,
        client: RegistryClient,
        record_format: Literal["avro", "json_schema"],
        output_format: Literal["native", "seed"],
    ) -> None:
        self.client = client
        self.record_format = record_format
        self.output_format = output_format
        # topic -> (key id, value id, key schema parsed by fastavro or None)
        self._ids: dict[str, tuple[int, int, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._error: str | None = None  # the last registration failure, until one works
        self._error_since_ms: int | None = None
        self._value_avro = fastavro.parse_schema(
            schemas.SEED_VALUE_AVRO if output_format == "seed" else schemas.NATIVE_VALUE_AVRO
        )

    def _schemas(self, topic: str, first_key: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.record_format == "json_schema":
            if self.output_format == "seed":
                return schemas.SEED_KEY_JSON, schemas.SEED_VALUE_JSON
            return schemas.NATIVE_KEY_JSON, schemas.NATIVE_VALUE_JSON
        if self.output_format == "seed":
            attrs = schemas.seed_key_attributes(first_key)
            return schemas.seed_key_avro(topic, attrs), schemas.SEED_VALUE_AVRO
        return schemas.NATIVE_KEY_AVRO, schemas.NATIVE_VALUE_AVRO

    async def ids(self, topic: str, first_key: bytes) -> tuple[int, int, Any]:
        """The topic's (key id, value id, parsed key schema), registered on first use."""
        got = self._ids.get(topic)
        if got is not None:
            return got
        async with self._locks.setdefault(topic, asyncio.Lock()):
            got = self._ids.get(topic)
            if got is None:
                key_schema, value_schema = self._schemas(topic, first_key)
                kind: SchemaType = "AVRO" if self.record_format == "avro" else "JSON"
                try:
                    key_id = await self.client.register(
                        schemas.subject(topic, "key"), schemas.canonical(key_schema), kind
                    )
                    value_id = await self.client.register(
                        schemas.subject(topic, "value"), schemas.canonical(value_schema), kind
                    )
                except (SchemaRegistryUnavailable, SchemaRegistryRefused) as exc:
                    if self._error_since_ms is None:
                        self._error_since_ms = int(time.time() * 1000)
                    self._error = f"{type(exc).__name__}: {exc}"
                    raise
                self._error = self._error_since_ms = None
                parsed = fastavro.parse_schema(key_schema) if kind == "AVRO" else None
                got = self._ids[topic] = (key_id, value_id, parsed)
                log.info(
                    "%s: schemas registered in %s (%s): key id %d, value id %d",
                    topic,
                    self.client.url,
                    self.record_format,
                    key_id,
                    value_id,
                )
        return got

    def health(self) -> dict[str, Any]:
        """For the status page: the registry, the format, the topics whose schemas are
        registered, and the last registration failure while it lasts."""
        return {
            "url": mask_url(self.client.url),
            "format": self.record_format,
            "topics": sorted(self._ids),
            "ok": self._error is None,
            "error": self._error,
            "error_since_ms": self._error_since_ms,
        }

    async def serialize(self, topic: str, messages: Sequence[Message]) -> list[Message]:
        if not messages:
            return []
        key_id, value_id, key_avro = await self.ids(topic, messages[0][0])
        if self.record_format == "json_schema":
            return [
                (
                    schemas.frame(key_id, key),
                    None if value is None else schemas.frame(value_id, value),
                )
                for key, value in messages
            ]
        out: list[Message] = []
        seed = self.output_format == "seed"
        for key, value in messages:
            k = schemas.seed_avro_key(key) if seed else schemas.native_avro_key(key)
            v: bytes | None = None
            if value is not None:
                datum = schemas.seed_avro_value(value) if seed else schemas.native_avro_value(value)
                v = schemas.frame(value_id, _avro(self._value_avro, datum))
            out.append((schemas.frame(key_id, _avro(key_avro, k)), v))
        return out

    async def close(self) -> None:
        await self.client.close()


def _avro(schema: Any, datum: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, datum)
    return buf.getvalue()


def serializer_for(settings: Any) -> RecordSerializer | None:
    """The serializer KAFKA_RECORD_FORMAT asks for (None: plain JSON)."""
    if settings.kafka_record_format == "json":
        return None
    client = RegistryClient(
        settings.schema_registry_url,
        username=settings.schema_registry_username,
        password=settings.schema_registry_password,
        ca_file=settings.schema_registry_ca_file,
        cert_file=settings.schema_registry_cert_file,
        key_file=settings.schema_registry_key_file,
        timeout=settings.schema_registry_timeout,
    )
    return RecordSerializer(client, settings.kafka_record_format, settings.kafka_output_format)


def schema_text(
    output: Literal["native", "seed"],
    record_format: Literal["avro", "json_schema"],
    part: Literal["key", "value"],
    topic: str,
    key_attributes: Sequence[str] = (),
) -> str:
    """The schema the worker registers for ``topic`` (for a compatibility check)."""
    key = orjson.dumps({a: "" for a in key_attributes})
    serializer = RecordSerializer(RegistryClient("http://unused"), record_format, output)
    key_schema, value_schema = serializer._schemas(topic, key)
    return schemas.canonical(key_schema if part == "key" else value_schema)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m app.registry",
        description="Print the schema the replicator registers (KAFKA_RECORD_FORMAT).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("schema")
    p.add_argument("--output", choices=("native", "seed"), default="native")
    p.add_argument("--format", choices=("avro", "json_schema"), default="avro")
    p.add_argument("--part", choices=("key", "value"), default="value")
    p.add_argument("--topic", required=True)
    p.add_argument("--key-attributes", default="", help="comma-separated (seed keys)")
    args = parser.parse_args(argv)
    attrs = [a for a in args.key_attributes.split(",") if a]
    print(schema_text(args.output, args.format, args.part, args.topic, attrs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
