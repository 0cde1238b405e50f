"""`python -m bench` (= `make bench`): every figure, then ONE table.

Progress goes to stderr; the table, the raw numbers behind it and the top profile frames
go to stdout.  Sizes are chosen so the whole run stays well under 10 minutes on 2 cores
with moto's slow per-item Scan/GetRecords (~100-300 items/s)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from typing import Any

from bench.common import OUT, ROOT, base_env, run_child

# ---- sizes (see README.md)
CEILING_PAGES = 20  # x 1000 records / items per product or raw run
CEILING_ROUNDS = 3  # alternating product / raw runs; the best of each is the ceiling
MEMORY_SHARDS = 100
MEMORY_PAGES = 1  # pages of 1000 records per shard before the shards go idle
MOTO_SNAPSHOT_ITEMS = 2400  # 4 Scan pages: fixed start/stop costs weigh less than with 2
MOTO_STREAM_EVENTS = 2400
LATENCY_WRITES = 60
WIRE_STREAM_PAGES = 10  # x 1000 records of ~2.4 KB (GetRecords pages from the wire endpoint)
WIRE_SCAN_PAGES = 10  # x 1000 items of ~1 KB (Scan pages)
WIRE_IDLE_SHARDS = 20  # open shards that never have records
WIRE_IDLE_WINDOW = 5.0  # seconds over which their GetRecords calls are counted
GOAL_P99 = 1.5  # seconds, write -> Kafka
GOAL_IDLE_CALLS = 1.0  # GetRecords calls per idle shard per second
GOAL_RATE = 50_000
GOAL_RATIO = 0.6

T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[bench {time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def stack_up() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "stack.py"), "up"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"local stack did not come up:\n{proc.stdout}\n{proc.stderr}")


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---------------------------------------------------------------- formatting
def num(x: float, unit: str = "") -> str:
    if math.isnan(x):
        return "n/a"
    if unit == "s":
        return f"{x * 1000:,.0f} ms"
    if unit == "MB":
        return f"{x:,.0f} MB"
    return f"{x:,.0f}/s" if x >= 100 else f"{x:,.1f}/s"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and not (math.isnan(a) or math.isnan(b)) else "n/a"


def serial(a: float, b: float) -> float:
    """Rate of doing a then b one after the other, per unit."""
    return 1 / (1 / a + 1 / b)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def table(rows: list[list[str]]) -> str:
    head = ["figure", "ours", "reference", "ratio", "goal"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *map(line, rows)])


# ---------------------------------------------------------------- main
def main() -> None:
    uid = uuid.uuid4().hex[:8]
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = OUT / "workers"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    say(f"run {uid}; load average {loadavg()}; stack up")
    stack_up()
    load_start = loadavg()
    res: dict[str, Any] = {"uid": uid}

    env = base_env(f"bench-{uid}-inproc-app", f"bench-{uid}-inproc-")
    say(
        f"figures 1+2: run_shard / run_scan vs raw aiokafka ({CEILING_PAGES}k events, "
        f"{CEILING_ROUNDS} rounds) + profile"
    )
    res["ceiling"] = c = run_child(
        "bench.inproc",
        {"mode": "ceiling", "pages": CEILING_PAGES, "rounds": CEILING_ROUNDS},
        env,
        400,
    )
    say(
        f"  stream {c['best']['stream']:,.0f}/s vs raw {c['best']['stream_raw']:,.0f}/s; "
        f"scan {c['best']['scan']:,.0f}/s vs raw {c['best']['scan_raw']:,.0f}/s"
    )

    env = base_env(f"bench-{uid}-mem-app", f"bench-{uid}-mem-")
    say(f"figure 5: {MEMORY_SHARDS} shard runners in one process")
    res["memory"] = m = run_child(
        "bench.inproc", {"mode": "memory", "shards": MEMORY_SHARDS, "pages": MEMORY_PAGES}, env, 400
    )
    say(f"  VmHWM {m['hwm_kb'] / 1024:,.0f} MB (baseline {m['base_rss_kb'] / 1024:,.0f} MB)")

    from bench.against_moto import Bench, delete_topics

    b = Bench(uid, workdir, lambda s: say("  " + s))
    try:
        say(
            f"figure 3: moto fixtures ({MOTO_SNAPSHOT_ITEMS} items, {MOTO_STREAM_EVENTS} "
            "stream events)"
        )
        b.seed(MOTO_SNAPSHOT_ITEMS, MOTO_STREAM_EVENTS)
        # each worker run is bracketed by moto's raw rate just before and just after it
        res["raw_scan"] = b.raw_scan()
        say(f"  moto raw Scan {res['raw_scan']['rate']:,.0f} items/s; worker snapshot (1 segment)")
        res["snap1"] = b.snapshot_run("s1", 1, 1)
        res["raw_scan_2"] = b.raw_scan()
        say(
            f"  worker {res['snap1']['rate']:,.0f} items/s; moto raw Scan "
            f"{res['raw_scan_2']['rate']:,.0f} items/s"
        )
        res["raw_get_records"] = b.raw_get_records()
        say(
            f"figures 3+4: moto raw GetRecords {res['raw_get_records']['rate']:,.0f}/s; worker "
            f"streaming the backlog, then {LATENCY_WRITES} single writes"
        )
        res["stream"], res["latency"] = b.stream_and_latency(LATENCY_WRITES)
        res["raw_get_records_2"] = b.raw_get_records()
        say(
            f"  worker {res['stream']['rate']:,.0f} events/s, p50 {res['latency']['p50']:.3f}s;"
            f" moto raw GetRecords {res['raw_get_records_2']['rate']:,.0f}/s"
        )
        from bench.wire import WireBench

        say(
            f"figure 7: from the wire ({WIRE_STREAM_PAGES}k records, {WIRE_SCAN_PAGES}k items; "
            "worker with DYNAMODB_RAW_HTTP on, then off)"
        )
        with WireBench(b, WIRE_STREAM_PAGES, WIRE_SCAN_PAGES, WIRE_IDLE_SHARDS) as wb:
            res["wire_pages"] = wb.seed()
            res["wire_stream"] = wb.stream(True, WIRE_IDLE_WINDOW)
            res["wire_snapshot"] = wb.snapshot(True)
            res["wire_stream_boto"] = wb.stream(False, 0)
            res["wire_snapshot_boto"] = wb.snapshot(False)
        ws, wn = res["wire_stream"], res["wire_snapshot"]
        say(
            f"  raw path: stream {ws['rate']:,.0f} events/s, snapshot {wn['rate']:,.0f} items/s, "
            f"{ws['idle_calls_per_shard_s']:.2f} GetRecords/s per idle shard; aiobotocore: "
            f"{res['wire_stream_boto']['rate']:,.0f} / {res['wire_snapshot_boto']['rate']:,.0f}"
        )
        res["wire_raw"] = run_child(
            "bench.wire",
            {
                "topic": f"bench-{uid}-wire-raw",
                "partitions": int(wb.env("x", True)["KAFKA_TOPIC_PARTITIONS"]),
                "stream_pages": WIRE_STREAM_PAGES,
                "scan_pages": WIRE_SCAN_PAGES,
            },
            base_env(f"bench-{uid}-wire-app", f"bench-{uid}-wire-"),
            300,
        )
        say(
            f"  raw aiokafka: stream {res['wire_raw']['stream_raw']:,.0f}/s, snapshot "
            f"{res['wire_raw']['scan_raw']:,.0f}/s"
        )
        say("figure 6: 8 scan segments on 1 worker")
        res["seg8x1"] = b.snapshot_run("s8a", 8, 1)
        say("figure 6: 8 scan segments on 2 workers")
        res["seg8x2"] = b.snapshot_run("s8b", 8, 2)
    finally:
        b.cleanup()
        for d in workdir.glob("data-*"):  # worker state stores; the logs stay
            shutil.rmtree(d, ignore_errors=True)
        n = delete_topics(f"bench-{uid}")
        say(f"cleaned up: moto tables, {n} Kafka topics")
    res["load"] = {"start": load_start, "end": loadavg()}
    res["runtime_s"] = time.monotonic() - T0
    (OUT / "results.json").write_text(json.dumps(res, indent=1))
    report(res)


def report(r: dict[str, Any]) -> None:
    c, m = r["ceiling"], r["memory"]
    best = c["best"]
    s1, s8, s82, st, lat = r["snap1"], r["seg8x1"], r["seg8x2"], r["stream"], r["latency"]
    # moto's rate over the worker's run: the mean of the measurements bracketing it
    scan_ref = (r["raw_scan"]["rate"] + r["raw_scan_2"]["rate"]) / 2
    gr_ref = (r["raw_get_records"]["rate"] + r["raw_get_records_2"]["rate"]) / 2
    pg = m["page"]
    mb = 1 / 1024
    wr, ws, wn = r["wire_raw"], r["wire_stream"], r["wire_snapshot"]
    idle = ws["idle_calls_per_shard_s"]
    rows = [
        [
            "7a from the wire: stream, events/s per worker (GetRecords -> Kafka)",
            num(ws["rate"]),
            num(wr["stream_raw"]) + " raw aiokafka batches",
            ratio(ws["rate"], wr["stream_raw"]),
            (
                f">= {GOAL_RATE:,}/s {verdict(ws['rate'] >= GOAL_RATE)}; >= {GOAL_RATIO} x raw "
                f"{verdict(ws['rate'] >= GOAL_RATIO * wr['stream_raw'])}"
            ),
        ],
        [
            "7b from the wire: snapshot, items/s per worker (Scan -> Kafka)",
            num(wn["rate"]),
            num(wr["scan_raw"]) + " raw aiokafka batches",
            ratio(wn["rate"], wr["scan_raw"]),
            f">= {GOAL_RATE:,}/s {verdict(wn['rate'] >= GOAL_RATE)}",
        ],
        [
            f"7c GetRecords calls per idle shard per second ({ws['idle_shards']} shards)",
            f"{idle:.2f}/s",
            "-",
            "-",
            f"<= {GOAL_IDLE_CALLS:g}/s {verdict(idle <= GOAL_IDLE_CALLS)}",
        ],
        [
            "1 stream ceiling, events/s (run_shard -> Kafka; excludes response parsing)",
            num(best["stream"]),
            num(best["stream_raw"]) + " raw aiokafka batches",
            ratio(best["stream"], best["stream_raw"]),
            (
                f">= {GOAL_RATE:,}/s {verdict(best['stream'] >= GOAL_RATE)}; >= {GOAL_RATIO} x raw "
                f"{verdict(best['stream'] >= GOAL_RATIO * best['stream_raw'])}"
            ),
        ],
        [
            "2 INIT_SYNC ceiling, items/s (run_scan -> Kafka; excludes response parsing)",
            num(best["scan"]),
            num(best["scan_raw"]) + " raw aiokafka batches",
            ratio(best["scan"], best["scan_raw"]),
            f">= {GOAL_RATE:,}/s {verdict(best['scan'] >= GOAL_RATE)}",
        ],
        [
            "3a moto snapshot, items/s (worker, 1 segment)",
            num(s1["rate"]),
            num(scan_ref) + " boto3 Scan",
            ratio(s1["rate"], scan_ref),
            "-",
        ],
        [
            "3b moto stream, events/s (worker, backlog)",
            num(st["rate"]),
            num(gr_ref) + " boto3 GetRecords",
            ratio(st["rate"], gr_ref),
            "-",
        ],
        [
            f"4a latency p50, write -> Kafka ({lat['ours_n']} writes)",
            num(lat["p50"], "s"),
            num(lat["raw_p50"], "s") + " raw poller",
            ratio(lat["p50"], lat["raw_p50"]),
            "-",
        ],
        [
            "4b latency p99",
            num(lat["p99"], "s"),
            num(lat["raw_p99"], "s") + " raw poller",
            ratio(lat["p99"], lat["raw_p99"]),
            f"<= {GOAL_P99 * 1000:,.0f} ms {verdict(lat['p99'] <= GOAL_P99)}",
        ],
        [
            f"5 peak RSS, {m['shards']} shard runners (VmHWM)",
            num(m["hwm_kb"] * mb, "MB"),
            num(m["base_rss_kb"] * mb, "MB") + " same process, 0 runners",
            ratio(m["hwm_kb"], m["base_rss_kb"]),
            "-",
        ],
        [
            "6 scale-out snapshot, items/s (8 segments)",
            (
                f"{num(s82['rate'])} 2 workers, split "
                + "+".join(map(str, s82["segments_done_per_worker"]))
            ),
            f"{num(s8['rate'])} 1 worker",
            ratio(s82["rate"], s8["rate"]),
            "-",
        ],
    ]
    print(table(rows))
    print()
    print("raw numbers")
    wsb, wnb, wp = r["wire_stream_boto"], r["wire_snapshot_boto"], r["wire_pages"]
    print(
        f"  7  worker with DYNAMODB_RAW_HTTP=true (raw path) / false (aiobotocore), same run: "
        f"stream {ws['rate']:,.0f} / {wsb['rate']:,.0f} events/s "
        f"(x{ws['rate'] / wsb['rate']:.2f}), snapshot {wn['rate']:,.0f} / {wnb['rate']:,.0f} "
        f"items/s (x{wn['rate'] / wnb['rate']:.2f}); {ws['events']:,} records of "
        f"{wp['bytes_per_record']:,.0f} B and {wn['items']:,} items of "
        f"{wp['bytes_per_item']:,.0f} B on the wire, 1000 a page; times from the worker's "
        f"'reading shard' / 'scanning segment' log line to the last record's broker time"
    )
    print(
        f"     worker CPU share (CPU s / wall s, tag -> last record; 1.0 = one core busy): "
        f"stream {ws['worker_cpu_share']:.2f} raw path / {wsb['worker_cpu_share']:.2f} "
        f"aiobotocore, snapshot {wn['worker_cpu_share']:.2f} / {wnb['worker_cpu_share']:.2f}"
    )
    print(
        f"     parse (app.domain.wire) + encode alone, no Kafka: "
        f"{wr['parse_encode_stream']:,.0f} events/s, {wr['parse_encode_scan']:,.0f} items/s; "
        f"idle shards at the default DYNAMODB_POLL_INTERVAL, counted by the endpoint over "
        f"{WIRE_IDLE_WINDOW:g}s"
    )
    print(
        f"  1  run_shard best/median of {len(c['rates']['stream'])}: "
        f"{best['stream']:,.0f}/{c['median']['stream']:,.0f} events/s; raw best/median "
        f"{best['stream_raw']:,.0f}/{c['median']['stream_raw']:,.0f}; {c['events']:,} "
        f"events = {c['kafka_msgs_stream']:,} Kafka records (REMOVE adds a tombstone), "
        f"~{c['value_bytes_stream']:,} B per event"
    )
    print(
        f"     encode only (Encoder.change, no Kafka) best/median: {best['encode_change']:,.0f}"
        f"/{c['median']['encode_change']:,.0f} events/s; serial encode-then-send estimate "
        f"1/(1/encode + 1/raw) = {serial(best['encode_change'], best['stream_raw']):,.0f}/s; "
        f"raw with one send() per record instead of record batches: "
        f"{c['stream_raw_each']:,.0f}/s"
    )
    print(f"     producer settings (Faust's, also the raw producer's): {c['producer']}")
    print(
        f"  2  run_scan best/median: {best['scan']:,.0f}/{c['median']['scan']:,.0f} items/s; "
        f"raw {best['scan_raw']:,.0f}/{c['median']['scan_raw']:,.0f}; encode only "
        f"(Encoder.snapshot) {best['encode_snapshot']:,.0f}/{c['median']['encode_snapshot']:,.0f}"
        f"; serial estimate {serial(best['encode_snapshot'], best['scan_raw']):,.0f}/s"
    )
    print(
        f"  3a {s1['items']} items: {s1['from_scan_s']:.2f}s from 'scanning segment' to the "
        f"last record ({s1['from_tag_s']:.2f}s from tagging the table); boto3 Scan "
        f"{r['raw_scan']['seconds']:.2f}s / {r['raw_scan_2']['seconds']:.2f}s (just before / "
        f"after the worker; reference = mean rate) in {r['raw_scan']['pages']} pages"
    )
    print(
        f"  3b {st['events']} events {st['ops']}: {st['from_shard_s']:.2f}s from 'reading "
        f"shard' to the last record ({st['from_tag_s']:.2f}s from tagging); boto3 GetRecords "
        f"{r['raw_get_records']['seconds']:.2f}s / {r['raw_get_records_2']['seconds']:.2f}s, "
        f"{r['raw_get_records']['kinds']}"
    )
    print(
        f"  4  worker p50/p99/max {lat['p50']:.3f}/{lat['p99']:.3f}/{lat['max']:.3f}s (broker "
        f"LogAppendTime - write start, default DYNAMODB_POLL_INTERVAL=1.0); raw poller "
        f"p50/p99 {lat['raw_p50']:.3f}/{lat['raw_p99']:.3f}s ({lat['raw_n']} seen)"
    )
    print(
        f"  5  VmHWM {m['hwm_kb'] * mb:,.0f} MB, baseline VmRSS {m['base_rss_kb'] * mb:,.0f} MB,"
        f" {(m['hwm_kb'] - m['base_rss_kb']) * mb / m['shards']:.1f} MB per runner; "
        f"{m['shards']} x {m['records_per_shard']} records delivered in "
        f"{m['delivered_s']:.1f}s ({m['events_per_s']:,.0f} events/s), then "
        f"{m['running_while_idle']} idle runners polling {m['idle_polls_per_s']:.0f}/s"
    )
    print(
        f"     one page = {pg['messages']:,} Kafka messages, {pg['logical_bytes'] / 2**20:.1f} MB "
        f"of key+value bytes, allocated as returned by codec.dumps/orjson: "
        f"{pg['held_bytes'] / 2**20:.1f} MB; right-sized copies: "
        f"{pg['right_sized_bytes'] / 2**20:.1f} MB"
    )
    print(
        f"  6  1 worker: {s8['from_scan_s']:.2f}s, segments done "
        f"{s8['segments_done_per_worker']}; 2 workers: {s82['from_scan_s']:.2f}s, segments "
        f"done {s82['segments_done_per_worker']}, scans started "
        f"{s82['scans_started_per_worker']}"
    )
    print(
        f"  load average {r['load']['start']} -> {r['load']['end']} (2 cores, shared); "
        f"total runtime {r['runtime_s']:.0f}s"
    )
    print()
    prof = c["profile"]
    print(
        f"top profile frames, self time (run_shard at {c['profiled_rate']:,.0f} events/s under "
        f"pyinstrument; full profile in bench/out/profile-stream.txt)"
    )
    for f in prof["top_self"][:5]:
        print(f"  {f['self_pct']:5.1f}%  {f['function']}  {f['file']}:{f['line']}")
    incl = prof["inclusive"]
    keys = [
        k
        for k in incl
        if k.split(" ")[0] in ("change", "item_to_plain", "send_batch") and ("app/" in k)
    ]
    print("  inclusive: " + "; ".join(f"{k} {incl[k]['pct']:.0f}%" for k in keys))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
