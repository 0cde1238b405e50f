"""The control agent: the only writer of the `tables` and `units` state tables.

Messages keyed ``t:<table>`` drive a table's lifecycle, ``u:<unit>`` a work unit's,
and ``sweep`` (sent to every partition) stops tables discovery no longer sees.  The
transitions themselves are pure (app.domain.coordinator); this agent loads, applies,
stores, sends.  concurrency=1: it writes tables (faust #606)."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, cast

from faust.types import TP

from agents.worker import runtime
from app.domain import coordinator as co
from app.domain import placement
from app.domain import protocol as pr
from app.main import app, settings
from app.state import DEPLOYMENT, control_topic, send_control, tables, units

log = logging.getLogger(__name__)
policy = settings.policy()  # how the coordinator snapshots and spreads work


def _now() -> int:
    return int(time.time() * 1000)


def _policy() -> co.Policy:
    """The settings' policy, with the workers' control partitions of the moment: the
    units a transition creates are spread over them (app.domain.placement).  Every member
    of the group receives the whole assignment from Faust's leader."""
    topic = units.changelog_topic.get_topic_name()
    # not part of Faust's PartitionAssignorT interface, but of its (only) assignor
    distribution = getattr(app.assignor, "changelog_distribution", None) or {}
    groups = placement.groups(distribution, topic, settings.state_partitions)
    return replace(policy, placement=groups)


async def _send(commands: list[co.Command]) -> None:
    for key, message in commands:
        await send_control(key, message)


async def _apply_table(name: str, out: co.Outcome, partition: int) -> None:
    if out.state is None:
        tables.pop(name, None)
    else:
        tables[name] = {**out.state, "partition": partition}
    for note in out.notes:
        log.info("%s", note)
    for event in out.events:
        if event == "resnapshot":
            runtime.metrics.resnapshots.labels(name).inc()
            log.warning("%s: re-snapshot: %s", name, out.state and out.state.get("reason"))
        elif event == "table_error":
            runtime.metrics.table_errors.labels(name).inc()
    for epoch in out.buffers_done:  # in the background: never holds the control loop
        if runtime.buffers is not None:
            runtime.buffers.empty_soon(runtime.settings.buffer_topic_for(name, epoch))
    await _send(out.commands)


async def handle_table(msg: pr.TableMessage, partition: int) -> None:
    name = msg.table
    s: co.State | None = tables.get(name)  # a stored table state (JSON)
    now = _now()
    policy = _policy()
    match msg:
        case pr.Discovered():
            out = co.on_discovered(s, msg.info, now, policy)
        case pr.Refused():  # before the None check: a new table may be refused
            out = co.on_refused(s, msg.info, msg.reason or "refused", now)
            if "refused" in out.events:  # once per reason, not every discovery round
                log.warning("%s: REFUSED: %s", name, msg.reason)
        case _ if s is None:
            return  # a late report for a forgotten table
        case pr.UnitDone():
            out = co.on_unit_done(s, msg, now, policy)
        case pr.Shards():
            out = co.on_shards(s, msg, now, policy)
        case pr.UnitFailed():
            out = co.on_unit_failed(s, msg, now)
        case pr.Resnapshot():
            if msg.epoch not in (None, s.get("epoch")):
                return
            out = co.on_resnapshot(s, msg.reason or "requested", None, now, policy)
        case pr.StopTable():
            out = co.on_stop(s, msg.reason or "requested", now)
        case pr.BufferCaughtUp():
            out = co.on_buffer_caught_up(s, msg, now)
        case pr.ShardPaused():
            out = co.on_shard_paused(s, msg, now)
    await _apply_table(name, out, partition)


async def handle_unit(msg: pr.UnitMessage, partition: int) -> None:
    uid = msg.uid
    out = co.on_unit(units.get(uid), uid, msg, partition, _now())
    if out.state is None:
        units.pop(uid, None)
    else:
        units[uid] = out.state
    await _send(out.forward)
    if out.action == "ensure" and out.state is not None:
        runtime.supervisor.ensure(cast(co.UnitState, out.state))  # the row just stored
    elif out.action == "stop":  # not awaited: the runner's fence stops its sends already
        runtime.supervisor.stop_soon([uid], forget=out.state is None)
    elif out.action == "pause":  # its runner ends at a page boundary, then says Paused
        runtime.supervisor.pause_soon(uid)
    if out.state is None:
        runtime.supervisor.forget(uid)


async def handle_sweep(msg: pr.Sweep, partition: int) -> None:
    present = set(msg.present)
    rows: list[tuple[str, co.State]] = list(tables.items())
    for name, s in rows:
        if s.get("partition") == partition:
            out = co.on_sweep(s, present, _now())
            if out.state is not s or out.commands:
                await _apply_table(name, out, partition)


_foreign_seen: set[str] = set()


def _check_sender(msg: dict[str, Any]) -> None:
    """A message from a worker or CLI with other deployment settings (see
    app.domain.deployment) is counted and logged once per fingerprint.  It is still applied:
    during an adopted change of settings old and new workers overlap, and a dropped report
    would wedge a unit; other deployments are stopped at start instead."""
    sender = msg.get("fp") if isinstance(msg, dict) else None
    if sender is None or sender == DEPLOYMENT:
        return  # None: a worker of a version before fingerprints
    runtime.metrics.foreign_control_messages.labels(sender).inc()
    if sender not in _foreign_seen:
        _foreign_seen.add(sender)
        log.error(
            "control: messages from a worker or CLI with other deployment settings "
            "(fingerprint %s, this worker %s): two deployments share APP_ID %s, or an "
            "adopted change is rolling out; `faust -A app deployment` shows which "
            "settings own it",
            sender,
            DEPLOYMENT,
            app.conf.id,
        )


@app.agent(control_topic, concurrency=1)
async def control(stream: Any) -> None:
    async for event in stream.events():
        key, value, partition = event.key, event.value, event.message.partition
        _check_sender(value)
        try:
            msg = pr.decode(key, value)
        except pr.ProtocolError as exc:  # unknown key or type, a field missing: said, skipped
            log.error("control: message ignored: %s", exc)
            continue
        try:
            match msg:
                case pr.Sweep():
                    await handle_sweep(msg, partition)
                case (
                    pr.Discovered()
                    | pr.Refused()
                    | pr.UnitDone()
                    | pr.Shards()
                    | pr.UnitFailed()
                    | pr.Resnapshot()
                    | pr.StopTable()
                    | pr.BufferCaughtUp()
                    | pr.ShardPaused()
                ):
                    await handle_table(msg, partition)
                case _:
                    await handle_unit(msg, partition)
        except Exception:
            # one bad message must not stop the control loop for every table
            log.exception("control: failed to apply %s for %s", type(msg).__name__, key)


# ---------------------------------------------------------------- rebalance hooks
def _control_partitions(tps: Any) -> set[int]:
    return {tp.partition for tp in tps if tp.topic == control_topic.get_topic_name()}


def _superseded_epoch(spec: co.UnitSpec, owned: set[int]) -> bool:
    """The unit's table has moved to another epoch, as far as this worker can tell: only
    a row of a partition it actively owns is current (RocksDB keeps the rows of partitions
    that moved away, frozen at their last value)."""
    table: co.State | None = tables.get(spec["table"])
    return (
        table is not None
        and table.get("partition") in owned
        and table.get("epoch") != spec["epoch"]
    )


def is_current(unit: co.UnitState) -> bool:
    """The fence a runner passes before each page it sends: its unit is still stored as
    active in the same epoch, on a control partition this worker actively owns."""
    stored = units.get(unit["id"])
    if (
        stored is None
        or stored.get("status") != "active"
        or stored["spec"].get("epoch") != unit["spec"]["epoch"]
    ):
        return False
    owned = _control_partitions(app.assignor.assigned_actives())
    if stored.get("partition") not in owned:
        return False
    return not _superseded_epoch(unit["spec"], owned)


runtime.fence = is_current


@app.on_partitions_revoked.connect  # type: ignore[arg-type]  # Faust types receivers (sender, *args, signal)
async def _revoked(app: Any, revoked: set[TP], **kwargs: Any) -> None:
    runtime.metrics.rebalances.inc()
    await runtime.supervisor.stop_partitions(_control_partitions(revoked), grace=3.0)


@app.on_rebalance_complete.connect  # type: ignore[arg-type]  # Faust types receivers (sender, *args, signal)
async def _rebalanced(app: Any, **kwargs: Any) -> None:
    """After table recovery: run exactly the active units of the partitions we own."""
    owned = _control_partitions(app.assignor.assigned_actives())
    wanted = {
        uid: u
        for uid, u in units.items()
        if u.get("status") == "active"
        and u.get("partition") in owned
        and not _superseded_epoch(u["spec"], owned)
    }  # its drop may be on its way
    # told to stop now (their fence refuses their next page), awaited in the background:
    # the rebalance is not held for a runner's last batch
    runtime.supervisor.stop_soon([uid for uid in runtime.supervisor.running() if uid not in wanted])
    runtime.supervisor.retain(set(wanted))
    for u in wanted.values():
        runtime.supervisor.ensure(u)
    log.info(
        "rebalance complete: %d control partitions owned %s, %d units running",
        len(owned),
        sorted(owned),
        len(runtime.supervisor.running()),
    )


@app.on_before_shutdown.connect  # type: ignore[arg-type]  # Faust types receivers (sender, *args, signal)
async def _shutdown(app: Any, **kwargs: Any) -> None:
    await runtime.close()
