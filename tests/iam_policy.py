"""The IAM policies in docs/ and the AWS actions the product really calls.

Shared by tests/unit/test_iam_policy.py (static: botocore operations called in the
source) and tests/integration/test_zz_iam_policy.py (dynamic: moto's request recording).
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "docs" / "iam-policy.json"  # the identity that reads the tables
CALLER_POLICY = ROOT / "docs" / "iam-assume-role-caller-policy.json"  # with AWS_ROLE_ARN

# botocore service name -> IAM action prefix (DynamoDB Streams shares `dynamodb:`)
IAM_PREFIX = {
    "dynamodb": "dynamodb",
    "dynamodbstreams": "dynamodb",
    "resourcegroupstaggingapi": "tag",
    "sts": "sts",
}
# JSON-protocol X-Amz-Target prefix -> IAM action prefix
TARGET_PREFIX = {
    "DynamoDB_20120810": "dynamodb",
    "DynamoDBStreams_20120810": "dynamodb",
    "ResourceGroupsTaggingAPI_20170126": "tag",
}
# SigV4 credential-scope service (query protocol) -> IAM action prefix
SCOPE_PREFIX = {"sts": "sts"}
# actions every integration run must show (so the policy check is never vacuous)
CORE = {
    "dynamodb:Scan",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:DescribeStream",
    "dynamodb:DescribeTable",
    "tag:GetResources",
}


def allowed_actions(path: Path) -> list[str]:
    """Action patterns of the policy's Allow statements (IAM wildcards kept)."""
    doc = json.loads(path.read_text())
    actions: list[str] = []
    for st in doc["Statement"]:
        assert st["Effect"] == "Allow", f"{path.name}: only Allow statements expected"
        listed = st["Action"]
        actions += [listed] if isinstance(listed, str) else listed
    return actions


def allowed(action: str, patterns: Iterable[str]) -> bool:
    """IAM action matching: case-insensitive, `*` and `?` wildcards."""
    return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns)


def policy_for(action: str) -> Path:
    """sts:AssumeRole is granted to the caller, everything else to the reading identity."""
    return CALLER_POLICY if action == "sts:AssumeRole" else POLICY


def missing_from_policies(actions: Iterable[str]) -> list[str]:
    cache: dict[Path, list[str]] = {}
    return sorted(
        a
        for a in set(actions)
        if not allowed(a, cache.setdefault(policy_for(a), allowed_actions(policy_for(a))))
    )


def _header(entry: dict[str, Any], name: str) -> str:
    for key, value in entry.get("headers", {}).items():
        if key.lower() == name.lower():
            return str(value)
    return ""


def action_of(entry: dict[str, Any]) -> str:
    """The IAM action of one recorded request; raises ValueError when it cannot tell."""
    target = _header(entry, "X-Amz-Target")
    if target:
        prefix, _, operation = target.partition(".")
        if prefix in TARGET_PREFIX and operation:
            return f"{TARGET_PREFIX[prefix]}:{operation}"
        raise ValueError(f"unknown X-Amz-Target {target!r}")
    scope = re.search(
        r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request", _header(entry, "Authorization")
    )
    if scope and scope.group(1) in SCOPE_PREFIX:
        body = entry.get("body") or ""
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
        query = entry.get("url", "").partition("?")[2]
        params = parse_qs(body) | parse_qs(query)
        if params.get("Action"):
            return f"{SCOPE_PREFIX[scope.group(1)]}:{params['Action'][0]}"
    raise ValueError(
        f"cannot tell the action of {entry.get('method')} {entry.get('url')} "
        f"(scope {scope.group(1) if scope else None!r})"
    )
