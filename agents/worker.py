"""The composition root: this worker's one Runtime, wired from the settings and the Faust
app (the agents, the status pages and the stop hook use it)."""

from __future__ import annotations

from agents.runners import RUNNERS
from agents.runtime import Runtime, build_ports
from app.main import app, settings
from app.state import send_control, units

runtime = Runtime(build_ports(settings, app, send_control, units.get), RUNNERS)

# Graceful shutdown (SIGTERM): runners finish their batch and report their last checkpoint
# while the control agent still runs (app.main.ReplicatorApp.on_stop)
app.before_stop.append(lambda: runtime.drain(timeout=20.0))
