"""A bad setting stops `faust -A app worker` at start, naming the variable; secrets never
appear in what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAUST = str(Path(sys.executable).with_name("faust"))
SECRET = "s3cr3t-Pa55word"


def run_worker(**env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DYNAMODB_", "KAFKA_"))}
    full.update(env)
    return subprocess.run(
        [FAUST, "-A", "app", "worker", "-l", "info"],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DYNAMODB_SYNC_MODE", "sometimes"),
        ("DYNAMODB_TABLES_EXCLUDE", "(unclosed"),
        ("KAFKA_TOPIC_PARTITIONS", "0"),
        ("DYNAMODB_TAG_FILTERS", "a:;b"),
        ("BROKER_URL", "http://nope:9092"),
    ],
)
def test_bad_setting_stops_the_worker_naming_it(variable: str, value: str) -> None:
    proc = run_worker(**{variable: value}, KAFKA_SASL_PASSWORD=SECRET)
    assert proc.returncode == 2
    assert f"configuration error: {variable}:" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr


def test_sasl_without_credentials_is_refused() -> None:
    proc = run_worker(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_PASSWORD=SECRET)
    assert proc.returncode == 2
    assert "KAFKA_SASL_USERNAME" in proc.stderr and SECRET not in proc.stderr
    assert (
        "configuration error: KAFKA_SASL_USERNAME: required when "
        "KAFKA_SECURITY_PROTOCOL=SASL_SSL" in proc.stderr
    )


def test_bad_secret_value_is_not_echoed() -> None:
    proc = run_worker(KAFKA_SASL_PASSWORD=SECRET + "\n")
    assert proc.returncode == 2
    assert "KAFKA_SASL_PASSWORD" in proc.stderr and SECRET not in proc.stderr


def test_the_longest_session_timeout_passes_fausts_own_check() -> None:
    """KAFKA_SESSION_TIMEOUT over 90 s crashed the consumer at start (Faust: 'broker_session_
    timeout cannot be greater than broker_request_timeout', 90 s by default)."""
    code = (
        "from app.main import app; c = app.conf; "
        "assert c.broker_session_timeout == 1800, c.broker_session_timeout; "
        "assert c.broker_request_timeout >= c.broker_session_timeout, "
        "c.broker_request_timeout"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DYNAMODB_", "KAFKA_"))}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env, "KAFKA_SESSION_TIMEOUT": "1800"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_catastrophic_exclude_pattern_stops_the_worker_naming_it() -> None:
    proc = run_worker(DYNAMODB_TABLES_EXCLUDE="(a+)+$")
    assert proc.returncode == 2
    assert "configuration error: DYNAMODB_TABLES_EXCLUDE:" in proc.stderr
    assert "backtrack" in proc.stderr


def test_worker_refuses_msk_iam_without_sasl_ssl() -> None:
    proc = run_worker(
        KAFKA_SASL_MECHANISM="AWS_MSK_IAM",
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_MSK_IAM_ROLE_ARN="arn:aws:iam::123456789012:role/msk-writer",
    )
    assert proc.returncode == 2
    assert (
        "configuration error: KAFKA_SASL_MECHANISM: expected AWS_MSK_IAM only with "
        "KAFKA_SECURITY_PROTOCOL=SASL_SSL" in proc.stderr
    )
