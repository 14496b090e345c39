"""Which turn an inbound activity starts: a user's turn, the user's turn the worker's signed event
resumes, or none at all for the worker's own Direct Line conversation. Over the SDK's real cloud
adapter (it builds the proactive turn; nothing is sent, so no channel is needed)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from botbuilder.core import CloudAdapterBase, TurnContext
from botbuilder.schema import Activity
from botframework.connector.auth import BotFrameworkAuthenticationFactory

from bot_logic.operation_protocol import (
    PROGRESS_EVENT,
    RESULT_EVENT,
    SUCCEEDED,
    WORKER_ID,
    progress_payload,
    result_payload,
    sign,
)
from bot_logic.turn_routing import TurnRouter
from tests.support.clock import FakeClock

KEY = "operation-signing-key"
USER_CONVERSATION = "user-conversation"
WORKER_CONVERSATION = "worker-conversation"
SERVICE_URL = "https://directline.example/"
DEADLINE = 1_800_000_600.0


class CloudAdapter(CloudAdapterBase):
    """The SDK's cloud adapter as the bot's own adapter derives from it (nothing here sends)."""


class Turns:
    """The user-conversation turns the router runs: what each one saw."""

    def __init__(self) -> None:
        self.seen: list[Activity] = []

    async def __call__(self, context: TurnContext) -> None:
        self.seen.append(context.activity)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def turns() -> Turns:
    return Turns()


@pytest.fixture
def router(turns: Turns, clock: FakeClock) -> TurnRouter:
    adapter = CloudAdapter(BotFrameworkAuthenticationFactory.create())
    return TurnRouter(run_turn=turns, adapter=adapter, bot_app_id="", signing_key=KEY, clock=clock)


def inbound(conversation: str = USER_CONVERSATION, sender: str = "user-1", **fields: Any) -> Activity:
    body = {
        "type": "message",
        "id": "activity-1",
        "channelId": "directline",
        "serviceUrl": SERVICE_URL,
        "conversation": {"id": conversation},
        "from": {"id": sender},
        "recipient": {"id": "bot"},
        **fields,
    }
    return Activity().deserialize(body)


def request(conversation: str = USER_CONVERSATION, deadline: float = DEADLINE) -> dict[str, Any]:
    reference = {
        "serviceUrl": SERVICE_URL,
        "channelId": "directline",
        "conversation": {"id": conversation},
        "bot": {"id": "bot"},
        "user": {"id": "user-1"},
    }
    return {
        "operationId": "op-1",
        "operation": "prime report",
        "parameters": {},
        "conversation": reference,
        "deadline": deadline,
    }


def worker_event(name: str, value: object) -> Activity:
    return inbound(WORKER_CONVERSATION, WORKER_ID, type="event", name=name, value=value)


async def route(router: TurnRouter, activity: Activity) -> None:
    await router(TurnContext(router.adapter, activity))


async def test_a_user_message_runs_a_turn_of_that_users_conversation(router: TurnRouter, turns: Turns) -> None:
    message = inbound(text="hello")
    await route(router, message)
    assert turns.seen == [message]


async def test_a_user_joining_runs_a_turn_and_other_events_are_the_users_too(router: TurnRouter, turns: Turns) -> None:
    joined = inbound(type="conversationUpdate", membersAdded=[{"id": "bot"}, {"id": "user-1"}])
    other_event = inbound(type="event", name="webchat/join")
    named_message = inbound(name=RESULT_EVENT, text="a message is never an operation event")
    left = inbound(type="conversationUpdate", membersRemoved=[{"id": "user-1"}])
    for activity in (joined, other_event, named_message, left):
        await route(router, activity)
    assert turns.seen == [joined, other_event, named_message, left]


def members_added(*ids: str) -> Activity:
    added = [{"id": member} for member in ids]
    return inbound(WORKER_CONVERSATION, "directline", type="conversationUpdate", membersAdded=added)


async def test_the_workers_own_conversation_starts_no_turn(router: TurnRouter, turns: Turns) -> None:
    for activity in (
        inbound(WORKER_CONVERSATION, WORKER_ID, text="anything the worker's client says"),
        members_added(WORKER_ID),
        members_added(WORKER_ID, "bot"),
        members_added("bot"),
        inbound(
            WORKER_CONVERSATION,
            "directline",
            type="conversationUpdate",
            membersAdded=[{"id": WORKER_ID}],
            recipient=None,
        ),
    ):
        await route(router, activity)
    assert turns.seen == []


async def test_a_signed_result_resumes_the_users_conversation_it_names(router: TurnRouter, turns: Turns) -> None:
    payload = result_payload(request(), SUCCEEDED, "42 primes")
    await route(router, worker_event(RESULT_EVENT, sign(payload, KEY)))
    [resumed] = turns.seen
    assert resumed.type == "event"
    assert resumed.name == RESULT_EVENT
    assert resumed.value == payload
    assert resumed.conversation.id == USER_CONVERSATION
    assert resumed.service_url == SERVICE_URL
    assert resumed.channel_data == {"postedBy": WORKER_ID}


async def test_signed_progress_resumes_the_users_conversation_too(router: TurnRouter, turns: Turns) -> None:
    payload = progress_payload(request(), 40)
    await route(router, worker_event(PROGRESS_EVENT, sign(payload, KEY)))
    [resumed] = turns.seen
    assert (resumed.name, resumed.value, resumed.conversation.id) == (PROGRESS_EVENT, payload, USER_CONVERSATION)


@pytest.mark.parametrize(
    ("event", "value", "reason"),
    [
        (RESULT_EVENT, sign(result_payload(request(), SUCCEEDED, "forged"), "another key"), "signature"),
        (RESULT_EVENT, {"payload": "{}", "signature": ""}, "signature"),
        (RESULT_EVENT, "not a signed value", "signature"),
        (RESULT_EVENT, sign(progress_payload(request(), 99), KEY), "another event"),
        (PROGRESS_EVENT, sign(result_payload(request(), SUCCEEDED, "done"), KEY), "another event"),
        (RESULT_EVENT, sign(result_payload(request(deadline=1_800_000_000.0), SUCCEEDED, "late"), KEY), "expired"),
        (RESULT_EVENT, sign({**result_payload(request(), SUCCEEDED, "x"), "conversation": None}, KEY), "conversation"),
    ],
    ids=["forged", "empty-signature", "unsigned", "progress-as-result", "result-as-progress", "expired", "no-address"],
)
async def test_an_untrusted_operation_event_starts_no_turn_and_is_logged_with_why(
    router: TurnRouter, turns: Turns, caplog: pytest.LogCaptureFixture, event: str, value: object, reason: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="bot_logic.turn_routing"):
        await route(router, worker_event(event, value))
    assert turns.seen == []
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert reason in record.getMessage()
    assert WORKER_CONVERSATION in record.getMessage() and event in record.getMessage()


async def test_an_untrusted_event_without_a_sender_is_refused_all_the_same(
    router: TurnRouter, turns: Turns, caplog: pytest.LogCaptureFixture
) -> None:
    anonymous = worker_event(RESULT_EVENT, "not signed")
    anonymous.from_property = None
    await route(router, anonymous)
    assert turns.seen == []
    assert "signature" in caplog.text


async def test_the_resumed_turn_speaks_as_the_bot_s_own_app(turns: Turns, clock: FakeClock) -> None:
    """The resumed turn carries the bot's app id, which its replies are authenticated as."""
    from botbuilder.core import BotAdapter

    identities = []

    async def record_identity(context: TurnContext) -> None:
        identities.append(context.turn_state[BotAdapter.BOT_IDENTITY_KEY].claims)

    adapter = CloudAdapter(BotFrameworkAuthenticationFactory.create())
    router = TurnRouter(
        run_turn=record_identity, adapter=adapter, bot_app_id="bot-app-id", signing_key=KEY, clock=clock
    )
    await route(router, worker_event(RESULT_EVENT, sign(result_payload(request(), SUCCEEDED, "ok"), KEY)))
    [claims] = identities
    assert "bot-app-id" in claims.values()


async def test_an_event_is_trusted_until_the_moment_it_expires(
    router: TurnRouter, turns: Turns, clock: FakeClock
) -> None:
    value = sign(result_payload(request(deadline=clock.now + 1), SUCCEEDED, "just in time"), KEY)
    await route(router, worker_event(RESULT_EVENT, value))
    assert len(turns.seen) == 1
    clock.now += 1
    await route(router, worker_event(RESULT_EVENT, value))
    assert len(turns.seen) == 1
