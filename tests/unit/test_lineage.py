from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.lineage import Plan, plan, seq_key
from app.domain.model import Shard


def sh(sid: str, parent: str | None = None, start: int = 0, end: int | None = None) -> Shard:
    return Shard(sid, parent, str(10**20 + start), None if end is None else str(10**20 + end))


def status(p: Plan) -> dict[str, str]:
    return {sid: e["status"] for sid, e in p.known.items()}


def test_seq_key_compares_numerically():
    assert seq_key("9" * 21) < seq_key("1" + "0" * 21) < seq_key("1" + "0" * 39)
    assert seq_key(None) < seq_key("0" * 21)


def test_root_starts_children_wait_for_parent():
    listing = [sh("a", end=10), sh("b", "a", 11), sh("c", "a", 12)]
    p = plan({}, listing)
    assert p.start == ["a"] and status(p) == {"a": "running", "b": "pending", "c": "pending"}
    assert plan(p.known, listing).start == []
    p = plan(p.known, listing, finished=["a"])
    assert p.start == ["b", "c"] and status(p)["a"] == "finished"
    assert p.known["b"] == {"parent": "a", "status": "running", "start": str(10**20 + 11)}


def test_a_stale_listing_neither_loses_nor_prunes_shards_it_does_not_know_yet():
    known = plan(
        {}, [sh("a", end=10), sh("b", "a", 11, 20), sh("c", "b", 21)], finished=["a"]
    ).known
    known = plan(
        known, [sh("a", end=10), sh("b", "a", 11, 20), sh("c", "b", 21)], finished=["b"]
    ).known
    known_plan = plan(known, [sh("a", end=10), sh("b", "a", 11, 20), sh("c", "b", 21)])
    assert status(known_plan) == {"a": "finished", "b": "finished", "c": "running"}
    # a listing taken before b and c existed (it waited behind newer ones): nothing is
    # lost (no re-snapshot) and the finished b is not forgotten (it would be re-read)
    stale = plan(known_plan.known, [sh("a", end=None)])
    assert stale.lost == [] and stale.prune == [] and stale.start == []
    assert status(stale) == {"a": "finished", "b": "finished", "c": "running"}
    # a fresh listing without an older unfinished shard: that one was trimmed
    fresh = plan(
        {"x": {"parent": None, "status": "running", "start": str(10**20 + 1)}}, [sh("y", None, 50)]
    )
    assert fresh.lost == ["x"] and fresh.start == ["y"]
    # states written before "start" was kept: missing still means trimmed
    legacy = plan({"x": {"parent": None, "status": "running"}}, [sh("y", None, 50)])
    assert legacy.lost == ["x"]


def test_parent_listed_but_unknown_counts_as_unfinished():
    p = plan({"b": {"parent": "a", "status": "pending"}}, [sh("a", end=5), sh("b", "a", 6)])
    assert p.start == ["a"] and status(p)["b"] == "pending"


def test_parent_trimmed_before_tracking_lets_child_start():
    p = plan({}, [sh("b", "gone", 6), sh("c", "b", 9)])
    assert p.start == ["b"] and not p.lost and not p.prune


def test_start_order_parents_first_then_seq_as_int_then_id():
    known = {"p": {"parent": None, "status": "finished"}}
    listing = [
        sh("p", end=1),
        Shard("z", "p", "1" + "0" * 21, None),  # child of a known, finished shard: depth 1
        Shard("y", None, "9" * 21, None),  # roots: 21 digits sorts before 22 as int
        Shard("x", "trimmed", "1" + "0" * 21, None),
        Shard("w", "trimmed", "1" + "0" * 21, None),
    ]
    assert plan(known, listing).start == ["y", "w", "x", "z"]


def test_lost_when_unread_shard_vanishes():
    known = {
        "a": {"parent": None, "status": "running"},
        "b": {"parent": "a", "status": "pending"},
        "c": {"parent": "a", "status": "pending"},
    }
    p = plan(known, [sh("b", "a", 6)])
    assert p.lost == ["a", "c"] and p.start == ["b"] and set(p.known) == {"b"}


def test_prune_finished_absent_only_when_no_unfinished_child_needs_it():
    known = {
        "a": {"parent": None, "status": "finished"},
        "b": {"parent": "a", "status": "running"},
        "c": {"parent": None, "status": "finished"},
    }
    p = plan(known, [sh("b", "a", 6)])
    assert p.prune == ["c"] and "a" in p.known and not p.lost
    p = plan(p.known, [sh("b", "a", 6, 9)], finished=["b"])
    assert p.prune == ["a"] and status(p) == {"b": "finished"}


def test_finished_and_trimmed_in_the_same_round_is_pruned_not_lost():
    p = plan({"a": {"parent": None, "status": "running"}}, [], finished=["a"])
    assert p.prune == ["a"] and not p.lost and p.known == {}


def test_no_listing_plans_from_known_only():
    known = {"a": {"parent": None, "status": "running"}, "b": {"parent": "a", "status": "pending"}}
    p = plan(known, None, finished=["a", "unknown"])
    assert p.start == ["b"] and not p.lost and not p.prune and set(p.known) == {"a", "b"}
    assert known["a"]["status"] == "running"  # input not mutated


# ---- property: random split/rollover histories ------------------------------------------


class History:
    """A tiny shard forest: split/rollover open shards, trim finished ones."""

    def __init__(self) -> None:
        self.n = 0
        self.shards: dict[str, list] = {}  # id -> [parent, start, end]
        self.trimmed: set[str] = set()
        self.root = self.new(None)

    def new(self, parent: str | None) -> str:
        self.n += 1
        sid = f"shardId-{self.n:04d}"
        self.shards[sid] = [parent, self.n * 10, None]
        return sid

    def open(self) -> list[str]:
        return [s for s, v in self.shards.items() if v[2] is None]

    def evolve(self, i: int, children: int) -> None:
        if opened := self.open():
            sid = opened[i % len(opened)]
            self.shards[sid][2] = self.n * 10 + 5
            for _ in range(children):
                self.new(sid)

    def close_all(self) -> None:
        for sid in self.open():
            self.shards[sid][2] = self.n * 10 + 5

    def listing(self) -> list[Shard]:
        return [
            Shard(s, p, str(10**20 + a), None if b is None else str(10**20 + b))
            for s, (p, a, b) in self.shards.items()
            if s not in self.trimmed
        ]


ops = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["split", "rollover", "finish", "trim"]), st.integers(0, 99)),
        st.tuples(st.just("plan"), st.booleans()),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops, st.randoms(use_true_random=False))
def test_every_shard_read_exactly_once_after_its_parent(steps, rnd: random.Random):
    h = History()
    known: dict = {}
    started: Counter[str] = Counter()
    done: set[str] = set()  # finished and reported
    reports: list[str] = []

    def do_plan(with_listing: bool) -> Plan:
        nonlocal known, reports
        listing = h.listing() if with_listing else None
        p = plan(known, listing, reports)
        again = plan(p.known, listing, reports)  # idempotent
        assert again.start == [] and again.known == p.known
        assert not p.lost
        for sid in p.start:
            parent = h.shards[sid][0]
            assert parent is None or parent in done, f"{sid} started before {parent}"
            started[sid] += 1
        assert set(p.prune) <= h.trimmed
        known, reports = p.known, []
        return p

    def finish_one(i: int) -> None:
        candidates = sorted(
            s
            for s, e in known.items()
            if e["status"] == "running" and h.shards[s][2] is not None and s not in done
        )
        if candidates:
            sid = candidates[i % len(candidates)]
            done.add(sid)
            reports.append(sid)

    for op, arg in steps:
        if op == "split":
            h.evolve(arg, 2)
        elif op == "rollover":
            h.evolve(arg, 1)
        elif op == "finish":
            finish_one(arg)
        elif op == "trim":  # only data already read may be trimmed (no loss in this model)
            if gone := sorted(s for s, e in known.items() if e["status"] == "finished"):
                h.trimmed.add(gone[arg % len(gone)])
        else:
            do_plan(arg)

    h.close_all()
    while True:
        with_listing = rnd.random() < 0.7
        p = do_plan(with_listing)
        if with_listing and not p.start and all(e["status"] == "finished" for e in known.values()):
            break
        for _ in range(rnd.randint(1, 3)):
            finish_one(rnd.randrange(100))

    assert started == Counter({s: 1 for s in h.shards}), "each shard started exactly once"
    assert done == set(h.shards)


def test_a_stale_listing_never_revives_a_pruned_shard():
    """Issue 10 item 4: `setdefault` re-added a pruned shard named by a listing older than
    the prune; it was started again, its iterator failed (ResourceNotFound) and the whole
    table re-snapshotted."""
    old_listing = [sh("a", end=10), sh("b", "a", 11, 20), sh("c", "b", 21)]
    p = plan({}, old_listing)
    p = plan(p.known, old_listing, finished=["a"])
    p = plan(p.known, old_listing, finished=["b"])
    assert status(p) == {"a": "finished", "b": "finished", "c": "running"}
    # a is trimmed: a fresh listing prunes it and raises the floor to a's start
    pruned = plan(p.known, old_listing[1:], floor=p.floor)
    assert pruned.prune == ["a"] and "a" not in pruned.known
    assert pruned.floor == str(10**20 + 0)
    # a DescribeStream answer taken before the trim, delivered late
    stale = plan(pruned.known, old_listing, floor=pruned.floor)
    assert "a" not in stale.known and stale.start == [] and stale.lost == []
    assert status(stale) == {"b": "finished", "c": "running"}
    assert stale.floor == pruned.floor
    # a genuinely new shard (newer than the floor) is still added
    new = plan(stale.known, [*old_listing[1:], sh("d", None, 40)], floor=stale.floor)
    assert new.start == ["d"]
