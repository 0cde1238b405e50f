"""Micro-benchmark of the per-event encoding (DynamoDB typed item -> Kafka bytes).

CPU only, no Kafka, no asyncio: times ``Encoder.change`` (the call run_shard makes per
stream record) and ``Encoder.snapshot`` (run_scan, per scanned item) in both output
formats over the same ~1 KB items as ``bench.inproc`` (bench.common's generator:
S, N, B, BOOL, NULL, M, L, SS, NS; ~40% INSERT / 40% MODIFY / 20% REMOVE with
NEW_AND_OLD_IMAGES).  Prints events/s, best of ``--repeat`` runs.

    .venv/bin/python -m bench.micro.encode [--events 5000] [--repeat 7] [--profile CASE]

``--profile CASE`` (e.g. ``change-native``) runs that case under cProfile and prints the
top entries by internal time instead of timing.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

from app.domain.envelope import Encoder, SnapshotInfo
from bench.common import KEY_NAMES, item_pool, make_records

TABLE = "orders"
ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}/stream/2024-01-01T00:00:00.000"
SHARD = "shardId-00000001700000000000-0123abcd"


def cases(n: int) -> dict[str, Callable[[], int]]:
    """name -> a function that encodes one pass and returns the number of events."""
    pool = item_pool(1000)
    records = make_records(n, pool)
    items = [new for _, new in pool]
    items = [items[i % len(items)] for i in range(n)]
    snap = SnapshotInfo(running=True, start_ms=int(time.time() * 1000), end_ms=None, count=0)
    out: dict[str, Callable[[], int]] = {}
    for fmt in ("native", "seed"):
        enc = Encoder(fmt, tombstones=True)  # type: ignore[arg-type]

        def change(enc: Encoder = enc) -> int:
            f = enc.change
            for r in records:
                f(TABLE, KEY_NAMES, r, ARN, SHARD, None)
            return len(records)

        def snapshot(enc: Encoder = enc) -> int:
            f = enc.snapshot
            ts = int(time.time() * 1000)
            for it in items:
                f(TABLE, KEY_NAMES, it, 0, 1, ts, snap)
            return len(items)

        out[f"change-{fmt}"] = change
        out[f"snapshot-{fmt}"] = snapshot
        changes = getattr(enc, "changes", None)
        if changes is not None:  # the batch API, one call per GetRecords page

            def batch(changes: Any = changes) -> int:
                for i in range(0, len(records), 1000):
                    changes(TABLE, KEY_NAMES, records[i : i + 1000], ARN, SHARD, None)
                return len(records)

            out[f"changes-{fmt}"] = batch
    return out


def best_rate(fn: Callable[[], int], repeat: int) -> tuple[float, float]:
    """(best wall-clock events/s, best CPU-time events/s): other processes on a small
    machine inflate wall time, process CPU time much less."""
    wall = cpu = 0.0
    for _ in range(repeat):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        n = fn()
        t1, c1 = time.perf_counter(), time.process_time()
        wall, cpu = max(wall, n / (t1 - t0)), max(cpu, n / max(c1 - c0, 1e-9))
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--profile", metavar="CASE")
    ap.add_argument("--only", nargs="*", metavar="CASE")
    args = ap.parse_args()
    all_cases = cases(args.events)
    if args.profile:
        import cProfile
        import pstats

        fn = all_cases[args.profile]
        fn()  # warm
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.repeat):
            fn()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        return
    for name, fn in all_cases.items():
        if args.only and name not in args.only:
            continue
        fn()  # warm
        wall, cpu = best_rate(fn, args.repeat)
        print(f"{name:18s} {wall:>10,.0f} events/s   (CPU time: {cpu:>8,.0f}/s)", flush=True)


if __name__ == "__main__":
    main()
