"""What runners share in one worker: its ports (settings, AWS edges, output, control
reports, metrics, clock), the encoder, and the supervisor that starts/stops one asyncio
task per owned work unit.

Nothing here reads the environment or imports the Faust app: `build_ports` wires the real
ports from the settings and the app, and agents/worker.py is the one place that does so.
Tests hand `Runtime` ports of their own."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.aws.clients import AwsClients
from app.aws.dynamodb import Streams, Tables, Tagging
from app.buffer import Buffers
from app.domain import protocol as pr
from app.domain.coordinator import UnitState
from app.domain.envelope import Encoder
from app.domain.errors import KafkaRefusedError
from app.kafka_auth import client_kwargs
from app.metrics import Metrics
from app.output import Output
from app.settings import Settings

log = logging.getLogger(__name__)

Runner = Callable[["Runtime", UnitState, asyncio.Event], Awaitable[None]]
# send_control(key, value): returns the delivery future (app.state.send_control)
SendControl = Callable[[str, dict[str, Any]], Awaitable[Any]]


class Backoff:
    """Exponential backoff with full jitter; reset after a success."""

    def __init__(self, base: float = 0.1, cap: float = 20.0) -> None:
        self.base, self.cap, self.attempt = base, cap, 0

    def next(self) -> float:
        self.attempt += 1
        return random.uniform(0, min(self.cap, self.base * 2**self.attempt))

    def reset(self) -> None:
        self.attempt = 0


class AwsEdge:
    """The AWS clients of one worker, opened on first use, closed once."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._clients: AwsClients | None = None
        self._lock = asyncio.Lock()

    async def clients(self) -> AwsClients:
        if self._clients is None:
            async with self._lock:
                if self._clients is None:
                    self._clients = await AwsClients(self._settings).open()
        return self._clients

    async def tables(self) -> Tables:
        aws = await self.clients()
        return Tables(aws.dynamodb, aws.raw_dynamodb)

    async def streams(self) -> Streams:
        aws = await self.clients()
        return Streams(aws.streams, aws.raw_streams)

    async def tagging(self) -> Tagging:
        return Tagging((await self.clients()).tagging)

    async def close(self) -> None:
        if self._clients is not None:
            await self._clients.close()


@dataclass
class Ports:
    """Everything a worker's runners talk to.  `build_ports` wires the real ones."""

    settings: Settings
    output: Output
    send_control: SendControl
    streams: Callable[[], Awaitable[Streams]]
    tables: Callable[[], Awaitable[Tables]]
    tagging: Callable[[], Awaitable[Tagging]]
    # the unit row the control agent stored last (app.state.units), for the drain at stop
    stored_unit: Callable[[str], dict[str, Any] | None] = lambda uid: None
    flush: Callable[[], Awaitable[None]] = lambda: asyncio.sleep(0)
    close_aws: Callable[[], Awaitable[None]] = lambda: asyncio.sleep(0)
    metrics: Metrics = field(default_factory=Metrics.create)
    clock: Callable[[], float] = time.monotonic
    # the snapshots' buffer topics (replay readers, deletion); None: no Kafka behind
    buffers: Buffers | None = None


def build_ports(
    settings: Settings,
    app: Any,
    send_control: SendControl,
    stored_unit: Callable[[str], dict[str, Any] | None],
) -> Ports:
    """The real ports: AWS through aiobotocore (opened on first use), Kafka through the
    Faust app's producer."""
    aws = AwsEdge(settings)
    return Ports(
        settings=settings,
        output=Output(app, settings, client_kwargs(settings)),
        send_control=send_control,
        streams=aws.streams,
        tables=aws.tables,
        tagging=aws.tagging,
        stored_unit=stored_unit,
        flush=lambda: app.producer.flush(),  # the producer is made when first used
        close_aws=aws.close,
        buffers=Buffers(settings, client_kwargs(settings)),
    )


class Runtime:
    def __init__(self, ports: Ports, runners: Mapping[str, Runner]) -> None:
        self.ports = ports
        self.settings = ports.settings
        self.metrics = ports.metrics
        self.output = ports.output
        self.streams = ports.streams
        self.tables = ports.tables
        self.tagging = ports.tagging
        self.clock = ports.clock
        self.buffers = ports.buffers
        self.encoder = Encoder(self.settings.kafka_output_format, self.settings.kafka_tombstones)
        # AWS pages held at once by all runners of this worker (see runners.InFlight)
        self.pages = asyncio.Semaphore(self.settings.worker_max_pages)
        self.supervisor = Supervisor(self, runners)
        # May a runner of this unit still send?  (ownership, epoch; see agents/control.py,
        # which installs the real check; tests hand in their own)
        self.fence: Callable[[UnitState], bool] = lambda unit: True

    async def report(self, message: pr.Message, wait: bool = False) -> None:
        """Send a runner's report to the control topic (encoded by the one codec)."""
        fut = await self.ports.send_control(*pr.encode(message))
        if wait:
            await fut

    async def drain(self, timeout: float) -> None:
        """Stop every runner after its current batch and wait (bounded) until the control
        agent has stored the positions they reported last."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.supervisor.closing = True  # a rebalance completing meanwhile starts nothing
        await self.supervisor.stop_all(grace=timeout / 2)
        await self.ports.flush()

        def behind() -> list[str]:
            late = []
            for uid, (_, count) in self.supervisor.local_pos.items():
                stored = self.ports.stored_unit(uid)
                if (
                    stored
                    and stored.get("status") == "active"
                    and int(stored.get("count") or 0) < count
                ):
                    late.append(uid)
            return late

        while (late := behind()) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if late:
            log.warning(
                "shutdown: %d unit checkpoint(s) not yet stored; a restart may "
                "repeat their last batch",
                len(late),
            )
        else:
            log.info("shutdown: runners stopped, final checkpoints stored")

    async def close(self) -> None:
        await self.supervisor.stop_all()
        await self.output.close()
        if self.buffers is not None:
            await self.buffers.close()
        await self.ports.close_aws()


async def pause(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep, waking early when asked to stop; True if stopping."""
    if seconds <= 0:
        return stopping.is_set()
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        pass
    return stopping.is_set()


_Entry = tuple[asyncio.Task[None], asyncio.Event, int]  # a runner, its stopping event, partition


class Supervisor:
    """One task per unit this worker actively owns.  Stopping is graceful: the runner
    finishes (and checkpoints) its current batch, then is cancelled after `grace`."""

    def __init__(self, rt: Runtime, runners: Mapping[str, Runner]) -> None:
        self.rt = rt
        self.runners = runners
        self.tasks: dict[str, _Entry] = {}
        # positions this worker itself got acknowledged: never restart behind them
        self.local_pos: dict[str, tuple[Any, int]] = {}
        # units whose runner completed here, with their finish report
        self.finished: dict[str, pr.Finish] = {}
        self._reports: set[asyncio.Task[None]] = set()
        self._stops: set[asyncio.Task[None]] = set()  # stop_soon()s still waiting
        self.closing = False  # the worker shuts down: no new runner

    def running(self) -> list[str]:
        return sorted(uid for uid, (t, _, _) in self.tasks.items() if not t.done())

    def ensure(self, unit: UnitState) -> None:
        """Run the unit unless it runs already; a unit still stopping is restarted only
        after its old runner ended (never two readers on one shard)."""
        uid = unit["id"]
        if self.closing:
            return
        if uid in self.finished:
            # created again before the agent stored our finish (e.g. a discovery heal): the
            # work is done; repeating the report also heals a finish that got lost
            task = asyncio.ensure_future(self.rt.report(self.finished[uid]))
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)
            return
        current = self.tasks.get(uid)
        previous = None
        if current and not current[0].done():
            if not current[1].is_set():
                return
            previous = current[0]
        stopping = asyncio.Event()
        task = asyncio.ensure_future(
            self._guard(self.runners[unit["spec"]["kind"]], unit, stopping, previous)
        )
        self.tasks[uid] = (task, stopping, int(unit.get("partition", -1)))

    async def _guard(
        self,
        runner: Runner,
        unit: UnitState,
        stopping: asyncio.Event,
        previous: asyncio.Task[None] | None,
    ) -> None:
        """Run the unit; an unexpected error (e.g. Kafka unreachable for the checkpoint
        report) restarts it from its last acknowledged position after a backoff."""
        if previous is not None:
            await asyncio.wait([previous])
        backoff = Backoff(1.0, 30.0)
        while not stopping.is_set():
            try:
                await runner(self.rt, unit, stopping)
                return
            except asyncio.CancelledError:
                raise
            except KafkaRefusedError:  # reported failed already: the table pauses
                return
            except Exception:  # a runner must never die silently
                delay = backoff.next()
                log.exception("runner %s failed; restarting it in %.1fs", unit["id"], delay)
                self.rt.metrics.retries.labels(unit["spec"]["table"], "runner_restart").inc()
                await pause(stopping, delay)

    async def stop(self, uids: list[str], grace: float = 5.0) -> None:
        await self._stopped(self._signal(uids), grace)

    def pause_soon(self, uid: str, grace: float = 5.0) -> None:
        """Stop the unit's runner like stop_soon, then report Paused: once its runner has
        ended (nothing of it in flight any more), or at once if none runs here."""
        entries = self._signal([uid])
        task = asyncio.ensure_future(self._paused(uid, entries, grace))
        self._stops.add(task)
        task.add_done_callback(self._stop_done)

    async def _paused(self, uid: str, entries: list[tuple[str, _Entry]], grace: float) -> None:
        await self._stopped(entries, grace)
        await self.rt.report(pr.Paused(uid=uid))

    def stop_soon(self, uids: list[str], grace: float = 5.0, forget: bool = False) -> None:
        """Stop without waiting (the control agent must not hold its event for a runner's
        last batch): the runners are told now, so an ensure() right after starts a new one
        only once the old one ended; the wait and the cancel after `grace` run in a task of
        their own (errors logged).  A stopped unit's runner sends nothing more meanwhile:
        its fence (Runtime.fence) refuses its next commit.  ``forget``: the unit was dropped;
        its memory is forgotten again once its runner ended (a last commit may have
        remembered its position), unless the unit was started again meanwhile."""
        entries = self._signal(uids)
        if entries:
            task = asyncio.ensure_future(self._stopped(entries, grace, forget))
            self._stops.add(task)
            task.add_done_callback(self._stop_done)

    def _stop_done(self, task: asyncio.Task[None]) -> None:
        self._stops.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("stopping runners failed", exc_info=task.exception())

    def _signal(self, uids: list[str]) -> list[tuple[str, _Entry]]:
        entries = [(uid, self.tasks[uid]) for uid in uids if uid in self.tasks]
        for _, (_, stopping, _) in entries:
            stopping.set()
        return entries

    async def _stopped(
        self, entries: list[tuple[str, _Entry]], grace: float, forget: bool = False
    ) -> None:
        """Wait (bounded by `grace`, then cancel) until these signalled runners ended."""
        pending = [t for _, (t, _, _) in entries if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for t in still:
                t.cancel()
            if still:
                await asyncio.wait(still, timeout=2.0)
        for uid, entry in entries:
            if self.tasks.get(uid) is entry:  # not replaced by an ensure() meanwhile
                del self.tasks[uid]
                if forget:
                    self.forget(uid)

    async def stop_partitions(self, partitions: set[int], grace: float = 5.0) -> None:
        await self.stop([uid for uid, (_, _, p) in self.tasks.items() if p in partitions], grace)

    async def stop_all(self, grace: float = 10.0) -> None:
        await self.stop(list(self.tasks), grace)

    def remember(self, uid: str, pos: Any, count: int) -> None:
        self.local_pos[uid] = (pos, count)

    def forget(self, uid: str) -> None:
        """The unit was dropped (its epoch is over)."""
        self.local_pos.pop(uid, None)
        self.finished.pop(uid, None)

    def retain(self, uids: set[str]) -> None:
        """After a rebalance: keep the memory of these units only (the active units this
        worker owns).  A unit that moved away, finished in the stored state or was dropped
        on another worker is forgotten here too: memory never outlives its unit."""
        keep = uids | set(self.running())
        for memory in (self.local_pos, self.finished):
            for uid in [u for u in memory if u not in keep]:
                del memory[uid]
