"""Every AWS action the product called during this test session is granted by
docs/iam-policy.json (sts:AssumeRole by docs/iam-assume-role-caller-policy.json).

moto records every request it serves (scripts/stack.py starts it with
MOTO_ENABLE_RECORDING).  The product's requests carry `dynamodb-replicator/<version>` in
their User-Agent (app.aws.clients.USER_AGENT_EXTRA); the tests' own boto3 calls
(create_table, put_item, ...) and the streams stand-in's do not.  Requests signed
before this module was collected belong to earlier sessions and are ignored.

The file name sorts last, so in a full run it sees the whole suite's calls.  Run alone
(or after a subset that missed a core action) it runs one small worker itself first."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.aws.clients import USER_AGENT_EXTRA
from tests.iam_policy import CORE, action_of, missing_from_policies
from tests.integration.dynamo import batch_put, client, create_table, worker_env
from tests.integration.helpers import TopicReader, Worker

# module import = collection, before any test of the session ran; X-Amz-Date has
# one-second resolution, hence the margin
SESSION_START = datetime.now(UTC) - timedelta(seconds=2)
RESTART = "python scripts/stack.py down moto && python scripts/stack.py up"


def _download(endpoint: str) -> list[dict[str, Any]]:
    url = f"{endpoint}/moto-api/recorder/download-recording"
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            text = resp.read().decode("utf-8", "replace")
    except OSError as exc:
        raise AssertionError(
            f"moto at {endpoint} has no recording ({exc}); it must run with "
            f"MOTO_ENABLE_RECORDING as scripts/stack.py starts it: {RESTART}"
        ) from None
    entries = []
    for line in text.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:  # a line cut by concurrent appends of large requests
            continue
    return entries


def _assert_recording(endpoint: str) -> None:
    """A marked request must show up in the recording."""
    marker = uuid.uuid4().hex
    req = urllib.request.Request(
        f"{endpoint}/",
        data=b"{}",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
            "X-Recording-Probe": marker,
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/"
            "aws4_request, SignedHeaders=host, Signature=x",
        },
    )
    urllib.request.urlopen(req, timeout=10).read()
    if marker not in json.dumps(_download(endpoint)[-200:]):
        raise AssertionError(
            f"moto at {endpoint} is not recording requests: it was started "
            f"without MOTO_ENABLE_RECORDING (before scripts/stack.py enabled "
            f"it, or by something else). Restart it: {RESTART}"
        )


def _signed_at(entry: dict[str, Any]) -> datetime | None:
    for key, value in entry.get("headers", {}).items():
        if key.lower() == "x-amz-date":
            try:
                return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            except ValueError:
                return None
    return None


def product_actions(endpoint: str) -> Counter[str]:
    """IAM action -> number of requests the product made in this session."""
    actions: Counter[str] = Counter()
    for entry in _download(endpoint):
        ua = next((v for k, v in entry.get("headers", {}).items() if k.lower() == "user-agent"), "")
        signed = _signed_at(entry)
        if USER_AGENT_EXTRA not in ua or signed is None or signed < SESSION_START:
            continue
        actions[action_of(entry)] += 1
    return actions


def run_small_worker(stack: dict[str, str], uid: str, workdir: Path) -> None:
    """Discovery by tag, a snapshot, then streaming one change: every core action."""
    ddb = client(stack)
    table = f"iam-{uid}"
    create_table(ddb, table, [("pk", "S")], {f"itest-{uid}": "1"})
    batch_put(ddb, table, [{"pk": {"S": f"k{i}"}} for i in range(5)])
    worker = Worker("app", worker_env(stack, uid), workdir, "iam")
    reader = TopicReader(stack, f"it-{uid}-{table}")
    try:
        worker.start()
        reader.read_until(lambda rs: len(rs) >= 5, 120, "5 snapshot records")
        worker.wait_log(r"reading shard", timeout=90)
        ddb.put_item(TableName=table, Item={"pk": {"S": "after-snapshot"}})
        reader.read_until(
            lambda rs: any(r.key == b'{"pk":"after-snapshot"}' for r in rs), 60, "the streamed put"
        )
    finally:
        worker.stop()
        reader.close()


def test_every_product_action_is_in_the_iam_policy(
    stack: dict[str, str],
    uid: str,
    workdir: Path,
) -> None:
    endpoint = stack["AWS_ENDPOINT_URL"]
    _assert_recording(endpoint)
    actions = product_actions(endpoint)
    if not CORE <= set(actions):
        # run alone, or after tests that missed some: produce the core calls here
        run_small_worker(stack, uid, workdir)
        time.sleep(0.5)
        actions = product_actions(endpoint)
    seen = ", ".join(f"{a} x{n}" for a, n in sorted(actions.items()))
    assert CORE <= set(actions), (
        f"core actions never called by the product: {sorted(CORE - set(actions))}; seen: {seen}"
    )
    missing = missing_from_policies(actions)
    assert not missing, f"the product called actions the IAM policy lacks: {missing}; seen: {seen}"
