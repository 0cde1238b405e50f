"""The real Faust app, configured for in-process agent tests (no broker, no AWS).

The environment is set before anything imports app.main, which reads it once."""

from __future__ import annotations

import os

os.environ["STATE_STORE"] = "memory://"
os.environ["APP_ID"] = "test-agents"
os.environ["BROKER_URL"] = "kafka://127.0.0.1:9092"  # never contacted: test_context only
os.environ["AWS_REGION"] = "us-east-1"

from app import app as faust_app  # after the environment

faust_app.finalize()
faust_app.conf.store = "memory://"
faust_app.flow_control.resume()
