"""Tests that start processes or a browser but no services: `faust -A app worker` refusing a
bad setting, the image's health check script, headless Chromium.  Run by `make test`, not by
`make test-unit` (tests/unit stays in-process, and tests/agents builds the Faust app
in-process without a broker)."""
