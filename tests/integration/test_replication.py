"""Core replication end to end: real Kafka broker, moto server, worker subprocesses."""

from __future__ import annotations

import base64
import json
import random
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

from tests.integration.dynamo import (
    BIG,
    Ledger,
    batch_put,
    check_against_ledger,
    client,
    create_table,
    decode,
    full_item,
    order_violations,
    snapshot_keys,
    worker_env,
)
from tests.integration.helpers import TopicReader, Worker

N_ITEMS = 10_000


def _keys(records: list, op: str) -> Counter:
    return Counter(r.key for r in records if r.value is not None and decode(r.value)["op"] == op)


def _mutate(
    ddb,
    table: str,
    key_attrs: dict,
    key_json: bytes,
    ledger: Ledger,
    rng: random.Random,
    exists: set[bytes],
) -> None:
    """One put/update/delete on an item; the ledger records what Kafka must show."""
    if key_json in exists and rng.random() < 0.3:
        ddb.delete_item(TableName=table, Key=key_attrs)
        exists.discard(key_json)
        ledger.add(key_json, "d")
    elif key_json in exists:
        ddb.update_item(
            TableName=table,
            Key=key_attrs,
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"N": str(rng.randint(0, 10**9))}},
        )
        ledger.add(key_json, "u")
    else:
        ddb.put_item(TableName=table, Item={**key_attrs, "v": {"N": "0"}, "s": {"S": "new"}})
        exists.add(key_json)
        ledger.add(key_json, "c")


def test_snapshot_stream_restart_untag(stack: dict[str, str], uid: str, workdir: Path) -> None:
    ddb = client(stack)
    tag = {f"itest-{uid}": "yes"}
    main, comp, bink, nostream = (f"main-{uid}", f"comp-{uid}", f"bin-{uid}", f"nostr-{uid}")
    create_table(ddb, main, [("pk", "S")], tag)
    comp_arn = create_table(ddb, comp, [("h", "S"), ("r", "N")], tag)
    create_table(ddb, bink, [("id", "B")], tag)
    create_table(ddb, nostream, [("pk", "S")], tag, view=None)
    t0 = time.monotonic()
    batch_put(ddb, main, [full_item(i) for i in range(N_ITEMS)])
    batch_put(
        ddb,
        comp,
        [{"h": {"S": f"h{i % 7}"}, "r": {"N": str(i)}, "x": {"S": "c"}} for i in range(300)],
    )
    batch_put(
        ddb, bink, [{"id": {"B": bytes([i, 255 - i])}, "x": {"N": str(i)}} for i in range(200)]
    )
    print(f"\nseeded {N_ITEMS + 500} items in {time.monotonic() - t0:.1f}s")

    env = worker_env(stack, uid)
    readers = {t: TopicReader(stack, f"it-{uid}-{t}") for t in (main, comp, bink)}
    worker = Worker("app", env, workdir, "w1").start()
    try:
        # ---- INIT_SYNC: every item once as "r"
        t_start = time.monotonic()
        worker.wait_log(rf"{main}: INIT_SYNC epoch 1", timeout=90)
        t_sync = time.monotonic()
        expected = {main: N_ITEMS, comp: 300, bink: 200}
        for t, reader in readers.items():
            try:  # moto scans ~300 large items/s when idle: allow for a loaded machine
                reader.read_until(
                    lambda rs, n=expected[t]: len(_keys(rs, "r")) >= n,
                    420,
                    f"{expected[t]} snapshot records of {t}",
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nworker log tail:\n{worker.log()[-3000:]}") from None
        snap_s = time.monotonic() - t_sync
        print(
            f"snapshot: {sum(expected.values())} items in {snap_s:.1f}s = "
            f"{sum(expected.values()) / snap_s:.0f} items/s (worker start->discovery "
            f"{t_sync - t_start:.1f}s)"
        )
        for t, reader in readers.items():  # one snapshot (repeats allowed), every item
            snaps = snapshot_keys(reader.records)
            assert len(snaps) == 1 and len(next(iter(snaps.values()))) == expected[t], t
        worker.wait_log(rf"{main}: snapshot done", timeout=60)
        assert f"{nostream}" in worker.log() and "no DynamoDB stream enabled" in worker.log()

        # type mapping, straight from the bytes on the wire
        rec = next(r for r in readers[main].records if r.key == b'{"pk":"item-00042"}')
        assert f'"n":{BIG}'.encode() in rec.value  # 38 digits, exact, a JSON number
        v = decode(rec.value)
        after = v["after"]
        assert v["op"] == "r" and v["table"] == main and v["keys"] == {"pk": "item-00042"}
        assert v["source"]["snapshot"] is True and v["before"] is None
        assert after["frac"] == Decimal("-0.000123") and after["small"] == 42
        assert base64.b64decode(after["b"]) == bytes([42, 0, 255, 7])
        assert after["ss"] == ["a", "b", "s42"] and after["ns"] == [1, Decimal("2.5"), 3]
        assert [base64.b64decode(x) for x in after["bs"]] == [b"\x01", b"\x02"]
        assert after["m"] == {"x": 1, "y": ["in", None]} and after["l"] == [1, "two", False]
        assert after["nul"] is None and after["flag"] is True
        comp_keys = {json.loads(r.key)["h"] for r in readers[comp].records}
        assert comp_keys == {f"h{i}" for i in range(7)}
        k = json.loads(readers[comp].records[0].key)
        assert set(k) == {"h", "r"} and isinstance(k["r"], int)
        # snapshot records only: moto's stream records double-encode binary attributes
        bin_keys = {
            base64.b64decode(json.loads(r.key)["id"])
            for r in readers[bink].records
            if decode(r.value)["op"] == "r"
        }
        assert bin_keys == {bytes([i, 255 - i]) for i in range(200)}

        # ---- streaming: puts, updates, deletes in per-key order, with a restart mid-way
        rng = random.Random(7)
        ledger = Ledger()
        exists = {f'{{"pk":"item-{i:05d}"}}'.encode() for i in range(N_ITEMS)}
        pool = [f"item-{i:05d}" for i in range(0, N_ITEMS, 37)] + [f"new-{i}" for i in range(150)]

        def burst(n: int) -> None:
            for _ in range(n):
                pk = rng.choice(pool)
                _mutate(
                    ddb, main, {"pk": {"S": pk}}, f'{{"pk":"{pk}"}}'.encode(), ledger, rng, exists
                )

        t_w = time.monotonic()
        burst(600)
        stop_s = worker.stop()
        print(f"SIGTERM -> exit: {stop_s:.1f}s")
        assert stop_s < 30  # graceful: final checkpoints written (Heroku allows 30 s)
        assert "final checkpoints stored" in worker.log()
        burst(300)  # written while no worker runs
        worker.start()
        worker.wait_log(r"reading shard .* from after \d+", timeout=90)
        burst(300)
        readers[main].read_until(
            lambda rs: check_against_ledger(rs, ledger)["lost"] == 0,
            120,
            f"all {ledger.total} stream events",
        )
        stream_s = time.monotonic() - t_w
        result = check_against_ledger(readers[main].records, ledger)
        print(
            f"stream: {ledger.total} events in {stream_s:.1f}s incl. a restart; "
            f"duplicates after restart: {result['duplicates']}"
        )
        assert result["lost"] == 0
        assert order_violations(readers[main].records) == 0
        latencies = []
        for i in range(10):  # an idle stream: one write at a time, write -> broker timestamp
            key = f'{{"pk":"probe-{i}"}}'.encode()
            t_write = time.time()
            ddb.put_item(TableName=main, Item={"pk": {"S": f"probe-{i}"}, "v": {"N": "1"}})
            readers[main].read_until(lambda rs, k=key: any(r.key == k for r in rs), 60, "probe")
            rec = next(r for r in readers[main].records if r.key == key)
            latencies.append(rec.timestamp / 1000 - t_write)
        latencies.sort()
        print(
            f"write -> Kafka latency over 10 single writes: p50 {latencies[4]:.3f}s "
            f"max {latencies[-1]:.3f}s"
        )
        # no re-snapshot: still the one snapshot (repeated records aside), every item
        assert [len(k) for k in snapshot_keys(readers[main].records).values()] == [N_ITEMS]
        recs = readers[main].records
        for i, r in enumerate(recs):
            if r.value is not None and decode(r.value)["op"] == "d":
                v = decode(r.value)
                assert v["before"] is not None and v["after"] is None
                nxt = [x for x in recs[i + 1 :] if x.key == r.key and x.partition == r.partition]
                assert nxt and nxt[0].value is None  # tombstone right after the delete
            elif r.value is not None and decode(r.value)["op"] == "u":
                assert decode(r.value)["before"] is not None

        # ---- untag: the table stops; re-tag: resumes from its checkpoint, no re-snapshot
        ddb.untag_resource(ResourceArn=comp_arn, TagKeys=[f"itest-{uid}"])
        worker.wait_log(rf"{comp}: STOPPED", timeout=60)
        ddb.put_item(TableName=comp, Item={"h": {"S": "while-stopped"}, "r": {"N": "1"}})
        ddb.tag_resource(ResourceArn=comp_arn, Tags=[{"Key": f"itest-{uid}", "Value": "yes"}])
        worker.wait_log(rf"{comp}: resumed STREAMING", timeout=60)
        readers[comp].read_until(
            lambda rs: any(r.key == b'{"h":"while-stopped","r":1}' for r in rs),
            60,
            "the write made while the table was stopped",
        )
        assert len(_keys(readers[comp].records, "r")) == 300  # distinct keys (a Counter's len)
        assert "re-snapshot" not in worker.log()
    finally:
        worker.kill()
        for r in readers.values():
            r.close()


def test_stream_only_and_snapshot_only(stack: dict[str, str], uid: str, workdir: Path) -> None:
    ddb = client(stack)
    t_stream, t_snap = f"so-{uid}", f"sn-{uid}"
    create_table(ddb, t_stream, [("pk", "S")], {f"itest-{uid}-s": "1"})
    create_table(ddb, t_snap, [("pk", "S")], {f"itest-{uid}-n": "1"}, view=None)
    batch_put(ddb, t_stream, [{"pk": {"S": f"old-{i}"}} for i in range(20)])
    batch_put(ddb, t_snap, [{"pk": {"S": f"k{i}"}} for i in range(50)])
    w_stream = Worker(
        "app",
        worker_env(
            stack,
            uid + "s",
            DYNAMODB_SYNC_MODE="stream_only",
            DYNAMODB_STREAM_START="latest",
            DYNAMODB_TAG_FILTERS=f"itest-{uid}-s",
            KAFKA_TOPIC_PREFIX=f"it-{uid}-",
        ),
        workdir,
        "ws",
    )
    w_snap = Worker(
        "app",
        worker_env(
            stack,
            uid + "n",
            DYNAMODB_SYNC_MODE="snapshot_only",
            DYNAMODB_TAG_FILTERS=f"itest-{uid}-n",
            KAFKA_TOPIC_PREFIX=f"it-{uid}-",
        ),
        workdir,
        "wn",
    )
    r_stream = TopicReader(stack, f"it-{uid}-{t_stream}")
    r_snap = TopicReader(stack, f"it-{uid}-{t_snap}")
    try:
        w_stream.start()
        w_snap.start()
        w_stream.wait_log(r"reading shard", timeout=90)
        batch_put(ddb, t_stream, [{"pk": {"S": f"new-{i}"}} for i in range(30)])

        def events(rs: list) -> dict[tuple[bytes, str], str]:
            """op per distinct stream record (key, seq): a resent batch may repeat some"""
            return {(r.key, str(v["source"]["seq"])): v["op"] for r in rs if (v := decode(r.value))}

        r_stream.read_until(lambda rs: len(events(rs)) >= 30, 60, "30 new items")
        w_snap.wait_log(rf"{t_snap}: snapshot done, 50 items", timeout=90)
        r_snap.read_until(lambda rs: len({r.key for r in rs}) >= 50, 60, "50 snapshot items")
        r_stream.poll(1.0)
        r_snap.poll(1.0)
        ops = Counter(events(r_stream.records).values())
        assert ops == Counter({"c": 30})  # latest: nothing before the start, no snapshot
        assert {json.loads(r.key)["pk"] for r in r_stream.records} == {
            f"new-{i}" for i in range(30)
        }
        assert {decode(r.value)["op"] for r in r_snap.records} == {"r"}
        assert [len(k) for k in snapshot_keys(r_snap.records).values()] == [50]
        assert "reading shard" not in w_snap.log()  # snapshot_only never streams
    finally:
        for w in (w_stream, w_snap):
            w.kill()
        r_stream.close()
        r_snap.close()


def test_seed_format(stack: dict[str, str], uid: str, workdir: Path) -> None:
    ddb = client(stack)
    table = f"seed-{uid}"
    create_table(ddb, table, [("pk", "S"), ("n", "N")], {f"itest-{uid}": "1"})
    ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "n": {"N": "1"}, "x": {"SS": ["q"]}})
    worker = Worker("app", worker_env(stack, uid, KAFKA_OUTPUT_FORMAT="seed"), workdir, "seed")
    reader = TopicReader(stack, f"it-{uid}-{table}")
    try:
        worker.start()
        reader.read_until(lambda rs: len(rs) >= 1, 90, "the snapshot record")
        worker.wait_log(r"reading shard", timeout=60)
        ddb.delete_item(TableName=table, Key={"pk": {"S": "a"}, "n": {"N": "1"}})
        reader.read_until(lambda rs: rs[-1].value is None, 60, "delete + tombstone")
        first, delete, tomb = reader.records[0], reader.records[-2], reader.records[-1]
        # the put itself is replayed too: it lies within the snapshot overlap window (and
        # a resent batch may repeat a record: at-least-once)
        assert {json.loads(r.value)["op"] for r in reader.records[1:-2]} <= {"r", "c"}
        assert json.loads(first.key) == {"n": "1", "pk": "a"}
        v = json.loads(first.value)
        assert v["version"] == "1.0" and v["op"] == "r"
        assert json.loads(v["document"]) == {"pk": {"s": "a"}, "n": {"n": "1"}, "x": {"ss": ["q"]}}
        src = v["source"]
        assert src["table_name"] == table and src["init_sync"] is True
        assert src["init_sync_state"] == "RUNNING" and isinstance(src["init_sync_start"], int)
        d = json.loads(delete.value)
        assert d["op"] == "d" and d["source"]["init_sync"] is False
        assert d["source"]["init_sync_state"] == "FINISHED"
        assert tomb.value is None and tomb.key == delete.key
    finally:
        worker.kill()
        reader.close()
