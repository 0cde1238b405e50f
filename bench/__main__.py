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
# figure 7: GetRecords pages (x 1000 records of ~2.4 KB) round robin over busy shards read
# at once, as a large table's stream has (one shard follows one table partition: <= 1,000
# writes/s); Scan pages (x 1000 items of ~1 KB) over scan segments; the aiobotocore runs
# (~10x slower) get WIRE_BOTO_PAGES of each over the same shards / segments
WIRE_STREAM_PAGES = 48
WIRE_BUSY_SHARDS = 16
WIRE_SCAN_PAGES = 40
WIRE_SCAN_SEGMENTS = 4
WIRE_BOTO_PAGES = 5
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


# ---------------------------------------------------------------- figure 7
def wire_figure(b: Any, res: dict[str, Any], uid: str, profile_s: float = 0) -> None:
    """Figure 7 into ``res``; with ``profile_s``, py-spy samples the raw-path stream
    worker for that long from its tagging (collapsed stacks in
    bench/out/wire-stream.folded)."""
    from bench.wire import WireBench

    sizes = {
        "stream_pages": WIRE_STREAM_PAGES,
        "busy_shards": WIRE_BUSY_SHARDS,
        "scan_pages": WIRE_SCAN_PAGES,
        "scan_segments": WIRE_SCAN_SEGMENTS,
        "boto_pages": WIRE_BOTO_PAGES,
        "idle": WIRE_IDLE_SHARDS,
    }
    say(
        f"figure 7: from the wire ({WIRE_STREAM_PAGES}k records over {WIRE_BUSY_SHARDS} busy "
        f"shards, {WIRE_SCAN_PAGES}k items over {WIRE_SCAN_SEGMENTS} segments; worker with "
        f"DYNAMODB_RAW_HTTP on, then off with {WIRE_BOTO_PAGES}k of each); load {loadavg()}"
    )
    spies: list[subprocess.Popen[bytes]] = []

    def spy(pid: int) -> None:
        py_spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
        argv = [py_spy, "record", f"--pid={pid}", f"--duration={profile_s:g}", "--rate=250"]
        argv += ["--format=raw", f"--output={OUT / 'wire-stream.folded'}", "--nonblocking"]
        spies.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))

    with WireBench(b, sizes) as wb:
        if profile_s:
            wb.profile = spy
        res["wire_pages"] = wb.seed()
        res["wire_stream"] = wb.stream(True, WIRE_IDLE_WINDOW)
        res["wire_snapshot"] = wb.snapshot(True)
        res["wire_stream_boto"] = wb.stream(False, 0)
        res["wire_snapshot_boto"] = wb.snapshot(False)
        partitions = int(wb.env("x", True)["KAFKA_TOPIC_PARTITIONS"])
    for p in spies:
        p.wait(profile_s + 30)
    ws, wn = res["wire_stream"], res["wire_snapshot"]
    say(
        f"  raw path: stream {ws['rate']:,.0f} events/s, snapshot {wn['rate']:,.0f} items/s, "
        f"{ws['idle_calls_per_shard_s']:.2f} GetRecords/s per idle shard; aiobotocore: "
        f"{res['wire_stream_boto']['rate']:,.0f} / {res['wire_snapshot_boto']['rate']:,.0f}; "
        f"load {loadavg()}"
    )
    res["wire_raw"] = r = run_child(
        "bench.wire",
        {
            "topic": f"bench-{uid}-wire-raw",
            "partitions": partitions,
            "stream_pages": WIRE_STREAM_PAGES,
            "busy_shards": WIRE_BUSY_SHARDS,
            "scan_pages": WIRE_SCAN_PAGES,
            "scan_segments": WIRE_SCAN_SEGMENTS,
        },
        base_env(f"bench-{uid}-wire-app", f"bench-{uid}-wire-"),
        300,
    )
    res["wire_raw_load"] = loadavg()
    a, c = r["aiokafka"], r["confluent"]
    say(
        f"  raw producers, {WIRE_BUSY_SHARDS} shards / {WIRE_SCAN_SEGMENTS} segments at once: "
        f"aiokafka stream {a['stream_groups']:,.0f}/s, snapshot {a['scan_groups']:,.0f}/s; "
        f"confluent-kafka {c['stream_groups']:,.0f}/s, {c['scan_groups']:,.0f}/s; load "
        f"{loadavg()}"
    )


def wire_rows(r: dict[str, Any]) -> list[list[str]]:
    """Figure 7's rows: ours against each raw producer in the same mode (the worker's:
    every shard's / segment's page in flight at once); the faster one is the ceiling.
    The 0.6 x raw goal is judged against aiokafka, the producer the product uses."""
    wr, ws, wn = r["wire_raw"], r["wire_stream"], r["wire_snapshot"]
    a, c = wr["aiokafka"], wr["confluent"]
    idle = ws["idle_calls_per_shard_s"]
    rows = []
    figures = (
        ("7a", f"stream, events/s per worker ({ws['busy_shards']} busy shards)", ws, "stream"),
        ("7b", f"snapshot, items/s per worker ({wn['segments']} segments)", wn, "scan"),
    )
    for fig, what, ours, key in figures:
        ra, rc = a[f"{key}_groups"], c[f"{key}_groups"]
        goals = [f">= {GOAL_RATE:,}/s {verdict(ours['rate'] >= GOAL_RATE)}"]
        if key == "stream":  # against the producer the product uses
            goals.append(f">= {GOAL_RATIO} x raw {verdict(ours['rate'] >= GOAL_RATIO * ra)}")
        rows.append(
            [
                f"{fig} from the wire: {what}",
                num(ours["rate"]),
                num(ra) + " raw aiokafka batches",
                ratio(ours["rate"], ra),
                "; ".join(goals),
            ]
        )
        rows.append(
            [
                f"{fig}' the same against librdkafka",
                "",
                num(rc) + " raw confluent-kafka",
                ratio(ours["rate"], rc),
                "ceiling: " + ("confluent-kafka" if rc > ra else "aiokafka"),
            ]
        )
    rows.append(
        [
            f"7c GetRecords calls per idle shard per second ({ws['idle_shards']} shards)",
            f"{idle:.2f}/s",
            "-",
            "-",
            f"<= {GOAL_IDLE_CALLS:g}/s {verdict(idle <= GOAL_IDLE_CALLS)}",
        ]
    )
    return rows


def wire_lines(r: dict[str, Any]) -> list[str]:
    wr, ws, wn = r["wire_raw"], r["wire_stream"], r["wire_snapshot"]
    a, c = wr["aiokafka"], wr["confluent"]
    wsb, wnb, wp = r["wire_stream_boto"], r["wire_snapshot_boto"], r["wire_pages"]
    return [
        (
            f"  7  worker with DYNAMODB_RAW_HTTP=true (raw path) / false (aiobotocore): stream "
            f"{ws['rate']:,.0f} / {wsb['rate']:,.0f} events/s (x{ws['rate'] / wsb['rate']:.2f}), "
            f"snapshot {wn['rate']:,.0f} / {wnb['rate']:,.0f} items/s "
            f"(x{wn['rate'] / wnb['rate']:.2f}); raw path {ws['events']:,} records of "
            f"{wp['bytes_per_record']:,.0f} B over {ws['busy_shards']} busy shards and "
            f"{wn['items']:,} items of {wp['bytes_per_item']:,.0f} B over {wn['segments']} "
            f"segments, aiobotocore {wsb['events']:,} / {wnb['items']:,}, 1000 a page; times "
            f"from the worker's first 'reading shard' / 'scanning segment' log line to the last "
            f"record's broker time ({ws['seconds']:.2f}s / {wn['seconds']:.2f}s raw path)"
        ),
        (
            f"     worker CPU share (CPU s / wall s, tag -> last record; 1.0 = one core busy): "
            f"stream {ws['worker_cpu_share']:.2f} raw path / {wsb['worker_cpu_share']:.2f} "
            f"aiobotocore, snapshot {wn['worker_cpu_share']:.2f} / {wnb['worker_cpu_share']:.2f}; "
            f"raw path's threads runnable but waiting for a CPU (the machine's load): "
            f"{ws['worker_runq_share']:.2f} stream, {wn['worker_runq_share']:.2f} snapshot; page "
            f"sends failed and sent again (KafkaTimeoutError): {ws['send_retries']} stream, "
            f"{wn['send_retries']} snapshot"
        ),
        (
            f"     raw producers, same bytes, best of 2 (one page at a time: 1 run; load {r.get('wire_raw_load', '?')}): "
            f"aiokafka record batches (app.output.send_records) stream {a['stream_groups']:,.0f}/s "
            f"with {wr['stream_groups']} shards' pages in flight, {a['stream_pages']:,.0f}/s one "
            f"page at a time; snapshot {a['scan_groups']:,.0f}/s ({wr['scan_groups']} segments), "
            f"{a['scan_pages']:,.0f}/s one page at a time; pages sent again after aiokafka's "
            f"KafkaTimeoutError: {a['retries']}"
        ),
        (
            f"     confluent-kafka (librdkafka) in the same modes: stream {c['stream_groups']:,.0f}/s"
            f" / {c['stream_pages']:,.0f}/s, snapshot {c['scan_groups']:,.0f}/s / "
            f"{c['scan_pages']:,.0f}/s (acks all, linger 5 ms, 1 MiB batches, no compression, "
            f"murmur2); librdkafka / aiokafka x{c['stream_groups'] / a['stream_groups']:.2f} "
            f"stream, x{c['scan_groups'] / a['scan_groups']:.2f} snapshot"
        ),
        (
            f"     body -> messages alone (app.fastwire, {wr['codec']}), no Kafka: "
            f"{wr['parse_encode_stream']:,.0f} events/s, {wr['parse_encode_scan']:,.0f} items/s; "
            f"idle shards at the default DYNAMODB_POLL_INTERVAL, counted by the endpoint over "
            f"{WIRE_IDLE_WINDOW:g}s"
        ),
    ]


def wire_only(profile_s: float) -> None:
    """`python -m bench wire [--profile SECONDS]`: figure 7 alone."""
    from bench.against_moto import Bench, delete_topics

    uid = uuid.uuid4().hex[:8]
    workdir = OUT / "workers"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    stack_up()
    res: dict[str, Any] = {"uid": uid, "load": {"start": loadavg()}}
    b = Bench(uid, workdir, lambda s: say("  " + s))
    try:
        wire_figure(b, res, uid, profile_s)
    finally:
        b.cleanup()
        for d in workdir.glob("data-*"):
            shutil.rmtree(d, ignore_errors=True)
        delete_topics(f"bench-{uid}")
    res["load"]["end"] = loadavg()
    (OUT / "results-wire.json").write_text(json.dumps(res, indent=1))
    print(table(wire_rows(res)))
    print("\n".join(wire_lines(res)))
    print(f"  load average {res['load']['start']} -> {res['load']['end']} (2 cores, shared)")


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
        wire_figure(b, res, uid)
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
    rows = [
        *wire_rows(r),
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
    print("\n".join(wire_lines(r)))
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
    if sys.argv[1:2] == ["wire"]:
        wire_only(float(sys.argv[3]) if sys.argv[2:3] == ["--profile"] else 0)
    else:
        main()
