"""Proactive notifications against the emulators: a Connector that can refuse sends (429 with
Retry-After, 500), a clock whose sleeps move it, the proactive send the app wires, and the
external-events queue read as the Functions host reads it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient
from botbuilder.core import TurnContext
from botbuilder.schema import Activity, ConversationReference

from bootstrap import Composition
from bot_logic.notification_rules import envelope_key
from handlers.notifications import ExternalEventDependencies, handle_external_event
from handlers.queue_types import QueueMessageData
from services.channel.rate_limiter import RateLimiter
from services.notifications.conversation_references import ConversationReferences
from services.queues.storage_queue import StorageQueue
from tests.support.activities import activity
from tests.support.clock import FakeClock
from tests.support.connector import RecordingConnector


class HostStopped(BaseException):
    """The host process stops here: no handler code after this point runs (not an Exception, so
    nothing in the handler catches it and cleans up)."""


class FakeTime(FakeClock):
    """A wall and monotonic clock in one; `sleep` moves it instead of waiting."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        super().__init__(now)
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


class RefusingConnector(RecordingConnector):
    """A RecordingConnector that refuses the next sends as told (each refusal once, in order)."""

    def __init__(self) -> None:
        super().__init__()
        self._refusals: list[tuple[int, dict[str, str]]] = []
        self.refused: list[tuple[int, dict[str, Any]]] = []  # (status, the activity refused)
        self.on_send: Callable[[], None] | None = None  # called before each accepted send is recorded

    def refuse_next(self, count: int = 1, status: int = 429, headers: dict[str, str] | None = None) -> None:
        self._refusals += [(status, dict(headers or {}))] * count

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v3/conversations/{conversation}/activities", self._answer)
        app.router.add_post("/v3/conversations/{conversation}/activities/{reply_to}", self._answer)

    async def _answer(self, request: web.Request) -> web.Response:
        if self._refusals:
            status, headers = self._refusals.pop(0)
            self.refused.append((status, await request.json()))
            body = {"error": {"code": "TooManyRequests" if status == 429 else "ServiceError", "message": "refused"}}
            return web.json_response(body, status=status, headers=headers)
        return await self._record(request)


def reference_of(user_id: str, conversation_id: str, service_url: str) -> dict[str, Any]:
    """A user's conversation reference as bot logic will pass it: the SDK's, serialised."""
    incoming = activity(conversation_id, service_url, **{"from": {"id": user_id, "name": user_id, "role": "user"}})
    return TurnContext.get_conversation_reference(Activity().deserialize(incoming)).serialize()


def proactive_send(app: Composition) -> Callable[[dict[str, Any], str], Awaitable[None]]:
    """send(reference, text) through the app's Bot Framework adapter, as a proactive message."""
    adapter = app.adapter

    async def send(reference: dict[str, Any], text: str) -> None:
        async def say(context: TurnContext) -> None:
            await context.send_activity(text)

        await adapter.continue_conversation(ConversationReference().deserialize(reference), say, adapter.bot_app_id)

    return send


@dataclass
class NotificationHost:
    """What one host process holds for notifications: its caches, limiter and queue clients."""

    references: ConversationReferences
    events: StorageQueue
    deps: ExternalEventDependencies
    poisoned: list[bytes] = field(default_factory=list)

    async def close(self) -> None:
        await self.events.close()


def notification_host(
    app: Composition,
    time: FakeTime,
    send: Callable[[dict[str, Any], str], Awaitable[None]] | None = None,
    per_second: float = 1000.0,
    events: Any = None,
) -> NotificationHost:
    """A fresh host process's dependencies over the app's Cosmos database and external-events queue."""
    settings = app.settings
    references = ConversationReferences(
        app.cosmos.reference_container, time_to_live=settings.cosmos_time_to_live, clock=time
    )
    queue = StorageQueue(settings.storage, settings.external_events_queue_name)
    poisoned: list[bytes] = []

    async def send_to_poison(body: bytes) -> None:
        poisoned.append(body)

    deps = ExternalEventDependencies(
        references=references,
        events=events(queue) if events is not None else queue,
        send=send or proactive_send(app),
        send_to_poison=send_to_poison,
        limiter=RateLimiter(per_second, clock=time, sleep=time.sleep),
        envelope_key=envelope_key(settings.operation_signing_key),
        clock=time,
    )
    return NotificationHost(references, queue, deps, poisoned)


class StopAfter:
    """Wraps a queue or a send: the first `allowed` calls go through, then the host stops."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.calls = 0

    def _pass(self) -> None:
        if self.calls >= self.allowed:
            raise HostStopped()
        self.calls += 1

    def queue(self, inner: StorageQueue) -> Any:
        outer = self

        class Stopping:
            async def send_raw(self, text: str, visibility_timeout: float | None = None) -> None:
                outer._pass()
                await inner.send_raw(text, visibility_timeout)

        return Stopping()

    def send(self, inner: Callable[[dict[str, Any], str], Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        async def send(reference: dict[str, Any], text: str) -> None:
            self._pass()
            await inner(reference, text)

        return send


class EventsQueue:
    """The external-events queue as the Functions host reads it (base64, peek-lock, dequeue count,
    poison after host.json's maxDequeueCount)."""

    def __init__(self, app: Composition, max_dequeue_count: int = 3) -> None:
        settings = app.settings
        self._max_dequeue_count = max_dequeue_count
        # Both ways: an update (making a message visible again) sends its content back, encoded.
        self._client = QueueClient.from_connection_string(
            settings.storage_connection_string,
            settings.external_events_queue_name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )
        self.poisoned_by_host: list[str] = []

    async def close(self) -> None:
        await self._client.close()

    async def put(self, body: str) -> None:
        """As an outside system would: straight onto the queue, base64 as host.json says."""
        try:
            await self._client.create_queue()
        except ResourceExistsError:
            pass
        await self._client.send_message(body)

    async def clear(self) -> None:
        """Remove every message, hidden ones included."""
        await self._client.clear_messages()

    async def visible(self) -> list[dict[str, Any]]:
        try:
            messages = await self._client.peek_messages(max_messages=32)
        except ResourceNotFoundError:
            return []
        return [json.loads(m.content) for m in messages]

    async def count(self) -> int:
        """Messages on the queue, hidden ones included."""
        try:
            properties = await self._client.get_queue_properties()
        except ResourceNotFoundError:
            return 0
        return properties.approximate_message_count or 0

    async def run(
        self, host: NotificationHost, max_rounds: int = 50, max_messages: int = 32, drained: bool = True
    ) -> list[str]:
        """Hand every visible message to the handler until none is left (or the host stops),
        deleting those it handled. A message whose handler raised is made visible again, as its
        visibility timeout would, and is poisoned by the host on its last delivery.
        Returns the outcomes, in order ("raised" for an exception). With `drained=False` it stops
        after `max_rounds` of `max_messages` each, whatever is left."""
        outcomes: list[str] = []
        for _ in range(max_rounds):
            try:
                received = [
                    m async for m in self._client.receive_messages(max_messages=max_messages, visibility_timeout=60)
                ][:max_messages]
            except ResourceNotFoundError:
                return outcomes
            if not received:
                return outcomes
            for index, message in enumerate(received):
                data = QueueMessageData(message.id, message.content.encode(), message.dequeue_count or 1)
                try:
                    outcomes.append(await handle_external_event(data, host.deps))
                except HostStopped:
                    for unfinished in received[index:]:  # the stopped host's leases lapse: they come back
                        await self._client.update_message(unfinished, visibility_timeout=0)
                    raise
                except Exception:
                    outcomes.append("raised")
                    if data.dequeue_count >= self._max_dequeue_count:
                        self.poisoned_by_host.append(message.content)
                        await self._client.delete_message(message)
                    else:
                        await self._client.update_message(message, visibility_timeout=0)
                    continue
                await self._client.delete_message(message)
        if drained:
            raise AssertionError(f"the queue was not drained in {max_rounds} rounds")
        return outcomes
