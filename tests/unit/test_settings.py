from __future__ import annotations

import dataclasses
import math
import re
import time
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest

from app.domain.discovery import TagFilter
from app.domain.errors import ConfigError
from app.settings import LogLevel, SaslMechanism, SecurityProtocol, Settings, StateStore


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.broker_url == ("kafka://localhost:9092",)
    assert s.app_id == "dynamodb-replicator"
    assert s.aws_region == "us-east-1"
    assert s.endpoint_for("dynamodb") is None
    assert s.dynamodb_tag_filters == (TagFilter("datalake-ingest"),)
    assert s.dynamodb_tables == () and s.dynamodb_tables_exclude is None
    assert (s.dynamodb_discovery_interval, s.dynamodb_sync_mode, s.dynamodb_stream_start) == (
        60.0,
        "snapshot_and_stream",
        "trim_horizon",
    )
    assert (
        s.dynamodb_scan_segments,
        s.dynamodb_scan_rcu_percent,
        s.dynamodb_scan_max_rcu,
        s.dynamodb_scan_page_limit,
    ) == (0, 50.0, 0.0, 0)
    assert (
        s.dynamodb_shard_refresh_interval,
        s.dynamodb_poll_interval,
        s.dynamodb_snapshot_overlap,
    ) == (30.0, 1.0, 60.0)
    assert s.dynamodb_raw_http is True
    assert (s.kafka_topic_prefix, s.kafka_topic_partitions, s.kafka_topic_replication) == (
        "dynamodb-",
        8,
        1,
    )
    assert (s.kafka_output_format, s.kafka_tombstones, s.kafka_max_record_bytes) == (
        "native",
        True,
        8_388_608,
    )
    assert s.kafka_sasl_password is None
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("PLAINTEXT", "PLAIN")
    assert (s.kafka_msk_iam_region, s.kafka_msk_iam_role_arn) == (None, None)
    assert s.msk_iam_region == "us-east-1"  # AWS_REGION's default
    assert (s.state_partitions, s.state_store, s.log_level, s.log_format) == (
        32,  # 8 before placement: a deployment could not grow past 8 workers
        "rocksdb://",
        "info",
        "text",
    )
    assert s.topic_for("orders") == "dynamodb-orders"


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ID", "from-os-environ")
    assert Settings.from_env().app_id == "from-os-environ"


def test_parses_given_values() -> None:
    s = Settings.from_env(
        {
            "BROKER_URL": "b1:9092, kafka://b2:9093 ,kafka://b3",
            "DYNAMODB_TAG_FILTERS": "team:data,ml; ingest",
            "DYNAMODB_TABLES": " orders, ,users,orders ",
            "DYNAMODB_TABLES_EXCLUDE": "-test$",
            "DYNAMODB_SCAN_RCU_PERCENT": "100",
            "KAFKA_TOMBSTONES": "Off",
            "KAFKA_TOPIC_PREFIX": "",
            "LOG_LEVEL": "DEBUG",
            "STATE_STORE": "memory://",
        }
    )
    assert s.broker_url == ("kafka://b1:9092", "kafka://b2:9093", "kafka://b3")
    assert s.dynamodb_tag_filters == (TagFilter("team", ("data", "ml")), TagFilter("ingest"))
    assert s.dynamodb_tables == ("orders", "users")
    assert s.dynamodb_tables_exclude is not None
    assert s.dynamodb_tables_exclude.search("orders-test")
    assert s.dynamodb_scan_rcu_percent == 100.0
    assert s.kafka_tombstones is False
    assert s.topic_for("orders") == "orders"
    assert (s.log_level, s.state_store) == ("debug", "memory://")


@pytest.mark.parametrize(
    ("field", "variable", "kind"),
    [
        ("kafka_security_protocol", "KAFKA_SECURITY_PROTOCOL", SecurityProtocol),
        ("kafka_sasl_mechanism", "KAFKA_SASL_MECHANISM", SaslMechanism),
        ("log_level", "LOG_LEVEL", LogLevel),
        ("state_store", "STATE_STORE", StateStore),
    ],
)
def test_choices_are_typed_and_every_one_is_accepted(
    field: str, variable: str, kind: object
) -> None:
    assert get_type_hints(Settings)[field] == kind
    sasl = {"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}  # SASL_*: both required
    for value in get_args(kind):
        for given in (value, value.lower(), value.upper()):
            env = {variable: given, **sasl}
            if value == "AWS_MSK_IAM":
                env = {variable: given, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}
            assert getattr(Settings.from_env(env), field) == value


def test_blank_means_default_except_where_empty_is_meaningful() -> None:
    s = Settings.from_env({"APP_ID": "  ", "DYNAMODB_TAG_FILTERS": ""})
    assert s.app_id == "dynamodb-replicator"
    assert s.dynamodb_tag_filters == ()


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("BROKER_URL", "http://b:9092", "kafka://"),
        ("BROKER_URL", "b", "host:port"),
        ("BROKER_URL", "b:notaport", "host:port"),
        ("BROKER_URL", ",", "host:port"),
        ("APP_ID", "my app", "letters, digits"),
        # <APP_ID>-__assignor-__leader (Faust's) would pass Kafka's 249 characters
        ("APP_ID", "a" * 230, "1-229"),
        ("AWS_REGION", "EU WEST", "region"),
        ("AWS_DEFAULT_REGION", "eu_west!", "region"),
        ("AWS_ENDPOINT_URL", "localhost:4566", "http"),
        ("AWS_ENDPOINT_URL_DYNAMODB", "ftp://x", "http"),
        ("AWS_ENDPOINT_URL_STS", "sts.local", "http"),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:user/bob", "IAM role ARN"),
        ("AWS_ROLE_ARN", "arn:aws:iam::12345678901:role/r", "IAM role ARN"),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/", "IAM role ARN"),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/a b", "IAM role ARN"),
        ("AWS_ROLE_ARN", "arn:aws:sts::123456789012:role/r", "IAM role ARN"),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/" + "r" * 65, "IAM role ARN"),
        ("AWS_ROLE_SESSION_NAME", "x", "2-64"),
        ("AWS_ROLE_SESSION_NAME", "my session", "2-64"),
        ("AWS_ROLE_SESSION_NAME", "s" * 65, "2-64"),
        ("AWS_ROLE_DURATION", "899", "900 to 43200"),
        ("AWS_ROLE_DURATION", "43201", "900 to 43200"),
        ("AWS_ROLE_DURATION", "1h", "900 to 43200"),
        ("DYNAMODB_TAG_FILTERS", "a;a", "twice"),
        ("DYNAMODB_TAG_FILTERS", "k:", "empty value"),
        ("DYNAMODB_TABLES", "orders,x", "table names"),
        ("DYNAMODB_TABLES_EXCLUDE", "(", "regular expression"),
        # backtracks catastrophically: a 24-character name took Python's re 4 s
        ("DYNAMODB_TABLES_EXCLUDE", "(a+)+$", "within"),
        ("DYNAMODB_TABLES_EXCLUDE", "x" * 1025, "1024"),
        ("DYNAMODB_DISCOVERY_INTERVAL", "0", ">= 1"),
        ("DYNAMODB_DISCOVERY_INTERVAL", "1e-9", ">= 1"),
        ("DYNAMODB_DISCOVERY_INTERVAL", "inf", ">= 1"),
        ("DYNAMODB_DISCOVERY_INTERVAL", "86401", "<= 86400"),
        ("DYNAMODB_SYNC_MODE", "both", "snapshot_and_stream"),
        ("DYNAMODB_STREAM_START", "at_timestamp", "latest"),
        ("DYNAMODB_SCAN_SEGMENTS", "1000001", "0 to 1000000"),
        ("DYNAMODB_SCAN_SEGMENTS", "2.5", "integer"),
        ("DYNAMODB_SCAN_RCU_PERCENT", "0", "<= 100"),
        ("DYNAMODB_SCAN_RCU_PERCENT", "101", "<= 100"),
        ("DYNAMODB_SCAN_MAX_RCU", "-1", ">= 0"),
        ("DYNAMODB_SCAN_PAGE_LIMIT", "-1", "0 to 1000000"),
        ("DYNAMODB_SHARD_REFRESH_INTERVAL", "nan", ">= 1"),
        ("DYNAMODB_POLL_INTERVAL", "soon", ">= 0"),
        ("DYNAMODB_SNAPSHOT_OVERLAP", "-0.5", ">= 1"),
        # stream timestamps are rounded down to the second: 0 would skip changes
        ("DYNAMODB_SNAPSHOT_OVERLAP", "0", ">= 1"),
        ("DYNAMODB_STREAM_RETENTION", "90000", "<= 86400"),
        ("DYNAMODB_STREAM_RETENTION", "10", ">= 24"),
        ("KAFKA_TOPIC_PREFIX", "dyn/", "letters, digits"),
        ("KAFKA_TOPIC_PARTITIONS", "0", "1 to 10000"),
        ("KAFKA_TOPIC_REPLICATION", "three", "1 to 16"),
        ("KAFKA_OUTPUT_FORMAT", "avro", "native, seed"),
        ("KAFKA_TOMBSTONES", "maybe", "true/false"),
        ("DYNAMODB_RAW_HTTP", "sometimes", "true/false"),
        ("KAFKA_MAX_RECORD_BYTES", "1023", "1024 to 16777216"),
        ("KAFKA_MAX_RECORD_BYTES", "16777217", "1024 to 16777216"),
        ("KAFKA_SESSION_TIMEOUT", "5", ">= 6"),
        ("KAFKA_SESSION_TIMEOUT", "1801", "<= 1800"),
        ("KAFKA_SEND_TIMEOUT", "0.5", ">= 1"),
        ("KAFKA_SEND_TIMEOUT", "never", ">= 1"),
        ("KAFKA_SECURITY_PROTOCOL", "TLS", "sasl_ssl"),
        ("KAFKA_SASL_MECHANISM", "GSSAPI", "aws_msk_iam"),
        ("KAFKA_MSK_IAM_REGION", "eu_west!", "region"),
        ("KAFKA_MSK_IAM_ROLE_ARN", "arn:aws:iam::123456789012:user/bob", "IAM role ARN"),
        ("STATE_PARTITIONS", "1025", "1 to 1024"),
        ("STATE_STORE", "redis://", "rocksdb://"),
        ("LOG_LEVEL", "trace", "warning"),
        ("LOG_FORMAT", "xml", "json"),
    ],
)
def test_invalid_value_names_variable_accepted_and_given(
    variable: str, value: str, accepted: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({variable: value})
    assert info.value.setting == variable
    message = str(info.value)
    assert message.startswith(f"{variable}: ") and accepted in message and repr(value) in message


def test_assume_role_settings() -> None:
    s = Settings.from_env({})
    assert (
        s.aws_role_arn,
        s.aws_role_session_name,
        s.aws_role_external_id,
        s.aws_role_duration,
    ) == (None, "dynamodb-replicator", None, 3600)
    s = Settings.from_env(
        {
            "AWS_ROLE_ARN": " arn:aws:iam::123456789012:role/team/data/replicator-Reader_1 ",
            "AWS_ROLE_SESSION_NAME": "worker-1@eu.west=1,a+b",
            "AWS_ROLE_EXTERNAL_ID": "a1:b/c=d,e@f.g-h_i+j",
            "AWS_ROLE_DURATION": "43200",
        }
    )
    assert s.aws_role_arn == "arn:aws:iam::123456789012:role/team/data/replicator-Reader_1"
    assert s.aws_role_session_name == "worker-1@eu.west=1,a+b"
    assert s.aws_role_external_id == "a1:b/c=d,e@f.g-h_i+j"
    assert s.aws_role_duration == 43200
    for arn in ("arn:aws-cn:iam::123456789012:role/r", "arn:aws-us-gov:iam::123456789012:role/r"):
        assert Settings.from_env({"AWS_ROLE_ARN": arn}).aws_role_arn == arn


def test_external_id_is_a_secret() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {
                "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/r",
                "AWS_ROLE_EXTERNAL_ID": "s3cr3t id",
            }
        )
    assert info.value.setting == "AWS_ROLE_EXTERNAL_ID"
    assert "s3cr3t" not in str(info.value) and "not shown" in str(info.value)
    s = Settings.from_env(
        {"AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/r", "AWS_ROLE_EXTERNAL_ID": "s3cr3t-id"}
    )
    assert s.masked()["aws_role_external_id"] == "***" and "s3cr3t" not in repr(s)
    assert s.masked()["aws_role_arn"] == "arn:aws:iam::123456789012:role/r"


def test_external_id_needs_a_role() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"AWS_ROLE_EXTERNAL_ID": "s3cr3t-id"})
    assert info.value.setting == "AWS_ROLE_EXTERNAL_ID"
    assert "AWS_ROLE_ARN" in str(info.value) and "s3cr3t" not in str(info.value)


def test_aws_region_falls_back_to_default_region() -> None:
    assert Settings.from_env({"AWS_DEFAULT_REGION": "eu-west-1"}).aws_region == "eu-west-1"
    env = {"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "eu-west-1"}
    assert Settings.from_env(env).aws_region == "eu-central-1"


def test_endpoint_fallback() -> None:
    s = Settings.from_env(
        {
            "AWS_ENDPOINT_URL": "http://localhost:4566",
            "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": "https://streams.local:8443",
        }
    )
    assert s.endpoint_for("dynamodb") == "http://localhost:4566"
    assert s.endpoint_for("resourcegroupstaggingapi") == "http://localhost:4566"
    assert s.endpoint_for("dynamodbstreams") == "https://streams.local:8443"
    only = Settings.from_env({"AWS_ENDPOINT_URL_DYNAMODB": "http://ddb:8000"})
    assert only.endpoint_for("dynamodb") == "http://ddb:8000"
    assert only.endpoint_for("dynamodbstreams") is None
    assert s.endpoint_for("sts") == "http://localhost:4566"
    sts = Settings.from_env(
        {
            "AWS_ENDPOINT_URL": "http://localhost:4566",
            "AWS_ENDPOINT_URL_STS": "https://sts.eu-west-1.amazonaws.com",
        }
    )
    assert sts.endpoint_for("sts") == "https://sts.eu-west-1.amazonaws.com"
    assert sts.endpoint_for("dynamodb") == "http://localhost:4566"
    with pytest.raises(ValueError, match="unknown service"):
        s.endpoint_for("s3")


SECRET = "s3cr3t-Pa55\n"


def test_secret_never_in_error_messages() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"KAFKA_SASL_PASSWORD": SECRET})
    assert info.value.setting == "KAFKA_SASL_PASSWORD"
    assert "s3cr3t" not in str(info.value) and "not shown" in str(info.value)


def test_broker_credentials_never_in_error_messages() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"BROKER_URL": "kafka://user:hunter2@b:9092"})
    assert info.value.setting == "BROKER_URL" and "hunter2" not in str(info.value)


def test_secret_masked_and_hidden_from_repr() -> None:
    s = Settings.from_env({"KAFKA_SASL_PASSWORD": " s3cr3t "})
    assert s.kafka_sasl_password == " s3cr3t "  # secrets are not trimmed
    masked = s.masked()
    assert masked["kafka_sasl_password"] == "***"
    assert not any("s3cr3t" in v for v in masked.values())
    assert "s3cr3t" not in repr(s)
    secret_fields = [f.name for f in dataclasses.fields(s) if f.metadata["secret"]]
    assert secret_fields == [
        "aws_role_external_id",
        "schema_registry_password",
        "kafka_sasl_password",
        "web_auth_token",
    ]


def test_masked_lists_every_setting_as_text() -> None:
    s = Settings.from_env(
        {
            "DYNAMODB_TAG_FILTERS": "team:data,ml;ingest",
            "DYNAMODB_TABLES": "a12,b12",
            "DYNAMODB_TABLES_EXCLUDE": "^tmp-",
        }
    )
    masked = s.masked()
    assert set(masked) == {f.name for f in dataclasses.fields(s)}
    assert all(isinstance(v, str) for v in masked.values())
    assert masked["dynamodb_tag_filters"] == "team:data,ml;ingest"
    assert masked["dynamodb_tables"] == "a12,b12"
    assert masked["dynamodb_tables_exclude"] == "^tmp-"
    assert masked["kafka_tombstones"] == "true"
    assert masked["kafka_sasl_password"] == ""
    assert masked["aws_role_external_id"] == ""


def test_topic_for_rejects_names_kafka_cannot_take() -> None:
    s = Settings.from_env({})
    with pytest.raises(ValueError):
        s.topic_for("x" * 250)
    with pytest.raises(ValueError):
        s.topic_for("bad/name")


def test_settings_are_frozen() -> None:
    s = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.app_id = "other"  # type: ignore[misc]


def test_credentials_inside_urls_never_show() -> None:
    """Issue 11 item 4: the settings dump printed a user:password inside AWS_ENDPOINT_URL."""
    s = Settings.from_env(
        {
            "AWS_ENDPOINT_URL": "http://ak:hunter2@localstack:4566/x",
            "AWS_ENDPOINT_URL_STS": "https://sts.local",
        }
    )
    assert s.aws_endpoint_url == "http://ak:hunter2@localstack:4566/x"  # used as given
    assert s.masked()["aws_endpoint_url"] == "http://***@localstack:4566/x"
    assert s.masked()["aws_endpoint_url_sts"] == "https://sts.local"
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.masked())
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"AWS_ENDPOINT_URL_DYNAMODB": "ftp://ak:hunter2@x"})
    assert "hunter2" not in str(info.value)


def test_a_topic_prefix_inside_the_apps_own_topics_is_refused() -> None:
    """Issue 11 item 2: output topics under '<APP_ID>-' share the app's namespace (a table
    could be named like a state topic; no prefix ACL could separate state from output)."""
    for app_id, prefix in (
        ("dynamodb-replicator", "dynamodb-replicator-"),
        ("dynamodb-replicator", "dynamodb-replicator-out-"),
        ("dynamodb_replicator", "dynamodb.replicator-x"),
    ):  # '.' = '_'
        with pytest.raises(ConfigError, match="KAFKA_TOPIC_PREFIX.*outside the app's own"):
            Settings.from_env({"APP_ID": app_id, "KAFKA_TOPIC_PREFIX": prefix})
    # the defaults, an empty prefix and an app id that merely starts like the prefix are fine
    for env in (
        {},
        {"KAFKA_TOPIC_PREFIX": ""},
        {"APP_ID": "cdc", "KAFKA_TOPIC_PREFIX": "cdc."},
        {"APP_ID": "it-1-app", "KAFKA_TOPIC_PREFIX": "it-1-"},
    ):
        Settings.from_env(env)


def test_every_setting_is_documented_in_the_readme() -> None:
    """Issue 11: the README's configuration table names every variable a worker reads, and
    its Security section names the web settings."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    missing = [
        env
        for f in dataclasses.fields(Settings)
        for env in f.metadata["env"]
        if f"`{env}`" not in table
    ]
    assert not missing, f"settings missing from the README's Configuration table: {missing}"
    security = readme.split("## Security", 1)[1].split("\n## ", 1)[0]
    for name in (
        "WEB_AUTH_TOKEN",
        "WEB_TLS_CERT",
        "WEB_TLS_KEY",
        "/healthz",
        "--web-bind",
        "KAFKA_TOPIC_PREFIX",
    ):
        assert name in security, name


# ---------------------------------------------------------------- bounds (security item 5)
ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = Settings.from_env({})
# a setting whose default is a number is numeric; its parsed default says int or float
NUMERIC = [
    f
    for f in dataclasses.fields(Settings)
    if isinstance(getattr(DEFAULTS, f.name), int | float)
    and not isinstance(getattr(DEFAULTS, f.name), bool)
]


def _var(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata["env"][0])


def test_the_numeric_settings_are_the_expected_ones() -> None:
    assert len(NUMERIC) == 20, [_var(f) for f in NUMERIC]


@pytest.mark.parametrize("value", ["1e300", "9" * 400, "-1e300", "-" + "9" * 400])
@pytest.mark.parametrize("f", NUMERIC, ids=_var)
def test_every_numeric_setting_is_bounded_on_both_sides(
    f: dataclasses.Field[Any], value: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({_var(f): value})
    assert info.value.setting == _var(f)


def _config_table() -> dict[str, dict[str, str]]:
    """README's Configuration table: every variable named in a row's first cell -> the row
    (column name -> cell)."""
    section = (ROOT / "README.md").read_text().split("\n## Configuration\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[2:]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for variable in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells["Variable"]):
            rows[variable] = cells
    return rows


_NUMBER_RANGE = re.compile(r"(?P<open>> )?(?P<lo>[0-9.]+)–(?P<hi>[0-9.]+)(?: \(.*\))?")
_LENGTH_RANGE = re.compile(r"(?P<lo>[0-9]+)–(?P<hi>[0-9]+) characters(?: .*)?")


# what a variable is accepted only together with
_CONTEXT = {"AWS_ROLE_EXTERNAL_ID": {"AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/r"}}


def _accepted(variable: str, raw: str) -> bool:
    try:
        Settings.from_env({**_CONTEXT.get(variable, {}), variable: raw})
    except ConfigError as exc:
        assert exc.setting == variable
        return False
    return True


@pytest.mark.parametrize("f", dataclasses.fields(Settings), ids=_var)
def test_the_readme_states_each_range_as_the_parser_applies_it(f: dataclasses.Field[Any]) -> None:
    """Every setting has a row in README's Configuration table; its Range cell is exactly
    what the parser accepts: the ends are accepted, the nearest values outside refused."""
    variable, table = _var(f), _config_table()
    assert variable in table, f"{variable} is not documented in README's Configuration table"
    cell = table[variable]["Range"]
    if f in NUMERIC:
        m = _NUMBER_RANGE.fullmatch(cell)
        assert m, f"{variable}: the Range cell {cell!r} is not 'lo–hi' (or '> lo–hi')"
        if isinstance(getattr(DEFAULTS, f.name), float):
            lo, hi = float(m["lo"]), float(m["hi"])
            below = lo if m["open"] else math.nextafter(lo, -math.inf)
            inside, outside = (
                [hi, *(() if m["open"] else (lo,))],
                [below, math.nextafter(hi, math.inf)],
            )
            inside_raw, outside_raw = map(repr, inside), map(repr, outside)
        else:
            assert not m["open"]
            lo_i, hi_i = int(m["lo"]), int(m["hi"])
            inside_raw, outside_raw = map(str, (lo_i, hi_i)), map(str, (lo_i - 1, hi_i + 1))
        for raw in inside_raw:
            assert _accepted(variable, raw), f"{variable}={raw} is in the README's range"
        for raw in outside_raw:
            assert not _accepted(variable, raw), f"{variable}={raw} is outside README's range"
    elif m := _LENGTH_RANGE.fullmatch(cell):
        lo_n, hi_n = int(m["lo"]), int(m["hi"])
        assert _accepted(variable, "a" * hi_n) and not _accepted(variable, "a" * (hi_n + 1))
        if lo_n > 1:
            assert not _accepted(variable, "a" * (lo_n - 1))
    else:
        assert not any(ch.isdigit() for ch in cell.split("(")[0]), (
            f"{variable}: Range {cell!r} states numbers the test cannot check"
        )


def test_app_id_leaves_room_for_the_longest_internal_topic_name() -> None:
    """Kafka refuses topic names over 249 characters; Faust names its leader topic
    <APP_ID>-__assignor-__leader (the longest of the app's topics)."""
    from types import SimpleNamespace

    from faust.assignor.leader_assignor import LeaderAssignor

    from app.domain.discovery import APP_ID_MAX, APP_TOPIC_SUFFIXES, KAFKA_TOPIC_MAX, STATE_TOPICS

    app_id = "a" * APP_ID_MAX
    fake = SimpleNamespace(app=SimpleNamespace(conf=SimpleNamespace(id=app_id)))
    # Faust's own naming of its leader topic
    leader = LeaderAssignor.__dict__["_leader_topic_name"].__get__(fake, LeaderAssignor)
    assert leader.removeprefix(app_id + "-") in APP_TOPIC_SUFFIXES
    assert set(STATE_TOPICS) <= set(APP_TOPIC_SUFFIXES)
    assert max(len(f"{app_id}-{suffix}") for suffix in APP_TOPIC_SUFFIXES) == KAFKA_TOPIC_MAX
    assert APP_ID_MAX == 229
    assert Settings.from_env({"APP_ID": app_id}).app_id == app_id


def test_the_test_suites_and_demos_own_settings_stay_accepted() -> None:
    """The bounds must not refuse what the integration tests, chaos run, bench and demo set
    (tests/integration/dynamo.worker_env and the extras passed to it)."""
    from bench.common import base_env
    from tests.integration.dynamo import worker_env

    stack = {"BROKER_URL": "kafka://127.0.0.1:9092", "AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}
    extras: list[dict[str, str]] = [
        {},
        {"DYNAMODB_POLL_INTERVAL": "0.5", "STATE_PARTITIONS": "12"},  # test_scale_out
        {
            "DYNAMODB_SCAN_PAGE_LIMIT": "25",
            "DYNAMODB_SCAN_SEGMENTS": "2",  # test_operations
            "DYNAMODB_SCAN_MAX_RCU": "1",
            "PROGRESS_LOG_INTERVAL": "1",
        },
        {"KAFKA_SESSION_TIMEOUT": "8", "DYNAMODB_SHARD_REFRESH_INTERVAL": "2"},  # chaos
        {"AWS_ROLE_DURATION": "900"},
        {"AWS_ROLE_DURATION": "1800"},  # test_assume_role
        {"DYNAMODB_DISCOVERY_INTERVAL": "5", "DYNAMODB_SHARD_REFRESH_INTERVAL": "5"},  # demo
    ]
    for extra in extras:
        Settings.from_env(worker_env(stack, "0123456789", **extra))
    Settings.from_env(
        base_env("bench-0123456789-run-app", "bench-0123456789-run-", DYNAMODB_SCAN_SEGMENTS="8")
    )


@pytest.mark.parametrize("pattern", ["-test$", "^tmp-", "^(?!prod-)", r"\.v\d+$", "(?i)ARCHIVE"])
def test_ordinary_exclude_patterns_keep_re_search_semantics(pattern: str) -> None:
    exclude = Settings.from_env({"DYNAMODB_TABLES_EXCLUDE": pattern}).dynamodb_tables_exclude
    assert exclude is not None and exclude.pattern == pattern
    for name in ("orders-test", "tmp-x", "prod-orders", "orders.v2", "old-archive-1", "orders"):
        assert exclude.search(name) == bool(re.search(pattern, name)), (pattern, name)


def test_a_catastrophic_exclude_pattern_is_refused_at_start_quickly() -> None:
    """(a+)+$ backtracks exponentially: Python's re took 4 s on a 24-character name."""
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"DYNAMODB_TABLES_EXCLUDE": "(a+)+$"})
    assert time.monotonic() - started < 1.0
    assert info.value.setting == "DYNAMODB_TABLES_EXCLUDE"
    assert "(a+)+$" in str(info.value)


def test_list_and_text_settings_are_bounded_too() -> None:
    """Issue 11 item 5: beyond numbers, lists stop at AWS's limits, names at sane lengths."""
    too_many_keys = ";".join(f"k{i}" for i in range(51))
    too_many_values = "team:" + ",".join(f"v{i}" for i in range(21))
    for variable, value in (
        ("DYNAMODB_TAG_FILTERS", too_many_keys),
        ("DYNAMODB_TAG_FILTERS", too_many_values),
        ("DYNAMODB_TAG_FILTERS", "k" * 129),
        ("DYNAMODB_TAG_FILTERS", "team:" + "v" * 257),
        ("DYNAMODB_TABLES", ",".join(f"t{i:05d}" for i in range(10_001))),
        ("KAFKA_SASL_USERNAME", "u" * 1025),
        ("KAFKA_SASL_USERNAME", "bad\nname"),
        ("KAFKA_SASL_PASSWORD", "p" * 1025),
    ):
        with pytest.raises(ConfigError, match=variable):
            Settings.from_env({variable: value})
    ok = Settings.from_env(
        {
            "DYNAMODB_TAG_FILTERS": ";".join(f"k{i}" for i in range(50)),
            "DYNAMODB_TABLES": ",".join(f"t{i:05d}" for i in range(10_000)),
        }
    )
    assert len(ok.dynamodb_tag_filters) == 50 and len(ok.dynamodb_tables) == 10_000


def test_the_coordinators_policy_comes_from_the_settings() -> None:
    s = Settings.from_env(
        {
            "DYNAMODB_SYNC_MODE": "STREAM_ONLY",
            "DYNAMODB_SNAPSHOT_OVERLAP": "2.5",
            "DYNAMODB_SCAN_SEGMENTS": "12",
            "DYNAMODB_SCAN_RCU_PERCENT": "40",
            "DYNAMODB_STREAM_RETENTION": "3600",
        }
    )
    p = s.policy()
    assert (p.mode, p.overlap_ms, p.segments, p.rcu_percent, p.retention_ms) == (
        "stream_only",
        2500,
        12,
        40.0,
        3_600_000,
    )
    assert p.max_rcu == s.dynamodb_scan_max_rcu and p.stream_start == s.dynamodb_stream_start
