"""docs/iam-policy.json grants exactly the AWS actions the code calls (static check: every
botocore operation called in app/aws/*.py), and the recording -> action mapping used by
tests/integration/test_zz_iam_policy.py."""

from __future__ import annotations

import base64
import json
import re

import botocore.session
import pytest
from botocore import xform_name

from tests.iam_policy import (
    CALLER_POLICY,
    CORE,
    IAM_PREFIX,
    POLICY,
    ROOT,
    action_of,
    allowed,
    allowed_actions,
    missing_from_policies,
)

AWS_EDGE = sorted((ROOT / "app" / "aws").glob("*.py"))
CALL = re.compile(r"\.([a-z][a-z0-9_]*)\s*\(")
PAGINATOR = re.compile(r"get_paginator\(\s*['\"]([a-z0-9_]+)['\"]")
# the raw path (app/aws/raw.py): `self.raw.call("GetRecords", ...)`, DynamoDB or Streams,
# both under the dynamodb: prefix
RAW_CALL = re.compile(r"\braw\.call\(\s*['\"]([A-Za-z]+)['\"]")


def operations() -> dict[str, set[str]]:
    """python method name (scan, get_records, ...) -> IAM actions of that operation in the
    services we use."""
    session = botocore.session.get_session()
    found: dict[str, set[str]] = {}
    for service, prefix in IAM_PREFIX.items():
        for op in session.get_service_model(service).operation_names:
            found.setdefault(xform_name(op), set()).add(f"{prefix}:{op}")
    return found


def called_actions() -> dict[str, set[str]]:
    """IAM action -> files of app/aws calling it (client methods, paginators, and the
    AssumeRole that aiobotocore's fetcher makes for AWS_ROLE_ARN)."""
    ops = operations()
    actions: dict[str, set[str]] = {}
    for path in AWS_EDGE:
        source = path.read_text()
        for name in set(CALL.findall(source)) | set(PAGINATOR.findall(source)):
            for action in ops.get(name, ()):
                actions.setdefault(action, set()).add(path.name)
        for operation in RAW_CALL.findall(source):
            actions.setdefault(f"dynamodb:{operation}", set()).add(path.name)
        if "AssumeRoleCredentialFetcher" in source:
            actions.setdefault("sts:AssumeRole", set()).add(path.name)
    return actions


def test_raw_calls_are_found() -> None:
    """The raw path's two operations are seen by the scan (and are real operations)."""
    raw = {f"dynamodb:{op}" for p in AWS_EDGE for op in RAW_CALL.findall(p.read_text())}
    assert raw == {"dynamodb:GetRecords", "dynamodb:Scan"}
    assert raw <= {a for acts in operations().values() for a in acts}


def test_the_aws_edge_is_app_aws() -> None:
    """Only app/aws talks to AWS, so scanning it finds every call."""
    sdk = re.compile(r"^\s*(?:from|import)\s+(?:aiobotocore|botocore|boto3)\b", re.MULTILINE)
    outside = [
        p
        for p in [*(ROOT / "app").rglob("*.py"), *(ROOT / "agents").rglob("*.py")]
        if p.parent != ROOT / "app" / "aws" and sdk.search(p.read_text())
    ]
    assert not outside, f"AWS SDK used outside app/aws: {outside}"


def test_every_called_operation_is_in_the_policy() -> None:
    actions = called_actions()
    assert CORE <= set(actions), f"the scan found too little: {sorted(actions)}"
    missing = missing_from_policies(actions)
    assert not missing, (
        f"called but not granted by docs/iam-policy.json (or, for "
        f"sts:AssumeRole, {CALLER_POLICY.name}): "
        f"{ {a: sorted(actions[a]) for a in missing} }"
    )


def test_the_policy_grants_nothing_the_code_does_not_call() -> None:
    called = set(called_actions())
    granted = allowed_actions(POLICY)
    assert not [g for g in granted if "*" in g or "?" in g], "no wildcard actions"
    unused = sorted(set(granted) - called)
    assert not unused, f"docs/iam-policy.json grants actions nothing calls: {unused}"
    assert "sts:AssumeRole" not in granted  # the caller's policy, not the role's
    assert allowed_actions(CALLER_POLICY) == ["sts:AssumeRole"]


def test_stream_actions_are_scoped_to_streams() -> None:
    for st in json.loads(POLICY.read_text())["Statement"]:
        actions = set(st["Action"])
        if actions & {
            "dynamodb:GetRecords",
            "dynamodb:GetShardIterator",
            "dynamodb:DescribeStream",
        }:
            assert st["Resource"].endswith(":table/*/stream/*"), st
        if actions & {"dynamodb:Scan", "dynamodb:DescribeTable"}:
            assert st["Resource"].endswith(":table/*"), st


def test_action_matching_follows_iam_rules() -> None:
    assert allowed("dynamodb:GetRecords", ["dynamodb:get*"])
    assert allowed("dynamodb:Scan", ["DynamoDB:scan"])
    assert not allowed("dynamodb:ScanAll", ["dynamodb:Scan"])
    assert not allowed("tag:GetResources", ["dynamodb:*"])


@pytest.mark.parametrize(
    ("target", "action"),
    [
        ("DynamoDB_20120810.Scan", "dynamodb:Scan"),
        ("DynamoDBStreams_20120810.GetRecords", "dynamodb:GetRecords"),
        ("ResourceGroupsTaggingAPI_20170126.GetResources", "tag:GetResources"),
    ],
)
def test_json_protocol_requests_map_by_target(target: str, action: str) -> None:
    assert action_of({"headers": {"X-Amz-Target": target}, "body": "{}"}) == action


def test_query_protocol_requests_map_by_action() -> None:
    auth = (
        "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/sts/aws4_request, "
        "SignedHeaders=host, Signature=x"
    )
    body = "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr"
    entry = {
        "headers": {"Authorization": auth},
        "method": "POST",
        "url": "http://h/",
        "body": base64.b64encode(body.encode()).decode(),
        "body_encoded": True,
    }
    assert action_of(entry) == "sts:AssumeRole"
    with pytest.raises(ValueError, match="X-Amz-Target"):
        action_of({"headers": {"X-Amz-Target": "Kinesis_20131202.GetRecords"}})
    with pytest.raises(ValueError, match="cannot tell"):
        action_of({"headers": {}, "method": "GET", "url": "http://h/bucket"})


def test_readme_shows_the_policy() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.partition("## Permissions (IAM)")[2].partition("\n## ")[0]
    assert section, "README has no 'Permissions (IAM)' section"
    for action in allowed_actions(POLICY):
        assert action in section, action
    assert POLICY.read_text().strip() in readme
