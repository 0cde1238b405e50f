"""What is wrong with the replicator's internal topics, given what Kafka describes.  Pure.

The topics are created at start when absent (app.bootstrap); an existing one is used as it
is, so it may have been created by hand, by an older version, or by Faust with other
settings.  Some differences break the worker (fatal: it must not start), others weaken it
(a warning at every start until fixed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple


class TopicSpec(NamedTuple):
    """What the replicator wants: created like this when absent."""

    partitions: int
    replication: int
    config: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class TopicFacts:
    """What Kafka describes of an existing topic."""

    partitions: int
    replication: int  # the fewest replicas of any of its partitions
    # its effective cleanup.policy, max.message.bytes, ...; None: Kafka did not tell (e.g. no
    # permission to describe topic configurations)
    config: Mapping[str, str] | None


@dataclass(frozen=True, slots=True)
class TopicProblem:
    topic: str
    fatal: bool  # the worker must not start
    message: str


def _policies(config: Mapping[str, str]) -> set[str]:
    return {p.strip() for p in config.get("cleanup.policy", "").split(",") if p.strip()}


def internal_topic_problems(
    wanted: Mapping[str, TopicSpec],
    found: Mapping[str, TopicFacts],
    brokers: int,
    errors: Mapping[str, str] | None = None,
) -> list[TopicProblem]:
    """Every problem of the internal topics, in ``wanted``'s order:

    ``errors``: Kafka's error for a topic it did not describe, or whose configuration it
    did not return.

    - fatal: a topic Kafka does not describe; a partition count other than wanted (the
      control topic and the changelogs are co-partitioned: Faust's tables break, and
      STATE_PARTITIONS cannot change after the first start); a changelog (wanted compacted)
      whose cleanup.policy lacks ``compact`` (Kafka would delete the state by age);
    - warnings: a compacted changelog that is also ``delete``; a smaller max.message.bytes
      than wanted (the state of a table with thousands of shards would not fit); fewer
      replicas than KAFKA_TOPIC_REPLICATION, or 1 on a cluster of several brokers; a
      configuration Kafka did not return (not checked then)."""
    errors = errors or {}
    problems: list[TopicProblem] = []
    for name, want in wanted.items():
        have = found.get(name)
        if have is None:
            problems.append(
                TopicProblem(
                    name,
                    True,
                    f"internal topic {name} cannot be used: Kafka did not describe it after "
                    f"creating it ({errors.get(name, 'unknown topic')})",
                )
            )
            continue
        for check in (_partitions, _cleanup_policy, _message_size, _replication):
            problem = check(name, want, have, errors, brokers)
            if problem is not None:
                problems.append(problem)
    return problems


def _partitions(
    name: str, want: TopicSpec, have: TopicFacts, errors: Mapping[str, str], brokers: int
) -> TopicProblem | None:
    if have.partitions == want.partitions:
        return None
    return TopicProblem(
        name,
        True,
        f"internal topic {name} has {have.partitions} partitions, STATE_PARTITIONS is "
        f"{want.partitions}: the control topic and the state changelogs must all have "
        "STATE_PARTITIONS partitions (Faust's tables are co-partitioned with the control "
        "topic), which cannot change after the first start; set STATE_PARTITIONS="
        f"{have.partitions} as at the first start, or start afresh under a new APP_ID",
    )


def _cleanup_policy(
    name: str, want: TopicSpec, have: TopicFacts, errors: Mapping[str, str], brokers: int
) -> TopicProblem | None:
    if have.config is None:
        return TopicProblem(
            name,
            False,
            f"internal topic {name}: Kafka did not return its configuration "
            f"({errors.get(name, 'no answer')}), so its cleanup.policy (compact for a "
            "changelog) and max.message.bytes are not checked; allow the worker to describe "
            "its topics' configurations (DescribeConfigs)",
        )
    if "compact" not in _policies(want.config):
        return None
    policies = _policies(have.config)
    shown = ",".join(sorted(policies)) or "(none)"
    if "compact" not in policies:
        return TopicProblem(
            name,
            True,
            f"internal topic {name} has cleanup.policy={shown}; a state changelog "
            "needs compact: otherwise Kafka deletes the replicator's state (checkpoints, "
            "scan cursors, table phases) by age and a restart loses it; fix it with "
            f"kafka-configs --alter --entity-type topics --entity-name {name} "
            "--add-config cleanup.policy=compact",
        )
    if "delete" in policies:
        return TopicProblem(
            name,
            False,
            f"internal topic {name} has cleanup.policy={shown}: state not rewritten "
            "within the topic's retention.ms is deleted (a table idle that long loses "
            "its checkpoints); set cleanup.policy=compact",
        )
    return None


def _message_size(
    name: str, want: TopicSpec, have: TopicFacts, errors: Mapping[str, str], brokers: int
) -> TopicProblem | None:
    need = int(want.config.get("max.message.bytes", "0"))
    limit = int((have.config or {}).get("max.message.bytes", str(need)))
    if limit >= need:
        return None
    return TopicProblem(
        name,
        False,
        f"internal topic {name} has max.message.bytes={limit}; the replicator's state "
        f"records need up to {need} (a table whose stream has thousands of shards): "
        f"raise it with kafka-configs --alter --entity-type topics --entity-name {name} "
        f"--add-config max.message.bytes={need}",
    )


def _replication(
    name: str, want: TopicSpec, have: TopicFacts, errors: Mapping[str, str], brokers: int
) -> TopicProblem | None:
    if have.replication < want.replication:
        return TopicProblem(
            name,
            False,
            f"internal topic {name} has replication factor {have.replication}, "
            f"KAFKA_TOPIC_REPLICATION is {want.replication}: losing a broker may lose the "
            "replicator's state; add replicas with kafka-reassign-partitions",
        )
    if have.replication == 1 and brokers > 1:
        return TopicProblem(
            name,
            False,
            f"internal topic {name} has replication factor 1 on a cluster of {brokers} "
            "brokers: losing one broker loses the replicator's state (checkpoints, scan "
            "cursors); set KAFKA_TOPIC_REPLICATION (3 on a real cluster) before the first "
            "start, or add replicas with kafka-reassign-partitions",
        )
    return None
