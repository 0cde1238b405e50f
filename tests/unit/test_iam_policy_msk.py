"""docs/iam-policy-msk.json: the Kafka side's least-privilege policy for MSK IAM access control.

Static checks (no cluster here): every action is a real MSK action with its required
companions, every resource names the settings it depends on by placeholder, every Kafka
operation the worker, its status view and the CLI perform is allowed (and nothing beyond
them), and the code performs no Kafka operation the mapping below does not know about.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import re

import pytest
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

from app.domain.discovery import STATE_TOPICS
from tests.iam_policy import ROOT

MSK_POLICY = ROOT / "docs" / "iam-policy-msk.json"

# Every action of MSK IAM access control, with the resource type it applies to and the
# actions a policy granting it must also grant ("Required actions"), as listed by AWS in
# "Semantics of IAM authorization policy actions and resources" (Amazon MSK developer guide).
MSK_ACTIONS: dict[str, tuple[str, frozenset[str]]] = {
    f"kafka-cluster:{name}": (resource, frozenset(f"kafka-cluster:{r}" for r in required))
    for name, resource, required in [
        ("Connect", "cluster", ()),
        ("DescribeCluster", "cluster", ("Connect",)),
        ("AlterCluster", "cluster", ("Connect", "DescribeCluster")),
        ("DescribeClusterDynamicConfiguration", "cluster", ("Connect",)),
        (
            "AlterClusterDynamicConfiguration",
            "cluster",
            ("Connect", "DescribeClusterDynamicConfiguration"),
        ),
        ("WriteDataIdempotently", "cluster", ("Connect", "WriteData")),
        ("CreateTopic", "topic", ("Connect",)),
        ("DescribeTopic", "topic", ("Connect",)),
        ("AlterTopic", "topic", ("Connect", "DescribeTopic")),
        ("DeleteTopic", "topic", ("Connect", "DescribeTopic")),
        ("DescribeTopicDynamicConfiguration", "topic", ("Connect",)),
        (
            "AlterTopicDynamicConfiguration",
            "topic",
            ("Connect", "DescribeTopicDynamicConfiguration"),
        ),
        ("ReadData", "topic", ("Connect", "DescribeTopic", "AlterGroup")),
        ("WriteData", "topic", ("Connect", "DescribeTopic")),
        ("DescribeGroup", "group", ("Connect",)),
        ("AlterGroup", "group", ("Connect", "DescribeGroup")),
        ("DeleteGroup", "group", ("Connect", "DescribeGroup")),
        ("DescribeTransactionalId", "transactional-id", ("Connect",)),
        (
            "AlterTransactionalId",
            "transactional-id",
            ("Connect", "DescribeTransactionalId", "WriteData"),
        ),
    ]
}

# The placeholders of the policy, each replaced by the value of the setting of that name
PLACEHOLDERS = ("<MSK_CLUSTER_NAME>", "<KAFKA_TOPIC_PREFIX>", "<APP_ID>")
ARN = re.compile(
    r"^arn:aws:kafka:\*:\*:(cluster|topic|group|transactional-id)/"
    r"<MSK_CLUSTER_NAME>/\*(?:/(.+))?$"
)

# AIOKafkaAdminClient calls of app/ and agents/ -> the MSK actions each needs (Kafka's ACL
# for the request: Metadata = DESCRIBE topic, CreateTopics = CREATE, DescribeConfigs =
# DESCRIBE_CONFIGS).  A call not listed here fails test_every_admin_call_is_mapped.
ADMIN_CALLS = {
    "list_topics": {"kafka-cluster:DescribeTopic"},
    "describe_topics": {"kafka-cluster:DescribeTopic"},
    "create_topics": {"kafka-cluster:CreateTopic"},
    "describe_configs": {"kafka-cluster:DescribeTopicDynamicConfiguration"},
    "describe_cluster": {"kafka-cluster:DescribeCluster"},
    # Kafka's DELETE on a topic (DeleteTopics, DeleteRecords) is MSK's DeleteTopic
    "delete_records": {"kafka-cluster:DeleteTopic"},
}


def statements() -> list[dict]:
    doc = json.loads(MSK_POLICY.read_text())
    assert doc["Version"] == "2012-10-17"
    return doc["Statement"]


def resources(st: dict) -> list[str]:
    return [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]


def fill(text: str, cluster: str, prefix: str, app_id: str) -> str:
    return (
        text.replace("<MSK_CLUSTER_NAME>", cluster)
        .replace("<KAFKA_TOPIC_PREFIX>", prefix)
        .replace("<APP_ID>", app_id)
    )


def allows(
    action: str,
    resource: str,
    cluster: str = "prod",
    prefix: str = "dynamodb-",
    app_id: str = "dynamodb-replicator",
) -> bool:
    """IAM evaluation of this Allow-only policy: `*` matches any run of characters (also
    `/`), `?` one; actions are case-insensitive, resources are not."""
    for st in statements():
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in st["Action"]):
            continue
        if any(
            fnmatch.fnmatchcase(resource, fill(r, cluster, prefix, app_id)) for r in resources(st)
        ):
            return True
    return False


def cluster_arn(cluster: str = "prod") -> str:
    return f"arn:aws:kafka:eu-west-1:111122223333:cluster/{cluster}/0c1d2e3f-1234-5678-9abc-1"


def topic_arn(topic: str, cluster: str = "prod") -> str:
    return f"arn:aws:kafka:eu-west-1:111122223333:topic/{cluster}/0c1d2e3f-1234-5678-9abc-1/{topic}"


def group_arn(group: str, cluster: str = "prod") -> str:
    return f"arn:aws:kafka:eu-west-1:111122223333:group/{cluster}/0c1d2e3f-1234-5678-9abc-1/{group}"


def worker_operations(prefix: str, app_id: str) -> list[tuple[str, str, str]]:
    """(action, resource, why) for every Kafka operation of the worker, its status view
    and the CLI (app/main.py, app/bootstrap.py, app/output.py, app/cluster_view.py, app/cli.py)."""
    ops = [
        ("kafka-cluster:Connect", cluster_arn(), "every connection (SASL/OAUTHBEARER)"),
        # the broker count, for the replication check of the internal topics at start
        ("kafka-cluster:DescribeCluster", cluster_arn(), "bootstrap.ensure_topics"),
    ]
    # control topic and table changelogs: created at start (bootstrap.ensure_topics and
    # Faust), produced to (control events, table writes), consumed (the control agent, table
    # recovery, the status view); Faust's leader-election topic likewise
    for name in (
        *(f"{app_id}-{s}" for s in STATE_TOPICS),
        f"{app_id}-__assignor-__leader",
        f"{app_id}-deployment",
    ):
        for action in ("CreateTopic", "DescribeTopic", "ReadData", "WriteData"):
            ops.append((f"kafka-cluster:{action}", topic_arn(name), "internal topic"))
    # their partitions, replication, cleanup.policy and max.message.bytes, checked at start
    for name in (*(f"{app_id}-{s}" for s in STATE_TOPICS), f"{app_id}-deployment"):
        ops.append(
            (
                "kafka-cluster:DescribeTopicDynamicConfiguration",
                topic_arn(name),
                "bootstrap.ensure_topics checks",
            )
        )
    # output topics and the dead-letter topic: Output.ensure_topic lists, creates and
    # describes them, reads their max.message.bytes (DescribeConfigs); then produce
    for name in (f"{prefix}orders", f"{app_id}-dlq"):
        for action in (
            "CreateTopic",
            "DescribeTopic",
            "DescribeTopicDynamicConfiguration",
            "WriteData",
        ):
            ops.append((f"kafka-cluster:{action}", topic_arn(name), "output topic"))
    # a snapshot's buffer topic: written by the shards while the table is scanned, read by
    # the replay units, its copied records deleted (DeleteRecords: Kafka's DELETE on it)
    for action in (
        "CreateTopic",
        "DescribeTopic",
        "DescribeTopicDynamicConfiguration",
        "WriteData",
        "ReadData",
        "DeleteTopic",
    ):
        ops.append((f"kafka-cluster:{action}", topic_arn(f"{app_id}-buffer-orders-1"), "buffer"))
    # Faust's consumer group = APP_ID: join/sync/heartbeat/commit (READ GROUP = AlterGroup),
    # find the coordinator, fetch committed offsets (DESCRIBE GROUP = DescribeGroup)
    for action in ("AlterGroup", "DescribeGroup"):
        ops.append((f"kafka-cluster:{action}", group_arn(app_id), "consumer group"))
    return ops


def source_files() -> list:
    return sorted([*(ROOT / "app").rglob("*.py"), *(ROOT / "agents").rglob("*.py")])


def test_policy_is_valid_and_names_only_msk_actions() -> None:
    sids = []
    for st in statements():
        assert st["Effect"] == "Allow"
        sids.append(st["Sid"])
        assert isinstance(st["Action"], list) and st["Action"]
        for action in st["Action"]:
            assert action in MSK_ACTIONS, f"not an MSK IAM action: {action}"
        assert not [a for a in st["Action"] if "*" in a or "?" in a], "no wildcard actions"
    assert len(sids) == len(set(sids)), "Sids are unique"


def test_each_action_applies_to_its_resource_type() -> None:
    for st in statements():
        for resource in resources(st):
            match = ARN.match(resource)
            assert match, f"{st['Sid']}: {resource} is not an MSK ARN with the placeholders"
            for action in st["Action"]:
                assert MSK_ACTIONS[action][0] == match.group(1), (st["Sid"], action, resource)


def test_required_actions_are_granted() -> None:
    """AWS: a policy granting an action must grant its required actions too — on the same
    resources when they are of the same type (WriteData needs DescribeTopic on that topic),
    on some resource of their own type otherwise (ReadData needs AlterGroup on a group)."""
    granted = {(a, r) for st in statements() for a in st["Action"] for r in resources(st)}
    by_type: dict[str, set[str]] = {}
    for action, _ in granted:
        by_type.setdefault(MSK_ACTIONS[action][0], set()).add(action)
    for action, resource in granted:
        kind, required = MSK_ACTIONS[action]
        for need in required:
            need_kind = MSK_ACTIONS[need][0]
            if need_kind == kind:
                assert allows_pattern(need, resource, granted), (action, resource, need)
            else:
                assert need in by_type.get(need_kind, set()), (action, need)


def allows_pattern(action: str, resource: str, granted: set[tuple[str, str]]) -> bool:
    """`resource` (a pattern) is covered by a pattern granted for `action`."""
    return any(a == action and fnmatch.fnmatchcase(resource, r) for a, r in granted)


def test_resources_use_the_placeholders() -> None:
    topics = {r for st in statements() for r in resources(st) if ":topic/" in r}
    groups = {r for st in statements() for r in resources(st) if ":group/" in r}
    assert {t.rsplit("/", 1)[1] for t in topics} == {
        "<KAFKA_TOPIC_PREFIX>*",
        "<APP_ID>-*",
        "<APP_ID>-buffer-*",
    }
    assert {g.rsplit("/", 1)[1] for g in groups} == {"<APP_ID>"}
    text = MSK_POLICY.read_text()
    assert set(re.findall(r"<[^>]+>", text)) == set(PLACEHOLDERS)
    settings = (ROOT / "app" / "settings.py").read_text()
    for name in ("KAFKA_TOPIC_PREFIX", "APP_ID"):  # a placeholder is a setting's name
        assert f'"{name}"' in settings, name


@pytest.mark.parametrize(
    ("prefix", "app_id"), [("dynamodb-", "dynamodb-replicator"), ("cdc.", "replicator-eu")]
)
def test_every_kafka_operation_of_the_worker_is_allowed(prefix: str, app_id: str) -> None:
    denied = [
        (a, r, why)
        for a, r, why in worker_operations(prefix, app_id)
        if not allows(a, r, prefix=prefix, app_id=app_id)
    ]
    assert not denied, denied


def test_nothing_beyond_the_worker_is_allowed() -> None:
    prefix, app_id = "cdc.", "replicator-eu"  # prefix outside <APP_ID>-…
    # output topics are written, never read, altered or deleted
    for action in ("ReadData", "AlterTopic", "DeleteTopic", "AlterTopicDynamicConfiguration"):
        assert not allows(
            f"kafka-cluster:{action}", topic_arn("cdc.orders"), prefix=prefix, app_id=app_id
        ), action
    # internal topics: their configuration is read (checked at start), never altered; no
    # deletes
    for action in ("DeleteTopic", "AlterTopic", "AlterTopicDynamicConfiguration"):
        assert not allows(
            f"kafka-cluster:{action}", topic_arn(f"{app_id}-control"), prefix=prefix, app_id=app_id
        ), action
    # other topics, groups and clusters: nothing
    for action in MSK_ACTIONS:
        for resource in (
            topic_arn("payments"),
            group_arn("another-app"),
            group_arn(f"{app_id}-x"),
            cluster_arn("other-cluster"),
            topic_arn("cdc.orders", cluster="other-cluster"),
        ):
            assert not allows(action, resource, prefix=prefix, app_id=app_id), (action, resource)
    for action in ("AlterCluster", "WriteDataIdempotently", "DescribeClusterDynamicConfiguration"):
        assert not allows(f"kafka-cluster:{action}", cluster_arn()), action


def test_the_policy_grants_exactly_what_the_worker_does() -> None:
    """No action without an operation of worker_operations behind it."""
    needed = {a for a, _, _ in worker_operations("dynamodb-", "dynamodb-replicator")}
    granted = {a for st in statements() for a in st["Action"]}
    assert granted == needed


def test_every_admin_call_is_mapped() -> None:
    """Every AIOKafkaAdminClient operation called in app/ and agents/ is one whose MSK
    actions the policy grants (a new call, e.g. alter_configs or delete_records, fails
    here until the policy and ADMIN_CALLS say what it needs)."""
    methods = {
        name
        for name, _ in inspect.getmembers(AIOKafkaAdminClient, inspect.isfunction)
        if not name.startswith("_")
    } - {"start", "close"}
    called: dict[str, set[str]] = {}
    for path in source_files():
        for name in re.findall(r"\.([a-z_]+)\(", path.read_text()):
            if name in methods:
                called.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert {"create_topics", "describe_configs", "list_topics"} <= set(called), called
    unmapped = {name: sorted(files) for name, files in called.items() if name not in ADMIN_CALLS}
    assert not unmapped, f"admin calls without MSK actions in ADMIN_CALLS: {unmapped}"
    granted = {a for st in statements() for a in st["Action"]}
    for name in called:
        assert ADMIN_CALLS[name] <= granted, name


def test_no_idempotent_transactional_or_second_group_client() -> None:
    """Kept out of the policy because the code does not use them: an idempotent or
    transactional producer (WriteDataIdempotently, *TransactionalId), exactly-once
    processing, or a consumer group besides Faust's own (= APP_ID)."""
    for path in source_files():
        text = path.read_text()
        for word in (
            "enable_idempotence",
            "transactional_id",
            "exactly_once",
            "processing_guarantee",
        ):
            assert word not in text, f"{path.relative_to(ROOT)} uses {word}: update the policy"
        for group in re.findall(r"group_id\s*=\s*([^,)\s]+)", text):
            assert group == "None", f"{path.relative_to(ROOT)}: consumer group {group}"


def test_readme_shows_the_msk_policy() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.partition("## Permissions (IAM)")[2].partition("\n## ")[0]
    assert "docs/iam-policy-msk.json" in section
    assert MSK_POLICY.read_text().strip() in section
    for action in {a for st in statements() for a in st["Action"]}:
        assert f"`{action}`" in section, action
    msk = readme.partition("## Running against real AWS and Kafka/MSK")[2].partition("\n## ")[0]
    assert "docs/iam-policy-msk.json" in msk
