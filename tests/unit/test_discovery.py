from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.discovery import (
    ExcludePattern,
    Selection,
    TagFilter,
    diff,
    matches,
    parse_tag_filters,
    refusal,
    render_tag_filters,
    select,
    table_name_from_arn,
    to_tagging_api_filters,
)
from app.domain.model import TableInfo


def test_parse_grammar() -> None:
    assert parse_tag_filters("datalake-ingest") == (TagFilter("datalake-ingest"),)
    assert parse_tag_filters(" team : data , ml ;env:prod ") == (
        TagFilter("team", ("data", "ml")),
        TagFilter("env", ("prod",)),
    )
    assert parse_tag_filters("") == () == parse_tag_filters("   ")


def test_parse_escapes_and_colons_in_values() -> None:
    assert parse_tag_filters(r"aws\:cloudformation\:stack-name:orders") == (
        TagFilter("aws:cloudformation:stack-name", ("orders",)),
    )
    assert parse_tag_filters("arn:arn:aws:iam::1:role/x") == (
        TagFilter("arn", ("arn:aws:iam::1:role/x",)),
    )
    assert parse_tag_filters(r"k:a\,b,c\;d,\ e") == (TagFilter("k", ("a,b", "c;d", " e")),)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (":v", "empty key"),
        ("a;;b", "empty key"),
        ("a;", "empty key"),
        ("a;b;a:x", "twice"),
        ("k:", "empty value"),
        ("k:a,,b", "empty value"),
        ("k:a,", "empty value"),
        ("k:a,a", "twice"),
        ("k\\", "dangling"),
    ],
)
def test_parse_rejects_malformed(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_tag_filters(text)


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
_filters = st.lists(
    st.builds(TagFilter, _text, st.lists(_text, max_size=4, unique=True).map(tuple)),
    max_size=5,
    unique_by=lambda f: f.key,
).map(tuple)


@given(_filters)
def test_render_then_parse_round_trips(filters: tuple[TagFilter, ...]) -> None:
    assert parse_tag_filters(render_tag_filters(filters)) == filters


@given(st.text(alphabet=" :;,\\ab", max_size=20))
def test_parse_fails_only_with_value_error(text: str) -> None:
    try:
        filters = parse_tag_filters(text)
    except ValueError:
        return
    assert parse_tag_filters(render_tag_filters(filters)) == filters


def test_matches_and_across_keys_or_within_values() -> None:
    filters = parse_tag_filters("team:data,ml;ingest")
    assert matches({"team": "ml", "ingest": "", "x": "y"}, filters)
    assert matches({"team": "data", "ingest": "yes"}, filters)
    assert not matches({"team": "web", "ingest": "yes"}, filters)
    assert not matches({"team": "data"}, filters)
    assert not matches({"team": "data", "ingest": "yes"}, ())  # no filter selects nothing


def test_to_tagging_api_filters() -> None:
    assert to_tagging_api_filters(parse_tag_filters("team:data,ml;ingest")) == [
        {"Key": "team", "Values": ["data", "ml"]},
        {"Key": "ingest"},
    ]
    assert to_tagging_api_filters(()) == []


def test_select() -> None:
    names = ["b-test", "a", "c", "a", "b"]
    assert select(names, [], None) == Selection(["a", "b", "b-test", "c"], {})
    assert select(names, ["c", "b-test", "zzz"], None).names == ["b-test", "c"]
    assert select(names, [], ExcludePattern("-test")).names == ["a", "b", "c"]
    assert select(names, ["b", "b-test"], ExcludePattern("^b$")).names == ["b-test"]


def test_an_exclude_pattern_that_cannot_decide_in_time_refuses_the_table_quickly() -> None:
    """Security item 5: (a+)+$ backtracks exponentially (Python's re: 4 s on a 24-character
    name, doubling per character).  Each search is bounded; a name it cannot decide on is
    refused with the reason, neither replicated against the exclusion nor silently dropped."""
    exclude = ExcludePattern("(a+)+$")  # the worker refuses it at start; discovery copes too
    short, long = "a" * 24 + "-", "a" * 254 + "-"
    started = time.monotonic()
    chosen = select([long, short, "orders", "aaa"], [], exclude)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, elapsed
    assert chosen.names == sorted([long, short, "orders"])  # "aaa" is excluded (re.search)
    assert set(chosen.refused) == {long} or set(chosen.refused) == {long, short}
    reason = chosen.refused[long]
    assert "DYNAMODB_TABLES_EXCLUDE" in reason and "'(a+)+$'" in reason and "50 ms" in reason
    assert "refused" in reason
    with pytest.raises(TimeoutError):
        exclude.search(long)


def test_an_exclude_pattern_that_does_not_compile_is_a_value_error() -> None:
    for bad in ["(", "a{99999999999}", "(" * 500 + ")" * 500, "[z-a]"]:
        with pytest.raises(ValueError):
            ExcludePattern(bad)


def test_the_start_probe_finds_patterns_that_backtrack_catastrophically() -> None:
    for bad in [
        "(a+)+$",
        "(a|aa)+$",
        "(a*)*$",
        "([a-z]+)+$",
        "(x+x+)+y",
        "(-+)+$",
        r"(\w+\d*)+$",
        "(a+)+b",
    ]:
        assert ExcludePattern(bad).undecided_probe() is not None, bad
    for fine in ["-test$", "^tmp-", "^(?!prod-)", r"\.v\d+$", "(?i)archive", "a+b+c+$", ""]:
        assert ExcludePattern(fine).undecided_probe() is None, fine


def test_diff() -> None:
    assert diff(["c", "a", "b"], ["b", "d", "e"]) == (["a", "c"], ["d", "e"])
    assert diff([], []) == ([], [])


def test_table_name_from_arn() -> None:
    assert table_name_from_arn("arn:aws:dynamodb:eu-west-1:123456789012:table/Orders") == "Orders"
    stream = "arn:aws:dynamodb:eu-west-1:1:table/Orders.v2/stream/2024-01-01T00:00:00.000"
    assert table_name_from_arn(stream) == "Orders.v2"
    assert table_name_from_arn("arn:aws-cn:dynamodb:cn-north-1:1:table/t_1") == "t_1"
    for bad in [
        "Orders",
        "arn:aws:s3:::bucket",
        "arn:aws:dynamodb:r:1:table/",
        "arn:aws:dynamodb:r:1:global-table/g",
    ]:
        with pytest.raises(ValueError, match="not a DynamoDB table ARN"):
            table_name_from_arn(bad)


def _table(view: str | None) -> TableInfo:
    arn = "arn:aws:dynamodb:us-east-1:1:table/orders"
    return TableInfo("orders", arn, ("pk",), f"{arn}/stream/2024" if view else None, view)


@pytest.mark.parametrize("view", ["NEW_AND_OLD_IMAGES", "NEW_IMAGE"])
def test_streams_with_the_new_image_are_accepted(view: str) -> None:
    assert refusal(_table(view), needs_stream=True) is None


@pytest.mark.parametrize("view", ["KEYS_ONLY", "OLD_IMAGE"])
def test_streams_without_the_new_image_are_refused_with_the_fix(view: str) -> None:
    reason = refusal(_table(view), needs_stream=True)
    assert reason is not None and reason.startswith(f"stream view type {view} carries no new")
    assert "NEW_AND_OLD_IMAGES" in reason and "DYNAMODB_SYNC_MODE=snapshot_only" in reason


def test_no_stream_is_refused_in_the_stream_modes_only() -> None:
    reason = refusal(_table(None), needs_stream=True)
    assert reason is not None and reason.startswith("no DynamoDB stream enabled")
    # snapshot_only reads no stream: every table is fine
    for view in (None, "KEYS_ONLY", "OLD_IMAGE", "NEW_IMAGE"):
        assert refusal(_table(view), needs_stream=False) is None


# ---------------------------------------------------------------- topic collisions (issue 11)
def test_tables_whose_output_topic_is_not_theirs_are_refused() -> None:
    from app.domain.discovery import topic_refusals

    app_id = "dynamodb-replicator"
    names = ["orders", "replicator-tables-changelog", "replicator-dlq", "a.b", "a_b", "x" * 250]
    refused = topic_refusals(names, "dynamodb-", app_id)
    assert set(refused) == {"replicator-tables-changelog", "replicator-dlq", "a_b", "x" * 250}
    assert "replicator's own topics" in refused["replicator-dlq"]
    assert "collides with dynamodb-a.b" in refused["a_b"]
    assert "249" in refused["x" * 250]
    # an empty prefix: Kafka's and other systems' topics are never written into
    bare = topic_refusals(
        ["_schemas", "connect-configs", "orders", "__consumer_offsets"], "", app_id
    )
    assert set(bare) == {"_schemas", "connect-configs", "__consumer_offsets"}
    assert topic_refusals(["orders", "b.c"], "dynamodb-", app_id) == {}
    # the app id as a prefix of the output prefix (as the integration tests use): only
    # the app's own topics and Faust's (<app_id>-__…) are refused
    assert set(
        topic_refusals(
            ["orders", "app-control", "app-__assignor-__leader", "app-buffer-orders-1"],
            "it-1-",
            "it-1-app",
        )
    ) == {"app-control", "app-__assignor-__leader", "app-buffer-orders-1"}
    # '.' and '_' are one character to Kafka: my_app-control is my.app's control topic
    assert set(topic_refusals(["app-control", "app-dlq", "app-x"], "my_", "my.app")) == {
        "app-control",
        "app-dlq",
    }
