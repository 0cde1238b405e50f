"""Chaos: 3 workers, 3 tables (one with many shards that roll over and split during the
run), continuous writes, SIGKILL of a random worker every ~20 s and its restart, one
broker restart, injected throttling and expired iterators.  At the end a plain Kafka
consumer checks every write of the ledger: 0 lost, 0 per-key order violations;
duplicates are counted.  `make chaos` runs it long; `make test` runs a short variant."""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import STACK
from tests.integration.dynamo import (
    Ledger,
    check_against_ledger,
    client,
    create_table,
    order_violations,
    worker_env,
)
from tests.integration.helpers import TopicReader, Worker
from tests.integration.test_replication import _mutate
from tests.standin import StandInProcess

THROTTLES = (
    "LimitExceededException",
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
)


class Writer(threading.Thread):
    """Continuous puts/updates/deletes over three tables, each recorded in its ledger."""

    def __init__(self, env: dict[str, str], tables: list[str]) -> None:
        super().__init__(daemon=True)
        self.ddb, self.tables = client(env), tables
        self.ledgers = {t: Ledger() for t in tables}
        self.exists: dict[str, set[bytes]] = {t: set() for t in tables}
        self.stop = threading.Event()
        self.rng = random.Random(11)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                table = self.rng.choice(self.tables)
                pk = f"k{self.rng.randrange(120):03d}"
                _mutate(
                    self.ddb,
                    table,
                    {"pk": {"S": pk}},
                    f'{{"pk":"{pk}"}}'.encode(),
                    self.ledgers[table],
                    self.rng,
                    self.exists[table],
                )
                self.stop.wait(0.01)
        except BaseException as exc:  # noqa: BLE001 (surfaced by the test, never swallowed)
            self.error = exc


@pytest.mark.chaos
def test_chaos(
    stack: dict[str, str], uid: str, workdir: Path, request: pytest.FixtureRequest
) -> None:
    long = request.config.getoption("--chaos-long")
    duration = float(os.environ.get("CHAOS_SECONDS", "300" if long else "50"))
    kill_every = 20.0 if long else 15.0
    rng = random.Random(5)
    tables = [f"chaos{i}-{uid}" for i in range(3)]
    figures = {
        "kills": 0,
        "broker_restarts": 0,
        "rollovers": 0,
        "splits": 0,
        "throttles_injected": 0,
        "iterator_expiries": 0,
    }
    with StandInProcess(stack["AWS_ENDPOINT_URL"], workdir / "standin.log") as standin:
        ddb = client(stack)
        for t in tables:
            create_table(ddb, t, [("pk", "S")], {f"itest-{uid}": "1"})
            standin.register(t)
        standin.config(iterator_ttl=30.0)
        for _ in range(2):  # the busy table starts with 4 shards
            for shard in standin.open_shards(tables[0]):
                standin.split(tables[0], shard)
                figures["splits"] += 1
        env = worker_env(
            stack,
            uid,
            AWS_ENDPOINT_URL_DYNAMODB_STREAMS=standin.url,
            DYNAMODB_SYNC_MODE="stream_only",
            STATE_PARTITIONS="12",
            KAFKA_SESSION_TIMEOUT="8",
            DYNAMODB_SHARD_REFRESH_INTERVAL="2",
        )
        workers = [Worker("app", env, workdir, f"c{i}").start() for i in range(3)]
        writer = Writer(stack, tables)
        try:
            for t in tables:
                Worker.wait_any_log(workers, rf"{t}: reading shard", timeout=120)
            writer.start()
            t0 = time.monotonic()
            next_kill, broker_done, next_roll = t0 + kill_every, False, t0 + duration / 4
            while (now := time.monotonic()) - t0 < duration:
                if writer.error:
                    raise writer.error
                if now >= next_kill:
                    victim = rng.choice(workers)
                    victim.kill()
                    victim.start()
                    figures["kills"] += 1
                    next_kill = now + kill_every
                if now >= next_roll:
                    for shard in standin.open_shards(tables[0]):
                        if rng.random() < 0.5:
                            standin.rollover(tables[0], shard)
                            figures["rollovers"] += 1
                        else:
                            standin.split(tables[0], shard)
                            figures["splits"] += 1
                    next_roll = now + duration / 4
                if not broker_done and now - t0 > duration / 2:
                    proc = subprocess.run(
                        [*STACK, "restart-kafka"],
                        capture_output=True,
                        text=True,
                        timeout=180,
                        check=False,
                    )
                    assert proc.returncode == 0, proc.stdout + proc.stderr
                    figures["broker_restarts"] += 1
                    broker_done = True
                standin.inject("get_records", rng.choice(THROTTLES), times=3)
                figures["throttles_injected"] += 3
                if rng.random() < 0.3:
                    standin.expire()
                    figures["iterator_expiries"] += 1
                time.sleep(1.0)  # the chaos tick: one round of faults per second
            writer.stop.set()
            writer.join(30)
            assert writer.error is None, writer.error
            written = sum(ledger.total for ledger in writer.ledgers.values())
            lost = dups = order = delivered = 0
            for t in tables:
                reader = TopicReader(stack, f"it-{uid}-{t}")
                try:
                    reader.read_until(
                        lambda rs, t=t: check_against_ledger(rs, writer.ledgers[t])["lost"] == 0,
                        240,
                        f"every write of {t}",
                    )
                except AssertionError:
                    pass  # counted below as lost
                result = check_against_ledger(reader.records, writer.ledgers[t])
                lost += result["lost"]
                dups += result["duplicates"]
                order += order_violations(reader.records)
                delivered += sum(1 for r in reader.records if r.value is not None)
                reader.close()
            rebalances = sum(w.log().count("rebalance complete") for w in workers)
            figures.update(
                written=written,
                delivered=delivered,
                lost=lost,
                duplicates=dups,
                order_violations=order,
                rebalances=rebalances,
                seconds=round(time.monotonic() - t0, 1),
                alive=sum(w.alive for w in workers),
            )
            print("\nCHAOS " + json.dumps(figures))
            (workdir / "chaos.json").write_text(json.dumps(figures, indent=2))
            tails = "\n".join(f"--- {w.name}:\n{w.log()[-2000:]}" for w in workers)
            assert lost == 0, f"{figures}\n{tails}"
            assert order == 0, figures
            assert figures["alive"] == 3, tails
        finally:
            writer.stop.set()
            for w in workers:
                w.kill()


@pytest.mark.chaos
@pytest.mark.chaos_long
def test_a_snapshot_many_retentions_long_loses_nothing(
    stack: dict[str, str], uid: str, workdir: Path
) -> None:
    """Issue 13, long: the scan lasts 6 stream retentions (its short variant, 2.5, is
    tests/integration/test_snapshot_buffer.py)."""
    from tests.integration.test_snapshot_buffer import run_long_snapshot

    run_long_snapshot(stack, uid, workdir, retention=30.0, retentions=6.0)
