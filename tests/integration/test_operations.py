"""What operators use, against a running two-worker cluster (real broker, moto server):
the status page in headless Chromium and its JSON on either worker, Prometheus
/metrics, the INIT_SYNC progress log, and the faust CLI commands (status,
checkpoints, resync); a table refused next to a good one (OLD_IMAGE stream)."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import chromium, screenshot, wait_for
from tests.integration.dynamo import (
    batch_put,
    client,
    create_table,
    decode,
    snapshot_keys,
    worker_env,
)
from tests.integration.helpers import FAUST, ROOT, TopicReader, Worker, wait_until

N_ITEMS = 600
SECRET = "pw-9f8e7d6c5b4a"


def assert_json_log(text: str) -> None:
    """From our first line on (Faust's start-up banner precedes it), one JSON object per
    line; the settings dump masks the password."""
    lines = text.splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.startswith("{"))
    objs = [json.loads(ln) for ln in lines[first:] if ln.strip()]
    assert len(objs) > 20 and all({"ts", "level", "logger", "message"} <= o.keys() for o in objs)
    (dump,) = [o["message"] for o in objs if o["message"].startswith("settings: ")]
    assert "'kafka_sasl_password': '***'" in dump


def get(worker: Worker, path: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}{path}", timeout=10) as r:
        return r.headers.get("Content-Type", ""), r.read()


def status_json(worker: Worker) -> dict[str, Any]:
    return json.loads(get(worker, "/status.json")[1])


def row(worker: Worker, table: str) -> dict[str, Any] | None:
    try:
        rows = status_json(worker)["tables"]
    except OSError:  # web server not up yet
        return None
    return next((r for r in rows if r["table"] == table), None)


def cells(driver: Any, table: str) -> list[str]:
    """The row's cell texts, read in one script call: the page re-renders every 2 s, so
    element handles found earlier may be stale by the time they are read."""
    return list(
        driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0]), td => td.innerText)",
            f'tr[data-table="{table}"] td',
        )
    )


def cli(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FAUST, "-A", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def metric_sum(workers: list[Worker], name: str, **labels: str) -> float:
    """Sum of one Prometheus sample over the workers' /metrics pages."""
    total = 0.0
    for w in workers:
        for line in get(w, "/metrics")[1].decode().splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_status_page_metrics_progress_and_cli(stack, uid, workdir: Path, tmp_path: Path):
    ddb = client(stack)
    table = f"ops-{uid}"
    create_table(ddb, table, [("pk", "S")], {f"itest-{uid}": "1"})
    batch_put(ddb, table, [{"pk": {"S": f"k{i:04d}"}, "v": {"N": str(i)}} for i in range(N_ITEMS)])
    keys = {f'{{"pk":"k{i:04d}"}}'.encode() for i in range(N_ITEMS)}
    # its stream carries no new image: refused, with the reason shown everywhere
    old = f"old-{uid}"
    create_table(ddb, old, [("pk", "S")], {f"itest-{uid}": "1"}, view="OLD_IMAGE")
    ddb.put_item(TableName=old, Item={"pk": {"S": "x"}})
    why = "stream view type OLD_IMAGE carries no new item image"
    # 24 pages of 25 items, 1 RCU shared by 2 segments (moto charges 0.5 per page): the
    # snapshot takes ~10 s, the progress log (every second) and the page can show it
    env = worker_env(
        stack,
        uid,
        DYNAMODB_SCAN_PAGE_LIMIT="25",
        DYNAMODB_SCAN_SEGMENTS="2",
        DYNAMODB_SCAN_MAX_RCU="1",
        PROGRESS_LOG_INTERVAL="1",
    )
    # w1 logs JSON lines; the password it is given must never show in a log
    json_env = {**env, "LOG_FORMAT": "json", "KAFKA_SASL_PASSWORD": SECRET}
    workers = [
        Worker("app", env, workdir, "w0").start(),
        Worker("app", json_env, workdir, "w1").start(),
    ]
    reader = TopicReader(stack, f"it-{uid}-{table}")
    try:
        with chromium(tmp_path) as driver:
            # ---- INIT_SYNC: progress bar on the page, progress in the leader's log
            wait_until(
                lambda: (
                    (r := row(workers[0], table))
                    and r["phase"] == "INIT_SYNC"
                    and r["snapshot"]["items"] > 0
                ),
                120,
                "INIT_SYNC with items in the JSON",
            )
            refused = wait_until(
                lambda: (r := row(workers[1], old)) and r["phase"] == "REFUSED" and r,
                60,
                "the OLD_IMAGE table REFUSED",
            )
            assert refused["refused"].startswith(why) and refused["error"] == refused["refused"]
            assert refused["snapshot"] is None and refused["epoch"] == 0
            driver.get(f"http://127.0.0.1:{workers[1].web_port}/status")
            tr = f'tr[data-table="{table}"]'
            wait_for(driver, tr)
            texts = cells(driver, table)
            assert texts[0] == table
            if texts[1] == "INIT_SYNC":  # not over yet: a partial bar with rate and ETA
                # and, below, the snapshot's buffer (changes held while the table is scanned)
                assert re.fullmatch(
                    r"\d+\.\d% · \d+ / ~600 items · \d/2 segments · "
                    r"[\d,]+ items/s · ETA (\d+s|\d+m\d\ds|–)\n"
                    r"buffer: [\d,]+ changes held · [\d,]+ replayed · \d/3 partitions caught up",
                    texts[2],
                ), texts
                print(f"\nINIT_SYNC on the page: {texts[2]}")
                screenshot(driver, tmp_path / "status-init-sync.png")
            Worker.wait_any_log(
                workers,
                rf"{table}: INIT_SYNC \d+\.\d% \(\d+ items of "
                rf"~{N_ITEMS}; \d/2 segments done\), [\d,]+ items/s, ETA ",
                timeout=60,
            )

            # ---- streaming: the open page follows by itself (no reload)
            WebDriverWait(driver, 180).until(lambda d: cells(d, table)[1] == "STREAMING")
            for w in workers:  # either worker answers for the whole cluster
                wait_until(
                    lambda w=w: (r := row(w, table)) and r["phase"] == "STREAMING",
                    60,
                    f"STREAMING on {w.name}'s status.json",
                )
            ddb.put_item(TableName=table, Item={"pk": {"S": "live-1"}, "v": {"N": "1"}})
            reader.read_until(
                lambda rs: any(r.value and decode(r.value)["op"] == "c" for r in rs),
                90,
                "the live insert",
            )
            wait_until(
                lambda: (
                    (r := row(workers[1], table)) and r["events"] >= 1 and r["lag_s"] is not None
                ),
                60,
                "the stream event in the JSON",
            )
            r = row(workers[1], table)
            # exact on purpose: not a count of output records but of the items the scan
            # cursors covered (a page re-read after a rebalance resumes from the stored
            # (cursor, count) pair, so it is never counted twice)
            assert r["snapshot"]["items"] == N_ITEMS and r["snapshot"]["percent"] == 100.0
            assert r["snapshot"]["segments_done"] == r["snapshot"]["segments_total"] == 2
            assert r["shards"]["open"] == 1 and r["error"] is None
            assert 0 <= r["lag_s"] < 60 and r["last_event_age_s"] is not None

            WebDriverWait(driver, 30).until(lambda d: cells(d, table)[5] != "–")
            texts = cells(driver, table)
            assert texts[:4] == [
                table,
                "STREAMING",
                f"100.0% · {N_ITEMS} items · 2/2 segments · done",
                "1 / 0",
            ]
            assert re.fullmatch(r"\d+\.\ds", texts[5]) and texts[6].endswith(" ago")
            assert (
                driver.execute_script(
                    "return document.querySelector(arguments[0]).getAttribute('aria-valuenow')",
                    f"{tr} .bar",
                )
                == "100"
            )
            wait_for(driver, f'tr[data-table="{old}"]')
            texts = cells(driver, old)
            assert texts[1] == "REFUSED" and texts[-1].startswith(why), texts
            shot = screenshot(driver, tmp_path / "status-page.png")
            assert shot.stat().st_size > 5000
            print(f"status page screenshots in {tmp_path}")

        # ---- Prometheus
        ctype, body = get(workers[0], "/metrics")
        assert ctype.startswith("text/plain") and b"# TYPE dynamodb_replicator_events_out" in body
        # >=: a segment moved by a rebalance while the two workers start may repeat a page
        wait_until(
            lambda: (
                metric_sum(
                    workers, "dynamodb_replicator_events_out_total", table=table, kind="snapshot"
                )
                >= N_ITEMS
            ),
            30,
            "snapshot events counted on /metrics",
        )
        assert (
            metric_sum(workers, "dynamodb_replicator_snapshot_items_total", table=table) >= N_ITEMS
        )
        assert metric_sum(workers, "dynamodb_replicator_lag_seconds", table=table) >= 0
        for w in workers:  # every worker reports the cluster's refused tables
            assert metric_sum([w], "dynamodb_replicator_tables_refused", table=old) == 1
            assert metric_sum([w], "dynamodb_replicator_tables_refused", table=table) == 0
        # warned once per reason, not every discovery round (a rebalance may replay one
        # control message: at-least-once)
        warned = sum(w.log().count(f"{old}: REFUSED: {why}") for w in workers)
        assert 1 <= warned <= 2, warned

        # ---- CLI against the running cluster
        out = cli(env, "status", "--json")
        assert out.returncode == 0, out.stderr
        (listed,) = [x for x in json.loads(out.stdout) if x["table"] == table]
        assert listed["phase"] == "STREAMING" and listed["epoch"] == 1
        (listed_old,) = [x for x in json.loads(out.stdout) if x["table"] == old]
        assert listed_old["phase"] == "REFUSED" and listed_old["refused"].startswith(why)
        text = cli(env, "status")
        assert text.returncode == 0 and table in text.stdout and "STREAMING" in text.stdout
        (old_line,) = [ln for ln in text.stdout.splitlines() if ln.startswith(old)]
        assert "REFUSED" in old_line and why in old_line and "snapshot_only" in old_line
        assert cli(env, "resync", old).returncode != 0  # nothing to re-snapshot

        cps = cli(env, "checkpoints", table, "--json")
        assert cps.returncode == 0, cps.stderr
        units = json.loads(cps.stdout)
        shard = [u for u in units if u["unit"] == "shard"]
        assert len(shard) == 1 and shard[0]["status"] == "active" and shard[0]["count"] >= 1
        assert int(shard[0]["position"]) > 0  # a sequence number
        assert cli(env, "checkpoints", "no-such-table").returncode != 0

        # one snapshot with every item (the "c" read above may have come from another
        # partition before the last "r" records: read until they are all there)
        reader.read_until(
            lambda recs: keys <= set().union(*snapshot_keys(recs).values()),
            60,
            "every item of the first snapshot",
        )
        assert list(snapshot_keys(reader.records).values()) == [keys]
        rs = cli(env, "resync", table, "--timeout", "60")
        assert rs.returncode == 0, rs.stderr + rs.stdout
        assert "epoch 2 started" in rs.stdout
        # a second snapshot: every item again, live-1 too
        reader.read_until(
            lambda recs: (
                len(snaps := snapshot_keys(recs)) == 2
                and keys | {b'{"pk":"live-1"}'} == snaps[max(snaps)]
            ),
            180,
            "the second snapshot",
        )
        wait_until(
            lambda: (
                (r := row(workers[0], table))
                and r["epoch"] == 2
                and r["phase"] == "STREAMING"
                and r["resnapshots"] == 1
            ),
            120,
            "epoch 2 streaming",
        )
        assert all(w.alive for w in workers)
        assert_json_log(workers[1].log())
        assert all(SECRET not in w.log() for w in workers)
    finally:
        reader.close()
        for w in workers:
            w.stop()
