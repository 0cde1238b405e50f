"""AWS_ROLE_ARN: AwsClients signs with sts:AssumeRole credentials (moto's STS), renews them
before they expire, and never logs them.

moto gives an assumed role in another account its own backends, so a table created in
that account is visible through AwsClients only if the role's credentials are in use."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

import app.aws.clients as clients_module
from app.aws.clients import USER_AGENT_EXTRA, AwsClients, refresh_windows
from app.aws.dynamodb import Tables
from app.settings import Settings
from tests.integration.dynamo import client, create_table

ACCOUNT = "210987654321"  # not moto's default account (123456789012)
EXTERNAL_ID = "ext-Secret-7f3a"


class StsSpy:
    """botocore event hooks on every session AwsClients makes: what AssumeRole was asked
    and answered, and which access key signed each DynamoDB request."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.assume_params: list[dict[str, Any]] = []
        self.issued_keys: list[str] = []
        self.issued_secrets: list[str] = []  # secret keys and session tokens
        self.signing_keys: list[str] = []
        self.user_agents: list[str] = []
        self.on_issue: Any = None
        real = clients_module.get_session

        def get_session() -> Any:
            session = real()
            session.register("before-parameter-build.sts.AssumeRole", self._params)
            session.register("after-call.sts.AssumeRole", self._issued)
            session.register("before-send.sts.AssumeRole", self._sent)
            session.register("before-send.dynamodb", self._signed)
            return session

        monkeypatch.setattr(clients_module, "get_session", get_session)

    def _params(self, params: dict[str, Any], **_: Any) -> None:
        self.assume_params.append(dict(params))

    def _issued(self, parsed: dict[str, Any], **_: Any) -> None:
        creds = parsed["Credentials"]
        self.issued_keys.append(creds["AccessKeyId"])
        self.issued_secrets += [creds["SecretAccessKey"], creds["SessionToken"]]
        if self.on_issue:
            self.on_issue()

    def _sent(self, request: Any, **_: Any) -> None:
        self.user_agents.append(_text(request.headers["User-Agent"]))

    def _signed(self, request: Any, **_: Any) -> None:
        auth = _text(request.headers["Authorization"])
        match = re.search(r"Credential=([^/]+)/", auth)
        assert match, "unsigned DynamoDB request"
        self.signing_keys.append(match.group(1))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@pytest.fixture
def source_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard chain's credentials: only used to call AssumeRole."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def role_settings(stack: dict[str, str], role: str, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "AWS_ENDPOINT_URL": stack["AWS_ENDPOINT_URL"],
            "AWS_REGION": "us-east-1",
            "AWS_ROLE_ARN": role,
            **extra,
        }
    )


def table_in_role_account(stack: dict[str, str], role: str, name: str) -> None:
    """Create a table in the role's account with boto3's own AssumeRole."""
    creds = client(stack, "sts").assume_role(RoleArn=role, RoleSessionName="fixture")["Credentials"]
    ddb = boto3.client(
        "dynamodb",
        endpoint_url=stack["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    create_table(ddb, name, [("pk", "S")], None)


async def test_clients_use_the_assumed_role(
    stack: dict[str, str],
    uid: str,
    source_credentials: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/replication/reader-{uid}"
    table = f"cross-{uid}"
    table_in_role_account(stack, role, table)
    assert table not in client(stack).list_tables()["TableNames"]  # not in the caller's account
    caplog.set_level(logging.DEBUG)

    spy = StsSpy(monkeypatch)
    settings = role_settings(
        stack,
        role,
        AWS_ROLE_SESSION_NAME=f"it-{uid}",
        AWS_ROLE_EXTERNAL_ID=EXTERNAL_ID,
        AWS_ROLE_DURATION="1800",
    )
    aws = await AwsClients(settings).open()
    try:
        names = (await aws.dynamodb.list_tables())["TableNames"]
        assert table in names, names
        assert spy.assume_params == [
            {
                "RoleArn": role,
                "RoleSessionName": f"it-{uid}",
                "DurationSeconds": 1800,
                "ExternalId": EXTERNAL_ID,
            }
        ]
        assert spy.signing_keys == spy.issued_keys  # DynamoDB signed with the role's key
        assert spy.user_agents and all(USER_AGENT_EXTRA in ua for ua in spy.user_agents)
        assert aws.session is not None
        async with aws.session.create_client(
            "sts", region_name="us-east-1", endpoint_url=settings.endpoint_for("sts")
        ) as sts:
            me = await sts.get_caller_identity()
        assert me["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/reader-{uid}/it-{uid}"
        # one AssumeRole for all clients and calls while the credentials are fresh
        # (only actions of docs/iam-policy.json: test_zz_iam_policy sees these calls)
        await aws.dynamodb.describe_table(TableName=table)
        await aws.tagging.get_resources(ResourceTypeFilters=["dynamodb:table"])
        assert len(spy.assume_params) == 1
    finally:
        await aws.close()

    # at DEBUG, botocore would log signed headers and the AssumeRole response body
    assert caplog.records, "nothing captured: the check below would be vacuous"
    logged = caplog.text
    assert spy.issued_secrets and EXTERNAL_ID not in logged
    assert not [v for v in spy.issued_secrets if v in logged]


async def test_role_credentials_are_renewed_before_they_expire(
    stack: dict[str, str],
    uid: str,
    source_credentials: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fake clock moves through the 900 s life of the credentials: nothing is renewed
    before the advisory window, a new AssumeRole happens inside it, and that request is
    signed with the new key -- never with expired credentials.  moto dates expiry from
    the real time of issue, so the fake clock runs from there: `age` after each issue."""
    age = timedelta(0)

    def clock() -> datetime:
        return datetime.now(UTC) + age

    def issued() -> None:
        nonlocal age
        age = timedelta(0)

    advisory, mandatory = refresh_windows(900)
    assert (advisory, mandatory) == (300, 150)
    spy = StsSpy(monkeypatch)
    spy.on_issue = issued
    role = f"arn:aws:iam::{ACCOUNT}:role/reader-{uid}"
    aws = await AwsClients(role_settings(stack, role, AWS_ROLE_DURATION="900"), clock=clock).open()
    try:
        await aws.dynamodb.list_tables()
        assert len(spy.issued_keys) == 1
        age = timedelta(seconds=900 - advisory - 60)  # 6 minutes left: still fresh
        await aws.dynamodb.list_tables()
        assert len(spy.issued_keys) == 1
        age = timedelta(seconds=900 - advisory + 30)  # inside the advisory window
        await aws.dynamodb.list_tables()
        assert len(spy.issued_keys) == 2 and spy.issued_keys[0] != spy.issued_keys[1]
        assert spy.signing_keys == [spy.issued_keys[0]] * 2 + [spy.issued_keys[1]]
        age = timedelta(seconds=900 - mandatory + 30)  # the mandatory window: renewed too
        await aws.dynamodb.list_tables()
        assert len(spy.issued_keys) == 3
        assert spy.signing_keys[-1] == spy.issued_keys[2]
        assert all(p["DurationSeconds"] == 900 for p in spy.assume_params)
        assert "ExternalId" not in spy.assume_params[0]
        assert spy.assume_params[0]["RoleSessionName"] == "dynamodb-replicator"
    finally:
        await aws.close()


async def test_the_raw_path_signs_with_the_role_and_renews_it(
    stack: dict[str, str],
    uid: str,
    source_credentials: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DYNAMODB_RAW_HTTP's Scan (and GetRecords) sign with the clients' credentials
    object: the role's (the table exists only in the role's account), renewed in the
    advisory window like the clients' own."""
    age = timedelta(0)

    def clock() -> datetime:
        return datetime.now(UTC) + age

    def issued() -> None:
        nonlocal age
        age = timedelta(0)

    advisory, _ = refresh_windows(900)
    spy = StsSpy(monkeypatch)
    spy.on_issue = issued
    role = f"arn:aws:iam::{ACCOUNT}:role/raw-{uid}"
    table = f"rawrole-{uid}"
    table_in_role_account(stack, role, table)
    settings = role_settings(stack, role, AWS_ROLE_DURATION="900", DYNAMODB_RAW_HTTP="true")
    aws = await AwsClients(settings, clock=clock).open()
    try:
        assert aws.raw_dynamodb is not None and aws.session is not None
        assert aws.raw_dynamodb.credentials is await aws.session.get_credentials()
        tables = Tables(aws.dynamodb, aws.raw_dynamodb)
        page = await tables.scan(table, 0, 1, None)  # ResourceNotFound in any other account
        assert page.items == [] and page.last_evaluated_key is None
        assert len(spy.issued_keys) == 1 and spy.signing_keys == []  # not through botocore
        age = timedelta(seconds=900 - advisory + 30)  # inside the advisory window
        await tables.scan(table, 0, 1, None)
        assert len(spy.issued_keys) == 2 and spy.issued_keys[0] != spy.issued_keys[1]
        frozen = await aws.raw_dynamodb.credentials.get_frozen_credentials()
        assert frozen.access_key == spy.issued_keys[1]
    finally:
        await aws.close()
