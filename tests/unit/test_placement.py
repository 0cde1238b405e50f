"""Where new work units are placed: a table's units spread over the workers (±1)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from app.domain import coordinator as co
from app.domain import placement
from app.domain import protocol as pr
from app.domain.coordinator import Policy

NOW = 1_700_000_000_000
ARN = "arn:aws:dynamodb:us-east-1:123:table/orders"
STREAM = f"{ARN}/stream/2024-01-01T00:00:00.000"
TWO = ((0, 2, 4, 6), (1, 3, 5, 7))  # a fresh assignment of 8 partitions to 2 workers
STICKY = ((0, 1, 2, 3), (4, 5, 6, 7))  # the same after a failover and a rejoin


def info(**kw: Any) -> dict[str, Any]:
    return {
        "name": "orders",
        "table_arn": ARN,
        "stream_arn": STREAM,
        "key_names": ["pk"],
        "item_count": 10,
        "size_bytes": 1000,
        "read_capacity": 0,
        "view_type": "NEW_AND_OLD_IMAGES",
        **kw,
    }


def worker_of(groups: placement.Groups) -> dict[int, int]:
    return {p: w for w, g in enumerate(groups) for p in g}


def per_worker(groups: placement.Groups, ats: list[int]) -> list[int]:
    owner = worker_of(groups)
    counts = Counter(owner[a] for a in ats)
    return [counts[w] for w in range(len(groups))]


def created(out: co.Outcome, kind: str) -> dict[str, int | None]:
    """unit id -> the partition its Create goes to, for the Creates of ``kind`` units."""
    return {
        key[2:]: pr.control_partition(key)
        for key, msg in out.commands
        if msg["type"] == "create" and msg["unit"]["kind"] == kind
    }


# ---------------------------------------------------------------- the pure placement
def test_the_workers_partitions_come_from_fausts_distribution():
    dist = {
        "http://b:6066": {"app-units-changelog": [1, 3], "app-tables-changelog": [1, 3]},
        "http://a:6066": {"app-units-changelog": [2, 0], "app-tables-changelog": [0, 2]},
        "http://c:6066": {"app-tables-changelog": [9]},  # nothing of the units' changelog
    }
    assert placement.groups(dist, "app-units-changelog", 4) == ((0, 2), (1, 3))
    # before any assignment is known: every partition, as one worker
    assert placement.groups({}, "app-units-changelog", 3) == ((0, 1, 2),)
    # a partition two members claim (a zombie) or one out of range is placed once
    odd = {"a": {"t": [0, 1, 7]}, "b": {"t": [1, 2]}}
    assert placement.groups(odd, "t", 3) == ((0, 1), (2,))


def test_eight_segments_on_two_workers_split_four_and_four_one_per_partition():
    for groups in (TWO, STICKY):
        ats = placement.spread(groups, [], 8, "orders/1/scan")
        assert sorted(ats) == list(range(8))
        assert per_worker(groups, ats) == [4, 4]


groups_st = st.lists(
    st.integers(1, 6), min_size=1, max_size=6
).map(  # sizes of the workers' partition sets, partitions numbered in order
    lambda sizes: tuple(
        tuple(range(sum(sizes[:i]), sum(sizes[:i]) + n)) for i, n in enumerate(sizes)
    )
)


@given(groups_st, st.lists(st.integers(1, 20), min_size=1, max_size=5), st.text(max_size=8))
def test_units_placed_in_any_batches_stay_within_one_of_each_other_per_worker(
    groups: placement.Groups, batches: list[int], salt: str
):
    ats: list[int] = []
    for n in batches:  # e.g. a stream's shards, as the splits make them
        ats += placement.spread(groups, ats, n, salt)
    counts = per_worker(groups, ats)
    assert max(counts) - min(counts) <= 1, counts
    partitions = Counter(ats)  # and within a worker, over its partitions
    for g in groups:
        loads = [partitions[p] for p in g]
        assert max(loads) - min(loads) <= 1, (g, loads)


@given(groups_st, st.lists(st.integers(0, 40), max_size=12), st.integers(1, 10))
def test_new_units_go_to_the_least_loaded_workers(
    groups: placement.Groups, taken_raw: list[int], n: int
):
    every = [p for g in groups for p in g]
    taken = [every[i % len(every)] for i in taken_raw]
    before = per_worker(groups, taken)
    after = per_worker(groups, taken + placement.spread(groups, taken, n, "t"))
    added = [a - b for a, b in zip(after, before, strict=True)]
    # a worker gets a unit only while no other has fewer in all (greedy water-filling)
    for w, k in enumerate(added):
        if k:
            assert after[w] - 1 <= min(after), (before, after)


def test_small_tables_start_on_different_workers():
    firsts = {placement.spread(TWO, [], 1, f"table{i}/1/scan")[0] for i in range(40)}
    assert {worker_of(TWO)[p] for p in firsts} == {0, 1}


# ---------------------------------------------------------------- in the coordinator
def test_a_new_tables_segments_watcher_and_replays_are_placed_evenly():
    p = Policy(segments=8, buffer_partitions=3, placement=TWO)
    out = co.on_discovered(None, info(), NOW, p)
    scans = created(out, "scan")
    assert len(scans) == 8 and all(at is not None for at in scans.values())
    assert per_worker(TWO, [a for a in scans.values() if a is not None]) == [4, 4]
    for uid, at in scans.items():  # the id names its partition; the state keeps it
        assert pr.UnitId.parse(uid).at == at
    s = out.state
    assert s is not None
    assert sorted(s["snapshot"]["at"]) == list(range(8))
    assert len(s["buffer"]["at"]) == 3 and per_worker(TWO, s["buffer"]["at"]) in ([2, 1], [1, 2])
    (watch,) = created(out, "watch").values()
    assert watch == s["watch_at"] is not None


def test_shards_are_placed_beside_the_watcher_and_keep_their_place():
    p = Policy(mode="stream_only", placement=TWO)
    s = co.on_discovered(None, info(), NOW, p).state
    assert s is not None
    listing = [[f"s{i}", None, str(10**20 + i), None] for i in range(5)]
    out = co.on_shards(s, pr.Shards(table="orders", epoch=s["epoch"], listing=listing), NOW, p)
    shards = created(out, "shard")
    assert len(shards) == 5
    stream = [s["watch_at"], *shards.values()]  # the watcher and 5 shards: 3 + 3
    assert per_worker(TWO, stream) == [3, 3]
    s = out.state
    assert s is not None
    # the heal (every discovery round) re-creates them where they are, whatever the
    # assignment is by now
    healed = co.on_discovered(s, info(), NOW + 1, Policy(mode="stream_only", placement=STICKY))
    assert created(healed, "shard") == shards
    # s0 splits: its children are placed; s0's unit is dropped where it was placed
    listing = [*listing, ["c0", "s0", str(10**20 + 10), None], ["c1", "s0", str(10**20 + 11), None]]
    done = pr.UnitDone(
        table="orders", epoch=s["epoch"], kind="shard", shard_id="s0", listing=listing
    )
    out = co.on_unit_done(s, done, NOW + 2, p)
    children = created(out, "shard")
    assert set(children) == {
        co.shard_unit_id("orders", s["epoch"], STREAM, c, a)
        for c, a in zip(["c0", "c1"], children.values(), strict=True)
    }
    live = [
        out.state["watch_at"],
        *(e["at"] for e in out.state["shards"].values() if e["status"] != "finished"),
    ]
    counts = per_worker(TWO, live)
    assert max(counts) - min(counts) <= 1, counts


def test_without_placement_unit_ids_and_their_keys_are_as_before():
    out = co.on_discovered(None, info(), NOW, Policy(segments=2))
    for key, msg in out.commands:
        assert pr.control_partition(key) is None
        assert "@" not in key
    s = out.state
    assert s is not None
    assert "at" not in s["snapshot"] and s["watch_at"] is None


def test_units_created_before_placement_keep_their_ids_after_it():
    """An upgrade: a table whose shards were created unplaced keeps their unit ids (a new
    id would be a second reader of the same shard); shards it learns of later are placed."""
    old = Policy(mode="stream_only")
    s = co.on_discovered(None, info(), NOW, old).state
    assert s is not None
    listing = [["s0", None, str(10**20), None]]
    s = co.on_shards(
        s, pr.Shards(table="orders", epoch=s["epoch"], listing=listing), NOW, old
    ).state
    assert s is not None
    before = co.shard_unit_id("orders", s["epoch"], STREAM, "s0")
    new = Policy(mode="stream_only", placement=TWO)
    healed = co.on_discovered(s, info(), NOW + 1, new)
    assert before in created(healed, "shard")
    listing = [*listing, ["s1", None, str(10**20 + 5), None]]
    out = co.on_shards(s, pr.Shards(table="orders", epoch=s["epoch"], listing=listing), NOW, new)
    (placed,) = created(out, "shard").items()
    assert pr.UnitId.parse(placed[0]).shard_id == "s1" and placed[1] is not None
