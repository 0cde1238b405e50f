"""What operators see: the status page and its JSON, Prometheus /metrics, and the
leader's INIT_SYNC progress log — all from one ClusterView every worker follows, so
any worker answers for the whole cluster."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agents.worker import runtime
from app.cluster_view import ClusterView
from app.domain.status import progress_line, refused_tables
from app.kafka_auth import client_kwargs
from app.main import app, settings

log = logging.getLogger(__name__)
PAGE = (Path(__file__).resolve().parents[1] / "app" / "static" / "status.html").read_text()
view = ClusterView(settings, client_kwargs(settings))


@app.task
async def follow_cluster_view() -> None:
    while True:  # a broker outage must not end the view for the worker's lifetime
        try:
            await view.follow()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the view must outlive any read error
            log.warning("cluster view: %s: %s; re-reading in 5s", type(exc).__name__, exc)
            await asyncio.sleep(5)


@app.timer(interval=settings.progress_log_interval, on_leader=True)
async def log_progress() -> None:
    if not view.caught_up.is_set():
        return
    for row in view.rows():
        line = progress_line(row)
        if line:
            log.info("%s", line)


def status() -> dict[str, Any]:
    return {
        "app_id": settings.app_id,
        "worker": f"{socket.gethostname()}:{app.conf.web_port}",
        "caught_up": view.caught_up.is_set(),
        "generated_ms": int(time.time() * 1000),
        "tables": view.rows(),
        # KAFKA_RECORD_FORMAT=avro|json_schema: this worker's view of the registry
        "schema_registry": runtime.output.serializer.health()
        if runtime.output.serializer is not None
        else None,
    }


@app.page("/status")
class StatusPage(View):
    async def get(self, request: Request) -> Response:
        return self.html(PAGE)


@app.page("/status.json")
class StatusJson(View):
    async def get(self, request: Request) -> Response:
        return self.json(status())


@app.page("/healthz")
class Health(View):
    """Liveness for probes (Docker HEALTHCHECK, Kubernetes): open even with WEB_AUTH_TOKEN,
    so it says nothing but that the worker's web server answers."""

    async def get(self, request: Request) -> Response:
        return self.text("ok\n")


@app.page("/metrics")
class MetricsPage(View):
    async def get(self, request: Request) -> Response:
        if view.caught_up.is_set():  # the cluster's refused tables, as of this scrape
            runtime.metrics.set_refused(refused_tables(view.tables))
        # the header as given: aiohttp refuses a charset inside content_type=
        return self.bytes(
            generate_latest(runtime.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
