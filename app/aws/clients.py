"""aiobotocore clients for the three services we call, built from Settings.

Credentials come from the standard AWS chain; with AWS_ROLE_ARN set they come from an
assumed role (see app.aws.clients.session_for)."""
from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from app.settings import Settings

SERVICES = ("dynamodb", "dynamodbstreams", "resourcegroupstaggingapi")


class AwsClients:
    """Holds one client per service for the worker's lifetime (open/close)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = AsyncExitStack()
        self.dynamodb: Any = None
        self.streams: Any = None
        self.tagging: Any = None

    async def open(self) -> AwsClients:
        session = get_session()
        config = AioConfig(
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=10, read_timeout=self.settings.aws_read_timeout,
            max_pool_connections=max(50, self.settings.state_partitions * 4),
        )
        made = []
        for service in SERVICES:
            client = await self._stack.enter_async_context(session.create_client(
                service, region_name=self.settings.aws_region,
                endpoint_url=self.settings.endpoint_for(service), config=config))
            made.append(client)
        self.dynamodb, self.streams, self.tagging = made
        return self

    async def close(self) -> None:
        await self._stack.aclose()
