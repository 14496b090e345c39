"""The messages handler, called directly, against the Cosmos DB stand-in and a recording Connector."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from handlers.http_types import HttpRequestData
from handlers.messages import MAX_BODY_BYTES, handle_messages
from localdev.app_settings import app_settings
from services.runtime import BotRuntime, build_runtime
from services.settings import load_settings
from tests.support.connector import RecordingConnector

pytestmark = pytest.mark.emulators


@pytest.fixture
async def runtime(azurite: Any, cosmos: Any) -> AsyncIterator[BotRuntime]:
    built = build_runtime(load_settings(app_settings(azurite, cosmos)))
    yield built
    await built.close()


def activity(conversation: str, service_url: str, **fields: Any) -> dict[str, Any]:
    base = {
        "type": "message",
        "id": str(uuid.uuid4()),
        "channelId": "directline",
        "serviceUrl": service_url,
        "conversation": {"id": conversation},
        "from": {"id": f"user-of-{conversation}", "name": "User", "role": "user"},
        "recipient": {"id": "bot", "name": "Bot", "role": "bot"},
    }
    base.update(fields)
    return base


def post(body: Any, content_type: str = "application/json", auth: str = "") -> HttpRequestData:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": content_type}
    if auth:
        headers["authorization"] = auth
    return HttpRequestData("POST", headers, raw)


def joined(conversation: str, service_url: str) -> dict[str, Any]:
    return activity(
        conversation,
        service_url,
        type="conversationUpdate",
        membersAdded=[{"id": "bot"}, {"id": f"user-of-{conversation}"}],
    )


async def test_greets_asks_name_and_remembers_it(runtime: BotRuntime, connector: RecordingConnector) -> None:
    conversation = f"c-{uuid.uuid4()}"
    url = connector.service_url
    assert (await handle_messages(post(joined(conversation, url)), runtime)).status == 200
    assert connector.messages(conversation) == [
        "Hello and welcome! I run long operations for you and tell you here when they are done.",
        "What's your name?",
    ]
    assert (await handle_messages(post(activity(conversation, url, text="Ada")), runtime)).status == 200
    assert connector.messages(conversation)[-2] == "Nice to meet you, Ada! I'll remember your name."
    assert connector.messages(conversation)[-1].startswith("Which long operation shall I run, Ada?")

    # A new conversation of the same user: the name is known (user state), the prompt is not repeated.
    second = f"c-{uuid.uuid4()}"
    update = joined(second, url)
    update["from"]["id"] = update["membersAdded"][1]["id"] = f"user-of-{conversation}"
    await handle_messages(post(update), runtime)
    assert connector.messages(second)[0] == "Welcome back, Ada!"
    assert connector.messages(second)[1].startswith("Which long operation shall I run, Ada?")
    assert len(connector.messages(second)) == 2


async def test_replies_go_to_the_incoming_conversation_and_user(
    runtime: BotRuntime, connector: RecordingConnector
) -> None:
    conversation = f"c-{uuid.uuid4()}"
    incoming = activity(conversation, connector.service_url, text="hi")
    await handle_messages(post(incoming), runtime)
    reply = connector.activities[-1]
    # botbuilder 4.17 drops reply_to_id on directline/webchat, so these arrive as SendToConversation.
    assert reply["_conversation"] == conversation
    assert reply["conversation"]["id"] == conversation
    assert reply["recipient"]["id"] == incoming["from"]["id"]
    assert reply["from"]["id"] == "bot"


async def test_concurrent_messages_to_one_conversation_each_answered_once(
    runtime: BotRuntime, connector: RecordingConnector
) -> None:
    conversation = f"c-{uuid.uuid4()}"
    url = connector.service_url
    await handle_messages(post(activity(conversation, url, text="start")), runtime)
    await handle_messages(post(activity(conversation, url, text="Grace")), runtime)
    await handle_messages(post(activity(conversation, url, text="1")), runtime)
    assert runtime.operation_queue.sent == 1
    writes_before = runtime.counters.writes
    texts = [f"are you done yet? ({n})" for n in range(8)]
    incoming = [activity(conversation, url, text=text) for text in texts]
    responses = await asyncio.gather(*(handle_messages(post(a), runtime) for a in incoming))

    assert [r.status for r in responses] == [200] * len(texts)
    still = [m for m in connector.messages(conversation) if m.startswith("Still performing the long operation")]
    assert len(still) == len(texts)
    # Re-run turns did not start the operation again.
    assert runtime.operation_queue.sent == 1
    # Every turn's bookkeeping survived: no turn overwrote another's commit.
    container = await runtime.cosmos.conversation_container()
    docs = [d async for d in container.query_items("SELECT * FROM c")]
    record = next(d for d in docs if d["realId"].endswith(conversation))["document"]["ConversationRecord"]
    assert {a["id"] for a in incoming} <= set(record["recentActivityIds"])
    # The race really happened: some turns had to run again (more conversation writes attempted than turns).
    assert runtime.counters.writes - writes_before > len(texts)


async def test_redelivered_activity_has_effect_once(runtime: BotRuntime, connector: RecordingConnector) -> None:
    conversation = f"c-{uuid.uuid4()}"
    message = activity(conversation, connector.service_url, text="Linus")
    first = await handle_messages(post(message), runtime)
    again = await handle_messages(post(message), runtime)
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
async def test_bad_input_gets_a_clear_4xx(runtime: BotRuntime, body: bytes, content_type: str, status: int) -> None:
    response = await handle_messages(post(body, content_type), runtime)
    assert response.status == status
    assert response.body["error"]["message"]
    assert "Traceback" not in json.dumps(response.body)


async def test_unexpected_error_is_500_without_internals_and_next_turn_works(
    runtime: BotRuntime, connector: RecordingConnector, caplog: pytest.LogCaptureFixture
) -> None:
    conversation = f"c-{uuid.uuid4()}"
    original = runtime.bot.on_turn

    async def failing(context: Any) -> None:
        raise RuntimeError("secret internal detail")

    runtime.bot.on_turn = failing  # type: ignore[method-assign]
    try:
        response = await handle_messages(post(activity(conversation, connector.service_url, text="x")), runtime)
    finally:
        runtime.bot.on_turn = original  # type: ignore[method-assign]
    assert response.status == 500
    assert "secret internal detail" not in json.dumps(response.body)
    assert conversation in caplog.text
    assert connector.messages(conversation) == []

    ok = await handle_messages(post(activity(conversation, connector.service_url, text="y")), runtime)
    assert ok.status == 200
    assert connector.messages(conversation) == ["What's your name?"]


async def test_with_an_app_id_a_request_without_a_valid_token_is_401(
    azurite: Any, cosmos: Any, connector: RecordingConnector
) -> None:
    settings = load_settings(
        app_settings(azurite, cosmos, MicrosoftAppId=str(uuid.uuid4()), MicrosoftAppPassword="not-used")
    )
    runtime = build_runtime(settings)
    try:
        message = activity("c-auth", connector.service_url, text="hi")
        assert (await handle_messages(post(message), runtime)).status == 401
        assert (await handle_messages(post(message, auth="Bearer not.a.jwt"), runtime)).status == 401
    finally:
        await runtime.close()
    assert connector.activities == []


async def test_a_queue_that_cannot_be_reached_is_told_not_left_waiting(
    azurite: Any, cosmos: Any, connector: RecordingConnector
) -> None:
    unreachable = azurite.connection_string.replace(f":{azurite.queue_port}/", ":9/")
    runtime = build_runtime(load_settings(app_settings(azurite, cosmos, AzureWebJobsStorage=unreachable)))
    try:
        conversation = f"c-{uuid.uuid4()}"
        url = connector.service_url
        await handle_messages(post(joined(conversation, url)), runtime)
        await handle_messages(post(activity(conversation, url, text="Ada")), runtime)
        response = await handle_messages(post(activity(conversation, url, text="1")), runtime)
    finally:
        await runtime.close()
    assert response.status == 200
    assert connector.messages(conversation)[-2].startswith("Starting the prime report.")
    assert connector.messages(conversation)[-1].startswith("Sorry, I couldn't start the prime report")


async def test_tokens_that_fail_validation_in_any_way_are_401(
    azurite: Any, cosmos: Any, connector: RecordingConnector
) -> None:
    import jwt

    settings = load_settings(
        app_settings(azurite, cosmos, MicrosoftAppId=str(uuid.uuid4()), MicrosoftAppPassword="not-used")
    )
    runtime = build_runtime(settings)
    # Signed with HS256 by someone who knows no Microsoft key: the SDK raises a bare Exception for it.
    forged = jwt.encode({"iss": "https://api.botframework.com", "aud": settings.microsoft_app_id}, "x" * 32)
    try:
        message = activity("c-auth", connector.service_url, text="hi")
        response = await handle_messages(post(message, auth=f"Bearer {forged}"), runtime)
    finally:
        await runtime.close()
    assert response.status == 401
    assert connector.activities == []
