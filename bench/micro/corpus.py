"""Byte-for-byte regression corpus for the encoder (codec + envelope).

    .venv/bin/python -m bench.micro.corpus record /tmp/encode-corpus.pkl
    .venv/bin/python -m bench.micro.corpus check  /tmp/encode-corpus.pkl

``record`` runs the current code over a few thousand inputs and stores every output
(Kafka key/value bytes, codec results, error type + message + resource); ``check``
re-runs the same inputs and fails on the first difference.  Use it around any change to
app/domain/codec.py or envelope.py that must not change a single output byte.

Inputs: bench.common's ~1 KB records and items; items drawn from the hypothesis
strategies of tests/unit/test_codec.py (valid, loose-number and nested); hand-made edge
cases (every malformed shape from the unit tests, at the top level and nested in M/L;
odd binary and number types; key attributes that are missing, empty, differ from the
image or are not S/N/B); each encoded as INSERT/MODIFY/REMOVE and snapshot in both
formats, with and without tombstones / snapshot info / arn.
"""

from __future__ import annotations

import os
import pickle
import random
import sys
from collections import OrderedDict
from decimal import Decimal
from typing import Any

from app.domain import codec, envelope
from app.domain.envelope import Encoder, SnapshotInfo, SourceInfo
from app.domain.model import StreamRecord

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2024"

BAD_VALUES: list[Any] = [
    {"S": "a", "N": "1"},
    {},
    "S",
    None,
    ["S"],
    {"S": 1},
    {"BOOL": "true"},
    {"NULL": False},
    {"M": []},
    {"L": {}},
    {"SS": "abc"},
    {"SS": ["a", 1]},
    {"BS": [b"a", 3]},
    {"B": 5},
    {"B": "not base64!"},
    {"s": "lower-case tag"},
    {"N": "NaN"},
    {"N": 1.5},
    {"N": True},
    {"N": "1_000"},
    {"N": "١٢"},
    {"NS": ["1", "x"]},
    {"NS": "1"},
    {"M": OrderedDict()},
    {"L": "ab"},
    {"Q": 1},
    {"BOOL": 1},
    {"NULL": 1},
    {"BS": [b"a", "%%"]},
    {"S": b"x"},
    {"M": {"k": {"S": 1}}},
    {"L": [{"S": "a"}, {"N": "x"}]},
    {"NS": [1.5]},
    {"SS": [1]},
    {"NS": []},
    {"SS": []},
    {"B": None},
    {"M": None},
    {"L": None},
    1,
    "",
    [],
    OrderedDict(),
]

ODD_VALUES: list[Any] = [
    {"N": "007"},
    {"N": " 5"},
    {"N": "+1.5e3"},
    {"N": ".5"},
    {"N": "5."},
    {"N": "-0"},
    {"N": "0"},
    {"N": "-0.0"},
    {"N": "1E+125"},
    {"N": "1e-130"},
    {"N": 12},
    {"N": Decimal("1.50")},
    {"N": "12345678901234567890123456789012345678"},
    {"N": "-9.9999999999999999999999999999999999999E+125"},
    {"N": "0123"},
    {"N": "1e5"},
    {"N": "-12"},
    {"N": "12.50"},
    {"B": b""},
    {"B": bytearray(b"\x00\xff")},
    {"B": "AP8="},
    {"B": "QUJD"},
    {"SS": ["b", "a", "C"]},
    {"SS": ("z", "y")},
    {"SS": {"q"}},
    {"SS": frozenset({"r", "s"})},
    {"NS": ["10", "9", "-1e3", "2.5", "1E-130"]},
    {"NS": ("3", "1", "2")},
    {"NS": ["007", "5"]},
    {"NS": [1, 3, 2]},
    {"NS": [Decimal("2.0"), "1"]},
    {"BS": [b"\xff", b"\x00\x01", b"\x00"]},
    {"BS": ["AP8=", b"\x00"]},
    {"BS": (bytearray(b"a"),)},
    {"BS": []},
    {"M": {}},
    {"L": []},
    {"L": ({"S": "t"},)},
    {"NULL": True},
    {"BOOL": False},
    {"BOOL": True},
    OrderedDict(S="ordered"),
    {"M": {"a": OrderedDict(N="1")}},
    {"S": ""},
    {"S": 'é\u2028\x00"\\'},
    {"M": {"": {"S": "empty name"}, "é": {"N": "1"}}},
    {"L": [{"L": [{"L": [{"M": {"x": {"NULL": True}}}]}]}]},
]


def _mv(av: Any) -> Any:
    """Binary as memoryview: not picklable, so made fresh on every run."""
    return {"B": memoryview(b"\x01\x02\xfe")}


def edge_items() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    base = {"pk": {"S": "p"}, "sk": {"N": "1"}}
    for v in ODD_VALUES + BAD_VALUES:
        out.append({**base, "x": v})
        out.append({"x": v, **base, "y": {"S": "after"}})
        out.append({**base, "m": {"M": {"a": {"S": "ok"}, "x": v}}})
        out.append({**base, "l": {"L": [{"S": "ok"}, {"M": {"x": v}}]}})
    out.append({**base, "b": _mv(None)})
    out.append({**base, "l": {"L": [_mv(None)]}})
    out.append({**base, "a": {"N": "NaN"}, "b": {"Q": 1}})  # two errors: the first wins
    out.append({"pk": {"S": 1}, "sk": {"N": "1"}, "a": {"N": "NaN"}})
    out.append({"a": {"N": "NaN"}, "pk": {"S": 1}, "sk": {"N": "1"}})
    deep: Any = {"Q": 1}
    for _ in range(40):
        deep = {"M": {"k": deep, "j": {"S": "x"}}}
    out.append({**base, "top": deep})
    deep = {"S": "leaf"}
    for i in range(60):
        deep = {"L": [{"N": str(i)}, deep]} if i % 2 else {"M": {"k": deep}}
    out.append({**base, "top": deep})
    return out


def hypothesis_items(n: int) -> list[dict[str, Any]]:
    from hypothesis import HealthCheck, given, settings

    sys.path.insert(0, ".")
    from tests.unit.test_codec import items

    got: list[dict[str, Any]] = []
    for json_only in (False, True):

        @settings(
            max_examples=n // 2,
            database=None,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(items(json_only))
        def collect(item: dict[str, Any]) -> None:
            got.append(item)

        collect()
    return got


def bench_items(n: int) -> tuple[list[dict[str, Any]], list[StreamRecord]]:
    from bench.common import item_pool, make_records

    pool = item_pool(n)
    return [new for _, new in pool] + [old for old, _ in pool], make_records(n, pool)


def inputs(n_hyp: int) -> tuple[list[dict[str, Any]], list[StreamRecord]]:
    items, records = bench_items(150)
    items = items + edge_items() + hypothesis_items(n_hyp)
    return items, records


def _run(fn: Any, *a: Any) -> Any:
    try:
        out = fn(*a)
    except Exception as e:  # noqa: BLE001 - recorded, compared
        cause = e.__cause__
        return (
            "err",
            type(e).__name__,
            str(e),
            getattr(e, "resource", None),
            None if cause is None else (type(cause).__name__, str(cause)),
        )
    return ("ok", out)


def _dumped(fn: Any) -> Any:
    return lambda *a: codec.dumps(fn(*a))


def outputs(items: list[dict[str, Any]], records: list[StreamRecord]) -> list[Any]:
    rng = random.Random(7)
    snaps = [None, SnapshotInfo(True, 1, None, 0), SnapshotInfo(False, 1, 2, 3)]
    encs = {(f, t): Encoder(f, t) for f in ("native", "seed") for t in (False, True)}
    out: list[Any] = []
    for item in items:
        names = list(item)
        # codec level
        out.append(_run(_dumped(codec.item_to_plain), item))
        out.append(_run(_dumped(codec.item_to_sdk_v1), item))
        for av in list(item.values())[:3]:
            out.append(_run(_dumped(codec.to_plain), av))
        # key names: the usual (first one or two attributes) and some odd choices
        choices = [
            tuple(names[:1]),
            tuple(names[:2]),
            tuple(reversed(names[:2])),
            tuple(names[-1:]),
            ("missing",),
        ]
        for key_names in choices:
            keys = {k: item[k] for k in key_names if k in item}
            out.append(_run(codec.key_json, keys))
            out.append(_run(codec.seed_key, keys))
            for enc in encs.values():
                snap = rng.choice(snaps)
                out.append(_run(enc.snapshot, "t", key_names, item, 1, 4, 99, snap))
                for ev in ("INSERT", "MODIFY", "REMOVE"):
                    # keys: the image's own objects, equal copies, empty (key_of path),
                    # or different values from the image's
                    kind = rng.randrange(4)
                    if kind == 0:
                        rk = keys
                    elif kind == 1:
                        rk = pickle.loads(pickle.dumps(keys)) if _picklable(keys) else keys
                    elif kind == 2:
                        rk = {}
                    else:
                        rk = {k: {"S": f"other-{k}"} for k in key_names}
                    other = items[rng.randrange(len(items))]
                    new = None if ev == "REMOVE" else item
                    old = None if ev == "INSERT" else rng.choice([item, other, None])
                    rec = StreamRecord(
                        ev,
                        str(rng.randrange(10**21)),
                        rng.randrange(10**13),  # type: ignore[arg-type]
                        rk,
                        new,
                        old,
                        ttl_delete=rng.random() < 0.3,
                    )
                    arn, shard = rng.choice([(ARN, "shardId-1"), (None, None)])
                    out.append(_run(enc.change, "t", key_names, rec, arn, shard, snap))
                    if hasattr(enc, "changes"):
                        out.append(_run(enc.changes, "t", key_names, [rec], arn, shard, snap))
                    else:
                        out.append(
                            _run(
                                lambda *a, enc=enc: [enc.change(*a)],
                                "t",
                                key_names,
                                rec,
                                arn,
                                shard,
                                snap,
                            )
                        )
        src = SourceInfo("t", ARN, "s", "1", rng.random() < 0.5, 1, 2, rng.random() < 0.5)
        keys = {k: item[k] for k in names[:2]}
        for op in ("r", "c", "u", "d", "x"):
            out.append(_run(envelope.native, op, keys, item, item, 5, src, True))
            out.append(_run(envelope.seed, op, keys, item, item, 5, "t", snaps[2], True))
    for rec in records:
        for enc in encs.values():
            out.append(_run(enc.change, "orders", ("pk", "sk"), rec, ARN, "shardId-1", None))
    for enc in encs.values():
        for i in range(0, len(records), 100):
            page = records[i : i + 100]
            if hasattr(enc, "changes"):
                out.append(_run(enc.changes, "orders", ("pk", "sk"), page, ARN, "s", None))
            else:
                out.append(
                    _run(
                        lambda p, enc=enc: [
                            enc.change("orders", ("pk", "sk"), r, ARN, "s", None) for r in p
                        ],
                        page,
                    )
                )
    return out


def _picklable(x: Any) -> bool:
    try:
        pickle.dumps(x)
    except TypeError:
        return False
    return True


def _norm(o: Any) -> Any:
    """``changes`` returns a flat list per page: flatten the per-record lists to compare."""
    if o[0] == "ok" and type(o[1]) is list and o[1] and type(o[1][0]) is list:
        return ("ok", [m for ms in o[1] for m in ms])
    return o


def main() -> None:
    if os.environ.get("PYTHONHASHSEED") != "0":
        # the seed form keeps set order, and a Python set's order depends on str hashes
        os.execve(
            sys.executable,
            [sys.executable, "-m", "bench.micro.corpus", *sys.argv[1:]],
            {**os.environ, "PYTHONHASHSEED": "0"},
        )
    cmd, path = sys.argv[1], sys.argv[2]
    n_hyp = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    if cmd == "record":
        items, records = inputs(n_hyp)
        with open(path, "wb") as f:
            pickle.dump((n_hyp, [i for i in items if _picklable(i)], records), f)
        out = [_norm(o) for o in outputs(*_load_inputs(path))]
        with open(path + ".out", "wb") as f:
            pickle.dump(out, f)
        print(f"recorded {len(out)} outputs ({sum(o[0] == 'err' for o in out)} errors)")
    elif cmd == "check":
        with open(path + ".out", "rb") as f:
            want = pickle.load(f)
        got = [_norm(o) for o in outputs(*_load_inputs(path))]
        assert len(got) == len(want), (len(got), len(want))
        bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
        for i in bad[:5]:
            print(f"#{i}\n  want {want[i]!r:.600}\n  got  {got[i]!r:.600}")
        print(f"{len(got) - len(bad)}/{len(got)} identical")
        sys.exit(1 if bad else 0)
    else:
        sys.exit(__doc__)


def _load_inputs(path: str) -> tuple[list[dict[str, Any]], list[StreamRecord]]:
    """Stored inputs plus the unpicklable (memoryview) edge cases, rebuilt."""
    with open(path, "rb") as f:
        _, items, records = pickle.load(f)
    mv = [i for i in edge_items() if not _picklable(i)]
    return items + mv, records


if __name__ == "__main__":
    main()
