"""Sending messages to an Azure Storage queue (base64, as host.json's messageEncoding says).

One instance per queue: the worker's operations queue, its poison queue, the external-events
queue (proactive notifications) and its poison queue.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from services.queues.storage_clients import is_not_allowed_to_create, queue_client
from services.settings import StorageConnection

# Azure Storage hides a new message for at most 7 days (and less than its time to live, 7 days by default).
MAX_VISIBILITY_TIMEOUT_SECONDS = 7 * 24 * 3600 - 1


class StorageQueue:
    def __init__(self, connection: StorageConnection | str, queue_name: str) -> None:
        """`connection`: the app's StorageConnection, or a connection string (local tools and tests)."""
        self._connection = StorageConnection.of(connection)
        self._queue_name = queue_name
        self._client: QueueClient | None = None
        self._credential: Any = None
        self._lock = asyncio.Lock()
        self.sent = 0

    @property
    def queue_name(self) -> str:
        return self._queue_name

    async def _queue(self) -> QueueClient:
        async with self._lock:
            if self._client is None:
                # host.json's messageEncoding is base64: encode the same way, or every message is poison.
                client, credential = queue_client(
                    self._connection,
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
                except HttpResponseError as error:
                    if not is_not_allowed_to_create(error):
                        await client.close()
                        if credential is not None:
                            await credential.close()
                        raise
                self._client, self._credential = client, credential
            return self._client

    async def ping(self) -> None:
        """One request that succeeds only if the queue can be reached (for health probes)."""
        await (await self._queue()).get_queue_properties()

    async def send(self, message: dict[str, Any], visibility_timeout: float | None = None) -> None:
        await self.send_raw(json.dumps(message), visibility_timeout)

    async def send_raw(self, text: str, visibility_timeout: float | None = None) -> None:
        """Put `text` on the queue; with `visibility_timeout` (seconds, rounded up) it stays hidden that long."""
        queue = await self._queue()
        if visibility_timeout is None or visibility_timeout <= 0:
            await queue.send_message(text)
        else:
            hidden = min(MAX_VISIBILITY_TIMEOUT_SECONDS, math.ceil(visibility_timeout))
            await queue.send_message(text, visibility_timeout=hidden)
        self.sent += 1

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._credential is not None:
            await self._credential.close()
            self._credential = None
