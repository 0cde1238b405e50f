#!/usr/bin/env python3
"""Local stack without Docker: a real Apache Kafka broker (KRaft, single node), moto in
server mode and a Confluent-compatible Schema Registry (Apicurio Registry, in memory), all
on loopback.

    python scripts/stack.py up | down | status | env  [kafka moto registry]

Idempotent: `up` leaves running services alone, `down` stops by PID.  State lives in
$STACK_DIR (default: <repo>/.stack): broker data (throw-away), logs, PID files.
Readiness is proved by real protocol calls: a Kafka Metadata request that lists the
broker, and a DynamoDB ListTables call against moto.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACK_DIR = Path(os.environ.get("STACK_DIR", ROOT / ".stack"))
KAFKA_LIBS = ROOT / "kafka" / "libs"
KAFKA_PORT = int(os.environ.get("STACK_KAFKA_PORT", "9092"))
CONTROLLER_PORT = int(os.environ.get("STACK_CONTROLLER_PORT", "9093"))
MOTO_PORT = int(os.environ.get("STACK_MOTO_PORT", "5000"))
REGISTRY_PORT = int(os.environ.get("STACK_REGISTRY_PORT", "8081"))
REGISTRY_JAR = ROOT / "registry" / "target" / "schema-registry-1-runner.jar"
READY_TIMEOUT = float(os.environ.get("STACK_READY_TIMEOUT", "90"))

KAFKA_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=24
log.segment.bytes=67108864
"""

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def log(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


# ---------------------------------------------------------------- processes
def _pid_file(name: str) -> Path:
    return STACK_DIR / f"{name}.pid"


def _pid(name: str) -> int | None:
    try:
        pid = int(_pid_file(name).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # a zombie or a recycled pid is not ours
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        if state == "Z":
            return None
    except OSError:
        pass
    return pid


def _spawn(name: str, argv: list[str], logfile: Path, env: dict[str, str] | None = None) -> int:
    STACK_DIR.mkdir(parents=True, exist_ok=True)
    out = open(logfile, "ab")  # noqa: SIM115 (held by the child process)
    proc = subprocess.Popen(
        argv,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=STACK_DIR,
        env=env,
    )
    _pid_file(name).write_text(str(proc.pid))
    return proc.pid


def _stop(name: str, timeout: float = 20.0) -> None:
    pid = _pid(name)
    if pid is None:
        _pid_file(name).unlink(missing_ok=True)
        log(f"{name}: not running")
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if not _alive(pid):
            break
    _pid_file(name).unlink(missing_ok=True)
    log(f"{name}: stopped (pid {pid})")


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ---------------------------------------------------------------- readiness
def kafka_ready() -> bool:
    """A real Metadata request through aiokafka: the broker must list itself."""
    if not _port_open(KAFKA_PORT):
        return False
    import asyncio

    from aiokafka.client import AIOKafkaClient  # type: ignore[import-untyped]

    async def probe() -> bool:
        client = AIOKafkaClient(
            bootstrap_servers=f"127.0.0.1:{KAFKA_PORT}", request_timeout_ms=3000
        )
        try:
            await client.bootstrap()
            md = await client.fetch_all_metadata()
            return len(md.brokers()) > 0
        except Exception:  # noqa: BLE001 (a probe: any failure means not ready yet)
            return False
        finally:
            await client.close()

    return asyncio.run(probe())


def moto_ready() -> bool:
    if not _port_open(MOTO_PORT):
        return False
    req = urllib.request.Request(
        f"http://127.0.0.1:{MOTO_PORT}/",
        data=b"{}",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return resp.status == 200 and b"TableNames" in resp.read()
    except Exception:  # noqa: BLE001 (a probe: any failure means not ready yet)
        return False


def registry_url(port: int = REGISTRY_PORT) -> str:
    """The Confluent-compatible API of the local Apicurio Registry."""
    return f"http://127.0.0.1:{port}/apis/ccompat/v6"


def registry_ready(port: int = REGISTRY_PORT) -> bool:
    """A real API call: the schema types the registry serves include AVRO and JSON."""
    if not _port_open(port):
        return False
    try:
        with urllib.request.urlopen(f"{registry_url(port)}/schemas/types", timeout=3) as resp:
            body = resp.read()
            return resp.status == 200 and b"AVRO" in body and b"JSON" in body
    except Exception:  # noqa: BLE001 (a probe: any failure means not ready yet)
        return False


def registry_command(port: int) -> list[str]:
    """How the registry is started (tests start a second one on another port with it)."""
    if not REGISTRY_JAR.exists():
        raise SystemExit("[stack] schema registry missing: run `make registry` (Maven builds it)")
    return [
        _java(),
        "-Xms64m",
        "-Xmx384m",
        "-Dquarkus.http.host=127.0.0.1",
        f"-Dquarkus.http.port={port}",
        "-jar",
        str(REGISTRY_JAR),
    ]


def _wait(name: str, ready, pid_name: str) -> float:
    start = time.monotonic()
    deadline = start + READY_TIMEOUT
    while time.monotonic() < deadline:
        if ready():
            return time.monotonic() - start
        if _pid(pid_name) is None:
            raise SystemExit(
                f"[stack] {name} exited during start; see {STACK_DIR / (pid_name + '.log')}"
            )
        time.sleep(0.2)
    raise SystemExit(
        f"[stack] {name} not ready after {READY_TIMEOUT:.0f}s; see {STACK_DIR / (pid_name + '.log')}"
    )


# ---------------------------------------------------------------- services
def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if not java:
        raise SystemExit("[stack] java not found: install a JDK 17+ or set JAVA_HOME")
    return java


def _classpath() -> str:
    jars = sorted(KAFKA_LIBS.glob("*.jar"))
    if not jars:
        raise SystemExit("[stack] Kafka jars missing: run `make kafka-jars` (Maven resolves them)")
    return ":".join(str(j) for j in jars)


def kafka_up() -> None:
    if kafka_ready():
        who = "" if _pid("kafka") else " (not started by this stack; left alone)"
        log(f"kafka: already running on 127.0.0.1:{KAFKA_PORT}{who}")
        return
    if _pid("kafka"):
        _stop("kafka")
    data = STACK_DIR / "kafka-data"
    conf = STACK_DIR / "server.properties"
    l4j = STACK_DIR / "log4j2.properties"
    STACK_DIR.mkdir(parents=True, exist_ok=True)
    conf.write_text(KAFKA_PROPERTIES.format(port=KAFKA_PORT, cport=CONTROLLER_PORT, data=data))
    l4j.write_text(LOG4J2)
    java = [
        _java(),
        "-Xms256m",
        "-Xmx768m",
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={l4j}",
        "-cp",
        _classpath(),
    ]
    if not (data / "meta.properties").exists():
        shutil.rmtree(data, ignore_errors=True)
        cluster_id = (
            subprocess.run(
                java + ["kafka.tools.StorageTool", "random-uuid"],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        subprocess.run(
            java + ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(conf)],
            check=True,
            capture_output=True,
            text=True,
        )
        log(f"kafka: storage formatted in {data} (cluster {cluster_id})")
    t0 = time.monotonic()
    pid = _spawn("kafka", java + ["kafka.Kafka", str(conf)], STACK_DIR / "kafka.log")
    waited = _wait("kafka", kafka_ready, "kafka")
    log(
        f"kafka: ready on 127.0.0.1:{KAFKA_PORT} (pid {pid}) in {time.monotonic() - t0:.1f}s "
        f"(readiness polled {waited:.1f}s)"
    )


def moto_up() -> None:
    if moto_ready():
        who = "" if _pid("moto") else " (not started by this stack; left alone)"
        log(f"moto: already running on 127.0.0.1:{MOTO_PORT}{who}")
        return
    if _pid("moto"):
        _stop("moto")
    moto_bin = Path(sys.executable).with_name("moto_server")
    if not moto_bin.exists():
        raise SystemExit("[stack] moto_server missing: run `make venv` (installs the test extra)")
    t0 = time.monotonic()
    # moto records every request (GET /moto-api/recorder/download-recording):
    # tests/integration/test_zz_iam_policy.py checks the product's calls against the IAM policy.
    STACK_DIR.mkdir(parents=True, exist_ok=True)
    (STACK_DIR / "moto-recording.jsonl").write_bytes(b"")  # moto's state starts empty too
    env = {
        **os.environ,
        "MOTO_ENABLE_RECORDING": "true",
        "MOTO_RECORDER_FILEPATH": str(STACK_DIR / "moto-recording.jsonl"),
    }
    pid = _spawn(
        "moto",
        [str(moto_bin), "-H", "127.0.0.1", "-p", str(MOTO_PORT)],
        STACK_DIR / "moto.log",
        env,
    )
    _wait("moto", moto_ready, "moto")
    log(f"moto: ready on 127.0.0.1:{MOTO_PORT} (pid {pid}) in {time.monotonic() - t0:.1f}s")


def registry_up() -> None:
    if registry_ready():
        who = "" if _pid("registry") else " (not started by this stack; left alone)"
        log(f"registry: already running on {registry_url()}{who}")
        return
    if _pid("registry"):
        _stop("registry")
    t0 = time.monotonic()
    pid = _spawn("registry", registry_command(REGISTRY_PORT), STACK_DIR / "registry.log")
    _wait("registry", registry_ready, "registry")
    log(f"registry: ready on {registry_url()} (pid {pid}) in {time.monotonic() - t0:.1f}s")


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "status"
    what = argv[2:] or ["kafka", "moto", "registry"]
    if cmd == "up":
        if "moto" in what:
            moto_up()
        if "kafka" in what:
            kafka_up()
        if "registry" in what:
            registry_up()
    elif cmd == "down":
        for name in what:
            _stop(name)
        if "kafka" in what:  # throw-away data, and worker state that referred to it
            shutil.rmtree(STACK_DIR / "kafka-data", ignore_errors=True)
            shutil.rmtree(STACK_DIR / "demo-worker", ignore_errors=True)
    elif cmd == "restart-kafka":  # keeps data: used by broker-fault tests
        _stop("kafka")
        kafka_up()
    elif cmd == "status":
        ok = True
        for name, ready in (
            ("kafka", kafka_ready),
            ("moto", moto_ready),
            ("registry", registry_ready),
        ):
            pid, r = _pid(name), ready()
            ok &= r
            log(f"{name}: {'ready' if r else 'down'}" + (f" (pid {pid})" if pid else ""))
        return 0 if ok else 1
    elif cmd == "env":
        print(f"BROKER_URL=kafka://127.0.0.1:{KAFKA_PORT}")
        print(f"AWS_ENDPOINT_URL=http://127.0.0.1:{MOTO_PORT}")
        print(f"SCHEMA_REGISTRY_URL={registry_url()}")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
