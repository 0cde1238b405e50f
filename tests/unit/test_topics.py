"""Security item 5: what is wrong with existing internal topics, judged at start from what
Kafka describes (app.domain.topics; the describing is app.bootstrap's)."""

from __future__ import annotations

import pytest

from app.domain.topics import TopicFacts, TopicSpec, internal_topic_problems

BIG = {"max.message.bytes": "16777216"}
COMPACT = {"cleanup.policy": "compact", **BIG}
WANTED = {
    "r-control": TopicSpec(8, 1, BIG),
    "r-tables-changelog": TopicSpec(8, 1, COMPACT),
    "r-units-changelog": TopicSpec(8, 1, COMPACT),
}


def facts(partitions: int = 8, replication: int = 1, **config: str) -> TopicFacts:
    return TopicFacts(
        partitions,
        replication,
        {"cleanup.policy": "delete", **BIG, **{k.replace("_", "."): v for k, v in config.items()}},
    )


def as_created(**changed: TopicFacts) -> dict[str, TopicFacts]:
    found = {
        name: TopicFacts(s.partitions, s.replication, {"cleanup.policy": "delete", **s.config})
        for name, s in WANTED.items()
    }
    return {**found, **changed}


def test_topics_as_created_have_no_problem() -> None:
    assert internal_topic_problems(WANTED, as_created(), brokers=1) == []


@pytest.mark.parametrize("topic", sorted(WANTED))
def test_another_partition_count_is_fatal_naming_the_topic_and_both_counts(topic: str) -> None:
    config = {"cleanup_policy": "compact"} if topic.endswith("changelog") else {}
    (problem,) = internal_topic_problems(
        WANTED, as_created(**{topic: facts(partitions=2, **config)}), brokers=1
    )
    assert problem.fatal and problem.topic == topic
    assert topic in problem.message and "2 partitions" in problem.message
    assert "STATE_PARTITIONS is 8" in problem.message


@pytest.mark.parametrize("policy", ["delete", ""])
def test_a_changelog_that_is_not_compacted_is_fatal(policy: str) -> None:
    (problem,) = internal_topic_problems(
        WANTED, as_created(**{"r-units-changelog": facts(cleanup_policy=policy)}), brokers=1
    )
    assert problem.fatal and problem.topic == "r-units-changelog"
    assert "cleanup.policy" in problem.message and "compact" in problem.message


def test_compact_and_delete_is_a_warning() -> None:
    (problem,) = internal_topic_problems(
        WANTED,
        as_created(**{"r-tables-changelog": facts(cleanup_policy="compact,delete")}),
        brokers=1,
    )
    assert not problem.fatal and "retention.ms" in problem.message


def test_the_control_topic_may_be_deleted_by_time() -> None:
    assert (
        internal_topic_problems(
            WANTED, as_created(**{"r-control": facts(cleanup_policy="delete")}), brokers=1
        )
        == []
    )


def test_a_replication_factor_below_the_setting_is_a_warning() -> None:
    wanted = {name: spec._replace(replication=3) for name, spec in WANTED.items()}
    found = {
        name: TopicFacts(s.partitions, 2 if name == "r-control" else 3, s.config)
        for name, s in wanted.items()
    }
    (problem,) = internal_topic_problems(wanted, found, brokers=3)
    assert not problem.fatal and problem.topic == "r-control"
    assert "replication factor 2" in problem.message and "KAFKA_TOPIC_REPLICATION is 3" in (
        problem.message
    )


def test_replication_factor_1_on_a_cluster_of_several_brokers_is_a_warning() -> None:
    problems = internal_topic_problems(WANTED, as_created(), brokers=3)
    assert {p.topic for p in problems} == set(WANTED)
    assert not any(p.fatal for p in problems)
    assert all("replication factor 1" in p.message and "3 brokers" in p.message for p in problems)


def test_a_smaller_record_limit_is_a_warning() -> None:
    (problem,) = internal_topic_problems(
        WANTED, as_created(**{"r-control": facts(max_message_bytes="1048588")}), brokers=1
    )
    assert not problem.fatal and "max.message.bytes=1048588" in problem.message
    assert "16777216" in problem.message


def test_a_topic_kafka_does_not_describe_is_fatal() -> None:
    found = as_created()
    del found["r-control"]
    (problem,) = internal_topic_problems(WANTED, found, brokers=1)
    assert problem.fatal and problem.topic == "r-control"


def test_all_problems_of_a_topic_are_reported() -> None:
    problems = internal_topic_problems(
        WANTED, as_created(**{"r-tables-changelog": facts(partitions=4)}), brokers=3
    )
    found = [(p.topic, p.fatal) for p in problems if p.topic == "r-tables-changelog"]
    assert sorted(found) == [
        ("r-tables-changelog", False),
        ("r-tables-changelog", True),
        ("r-tables-changelog", True),
    ]


def test_kafkas_error_is_named_for_a_topic_it_does_not_describe() -> None:
    found = as_created()
    del found["r-control"]
    (problem,) = internal_topic_problems(
        WANTED, found, brokers=1, errors={"r-control": "TopicAuthorizationFailedError"}
    )
    assert problem.fatal and "TopicAuthorizationFailedError" in problem.message


def test_a_configuration_kafka_does_not_return_is_a_warning_not_a_guess() -> None:
    """Without permission to describe topic configurations the worker still starts; it
    says what it could not check."""
    found = as_created(**{"r-units-changelog": TopicFacts(8, 1, None)})
    (problem,) = internal_topic_problems(
        WANTED, found, brokers=1, errors={"r-units-changelog": "TopicAuthorizationFailedError"}
    )
    assert not problem.fatal and problem.topic == "r-units-changelog"
    assert "not checked" in problem.message and "TopicAuthorizationFailedError" in (problem.message)
