"""Sending operation requests to the worker's queue (Azure Storage queue, base64 as host.json says)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient


class OperationQueue:
    def __init__(self, connection_string: str, queue_name: str) -> None:
        self._connection_string = connection_string
        self._queue_name = queue_name
        self._client: QueueClient | None = None
        self._lock = asyncio.Lock()
        self.sent = 0

    async def _queue(self) -> QueueClient:
        async with self._lock:
            if self._client is None:
                # host.json's messageEncoding is base64: encode the same way, or every message is poison.
                client = QueueClient.from_connection_string(
                    self._connection_string,
                    self._queue_name,
                    message_encode_policy=TextBase64EncodePolicy(),
                    # Sent inside a user's turn, which the channel gives 15 s: the SDK's default retries
                    # (15 s, then 3x longer, ...) would outlast it. One quick retry, then tell the user.
                    initial_backoff=0.5,
                    increment_base=1,
                    retry_total=1,
                    connection_timeout=3,
                    read_timeout=5,
                )
                try:
                    await client.create_queue()
                except ResourceExistsError:
                    pass
                self._client = client
            return self._client

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(message))

    async def send_raw(self, text: str) -> None:
        queue = await self._queue()
        await queue.send_message(text)
        self.sent += 1

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
