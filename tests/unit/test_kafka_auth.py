"""Kafka security settings: what app.kafka_auth's faust_credentials (Faust) and client_kwargs
(aiokafka clients: the admin bootstrap, the cluster view, the CLI) make of them, and the Amazon MSK IAM token
provider, checked against AWS's signer library with static credentials — no network and no
MSK cluster here (moto's in-process STS for the role case)."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.abc import AbstractTokenProvider  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider  # type: ignore[import-untyped]
from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from app.domain.errors import ConfigError
from app.kafka_auth import MSKAuthError, MSKIAMTokenProvider, client_kwargs, faust_credentials
from app.settings import Settings

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "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"
ROLE = "arn:aws:iam::123456789012:role/msk-writer"
IAM = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "AWS_MSK_IAM"}


# ---- settings --------------------------------------------------------------------------------


def test_msk_iam_settings() -> None:
    s = Settings.from_env({**IAM, "AWS_REGION": "eu-west-1"})
    assert s.kafka_sasl_mechanism == "AWS_MSK_IAM"
    assert (s.kafka_sasl_username, s.kafka_sasl_password) == (None, None)  # not needed
    assert (s.msk_iam_region, s.kafka_msk_iam_role_arn) == ("eu-west-1", None)
    s = Settings.from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "KAFKA_SASL_MECHANISM": "aws_msk_iam",
            "AWS_REGION": "eu-west-1",
            "KAFKA_MSK_IAM_REGION": "us-east-2",
            "KAFKA_MSK_IAM_ROLE_ARN": f" {ROLE} ",
        }
    )
    assert (s.kafka_sasl_mechanism, s.msk_iam_region, s.kafka_msk_iam_role_arn) == (
        "AWS_MSK_IAM",
        "us-east-2",
        ROLE,
    )
    assert s.masked()["kafka_msk_iam_role_arn"] == ROLE


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT"])
def test_msk_iam_needs_sasl_ssl(protocol: str) -> None:
    env = {"KAFKA_SASL_MECHANISM": "AWS_MSK_IAM", "KAFKA_SECURITY_PROTOCOL": protocol}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.setting == "KAFKA_SASL_MECHANISM"
    assert str(info.value).startswith(
        "KAFKA_SASL_MECHANISM: expected AWS_MSK_IAM only with KAFKA_SECURITY_PROTOCOL=SASL_SSL"
    )
    assert protocol in str(info.value)
    with pytest.raises(ConfigError, match="KAFKA_SASL_MECHANISM"):
        Settings.from_env({"KAFKA_SASL_MECHANISM": "AWS_MSK_IAM"})  # default PLAINTEXT


@pytest.mark.parametrize(
    ("variable", "value"), [("KAFKA_MSK_IAM_ROLE_ARN", ROLE), ("KAFKA_MSK_IAM_REGION", "eu-west-1")]
)
def test_msk_iam_options_need_the_mechanism(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                variable: value,
            }
        )
    assert info.value.setting == variable
    assert "KAFKA_SASL_MECHANISM=AWS_MSK_IAM" in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("KAFKA_MSK_IAM_ROLE_ARN", "arn:aws:iam::123456789012:user/bob", "IAM role ARN"),
        ("KAFKA_MSK_IAM_REGION", "EU WEST", "region"),
        ("KAFKA_SASL_MECHANISM", "OAUTHBEARER", "aws_msk_iam"),
    ],
)
def test_msk_iam_invalid_values(variable: str, value: str, accepted: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**IAM, variable: value})
    assert info.value.setting == variable
    assert accepted in str(info.value) and repr(value) in str(info.value)


# ---- what Faust and the aiokafka clients get -----------------------------------------------


def _settings(**env: str) -> Settings:
    return Settings.from_env(env)


def test_plaintext() -> None:
    s = _settings()
    assert faust_credentials(s) == {} and client_kwargs(s) == {}


def test_ssl() -> None:
    s = _settings(KAFKA_SECURITY_PROTOCOL="SSL")
    creds = faust_credentials(s)["broker_credentials"]
    assert isinstance(creds, SSLCredentials) and isinstance(creds.context, ssl.SSLContext)
    assert creds.context.verify_mode == ssl.CERT_REQUIRED and creds.context.check_hostname
    auth = client_kwargs(s)
    assert set(auth) == {"security_protocol", "ssl_context"}
    assert auth["security_protocol"] == "SSL" and isinstance(auth["ssl_context"], ssl.SSLContext)


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        ("SASL_PLAINTEXT", "PLAIN"),
        ("SASL_SSL", "PLAIN"),
        ("SASL_SSL", "SCRAM-SHA-256"),
        ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
    ],
)
def test_sasl_plain_and_scram(protocol: str, mechanism: str) -> None:
    s = _settings(
        KAFKA_SECURITY_PROTOCOL=protocol,
        KAFKA_SASL_MECHANISM=mechanism,
        KAFKA_SASL_USERNAME="replicator",
        KAFKA_SASL_PASSWORD="pw",
    )
    creds = faust_credentials(s)["broker_credentials"]
    assert isinstance(creds, SASLCredentials) and not isinstance(creds, OAuthCredentials)
    assert (creds.username, creds.password, creds.mechanism.value, creds.protocol.value) == (
        "replicator",
        "pw",
        mechanism,
        protocol,
    )
    assert (creds.ssl_context is not None) == (protocol == "SASL_SSL")
    faust_kwargs = credentials_to_aiokafka_auth(creds)
    assert (faust_kwargs["security_protocol"], faust_kwargs["sasl_mechanism"]) == (
        protocol,
        mechanism,
    )
    auth = client_kwargs(s)
    expected = {
        "security_protocol",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
    } | ({"ssl_context"} if protocol == "SASL_SSL" else set())
    assert set(auth) == expected
    assert (
        auth["security_protocol"],
        auth["sasl_mechanism"],
        auth["sasl_plain_username"],
        auth["sasl_plain_password"],
    ) == (protocol, mechanism, "replicator", "pw")


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"KAFKA_SASL_PASSWORD": "s3cr3t-pw"}, "KAFKA_SASL_USERNAME"),
        ({"KAFKA_SASL_USERNAME": "replicator"}, "KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SASL_USERNAME": "  ", "KAFKA_SASL_PASSWORD": "s3cr3t-pw"}, "KAFKA_SASL_USERNAME"),
        ({"KAFKA_SASL_USERNAME": "replicator", "KAFKA_SASL_PASSWORD": " "}, "KAFKA_SASL_PASSWORD"),
        ({}, "KAFKA_SASL_USERNAME"),
    ],
)
def test_sasl_without_username_or_password_is_refused_by_the_settings(
    protocol: str,
    mechanism: str,
    given: dict[str, str],
    missing: str,
) -> None:
    with pytest.raises(ConfigError) as info:
        _settings(KAFKA_SECURITY_PROTOCOL=protocol, KAFKA_SASL_MECHANISM=mechanism, **given)
    assert info.value.setting == missing
    assert str(info.value) == (
        f"{missing}: required when KAFKA_SECURITY_PROTOCOL={protocol} "
        f"and KAFKA_SASL_MECHANISM={mechanism}; it is unset"
    )
    assert "s3cr3t-pw" not in str(info.value)


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_sasl_credentials_not_needed_without_sasl(protocol: str) -> None:
    s = _settings(KAFKA_SECURITY_PROTOCOL=protocol)
    assert (s.kafka_sasl_username, s.kafka_sasl_password) == (None, None)


async def test_msk_iam_faust_and_aiokafka_objects() -> None:
    s = _settings(**IAM, AWS_REGION="eu-west-1", AWS_ROLE_ARN="arn:aws:iam::210987654321:role/t")
    creds = faust_credentials(s)["broker_credentials"]  # no username/password needed
    assert isinstance(creds, OAuthCredentials)
    assert (creds.protocol.value, creds.mechanism.value) == ("SASL_SSL", "OAUTHBEARER")
    assert isinstance(creds.ssl_context, ssl.SSLContext)
    provider = creds.oauth_cb
    assert isinstance(provider, MSKIAMTokenProvider)
    assert isinstance(provider, AbstractTokenProvider)
    # Deliberate: AWS_ROLE_ARN is the tables' role; Kafka signs with the base chain.
    assert (provider.region, provider.role_arn) == ("eu-west-1", None)
    faust_kwargs = credentials_to_aiokafka_auth(creds)  # what Faust hands to aiokafka
    assert faust_kwargs["sasl_oauth_token_provider"] is provider
    assert (faust_kwargs["security_protocol"], faust_kwargs["sasl_mechanism"]) == (
        "SASL_SSL",
        "OAUTHBEARER",
    )

    auth = client_kwargs(s)
    assert set(auth) == {
        "security_protocol",
        "sasl_mechanism",
        "sasl_oauth_token_provider",
        "ssl_context",
    }
    assert (auth["security_protocol"], auth["sasl_mechanism"]) == ("SASL_SSL", "OAUTHBEARER")
    assert isinstance(auth["sasl_oauth_token_provider"], MSKIAMTokenProvider)
    assert isinstance(auth["ssl_context"], ssl.SSLContext)
    # aiokafka accepts them (it checks the provider type for OAUTHBEARER) in every client the
    # project builds from client_kwargs: admin bootstrap / view, view consumer, CLI producer.
    clients = [
        AIOKafkaAdminClient(bootstrap_servers="b:9098", **auth),
        AIOKafkaConsumer(bootstrap_servers="b:9098", **auth),
        AIOKafkaProducer(bootstrap_servers="b:9098", **auth),
    ]
    for client in clients:
        kafka = client.client if isinstance(client, AIOKafkaProducer) else client._client
        assert kafka._sasl_oauth_token_provider is auth["sasl_oauth_token_provider"]
        assert kafka._sasl_mechanism == "OAUTHBEARER"
    await clients[0].close()
    await clients[1].stop()
    await clients[2].stop()


def test_msk_iam_role_and_region_settings_reach_the_provider() -> None:
    s = _settings(
        **IAM,
        AWS_REGION="eu-west-1",
        KAFKA_MSK_IAM_REGION="us-east-2",
        KAFKA_MSK_IAM_ROLE_ARN=ROLE,
        AWS_ROLE_SESSION_NAME="worker-7",
    )
    provider = client_kwargs(s)["sasl_oauth_token_provider"]
    assert isinstance(provider, MSKIAMTokenProvider)
    assert (provider.region, provider.role_arn, provider.session_name) == (
        "us-east-2",
        ROLE,
        "worker-7",
    )
    assert repr(provider) == f"<MSKIAMTokenProvider region=us-east-2 identity={ROLE}>"


# ---- the token itself ------------------------------------------------------------------------


@pytest.fixture
def static_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Only these environment credentials; no files, no instance metadata (no network)."""
    for name in (
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_STS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)


@pytest.fixture(autouse=True)
def _restore_signer_log_levels() -> Iterator[None]:
    levels = {n: logging.getLogger(n).level for n in ("botocore", "boto3")}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _decode(token: str) -> tuple[str, dict[str, list[str]]]:
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}", parse_qs(parts.query)


class _Counting:
    """Wraps a signer function: counts calls, keeps what it returned."""

    def __init__(self, real) -> None:  # type: ignore[no-untyped-def]
        self.real, self.calls, self.results = real, [], []

    def __call__(self, *args):  # type: ignore[no-untyped-def]
        self.calls.append(args)
        result = self.real(*args)
        self.results.append(result)
        return result


@pytest.fixture
def signer(monkeypatch: pytest.MonkeyPatch) -> _Counting:
    spy = _Counting(MSKAuthTokenProvider.generate_auth_token)
    monkeypatch.setattr(MSKAuthTokenProvider, "generate_auth_token", spy)
    return spy


async def test_token_is_a_signed_kafka_connect_url(
    static_credentials: None,
    signer: _Counting,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("botocore").setLevel(logging.DEBUG)  # LOG_LEVEL=debug: still held
    before = time.time()
    token = await MSKIAMTokenProvider("eu-west-1").token()

    assert signer.calls == [("eu-west-1",)]
    assert "=" not in token and "+" not in token and "/" not in token  # base64url, unpadded
    endpoint, query = _decode(token)
    assert endpoint == "https://kafka.eu-west-1.amazonaws.com/"
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    key, _day, region, service, terminator = query["X-Amz-Credential"][0].split("/")
    assert (key, region, service, terminator) == (
        ACCESS_KEY,
        "eu-west-1",
        "kafka-cluster",
        "aws4_request",
    )
    assert query["X-Amz-Expires"] == ["900"]
    signature = query["X-Amz-Signature"][0]
    assert len(signature) == 64 and int(signature, 16) >= 0
    assert "X-Amz-Security-Token" not in query  # static keys, no session
    assert query["User-Agent"][0].startswith("aws-msk-iam-sasl-signer-python/1.0.2")
    expiry_ms = signer.results[0][1]
    assert before + 890 <= expiry_ms / 1000 <= time.time() + 900

    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert SECRET_KEY not in token and SECRET_KEY not in logged
    assert token not in logged and signature not in logged
    assert (
        "signed an MSK IAM auth token (region eu-west-1, identity AWS credential chain)"
        in caplog.text
    )


async def test_token_is_cached_until_shortly_before_expiry(
    static_credentials: None,
    signer: _Counting,
) -> None:
    now = [time.time()]
    provider = MSKIAMTokenProvider("eu-west-1", clock=lambda: now[0], refresh_margin=120)
    first = await provider.token()
    expiry = signer.results[0][1] / 1000
    assert len(signer.calls) == 1

    now[0] = expiry - 121  # still valid for longer than the margin: reused
    assert await provider.token() == first
    assert len(signer.calls) == 1

    now[0] = expiry - 119  # about to expire: signed again
    await provider.token()
    assert len(signer.calls) == 2

    now[0] = signer.results[1][1] / 1000 + 5  # expired: signed again
    second = await provider.token()
    assert len(signer.calls) == 3
    assert _decode(second)[1]["Action"] == ["kafka-cluster:Connect"]


async def test_concurrent_connections_share_one_signing(
    static_credentials: None,
    signer: _Counting,
) -> None:
    provider = MSKIAMTokenProvider("us-east-1")
    tokens = await asyncio.gather(*(provider.token() for _ in range(8)))
    assert len(set(tokens)) == 1 and len(signer.calls) == 1


async def test_no_credentials_is_a_kafka_error_without_secrets(
    static_credentials: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(MSKAuthError, match="no AWS credentials found") as info:
        await MSKIAMTokenProvider("eu-west-1").token()
    from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

    assert isinstance(info.value, KafkaError)  # what aiokafka / ensure_topics retry on


async def test_role_arn_signs_with_the_assumed_role(
    static_credentials: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from moto import mock_aws

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setattr(
        MSKAuthTokenProvider,
        "generate_auth_token",
        lambda *a: pytest.fail("the base chain must not sign"),
    )
    spy = _Counting(MSKAuthTokenProvider.generate_auth_token_from_role_arn)
    monkeypatch.setattr(MSKAuthTokenProvider, "generate_auth_token_from_role_arn", spy)
    with mock_aws():  # moto's STS in-process: AssumeRole answers without a network
        token = await MSKIAMTokenProvider("eu-west-1", ROLE, "worker-7").token()
    assert spy.calls == [("eu-west-1", ROLE, "worker-7")]
    _, query = _decode(token)
    assert query["Action"] == ["kafka-cluster:Connect"]
    role_key = query["X-Amz-Credential"][0].split("/")[0]
    assert role_key != ACCESS_KEY and role_key.startswith("ASIA")  # temporary role keys
    assert query["X-Amz-Security-Token"][0] and query["X-Amz-Signature"][0]
    assert SECRET_KEY not in caplog.text and token not in caplog.text
    assert f"identity {ROLE}" in caplog.text


def test_settings_for_msk_iam_never_show_a_secret(static_credentials: None) -> None:
    s = _settings(**IAM, KAFKA_MSK_IAM_ROLE_ARN=ROLE)
    text = repr(s) + str(s.masked()) + repr(client_kwargs(s)) + repr(faust_credentials(s))
    assert SECRET_KEY not in text and ACCESS_KEY not in text


def test_faust_app_accepts_msk_iam_credentials() -> None:
    s = _settings(**IAM)
    app = faust.App("msk-iam-test", broker="kafka://b:9098", **faust_credentials(s))
    assert isinstance(app.conf.broker_credentials, OAuthCredentials)
