"""The worker instance's one Direct Line conversation, against the real local Direct Line (an echo bot
behind it) with a clock moved by hand: opened once for every run, its token refreshed before it expires,
and a new one opened when the service no longer honours it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from bot_logic.operation_protocol import RESULT_EVENT, WORKER_ID
from handlers.operations_worker import (
    QueueMessageData,
    WorkerConversation,
    WorkerDependencies,
    handle_operation_message,
)
from localdev.directline.tests.support import SECRET, FakeClock, Stack, running_stack
from services.channel.directline_client import DirectLineClient
from tests.support.clock import FakeClock as WallClock

TOKEN_TTL = 60
KEY = "s" * 40


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def stack(clock: FakeClock) -> Iterator[Stack]:
    with running_stack(clock=clock, token_ttl=TOKEN_TTL) as running:
        yield running


class CountingClient(DirectLineClient):
    """The real client, counting the conversations it opens and the tokens it refreshes."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint, SECRET, max_attempts=1, base_delay=0.0, sleep=lambda _: None, timeout=5.0)
        self.opened = 0
        self.refreshed = 0

    def open_conversation(self) -> Any:
        self.opened += 1
        return super().open_conversation()

    def refresh_token(self, token: str) -> Any:
        self.refreshed += 1
        return super().refresh_token(token)


def post(client: DirectLineClient, conversation: tuple[str, str], text: str) -> None:
    client.post_event(*conversation, "test.event", {"text": text}, WORKER_ID)


def events_in(stack: Stack, conversation_id: str) -> list[str]:
    return [a["value"]["text"] for a in stack.bot.received_in(conversation_id) if a.get("type") == "event"]


def test_every_post_goes_into_one_conversation(stack: Stack, clock: FakeClock) -> None:
    client = CountingClient(stack.domain)
    shared = WorkerConversation(client, monotonic=clock)
    for n in range(3):
        post(client, shared.current(), f"run {n}")
    conversation_id, _ = shared.current()
    assert client.opened == 1
    assert events_in(stack, conversation_id) == ["run 0", "run 1", "run 2"]


def test_the_token_is_refreshed_before_it_expires(stack: Stack, clock: FakeClock) -> None:
    client = CountingClient(stack.domain)
    shared = WorkerConversation(client, monotonic=clock)
    first = shared.current()
    clock.advance(TOKEN_TTL * 0.75)  # past the renewal point, before expiry
    renewed = shared.current()
    assert renewed[0] == first[0] and renewed[1] != first[1] and client.refreshed == 1
    clock.advance(TOKEN_TTL * 0.5)  # the first token has expired now; the renewed one has not
    post(client, renewed, "after renewal")
    assert events_in(stack, first[0]) == ["after renewal"] and client.opened == 1


def test_an_expired_conversation_is_replaced(stack: Stack, clock: FakeClock) -> None:
    client = CountingClient(stack.domain)
    shared = WorkerConversation(client, monotonic=clock)
    first = shared.current()
    clock.advance(TOKEN_TTL * 2)  # idle longer than the token lives: refreshing is refused (403)
    second = shared.current()
    assert second[0] != first[0] and client.opened == 2
    post(client, second, "in the new conversation")
    assert events_in(stack, second[0]) == ["in the new conversation"]


def operation_message(operation_id: str) -> QueueMessageData:
    body = {
        "operationId": operation_id,
        "operation": "prime report",
        "parameters": {"end": 100},
        "conversation": {"conversation": {"id": "c1"}, "serviceUrl": "http://127.0.0.1:1/", "channelId": "directline"},
        "deadline": 1_800_005_000.0,
    }
    return QueueMessageData(f"m-{operation_id}", json.dumps(body).encode(), 1)


def test_a_token_the_service_refuses_mid_run_costs_one_new_conversation(stack: Stack, clock: FakeClock) -> None:
    """The worker's runs share the conversation; when its token is refused (here: the instance's clock
    never reached the renewal point, the service's did), the result is posted once in a new one."""
    client = CountingClient(stack.domain)
    deps = WorkerDependencies(
        directline=client,
        signing_key=KEY,
        max_dequeue_count=3,
        send_to_poison=lambda body: asyncio.sleep(0),
        clock=WallClock(1_800_000_000.0),
        progress_interval=3600.0,
        conversation=WorkerConversation(client, monotonic=lambda: 0.0),
    )
    assert asyncio.run(handle_operation_message(operation_message("op-1"), deps)) == "succeeded"
    assert asyncio.run(handle_operation_message(operation_message("op-2"), deps)) == "succeeded"
    assert client.opened == 1
    clock.advance(TOKEN_TTL * 2)
    assert asyncio.run(handle_operation_message(operation_message("op-3"), deps)) == "succeeded"
    assert client.opened == 2
    results = [
        a["value"] for a in stack.bot.received_in(deps.conversation.current()[0]) if a.get("name") == RESULT_EVENT
    ]
    assert len(results) == 1 and json.loads(results[0]["payload"])["operationId"] == "op-3"
