"""app/registry.py's client and serializer against an in-process HTTP server that answers
as a registry does (the real one: tests/integration/test_schema_registry.py), and the
SCHEMA_REGISTRY_* settings."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from app.domain import schemas
from app.domain.errors import ConfigError, SchemaRegistryRefused, SchemaRegistryUnavailable
from app.output import classify
from app.registry import RecordSerializer, RegistryClient
from app.settings import Settings

PASSWORD = "pa55-w0rd-secret"


class FakeRegistry:
    """Answers POST /subjects/<s>/versions with ids, or with the status it is told."""

    def __init__(self) -> None:
        self.status = 200
        self.requests: list[tuple[str, dict[str, Any], str | None]] = []
        self.ids: dict[str, int] = {}

    async def register(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(
            (request.match_info["subject"], body, request.headers.get("Authorization"))
        )
        if self.status != 200:
            return web.json_response(
                {"error_code": self.status, "message": "refused"}, status=self.status
            )
        schema_id = self.ids.setdefault(body["schema"], len(self.ids) + 1)
        return web.json_response({"id": schema_id})


@pytest.fixture
async def registry() -> Any:
    fake = FakeRegistry()
    app = web.Application()
    app.router.add_post("/subjects/{subject}/versions", fake.register)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_schemas_are_registered_once_per_topic_with_basic_auth(registry: Any) -> None:
    fake, url = registry
    ser = RecordSerializer(RegistryClient(url, username="u", password=PASSWORD), "avro", "native")
    try:
        msgs = [
            (
                b'{"pk":"a"}',
                (
                    b'{"op":"c","table":"t","keys":{"pk":"a"},"before":null,'
                    b'"after":{"pk":"a"},"ts_ms":1,"source":{"stream_arn":null,"shard_id":null,'
                    b'"seq":"5","snapshot":false,"segment":null,"total_segments":null,'
                    b'"ttl_delete":false}}'
                ),
            ),
            (b'{"pk":"a"}', None),
        ]
        first = await ser.serialize("topic-1", msgs)
        again = await ser.serialize("topic-1", msgs)
    finally:
        await ser.close()
    assert first == again and [s for s, _, _ in fake.requests] == ["topic-1-key", "topic-1-value"]
    assert all(b == {"schema": b["schema"]} for _, b, _ in fake.requests)  # AVRO: no type
    auth = fake.requests[0][2]
    assert auth == "Basic " + base64.b64encode(f"u:{PASSWORD}".encode()).decode()
    (key, value), (tkey, tomb) = first
    assert schemas.unframe(key)[0] == 1 and schemas.unframe(value)[0] == 2
    assert tomb is None and tkey == key
    assert ser.health()["ok"] and ser.health()["topics"] == ["topic-1"]


async def test_json_schema_frames_the_json_itself(registry: Any) -> None:
    fake, url = registry
    ser = RecordSerializer(RegistryClient(url), "json_schema", "seed")
    try:
        ((key, value),) = await ser.serialize("t", [(b'{"pk":"a"}', b'{"op":"r"}')])
    finally:
        await ser.close()
    assert schemas.unframe(value) == (2, b'{"op":"r"}')
    assert schemas.unframe(key) == (1, b'{"pk":"a"}')
    assert {b.get("schemaType") for _, b, _ in fake.requests} == {"JSON"}
    assert json.loads(fake.requests[1][1]["schema"]) == schemas.SEED_VALUE_JSON


@pytest.mark.parametrize(
    ("status", "error", "verdict"),
    [
        (409, SchemaRegistryRefused, "permanent"),
        (422, SchemaRegistryRefused, "permanent"),
        (401, SchemaRegistryRefused, "permanent"),
        (503, SchemaRegistryUnavailable, "retry"),
        (429, SchemaRegistryUnavailable, "retry"),
    ],
)
async def test_refusals_and_outages(
    registry: Any, status: int, error: type[Exception], verdict: str
) -> None:
    fake, url = registry
    fake.status = status
    ser = RecordSerializer(RegistryClient(url, username="u", password=PASSWORD), "avro", "native")
    try:
        with pytest.raises(error) as info:
            await ser.serialize("t", [(b'{"pk":"a"}', None)])
    finally:
        await ser.close()
    assert classify(info.value) == verdict and PASSWORD not in str(info.value)
    assert f"HTTP {status}" in str(info.value) and "subject t-key" in str(info.value)
    if status == 409:
        assert "incompatible" in str(info.value)
    health = ser.health()
    assert health["ok"] is False and health["error_since_ms"] and health["topics"] == []
    fake.status = 200  # the registry is back: the next send registers, health is ok again
    ser = RecordSerializer(RegistryClient(url), "avro", "native")
    try:
        await ser.serialize("t", [(b'{"pk":"a"}', None)])
    finally:
        await ser.close()
    assert ser.health()["ok"]


async def test_no_registry_listening_is_an_outage() -> None:
    ser = RecordSerializer(RegistryClient("http://127.0.0.1:9", timeout=2), "avro", "native")
    try:
        with pytest.raises(SchemaRegistryUnavailable, match="no answer") as info:
            await ser.serialize("t", [(b'{"pk":"a"}', None)])
    finally:
        await ser.close()
    assert info.value.retriable and info.value.retry_reason == "schema_registry"


# ---------------------------------------------------------------- settings
REG = {"KAFKA_RECORD_FORMAT": "avro", "SCHEMA_REGISTRY_URL": "https://sr.example:8081/"}


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"KAFKA_RECORD_FORMAT": "avro"}, "SCHEMA_REGISTRY_URL"),
        ({"KAFKA_RECORD_FORMAT": "json_schema"}, "SCHEMA_REGISTRY_URL"),
        ({"SCHEMA_REGISTRY_URL": "http://sr:8081"}, "SCHEMA_REGISTRY_URL"),
        ({"SCHEMA_REGISTRY_USERNAME": "u"}, "SCHEMA_REGISTRY_USERNAME"),
        ({**REG, "SCHEMA_REGISTRY_USERNAME": "u"}, "SCHEMA_REGISTRY_PASSWORD"),
        ({**REG, "SCHEMA_REGISTRY_PASSWORD": PASSWORD}, "SCHEMA_REGISTRY_USERNAME"),
        ({**REG, "SCHEMA_REGISTRY_CERT_FILE": "/c.pem"}, "SCHEMA_REGISTRY_KEY_FILE"),
        (
            {**REG, "SCHEMA_REGISTRY_URL": "http://sr:8081", "SCHEMA_REGISTRY_CA_FILE": "/ca"},
            "SCHEMA_REGISTRY_CA_FILE",
        ),
        ({**REG, "SCHEMA_REGISTRY_URL": f"http://u:{PASSWORD}@sr:8081"}, "SCHEMA_REGISTRY_URL"),
        ({**REG, "KAFKA_RECORD_FORMAT": "protobuf"}, "KAFKA_RECORD_FORMAT"),
        ({**REG, "SCHEMA_REGISTRY_TIMEOUT": "0.5"}, "SCHEMA_REGISTRY_TIMEOUT"),
    ],
)
def test_bad_combinations_stop_the_worker_naming_the_setting(
    env: dict[str, str], setting: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.setting == setting and PASSWORD not in str(info.value)


def test_a_full_registry_configuration() -> None:
    s = Settings.from_env(
        {
            **REG,
            "SCHEMA_REGISTRY_USERNAME": "u",
            "SCHEMA_REGISTRY_PASSWORD": PASSWORD,
            "SCHEMA_REGISTRY_CA_FILE": "/ca.pem",
            "SCHEMA_REGISTRY_CERT_FILE": "/c.pem",
            "SCHEMA_REGISTRY_KEY_FILE": "/k.pem",
        }
    )
    assert s.schema_registry_url == "https://sr.example:8081"
    assert s.masked()["schema_registry_password"] == "***"
    assert PASSWORD not in repr(s)
    assert Settings.from_env({}).kafka_record_format == "json"


def test_the_schema_command_prints_what_the_worker_registers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from app.registry import main

    assert main(["schema", "--output", "seed", "--format", "avro", "--topic", "d-o"]) == 0
    assert json.loads(capsys.readouterr().out) == schemas.SEED_VALUE_AVRO
    main(
        ["schema", "--output", "seed", "--part", "key", "--key-attributes", "id", "--topic", "d-o"]
    )
    key = json.loads(capsys.readouterr().out)
    assert key["connect.name"] == "d_o.Key" and [f["name"] for f in key["fields"]] == ["id"]
    main(["schema", "--format", "json_schema", "--topic", "t"])
    assert json.loads(capsys.readouterr().out) == schemas.NATIVE_VALUE_JSON
