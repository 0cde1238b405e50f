from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.segments import TokenBucket, plan_segments, rcu_budget, segment_ids

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("size_bytes", "item_count", "configured", "expected"),
    [
        (0, 0, 0, 1),  # empty table
        (64 * MiB, 5_000, 0, 1),  # exactly one segment's worth
        (64 * MiB + 1, 5_000, 0, 2),  # a started 64 MiB counts
        (10 * 64 * MiB, 10_000, 0, 10),
        (1 * MiB, 10_001, 0, 4),  # many small items: at least 4
        (20 * 64 * MiB, 10_001, 0, 20),  # floor does not lower a bigger plan
        (10**15, 10**9, 0, 1000),  # auto is capped at 1000
        (10**15, 10**9, 7, 7),  # configured wins
        (0, 0, 3, 3),
        (0, 0, 2_000_000, 1_000_000),  # capped at DynamoDB's limit
    ],
)
def test_plan_segments(size_bytes: int, item_count: int, configured: int, expected: int) -> None:
    assert plan_segments(size_bytes, item_count, configured) == expected


def test_plan_segments_rejects_negative_configuration() -> None:
    with pytest.raises(ValueError):
        plan_segments(0, 0, -1)


def test_segment_ids() -> None:
    assert segment_ids(1) == [0]
    assert segment_ids(4) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        segment_ids(0)


def test_rcu_budget() -> None:
    assert rcu_budget(1000, 50, 0) == 500
    assert rcu_budget(1000, 50, 10) == 500  # the cap applies to on-demand tables only
    assert rcu_budget(0, 50, 200) == 200
    assert rcu_budget(0, 50, 0) is None


@pytest.mark.parametrize("seed", range(5))
def test_bucket_keeps_average_rate(seed: int) -> None:
    rng = random.Random(seed)
    rate = rng.uniform(5, 500)
    bucket = TokenBucket(rate, burst=rate, now=0.0)
    now = consumed = 0.0
    while now < 600:
        # The caller asks much faster than the rate allows, so the bucket sets the pace.
        assert consumed <= bucket.burst + rate * now + 1e-6  # never ahead of budget
        now += rng.uniform(0, 0.05)  # request latency
        cost = rng.choice([0.5, rng.uniform(0.5, 8), rng.uniform(8, 128)])
        consumed += cost
        now += bucket.delay_for(cost, now)
    assert consumed / now == pytest.approx(rate, rel=0.05)


def test_bucket_allows_burst_then_delays() -> None:
    bucket = TokenBucket(10, burst=20, now=100.0)
    assert bucket.delay_for(20, 100.0) == 0  # starts full
    assert bucket.delay_for(5, 100.0) == pytest.approx(0.5)  # debt 5 at 10/s
    assert bucket.delay_for(5, 101.0) == 0  # 1 s refills 10: debt paid, 5 spare spent
    assert bucket.delay_for(0, 1000.0) == 0  # refill stops at burst...
    assert bucket.delay_for(30, 1000.0) == pytest.approx(1.0)  # ...so 30 leaves debt 10


@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(0, 1e3)), max_size=50))
def test_none_rate_never_delays(calls: list[tuple[float, float]]) -> None:
    bucket = TokenBucket(None, burst=0, now=0.0)
    assert all(bucket.delay_for(cost, now) == 0 for cost, now in calls)


def test_bucket_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, burst=1, now=0)
    with pytest.raises(ValueError):
        TokenBucket(1, burst=-1, now=0)
    with pytest.raises(ValueError):
        TokenBucket(1, burst=1, now=0).delay_for(-1, 0)
