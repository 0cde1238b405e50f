"""Issue 11 item 3: one deployment per APP_ID (app.domain.deployment)."""

from __future__ import annotations

import pytest

from app.domain.deployment import IDENTITY, Record, conflict, current, differences, fingerprint
from app.settings import Settings

PROD = Settings.from_env({"KAFKA_TOPIC_PREFIX": "prod-"}).identity()
STAGING = Settings.from_env({"KAFKA_TOPIC_PREFIX": "staging-", "STATE_PARTITIONS": "4"}).identity()


def rec(kind: str, identity: dict[str, str], supersedes: str | None = None) -> Record:
    return Record(
        kind, fingerprint(identity), identity, "host", "2026-11-28T08:00:00+00:00", supersedes
    )


def test_the_identity_names_every_setting_that_makes_a_deployment() -> None:
    assert list(PROD) == list(IDENTITY)
    assert PROD["KAFKA_TOPIC_PREFIX"] == "prod-" and PROD["STATE_PARTITIONS"] == "32"
    # secrets stay masked in what is recorded and compared
    with_creds = Settings.from_env({"AWS_ENDPOINT_URL": "http://user:pw@localhost:5000"})
    assert "pw" not in str(with_creds.identity())


@pytest.mark.parametrize(
    "name, value",
    [
        ("STATE_PARTITIONS", "4"),
        ("KAFKA_TOPIC_PREFIX", "other-"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/r"),
        ("DYNAMODB_TABLES", "orders,users"),
        ("DYNAMODB_TAG_FILTERS", "team:data"),
        ("KAFKA_OUTPUT_FORMAT", "seed"),
        ("AWS_ENDPOINT_URL", "http://localhost:5000"),
        ("DYNAMODB_TABLES_EXCLUDE", "^tmp"),
    ],
)
def test_each_identity_setting_changes_the_fingerprint(name: str, value: str) -> None:
    other = Settings.from_env({"KAFKA_TOPIC_PREFIX": "prod-", name: value}).identity()
    assert fingerprint(other) != fingerprint(PROD)
    assert [d.split(":")[0] for d in differences(other, PROD)] == [name]


def test_other_settings_do_not_make_another_deployment() -> None:
    tuned = Settings.from_env(
        {
            "KAFKA_TOPIC_PREFIX": "prod-",
            "DYNAMODB_POLL_INTERVAL": "0.5",
            "DYNAMODB_RAW_HTTP": "false",
            "LOG_LEVEL": "debug",
            "WORKER_MAX_PAGES": "4",
            "BROKER_URL": "kafka://b2:9092",
        }
    ).identity()
    assert fingerprint(tuned) == fingerprint(PROD)


def test_the_first_initial_record_owns_the_app_id_even_when_two_first_starts_race() -> None:
    assert current([]) is None
    first, second = rec("initial", PROD), rec("initial", STAGING)
    assert current([first, second]) == first
    assert current([second, first]) == second
    # whoever wrote second learns it lost, naming what differs
    why = conflict("dynamodb-replicator", STAGING, first)
    assert why is not None
    assert "KAFKA_TOPIC_PREFIX: 'staging-' here, 'prod-' in the deployment" in why
    assert "STATE_PARTITIONS: '4' here, '32' in the deployment" in why
    assert "deployment --adopt" in why
    assert conflict("dynamodb-replicator", PROD, first) is None


def test_adopt_records_change_the_owner_only_when_they_supersede_it() -> None:
    first = rec("initial", PROD)
    adopt = rec("adopt", STAGING, supersedes=first.fingerprint)
    stale = rec("adopt", PROD, supersedes="0" * 16)  # adopted against an older owner
    assert current([first, adopt]) == adopt
    assert current([first, adopt, stale]) == adopt
    back = rec("adopt", PROD, supersedes=adopt.fingerprint)
    assert current([first, adopt, back]) == back
    assert current([adopt]) is None  # an adopt without an owner owns nothing


def test_unreadable_records_are_skipped_not_fatal() -> None:
    good = rec("initial", PROD)
    assert Record.from_json(good.to_json()) == good
    for bad in (
        None,
        [],
        "x",
        {"kind": "initial"},
        {"kind": "other", "fingerprint": "f", "settings": {}},
        {"kind": "initial", "fingerprint": 1, "settings": {}},
    ):
        assert Record.from_json(bad) is None
    assert good.key(1) != good.key(2)


def test_a_deployment_started_with_the_old_default_is_told_what_to_set() -> None:
    """STATE_PARTITIONS' default grew from 8 to 32: a deployment first started with the
    old default and upgraded without setting it stops at start, told to set 8 (its topics
    have 8 partitions; changing them would move every unit's state)."""
    old = Settings.from_env({"KAFKA_TOPIC_PREFIX": "prod-", "STATE_PARTITIONS": "8"}).identity()
    why = conflict("dynamodb-replicator", PROD, rec("initial", old))
    assert why is not None
    assert "STATE_PARTITIONS: '32' here, '8' in the deployment" in why
    assert "set STATE_PARTITIONS=8" in why
    # other differences carry no such hint
    why = conflict("dynamodb-replicator", STAGING, rec("initial", {**STAGING, "AWS_REGION": "x"}))
    assert why is not None and "set STATE_PARTITIONS" not in why
