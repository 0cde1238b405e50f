"""Broker faults: the worker survives a broker restart mid-stream without loss."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

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


def test_worker_survives_a_broker_restart(stack: dict[str, str], uid: str, workdir: Path) -> None:
    ddb = client(stack)
    table = f"brk-{uid}"
    create_table(ddb, table, [("pk", "S")], {f"itest-{uid}": "1"})
    worker = Worker(
        "app", worker_env(stack, uid, DYNAMODB_SYNC_MODE="stream_only"), workdir, "brk"
    ).start()
    reader = TopicReader(stack, f"it-{uid}-{table}")
    ledger, rng = Ledger(), random.Random(3)

    def write(n: int) -> None:
        for _ in range(n):
            pk = f"k{rng.randrange(40)}"
            ddb.put_item(TableName=table, Item={"pk": {"S": pk}, "v": {"N": str(rng.random())}})
            ledger.add(
                f'{{"pk":"{pk}"}}'.encode(),
                "u" if ledger.ops.get(f'{{"pk":"{pk}"}}'.encode()) else "c",
            )

    try:
        worker.wait_log(r"reading shard", timeout=90)
        write(100)
        reader.read_until(
            lambda rs: check_against_ledger(rs, ledger)["lost"] == 0,
            60,
            "events before the restart",
        )
        reader.close()
        proc = subprocess.run(
            [*STACK, "restart-kafka"], capture_output=True, text=True, timeout=180, check=False
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        write(100)  # written while the worker reconnects
        reader = TopicReader(stack, f"it-{uid}-{table}")
        reader.read_until(
            lambda rs: check_against_ledger(rs, ledger)["lost"] == 0,
            180,
            f"all {ledger.total} events after the broker restart",
        )
        assert worker.alive, worker.log()[-3000:]
        assert order_violations(reader.records) == 0
    finally:
        worker.kill()
        reader.close()
