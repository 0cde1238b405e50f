"""Micro-benchmark of app.fastwire: response body bytes -> Kafka (key, value) bytes.

CPU only, no HTTP, no Kafka: one 1000-record GetRecords body (NEW_AND_OLD_IMAGES,
bench.common's ~1 KB items: ~2.3 KB per record; 40% INSERT / 40% MODIFY / 20% REMOVE)
and one 1000-item Scan body, each encoded in both output formats by

* ``reference``: orjson.loads -> to_record -> Encoder.change / Encoder.snapshot (what
  runs without the extension);
* ``native``: the dynamodb_wire pass (make native);
* ``orjson.loads``: parsing the body alone, the floor of any Python-object path.

Prints records/s, best of ``--repeat`` runs, by wall clock and by process CPU time (on
a shared machine, the CPU figure is the steadier one).

    .venv/bin/python -m bench.micro.fastwire [--records 1000] [--repeat 7]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import orjson

from app import fastwire
from app.domain.envelope import SnapshotInfo
from bench.micro.encode import best_rate
from bench.micro.wire import ARN, bench_records_body, bench_scan_body

SHARD = "shardId-00000001700000000000-0123abcd"


def cases(n: int) -> dict[str, Callable[[], int]]:
    records = bench_records_body(n)
    scan = bench_scan_body(n)
    snap = SnapshotInfo(running=True, start_ms=1_700_000_000_000, end_ms=None, count=0)
    out: dict[str, Callable[[], int]] = {
        "records orjson.loads": lambda: len(orjson.loads(records)["Records"]),
        "scan orjson.loads": lambda: len(orjson.loads(scan)["Items"]),
    }
    paths = {"reference": fastwire.reference_records_page}
    scan_paths = {"reference": fastwire.reference_scan_page}
    if fastwire.ACTIVE == "native":
        paths["native"] = fastwire.native_records_page
        scan_paths["native"] = fastwire.native_scan_page
    for fmt in ("native", "seed"):
        ctx = fastwire.ChangeContext("orders", ("pk", "sk"), ARN, SHARD, None, fmt, True)
        sctx = fastwire.ScanContext("orders", ("pk", "sk"), 0, 8, 1_700_000_000_000, snap, fmt)
        for path, fn in paths.items():
            out[f"records {fmt} {path}"] = lambda fn=fn, ctx=ctx: len(fn(records, ctx).records)
        for path, sfn in scan_paths.items():
            out[f"scan {fmt} {path}"] = lambda fn=sfn, ctx=sctx: len(fn(scan, ctx).records)
    print(
        f"GetRecords body: {n} records, {len(records) / n:,.0f} bytes/record; "
        f"Scan body: {n} items, {len(scan) / n:,.0f} bytes/item; {fastwire.DESCRIPTION}"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--only", nargs="*", metavar="CASE")
    args = ap.parse_args()
    for name, fn in cases(args.records).items():
        if args.only and name not in args.only:
            continue
        fn()  # warm
        wall, cpu = best_rate(fn, args.repeat)
        print(f"{name:26s} {wall:>10,.0f} records/s   (CPU time: {cpu:>8,.0f}/s)", flush=True)


if __name__ == "__main__":
    main()
