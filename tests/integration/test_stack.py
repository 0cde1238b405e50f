"""The stack is real: a Faust worker subprocess against the real broker keeps a
rocksdb:// changelog-backed table across a restart with a *fresh* data directory,
so the value can only come back through changelog recovery."""

from __future__ import annotations

from pathlib import Path

from tests.integration.helpers import TopicReader, Worker, produce


def test_table_survives_restart_through_changelog(
    stack: dict[str, str], uid: str, workdir: Path
) -> None:
    prefix = f"probe-{uid}"
    env = {**stack, "PROBE_PREFIX": prefix, "PROBE_STORE": "rocksdb://"}
    out = TopicReader(stack, f"{prefix}-out")
    worker = Worker("tests.integration.probe_app", env, workdir, "probe").start()
    try:
        worker.wait_log(r"Worker ready", timeout=90)
        produce(stack, f"{prefix}-in", [(b"k", b"x")] * 3)
        out.read_until(lambda rs: any(r.value == b"3" for r in rs), 60, "count 3")
        assert worker.stop() < 30

        worker.start(fresh_datadir="data-probe-2")  # no local RocksDB state at all
        worker.wait_log(r"Worker ready", timeout=90, count=2)
        produce(stack, f"{prefix}-in", [(b"k", b"y")])
        out.read_until(lambda rs: any(r.value == b"4" for r in rs), 60, "count 4")
        assert [r.value for r in out.records] == [b"1", b"2", b"3", b"4"]
        # the store really is RocksDB, recreated in the fresh data dir
        assert any(p.name == "CURRENT" for p in worker.datadir.rglob("*"))
    finally:
        worker.kill()
        out.close()
