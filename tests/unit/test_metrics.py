"""Metrics whose series follow the cluster's state (bounded: removed when it changes)."""

from __future__ import annotations

from prometheus_client import generate_latest

from app.metrics import Metrics

NAME = "dynamodb_replicator_tables_refused"


def _refused(m: Metrics) -> list[str]:
    return sorted(
        line.removeprefix(NAME)
        for line in generate_latest(m.registry).decode().splitlines()
        if line.startswith(NAME + "{")
    )


def test_tables_refused_has_one_series_per_refused_table_and_drops_the_others():
    m = Metrics.create()
    m.set_refused({"a": "KEYS_ONLY", "b": "OLD_IMAGE"})
    assert _refused(m) == [
        '{reason="KEYS_ONLY",table="a"} 1.0',
        '{reason="OLD_IMAGE",table="b"} 1.0',
    ]
    m.set_refused({"a": "no stream"})  # a: another reason; b: fixed
    assert _refused(m) == ['{reason="no stream",table="a"} 1.0']
    m.set_refused({})
    assert _refused(m) == []
