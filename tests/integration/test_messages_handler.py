"""The messages handler, called directly, against the Cosmos DB stand-in and a recording Connector."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from bootstrap import Composition
from handlers.messages import MAX_BODY_BYTES
from localdev.emulators import Azurite, CosmosStandIn
from tests.support.activities import activity, joined
from tests.support.app import composed_app, open_named_conversation, send
from tests.support.connector import RecordingConnector

pytestmark = pytest.mark.emulators


async def test_greets_asks_name_and_remembers_it(app: Composition, connector: RecordingConnector) -> None:
    conversation = f"c-{uuid.uuid4()}"
    url = connector.service_url
    assert (await send(app, joined(conversation, url))).status == 200
    assert connector.messages(conversation) == [
        "Hello and welcome! I run long operations for you and tell you here when they are done.",
        "What's your name?",
    ]
    assert (await send(app, activity(conversation, url, text="Ada"))).status == 200
    assert connector.messages(conversation)[-2] == "Nice to meet you, Ada! I'll remember your name."
    assert connector.messages(conversation)[-1].startswith("Which long operation shall I run, Ada?")

    # A new conversation of the same user: the name is known (user state), the prompt is not repeated.
    second = f"c-{uuid.uuid4()}"
    update = joined(second, url)
    update["from"]["id"] = update["membersAdded"][1]["id"] = f"user-of-{conversation}"
    await send(app, update)
    assert connector.messages(second)[0] == "Welcome back, Ada!"
    assert connector.messages(second)[1].startswith("Which long operation shall I run, Ada?")
    assert len(connector.messages(second)) == 2


async def test_buttons_start_an_operation_and_cancel_it_while_it_runs(
    app: Composition, connector: RecordingConnector
) -> None:
    url = connector.service_url
    conversation = await open_named_conversation(app, url, "Ada")
    menu = connector.activities[-1]
    actions = menu["suggestedActions"]["actions"]
    assert [(a["type"], a["title"], a["value"]) for a in actions][:2] == [
        ("imBack", "prime report", "prime report"),
        ("imBack", "sales report", "sales report"),
    ]
    assert "1. prime report" in menu["text"]  # the list stays in the text, for channels without buttons
    await send(app, activity(conversation, url, text=actions[0]["value"]))  # what a click posts
    starting = connector.activities[-1]
    assert starting["text"].startswith("Starting the prime report.")
    # While it runs, a Cancel button (and typing 'cancel' still works: the button posts just that).
    cancel = starting["suggestedActions"]["actions"]
    assert [(a["type"], a["title"], a["value"]) for a in cancel] == [("imBack", "Cancel", "cancel")]
    await send(app, activity(conversation, url, text="is it done?"))
    assert connector.activities[-1]["suggestedActions"]["actions"] == cancel
    await send(app, activity(conversation, url, text=cancel[0]["value"]))
    assert any(t.startswith("Cancelled the prime report.") for t in connector.messages(conversation)[-3:])


async def test_a_greeting_is_not_taken_for_a_name(app: Composition, connector: RecordingConnector) -> None:
    conversation = f"c-{uuid.uuid4()}"
    url = connector.service_url
    await send(app, joined(conversation, url))
    await send(app, activity(conversation, url, text="Hi!"))
    assert connector.messages(conversation)[-1] == "Hello to you too! What name shall I call you?"
    await send(app, activity(conversation, url, text="Ada"))
    assert connector.messages(conversation)[-2] == "Nice to meet you, Ada! I'll remember your name."


async def test_replies_go_to_the_incoming_conversation_and_user(
    app: Composition, connector: RecordingConnector
) -> None:
    conversation = f"c-{uuid.uuid4()}"
    incoming = activity(conversation, connector.service_url, text="hi")
    await send(app, incoming)
    reply = connector.activities[-1]
    # botbuilder 4.17 drops reply_to_id on directline/webchat, so these arrive as SendToConversation.
    assert reply["_conversation"] == conversation
    assert reply["conversation"]["id"] == conversation
    assert reply["recipient"]["id"] == incoming["from"]["id"]
    assert reply["from"]["id"] == "bot"


async def test_concurrent_messages_to_one_conversation_each_answered_once(
    app: Composition, connector: RecordingConnector
) -> None:
    conversation = f"c-{uuid.uuid4()}"
    url = connector.service_url
    await send(app, activity(conversation, url, text="start"))
    await send(app, activity(conversation, url, text="Grace"))
    await send(app, activity(conversation, url, text="1"))
    assert app.operation_queue.sent == 1
    writes_before = app.counters.writes
    texts = [f"are you done yet? ({n})" for n in range(8)]
    incoming = [activity(conversation, url, text=text) for text in texts]
    responses = await asyncio.gather(*(send(app, a) for a in incoming))

    assert [r.status for r in responses] == [200] * len(texts)
    still = [m for m in connector.messages(conversation) if m.startswith("Still working on the prime report")]
    assert len(still) == len(texts)
    # Re-run turns did not start the operation again.
    assert app.operation_queue.sent == 1
    # Every turn's bookkeeping survived: no turn overwrote another's commit.
    container = await app.cosmos.conversation_container()
    docs = [d async for d in container.query_items("SELECT * FROM c")]
    record = next(d for d in docs if d["realId"].endswith(conversation))["document"]["ConversationRecord"]
    assert {a["id"] for a in incoming} <= set(record["recentActivityIds"])
    # They ran one at a time in this process: no commit race, so one write per turn and no re-run.
    assert app.counters.writes - writes_before == len(texts)


async def test_redelivered_activity_has_effect_once(app: Composition, connector: RecordingConnector) -> None:
    conversation = f"c-{uuid.uuid4()}"
    message = activity(conversation, connector.service_url, text="Linus")
    first = await send(app, message)
    again = await send(app, message)
    assert (first.status, again.status) == (200, 200)
    assert connector.messages(conversation).count("What's your name?") == 1


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{}", "text/plain", 415),
        (b"<xml/>", "application/xml", 415),
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'{"text": "no type"}', "application/json", 400),
        (b'{"type": "message", "text": "no conversation"}', "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b"{" + b" " * (MAX_BODY_BYTES + 1) + b"}", "application/json", 413),
    ],
)
async def test_bad_input_gets_a_clear_4xx(app: Composition, body: bytes, content_type: str, status: int) -> None:
    response = await send(app, body, content_type=content_type)
    assert response.status == status
    assert response.body["error"]["message"]
    assert "Traceback" not in json.dumps(response.body)


async def test_unexpected_error_is_500_without_internals_and_next_turn_works(
    app: Composition, connector: RecordingConnector, caplog: pytest.LogCaptureFixture
) -> None:
    conversation = f"c-{uuid.uuid4()}"
    original = app.bot.on_turn

    async def failing(context: Any) -> None:
        raise RuntimeError("secret internal detail")

    app.bot.on_turn = failing  # type: ignore[method-assign]
    try:
        response = await send(app, activity(conversation, connector.service_url, text="x"))
    finally:
        app.bot.on_turn = original  # type: ignore[method-assign]
    assert response.status == 500
    assert "secret internal detail" not in json.dumps(response.body)
    assert conversation in caplog.text
    assert connector.messages(conversation) == []

    ok = await send(app, activity(conversation, connector.service_url, text="y"))
    assert ok.status == 200
    assert connector.messages(conversation) == ["What's your name?"]


async def test_a_queue_that_cannot_be_reached_is_told_not_left_waiting(
    azurite: Azurite, cosmos: CosmosStandIn, connector: RecordingConnector
) -> None:
    unreachable = azurite.connection_string.replace(f":{azurite.queue_port}/", ":9/")
    async with composed_app(azurite, cosmos, AzureWebJobsStorage=unreachable) as app:
        url = connector.service_url
        conversation = await open_named_conversation(app, url, "Ada")
        response = await send(app, activity(conversation, url, text="1"))
        key = f"directline/conversations/{conversation}"
        [entry] = (await app.conversations.read([key]))[key]["Outbox"]
    assert response.status == 200
    assert connector.messages(conversation)[-2].startswith("Starting the prime report.")
    assert connector.messages(conversation)[-1].startswith("The prime report has not started yet")
    assert entry["kind"] == "operation" and entry["attempts"] == 1  # kept, to be sent again
