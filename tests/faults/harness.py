"""The app composed in this process against the real emulators, with a fault proxy in front of each
service it talks to: Cosmos DB, Azurite's queue service, the Direct Line the worker posts results to,
and the Connector the bot replies to (an activity's serviceUrl names the proxy). A FakeClock moves
leases and backoff on without sleeping.

The worker runs in this process too, fed from the real Azurite queue the way the Functions host feeds
it (a message received invisible, deleted on success, made visible again soon after a failure), so the
queue's own redelivery is what the test sees.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import TextBase64DecodePolicy
from azure.storage.queue.aio import QueueClient

from bootstrap import Composition
from handlers.operations_worker import QueueMessageData, WorkerDependencies, handle_operation_message
from localdev.emulators import Azurite, CosmosStandIn
from services.turns import outbox as outbox
from tests.support.activities import activity, joined
from tests.support.app import composed_app, send
from tests.support.clock import FakeClock
from tests.support.connector import RecordingConnector
from tests.support.fault_proxy import COSMOS_RETRY_AFTER, FaultProxy
from tests.support.local_server import LocalServer

# Small enough to finish in well under a second: the faults are the subject, not the operation.
QUICK_OPERATION = "prime report end=1000"
RESULT_PREFIX = "Thanks for waiting. Prime report"
STARTED_PREFIX = "Starting the prime report"
NOT_STARTED = "The prime report has not started yet: its work queue is not answering."
STILL_RUNNING = "Still working on the prime report"
CONNECTOR_PATH = r"^/v3/conversations/"
RESULT_POST_PATH = r"/activities$"
# The host makes a failed message visible again after host.json's visibilityTimeout (10 s); shortened.
REDELIVERY_SECONDS = 1


class WorkerDirectLine(LocalServer):
    """The Direct Line the worker posts to, as the real service behaves for it: start a conversation,
    then each posted activity is handed to the bot, answering 502 when the bot fails
    (docs/direct-line-and-connector.md). The bot is the composed app, called in this process."""

    def __init__(self, service_url: str) -> None:
        super().__init__()
        self.service_url = service_url  # where the bot would answer in the worker's own conversation
        self.app: Composition | None = None
        self.delivered: list[dict[str, Any]] = []  # what the bot took in (200), in order
        self._ids = itertools.count(1)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3/directline"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v3/directline/conversations", self._start_conversation)
        app.router.add_post("/v3/directline/conversations/{conversation}/activities", self._post)

    async def _start_conversation(self, request: web.Request) -> web.Response:
        conversation = f"worker-{next(self._ids)}"
        return web.json_response({"conversationId": conversation, "token": f"token-{conversation}"}, status=201)

    async def _post(self, request: web.Request) -> web.Response:
        assert self.app is not None
        posted = await request.json()
        conversation = request.match_info["conversation"]
        inbound = {
            **posted,
            "id": f"{conversation}|{next(self._ids):07d}",
            "channelId": "directline",
            "serviceUrl": self.service_url,
            "conversation": {"id": conversation},
            "recipient": {"id": "bot", "name": "Bot", "role": "bot"},
        }
        answer = await send(self.app, inbound)
        if answer.status >= 400:
            return web.json_response({"error": {"code": "BotError", "message": "the bot failed"}}, status=502)
        self.delivered.append(inbound)
        return web.json_response({"id": inbound["id"]})


@dataclass
class Rig:
    app: Composition
    clock: FakeClock
    azurite: Azurite
    connector: RecordingConnector
    cosmos_proxy: FaultProxy
    queue_proxy: FaultProxy
    directline_proxy: FaultProxy
    connector_proxy: FaultProxy
    directline: WorkerDirectLine
    users: dict[str, str] = field(default_factory=dict)  # conversation -> name

    # --- the user -------------------------------------------------------------------------------

    def new_conversation(self) -> str:
        return f"c-{uuid.uuid4()}"

    async def say(self, conversation: str, text: str, app: Composition | None = None) -> int:
        """The user writes; the channel posts it with the proxy as the Connector. Returns the bot's status."""
        message = activity(conversation, self.connector_proxy.url, text=text)
        return (await send(app or self.app, message)).status

    async def open(self, conversation: str, name: str = "Ada") -> None:
        await send(self.app, joined(conversation, self.connector_proxy.url))
        await self.say(conversation, name)
        assert self.texts(conversation)[-1].startswith(f"Which long operation shall I run, {name}?")

    async def start_operation(self, name: str = "Ada") -> str:
        conversation = self.new_conversation()
        await self.open(conversation, name)
        assert await self.say(conversation, QUICK_OPERATION) == 200
        return conversation

    def texts(self, conversation: str) -> list[str]:
        """What the user has seen from the bot in this conversation."""
        return self.connector.messages(conversation)

    def brief(self, conversation: str, since: int = 0) -> str:
        """What the user saw since message `since`, each message's first 50 characters, for the table."""
        return brief(self.texts(conversation)[since:])

    def seen(self, conversation: str, prefix: str) -> int:
        return sum(1 for text in self.texts(conversation) if text.startswith(prefix))

    # --- state and queue, read past the proxies --------------------------------------------------

    async def outbox(self, conversation: str) -> list[dict[str, Any]]:
        key = f"directline/conversations/{conversation}"
        state = (await self.app.conversations.read([key])).get(key) or {}
        return outbox.entries(state)

    @asynccontextmanager
    async def _queue(self) -> AsyncIterator[QueueClient]:
        async with QueueClient.from_connection_string(
            self.azurite.connection_string,
            self.app.settings.operations_queue_name,
            message_decode_policy=TextBase64DecodePolicy(),
        ) as queue:
            yield queue

    async def queued(self) -> int:
        """Operation requests waiting in the queue (visible ones)."""
        async with self._queue() as queue:
            try:
                return len(await queue.peek_messages(max_messages=32))
            except ResourceNotFoundError:
                return 0

    # --- the worker, fed as the Functions host feeds it -------------------------------------------

    async def run_worker(self, deps: WorkerDependencies | None = None, timeout: float = 15.0) -> str:
        """Take the next message off the real queue (waiting for one, up to `timeout`) and run the worker
        on it. Success deletes it; a failure leaves it to reappear after REDELIVERY_SECONDS."""
        async with self._queue() as queue, asyncio.timeout(timeout):
            while True:
                try:
                    messages = [m async for m in queue.receive_messages(max_messages=1, visibility_timeout=60)]
                except ResourceNotFoundError:
                    messages = []
                if messages:
                    break
                await asyncio.sleep(0.1)  # polling interval while waiting for the queue to have one
            [message] = messages
            data = QueueMessageData(message.id, str(message.content).encode(), int(message.dequeue_count or 1))
            try:
                outcome = await handle_operation_message(data, deps or self.app.worker)
            except Exception as error:
                # By id and receipt: given the message itself, the SDK would write its decoded text back.
                await queue.update_message(message.id, message.pop_receipt, visibility_timeout=REDELIVERY_SECONDS)
                return f"retry ({type(error).__name__})"
            await queue.delete_message(message)
            return outcome


def brief(texts: list[str]) -> str:
    shown = [text.splitlines()[0][:50] + ("…" if len(text) > 50 else "") for text in texts if text]
    return " → ".join(f"“{text}”" for text in shown) or "nothing"


@asynccontextmanager
async def fault_rig(
    azurite: Azurite, cosmos: CosmosStandIn, connector: RecordingConnector, clock: FakeClock, **overrides: str
) -> AsyncIterator[Rig]:
    proxies = [
        FaultProxy(cosmos.endpoint, retry_after_header=COSMOS_RETRY_AFTER),
        FaultProxy(f"http://127.0.0.1:{azurite.queue_port}/"),
        FaultProxy("http://127.0.0.1:1/"),  # its upstream is set once the worker's Direct Line listens
        FaultProxy(connector.service_url),
    ]
    cosmos_proxy, queue_proxy, directline_proxy, connector_proxy = proxies
    directline = WorkerDirectLine(connector.service_url)
    await directline.start()
    directline_proxy.upstream = f"http://127.0.0.1:{directline.port}/"
    for proxy in proxies:
        await proxy.start()
    storage = azurite.connection_string.replace(f"127.0.0.1:{azurite.queue_port}/", f"127.0.0.1:{queue_proxy.port}/")
    settings = {
        "CosmosDbEndpoint": cosmos_proxy.url,
        "AzureWebJobsStorage": storage,
        "DirectLineEndpoint": f"{directline_proxy.url}v3/directline",
        **overrides,
    }
    try:
        async with composed_app(azurite, cosmos, clock, **settings) as app:
            directline.app = app
            yield Rig(
                app, clock, azurite, connector, cosmos_proxy, queue_proxy, directline_proxy, connector_proxy, directline
            )
    finally:
        for proxy in proxies:
            await proxy.stop()
        await directline.stop()
