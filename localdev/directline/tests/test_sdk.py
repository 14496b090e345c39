"""The Bot Framework SDK's own Connector client (botbuilder 4.17, empty app id) against the local Direct Line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from aiohttp import web

from localdev.directline import start_directline_process
from localdev.directline.tests.support import SECRET, Stack, running_stack, serve


async def start_sdk_bot() -> tuple[web.AppRunner, int]:
    """Replies, updates its reply, deletes one, proactively sends, and reads members, all through the SDK."""
    from botbuilder.core import (
        ActivityHandler,
        BotFrameworkAdapter,
        BotFrameworkAdapterSettings,
        MessageFactory,
        TurnContext,
    )
    from botbuilder.schema import Activity
    from botframework.connector.auth import ClaimsIdentity

    adapter = BotFrameworkAdapter(BotFrameworkAdapterSettings(app_id="", app_password=""))

    class SdkBot(ActivityHandler):
        async def on_message_activity(self, turn_context: TurnContext) -> None:
            draft = await turn_context.send_activity("sdk draft")
            final = MessageFactory.text("sdk final")
            final.id = draft.id
            await turn_context.update_activity(final)
            doomed = await turn_context.send_activity("sdk doomed")
            await turn_context.delete_activity(doomed.id)
            members = await adapter.get_conversation_members(turn_context)
            await turn_context.send_activity(f"members {sorted(m.id for m in members)}")
            reference = TurnContext.get_conversation_reference(turn_context.activity)

            async def proactive(context: TurnContext) -> None:
                await context.send_activity("sdk proactive")

            # An identity without an app id: the SDK then sends without credentials (local mode).
            await adapter.continue_conversation(reference, proactive, claims_identity=ClaimsIdentity({}, True))

    bot = SdkBot()

    async def messages(request: web.Request) -> web.Response:
        activity = Activity().deserialize(await request.json())
        response = await adapter.process_activity(activity, request.headers.get("Authorization", ""), bot.on_turn)
        return web.json_response(response.body, status=response.status) if response else web.Response(status=201)

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    return await serve(app)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack(bot_app=start_sdk_bot) as running:
        yield running


def poll_texts(domain: str, conversation_id: str) -> list[Any]:
    page = requests.get(f"{domain}/conversations/{conversation_id}/activities",
                        headers={"Authorization": f"Bearer {SECRET}"}, timeout=10).json()  # fmt: skip
    return [(a["type"], a.get("text"), a["from"].get("role")) for a in page["activities"]]


def test_sdk_bot_replies_updates_deletes_and_reads_members(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {SECRET}"}
    started = requests.post(f"{stack.domain}/conversations", json={"user": {"id": "sam"}}, headers=headers, timeout=10)
    conversation_id = started.json()["conversationId"]
    sent = requests.post(
        f"{stack.domain}/conversations/{conversation_id}/activities",
        json={"type": "message", "text": "go", "from": {"id": "sam"}}, headers=headers, timeout=20,
    )  # fmt: skip
    assert sent.status_code == 200, sent.text
    # The answer came after the bot's turn, so everything it sent is already stored.
    assert poll_texts(stack.domain, conversation_id) == [
        ("message", "go", "user"),
        ("message", "sdk final", "bot"),
        ("message", "members ['bot', 'sam']", "bot"),
        ("message", "sdk proactive", "bot"),
    ]


def test_direct_line_as_a_child_process(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {SECRET}"}
    process = start_directline_process(stack.bot_endpoint, SECRET, extra_args=["--bot-name", "Spawned"])
    try:
        assert requests.post(f"{process.domain}/conversations", headers=headers, timeout=10).status_code == 201
        assert "Spawned" in requests.get(process.url, timeout=10).text  # the Web Chat page names the bot
    finally:
        process.stop()
