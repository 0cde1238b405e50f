"""Operator commands, run against a live cluster (`faust -A app <command>`):

    status [--json]          every table: phase, snapshot progress, shards, rate, lag, error
                             (or why it is REFUSED)
    checkpoints TABLE        the positions of the table's scan segments and shards
    resync TABLE [--no-wait] force a new snapshot of TABLE (then streaming, as for a new table)
    deployment [--adopt]     the settings that own this APP_ID; --adopt makes the current
                             ones the deployment's (workers with other settings refuse to start)

They read the cluster's state from the changelog topics (app.cluster_view.ClusterView) and
act only through the control topic, like the workers do: no worker needs to be asked.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import click
from faust.cli import AppCommand, argument, option

from app.cluster_view import ClusterView
from app.domain import protocol
from app.domain.coordinator import TableState
from app.domain.status import duration
from app.kafka_auth import client_kwargs
from app.main import app, settings
from app.state import DEPLOYMENT


def _view() -> ClusterView:
    return ClusterView(settings, client_kwargs(settings))


def _state(view: ClusterView, table: str) -> TableState:
    if table not in view.tables:
        raise click.ClickException(
            f"unknown table {table!r}; replicated: {', '.join(sorted(view.tables)) or 'none'}"
        )
    return view.tables[table]


def _print_json(cmd: AppCommand, value: Any) -> None:
    cmd.say(json.dumps(value, indent=2, sort_keys=True))


def _row_text(r: dict[str, Any]) -> list[str]:
    snap = r["snapshot"]
    if snap and r["phase"] == "INIT_SYNC":
        progress = (
            f"{snap['percent']:.1f}% ({snap['items']:,} items, "
            f"{snap['segments_done']}/{snap['segments_total']} seg, ETA "
            f"{duration(snap['eta_s'])})"
        )
    elif snap and (b := r.get("buffer")):
        progress = (
            f"done ({snap['items']:,} items); buffer {b['buffered']:,} held, "
            f"{b['replayed']:,} replayed"
        )
    elif snap:
        progress = f"done ({snap['items']:,} items)"
    else:
        progress = "-"
    sh = r["shards"]
    return [
        r["table"],
        str(r["phase"]),
        progress,
        f"{sh['open']}/{sh['finished']}",
        f"{r['events_per_s']:,.0f}",
        "-" if r["lag_s"] is None else f"{r['lag_s']:.1f}s",
        # a refusal's reason is the whole point of the row: not cut
        r["refused"] or (r["error"] or "")[:60],
    ]


def _table(rows: list[list[str]], head: list[str]) -> str:
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    line = "  ".join
    return "\n".join(
        [
            line(h.ljust(w) for h, w in zip(head, widths, strict=True)),
            *(line(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows),
        ]
    )


@app.command(option("--json", "as_json", is_flag=True, help="JSON instead of a table"))
async def status(self: AppCommand, as_json: bool) -> None:
    """List replicated tables and their state."""
    view = _view()
    await view.load()
    rows = view.rows()
    if as_json:
        _print_json(self, rows)
    elif not rows:
        self.say("no tables replicated yet")
    else:
        self.say(
            _table(
                [_row_text(r) for r in rows],
                ["TABLE", "PHASE", "SNAPSHOT", "SHARDS open/done", "EVENTS/S", "LAG", "ERROR"],
            )
        )


@app.command(argument("table"), option("--json", "as_json", is_flag=True))
async def checkpoints(self: AppCommand, table: str, as_json: bool) -> None:
    """Show the checkpoints (scan cursors, shard sequence numbers) of TABLE."""
    view = _view()
    await view.load()
    s = _state(view, table)
    rows = view.checkpoints(table)
    if as_json:
        _print_json(self, rows)
        return
    self.say(f"{table}: {s.get('phase')}, epoch {s.get('epoch')}")
    self.say(
        _table(
            [
                [
                    r["unit"],
                    str(r["where"]),
                    str(r["status"]),
                    f"{r['count']:,}",
                    json.dumps(r["position"]) if r["position"] is not None else "-",
                ]
                for r in rows
            ],
            ["UNIT", "WHERE", "STATUS", "COUNT", "POSITION"],
        )
    )


@app.command(
    argument("table"),
    option("--wait/--no-wait", default=True, help="wait until the new epoch started"),
    option("--timeout", type=float, default=60.0, help="seconds to wait"),
)
async def resync(self: AppCommand, table: str, wait: bool, timeout: float) -> None:
    """Force a new snapshot of TABLE (INIT_SYNC, then streaming)."""
    from aiokafka import AIOKafkaProducer

    view = _view()
    await view.load()
    state = _state(view, table)
    if state.get("phase") == "STOPPED":
        raise click.ClickException(
            f"{table} is STOPPED (not discovered any more); tag it again to resume it"
        )
    if state.get("phase") == "REFUSED":
        raise click.ClickException(f"{table} is REFUSED: {state.get('error')}")
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers(), acks="all", **client_kwargs(settings)
    )
    await producer.start()
    key, value = protocol.encode(
        protocol.Resnapshot(table=table, reason="requested by an operator (resync)", fp=DEPLOYMENT)
    )
    try:  # the control topic's key is the raw text, its value JSON (app.state)
        await producer.send_and_wait(
            f"{settings.app_id}-control",
            json.dumps(value).encode(),
            key=key.encode(),
            partition=state.get("partition"),
        )
    finally:
        await producer.stop()
    epoch = int(state.get("epoch") or 0)
    self.say(f"{table}: re-snapshot requested (epoch {epoch})")
    if not wait:
        return
    # one consumer following the changelogs until the table's next epoch shows up
    view, stop = _view(), asyncio.Event()
    following = asyncio.ensure_future(view.follow(stop))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not following.done():
            now = view.tables.get(table)
            if now is not None and int(now.get("epoch") or 0) > epoch:
                self.say(f"{table}: epoch {now['epoch']} started, {now.get('phase')}")
                return
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await following  # raises what stopped it early (e.g. the broker is unreachable)
    raise click.ClickException(
        f"no worker started the re-snapshot within {timeout:.0f}s (are workers running?)"
    )


@app.command(
    option(
        "--adopt", is_flag=True, help="make this command's settings the deployment's (on purpose)"
    ),
    option("--json", "as_json", is_flag=True),
)
async def deployment(self: AppCommand, adopt: bool, as_json: bool) -> None:
    """Show which settings own this APP_ID, or adopt the current ones (--adopt).

    Workers with other settings refuse to start; running workers keep their settings
    until they restart, so adopt first, then roll the workers out with the new settings."""
    from app.bootstrap import new_record, read_deployment, write_deployment
    from app.domain import deployment as dep
    from app.domain.discovery import DEPLOYMENT_TOPIC

    servers, auth = settings.bootstrap_servers(), client_kwargs(settings)
    topic = f"{settings.app_id}-{DEPLOYMENT_TOPIC}"
    owner = dep.current(await read_deployment(servers, topic, **auth))
    mine = settings.identity()
    if adopt:
        if owner is not None and owner.fingerprint == dep.fingerprint(mine):
            self.say(f"these settings already are the deployment's ({owner.fingerprint})")
            return
        record = new_record(
            "adopt" if owner else "initial", mine, owner.fingerprint if owner else None
        )
        await write_deployment(servers, topic, record, **auth)
        owner = dep.current(await read_deployment(servers, topic, **auth))
        if owner is None or owner.fingerprint != record.fingerprint:
            raise click.ClickException(
                "another record was written at the same time; "
                "run `deployment` again to see which settings own it"
            )
        self.say(
            f"adopted: deployment {record.fingerprint} (was "
            f"{record.supersedes or 'unrecorded'}); restart the workers with these settings"
        )
        return
    if owner is None:
        raise click.ClickException(
            f"no deployment recorded for APP_ID {settings.app_id} yet "
            "(the first worker records its settings)"
        )
    if as_json:
        _print_json(self, owner.to_json())
        return
    self.say(
        f"APP_ID {settings.app_id}: deployment {owner.fingerprint}, recorded by "
        f"{owner.host} at {owner.at}"
    )
    for name in dep.IDENTITY:
        self.say(f"  {name}={owner.settings.get(name, '')}")
    diff = dep.differences(mine, owner.settings)
    self.say(
        "these settings match it" if not diff else "these settings differ:\n  " + "\n  ".join(diff)
    )
