"""Logging: level and format (text | json) from Settings, applied at worker start."""

from __future__ import annotations

import logging

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(body).decode()


def configure(level: str, fmt: str) -> None:
    root = logging.getLogger()
    root.setLevel(level.upper())
    if fmt == "json":
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
