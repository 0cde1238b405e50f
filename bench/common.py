"""Shared pieces: synthetic items and stream records, environments, small helpers."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
# the ports scripts/stack.py uses (STACK_KAFKA_PORT / STACK_MOTO_PORT, same defaults)
BROKER = f"127.0.0.1:{os.environ.get('STACK_KAFKA_PORT', '9092')}"
MOTO = f"http://127.0.0.1:{os.environ.get('STACK_MOTO_PORT', '5000')}"
KEY_NAMES = ("pk", "sk")

_WORDS = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
)


def make_item(i: int, version: int = 0, pad: int = 640) -> dict[str, Any]:
    """A ~1 KB item (DynamoDB size) with 15 attributes of most types (S, N, BOOL, SS, NS,
    B, M, L, NULL); ``pad`` sizes the free-text attribute (640 gives ~1 KB)."""
    rng = random.Random(i * 7919 + version)
    words = " ".join(rng.choice(_WORDS) for _ in range(12))
    return {
        "pk": {"S": f"customer#{i:08d}"},
        "sk": {"N": str(1_700_000_000 + i)},
        "status": {"S": rng.choice(("NEW", "PAID", "SHIPPED", "CANCELLED"))},
        "amount": {"N": f"{rng.randint(1, 10**6)}.{rng.randint(0, 99):02d}"},
        "qty": {"N": str(rng.randint(1, 500))},
        "version": {"N": str(version)},
        "active": {"BOOL": rng.random() < 0.5},
        "note": {"S": (words * 12)[:pad]},
        "email": {"S": f"user{i}@example.com"},
        "tags": {"SS": sorted({rng.choice(_WORDS) for _ in range(5)})},
        "scores": {"NS": [str(rng.randint(0, 1000)) for _ in range(4)]},
        "blob": {"B": rng.randbytes(48)},
        "address": {
            "M": {
                "street": {"S": f"{rng.randint(1, 999)} {rng.choice(_WORDS)} st"},
                "city": {"S": rng.choice(_WORDS).title()},
                "zip": {"S": f"{rng.randint(10000, 99999)}"},
                "geo": {
                    "L": [
                        {"N": f"{rng.uniform(-90, 90):.6f}"},
                        {"N": f"{rng.uniform(-180, 180):.6f}"},
                    ]
                },
            }
        },
        "lines": {
            "L": [
                {
                    "M": {
                        "sku": {"S": f"SKU-{rng.randint(0, 99999):05d}"},
                        "n": {"N": str(rng.randint(1, 9))},
                    }
                }
                for _ in range(3)
            ]
        },
        "deleted_at": {"NULL": True},
    }


def item_size(item: dict[str, Any]) -> int:
    """Rough DynamoDB item size: attribute names + value payloads."""

    def size(av: Any) -> int:
        ((tag, v),) = av.items()
        if tag in ("S", "N"):
            return len(v.encode())
        if tag == "B":
            return len(v)
        if tag in ("SS", "NS"):
            return sum(len(x.encode()) for x in v)
        if tag == "BS":
            return sum(len(x) for x in v)
        if tag == "M":
            return 3 + sum(len(k) + size(a) for k, a in v.items())
        if tag == "L":
            return 3 + sum(1 + size(a) for a in v)
        return 1

    return sum(len(k) + size(a) for k, a in item.items())


def item_pool(n: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``n`` (old, new) image pairs of the same key; records and pages share them so that
    a long run needs little fixture memory (the encoder never looks at identity)."""
    return [(make_item(i, 0), make_item(i, 1)) for i in range(n)]


def make_records(
    n: int,
    pool: list[tuple[dict[str, Any], dict[str, Any]]],
    seed: int = 1,
    start_seq: int = 10**20,
) -> list[Any]:
    """``n`` StreamRecords (NEW_AND_OLD_IMAGES) with increasing sequence numbers:
    ~40% INSERT (new image), ~40% MODIFY (both), ~20% REMOVE (old image)."""
    from app.domain.model import StreamRecord

    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    out = []
    for j in range(n):
        old, new = pool[rng.randrange(len(pool))]
        r = rng.random()
        if r < 0.4:
            ev, ni, oi = "INSERT", new, None
        elif r < 0.8:
            ev, ni, oi = "MODIFY", new, old
        else:
            ev, ni, oi = "REMOVE", None, old
        out.append(
            StreamRecord(
                event_name=ev,
                sequence_number=str(start_seq + 100 * j),
                approx_ts_ms=now_ms,
                keys={"pk": new["pk"], "sk": new["sk"]},
                new_image=ni,
                old_image=oi,
                size_bytes=item_size(ni or {}) + item_size(oi or {}),
            )
        )
    return out


def base_env(app_id: str, prefix: str, **extra: str) -> dict[str, str]:
    """The product's environment (app.settings) for an in-process bench child."""
    return {
        "BROKER_URL": f"kafka://{BROKER}",
        "AWS_ENDPOINT_URL": MOTO,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "APP_ID": app_id,
        "KAFKA_TOPIC_PREFIX": prefix,
        "STATE_STORE": "memory://",
        "LOG_LEVEL": "warning",
        **extra,
    }


def run_child(
    module: str, args: dict[str, Any], env: dict[str, str], timeout: float
) -> dict[str, Any]:
    """Run ``python -m module '<json args>'`` in a fresh process; its last stdout line is
    a JSON result.  stderr passes through (warnings stay visible)."""
    import os

    proc = subprocess.run(
        [sys.executable, "-m", module, json.dumps(args)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [x for x in proc.stdout.splitlines() if x.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{module} {args.get('mode')} failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}"
        )
    return dict(json.loads(lines[-1]))


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, -(-len(s) * p // 100) - 1))
    return s[int(k)]


def vm_status(field: str) -> int:
    """A /proc/self/status field in kB (VmHWM, VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0
