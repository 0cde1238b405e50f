"""Issue 11 item 3: a second deployment started with the same APP_ID refuses to start,
naming the settings that differ, and leaves the first one undisturbed; an operator can
adopt new settings on purpose.  Before: it silently joined the consumer group (its leader
stopped the other's tables, units ran with its prefix and credentials)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.integration.dynamo import worker_env
from tests.integration.helpers import FAUST, ROOT, Worker, wait_until


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FAUST, "-A", "app", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_another_deployment_with_the_same_app_id_refuses_to_start(
    stack: dict[str, str], uid: str, workdir: Path
) -> None:
    first_env = worker_env(stack, uid)
    other_env = worker_env(
        stack, uid, KAFKA_TOPIC_PREFIX=f"it-{uid}-staging-", STATE_PARTITIONS="2"
    )
    first = Worker("app", first_env, workdir, "first").start()
    other = Worker("app", other_env, workdir, "other")
    try:
        first.wait_log(r"deployment [0-9a-f]{16} \(recorded by")
        first.wait_log(r"Joined group .* \(generation 1\)")
        other.start()
        assert other.proc is not None
        code = other.proc.wait(120)
        log = other.log()
        assert code == 3, log[-3000:]
        assert "deployment conflict" in log
        assert f"KAFKA_TOPIC_PREFIX: 'it-{uid}-staging-' here, 'it-{uid}-' in the deployment" in log
        assert "STATE_PARTITIONS: '2' here, '4' in the deployment" in log
        # it never joined the group: the first worker saw no rebalance
        assert first.alive and "deployment conflict" not in first.log()
        assert "Joined group" not in log and "(generation 2)" not in first.log()

        shown = cli(other_env, "deployment")
        assert shown.returncode == 0, shown.stderr
        assert f"KAFKA_TOPIC_PREFIX=it-{uid}-" in shown.stdout
        assert "these settings differ" in shown.stdout

        # on purpose: adopt the new settings, then workers with them start
        adopted = cli(other_env, "deployment", "--adopt")
        assert adopted.returncode == 0 and "adopted" in adopted.stdout, adopted.stderr
        first.stop()
        again = Worker("app", other_env, workdir, "again").start()
        try:
            again.wait_log(r"deployment [0-9a-f]{16} \(recorded by")
            assert "these settings match it" in cli(other_env, "deployment").stdout
        finally:
            again.kill()
        # and the old settings are now the other deployment's
        wait_until(
            lambda: "these settings differ" in cli(first_env, "deployment").stdout,
            30,
            "the old settings to be the foreign ones",
        )
    finally:
        first.kill()
        other.kill()
